"""The address book: where peers listen, as heard from peers or proven by dialling (§12.7).

An entry is an IP-literal address ``host:port`` (``[v6]:port`` for IPv6). A *new* entry was only
heard of (in a peer's Peers message, or an inbound peer's own Hello); a *tried* one was dialled
and completed a handshake. Only tried entries that are not failing are shared. The book is
bounded — at most ``MAX_NEW`` new entries (``MAX_NEW_PER_SOURCE`` from any one source) and
``MAX_TRIED`` tried ones — and sheds bad entries: a new entry that fails ``NEW_FAILURES`` dials in
a row, or a tried one ``TRIED_FAILURES``, is removed. Addresses are only taken from a peer whose
scope covers them (no loopback addresses from off the host, no LAN addresses from the internet)
and only shared with such peers. The book lives in memory and is written to LMDB (named
database ``peers``) by ``flush``, which the peer manager calls every half minute and on stop.
"""

import ipaddress
import struct
import time

MAX_NEW = 512
MAX_TRIED = 256
MAX_NEW_PER_SOURCE = 32
NEW_FAILURES = 3
TRIED_FAILURES = 10
RETRY_S = 2.0             # the first redial of a failing entry; doubles per failure ...
RETRY_MAX_S = 600.0       # ... up to this
MAX_SOURCE_TEXT = 64
DB_NAME = "peers"
# flags (bit 0: tried), added, last success, last attempt (unix ms), consecutive failures
_RECORD = struct.Struct(">BQQQH")
TRIED = 1

LOOPBACK_SCOPE, LOCAL_SCOPE, GLOBAL_SCOPE = 0, 1, 2


def parse_address(text):
    """``(ip, port)`` of an IP-literal ``host:port`` a peer may be dialled at, else None: the
    host an IP address (IPv6 optionally in brackets), the port 1..65535, the address not
    unspecified, multicast or reserved."""
    if not isinstance(text, str):
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or len(port) > 5:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved or (
            ip.version == 4 and ip == ipaddress.IPv4Address("255.255.255.255")):
        return None
    return ip, int(port)


def format_address(host, port):
    """The book's form of an address: ``a.b.c.d:port`` or ``[v6]:port``."""
    ip = ipaddress.ip_address(str(host).strip("[]").split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def scope_of(host):
    """How far an address reaches: LOOPBACK_SCOPE (this host), LOCAL_SCOPE (a LAN, link-local,
    private ranges) or GLOBAL_SCOPE."""
    try:
        ip = ipaddress.ip_address(str(host).strip("[]").split("%", 1)[0])
    except ValueError:
        return GLOBAL_SCOPE
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return LOOPBACK_SCOPE
    if ip.is_private or ip.is_link_local:
        return LOCAL_SCOPE
    return GLOBAL_SCOPE


class Entry:
    """What the book knows of one address."""

    __slots__ = ("address", "source", "tried", "added_ms", "success_ms", "attempt_ms",
                 "failures")

    def __init__(self, address, source, now_ms, tried=False, success_ms=0, attempt_ms=0,
                 failures=0):
        self.address, self.source, self.tried = address, source, tried
        self.added_ms, self.success_ms, self.attempt_ms = now_ms, success_ms, attempt_ms
        self.failures = failures

    def encode(self):
        return _RECORD.pack(TRIED if self.tried else 0, self.added_ms, self.success_ms,
                            self.attempt_ms, self.failures) + self.source.encode()

    @classmethod
    def decode(cls, address, record):
        """The entry of a stored record, or None when the record is not one of ours."""
        if len(record) < _RECORD.size or len(record) > _RECORD.size + MAX_SOURCE_TEXT:
            return None
        flags, added, success, attempt, failures = _RECORD.unpack_from(record)
        try:
            source = bytes(record[_RECORD.size:]).decode()
        except UnicodeDecodeError:
            return None
        if flags & ~TRIED or parse_address(address) is None:
            return None
        entry = cls(address, source, added, bool(flags & TRIED), success, attempt, failures)
        return entry

    def due(self, now_ms):
        """Whether a dial may be tried now (failing entries wait longer and longer)."""
        if not self.failures:
            return True
        wait_s = min(RETRY_S * 2 ** min(self.failures - 1, 20), RETRY_MAX_S)
        return now_ms >= self.attempt_ms + wait_s * 1000


class AddressBook:
    """The node's address book; ``store`` (chain.store.Store) makes it durable, None keeps it
    in memory only."""

    def __init__(self, store=None, clock=time.time):
        self.store, self.clock = store, clock
        self.entries = {}        # address -> Entry
        self._dirty, self._removed = set(), set()
        if store is not None:
            self._db = store.db(DB_NAME)
            self._load()

    def _now_ms(self):
        return int(self.clock() * 1000)

    def _load(self):
        bad = []
        with self.store.read() as txn:
            for key, record in txn.cursor(db=self._db):
                address = bytes(key).decode(errors="replace")
                entry = Entry.decode(address, record)
                if entry is None:
                    bad.append(bytes(key))
                else:
                    self.entries[address] = entry
        self._removed.update(bad)
        for kind, limit in ((False, MAX_NEW), (True, MAX_TRIED)):
            while self.count(kind) > limit:
                self._evict(kind)

    # -- learning and dialling ------------------------------------------------------------------

    def learn(self, text, source, sender_scope=GLOBAL_SCOPE):
        """Take an address heard from ``source`` (a peer's source key) as a new entry; False
        when it is not valid, out of the sender's scope, already known, or the source has
        given us its share."""
        parsed = parse_address(text)
        if parsed is None or scope_of(parsed[0]) < sender_scope:
            return False
        address = format_address(*parsed)
        if address in self.entries:
            return False
        if sum(not e.tried and e.source == source for e in self.entries.values()) \
                >= MAX_NEW_PER_SOURCE:
            return False
        if self.count(tried=False) >= MAX_NEW:
            self._evict(tried=False)
        self._put(Entry(address, source[:MAX_SOURCE_TEXT], self._now_ms()))
        return True

    def attempted(self, address):
        entry = self.entries.get(address)
        if entry is not None:
            entry.attempt_ms = self._now_ms()
            self._dirty.add(address)

    def succeeded(self, address, source="dialled"):
        """A dial of ``address`` completed a handshake: the entry is tried and not failing."""
        if parse_address(address) is None:
            return
        entry = self.entries.get(address)
        now = self._now_ms()
        if entry is None:
            entry = Entry(address, source[:MAX_SOURCE_TEXT], now)
        if not entry.tried and self.count(tried=True) >= MAX_TRIED:
            self._evict(tried=True)
        entry.tried, entry.failures = True, 0
        entry.success_ms = entry.attempt_ms = now
        self._put(entry)

    def failed(self, address):
        """A dial of ``address`` failed; a new entry failing NEW_FAILURES times in a row, or a
        tried one TRIED_FAILURES times, is removed."""
        entry = self.entries.get(address)
        if entry is None:
            return
        entry.failures += 1
        entry.attempt_ms = self._now_ms()
        if entry.failures >= (TRIED_FAILURES if entry.tried else NEW_FAILURES):
            self.forget(address)
        else:
            self._dirty.add(address)

    def forget(self, address):
        if self.entries.pop(address, None) is not None:
            self._dirty.discard(address)
            self._removed.add(address.encode())

    def candidates(self):
        """Addresses worth dialling now, best first: tried ones by latest success, then new
        ones by age."""
        now = self._now_ms()
        due = [e for e in self.entries.values() if e.due(now)]
        due.sort(key=lambda e: (not e.tried, -e.success_ms, e.added_ms, e.address))
        return [e.address for e in due]

    def shareable(self, scope=GLOBAL_SCOPE, limit=64):
        """Up to ``limit`` tried, not failing addresses for a peer of ``scope`` (only those it
        can reach), most recently proven first."""
        good = [e for e in self.entries.values() if e.tried and not e.failures
                and scope_of(parse_address(e.address)[0]) >= scope]
        good.sort(key=lambda e: (-e.success_ms, e.address))
        return [e.address for e in good[:limit]]

    def count(self, tried):
        return sum(e.tried == tried for e in self.entries.values())

    def __len__(self):
        return len(self.entries)

    def __contains__(self, address):
        return address in self.entries

    # -- storage --------------------------------------------------------------------------------

    def _put(self, entry):
        self.entries[entry.address] = entry
        self._dirty.add(entry.address)
        self._removed.discard(entry.address.encode())

    def _evict(self, tried):
        """Drop the worst entry of a kind: most failures, then the least recently proven
        (tried) or the oldest (new)."""
        worst = max((e for e in self.entries.values() if e.tried == tried),
                    key=lambda e: (e.failures, -e.success_ms if tried else -e.added_ms,
                                   e.address), default=None)
        if worst is not None:
            self.forget(worst.address)

    def flush(self):
        """Write what changed since the last flush to LMDB in one transaction."""
        if self.store is None or not (self._dirty or self._removed):
            return
        puts = {a: self.entries[a].encode() for a in self._dirty if a in self.entries}
        removed = set(self._removed)

        def work(txn):
            for key in removed:
                txn.delete(key, db=self._db)
            for address, record in puts.items():
                txn.put(address.encode(), record, db=self._db)
        self.store.write(work)
        self._dirty.clear()
        self._removed.clear()
