"""Token buckets: a per-device limit on frames, and a shared one on join requests."""


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; ``take(now)`` spends one when there is one.

    Time is passed in (seconds, monotonic) so a whole batch uses one clock reading.
    A new bucket starts full.
    """

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate, burst, now):
        if rate <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, got {rate}, {burst}")
        self.rate, self.burst = float(rate), float(burst)
        self.tokens, self.stamp = float(burst), now

    def take(self, now):
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Buckets:
    """One bucket per key (a device id), created full on first use."""

    def __init__(self, rate, burst):
        TokenBucket(rate, burst, 0.0)  # validate once
        self.rate, self.burst = rate, burst
        self._buckets = {}

    def take(self, key, now):
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)

    def __len__(self):
        return len(self._buckets)

    def clear(self):
        self._buckets.clear()

    def forget(self, keep):
        """Drop the buckets of keys not in ``keep`` (revoked devices)."""
        for key in [k for k in self._buckets if k not in keep]:
            del self._buckets[key]
