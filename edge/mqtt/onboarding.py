"""Limits on join requests (docs/protocol.md §15.3), so a flood from the LAN can neither grow
storage without bound nor crowd out a real device, while a fleet set up from one host (100
devices joining at once) is admitted in one go:

- the bridge limits join requests per device id, per source (the IP address the broker saw the
  provisioning connection come from) and in all (token buckets, in memory). A source's burst
  holds a fleet; the total's burst holds a source's burst and more, so one source alone can
  never empty it: a device from another source is still heard;
- the registry keeps at most ``MAX_PENDING`` pending devices, at most ``MAX_PER_SOURCE`` (half of
  them) of one source, forgets a pending request after ``PENDING_TTL_MS`` without a repeat, and,
  when full, lets a new request take the place of the pending one heard from least recently. A
  device repeats its request (the simulators every 30 s), which refreshes it whatever the flood
  (a listed device's repeat skips the source and total limits), so once listed a real device
  stays listed as long as it keeps asking: ``MAX_PENDING`` new requests must arrive between two
  of its repeats to push it out, more than ``JOIN_RATE`` allows. A flood from one source never
  delays a device from another; only one from two sources or more can delay a first request.
"""

from edge.mqtt.ratelimit import Buckets, TokenBucket

MAX_PENDING = 256
MAX_PER_SOURCE = MAX_PENDING // 2
PENDING_TTL_MS = 24 * 3600 * 1000
REFRESH_MS = 10_000               # a repeated request rewrites its record at most this often
JOIN_RATE = (3.0, 150)            # join requests a second, burst: all sources together
SOURCE_RATE = (2.0, 100)          # per source: a burst holds a fleet of 100 set up at once
ID_RATE = (0.2, 3)                # per device id
TRACKED = 4096                    # sources and ids remembered by the buckets


class JoinLimiter:
    """The bridge's token buckets for join requests."""

    def __init__(self, now):
        self.total = TokenBucket(*JOIN_RATE, now)
        self.sources = Buckets(*SOURCE_RATE)
        self.ids = Buckets(*ID_RATE)

    def allow(self, device_id, source, now, listed=False):
        """None, or why the request is dropped. The repeat of a device already ``listed``
        (pending) passes its id's limit only: a flood cannot keep it from being refreshed."""
        for buckets in (self.sources, self.ids):
            if len(buckets) > TRACKED:
                buckets.clear()
        if not self.ids.take(device_id, now):
            return f"device {device_id.hex()} asked too often"
        if listed:
            return None
        if not self.sources.take(source, now):
            return f"too many join requests from {source}"
        if not self.total.take(now):
            return "too many join requests; try again later"
        return None


def admit(pending, record_id, source, now_ms):
    """Decide on a new pending request given the pending ``records`` (``[(id hex, record)]``):
    returns ``(expired, evicted)``, the ids to delete first, or raises ValueError saying why
    the request is refused."""
    expired = [i for i, r in pending if now_ms - r.get("last_request_ms", r.get("requested_ms", 0))
               > PENDING_TTL_MS]
    live = [(i, r) for i, r in pending if i not in expired]
    if source is not None and sum(r.get("source") == source for _, r in live) >= MAX_PER_SOURCE:
        raise ValueError(f"{MAX_PER_SOURCE} devices from {source} are already waiting for "
                         "approval")
    evicted = []
    if len(live) >= MAX_PENDING:
        oldest = min(live, key=lambda item: item[1].get("last_request_ms", 0))
        evicted.append(oldest[0])
    return expired, evicted
