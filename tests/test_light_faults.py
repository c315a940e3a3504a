"""Malicious peers against a light node: a wrong state proof, a forged finality entry, a header
from a producer the schedule does not name, a fork below the last irreversible block, a stale
chain announced as the head, a withheld finality entry. Each is detected, the peer banned, and
the node carries on with its honest peer (docs/protocol.md §13.7). Real ledgers and links, one
event loop; the liar listens on 127.0.0.2, a source apart from the honest peer's."""

import asyncio

import pytest

from chain.light.finality import FinalityEntry
from chain.p2p.light import FinalityMsg, StateMsg
from chain.p2p.messages import Hello
from chain.state.records import account_key
from tests.chainkit import TestChain
from tests.lightkit import Clock, FullPeer, Light, answer_of
from tests.test_light_finality import FOUR

LIAR_HOST = "127.0.0.2"
PARAMS = FOUR._replace(evidence_window=1000, unbonding_blocks=1000)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def honest_and_liar(tmp_path, make_liar, blocks=4 * 5):
    """An honest full peer, a liar made by ``make_liar(chain, clock)``, a light node that
    knows both; returns them after ``blocks`` blocks."""
    chain = TestChain(tmp_path / "full", n_agents=4, params=PARAMS)
    clock = Clock(chain.genesis)
    honest = await FullPeer(chain, clock).start()
    liar = await make_liar(chain, clock)
    light = await Light(tmp_path / "light", chain.genesis, clock,
                        [liar.address, honest.address]).start()
    honest.produce(blocks)
    return chain, honest, liar, light


async def banned_and_following(light, honest, liar, chain, blocks=4 * 10):
    """While the chain goes on, the liar ends up banned and the light node keeps following
    the honest peer."""
    for _ in range(blocks):
        if liar.key.pubkey in light.sync.manager.bans:
            break
        honest.produce(1)
        await light.until("the head", lambda: light.at(chain))
    assert liar.key.pubkey in light.sync.manager.bans, "\n".join(light.lines[-20:])
    honest.produce(4 * 3)
    await light.until("the head from the honest peer", lambda: light.at(chain))
    await light.until("the LIB", lambda: light.chain.lib.height == chain.ledger.lib_height)


async def close_all(*parts):
    for part in parts:
        await part.stop()


async def state_liar(chain, clock):
    """A full peer of ``chain`` whose every state value is changed (its proofs left as they
    were)."""
    liar = await FullPeer(chain, clock, host=LIAR_HOST).start()
    served = liar.network.light._on_get_state

    async def tampered(peer, request):
        answer = await answer_of(served, peer, request)
        proofs = tuple((value + b"\x00" if value is not None else b"\x10", proof)
                       for value, proof in answer.proofs or ())
        await peer.conn.send(StateMsg(answer.height, answer.block_hash, proofs))
    liar.network.light._on_get_state = tampered
    return liar


def test_a_wrong_state_proof_bans_the_peer(tmp_path):
    liar_of = state_liar

    async def scenario():
        chain, honest, liar, light = await honest_and_liar(tmp_path, liar_of)
        try:
            for _ in range(6):  # reads take turns between the peers
                await light.until("a LIB", lambda: light.chain.ready and light.chain.lib.height > 0)
                values, _, _ = await light.sync.read([account_key(chain.keys[0].address)])
                assert values[account_key(chain.keys[0].address)] is not None
            await banned_and_following(light, honest, liar, chain)
            assert light.sync.manager.penalties["bad_proof"]
        finally:
            await close_all(light, honest, liar)
    run(scenario())


def test_a_forged_finality_entry_bans_the_peer(tmp_path):
    async def liar_of(chain, clock):
        liar = await FullPeer(chain, clock, host=LIAR_HOST).start()
        served = liar.network.light._on_get_finality

        async def forged(peer, request):
            answer = await answer_of(served, peer, request)
            entries = []
            for raw in answer.entries:
                entry = FinalityEntry.decode(raw)
                signatures = (entry.proof.signatures[0][:-1] + b"\x01",) + \
                    entry.proof.signatures[1:]
                entries.append(entry._replace(proof=entry.proof._replace(
                    signatures=signatures)).encode())
            await peer.conn.send(FinalityMsg(answer.from_round, tuple(entries)))
        liar.network.light._on_get_finality = forged
        return liar

    async def scenario():
        chain, honest, liar, light = await honest_and_liar(tmp_path, liar_of)
        try:
            await banned_and_following(light, honest, liar, chain)
        finally:
            await close_all(light, honest, liar)
    run(scenario())


def test_a_header_from_an_unscheduled_producer_bans_the_peer(tmp_path):
    async def scenario():
        chain = TestChain(tmp_path / "full", n_agents=4, params=PARAMS)
        clock = Clock(chain.genesis)
        honest = await FullPeer(chain, clock).start()
        liar = await FullPeer(chain, clock, host=LIAR_HOST).start()
        light = await Light(tmp_path / "light", chain.genesis, clock,
                            [liar.address, honest.address]).start()
        try:
            honest.produce(4 * 3)
            await light.until("the head", lambda: light.at(chain))
            # the liar announces a block for the next slot signed by an agent that does not own it
            slot = chain.next_slot()
            owner = chain.ledger.producer_for(slot)
            intruder = next(a for a in chain.agents if a.pubkey != owner)
            block, _ = chain.ledger.build_block(chain.signers[intruder.pubkey], slot, [])
            from chain.p2p.messages import Headers
            for peer in list(liar.network.peers.values()):
                await peer.conn.send(Headers((block.header.encode(),)))
            await banned_and_following(light, honest, liar, chain)
            assert light.sync.manager.penalties["unscheduled"]
        finally:
            await close_all(light, honest, liar)
    run(scenario())


def test_a_fork_below_the_lib_bans_the_peer(tmp_path):
    async def scenario():
        chain = TestChain(tmp_path / "full", n_agents=4, params=PARAMS)
        fork = TestChain(tmp_path / "fork", n_agents=4, params=PARAMS)
        clock = Clock(chain.genesis)
        shared = [chain.block() for _ in range(4)]
        for block in shared:
            fork.ledger.apply_block(block)
        # the fork: the same producers skip one slot, then make a longer chain of their own
        fork.block(slot=fork.next_slot() + 1)
        for _ in range(4 * 30):  # longer than the honest chain gets in this test
            fork.block()
        honest = await FullPeer(chain, clock).start()
        light = await Light(tmp_path / "light", chain.genesis, clock, [honest.address]).start()
        liar = None
        try:
            honest.produce(4 * 5)
            await light.until("a LIB above the fork point",
                              lambda: light.at(chain) and light.chain.lib.height > 4)
            liar = await FullPeer(fork, clock, host=LIAR_HOST).start()
            liar.network.manager.hello = lambda: Hello(fork.ledger.head.height + 50,
                                                       fork.ledger.head.hash, 0, liar.network.port)
            light.sync.manager.add_seed(liar.address)
            await banned_and_following(light, honest, liar, chain)
            assert light.sync.manager.penalties["fork_below_lib"], (light.sync.manager.penalties, light.lines)
        finally:
            await close_all(*(p for p in (light, honest, liar) if p is not None))
    run(scenario())


def test_a_stale_chain_announced_as_the_head_bans_the_peer(tmp_path):
    async def scenario():
        chain = TestChain(tmp_path / "full", n_agents=4, params=PARAMS)
        stale = TestChain(tmp_path / "stale", n_agents=4, params=PARAMS)
        clock = Clock(chain.genesis)
        honest = await FullPeer(chain, clock).start()
        for block in honest.produce(6):
            stale.ledger.apply_block(block)
        liar = await FullPeer(stale, clock, host=LIAR_HOST).start()
        liar.network.manager.hello = lambda: Hello(10_000, stale.ledger.head.hash, 0,
                                                   liar.network.port)

        async def refuse(peer, raw, relay=True):
            return False  # the liar stays stale even when peer exchange links it to honest
        liar.network._take_block = refuse
        light = await Light(tmp_path / "light", chain.genesis, clock,
                            [liar.address, honest.address]).start()
        try:
            honest.produce(4 * 3)
            await banned_and_following(light, honest, liar, chain)
            assert light.sync.manager.penalties["stale"], "\n".join(light.lines)
        finally:
            await close_all(light, honest, liar)
    run(scenario())


def test_a_withheld_finality_entry_bans_the_peer(tmp_path):
    async def liar_of(chain, clock):
        liar = await FullPeer(chain, clock, host=LIAR_HOST).start()

        async def withheld(peer, request):
            await peer.conn.send(FinalityMsg(request.from_round, ()))
        liar.network.light._on_get_finality = withheld
        return liar

    async def scenario():
        chain, honest, liar, light = await honest_and_liar(tmp_path, liar_of, blocks=0)
        honest.mirrors.append(liar)
        try:
            await banned_and_following(light, honest, liar, chain)
            assert light.sync.manager.penalties["withheld"]
        finally:
            await close_all(light, honest, liar)
    run(scenario())


@pytest.mark.parametrize("reason", ["bad_proof", "unscheduled", "fork_below_lib"])
def test_lies_cost_a_ban_at_once(reason):
    from chain.light.sync import BAN, POINTS
    assert POINTS[reason] == BAN
