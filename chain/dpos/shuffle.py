"""Deterministic randomness for the round schedule (DESIGN §4): PRNG, shuffle, weighted draws.

The PRNG's byte stream is ``H("ss/prng", seed || u64be(0)) || H("ss/prng", seed || u64be(1)) || ...``
and ``below(n)`` reads ``ceil(b/8)`` bytes big-endian with ``b = bit_length(n - 1)``, keeps the
low ``b`` bits and rejects values ``>= n``. Everything here is integer-only and order-preserving.
"""

from chain.crypto import hash_of

TAG_PRNG = b"ss/prng"
TAG_STANDBY = b"ss/standby"
SEED_SIZE = 32


def _weight(value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"weight must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"weight must be >= 0, got {value}")
    return value


class Prng:
    """BLAKE2b counter-mode PRNG seeded by 32 bytes; the same seed always gives the same stream."""

    def __init__(self, seed: bytes):
        """Start the stream of ``seed`` (exactly 32 bytes) at counter 0."""
        if not isinstance(seed, (bytes, bytearray, memoryview)) or len(seed) != SEED_SIZE:
            raise ValueError(f"seed must be {SEED_SIZE} bytes")
        self._seed = bytes(seed)
        self._counter = 0
        self._buffer = b""

    def _take(self, count):
        while len(self._buffer) < count:
            block = hash_of(TAG_PRNG, self._seed + self._counter.to_bytes(8, "big"))
            self._buffer += block
            self._counter += 1
        out, self._buffer = self._buffer[:count], self._buffer[count:]
        return out

    def below(self, n: int) -> int:
        """A uniform integer in ``[0, n)`` by rejection sampling; ``below(1)`` reads nothing."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, got {type(n).__name__}")
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        bits = (n - 1).bit_length()
        mask = (1 << bits) - 1
        while bits:
            value = int.from_bytes(self._take((bits + 7) // 8), "big") & mask
            if value < n:
                return value
        return 0


def shuffle(items, seed: bytes) -> list:
    """A new list with ``items`` permuted by Fisher-Yates (last index down) driven by Prng(seed)."""
    out = list(items)
    prng = Prng(seed)
    for i in range(len(out) - 1, 0, -1):
        j = prng.below(i + 1)
        out[i], out[j] = out[j], out[i]
    return out


def _draw_index(prng, weights):
    """Index into ``weights`` picked with probability weight/total, or None when total is 0."""
    total = sum(weights)
    if total == 0:
        return None
    point = prng.below(total)
    for index, weight in enumerate(weights):
        if point < weight:
            return index
        point -= weight
    raise AssertionError("unreachable: point < total")


def draw_weighted(weighted, seed: bytes):
    """One item of ``weighted`` ((item, weight >= 0) pairs, in a fixed order) drawn with
    probability weight/total by Prng(seed); None when the total weight is 0."""
    pairs = [(item, _weight(weight)) for item, weight in weighted]
    index = _draw_index(Prng(seed), [weight for _, weight in pairs])
    return None if index is None else pairs[index][0]


def round_order(producers, standby, seed: bytes, standby_slots: int) -> list:
    """The slot order of one round: ``shuffle(producers, seed)``, then up to ``standby_slots``
    standby addresses drawn by vote weight without replacement and each inserted at a uniform
    position in ``[0, len(order)]``. Draws and positions come from one Prng seeded with
    ``H("ss/standby", seed)``, alternating draw then position. ``standby`` is a list of
    (address, votes) ranked below N; zero-vote entries are never drawn, and when the positive
    weight runs out fewer (possibly no) standby slots are added."""
    if isinstance(standby_slots, bool) or not isinstance(standby_slots, int) or standby_slots < 0:
        raise ValueError(f"standby_slots must be an int >= 0, got {standby_slots!r}")
    order = shuffle(producers, seed)
    pool = [(address, _weight(votes)) for address, votes in standby]
    scheduled = set(order)
    if any(address in scheduled for address, _ in pool):
        raise ValueError("a standby candidate is also a producer")
    prng = Prng(hash_of(TAG_STANDBY, bytes(seed)))
    for _ in range(standby_slots):
        index = _draw_index(prng, [votes for _, votes in pool])
        if index is None:
            break
        address, _ = pool.pop(index)
        order.insert(prng.below(len(order) + 1), address)
    return order
