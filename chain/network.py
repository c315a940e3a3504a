"""The node's peers: gossip of transactions and blocks, chain sync, blame for invalid ones.

Built on the encrypted transport of ``chain.p2p`` (docs/protocol.md §12); the links themselves
(admission, slots, scores, bans, dialling) belong to ``chain.p2p.peers.PeerManager``. The node
supplies callbacks for what belongs to it (admitting transactions durably, reacting to chain
changes, reporting double production), so this module needs nothing above ``chain``.
"""

import asyncio
from collections import OrderedDict

from chain.block import Block, Header
from chain.block_limits import frame_limit
from chain.errors import BlockRejected, StaleBlock
from chain.p2p import (BlockMsg, Blocks, DecodeError, GetBlocks, GetHeaders, GetProof, Headers,
                       Hello, P2PError, ProofMsg, TxMsg, Txs)
from chain.p2p.messages import MAX_TXS
from chain.p2p.peers import PeerManager
from chain.light.serve import LightServer, light_form

SYNC_BATCH = 200            # blocks asked for at once; the answer stops at the frame limit
ITEM_OVERHEAD = 8           # a list item's length prefix (and the list's count) in a message
GOSSIP_FLUSH_S = 0.05
SEEN_LIMIT = 20_000
# What a peer pays for each transaction it relayed that failed admission (§12.7). No honest node
# relays one that fails for a reason independent of state: 10 points. One that fails against our
# state (a block made it invalid meanwhile, two nodes saw different pending transactions, a
# contract that hit this node's backstop): 1. Duplicates, nonce races and our own full mempool:
# nothing.
TX_INVALID = frozenset({"malformed", "oversize", "wrong_chain", "bad_signature", "fee_too_low",
                        "invalid_amount", "too_many_votes", "invalid_name", "invalid_gas"})
TX_RACES = frozenset({"duplicate", "bad_nonce", "mempool_full"})
TX_PENALTY = {"invalid_tx": 10, "failed_tx": 1}


class SeenSet:
    """A bounded set of recent ids (oldest forgotten first)."""

    def __init__(self, limit=SEEN_LIMIT):
        self.items, self.limit = OrderedDict(), limit

    def __contains__(self, item):
        return item in self.items

    def add(self, item):
        """Remember ``item``; False when it was already there."""
        if item in self.items:
            return False
        self.items[item] = None
        if len(self.items) > self.limit:
            self.items.popitem(last=False)
        return True


class PeerNetwork:
    """Gossips and syncs over the links a ``PeerManager`` keeps; one per node process."""

    def __init__(self, ledger, keypair, *, host, port, seeds, limits, submit, on_chain_change,
                 on_double_production, now_ms, log, agent_name="", on_block_seen=None,
                 book=None):
        self.ledger, self.keypair = ledger, keypair
        self.submit, self.on_chain_change = submit, on_chain_change
        self.on_double_production = on_double_production
        self.on_block_seen = on_block_seen or (lambda block: None)
        self.now_ms, self.log, self.agent_name = now_ms, log, agent_name
        self.light = LightServer(ledger)
        # Every frame on this network holds the largest valid block (docs/protocol.md §12.1).
        self.max_frame = frame_limit(ledger.params)
        self.manager = PeerManager(keypair, ledger.chain_id, ledger.genesis.hash, host=host,
                                   port=port, seeds=seeds, limits=limits, hello=self._hello,
                                   dispatch=self._dispatch, log=log, book=book,
                                   max_frame=self.max_frame)
        self.peers = self.manager.peers  # node pubkey -> Peer
        self.seen_blocks, self.seen_txs = SeenSet(), SeenSet()
        self.slot_headers = OrderedDict()  # (producer, slot) -> header bytes, for equivocation
        self.outbox = []         # raw transactions waiting for the next gossip flush
        self.inbox = []          # raw transactions from peers, admitted together each flush

    # -- life cycle -----------------------------------------------------------------------------

    async def start(self):
        await self.manager.start()
        self._spawn(self._gossip_forever())

    async def stop(self):
        await self.manager.stop()

    @property
    def port(self):
        return self.manager.port

    def _spawn(self, coro):
        return self.manager.spawn(coro)

    def add_seed(self, seed):
        """Dial ``host:port`` from now on (a peer found by mDNS); False when already known."""
        return self.manager.add_seed(seed)

    def _penalise(self, peer, reason, detail):
        self.manager.penalise(peer, reason, detail)

    def _hello(self):
        head = self.ledger.head
        return Hello(head.height, head.hash, self.ledger.lib_height, self.port, self.agent_name)

    # -- messages -------------------------------------------------------------------------------

    async def _dispatch(self, peer, message):
        handler = self._handlers().get(type(message))
        if handler is not None:
            await handler(peer, message)

    def _handlers(self):
        return {Hello: self._on_hello, TxMsg: self._on_tx, Txs: self._on_txs,
                BlockMsg: self._on_block, GetBlocks: self._on_get_blocks, Blocks: self._on_blocks,
                GetHeaders: self._on_get_headers, GetProof: self._on_get_proof,
                **self.light.handlers()}

    async def _on_hello(self, peer, hello):
        await self._sync_from(peer)

    async def _on_tx(self, peer, message):
        self._admit_txs(peer, [message.raw])

    async def _on_txs(self, peer, message):
        self._admit_txs(peer, message.raws)

    def _admit_txs(self, peer, raws):
        self.inbox.extend((peer, raw) for raw in raws if self.seen_txs.add(raw))

    def _admit_inbox(self):
        """Admit what peers sent since the last flush in one batch (one signature batch, one
        LMDB commit, contract dry runs off the loop); the node re-gossips what it accepts, and
        its senders answer for the rest."""
        batch, self.inbox = self.inbox, []
        if batch:
            self._spawn(self._admit_batch(batch))

    async def _admit_batch(self, batch):
        results = await self.submit([raw for _, raw in batch],
                                    [peer.pubkey for peer, _ in batch])
        self._blame_for_txs(batch, results)

    def _blame_for_txs(self, batch, results):
        """Penalise each peer for the transactions it relayed that failed admission (§12.7)."""
        faults = {}  # peer -> {"invalid_tx" or "failed_tx": [count, reasons]}
        for (peer, _), result in zip(batch, results):
            reason = None if result["accepted"] else result["reason"]
            if reason is None or reason in TX_RACES:
                continue
            kind = "invalid_tx" if reason in TX_INVALID else "failed_tx"
            tally = faults.setdefault(peer, {}).setdefault(kind, [0, set()])
            tally[0] += 1
            tally[1].add(reason)
        for peer, kinds in faults.items():
            for kind, (count, reasons) in kinds.items():
                self.manager.penalise(peer, kind, f"{count} relayed: {', '.join(sorted(reasons))}",
                                      points=count * TX_PENALTY[kind])

    async def _on_block(self, peer, message):
        await self._take_block(peer, message.raw)

    async def _take_block(self, peer, raw, relay=True):
        """Decode, check and add one block; returns False when the peer must be synced from."""
        try:
            block = Block.decode(raw)
        except DecodeError as exc:
            self._penalise(peer, "malformed", str(exc))
            return True
        if block.hash in self.seen_blocks:
            return True
        self._watch_for_double_production(block.header)
        self.on_block_seen(block)
        try:
            result = self.ledger.add_block(block, self.now_ms())
        except StaleBlock:
            self.seen_blocks.add(block.hash)
            return True
        except BlockRejected as exc:
            self.seen_blocks.add(block.hash)
            self._penalise(peer, "invalid_block", f"block {block.height}: {exc}")
            return True
        peer.head_height = max(peer.head_height, block.height)
        if result.status == "orphan":  # not seen yet: it must be taken again once synced
            await self._sync_from(peer)
            return False
        self.seen_blocks.add(block.hash)
        if result.status in ("applied", "reorganised"):
            self.on_chain_change(block, result)
            if relay:
                self.broadcast_block(block, exclude=peer.pubkey)
        return True

    def _batch(self, items):
        """The longest prefix of ``items`` (encoded blocks, headers or transactions) that fits
        one message of this network; always at least one item (any valid one fits a frame)."""
        out, size = [], 16
        for item in items:
            size += len(item) + ITEM_OVERHEAD
            if out and size > self.max_frame:
                break
            out.append(item)
        return out

    def _chain_items(self, start, count, read):
        for height in range(start, start + count):
            raw = read(height)
            if raw is None:
                return
            yield raw

    async def _on_get_blocks(self, peer, request):
        raws = self._batch(self._chain_items(request.from_height, request.count,
                                             self.ledger.block_bytes_at))
        await peer.conn.send(Blocks(tuple(raws)))

    async def _on_blocks(self, peer, message):
        peer.syncing = False
        for raw in message.blocks:
            if not await self._take_block(peer, raw, relay=False):
                return
        if message.blocks and peer.head_height > self.ledger.head.height:
            await self._request_blocks(peer, Block.decode(message.blocks[-1]).height + 1)

    async def _on_get_headers(self, peer, request):
        headers = self._batch(self._chain_items(request.from_height, request.count,
                                                self.ledger.header_bytes_at))
        await peer.conn.send(Headers(tuple(headers)))

    async def _on_get_proof(self, peer, request):
        value, proof, header = self.ledger.state_proof(request.key, request.height)
        await peer.conn.send(ProofMsg(header.height, value, proof.encode(), header.encode()))

    async def _sync_from(self, peer):
        """Ask a peer that is ahead for the blocks above our last irreversible one."""
        if peer.head_height > self.ledger.head.height and not peer.syncing:
            await self._request_blocks(peer, self.ledger.lib_height + 1)

    async def _request_blocks(self, peer, from_height):
        peer.syncing = True
        await peer.conn.send(GetBlocks(from_height, SYNC_BATCH))

    # -- double production ----------------------------------------------------------------------

    def _watch_for_double_production(self, header):
        """Remember one signed header per (producer, slot); a second, different one is
        evidence, reported once."""
        if not header.signature_valid(self.ledger.chain_id):
            return
        key = (header.producer, header.slot)
        raw = header.encode()
        first = self.slot_headers.get(key)
        if first is None:
            self.slot_headers[key] = raw
            if len(self.slot_headers) > SEEN_LIMIT:
                self.slot_headers.popitem(last=False)
        elif first and first != raw and Header.decode(first).hash != header.hash:
            self.slot_headers[key] = b""  # reported: don't report again
            self.on_double_production(first, raw)

    # -- gossip ---------------------------------------------------------------------------------

    def broadcast_block(self, block, exclude=None):
        self.seen_blocks.add(block.hash)
        self._watch_for_double_production(block.header)
        self._send_all(BlockMsg(block.encode()), exclude)

    def split_broadcast(self, block, twin):
        """Send ``block`` to half of the peers and ``twin`` to the rest (equivocation tests)."""
        self.seen_blocks.add(block.hash)
        self.seen_blocks.add(twin.hash)
        peers = sorted(self.peers.values(), key=lambda p: p.pubkey)
        for i, peer in enumerate(peers):
            self._spawn(self._send(peer, BlockMsg((block if i % 2 == 0 else twin).encode())))

    def broadcast_txs(self, raws):
        """Queue accepted transactions for the next gossip flush (peers drop what they have)."""
        for raw in raws:
            self.seen_txs.add(raw)
        self.outbox.extend(raws)

    async def _gossip_forever(self):
        while True:
            await asyncio.sleep(GOSSIP_FLUSH_S)
            self._admit_inbox()
            while self.outbox:
                batch = self._batch(self.outbox[:MAX_TXS])
                self.outbox = self.outbox[len(batch):]
                self._send_all(Txs(tuple(batch)), None)

    def _send_all(self, message, exclude):
        light = None  # what light nodes get instead: headers only, no transactions
        for pubkey, peer in list(self.peers.items()):
            if pubkey == exclude:
                continue
            shown = message
            if getattr(peer, "headers_only", False):
                light = light or (light_form(message),)
                shown = light[0]
            if shown is not None:
                self._spawn(self._send(peer, shown))

    async def _send(self, peer, message):
        try:
            await peer.conn.send(message)
        except (P2PError, OSError, ValueError):
            await peer.conn.close()

    # -- admin ----------------------------------------------------------------------------------

    def set_allowed(self, pubkeys):
        """Talk only to ``pubkeys`` (None: everyone). For partition tests."""
        self.manager.set_allowed(pubkeys)

    def status(self):
        return [peer.describe() for peer in self.peers.values()]
