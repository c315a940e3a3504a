"""Who may start a handshake with this node: per-source limits, a global cap and bans (§12.7).

A connection's *source* is the address it comes from: an IPv4 address, or the /64 prefix of an
IPv6 address (what one subscriber gets). Before a byte is read from a new connection, ``Admission``
checks that its source is not banned, that fewer than ``max_handshakes`` handshakes are in progress
in all and fewer than ``source_handshakes`` from that source, and takes a token from the source's
bucket (``per_minute`` tokens, refilled at ``per_minute`` a minute). Handshakes that break the
protocol add fault points to their source; points leak away over time, and a source whose points
reach ``FAULT_BAN`` is banned. Sources in ``exempt`` (the loopback addresses a testnet shares, only
under ``[testing] exempt_loopback``) skip the per-source limits and source bans, never the global
cap. All tables are bounded.
"""

import ipaddress
import time
from collections import OrderedDict

# Refusal reasons (also metric labels).
BANNED = "banned"              # the source address is banned
BUSY = "busy"                  # max_handshakes handshakes are in progress
SOURCE_BUSY = "source_busy"    # source_handshakes handshakes from this source are in progress
SOURCE_RATE = "source_rate"    # the source used up its handshakes for now

SOURCE_HANDSHAKES = 4          # concurrent handshakes per source
MAX_HANDSHAKES = 64            # concurrent handshakes in all
MAX_SOURCES = 4096             # sources tracked (idle ones are forgotten first)
FAULT_BAN = 100                # fault points that get a source banned
FAULT_LEAK_PER_MIN = 20        # fault points a source sheds per minute
MAX_BANS = 4096
LOOPBACK = ("127.0.0.1", "::1")


def source_of(host):
    """The source key of a peer address: the IPv4 address (also of an IPv4-mapped IPv6 one), the
    /64 network of an IPv6 address, or the text itself when it is not an IP address."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        if not ip.is_loopback:
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class BanList:
    """Keys (node public keys or sources) banned until a monotonic time; at most ``limit``
    entries (the ban that would end first gives way)."""

    def __init__(self, limit=MAX_BANS, clock=time.monotonic):
        self._until, self.limit, self.clock = {}, limit, clock

    def ban(self, key, seconds):
        self._until[key] = max(self._until.get(key, 0), self.clock() + seconds)
        if len(self._until) > self.limit:
            self.purge()
            while len(self._until) > self.limit:
                del self._until[min(self._until, key=self._until.get)]

    def __contains__(self, key):
        until = self._until.get(key)
        if until is None:
            return False
        if until > self.clock():
            return True
        del self._until[key]
        return False

    def purge(self):
        now = self.clock()
        for key in [k for k, until in self._until.items() if until <= now]:
            del self._until[key]

    def __len__(self):
        self.purge()
        return len(self._until)


class _Source:
    __slots__ = ("tokens", "refilled", "active", "faults", "faulted")

    def __init__(self, tokens, now):
        self.tokens, self.refilled, self.active = tokens, now, 0
        self.faults, self.faulted = 0.0, now


class Admission:
    """Pre-handshake limits per source and in all: ``open(host)`` before the handshake (a
    refusal reason, or None and the handshake counts as in progress), ``close(host)`` after it
    whatever its outcome."""

    def __init__(self, per_minute=20, source_handshakes=SOURCE_HANDSHAKES,
                 max_handshakes=MAX_HANDSHAKES, exempt=(), bans=None, max_sources=MAX_SOURCES,
                 clock=time.monotonic):
        if per_minute < 1 or source_handshakes < 1 or max_handshakes < 1:
            raise ValueError("admission limits must be at least 1")
        self.per_minute, self.source_handshakes = per_minute, source_handshakes
        self.max_handshakes, self.max_sources = max_handshakes, max_sources
        self.exempt = frozenset(source_of(h) for h in exempt)
        self.bans = bans if bans is not None else BanList(clock=clock)
        self.clock = clock
        self.in_progress = 0
        self._sources = OrderedDict()  # source -> _Source, least recently used first

    def is_exempt(self, host):
        return source_of(host) in self.exempt

    def open(self, host):
        """None when a handshake from ``host`` may start now (it is then in progress until
        ``close``), else the refusal reason."""
        source = source_of(host)
        exempt = source in self.exempt
        if not exempt and source in self.bans:
            return BANNED
        if self.in_progress >= self.max_handshakes:
            return BUSY
        if not exempt:
            state = self._state(source)
            if state.active >= self.source_handshakes:
                return SOURCE_BUSY
            self._refill(state)
            if state.tokens < 1:
                return SOURCE_RATE
            state.tokens -= 1
            state.active += 1
        self.in_progress += 1
        return None

    def close(self, host):
        source = source_of(host)
        self.in_progress -= 1
        state = self._sources.get(source)
        if state is not None and state.active > 0:
            state.active -= 1

    def fault(self, host, points, ban_seconds):
        """Add fault points to ``host``'s source (a broken handshake); True when that got the
        source banned for ``ban_seconds``. Exempt sources are never banned."""
        source = source_of(host)
        if source in self.exempt:
            return False
        state = self._state(source)
        now = self.clock()
        state.faults = max(0.0, state.faults - (now - state.faulted) * FAULT_LEAK_PER_MIN / 60)
        state.faulted = now
        state.faults += points
        if state.faults < FAULT_BAN:
            return False
        state.faults = 0.0
        self.bans.ban(source, ban_seconds)
        return True

    def _state(self, source):
        state = self._sources.get(source)
        if state is None:
            state = self._sources[source] = _Source(self.per_minute, self.clock())
            self._forget_idle()
        else:
            self._sources.move_to_end(source)
        return state

    def _refill(self, state):
        now = self.clock()
        state.tokens = min(self.per_minute,
                           state.tokens + (now - state.refilled) * self.per_minute / 60)
        state.refilled = now

    def _forget_idle(self):
        """Keep at most ``max_sources`` entries, dropping the least recently used ones that have
        no handshake in progress (there are at most ``max_handshakes`` of those)."""
        excess = len(self._sources) - self.max_sources
        if excess <= 0:
            return
        idle = []
        for source, state in self._sources.items():
            if state.active == 0:
                idle.append(source)
                if len(idle) == excess:
                    break
        for source in idle:
            del self._sources[source]

    def __len__(self):
        return len(self._sources)
