"""Reveal chains: the commit-reveal randomness behind the round schedule (docs/protocol.md §13).

A producer's chain of length ``CHAIN_LENGTH`` starts from a secret ``x[N]`` and hashes down:
``x[i-1] = H("ss/reveal", x[i])``. It commits ``x[0]`` and reveals ``x[1], x[2], ...``, one per
block; anyone checks a reveal by hashing it onto the previous one. The values are fixed the
moment the chain is committed, so a producer can only reveal or stay silent: it cannot grind.
"""

from chain.crypto import hash_of

TAG_REVEAL = b"ss/reveal"
TAG_SEED = b"ss/seed"
TAG_BINDING = b"ss/producer-bind"
CHAIN_LENGTH = 1 << 18
CHECKPOINT_EVERY = 512
RENEW_BELOW = CHAIN_LENGTH // 8


def opens(reveal: bytes, commit: bytes) -> bool:
    """True when ``reveal`` is the value committed to by ``commit``."""
    return len(reveal) == 32 and hash_of(TAG_REVEAL, reveal) == commit


def mix_seed(seed: bytes, reveal: bytes) -> bytes:
    """The round seed after one more reveal."""
    return hash_of(TAG_SEED, seed + reveal)


def round_seed_start(previous_seed: bytes, round_number: int) -> bytes:
    """The seed a round's reveals start from (it carries the previous round's seed on)."""
    return hash_of(TAG_SEED, previous_seed + round_number.to_bytes(8, "big"))


def binding_hash(owner: bytes, epoch: int, commit: bytes) -> bytes:
    """What a producer key signs to agree to sign blocks for ``owner`` with this chain."""
    return hash_of(TAG_BINDING, owner + epoch.to_bytes(8, "big") + commit)


class RevealChain:
    """One reveal chain computed from its secret, keeping every ``CHECKPOINT_EVERY``-th value
    (a few KB) so any reveal costs at most that many hashes."""

    def __init__(self, secret: bytes):
        if len(secret) != 32:
            raise ValueError("a reveal chain's secret is 32 bytes")
        self._checkpoints = {}  # index -> x[index], for every multiple of CHECKPOINT_EVERY
        value = secret
        for index in range(CHAIN_LENGTH, -1, -1):
            if index % CHECKPOINT_EVERY == 0:
                self._checkpoints[index] = value
            if index:
                value = hash_of(TAG_REVEAL, value)
        self.commit = self._checkpoints[0]
        self._index_of = {}

    def value(self, index: int) -> bytes:
        """``x[index]``."""
        if not 0 <= index <= CHAIN_LENGTH:
            raise IndexError(f"reveal index {index} is outside 0..{CHAIN_LENGTH}")
        upper = -(-index // CHECKPOINT_EVERY) * CHECKPOINT_EVERY
        value = self._checkpoints[upper]
        for _ in range(upper - index):
            value = hash_of(TAG_REVEAL, value)
        return value

    def index_of(self, commit: bytes):
        """The index whose value is ``commit`` (the last revealed one), or None."""
        if commit in self._index_of:
            return self._index_of[commit]
        for upper in sorted(self._checkpoints):
            value = self._checkpoints[upper]
            for index in range(upper, max(upper - CHECKPOINT_EVERY, -1), -1):
                if value == commit:
                    self._index_of = {commit: index}
                    return index
                value = hash_of(TAG_REVEAL, value)
        return None

    def reveal_after(self, commit: bytes):
        """``(reveal, remaining)`` for the block after ``commit``, or None when ``commit`` is
        not on this chain or is its last value."""
        index = self.index_of(commit)
        if index is None or index >= CHAIN_LENGTH:
            return None
        reveal = self.value(index + 1)
        self._index_of = {reveal: index + 1}
        return reveal, CHAIN_LENGTH - index - 1
