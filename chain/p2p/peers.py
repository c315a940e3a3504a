"""Peer management: admission, connection slots, scores and bans, dialling, peer exchange (§12.7).

``PeerManager`` owns the listening socket and every link. It refuses what the admission limits do
not allow before reading a byte, runs the handshake (the responder signs nothing before the
initiator has proved its key, and ``check_peer`` turns away banned keys, full slots and
crowded sources first), keeps ``max_outbound`` of its ``max_peers`` slots for links it dials
itself, scores peers and bans bad ones by node key and by source address, and dials its seeds
and the addresses of its address book while outbound slots are free. It answers Ping and Peers
itself and hands every other message to ``dispatch``. It knows nothing of the ledger; refusals
and failures are counted in ``stats()`` and logged at a bounded rate.
"""

import asyncio
import time
from collections import Counter
from typing import NamedTuple

from chain.p2p import error_reason
from chain.p2p.addressbook import (LOOPBACK_SCOPE, AddressBook, format_address, parse_address,
                                   scope_of)
from chain.p2p.admission import LOOPBACK, Admission, BanList, source_of
from chain.p2p.connection import accept, open_connection
from chain.p2p.eventlog import BoundedLog
from chain.p2p.frames import MAX_FRAME, ConnectionClosed, P2PError
from chain.p2p.handshake import SELF_CONNECTION, UNREACHABLE
from chain.p2p.messages import MAX_PEERS, Hello, Peers, Ping, Pong
from edge._fast import DecodeError

IDLE_PING_S = 10.0
IDLE_DROP_S = 30.0
REDIAL_S = 1.0
REDIAL_MAX_S = 10.0       # longest wait between two dials of a seed that keeps failing
HOUSEKEEPING_S = 5.0
BOOK_FLUSH_S = 30.0       # how often the address book is written to LMDB
PEX_INTERVAL_S = 60.0     # we send Peers on a link at most this often (asking or answering)
PEX_MIN_S = 10.0          # a link's Peers messages closer together than this are ignored
BAN_S = 60.0
BAN_SCORE = -100
SCORE_RECOVERY_PER_MIN = 10
PENALTY = {"invalid_block": 25, "malformed": 100, "bad_mac": 100, "oversize": 100}
DEFAULT_PENALTY = 25
# Handshake failures that only a broken or hostile peer causes, and their fault points (§12.7).
HANDSHAKE_FAULTS = {"bad_magic": 20, "bad_version": 10, "wrong_chain": 10, "wrong_genesis": 10,
                    "malformed": 20, "bad_key": 20, "bad_auth": 20, "oversize": 20}

# Refusal reasons after the initiator proved its key (before we sign anything for it).
BANNED_KEY = "banned_key"
NOT_ALLOWED = "not_allowed"
INBOUND_FULL = "inbound_full"
SOURCE_PEERS = "source_peers"
DUPLICATE = "duplicate"


class PeerLimits(NamedTuple):
    """The ``[p2p]`` limits of a node (docs in README: Configuration)."""
    max_peers: int = 24
    max_outbound: int = 8
    handshakes_per_minute: int = 20
    peers_per_address: int = 4
    exempt_loopback: bool = False   # [testing]: 127.0.0.1 and ::1 skip per-address limits

    @property
    def max_inbound(self):
        return self.max_peers - self.max_outbound


class Peer:
    """One connected, authenticated peer and what we know of it."""

    def __init__(self, conn):
        self.conn = conn
        self.pubkey = conn.peer_pubkey
        self.host = conn.remote[0] if conn.remote else ""
        self.source = source_of(self.host)
        self.head_height = 0
        self.lib_height = 0
        self.listen = None
        self.agent = ""
        self.peers_told = self.peers_heard = float("-inf")  # last Peers sent / taken (monotonic)
        self.score = 0
        self.scored = time.monotonic()
        self.last_seen = time.monotonic()
        self.syncing = False

    @property
    def inbound(self):
        return not self.conn.initiator

    @property
    def name(self):
        return self.agent or self.pubkey.hex()[:12]

    def describe(self):
        return {"pubkey": self.pubkey.hex(), "agent": self.agent, "address": self.listen,
                "remote": f"{self.host}:{self.conn.remote[1]}" if self.conn.remote else None,
                "head_height": self.head_height, "lib_height": self.lib_height,
                "score": self.score, "initiator": self.conn.initiator}


class PeerManager:
    """Keeps the links of one node; ``dispatch(peer, message)`` gets every message but Ping
    and Pong (Hello after the peer's fields are updated from it)."""

    def __init__(self, keypair, chain_id, genesis_hash, *, host, port, seeds, limits, hello,
                 dispatch, log, book=None, max_frame=MAX_FRAME):
        if not 1 <= limits.max_outbound < limits.max_peers:
            raise ValueError("max_outbound must be at least 1 and below max_peers")
        self.keypair, self.chain_id, self.genesis_hash = keypair, chain_id, genesis_hash
        self.max_frame = max_frame   # the network's frame limit (chain/block_limits.py)
        self.host, self.port, self.seeds, self.limits = host, port, list(seeds), limits
        self.hello, self.dispatch = hello, dispatch
        self.events = BoundedLog(log)
        self.bans = BanList()
        self.admission = Admission(limits.handshakes_per_minute, bans=self.bans,
                                   exempt=LOOPBACK if limits.exempt_loopback else ())
        self.book = book if book is not None else AddressBook()
        self.own = set()         # addresses that turned out to be this node
        self.peers = {}          # node pubkey -> Peer
        self.allowed = None      # test partitions: the node pubkeys we may talk to, or None
        self.dialing = set()     # addresses being dialled
        self.retry = {}          # address -> (consecutive failures, monotonic time of next dial)
        self.refused = Counter()     # reason -> connections refused by our limits and bans
        self.failed = Counter()      # (direction, reason) -> handshakes that failed
        self.penalties = Counter()   # reason -> penalties given to peers
        self.server = None
        self.tasks = set()

    # -- life cycle -----------------------------------------------------------------------------

    async def start(self):
        self.server = await asyncio.start_server(self._accepted, self.host, self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        if parse_address(f"{self.host}:{self.port}") is not None:
            self.own.add(format_address(self.host, self.port))
        self.spawn(self._dial_forever())
        self.spawn(self._housekeeping_forever())

    async def stop(self):
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        for peer in list(self.peers.values()):
            await peer.conn.close()
        self.peers.clear()
        self.events.flush(force=True)
        self.book.flush()

    def spawn(self, coro):
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _housekeeping_forever(self):
        flushed = time.monotonic()
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            self.events.flush()
            self.bans.purge()
            self._ask_for_addresses()
            if time.monotonic() - flushed >= BOOK_FLUSH_S:
                self.book.flush()
                flushed = time.monotonic()

    # -- accepting ------------------------------------------------------------------------------

    async def _accepted(self, reader, writer):
        host = (writer.get_extra_info("peername") or ("?",))[0]
        reason = self.admission.open(host)
        if reason is None and self.inbound_count() >= self.limits.max_inbound:
            self.admission.close(host)
            reason = INBOUND_FULL
        if reason is not None:
            self._refuse(reason, host)
            writer.transport.abort()
            return
        try:
            conn = await accept(reader, writer, self.keypair, self.chain_id, self.genesis_hash,
                                check_peer=lambda pubkey: self._check_inbound(pubkey, host),
                                max_frame=self.max_frame)
        except P2PError as exc:
            if exc.reason != "refused":  # refusals were counted by _check_inbound
                self._handshake_failed("inbound", exc.reason, host)
            return
        finally:
            self.admission.close(host)
        await self._run(conn)

    def _check_inbound(self, pubkey, host):
        """Why the proven key ``pubkey`` from ``host`` may not become an inbound peer, or None;
        runs before we sign anything for it."""
        reason = self._check_key(pubkey, inbound=True, duplicates=False)
        if reason is None and self.inbound_count() >= self.limits.max_inbound:
            reason = INBOUND_FULL
        if reason is None and not self.admission.is_exempt(host):
            source = source_of(host)
            if sum(p.inbound and p.source == source for p in self.peers.values()) \
                    >= self.limits.peers_per_address:
                reason = SOURCE_PEERS
        if reason is not None:
            self._refuse(reason, host)
        return reason

    def _check_key(self, pubkey, inbound, duplicates=True):
        """Why ``pubkey`` may not have a link now, or None. A second link to a connected peer
        is signed for (it proves to the dialler that the address reaches that peer, §12.7) and
        refused only once established, with ``duplicates``."""
        if pubkey in self.bans:
            return BANNED_KEY
        if self.allowed is not None and pubkey not in self.allowed:
            return NOT_ALLOWED
        existing = self.peers.get(pubkey)
        if duplicates and existing is not None and not self._replaces(existing, inbound):
            return DUPLICATE
        return None

    def _replaces(self, existing, inbound):
        """With two links to one peer both sides keep the one dialled by the lower node key:
        True when the new link is that one."""
        return inbound != (self.keypair.pubkey < existing.pubkey)

    def _refuse(self, reason, host):
        self.refused[reason] += 1
        self.events.count("refused", reason, source_of(host))

    def _handshake_failed(self, direction, reason, host):
        self.failed[(direction, reason)] += 1
        self.events.count(f"{direction} handshakes failed", reason, source_of(host))
        points = HANDSHAKE_FAULTS.get(reason)
        if points and self.admission.fault(host, points, BAN_S):
            self.events.line(f"p2p: banned address {source_of(host)} for {BAN_S:.0f}s "
                             f"(broken handshakes)")

    # -- dialling -------------------------------------------------------------------------------

    async def _dial_forever(self):
        while True:
            self.dial_some()
            await asyncio.sleep(REDIAL_S)

    def dial_some(self):
        """Start dials to addresses we are not connected to, while outbound slots are free."""
        free = self.limits.max_outbound - self.outbound_count() - len(self.dialing)
        for address in self._dial_candidates():
            if free <= 0:
                break
            free -= 1
            self.dialing.add(address)
            self.spawn(self._dial(address))

    def _dial_candidates(self):
        """Seeds first, then the address book's candidates (an untried address is dialled even
        while an inbound peer claims it, a seed too: that dial is what proves it, and only
        proven addresses are shared)."""
        now = time.monotonic()
        for address in self.seeds:
            if (self.retry.get(address, (0, 0))[1] <= now and self._may_dial(address)
                    and not self._connected_to(address)):
                yield address
        for address in self.book.candidates():
            if address in self.seeds and not self._connected_to(address):
                continue  # the seeds' own turn, above
            if self._may_dial(address) and not (
                    self.book.entries[address].tried and self._connected_to(address)):
                yield address  # a seed that dialled us first is proven like any other

    def _may_dial(self, address):
        return (address not in self.dialing and address not in self.own
                and source_of(_split(address)[0]) not in self.bans)

    async def _dial(self, address):
        host, port = _split(address)
        self.book.attempted(address)
        try:
            conn = await open_connection(host, port, self.keypair, self.chain_id,
                                         self.genesis_hash, max_frame=self.max_frame)
        except P2PError as exc:
            self.dialing.discard(address)
            self._dial_failed(address, exc.reason, host)
            return
        self.dialing.discard(address)
        self.retry.pop(address, None)
        self.book.succeeded(address)
        reason = self._check_key(conn.peer_pubkey, inbound=False)
        if reason is not None:
            self._refuse(reason, host)
            await conn.close()
            return
        conn.dialed = address
        await self._run(conn)

    def _dial_failed(self, address, reason, host):
        failures = self.retry.get(address, (0, 0))[0] + 1
        delay = min(REDIAL_S * 2 ** min(failures, 16), REDIAL_MAX_S)
        self.retry[address] = (failures, time.monotonic() + delay)
        self.book.failed(address)
        if reason == SELF_CONNECTION:
            self.own.add(address)
            self.book.forget(address)
            if address in self.seeds:
                self.seeds.remove(address)
        if reason != UNREACHABLE:
            self._handshake_failed("outbound", reason, host)

    def add_seed(self, seed):
        """Dial ``host:port`` from now on (a peer found by mDNS); False when already known."""
        if seed in self.seeds:
            return False
        self.seeds.append(seed)
        self.dial_some()
        return True

    def _connected_to(self, address):
        return any(getattr(p.conn, "dialed", None) == address or p.listen == address
                   for p in self.peers.values())

    def outbound_count(self):
        return sum(not p.inbound for p in self.peers.values())

    def inbound_count(self):
        return sum(p.inbound for p in self.peers.values())

    # -- links ----------------------------------------------------------------------------------

    def _admit(self, conn):
        """Register ``conn`` unless policy refuses it now (it may have changed during the
        handshake); a link it replaces is closed."""
        if self._check_key(conn.peer_pubkey, inbound=not conn.initiator) is not None:
            return None
        existing = self.peers.get(conn.peer_pubkey)
        if existing is not None:
            self.spawn(existing.conn.close())
        peer = self.peers[conn.peer_pubkey] = Peer(conn)
        return peer

    async def _run(self, conn):
        peer = self._admit(conn)
        if peer is None:
            await conn.close()
            return
        try:
            await conn.send(self.hello())
            if self.wants_addresses():
                await self._tell_addresses(peer)
            await self._serve(peer)
        except (ConnectionClosed, asyncio.CancelledError):
            pass
        except (P2PError, DecodeError) as exc:
            self.penalise(peer, error_reason(exc), str(exc))
        finally:
            if self.peers.get(peer.pubkey) is peer:
                del self.peers[peer.pubkey]
            await conn.close()

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
            if isinstance(message, Ping):
                await peer.conn.send(Pong(message.nonce))
            elif isinstance(message, Peers):
                await self._on_peers(peer, message)
            elif isinstance(message, Hello):
                self._on_hello(peer, message)
                await self.dispatch(peer, message)
            elif not isinstance(message, Pong):
                await self.dispatch(peer, message)

    def _on_hello(self, peer, hello):
        peer.head_height, peer.lib_height, peer.agent = hello.head_height, hello.lib_height, \
            hello.agent
        if hello.listen_port and parse_address(f"{peer.host}:{hello.listen_port}"):
            peer.listen = format_address(peer.host, hello.listen_port)
            if peer.inbound and peer.listen not in self.own:  # its claim, to be proven by a dial
                self.book.learn(peer.listen, peer.source, scope_of(peer.host))

    # -- peer exchange --------------------------------------------------------------------------

    def wants_addresses(self):
        """Whether outbound slots are free (then we ask peers for addresses)."""
        return self.outbound_count() + len(self.dialing) < self.limits.max_outbound

    async def _tell_addresses(self, peer):
        """Send ``peer`` the proven addresses it can reach (a Peers message is also a request
        for the peer's own list)."""
        peer.peers_told = time.monotonic()
        shared = [a for a in self.book.shareable(scope_of(peer.host), MAX_PEERS + 1)
                  if a != peer.listen][:MAX_PEERS]
        await peer.conn.send(Peers(tuple(shared)))

    async def _on_peers(self, peer, message):
        """Take the addresses a peer sent (at most one Peers per PEX_MIN_S), and answer with
        ours unless we sent it ours within PEX_INTERVAL_S."""
        now = time.monotonic()
        if now - peer.peers_heard < PEX_MIN_S:
            return
        peer.peers_heard = now
        scope = scope_of(peer.host)
        for text in message.addresses:
            parsed = parse_address(text)
            if parsed is not None and format_address(*parsed) not in self.own:
                self.book.learn(text, peer.source, scope)
        if now - peer.peers_told >= PEX_INTERVAL_S:
            await self._tell_addresses(peer)
        self.dial_some()

    def _ask_for_addresses(self):
        """While outbound slots are free, ask the peer we told longest ago (at most once per
        PEX_INTERVAL_S each)."""
        if not self.wants_addresses() or not self.peers:
            return
        peer = min(self.peers.values(), key=lambda p: p.peers_told)
        if time.monotonic() - peer.peers_told >= PEX_INTERVAL_S:
            self.spawn(self._send_quietly(peer, self._tell_addresses(peer)))

    async def _send_quietly(self, peer, sending):
        try:
            await sending
        except (P2PError, OSError):
            await peer.conn.close()

    # -- scores and bans ------------------------------------------------------------------------

    def penalise(self, peer, reason, detail, points=None):
        """Take ``points`` (by default the reason's penalty) off the peer's score, which
        recovers SCORE_RECOVERY_PER_MIN a minute; at BAN_SCORE its key and its source address
        are banned for BAN_S and the link is closed."""
        _recover(peer, time.monotonic())
        peer.score -= PENALTY.get(reason, DEFAULT_PENALTY) if points is None else points
        self.penalties[reason] += 1
        self.events.line(f"p2p: peer {peer.name}: {reason} ({detail}); score {peer.score}")
        if peer.score <= BAN_SCORE and peer.pubkey not in self.bans:
            self.ban(peer)

    def ban(self, peer):
        self.bans.ban(peer.pubkey, BAN_S)
        if not self.admission.is_exempt(peer.host):
            self.bans.ban(peer.source, BAN_S)
        self.spawn(peer.conn.close())
        self.events.line(f"p2p: banned {peer.name} ({peer.source}) for {BAN_S:.0f}s")

    def set_allowed(self, pubkeys):
        """Talk only to ``pubkeys`` (None: everyone). For partition tests."""
        self.allowed = None if pubkeys is None else set(pubkeys)
        for pubkey, peer in list(self.peers.items()):
            if self.allowed is not None and pubkey not in self.allowed:
                self.spawn(peer.conn.close())

    def book_summary(self):
        """How many addresses the book holds, and the ones we would share with a local peer."""
        return {"new": self.book.count(tried=False), "tried": self.book.count(tried=True),
                "shared": self.book.shareable(LOOPBACK_SCOPE)}

    def stats(self):
        """Counters and gauges for metrics."""
        return {"refused": dict(self.refused), "failed": dict(self.failed),
                "penalties": dict(self.penalties), "bans": len(self.bans),
                "inbound": self.inbound_count(), "outbound": self.outbound_count(),
                "handshakes": self.admission.in_progress,
                "book": {"new": self.book.count(tried=False), "tried": self.book.count(tried=True)}}




def _recover(peer, now):
    """Give back the score a peer earned since it was last scored (whole points only)."""
    if peer.score >= 0:
        peer.scored = now
        return
    points = int((now - peer.scored) * SCORE_RECOVERY_PER_MIN / 60)
    if points:
        peer.score = min(0, peer.score + points)
        peer.scored += points * 60 / SCORE_RECOVERY_PER_MIN


def _split(address):
    """``(host, port)`` of ``host:port`` or ``[v6]:port``."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)
