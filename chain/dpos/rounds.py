"""Rounds on the state: the schedule of any slot, round starts, reveals, finality votes, missed
slots, jail and rewards.

The pure rules (ranking, shuffle, standby draw, reward split, quorum) live beside this module;
here they are applied to a StateView. Everything is a function of the state and the block being
applied, never of a clock (DESIGN §4, docs/protocol.md §13).

A round's order is fixed one round ahead: round r+1 shuffles the producer set and standby
weights that round r recorded when it began, with the seed that round r's reveals made. A
producer of round r can change neither (its reveal was committed in advance), so the most it
can do to round r+1 is withhold its block.
"""

from chain.dpos.election import elect
from chain.dpos.finality import has_quorum, missed_slots
from chain.dpos.reveal import mix_seed, opens, round_seed_start
from chain.dpos.rewards import accrue
from chain.dpos.shuffle import round_order
from chain.errors import BlockRejected
from chain.state.consensus import (JOINT, MAX_STANDBY, PROPOSED, STABLE, Checkpoint, Producer,
                                   RoundInfo, RoundVotes)
from chain.state.records import Schedule

# Missed slots count only while the chain finalises: a chain whose finality is this many rounds
# behind may be the small side of a partition, where absent producers are not to blame.
FINALITY_LAG_ROUNDS = 3


def schedule_at(view, params, slot):
    """The schedule of the round holding ``slot`` for a block built on this state: past the
    current round, the next order (rounds with no blocks at all repeat it)."""
    current = view.schedule()
    if slot < current.end_slot:
        return current
    upcoming = next_schedule(view, params, current)
    while slot >= upcoming.end_slot:
        upcoming = upcoming._replace(round=upcoming.round + 1, start_slot=upcoming.end_slot)
    return upcoming


def next_schedule(view, params, current):
    """The round after ``current``: the producer set and standby candidates the current round
    recorded at its start, ordered by the seed of its reveals."""
    info, seed = view.round_info(), view.round_votes().seed
    order = round_order(list(info.members()), list(info.standby), seed, params.standby_slots)
    return Schedule(current.round + 1, current.end_slot, tuple(order))


def eligible_candidates(view, params):
    """``(producer key, votes)`` of every agent that may be elected, in owner-address order."""
    out = []
    for address in view.agent_addresses():
        agent = view.agent(address)
        if agent.eligible and view.account(address).stake >= params.agent_min_stake:
            out.append((agent.pubkey, agent.votes))
    return out


def begin_round_and_slot(view, params, header, parent):
    """What a block does first: the round change, missed slots and jail, its reveal, and its
    producer's record. Raises BlockRejected."""
    current = view.schedule()
    upcoming = schedule_at(view, params, header.slot)
    finalising = upcoming.round - view.finality().finalized.round <= FINALITY_LAG_ROUNDS
    missed = missed_slots(parent.slot, header.slot, _slot_owner(current, upcoming),
                          2 * params.round_length()) if finalising else []
    if upcoming.round != current.round:
        start_round(view, params, current, upcoming, parent, header.height)
    for pubkey in missed:
        count_missed(view, params, pubkey, header.height)
    owner = apply_reveal(view, header, upcoming.round)
    agent = view.agent(owner)
    view.set_agent(owner, agent._replace(missed_in_a_row=0, produced=agent.produced + 1))


def _slot_owner(current, upcoming):
    """Producer of any slot up to ``upcoming`` (skipped rounds repeat its order)."""
    def owner(slot):
        if slot < current.end_slot:
            return current.producer_for(slot)
        return upcoming.producers[(slot - current.end_slot) % len(upcoming.producers)]
    return owner


def start_round(view, params, current, upcoming, parent, height):
    """Store ``upcoming``, propose an election result, and record what this round fixes: its
    vote link, its quorum sets and the standby weights."""
    view.set_schedule(upcoming)
    finality = propose_change(view, params, view.finality(), height)
    quorum = finality.quorum_sets()
    members = set().union(*quorum)
    view.set_round_info(RoundInfo(
        upcoming.round, finality.justified, Checkpoint(upcoming.round, parent.hash, parent.height),
        quorum[0], quorum[1] if len(quorum) > 1 else (), standby_snapshot(view, params, members)))
    view.set_round_votes(RoundVotes(round_seed_start(view.round_votes().seed, upcoming.round)))
    view.set_finality(finality)


def propose_change(view, params, finality, height):
    """With no change under way, the election's result (when it differs from the active set)
    becomes the proposed set, waiting for this block to become irreversible."""
    if finality.phase != STABLE:
        return finality
    candidates = eligible_candidates(view, params)
    if not candidates:
        return finality
    elected, _ = elect(candidates, params.producers_per_round)
    elected = tuple(sorted(elected))
    if elected == finality.active:
        return finality
    return finality._replace(phase=PROPOSED, next=elected, mark=height)


def standby_snapshot(view, params, members):
    """The best-voted eligible candidates outside ``members`` (with votes), for the standby
    draw of the round after next."""
    if not params.standby_slots:
        return ()
    ranked = sorted(((-votes, pubkey) for pubkey, votes in eligible_candidates(view, params)
                     if pubkey not in members and votes > 0))
    return tuple((pubkey, -negative) for negative, pubkey in ranked[:MAX_STANDBY])


def apply_reveal(view, header, round_number):
    """Check the block's reveal against its producer's commitment, move the commitment on
    (or to the renewal), mix the reveal into the round seed; returns the producer's owner."""
    record = view.producer(header.producer)
    if record is None:
        raise BlockRejected("the block's producer key belongs to no agent")
    record = record.effective(round_number)
    if not opens(header.reveal, record.commit):
        raise BlockRejected("the reveal does not open the producer's commitment")
    if header.renewal is not None:  # a new chain from the next block (a pending one yields)
        record = Producer(record.owner, record.epoch + 1, header.renewal)
    else:
        record = record._replace(commit=header.reveal)
    view.set_producer(header.producer, record)
    votes = view.round_votes()
    view.set_round_votes(votes._replace(seed=mix_seed(votes.seed, header.reveal)))
    return record.owner


def expected_vote(info):
    """The only link votes of this round may carry, or None when the round links nothing
    (round 0, or no justified checkpoint before it)."""
    if info.source.round >= info.target.round:
        return None
    return (info.source.round, info.source.hash, info.target.round, info.target.hash)


def apply_votes(view, votes, chain_id, height):
    """Count the finality votes a block carries for the round's link (sorted by producer, each
    from a member of the round's sets who has not voted yet, correctly signed); justify and
    finalize when they complete a quorum. Raises BlockRejected."""
    if not votes:
        return
    info = view.round_info()
    link, members = expected_vote(info), set(info.members())
    counted = view.round_votes()
    voters = set(counted.voters)
    previous = b""
    for vote in votes:
        if link is None or vote.link != link:
            raise BlockRejected("a vote is not for this round's link")
        if vote.producer not in members:
            raise BlockRejected("a vote comes from outside the round's producer sets")
        if vote.producer <= previous or vote.producer in voters:
            raise BlockRejected("votes must be sorted by producer, each counted once per round")
        if not vote.signature_valid(chain_id):
            raise BlockRejected("a vote's signature does not verify")
        previous = vote.producer
        voters.add(vote.producer)
    view.set_round_votes(counted._replace(voters=tuple(sorted(voters))))
    finality = view.finality()
    if finality.justified.round >= info.target.round or not has_quorum(voters,
                                                                        info.quorum_sets()):
        return
    finality = finality._replace(justified=info.target)
    if info.source.round + 1 == info.target.round and info.source.round > finality.finalized.round:
        finality = advance_rule(finality._replace(finalized=info.source), height)
    view.set_finality(finality)


def advance_rule(finality, height):
    """A proposed set turns joint once its proposing block is final; a joint rule hands over
    to the new set once a block of the joint phase is final."""
    if finality.phase == PROPOSED and finality.finalized.height >= finality.mark:
        return finality._replace(phase=JOINT, mark=height)
    if finality.phase == JOINT and finality.finalized.height >= finality.mark:
        return finality._replace(active=finality.next, next=(), phase=STABLE, mark=0)
    return finality


def count_missed(view, params, pubkey, height):
    """One more missed slot for the agent of ``pubkey``; jail it at ``max_missed_in_a_row``."""
    owner = view.owner_of(pubkey)
    agent = view.agent(owner)
    agent = agent._replace(missed_in_a_row=agent.missed_in_a_row + 1,
                           missed_total=agent.missed_total + 1)
    if not agent.jailed and agent.missed_in_a_row >= params.max_missed_in_a_row:
        agent = agent._replace(jailed_until=height + params.jail_blocks)
    view.set_agent(owner, agent)


def pay_producer(view, params, producer, fees):
    """The block reward (from the pool, never minted) and the fees: the voters' share into the
    agent's voter pool (each voter's part accrues per unit of vote, settled when that voter
    next sends a transaction), the rest to its owner. A jailed agent earns nothing."""
    address = view.owner_of(producer)
    agent = view.agent(address)
    pool = view.pool()
    if agent.jailed:
        view.set_pool(pool + fees)
        return
    reward = min(params.block_reward, pool)
    view.set_pool(pool - reward)
    total = reward + fees
    voters_part = total * params.voter_share_permille // 1000 if agent.votes else 0
    if voters_part:
        view.set_agent(address, agent._replace(
            voter_pool=agent.voter_pool + voters_part,
            reward_per_vote=accrue(agent.reward_per_vote, voters_part, agent.votes)))
    credit(view, address, total - voters_part)


def credit(view, address, amount):
    if amount:
        account = view.account(address)
        view.set_account(address, account._replace(balance=account.balance + amount))
