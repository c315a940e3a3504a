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


REWARD_SHIFT = 64  # reward-per-vote accumulators count in units of 2^-64 base units


def accrue(reward_per_vote: int, amount: int, total_votes: int) -> int:
    """An agent's reward-per-vote accumulator after ``amount`` more for voters holding
    ``total_votes`` of weight (F1 distribution: O(1) however many voters)."""
    _amount(reward_per_vote, "reward_per_vote")
    _amount(amount, "amount")
    if _amount(total_votes, "total_votes") == 0:
        raise ValueError("no vote weight to share a reward with")
    return reward_per_vote + (amount << REWARD_SHIFT) // total_votes


def owed(weight: int, now: int, then: int) -> int:
    """What a voter of ``weight`` earned while the accumulator moved from ``then`` to ``now``
    (rounded down, so the voters of an agent never take more than it set aside)."""
    _amount(weight, "weight")
    if _amount(now, "now") < _amount(then, "then"):
        raise ValueError("an accumulator never goes back")
    return weight * (now - then) >> REWARD_SHIFT
