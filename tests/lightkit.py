"""A light node against full nodes in one event loop, for fast light-client tests: real ledgers
on LMDB, real encrypted links on 127.0.0.1, blocks produced by the test (no slot clock).

``FullPeer`` is a TestChain served by a real ``PeerNetwork``; ``Light`` is a LightChain kept by a
real ``LightSync``. Time is the chain's own: ``clock`` is the head's slot time, so a test decides
when blocks happen and nothing waits on the wall clock.
"""

import asyncio
import time

from chain.block import Header
from chain.keys import KeyPair
from chain.light.chain import LightChain
from chain.light.entries import entry_at
from chain.light.finality import FinalityEntry
from chain.light.follow import HeaderRules
from chain.light.genesis import genesis_anchor
from chain.light.store import LightStore
from chain.light.sync import BOOTSTRAP_KEYS, LightSync
from chain.network import PeerNetwork
from chain.p2p.peers import PeerLimits
from chain.state.consensus import RoundInfo
from chain.state.records import ROUND_KEY

LIMITS = PeerLimits(exempt_loopback=True)


class Clock:
    """The test's time: the slot time of the newest block any full peer made."""

    def __init__(self, genesis):
        self.genesis, self.ms = genesis, genesis.genesis_time_ms

    def __call__(self):
        return self.ms

    def at_slot(self, slot):
        self.ms = max(self.ms, self.genesis.genesis_time_ms + slot * self.genesis.params.slot_ms)


class FullPeer:
    """A TestChain served to the network by a real PeerNetwork."""

    def __init__(self, chain, clock, host="127.0.0.1", log=None):
        self.chain, self.clock, self.host = chain, clock, host
        self.key = KeyPair.generate()
        self.lines = []
        self.network = PeerNetwork(chain.ledger, self.key, host=host, port=0, seeds=[],
                                   limits=LIMITS, submit=self._submit,
                                   on_chain_change=lambda block, result: None,
                                   on_double_production=lambda a, b: None, now_ms=clock,
                                   log=log or self.lines.append)
        self.received = []
        self.mirrors = []  # other FullPeers of the same ledger that announce its blocks too

    def _submit(self, raws):
        self.received.extend(raws)
        return []

    async def start(self):
        await self.network.start()
        return self

    @property
    def address(self):
        return f"{self.host}:{self.network.port}"

    def produce(self, n=1, txs=()):
        """``n`` blocks (the first holding ``txs``), announced to every peer."""
        made = []
        for i in range(n):
            block = self.chain.block(txs if i == 0 else ())
            self.clock.at_slot(block.header.slot)
            for peer in [self] + self.mirrors:
                peer.network.broadcast_block(block)
            made.append(block)
        return made

    async def stop(self):
        await self.network.stop()


class Light:
    """A light node's chain and sync, in this loop."""

    def __init__(self, path, genesis, clock, seeds, checkpoint=None, agree=1, from_genesis=True,
                 window=256, host="127.0.0.1"):
        self.store = LightStore(str(path))
        rules = HeaderRules(genesis.chain_id, genesis.params, genesis.genesis_time_ms)
        self.chain = LightChain(self.store, rules, window=window)
        self.lines = []
        anchor = genesis_anchor(genesis, BOOTSTRAP_KEYS) if from_genesis else None
        self.sync = LightSync(self.chain, KeyPair.generate(), genesis, host=host, port=0,
                              seeds=list(seeds), limits=PeerLimits(), log=self.lines.append,
                              now_ms=clock, checkpoint=checkpoint, agree=agree,
                              anchor_genesis=anchor)

    async def start(self):
        await self.sync.start()
        return self

    async def stop(self):
        await self.sync.stop()
        self.store.close()

    async def until(self, what, check, timeout=20.0):
        """Wait (polling) until ``check()`` is true; fails with ``what`` and the node's log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; light log:\n" + "\n".join(
            self.lines[-30:]))

    def at(self, chain):
        """True when the light tip is the full chain's head."""
        tip = self.chain.tip
        return tip is not None and tip.header.hash == chain.ledger.head.hash


def chain_material(chain):
    """What a light node gets from peers about a whole TestChain: its headers, the ``round``
    record in each block's state (by height), its finality entries (by the height of the block
    that justified their round) and the genesis values it bootstraps from."""
    ledger = chain.ledger
    head = ledger.head.height
    headers = [Header.decode(ledger.header_bytes(ledger.block_hash_at(h))) for h in range(head + 1)]
    with chain.store.read() as txn:
        rounds = {h: ledger.smt.get(txn, h, ROUND_KEY) for h in range(head + 1)}
        genesis_values = {k: ledger.smt.get(txn, 0, k) for k in BOOTSTRAP_KEYS}
    entries = entries_by_height(chain)
    return headers, rounds, entries, genesis_values


def entries_by_height(chain):
    """The finality entries a full node of ``chain`` can make, keyed by the height of the
    block that justified their round."""
    out = {}
    with chain.store.read() as txn:
        for height in range(1, chain.ledger.head.height + 1):
            made = entry_at(chain.ledger, txn, height)
            if made is not None:
                out[height] = FinalityEntry.decode(made[1])
    return out


def keep_headers(light, headers, rounds, entries, batch=128):
    """Check ``headers`` onto the LightChain ``light`` from its tip as its sync does: each
    round's record proven at its first block, finality entries accepted as they come, and the
    checked headers stored ``batch`` at a time (one transaction per peer message)."""
    branch = light.branch()
    for header in headers:
        branch.add(header)
        first = branch.pending_round()
        if first is not None:
            branch.set_round_info(RoundInfo.decode(rounds[first.height]))
        if header.height in entries:
            light.accept_entry(entries[header.height])
        if len(branch.links) == batch:
            light.commit(branch)
            branch = light.branch()
    light.commit(branch)


async def answer_of(handler, peer, request):
    """What a full peer's ``handler`` would send ``peer`` for ``request`` (so a test can send
    something else instead)."""
    real, sent = peer.conn.send, []

    async def capture(message):
        sent.append(message)
    peer.conn.send = capture
    try:
        await handler(peer, request)
    finally:
        peer.conn.send = real
    return sent[0]
