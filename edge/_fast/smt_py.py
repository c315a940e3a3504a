"""The sparse Merkle tree's inner loop: node records, batched updates and path walks (reference).

Spec: docs/protocol.md §10. Storage stays with the caller: an update reads nodes through
``get_node(node_key) -> record or None`` and returns what to write, so the caller can batch it.
A reference is a tuple ``(kind, hash, version, index)``: the node's hash, the version that
created it and its place among that version's new nodes (where it is stored). A missing node
raises ``LookupError``.
"""

from bisect import bisect_left

from edge._fast.codec_py import DecodeError, Reader, encode_bytes, encode_uvarint
from edge._fast.hashing_py import HASH_SIZE, ZERO_HASH, smt_leaf_hash, smt_node_hash, \
    smt_value_hash

KEY_SIZE = HASH_SIZE
MAX_VALUE = 4096
REF_EMPTY, REF_INNER, REF_LEAF = 0, 1, 2
NODE_KIND = 0x00            # the record kind of a node in its version's records (after the version)
NODE_KEY_SIZE = 8 + 1 + 4
MAX_NODES = 1 << 32         # new nodes one version may create (the index is 4 bytes in keys)
EMPTY_REF = (REF_EMPTY, ZERO_HASH, 0, 0)
RECORD_INNER, RECORD_LEAF = 0, 1


# -- records --------------------------------------------------------------------------------------

def encode_ref(ref):
    """``0x00`` for an empty subtree, else kind, hash, creating version and index."""
    kind, node_hash, version, index = ref
    if kind == REF_EMPTY:
        return b"\x00"
    return bytes((kind,)) + node_hash + encode_uvarint(version) + encode_uvarint(index)


def read_ref(r, field):
    kind = r.u8(field + ".kind")
    if kind == REF_EMPTY:
        return EMPTY_REF
    if kind not in (REF_INNER, REF_LEAF):
        raise DecodeError(field + ".kind", f"unknown child kind {kind}")
    node_hash, version = r.fixed(HASH_SIZE, field + ".hash"), r.uvarint(field + ".version")
    index = r.uvarint(field + ".index")
    if index >= MAX_NODES:
        raise DecodeError(field + ".index", f"node index {index} is 2^32 or more")
    return kind, node_hash, version, index


def decode_ref(data):
    r = Reader(data)
    ref = read_ref(r, "root")
    r.end("root")
    return ref


def node_key(ref):
    """Where a node is stored: its creating version (8 bytes big-endian), ``NODE_KIND`` and its
    index among that version's new nodes (4 bytes big-endian; docs/protocol.md §10.2)."""
    return ref[2].to_bytes(8, "big") + b"\x00" + ref[3].to_bytes(4, "big")


def load_node(get_node, ref):
    """The stored record of ``ref``; LookupError when storage lacks it."""
    record = get_node(node_key(ref))
    if record is None:
        raise LookupError(f"node {ref[1].hex()} of version {ref[2]} is missing")
    return record


def read_inner(record):
    """``(left ref, right ref)`` of an inner-node record."""
    r = _record(record, RECORD_INNER)
    children = read_ref(r, "node.left"), read_ref(r, "node.right")
    r.end("node")
    return children


def read_leaf(record):
    """``(key, value)`` of a leaf record."""
    r = _record(record, RECORD_LEAF)
    leaf = r.fixed(KEY_SIZE, "node.key"), r.var_bytes(MAX_VALUE, "node.value")
    r.end("node")
    return leaf


def _record(record, record_tag):
    r = Reader(record)
    tag = r.u8("node.tag")
    if tag != record_tag:
        raise DecodeError("node.tag", f"record tag 0x{tag:02x}, expected 0x{record_tag:02x}")
    return r


# -- walking and updating -------------------------------------------------------------------------

def walk(root, key, get_node):
    """The ref where ``key``'s path ends below ``root``, and the sibling hashes, top first."""
    ref, siblings, depth = root, [], 0
    while ref[0] == REF_INNER:
        left, right = read_inner(load_node(get_node, ref))
        if bit(key, depth):
            ref, sibling = right, left
        else:
            ref, sibling = left, right
        siblings.append(sibling[1])
        depth += 1
    return ref, tuple(siblings)


def update(root, keys, values, version, get_node):
    """Apply ``values[i]`` (``None`` deletes) at the sorted, distinct ``keys[i]`` below ``root``
    as ``version``. Returns ``(new root ref, new nodes as [(node_key, record)])``; nothing is
    written. New nodes are numbered in the order they are made (children before parents, left
    before right), so they come in key order. (The nodes it replaces are found later, when they
    are pruned, by diffing versions: chain/state/smt.py.)"""
    job = _Update(keys, values, version, get_node)
    root = job.subtree(root, 0, 0, len(keys))
    return root, job.new_nodes


class _Update:
    """One batched update: a single recursive pass over the sorted changed keys."""

    __slots__ = ("keys", "values", "version", "get_node", "new_nodes")

    def __init__(self, keys, values, version, get_node):
        self.keys, self.values, self.version = keys, values, version
        self.get_node, self.new_nodes = get_node, []

    def subtree(self, ref, depth, lo, hi):
        """The new ref of subtree ``ref`` at ``depth`` once changes ``lo:hi`` are applied."""
        if lo == hi:
            return ref
        if ref[0] == REF_INNER:
            return self._split(ref, read_inner(load_node(self.get_node, ref)), depth, lo, hi)
        if ref[0] == REF_LEAF:
            return self._at_leaf(ref, depth, lo, hi)
        inserts = [i for i in range(lo, hi) if self.values[i] is not None]
        if len(inserts) <= 1:
            return self._write_leaf(inserts[0]) if inserts else EMPTY_REF
        return self._split(None, (EMPTY_REF, EMPTY_REF), depth, lo, hi)

    def _at_leaf(self, ref, depth, lo, hi):
        """Changes reaching a leaf: settle them here, or push the leaf down beside new keys."""
        leaf_key, leaf_value = read_leaf(load_node(self.get_node, ref))
        own = bisect_left(self.keys, leaf_key, lo, hi)
        own = own if own < hi and self.keys[own] == leaf_key else None
        if any(self.values[i] is not None for i in range(lo, hi) if i != own):
            # The leaf's hash does not depend on its depth, so it moves down as the same ref.
            children = (ref, EMPTY_REF) if bit(leaf_key, depth) == 0 else (EMPTY_REF, ref)
            return self._split(None, children, depth, lo, hi)
        if own is None or self.values[own] == leaf_value:
            return ref
        return EMPTY_REF if self.values[own] is None else self._write_leaf(own)

    def _split(self, ref, children, depth, lo, hi):
        """Apply changes to both halves of a (possibly virtual, when ``ref`` is None) inner node."""
        mid = bisect_left(self.keys, right_half_start(self.keys[lo], depth), lo, hi)
        left, right = children
        new_left = self.subtree(left, depth + 1, lo, mid) if mid > lo else left
        new_right = self.subtree(right, depth + 1, mid, hi) if hi > mid else right
        if ref is not None and (new_left, new_right) == children:
            return ref
        if new_left[0] == REF_EMPTY and new_right[0] != REF_INNER:
            return new_right  # lift a lone leaf (or an empty subtree)
        if new_right[0] == REF_EMPTY and new_left[0] != REF_INNER:
            return new_left
        return self._write_inner(new_left, new_right)

    def _write_leaf(self, index):
        key, value = self.keys[index], self.values[index]
        record = bytes((RECORD_LEAF,)) + key + encode_bytes(value, MAX_VALUE, "node.value")
        return self._store(REF_LEAF, smt_leaf_hash(key, smt_value_hash(value)), record)

    def _write_inner(self, left, right):
        record = bytes((RECORD_INNER,)) + encode_ref(left) + encode_ref(right)
        return self._store(REF_INNER, smt_node_hash(left[1], right[1]), record)

    def _store(self, kind, node_hash, record):
        """A new node: the next index of this version."""
        index = len(self.new_nodes)
        if index >= MAX_NODES:
            raise ValueError("a version may make at most 2^32 nodes")
        ref = (kind, node_hash, self.version, index)
        self.new_nodes.append((node_key(ref), record))
        return ref


def bit(key, depth):
    """Bit ``depth`` of ``key``, most significant first: 1 means the path goes right."""
    return key[depth >> 3] >> (7 - (depth & 7)) & 1


def right_half_start(key, depth):
    """The smallest key sharing ``key``'s first ``depth`` bits whose bit ``depth`` is set."""
    shift = 8 * KEY_SIZE - 1 - depth
    n = int.from_bytes(key, "big") >> (shift + 1) << 1 | 1
    return (n << shift).to_bytes(KEY_SIZE, "big")
