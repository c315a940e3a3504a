"""Peer management (chain/p2p/peers.py, admission.py, eventlog.py; docs/protocol.md §12.7): the
pre-handshake limits, bans, the bounded log, and a real PeerManager on 127.0.0.x sockets under
floods of garbage and of sybil keys."""

import asyncio
import ipaddress
import json
import os
import re
import sys

import pytest

from chain.keys import KeyPair
from chain.p2p.addressbook import (GLOBAL_SCOPE, LOCAL_SCOPE, LOOPBACK_SCOPE, MAX_NEW,
                                   MAX_NEW_PER_SOURCE, MAX_TRIED, NEW_FAILURES, TRIED_FAILURES,
                                   AddressBook, format_address, parse_address, scope_of)
from chain.store import Store
from chain.p2p import Hello, HandshakeError, Peers, Ping, Pong, open_connection
from chain.p2p.admission import (BANNED, BUSY, FAULT_BAN, SOURCE_BUSY, SOURCE_RATE, Admission,
                                 BanList, source_of)
from chain.p2p.eventlog import BoundedLog
from chain.p2p.peers import PeerLimits, PeerManager
CHAIN = "ss-test"
GENESIS = bytes(range(32))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def run(coro, limit=60):
    return asyncio.run(asyncio.wait_for(coro, limit))


# -- sources, admission, bans ----------------------------------------------------------------------

def test_source_of_groups_ipv6_by_64_and_unmaps_ipv4():
    assert source_of("192.0.2.7") == "192.0.2.7"
    assert source_of("2001:db8:1:2:aaaa::1") == source_of("2001:db8:1:2:ffff::9") \
        == "2001:db8:1:2::/64"
    assert source_of("2001:db8:1:3::1") != source_of("2001:db8:1:2::1")
    assert source_of("::ffff:192.0.2.7") == "192.0.2.7"
    assert source_of("::1") == "::1" and source_of("fe80::1%eth0") == "fe80::/64"
    assert source_of("not-an-ip") == "not-an-ip"


def test_admission_rate_concurrency_and_global_cap():
    clock = Clock()
    adm = Admission(per_minute=6, source_handshakes=2, max_handshakes=3, clock=clock)
    assert adm.open("10.0.0.1") is None and adm.open("10.0.0.1") is None
    assert adm.open("10.0.0.1") == SOURCE_BUSY            # two in progress from this source
    assert adm.open("10.0.0.2") is None
    assert adm.open("10.0.0.3") == BUSY                   # three in progress in all
    for host in ("10.0.0.1", "10.0.0.1", "10.0.0.2"):
        adm.close(host)
    assert adm.in_progress == 0
    for _ in range(4):                                    # 6 tokens: 2 used, 4 left
        assert adm.open("10.0.0.1") is None
        adm.close("10.0.0.1")
    assert adm.open("10.0.0.1") == SOURCE_RATE
    assert adm.open("10.0.0.9") is None                   # other sources are unaffected
    adm.close("10.0.0.9")
    clock.now += 10                                       # 6 a minute: one token per 10 s
    assert adm.open("10.0.0.1") is None
    adm.close("10.0.0.1")
    assert adm.open("10.0.0.1") == SOURCE_RATE
    clock.now += 3600                                     # the bucket never holds more than 6
    assert [adm.open("10.0.0.1") or adm.close("10.0.0.1") for _ in range(7)][-1] == SOURCE_RATE


def test_admission_exempts_only_the_listed_loopback_and_never_the_global_cap():
    clock = Clock()
    adm = Admission(per_minute=1, source_handshakes=1, max_handshakes=5,
                    exempt=("127.0.0.1", "::1"), clock=clock)
    for _ in range(4):
        assert adm.open("127.0.0.1") is None              # no per-source limit
    assert adm.open("127.0.0.2") is None                  # another loopback address is limited
    assert adm.open("127.0.0.1") == BUSY                  # the global cap holds for everyone
    for _ in range(4):
        adm.close("127.0.0.1")
    adm.close("127.0.0.2")
    assert adm.open("127.0.0.2") == SOURCE_RATE
    assert not adm.fault("127.0.0.1", FAULT_BAN, 60)     # exempt: never banned by address
    strict = Admission(per_minute=1, clock=clock)         # without the testing flag
    assert strict.open("127.0.0.1") is None
    strict.close("127.0.0.1")
    assert strict.open("127.0.0.1") == SOURCE_RATE


def test_faults_leak_and_ban_the_source():
    clock = Clock()
    adm = Admission(per_minute=1000, clock=clock)
    assert not adm.fault("10.0.0.1", FAULT_BAN - 1, 60)
    clock.now += 180                                      # points leak away over time
    assert not adm.fault("10.0.0.1", FAULT_BAN // 2, 60)
    assert adm.fault("10.0.0.1", FAULT_BAN, 60)
    assert adm.open("10.0.0.1") == BANNED
    assert adm.open("10.0.0.2") is None
    clock.now += 61
    assert adm.open("10.0.0.1") is None


def test_admission_tables_stay_bounded():
    clock = Clock()
    adm = Admission(per_minute=5, max_handshakes=10, max_sources=100, clock=clock)
    held = [f"10.1.0.{i}" for i in range(10)]
    for host in held:
        assert adm.open(host) is None                     # in progress: never forgotten
    for i in range(5000):
        host = f"10.2.{i // 256}.{i % 256}"
        adm.in_progress = 0                               # not the cap under test here
        assert adm.open(host) is None
        adm.close(host)
        adm.in_progress = len(held)
    assert len(adm) <= 100
    for host in held:
        adm.close(host)
    assert adm.in_progress == 0
    bans = BanList(limit=50, clock=clock)
    for i in range(500):
        bans.ban(f"k{i}", 60 + i)
    assert len(bans) == 50 and "k499" in bans and "k0" not in bans
    clock.now += 10_000
    assert len(bans) == 0


# -- the bounded log -------------------------------------------------------------------------------

def test_a_flood_of_events_writes_a_bounded_number_of_lines():
    clock = Clock()
    lines = []
    log = BoundedLog(lines.append, interval=10, lines=5, clock=clock)
    for i in range(10_000):                               # 10,000 refusals in 20 s
        clock.now += 0.002
        log.count("refused", "source_rate" if i % 3 else "banned", f"10.0.{i % 300}.1")
        if i % 100 == 0:
            log.line(f"peer event {i}")
    log.flush(force=True)
    assert len(lines) <= 3 * (5 + 1)
    summaries = [line for line in lines if line.startswith("p2p: last")]
    assert len(summaries) == 2 or len(summaries) == 3
    total = sum(int(m.replace(",", "")) for line in summaries
                for m in re.findall(r"refused ([\d,]+)", line))
    assert total == 10_000
    assert "source_rate" in summaries[0] and "top sources" in summaries[0]
    assert any("more lines not written" in line for line in summaries)
    lines.clear()
    log.flush(force=True)
    assert lines == []                                    # nothing new: nothing written


# -- a real PeerManager on loopback sockets --------------------------------------------------------

class Node:
    """A PeerManager with a minimal chain side: it sends Hello and records what it is given."""

    def __init__(self, limits, seeds=(), key=None):
        self.key = key or KeyPair.generate()
        self.lines, self.messages = [], []
        self.manager = PeerManager(self.key, CHAIN, GENESIS, host="127.0.0.1", port=0,
                                   seeds=seeds, limits=limits, hello=self.hello,
                                   dispatch=self.dispatch, log=self.lines.append)

    def hello(self):
        return Hello(1, bytes(32), 0, self.manager.port, "node")

    async def dispatch(self, peer, message):
        self.messages.append(message)

    @property
    def address(self):
        return f"127.0.0.1:{self.manager.port}"

    async def __aenter__(self):
        await self.manager.start()
        return self

    async def __aexit__(self, *exc):
        await self.manager.stop()


async def wait_for(predicate, what, timeout=10):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def flood(node, mode, source, seconds, rate, keys=50):
    """Run tests/floodkit.py as its own process against ``node``; its JSON result."""
    args = ["--target", node.address, "--source", source, "--mode", mode, "--seconds",
            str(seconds), "--rate", str(rate), "--keys", str(keys), "--chain-id", CHAIN,
            "--genesis", GENESIS.hex()]
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.floodkit", *args,
                                                stdout=asyncio.subprocess.PIPE, cwd=ROOT)
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return json.loads(out)


async def honest_link(node, key=None):
    conn = await open_connection("127.0.0.1", node.manager.port, key or KeyPair.generate(),
                                 CHAIN, GENESIS, timeout=3)
    assert isinstance(await conn.recv(), Hello)
    await conn.send(Ping(9))
    while (message := await asyncio.wait_for(conn.recv(), 3)) != Pong(9):
        assert isinstance(message, Peers), message
    return conn


def test_garbage_flood_is_refused_cheaply_and_logged_in_summaries():
    """Production limits on 127.0.0.2: a few hundred garbage connections get the source banned
    after a few broken handshakes; the rest are refused before a byte is read; an honest peer
    from another source still connects; the log stays short."""
    async def scenario():
        async with Node(PeerLimits(handshakes_per_minute=20)) as node:
            result = await flood(node, "garbage", "127.0.0.2", seconds=3, rate=300)
            stats = node.manager.stats()
            refused, failed = stats["refused"], stats["failed"]
            assert result["attempts"] >= 300
            assert sum(failed.values()) <= 20                  # one bucket of handshakes at most
            assert refused.get("banned", 0) + refused.get("source_rate", 0) \
                >= result["attempts"] - 20
            assert refused.get("banned", 0) > 0, "broken handshakes get the address banned"
            assert result["answered"] <= 20
            conn = await honest_link(node)                      # 127.0.0.1 is another source
            await conn.close()
            node.manager.events.flush(force=True)
            assert len(node.lines) <= 5, node.lines
            assert any("refused" in line and "127.0.0.2" in line for line in node.lines)
    run(scenario())


def test_sybil_keys_from_one_address_get_few_slots_and_loopback_is_exempt_only_when_flagged():
    async def scenario():
        limits = PeerLimits(max_peers=24, max_outbound=8, handshakes_per_minute=20,
                            peers_per_address=4)
        async with Node(limits) as node:
            result = await flood(node, "sybil", "127.0.0.2", seconds=4, rate=25, keys=50)
            assert result["attempts"] == 50 and result["max_held"] <= 4
            refused = node.manager.stats()["refused"]
            assert refused.get("source_peers", 0) + refused.get("source_rate", 0) >= 46
            assert refused.get("source_peers", 0) >= 1 and refused.get("source_rate", 0) >= 1
            # without the testing flag 127.0.0.1 is an address like any other
            held = [await honest_link(node) for _ in range(4)]
            with pytest.raises((HandshakeError, AssertionError, asyncio.TimeoutError)):
                await honest_link(node)
            for conn in held:
                await conn.close()
        async with Node(limits._replace(exempt_loopback=True)) as node:
            held = [await honest_link(node) for _ in range(10)]  # a testnet's shared host
            await wait_for(lambda: node.manager.inbound_count() == 10, "10 loopback peers")
            result = await flood(node, "sybil", "127.0.0.2", seconds=3, rate=25, keys=20)
            assert result["max_held"] <= 4                      # 127.0.0.2 is still limited
            for conn in held:
                await conn.close()
    run(scenario())


def test_inbound_peers_never_take_the_outbound_slots():
    """Sybils fill every inbound slot; the node still dials its seed through its own slot."""
    async def scenario():
        async with Node(PeerLimits(exempt_loopback=True)) as seed:
            limits = PeerLimits(max_peers=4, max_outbound=1, exempt_loopback=True)
            async with Node(limits, seeds=[]) as node:
                held = [await honest_link(node) for _ in range(3)]
                with pytest.raises((HandshakeError, AssertionError, asyncio.TimeoutError)):
                    await honest_link(node)                      # inbound is full
                assert node.manager.stats()["refused"].get("inbound_full", 0) >= 1
                node.manager.add_seed(seed.address)
                await wait_for(lambda: node.manager.outbound_count() == 1, "the outbound link")
                assert node.manager.inbound_count() == 3
                for conn in held:
                    await conn.close()
    run(scenario())


def test_a_banned_peer_is_refused_by_key_and_by_address():
    async def scenario():
        async with Node(PeerLimits()) as node:
            rogue = KeyPair.generate()
            conn = await open_connection("127.0.0.1", node.manager.port, rogue, CHAIN, GENESIS)
            conn._writer.write(b"\x00\x00\x00\x40" + os.urandom(64))  # fails its MAC
            await wait_for(lambda: rogue.pubkey in node.manager.bans, "the key ban")
            assert "127.0.0.1" in node.manager.bans                 # not exempt: address too
            with pytest.raises(HandshakeError):                     # a fresh key is no help
                await open_connection("127.0.0.1", node.manager.port, KeyPair.generate(), CHAIN,
                                      GENESIS, timeout=2)
            assert node.manager.stats()["refused"].get("banned", 0) >= 1
        async with Node(PeerLimits(exempt_loopback=True)) as node:
            rogue = KeyPair.generate()
            conn = await open_connection("127.0.0.1", node.manager.port, rogue, CHAIN, GENESIS)
            conn._writer.write(b"\x00\x00\x00\x40" + os.urandom(64))
            await wait_for(lambda: rogue.pubkey in node.manager.bans, "the key ban")
            assert "127.0.0.1" not in node.manager.bans             # the testnet's shared host
            with pytest.raises(HandshakeError):                     # but the key stays banned
                await open_connection("127.0.0.1", node.manager.port, rogue, CHAIN, GENESIS,
                                      timeout=2)
            assert node.manager.stats()["refused"].get("banned_key", 0) >= 1
            await (await honest_link(node)).close()
    run(scenario())


@pytest.mark.parametrize("p2p, message", [
    ("max_peers = 8\nmax_outbound = 8", "max_outbound must be at least 1 and below max_peers"),
    ("max_outbound = 0", "max_outbound must be at least 1"),
    ("handshakes_per_minute = 0", "handshakes_per_minute must be at least 1"),
    ("peers_per_address = 0", "peers_per_address must be at least 1"),
    ("max_outbound = true", "max_outbound must be a int"),
])
def test_p2p_limits_in_config_are_checked(tmp_path, p2p, message):
    from edge import config
    (tmp_path / "config.toml").write_text(f"[p2p]\n{p2p}\n")
    with pytest.raises(config.ConfigError, match=message):
        config.load(str(tmp_path))
    (tmp_path / "config.toml").write_text("[p2p]\nmax_outbound = 2\n[testing]\n"
                                          "exempt_loopback = true\n")
    loaded = config.load(str(tmp_path))
    assert (loaded.max_outbound, loaded.max_peers, loaded.exempt_loopback) == (2, 24, True)


# -- the address book ------------------------------------------------------------------------------

class WallClock(Clock):
    """Unix seconds, moved by hand."""


def test_address_parsing_and_scopes():
    assert parse_address("203.0.114.1:7100") == (ipaddress.ip_address("203.0.114.1"), 7100)
    assert format_address(*parse_address("[2001:db8::1]:7100")) == "[2001:db8::1]:7100"
    assert format_address("::ffff:203.0.114.1", 7) == "203.0.114.1:7"
    for bad in ("example.com:7100", "203.0.114.1", "203.0.114.1:0", "203.0.114.1:65536",
                "0.0.0.0:7100", "224.0.0.1:7100", "255.255.255.255:1", "203.0.114.1:+80",
                "203.0.114.1:007100", ":7100", "[::]:7100", None, 7100):
        assert parse_address(bad) is None, bad
    assert scope_of("127.0.0.2") == LOOPBACK_SCOPE and scope_of("::1") == LOOPBACK_SCOPE
    assert scope_of("192.168.1.9") == LOCAL_SCOPE and scope_of("fe80::1") == LOCAL_SCOPE
    assert scope_of("8.8.8.8") == GLOBAL_SCOPE


def test_book_learns_within_scope_and_per_source_share():
    book = AddressBook(clock=WallClock())
    assert book.learn("8.8.8.8:7100", "1.2.3.4", GLOBAL_SCOPE)
    assert not book.learn("8.8.8.8:7100", "1.2.3.4", GLOBAL_SCOPE)       # known
    assert not book.learn("127.0.0.1:7100", "1.2.3.4", GLOBAL_SCOPE)     # not from off host
    assert not book.learn("192.168.1.9:7100", "1.2.3.4", GLOBAL_SCOPE)   # not from the internet
    assert book.learn("192.168.1.9:7100", "192.168.1.2", LOCAL_SCOPE)
    assert book.learn("127.0.0.1:7100", "127.0.0.1", LOOPBACK_SCOPE)
    learned = sum(book.learn(f"9.9.{i // 250}.{i % 250 + 1}:7100", "6.6.6.6", GLOBAL_SCOPE)
                  for i in range(500))
    assert learned == MAX_NEW_PER_SOURCE                                   # one source's share
    assert book.shareable() == []                                          # nothing proven yet


def test_book_is_bounded_and_sheds_failing_entries():
    clock = WallClock()
    book = AddressBook(clock=clock)
    for i in range(MAX_NEW + 100):
        clock.now += 1
        book.learn(f"8.{i // 250}.{i % 250}.1:7100", f"src{i // MAX_NEW_PER_SOURCE}",
                   GLOBAL_SCOPE)
    assert book.count(tried=False) == MAX_NEW
    assert "8.0.0.1:7100" not in book                                      # the oldest went
    for i in range(MAX_TRIED + 10):
        clock.now += 1
        book.succeeded(f"7.{i // 250}.{i % 250}.1:7100")
    assert book.count(tried=True) == MAX_TRIED and "7.0.0.1:7100" not in book
    new = book.candidates()[-1]
    assert not book.entries[new].tried
    for _ in range(NEW_FAILURES):
        assert new in book.candidates()                                    # due again ...
        book.failed(new)
        clock.now += 3600                                                  # ... after waiting
    assert new not in book
    tried = "7.0.100.1:7100"
    for _ in range(TRIED_FAILURES - 1):
        book.failed(tried)
    assert tried in book and tried not in book.shareable(limit=10_000)   # failing: not shared
    assert tried not in book.candidates()                                  # backing off
    book.succeeded(tried)
    assert tried in book.shareable(limit=10_000)


def test_book_survives_a_restart_in_lmdb(tmp_path):
    clock = WallClock()
    store = Store(str(tmp_path / "db"))
    book = AddressBook(store, clock=clock)
    book.succeeded("203.0.114.1:7100")
    book.learn("203.0.114.2:7100", "203.0.114.1", GLOBAL_SCOPE)
    book.learn("203.0.114.3:7100", "203.0.114.1", GLOBAL_SCOPE)
    book.failed("203.0.114.3:7100")
    book.flush()
    book.forget("203.0.114.2:7100")
    book.flush()
    store.write(lambda txn: txn.put(b"not an address", b"\x00" * 40,  # not a record of ours
                                    db=store.db("peers")))
    store.close()
    store = Store(str(tmp_path / "db"))
    again = AddressBook(store, clock=clock)
    assert set(again.entries) == {"203.0.114.1:7100", "203.0.114.3:7100"}
    assert again.entries["203.0.114.1:7100"].tried
    assert again.entries["203.0.114.3:7100"].failures == 1
    assert again.shareable() == ["203.0.114.1:7100"]
    again.flush()                                                          # drops the bad record
    with store.read() as txn:
        assert txn.get(b"not an address", db=store.db("peers")) is None
    store.close()


def test_peer_exchange_finds_a_node_no_seed_named():
    """In-process: A and B seed each other, C seeds A, D seeds A. C is named by no seed: A
    learns it from C's Hello, proves it by dialling, and tells D, which dials it."""
    async def scenario():
        limits = PeerLimits(exempt_loopback=True)
        async with Node(limits) as a, Node(limits) as b, Node(limits) as c, Node(limits) as d:
            a.manager.add_seed(b.address)
            b.manager.add_seed(a.address)
            c.manager.add_seed(a.address)
            await wait_for(lambda: c.address in a.manager.book.shareable(LOOPBACK_SCOPE),
                           "A to prove C's address")
            d.manager.add_seed(a.address)
            await wait_for(lambda: c.key.pubkey in d.manager.peers, "D to connect to C")
            await wait_for(lambda: b.key.pubkey in d.manager.peers, "D to connect to B")
            assert c.address not in d.manager.seeds
            assert {c.address, b.address} <= set(d.manager.book.shareable(LOOPBACK_SCOPE))
            assert all(len(n.manager.peers) == 3 for n in (a, b, c, d))
    run(scenario())
