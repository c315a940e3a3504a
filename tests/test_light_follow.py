"""Following headers as a light node does: every producer checked against the schedule it
recomputes from proven records and the headers' reveals, through elections and standby slots
(docs/protocol.md §13.3, §13.7)."""

import pytest

from chain.block import Header
from chain.light import LightError
from chain.light.finality import FinalityEntry
from chain.light.follow import (FOLLOW_KEYS, HeaderRules, check_round_info, follow,
                                state_from_records)
from chain.light.chain import LightChain
from chain.light.store import LightStore
from chain.light.tracker import KEPT_BELOW, MAX_KEPT, FinalityTracker
from chain.state.consensus import RoundInfo
from chain.state.records import ROUND_KEY
from chain.tx import Stake, Vote
from tests.chainkit import COIN, TestChain
from tests.lightkit import chain_material, entries_by_height, keep_headers
from tests.test_light_finality import FOUR, genesis_record


def state_at(chain, height, keys):
    with chain.store.read() as txn:
        return {key: chain.ledger.smt.get(txn, height, key) for key in keys}


def follow_chain(chain, tracker):
    """Follow every header from genesis the way a light node does; returns the states."""
    rules = HeaderRules(chain.ledger.chain_id, chain.params, chain.genesis.genesis_time_ms)
    state = state_from_records(state_at(chain, 0, FOLLOW_KEYS))
    justified_at = entries_by_height(chain)
    parent = header_at(chain, 0)
    states = [state]
    for height in range(1, chain.ledger.head.height + 1):
        header = header_at(chain, height)
        state = follow(state, rules, parent, header)
        if state.info is None:  # the round's first block: prove and check its round record
            info = RoundInfo.decode(state_at(chain, height, [ROUND_KEY])[ROUND_KEY])
            source = tracker.rule_after(parent.justified_round)
            check_round_info(info, header, source.checkpoint, source.record.quorum_sets())
            state = state._replace(info=info)
        if height in justified_at:
            entry = justified_at[height]
            tracker.accept(entry, Header.decode(entry.header))
        states.append(state)
        parent = header
    return states


def header_at(chain, height):
    return Header.decode(chain.ledger.header_bytes(chain.ledger.block_hash_at(height)))


def test_a_follower_checks_every_producer_through_elections_and_standby_slots(tmp_path):
    params = FOUR._replace(standby_slots=1)
    chain = TestChain(tmp_path, n_agents=6, params=params)
    voter = chain.keys[0]
    ranked = sorted(chain.agents, key=lambda a: a.address)
    chain.block([chain.tx(voter, Stake(500 * COIN))])
    chain.block([chain.tx(voter, Vote((ranked[-2].address, ranked[-1].address)))])
    for _ in range(5 * 14):
        chain.block()
    assert ranked[-1].pubkey in chain.ledger.finality().active
    tracker = FinalityTracker(chain.ledger.chain_id, genesis_record(chain))
    states = follow_chain(chain, tracker)
    standby_rounds = [s for s in states if len(s.schedule.producers) == 5]
    assert standby_rounds, "some rounds gave a slot to a standby candidate"
    assert tracker.finalized.height == chain.ledger.lib_height
    with chain.store.read() as txn:
        assert states[-1].schedule == chain.ledger.view(txn).schedule()


def test_a_header_from_an_unscheduled_producer_is_refused(tmp_path):
    chain = TestChain(tmp_path, n_agents=4, params=FOUR)
    for _ in range(6):
        chain.block()
    rules = HeaderRules(chain.ledger.chain_id, chain.params, chain.genesis.genesis_time_ms)
    tracker = FinalityTracker(chain.ledger.chain_id, genesis_record(chain))
    states = follow_chain(chain, tracker)
    parent, header = header_at(chain, 5), header_at(chain, 6)
    intruder = next(a for a in chain.agents if a.pubkey != header.producer)
    forged = header._replace(producer=intruder.pubkey).signed_by(intruder, chain.ledger.chain_id)
    with pytest.raises(LightError) as caught:
        follow(states[5], rules, parent, forged)
    assert caught.value.reason == "unscheduled"
    for bad in (header._replace(timestamp_ms=header.timestamp_ms + 1),
                header._replace(prev_hash=bytes(32)), header._replace(slot=parent.slot),
                header._replace(signature=bytes(64))):
        with pytest.raises(LightError) as caught:
            follow(states[5], rules, parent, bad)
        assert caught.value.reason == "bad_header"


def test_a_long_follow_keeps_its_window_and_its_store_flat(tmp_path):
    """However long a light node follows, it keeps ``window`` headers, the rounds they span and
    the justified checkpoints above its LIB; its LMDB file stops growing once the window is
    full (the freed pages are reused)."""
    blocks, window = 256, 32
    chain = TestChain(tmp_path / "full", n_agents=4,
                      params=FOUR._replace(evidence_window=4 * blocks, unbonding_blocks=4 * blocks))
    for _ in range(blocks):
        chain.block()
    headers, rounds, entries, genesis_values = chain_material(chain)
    store = LightStore(str(tmp_path / "light"))
    light = LightChain(store, HeaderRules(chain.ledger.chain_id, chain.params,
                                          chain.genesis.genesis_time_ms), window=window)
    light.bootstrap(headers[0], genesis_values)
    seen = []
    for start in range(1, blocks + 1, window):
        keep_headers(light, headers[start:start + window], rounds, entries, batch=8)
        with store.read() as txn:
            low, high = store.window_bounds(txn)
            kept = {name: txn.stat(store.db[name])["entries"] for name in store.db}
        seen.append((high - low + 1, kept, store.disk_bytes()))
    assert light.tip.header == headers[-1] and light.lib.height == chain.ledger.lib_height
    for held, kept, _ in seen:
        assert held == kept["light_headers"] <= window
        assert kept["light_rounds"] <= window // FOUR.producers_per_round + 2
        assert kept["light_justified"] <= MAX_KEPT + KEPT_BELOW
    sizes = [size for _, _, size in seen]
    assert sizes[len(sizes) // 2:] == [sizes[len(sizes) // 2]] * (len(sizes) - len(sizes) // 2), \
        sizes
    store.close()
