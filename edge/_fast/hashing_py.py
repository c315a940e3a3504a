"""Domain-tagged BLAKE2b-256 hashing and Merkle roots: the readable reference (docs/protocol.md §2).

Every hash in SmartShare is ``BLAKE2b-256(u8(len(tag)) || tag || data)``. The one-byte length prefix
keeps tags prefix-free, so two uses can never produce the same preimage.
"""

from hashlib import blake2b

HASH_SIZE = 32
ZERO_HASH = bytes(HASH_SIZE)
MAX_TAG = 255

TAG_MERKLE_LEAF = b"ss/merkle-leaf"
TAG_MERKLE_NODE = b"ss/merkle-node"
TAG_SMT_LEAF = b"ss/smt-leaf"
TAG_SMT_NODE = b"ss/smt-node"
TAG_SMT_VALUE = b"ss/smt-value"


def _prefix(tag):
    if not isinstance(tag, bytes):
        raise TypeError(f"hash tag must be bytes, not {type(tag).__name__}")
    if not 0 < len(tag) <= MAX_TAG:
        raise ValueError(f"hash tag must be 1..{MAX_TAG} bytes, got {len(tag)}")
    return bytes((len(tag),)) + tag


def _check_bytes(item, what):
    if not isinstance(item, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be bytes, not {type(item).__name__}")


def tagged_hash(tag, data):
    """BLAKE2b-256 of ``data`` under the domain ``tag``."""
    _check_bytes(data, "data")
    h = blake2b(_prefix(tag), digest_size=HASH_SIZE)
    h.update(data)
    return h.digest()


def hash_batch(tag, items):
    """``tagged_hash(tag, item)`` for every item, as a list."""
    base = blake2b(_prefix(tag), digest_size=HASH_SIZE)
    out = []
    for item in items:
        _check_bytes(item, "item")
        h = base.copy()
        h.update(item)
        out.append(h.digest())
    return out


def merkle_node(left, right):
    """Hash of an inner node of the ordered Merkle tree."""
    return tagged_hash(TAG_MERKLE_NODE, left + right)


def merkle_root(items):
    """Root of the ordered binary Merkle tree over ``items``; an odd last node is promoted.

    The empty list has the all-zero root. Leaves are ``tagged_hash(TAG_MERKLE_LEAF, item)``.
    """
    level = hash_batch(TAG_MERKLE_LEAF, items)
    if not level:
        return ZERO_HASH
    while len(level) > 1:
        nxt = [merkle_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def smt_value_hash(value):
    """Hash of a value stored in the sparse Merkle tree."""
    return tagged_hash(TAG_SMT_VALUE, value)


def smt_leaf_hash(key, value_hash):
    """Hash of an SMT leaf: its full 32-byte key and the hash of its value."""
    _check_len(key, HASH_SIZE, "key")
    _check_len(value_hash, HASH_SIZE, "value hash")
    return tagged_hash(TAG_SMT_LEAF, bytes(key) + bytes(value_hash))


def smt_node_hash(left, right):
    """Hash of an SMT inner node; an empty child is ``ZERO_HASH``."""
    _check_len(left, HASH_SIZE, "left child")
    _check_len(right, HASH_SIZE, "right child")
    return tagged_hash(TAG_SMT_NODE, bytes(left) + bytes(right))


def smt_climb(key, node_hash, siblings):
    """Hash from depth ``len(siblings)`` up to the root along ``key``'s path.

    ``siblings[i]`` is the sibling at depth ``i + 1`` (top first); bit ``i`` of ``key`` (most
    significant first) says whether the path went right at depth ``i``.
    """
    _check_len(key, HASH_SIZE, "key")
    _check_len(node_hash, HASH_SIZE, "node hash")
    if len(siblings) > 8 * HASH_SIZE:
        raise ValueError(f"at most {8 * HASH_SIZE} siblings, got {len(siblings)}")
    h = bytes(node_hash)
    for depth in range(len(siblings) - 1, -1, -1):
        sibling = siblings[depth]
        _check_len(sibling, HASH_SIZE, "sibling")
        if key[depth >> 3] >> (7 - (depth & 7)) & 1:
            h = smt_node_hash(sibling, h)
        else:
            h = smt_node_hash(h, sibling)
    return h


def _check_len(item, size, what):
    _check_bytes(item, what)
    if len(item) != size:
        raise ValueError(f"{what} must be {size} bytes, got {len(item)}")
