"""Rounds on the state: the schedule of any slot, round ends, missed slots, jail and rewards.

The pure rules (ranking, shuffle, standby draw, reward split, finality) live beside this module;
here they are applied to a StateView. Everything is a function of the state and the parent
block, never of a clock (DESIGN §4, docs/protocol.md §9).
"""

from chain.address import address_from_pubkey
from chain.dpos.election import elect
from chain.dpos.finality import missed_slots
from chain.dpos.rewards import split_reward
from chain.dpos.shuffle import round_order
from chain.state.records import Schedule


def schedule_at(view, params, parent_hash, slot):
    """The schedule of the round holding ``slot``, for a block built on ``parent_hash``.

    Past the current round, the next one is elected from the state as it stands and shuffled
    with the parent's hash; rounds with no blocks at all repeat that order.
    """
    current = view.schedule()
    if slot < current.end_slot:
        return current
    upcoming = next_schedule(view, params, parent_hash, current)
    while slot >= upcoming.end_slot:
        upcoming = upcoming._replace(round=upcoming.round + 1, start_slot=upcoming.end_slot)
    return upcoming


def next_schedule(view, params, seed, current):
    """Elect and order the round after ``current``: the top producers by votes, shuffled, plus
    standby slots drawn by vote weight. With no eligible candidate the producers stay."""
    candidates = eligible_candidates(view, params)
    if not candidates:
        return Schedule(current.round + 1, current.end_slot, current.producers)
    top, rest = elect(candidates, params.producers_per_round)
    votes = dict(candidates)
    standby = [(address, votes[address]) for address in rest]
    order = round_order(top, standby, seed, params.standby_slots)
    return Schedule(current.round + 1, current.end_slot,
                    tuple(view.agent(address).pubkey for address in order))


def eligible_candidates(view, params):
    """``(address, votes)`` of every agent that may be elected, in address order."""
    out = []
    for address in view.agent_addresses():
        agent = view.agent(address)
        if agent.eligible and view.account(address).stake >= params.agent_min_stake:
            out.append((address, agent.votes))
    return out


def begin_round_and_slot(view, params, parent_hash, parent_slot, slot, producer, height):
    """Everything a block does before its transactions: the round change, missed-slot counting
    and jailing, and its producer's record."""
    current = view.schedule()
    upcoming = schedule_at(view, params, parent_hash, slot)
    limit = 2 * params.round_length()
    missed = missed_slots(parent_slot, slot,
                          lambda s: (current if s < current.end_slot else
                                     schedule_at(view, params, parent_hash, s)).producer_for(s),
                          limit)
    if upcoming != current:
        end_round(view, current)
        view.set_schedule(upcoming)
    for pubkey in missed:
        count_missed(view, params, address_from_pubkey(pubkey), height)
    address = address_from_pubkey(producer)
    agent = view.agent(address)
    view.set_agent(address, agent._replace(missed_in_a_row=0, produced=agent.produced + 1))


def count_missed(view, params, address, height):
    """One more missed slot; jail the agent at ``max_missed_in_a_row``."""
    agent = view.agent(address)
    agent = agent._replace(missed_in_a_row=agent.missed_in_a_row + 1,
                           missed_total=agent.missed_total + 1)
    if not agent.jailed and agent.missed_in_a_row >= params.max_missed_in_a_row:
        agent = agent._replace(jailed_until=height + params.jail_blocks)
    view.set_agent(address, agent)


def end_round(view, schedule):
    """Pay each producer's voter pool to its voters, pro rata to their stake (floors); what the
    floors leave goes to the producer itself."""
    for pubkey in sorted(set(schedule.producers)):
        address = address_from_pubkey(pubkey)
        agent = view.agent(address)
        if agent.voter_pool == 0:
            continue
        voters = [(voter, view.account(voter).stake) for voter in view.voters_of(address)]
        producer_part, payouts = split_reward(agent.voter_pool, 1000, voters)
        for voter, amount in payouts:
            credit(view, voter, amount)
        credit(view, address, producer_part)
        view.set_agent(address, view.agent(address)._replace(voter_pool=0))


def pay_producer(view, params, producer, fees):
    """The block reward (from the pool, never minted) and the fees: the voters' share into the
    producer's voter pool, the rest to the producer. A jailed producer earns nothing."""
    address = address_from_pubkey(producer)
    agent = view.agent(address)
    pool = view.pool()
    reward = 0 if agent.jailed else min(params.block_reward, pool)
    if agent.jailed:
        view.set_pool(pool + fees)
        return
    view.set_pool(pool - reward)
    total = reward + fees
    voters_part = total * params.voter_share_permille // 1000 if agent.votes else 0
    if voters_part:
        view.set_agent(address, agent._replace(voter_pool=agent.voter_pool + voters_part))
    credit(view, address, total - voters_part)


def credit(view, address, amount):
    if amount:
        account = view.account(address)
        view.set_account(address, account._replace(balance=account.balance + amount))
