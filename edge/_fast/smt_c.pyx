# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The sparse Merkle tree's inner loop in C: the compiled twin of smt_py.

Same names, results and errors as ``smt_py`` (the spec). Records are parsed and built in C
buffers, node hashes come from libsodium, and key splitting is a binary search on raw bits; the
storage callables stay Python (LMDB through py-lmdb).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uintptr_t
from libc.string cimport memcmp, memcpy

from edge._fast._sodium import symbol_address
from edge._fast.blake cimport generichash_fn, hash_pair, hash_parts
from edge._fast.cursor cimport (Cursor, as_bytes, fail, open_cursor, read_end, read_fixed,
                                read_u8, read_uvarint, read_var_bytes)
from edge._fast.hashing_py import TAG_SMT_LEAF, TAG_SMT_NODE, TAG_SMT_VALUE
from edge._fast.smt_py import (EMPTY_REF, KEY_SIZE, MAX_NODES, MAX_VALUE, NODE_KEY_SIZE,
                               NODE_KIND, RECORD_INNER, RECORD_LEAF, REF_EMPTY, REF_INNER,
                               REF_LEAF, bit, decode_ref, encode_ref, read_ref, right_half_start)

cdef generichash_fn _blake2b = <generichash_fn><uintptr_t>symbol_address("crypto_generichash_blake2b")

# C copies of the constants, so the hot paths compare machine integers (checked below).
cdef enum:
    C_KEY = 32
    C_MAX_VALUE = 4096
    C_EMPTY = 0
    C_INNER = 1
    C_LEAF = 2
    C_RECORD_INNER = 0
    C_RECORD_LEAF = 1
    C_NODE_KEY = 13

assert (C_KEY, C_MAX_VALUE) == (KEY_SIZE, MAX_VALUE)
assert (C_EMPTY, C_INNER, C_LEAF) == (REF_EMPTY, REF_INNER, REF_LEAF)
assert (C_RECORD_INNER, C_RECORD_LEAF) == (RECORD_INNER, RECORD_LEAF)
assert C_NODE_KEY == NODE_KEY_SIZE and NODE_KIND == 0
cdef unsigned long long C_MAX_NODES = MAX_NODES
cdef tuple C_EMPTY_REF = EMPTY_REF


cdef bytes _prefix(bytes tag):
    return bytes((len(tag),)) + tag


cdef bytes _LEAF_PREFIX = _prefix(TAG_SMT_LEAF)
cdef bytes _NODE_PREFIX = _prefix(TAG_SMT_NODE)
cdef bytes _VALUE_PREFIX = _prefix(TAG_SMT_VALUE)


# -- records --------------------------------------------------------------------------------------

cdef bytes _node_key_of(unsigned long long version, unsigned long long index):
    """The version (8 bytes big-endian), the node kind (0x00) and the index (4 bytes)."""
    cdef unsigned char out[13]
    cdef int i
    for i in range(8):
        out[7 - i] = (version >> (8 * i)) & 0xFF
    out[8] = 0
    for i in range(4):
        out[12 - i] = (index >> (8 * i)) & 0xFF
    return PyBytes_FromStringAndSize(<char *>out, 13)


cdef bytes _node_key(tuple ref):
    return _node_key_of(ref[2], ref[3])


def node_key(ref):
    """Where a node is stored: its creating version (8 bytes big-endian), the node kind (0x00)
    and its index among that version's new nodes (4 bytes big-endian; docs/protocol.md §10.2)."""
    return _node_key(tuple(ref))


cdef bytes _load(object get_node, tuple ref):
    record = get_node(_node_key(ref))
    if record is None:
        raise LookupError(f"node {ref[1].hex()} of version {ref[2]} is missing")
    return as_bytes(record)


def load_node(get_node, ref):
    """The stored record of ``ref``; LookupError when storage lacks it."""
    return _load(get_node, tuple(ref))


cdef tuple _read_ref(Cursor *c, str field):
    cdef int kind = read_u8(c, field, ".kind")
    cdef unsigned long long version, index
    if kind == C_EMPTY:
        return C_EMPTY_REF
    if kind != C_INNER and kind != C_LEAF:
        fail(field, f"unknown child kind {kind}", ".kind")
    node_hash = read_fixed(c, C_KEY, field, ".hash")
    read_uvarint(c, field, &version, ".version")
    read_uvarint(c, field, &index, ".index")
    if index >= C_MAX_NODES:
        fail(field, f"node index {index} is 2^32 or more", ".index")
    return (kind, node_hash, version, index)


cdef int _record_tag(Cursor *c, int expected) except -1:
    cdef int tag = read_u8(c, "node.tag")
    if tag != expected:
        fail("node.tag", f"record tag 0x{tag:02x}, expected 0x{expected:02x}")
    return 0


cdef tuple _read_inner(bytes raw):
    cdef Cursor c
    open_cursor(&c, raw)
    _record_tag(&c, C_RECORD_INNER)
    left = _read_ref(&c, "node.left")
    right = _read_ref(&c, "node.right")
    read_end(&c, "node")
    return left, right


cdef tuple _read_leaf(bytes raw):
    cdef Cursor c
    open_cursor(&c, raw)
    _record_tag(&c, C_RECORD_LEAF)
    key = read_fixed(&c, C_KEY, "node.key")
    value = read_var_bytes(&c, C_MAX_VALUE, "node.value")
    read_end(&c, "node")
    return key, value


def read_inner(record):
    """``(left ref, right ref)`` of an inner-node record."""
    return _read_inner(as_bytes(record))


def read_leaf(record):
    """``(key, value)`` of a leaf record."""
    return _read_leaf(as_bytes(record))


cdef int _put_uvarint(unsigned char *out, unsigned long long value) noexcept:
    """Write ``value`` as a uvarint at ``out`` (room for 10 bytes); returns the bytes written."""
    cdef int n = 0
    while value >= 0x80:
        out[n] = (value & 0x7F) | 0x80
        value >>= 7
        n += 1
    out[n] = value
    return n + 1


cdef int _put_ref(unsigned char *out, tuple ref) except -1:
    """Write ``ref`` at ``out`` (room for 48 bytes); returns the bytes written."""
    cdef int kind = ref[0], n = 33
    if kind == C_EMPTY:
        out[0] = 0
        return 1
    out[0] = kind
    memcpy(out + 1, PyBytes_AS_STRING(ref[1]), 32)
    n += _put_uvarint(out + n, ref[2])
    return n + _put_uvarint(out + n, ref[3])


# -- walking and updating -------------------------------------------------------------------------

cdef inline int _bit(const unsigned char *key, int depth) noexcept:
    return (key[depth >> 3] >> (7 - (depth & 7))) & 1


def walk(root, key, get_node):
    """The ref where ``key``'s path ends below ``root``, and the sibling hashes, top first."""
    cdef bytes k = bytes(key)
    cdef const unsigned char *kp = <const unsigned char *>PyBytes_AS_STRING(k)
    cdef list siblings = []
    cdef int depth = 0
    cdef tuple ref = tuple(root), left, right
    while <int>ref[0] == C_INNER:
        left, right = _read_inner(_load(get_node, ref))
        if _bit(kp, depth):
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
    cdef _Update job = _Update(list(keys), list(values), version, get_node)
    root = job.subtree(root, 0, 0, len(keys))
    return root, job.new_nodes


cdef class _Update:
    """One batched update: a single recursive pass over the sorted changed keys."""

    cdef list keys, values, new_nodes
    cdef object version, get_node

    def __init__(self, list keys, list values, version, get_node):
        self.keys, self.values, self.version = keys, values, version
        self.get_node, self.new_nodes = get_node, []

    cdef const unsigned char *_key(self, Py_ssize_t i):
        return <const unsigned char *>PyBytes_AS_STRING(self.keys[i])

    cdef tuple subtree(self, tuple ref, int depth, Py_ssize_t lo, Py_ssize_t hi):
        cdef Py_ssize_t i, first = -1, count = 0
        cdef int kind = ref[0]
        if lo == hi:
            return ref
        if kind == C_INNER:
            return self._split(ref, _read_inner(_load(self.get_node, ref)), depth, lo, hi)
        if kind == C_LEAF:
            return self._at_leaf(ref, depth, lo, hi)
        for i in range(lo, hi):
            if self.values[i] is not None:
                count += 1
                if first < 0:
                    first = i
        if count <= 1:
            return self._write_leaf(first) if count else C_EMPTY_REF
        return self._split(None, (C_EMPTY_REF, C_EMPTY_REF), depth, lo, hi)

    cdef tuple _at_leaf(self, tuple ref, int depth, Py_ssize_t lo, Py_ssize_t hi):
        leaf_key, leaf_value = _read_leaf(_load(self.get_node, ref))
        cdef const unsigned char *lk = <const unsigned char *>PyBytes_AS_STRING(leaf_key)
        cdef Py_ssize_t own = self._find(lk, lo, hi), i
        for i in range(lo, hi):
            if i != own and self.values[i] is not None:
                # The leaf's hash does not depend on its depth: it moves down as the same ref.
                children = (ref, C_EMPTY_REF) if _bit(lk, depth) == 0 else (C_EMPTY_REF, ref)
                return self._split(None, children, depth, lo, hi)
        if own < 0 or self.values[own] == leaf_value:
            return ref
        return C_EMPTY_REF if self.values[own] is None else self._write_leaf(own)

    cdef Py_ssize_t _find(self, const unsigned char *key, Py_ssize_t lo, Py_ssize_t hi):
        """Index of ``key`` in ``keys[lo:hi]``, or -1."""
        cdef Py_ssize_t mid
        cdef int cmp
        while lo < hi:
            mid = (lo + hi) >> 1
            cmp = memcmp(self._key(mid), key, C_KEY)
            if cmp == 0:
                return mid
            if cmp < 0:
                lo = mid + 1
            else:
                hi = mid
        return -1

    cdef Py_ssize_t _first_right(self, int depth, Py_ssize_t lo, Py_ssize_t hi):
        """First index in ``lo:hi`` whose key has bit ``depth`` set (they share the bits above)."""
        cdef Py_ssize_t mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if _bit(self._key(mid), depth):
                hi = mid
            else:
                lo = mid + 1
        return lo

    cdef tuple _split(self, object ref, tuple children, int depth, Py_ssize_t lo, Py_ssize_t hi):
        cdef Py_ssize_t mid = self._first_right(depth, lo, hi)
        cdef tuple left = children[0], right = children[1]
        cdef tuple new_left = self.subtree(left, depth + 1, lo, mid)
        cdef tuple new_right = self.subtree(right, depth + 1, mid, hi)
        cdef int lk = new_left[0], rk = new_right[0]
        if ref is not None and new_left == left and new_right == right:
            return ref
        if lk == C_EMPTY and rk != C_INNER:
            return new_right  # lift a lone leaf (or an empty subtree)
        if rk == C_EMPTY and lk != C_INNER:
            return new_left
        return self._write_inner(new_left, new_right)

    cdef tuple _write_leaf(self, Py_ssize_t index):
        cdef bytes key = self.keys[index]
        cdef bytes value = as_bytes(self.values[index])
        cdef Py_ssize_t n = PyBytes_GET_SIZE(value), pos = 1 + C_KEY, length
        cdef unsigned char pair[64]
        cdef unsigned char record[1 + 32 + 2 + 4096]
        cdef unsigned char leaf_hash[32]
        if n > C_MAX_VALUE:
            raise ValueError(f"node.value: {n} bytes exceeds the limit of {C_MAX_VALUE}")
        memcpy(pair, PyBytes_AS_STRING(key), 32)
        hash_parts(_blake2b, pair + 32, <const unsigned char *>PyBytes_AS_STRING(_VALUE_PREFIX),
                   PyBytes_GET_SIZE(_VALUE_PREFIX),
                   <const unsigned char *>PyBytes_AS_STRING(value), n)
        hash_pair(_blake2b, leaf_hash, <const unsigned char *>PyBytes_AS_STRING(_LEAF_PREFIX),
                  PyBytes_GET_SIZE(_LEAF_PREFIX), pair, pair + 32)
        record[0] = C_RECORD_LEAF
        memcpy(record + 1, pair, 32)
        length = n
        while length >= 0x80:
            record[pos] = (length & 0x7F) | 0x80
            length >>= 7
            pos += 1
        record[pos] = length
        memcpy(record + pos + 1, PyBytes_AS_STRING(value), n)
        return self._store(C_LEAF, leaf_hash, record, pos + 1 + n)

    cdef tuple _write_inner(self, tuple left, tuple right):
        cdef unsigned char record[1 + 2 * 48]
        cdef unsigned char node_hash[32]
        cdef int n
        hash_pair(_blake2b, node_hash, <const unsigned char *>PyBytes_AS_STRING(_NODE_PREFIX),
                  PyBytes_GET_SIZE(_NODE_PREFIX),
                  <const unsigned char *>PyBytes_AS_STRING(left[1]),
                  <const unsigned char *>PyBytes_AS_STRING(right[1]))
        record[0] = C_RECORD_INNER
        n = 1 + _put_ref(record + 1, left)
        n += _put_ref(record + n, right)
        return self._store(C_INNER, node_hash, record, n)

    cdef tuple _store(self, int kind, unsigned char *node_hash, unsigned char *record,
                      Py_ssize_t size):
        cdef bytes h = PyBytes_FromStringAndSize(<char *>node_hash, 32)
        cdef unsigned long long index = len(self.new_nodes)
        if index >= C_MAX_NODES:
            raise ValueError("a version may make at most 2^32 nodes")
        self.new_nodes.append((_node_key_of(self.version, index),
                               PyBytes_FromStringAndSize(<char *>record, size)))
        return (kind, h, self.version, index)
