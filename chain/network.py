"""The node's peers: connections, gossip of transactions and blocks, chain sync, peer scoring.

Built on the encrypted transport of ``chain.p2p`` (docs/protocol.md §12). The node supplies
callbacks for what belongs to it (admitting transactions durably, reacting to chain changes,
reporting double production), so this module needs nothing above ``chain``.
"""

import asyncio
import time
from collections import OrderedDict

from chain.block import Block, Header
from chain.errors import BlockRejected, StaleBlock
from chain.p2p import (BlockMsg, Blocks, ConnectionClosed, DecodeError, GetBlocks, GetHeaders,
                       GetProof, HandshakeError, Headers, Hello, P2PError, Ping, Pong, ProofMsg,
                       TxMsg, Txs, accept, error_reason, open_connection)

SYNC_BATCH = 200
GOSSIP_FLUSH_S = 0.05
IDLE_PING_S = 10.0
IDLE_DROP_S = 30.0
REDIAL_S = 1.0
BAN_S = 60.0
BAN_SCORE = -100
PENALTY = {"invalid_block": 25, "malformed": 100, "bad_mac": 100, "oversize": 100}
SEEN_LIMIT = 20_000


class Peer:
    """One connected, authenticated peer and what we know of it."""

    def __init__(self, conn):
        self.conn = conn
        self.pubkey = conn.peer_pubkey
        self.head_height = 0
        self.lib_height = 0
        self.listen = None
        self.agent = ""
        self.score = 0
        self.last_seen = time.monotonic()
        self.syncing = False

    def describe(self):
        return {"pubkey": self.pubkey.hex(), "agent": self.agent, "address": self.listen,
                "head_height": self.head_height, "lib_height": self.lib_height,
                "score": self.score, "initiator": self.conn.initiator}


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
    """Keeps peers connected, gossips and syncs; one per node process."""

    def __init__(self, ledger, keypair, *, host, port, seeds, max_peers, submit, on_chain_change,
                 on_double_production, now_ms, log, agent_name="", on_block_seen=None):
        self.ledger, self.keypair = ledger, keypair
        self.host, self.port, self.seeds, self.max_peers = host, port, list(seeds), max_peers
        self.submit, self.on_chain_change = submit, on_chain_change
        self.on_double_production = on_double_production
        self.on_block_seen = on_block_seen or (lambda block: None)
        self.now_ms, self.log, self.agent_name = now_ms, log, agent_name
        self.peers = {}          # node pubkey -> Peer
        self.banned = {}         # node pubkey or host -> monotonic time the ban ends
        self.allowed = None      # test partitions: the node pubkeys we may talk to, or None
        self.seen_blocks, self.seen_txs = SeenSet(), SeenSet()
        self.slot_headers = OrderedDict()  # (producer, slot) -> header bytes, for equivocation
        self.outbox = []         # raw transactions waiting for the next gossip flush
        self.inbox = []          # raw transactions from peers, admitted together each flush
        self.server = None
        self.tasks = set()

    # -- life cycle -----------------------------------------------------------------------------

    async def start(self):
        self.server = await asyncio.start_server(self._accepted, self.host, self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        self._spawn(self._dial_forever())
        self._spawn(self._gossip_forever())

    async def stop(self):
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        for peer in list(self.peers.values()):
            await peer.conn.close()
        self.peers.clear()

    def _spawn(self, coro):
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # -- connecting -----------------------------------------------------------------------------

    async def _accepted(self, reader, writer):
        host = (writer.get_extra_info("peername") or ("?",))[0]
        if self._is_banned(host) or len(self.peers) >= self.max_peers:
            writer.close()
            return
        try:
            conn = await accept(reader, writer, self.keypair, self.ledger.chain_id,
                                self.ledger.genesis.hash)
        except P2PError as exc:
            self.log(f"p2p: refused {host}: handshake {exc.reason}")
            return
        await self._run_peer(conn)

    async def _dial_forever(self):
        while True:
            for seed in self.seeds:
                if not self._connected_to(seed):
                    self._spawn(self._dial(seed))
            await asyncio.sleep(REDIAL_S)

    async def _dial(self, seed):
        host, _, port = seed.rpartition(":")
        if self._is_banned(host):
            return
        try:
            conn = await open_connection(host, int(port), self.keypair, self.ledger.chain_id,
                                         self.ledger.genesis.hash)
        except HandshakeError as exc:
            if exc.reason != "unreachable":
                self.log(f"p2p: {seed}: handshake {exc.reason}")
            return
        conn.dialed = seed
        await self._run_peer(conn)

    def add_seed(self, seed):
        """Dial ``host:port`` from now on (a peer found by mDNS); False when already known."""
        if seed in self.seeds:
            return False
        self.seeds.append(seed)
        self._spawn(self._dial(seed))
        return True

    def _connected_to(self, seed):
        return any(getattr(p.conn, "dialed", None) == seed or p.listen == seed
                   for p in self.peers.values())

    def _is_banned(self, key):
        until = self.banned.get(key)
        return until is not None and until > time.monotonic()

    def _admit(self, conn):
        """Register ``conn``; with two links to one peer, both sides keep the one dialled by the
        lower node key."""
        pubkey = conn.peer_pubkey
        if self._is_banned(pubkey) or (self.allowed is not None and pubkey not in self.allowed):
            return None
        existing = self.peers.get(pubkey)
        if existing is not None:
            lower_dials = conn.initiator == (self.keypair.pubkey < pubkey)
            if not lower_dials:
                return None
            self._spawn(existing.conn.close())
        peer = Peer(conn)
        self.peers[pubkey] = peer
        return peer

    async def _run_peer(self, conn):
        peer = self._admit(conn)
        if peer is None:
            await conn.close()
            return
        try:
            await conn.send(self._hello())
            await self._serve(peer)
        except (ConnectionClosed, asyncio.CancelledError):
            pass
        except (P2PError, DecodeError) as exc:
            self._penalise(peer, error_reason(exc), str(exc))
        finally:
            if self.peers.get(peer.pubkey) is peer:
                del self.peers[peer.pubkey]
            await conn.close()

    def _hello(self):
        head = self.ledger.head
        return Hello(head.height, head.hash, self.ledger.lib_height, self.port, self.agent_name)

    async def _serve(self, peer):
        while not peer.conn.closed:
            try:
                message = await asyncio.wait_for(peer.conn.recv(), IDLE_PING_S)
            except asyncio.TimeoutError:
                if time.monotonic() - peer.last_seen > IDLE_DROP_S:
                    return
                await peer.conn.send(Ping(int(time.monotonic() * 1000)))
                continue
            peer.last_seen = time.monotonic()
            await self._dispatch(peer, message)

    def _penalise(self, peer, reason, detail):
        peer.score -= PENALTY.get(reason, 25)
        self.log(f"p2p: peer {peer.agent or peer.pubkey.hex()[:12]}: {reason} ({detail}); "
                 f"score {peer.score}")
        if peer.score <= BAN_SCORE:
            until = time.monotonic() + BAN_S
            self.banned[peer.pubkey] = until
            host = peer.conn.remote[0] if peer.conn.remote else None
            if host not in (None, "127.0.0.1", "::1"):  # loopback hosts many honest nodes
                self.banned[host] = until
            self._spawn(peer.conn.close())
            self.log(f"p2p: banned {peer.agent or peer.pubkey.hex()[:12]} for {BAN_S:.0f}s")

    # -- messages -------------------------------------------------------------------------------

    async def _dispatch(self, peer, message):
        handler = self._handlers().get(type(message))
        if handler is not None:
            await handler(peer, message)

    def _handlers(self):
        return {Hello: self._on_hello, TxMsg: self._on_tx, Txs: self._on_txs,
                BlockMsg: self._on_block, GetBlocks: self._on_get_blocks, Blocks: self._on_blocks,
                GetHeaders: self._on_get_headers, GetProof: self._on_get_proof,
                Ping: self._on_ping}

    async def _on_hello(self, peer, hello):
        peer.head_height, peer.lib_height, peer.agent = hello.head_height, hello.lib_height, \
            hello.agent
        if hello.listen_port and peer.conn.remote:
            peer.listen = f"{peer.conn.remote[0]}:{hello.listen_port}"
        await self._sync_from(peer)

    async def _on_ping(self, peer, ping):
        await peer.conn.send(Pong(ping.nonce))

    async def _on_tx(self, peer, message):
        self._admit_txs([message.raw])

    async def _on_txs(self, peer, message):
        self._admit_txs(list(message.raws))

    def _admit_txs(self, raws):
        self.inbox.extend(raw for raw in raws if self.seen_txs.add(raw))

    def _admit_inbox(self):
        """Admit what peers sent since the last flush in one batch (one signature batch, one
        LMDB commit); the node re-gossips what it accepts."""
        batch, self.inbox = self.inbox, []
        if batch:
            self.submit(batch)

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

    async def _on_get_blocks(self, peer, request):
        raws, size = [], 0
        for height in range(request.from_height, request.from_height + request.count):
            block_hash = self.ledger.block_hash_at(height)
            if block_hash is None:
                break
            raw = self.ledger.block_bytes(block_hash)
            if size + len(raw) > 3 << 20:
                break
            raws.append(raw)
            size += len(raw)
        await peer.conn.send(Blocks(tuple(raws)))

    async def _on_blocks(self, peer, message):
        peer.syncing = False
        for raw in message.blocks:
            if not await self._take_block(peer, raw, relay=False):
                return
        if message.blocks and peer.head_height > self.ledger.head.height:
            await self._request_blocks(peer, Block.decode(message.blocks[-1]).height + 1)

    async def _on_get_headers(self, peer, request):
        headers = []
        for height in range(request.from_height, request.from_height + request.count):
            block_hash = self.ledger.block_hash_at(height)
            if block_hash is None:
                break
            headers.append(self.ledger.header_bytes(block_hash))
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
                batch, self.outbox = self.outbox[:1000], self.outbox[1000:]
                self._send_all(Txs(tuple(batch)), None)

    def _send_all(self, message, exclude):
        for pubkey, peer in list(self.peers.items()):
            if pubkey != exclude:
                self._spawn(self._send(peer, message))

    async def _send(self, peer, message):
        try:
            await peer.conn.send(message)
        except (P2PError, OSError, ValueError):
            await peer.conn.close()

    # -- admin ----------------------------------------------------------------------------------

    def set_allowed(self, pubkeys):
        """Talk only to ``pubkeys`` (None: everyone). For partition tests."""
        self.allowed = None if pubkeys is None else set(pubkeys)
        for pubkey, peer in list(self.peers.items()):
            if self.allowed is not None and pubkey not in self.allowed:
                self._spawn(peer.conn.close())

    def status(self):
        return [peer.describe() for peer in self.peers.values()]
