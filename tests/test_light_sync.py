"""A light node syncing from real full nodes over real links, in one event loop (no slot clock):
from genesis and from a checkpoint learned from agreeing peers, through a producer-set change,
reading values with proofs, resuming after a restart (docs/protocol.md §13.7)."""

import asyncio

from chain.state.records import account_key
from chain.tx import Stake, Transfer, Vote
from tests.chainkit import COIN, TestChain
from tests.lightkit import Clock, FullPeer, Light
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
        finally:
            await light.stop()
        # a restart resumes from the stored window and finality
        again = Light(tmp_path / "light", chain.genesis, clock, [f.address for f in fulls],
                      agree=2, from_genesis=False)
        assert again.chain.ready and again.chain.tip.header.hash == chain.ledger.head.hash
        await again.start()
        try:
            fulls[1].produce(4)
            await again.until("the head after a restart", lambda: again.at(chain))
        finally:
            await again.stop()
            for full in fulls:
                await full.stop()
    run(scenario())
