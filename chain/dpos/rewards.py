"""Block reward sharing and slashing arithmetic (DESIGN §4): integers only, nothing minted or lost."""

PERMILLE = 1000


def _amount(value, name, high=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 0 or (high is not None and value > high):
        raise ValueError(f"{name} must be in [0, {high if high is not None else 'inf'}], got {value}")
    return value


def split_reward(reward: int, voter_share_permille: int, voters) -> tuple[int, list]:
    """(producer_amount, [(address, amount), ...]) for ``voters`` ((address, stake) pairs in a fixed
    order). The voters' pool is ``reward * share // 1000``, each voter gets
    ``pool * stake // total_stake``; the producer gets the rest, so the amounts sum to ``reward``.
    Zero amounts are omitted; no voters or zero total stake gives everything to the producer."""
    _amount(reward, "reward")
    _amount(voter_share_permille, "voter_share_permille", PERMILLE)
    voters = [(address, _amount(stake, "stake")) for address, stake in voters]
    total_stake = sum(stake for _, stake in voters)
    if total_stake == 0:
        return reward, []
    pool = reward * voter_share_permille // PERMILLE
    paid = [(address, pool * stake // total_stake) for address, stake in voters]
    paid = [(address, amount) for address, amount in paid if amount > 0]
    return reward - sum(amount for _, amount in paid), paid


def slash(stake: int, slash_permille: int, reporter_permille: int) -> tuple[int, int, int]:
    """(slashed, to_reporter, to_pool): ``slashed = stake * slash_permille // 1000``,
    ``to_reporter = slashed * reporter_permille // 1000``, ``to_pool = slashed - to_reporter``."""
    _amount(stake, "stake")
    _amount(slash_permille, "slash_permille", PERMILLE)
    _amount(reporter_permille, "reporter_permille", PERMILLE)
    slashed = stake * slash_permille // PERMILLE
    to_reporter = slashed * reporter_permille // PERMILLE
    return slashed, to_reporter, slashed - to_reporter
