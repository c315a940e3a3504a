"""A light node syncing from real full nodes over real links, in one event loop (no slot clock):
from genesis and from a checkpoint learned from agreeing peers, through a producer-set change,
reading values with proofs, resuming after a restart (docs/protocol.md §13.7)."""

import asyncio

import pytest

from chain.state.records import account_key
from chain.tx import Stake, Transfer, Vote
from tests.chainkit import COIN, TestChain
from tests.lightkit import Clock, FullPeer, Light, answer_of
from tests.test_light_finality import FOUR


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def test_a_light_node_follows_from_genesis_through_an_election_and_reads_with_proofs(tmp_path):
    async def scenario():
        chain = TestChain(tmp_path / "full", n_agents=5, params=FOUR._replace(standby_slots=1))
        clock = Clock(chain.genesis)
        full = await FullPeer(chain, clock).start()
        light = await Light(tmp_path / "light", chain.genesis, clock, [full.address]).start()
        try:
            full.produce(6)
            await light.until("the head", lambda: light.at(chain))
            outsider = sorted(chain.agents, key=lambda a: a.address)[-1]
            voter = chain.keys[0]
            full.produce(1, [chain.tx(voter, Stake(500 * COIN))])
            full.produce(1, [chain.tx(voter, Vote((outsider.address,)))])
            for _ in range(5 * 16):
                full.produce(1)
                await light.until("each block", lambda: light.at(chain))
            assert outsider.pubkey in chain.ledger.finality().active
            await light.until("the LIB", lambda: light.chain.lib.height == chain.ledger.lib_height)
            assert light.chain.tracker.latest.record.active == chain.ledger.finality().active
            # a balance, proven at the light node's irreversible block
            values, header, proofs = await light.sync.read([account_key(voter.address)])
            assert header.height == chain.ledger.lib_height
            assert values[account_key(voter.address)] is not None
        finally:
            await light.stop()
            await full.stop()
    run(scenario())


def test_a_light_node_learns_its_checkpoint_from_agreeing_peers_and_resumes(tmp_path):
    async def scenario():
        chain = TestChain(tmp_path / "full", n_agents=4, params=FOUR)
        clock = Clock(chain.genesis)
        for _ in range(4 * 6):
            block = chain.block()
            clock.at_slot(block.header.slot)
        fulls = [await FullPeer(chain, clock).start() for _ in range(2)]
        light = Light(tmp_path / "light", chain.genesis, clock, [f.address for f in fulls],
                      agree=2, from_genesis=False)
        await light.start()
        try:
            fulls[0].produce(2)
            await light.until("a checkpoint and the head", lambda: light.at(chain))
            assert light.chain.anchor.height > 0, "it started from a learned checkpoint"
            assert light.chain.anchor.height <= chain.ledger.lib_height
            payee = chain.keys[1]
            fulls[0].produce(1, [chain.tx(chain.keys[0], Transfer(payee.address, 3 * COIN))])
            fulls[0].produce(4 * 3)
            await light.until("the LIB", lambda: light.chain.lib.height == chain.ledger.lib_height)
            tip, lib = light.chain.tip.header, light.chain.lib
        finally:
            await light.stop()
        # a restart resumes from the stored window and finality
        again = Light(tmp_path / "light", chain.genesis, clock, [f.address for f in fulls],
                      agree=2, from_genesis=False)
        assert again.chain.ready and (again.chain.tip.header, again.chain.lib) == (tip, lib)
        await again.start()
        try:
            fulls[1].produce(4)
            await again.until("the head after a restart", lambda: again.at(chain))
        finally:
            await again.stop()
            for full in fulls:
                await full.stop()
    run(scenario())


def test_a_light_node_becomes_a_full_node_from_a_verified_snapshot(tmp_path):
    """The state at its LIB from a peer, checked against the root (a liar's altered snapshot is
    refused and the liar banned), then a full ledger on it applies the blocks that follow."""
    from chain.ledger import Ledger
    from chain.light import LightError
    from chain.light.promote import install
    from chain.p2p.light import SnapshotMsg
    from chain.store import Store
    from edge.light_promote import fetch_state

    async def scenario():
        chain = TestChain(tmp_path / "full", n_agents=4,
                          params=FOUR._replace(evidence_window=1000, unbonding_blocks=1000))
        clock = Clock(chain.genesis)
        honest = await FullPeer(chain, clock).start()
        liar = await FullPeer(chain, clock, host="127.0.0.2").start()
        served = liar.network.light._on_get_snapshot

        async def altered(peer, request):
            answer = await answer_of(served, peer, request)
            items = tuple((k, v + b"\x01" if i == 0 else v)
                          for i, (k, v) in enumerate(answer.items or ()))
            await peer.conn.send(SnapshotMsg(answer.height, answer.block_hash, answer.after, items,
                                   answer.done))
        liar.network.light._on_get_snapshot = altered
        light = await Light(tmp_path / "light", chain.genesis, clock,
                            [liar.address, honest.address]).start()
        try:
            honest.produce(4 * 4)
            await light.until("the LIB", lambda: light.at(chain) and light.chain.lib.height > 0)
            fetched = []
            for _ in range(2):  # each peer's turn comes: the liar's snapshot is refused
                fetched.append(await fetch_state(light.sync, light.chain, lambda n, label: None))
            assert liar.key.pubkey in light.sync.manager.bans
            return chain, fetched[-1]
        finally:
            await light.stop()
            await honest.stop()
            await liar.stop()

    chain, (header, block, receipts, items) = run(scenario())
    store = Store(str(tmp_path / "promoted"))
    install(store, chain.genesis, block, receipts, items)
    ledger = Ledger(store, chain.genesis)
    assert (ledger.head.hash, ledger.lib_height) == (header.hash, header.height)
    for height in range(header.height + 1, chain.ledger.head.height + 1):
        ledger.apply_block(chain.ledger.block(chain.ledger.block_hash_at(height)))
    assert ledger.head.state_root == chain.ledger.head.state_root
    store.close()
    altered = dict(items)
    key = next(iter(altered))
    altered[key] += b"\x00"
    with pytest.raises(LightError):
        install(Store(str(tmp_path / "other")), chain.genesis, block, receipts, altered)


def test_a_configured_checkpoint_is_used_and_a_too_old_one_refused(tmp_path):
    async def scenario():
        chain = TestChain(tmp_path / "full", n_agents=4, params=FOUR)  # evidence window 12
        clock = Clock(chain.genesis)
        full = await FullPeer(chain, clock).start()
        full.produce(4 * 3)
        trusted = chain.ledger.head
        light = await Light(tmp_path / "light", chain.genesis, clock, [full.address],
                            checkpoint=(trusted.height, trusted.hash), from_genesis=False).start()
        try:
            full.produce(4)
            await light.until("the head from the checkpoint", lambda: light.at(chain))
            assert light.chain.anchor.hash == trusted.hash
        finally:
            await light.stop()
        full.produce(FOUR.evidence_window)  # now the checkpoint is older than the window
        old = await Light(tmp_path / "old", chain.genesis, clock, [full.address],
                          checkpoint=(trusted.height, trusted.hash), from_genesis=False).start()
        try:
            await old.until("the refusal", lambda: old.sync.fatal is not None)
            message = str(old.sync.fatal)
            assert "older than the evidence window" in message and "[light] checkpoint" in message
            assert not old.chain.ready
        finally:
            await old.stop()
            await full.stop()
    run(scenario())


def test_a_light_node_off_for_longer_than_the_window_starts_again_as_its_config_says(tmp_path):
    """Off past the evidence window, its peers no longer keep the finality entries that would
    bring its stored chain forward: with a learned checkpoint it learns a new one from agreeing
    peers (banning none of them); with a configured one it stops and says what to do."""
    from chain.light.entries import keep_rounds

    async def scenario():
        chain = TestChain(tmp_path / "full", n_agents=4, params=FOUR)  # evidence window 12
        clock = Clock(chain.genesis)
        fulls = [await FullPeer(chain, clock).start() for _ in range(2)]
        seeds = [f.address for f in fulls]
        fulls[0].produce(4 * 4)
        trusted = chain.ledger.head
        learned = await Light(tmp_path / "learned", chain.genesis, clock, seeds, agree=2,
                              from_genesis=False).start()
        configured = await Light(tmp_path / "configured", chain.genesis, clock, seeds,
                                 checkpoint=(trusted.height, trusted.hash),
                                 from_genesis=False).start()
        try:
            fulls[0].produce(4 * 3)
            for light in (learned, configured):
                await light.until("the LIB", lambda: light.at(chain) and light.chain.lib.height
                                  == chain.ledger.lib_height)
            old_lib = learned.chain.lib
        finally:
            await learned.stop()
            await configured.stop()
        fulls[0].produce(4 * (keep_rounds(chain.params) + 4))  # the entries it needs are gone
        again = await Light(tmp_path / "learned", chain.genesis, clock, seeds, agree=2,
                            from_genesis=False).start()
        stuck = await Light(tmp_path / "configured", chain.genesis, clock, seeds,
                            checkpoint=(trusted.height, trusted.hash), from_genesis=False).start()
        try:
            await again.until("the head from a newly learned checkpoint", lambda: again.at(chain))
            assert again.chain.anchor.height > old_lib.height
            fulls[1].produce(4 * 3)
            await again.until("the LIB", lambda: again.chain.lib.height == chain.ledger.lib_height)
            assert not again.sync.manager.bans and not again.sync.manager.penalties, again.lines
            await stuck.until("the refusal", lambda: stuck.sync.fatal is not None)
            message = str(stuck.sync.fatal)
            assert "older than the evidence window" in message and "[light] checkpoint" in message
            assert not stuck.sync.manager.bans
        finally:
            await again.stop()
            await stuck.stop()
            for full in fulls:
                await full.stop()
    run(scenario())
