# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Domain-tagged BLAKE2b-256 and Merkle roots over libsodium: the compiled twin of hashing_py.

Same names, same results, same errors as ``hashing_py`` (the spec). Hashing calls libsodium's
``crypto_generichash_blake2b`` through a pointer taken from PyNaCl's extension (see _sodium.py).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uintptr_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from edge._fast._sodium import symbol_address
from edge._fast.hashing_py import (HASH_SIZE, MAX_TAG, TAG_MERKLE_LEAF, TAG_MERKLE_NODE,
                                   TAG_SMT_LEAF, TAG_SMT_NODE, TAG_SMT_VALUE, ZERO_HASH)

from edge._fast.blake cimport generichash_fn, hash_pair, hash_parts

cdef generichash_fn _blake2b = <generichash_fn><uintptr_t>symbol_address("crypto_generichash_blake2b")


cdef bytes _as_bytes(object item, str what):
    if type(item) is bytes:
        return <bytes>item
    if isinstance(item, (bytearray, memoryview)):
        return bytes(item)
    raise TypeError(f"{what} must be bytes, not {type(item).__name__}")


cdef bytes _prefix(object tag):
    if not isinstance(tag, bytes):
        raise TypeError(f"hash tag must be bytes, not {type(tag).__name__}")
    if not 0 < len(tag) <= MAX_TAG:
        raise ValueError(f"hash tag must be 1..{MAX_TAG} bytes, got {len(tag)}")
    return bytes((len(tag),)) + tag


cdef bytes _digest(bytes prefix, const unsigned char *d, size_t dlen):
    cdef unsigned char out[32]
    if hash_parts(_blake2b, out, <const unsigned char *>PyBytes_AS_STRING(prefix),
                   PyBytes_GET_SIZE(prefix), d, dlen) != 0:
        raise MemoryError()
    return PyBytes_FromStringAndSize(<char *>out, 32)


def tagged_hash(tag, data):
    """BLAKE2b-256 of ``data`` under the domain ``tag``."""
    cdef bytes prefix = _prefix(tag)
    cdef bytes b = _as_bytes(data, "data")
    return _digest(prefix, <const unsigned char *>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))


def hash_batch(tag, items):
    """``tagged_hash(tag, item)`` for every item, as a list (computed without the GIL)."""
    cdef bytes prefix = _prefix(tag)
    cdef list keep = [_as_bytes(item, "item") for item in items]
    cdef Py_ssize_t n = len(keep), i
    if n == 0:
        return []
    cdef const unsigned char **ptrs = <const unsigned char **>malloc(n * sizeof(void *))
    cdef size_t *lens = <size_t *>malloc(n * sizeof(size_t))
    cdef unsigned char *outs = <unsigned char *>malloc(n * 32)
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(prefix)
    cdef size_t plen = PyBytes_GET_SIZE(prefix)
    cdef int failed = 0
    if ptrs == NULL or lens == NULL or outs == NULL:
        free(ptrs); free(lens); free(outs)
        raise MemoryError()
    try:
        for i in range(n):
            ptrs[i] = <const unsigned char *>PyBytes_AS_STRING(keep[i])
            lens[i] = PyBytes_GET_SIZE(keep[i])
        with nogil:
            for i in range(n):
                if hash_parts(_blake2b, outs + 32 * i, p, plen, ptrs[i], lens[i]) != 0:
                    failed = 1
                    break
        if failed:
            raise MemoryError()
        return [PyBytes_FromStringAndSize(<char *>(outs + 32 * i), 32) for i in range(n)]
    finally:
        free(ptrs); free(lens); free(outs)


cdef bytes _NODE_PREFIX = _prefix(TAG_MERKLE_NODE)
cdef bytes _SMT_NODE_PREFIX = _prefix(TAG_SMT_NODE)
cdef bytes _SMT_LEAF_PREFIX = _prefix(TAG_SMT_LEAF)
cdef bytes _SMT_VALUE_PREFIX = _prefix(TAG_SMT_VALUE)


cdef inline void _pair(unsigned char *out, bytes prefix, const unsigned char *left,
                       const unsigned char *right) noexcept:
    hash_pair(_blake2b, out, <const unsigned char *>PyBytes_AS_STRING(prefix),
              PyBytes_GET_SIZE(prefix), left, right)


def merkle_node(left, right):
    """Hash of an inner node of the ordered Merkle tree."""
    cdef bytes l = _as_bytes(left, "data"), r = _as_bytes(right, "data")
    cdef bytes both = l + r
    return _digest(_NODE_PREFIX, <const unsigned char *>PyBytes_AS_STRING(both),
                   PyBytes_GET_SIZE(both))


def merkle_root(items):
    """Root of the ordered binary Merkle tree over ``items``; an odd last node is promoted."""
    cdef list leaves = hash_batch(TAG_MERKLE_LEAF, items)
    cdef Py_ssize_t n = len(leaves), i, width
    if n == 0:
        return ZERO_HASH
    cdef unsigned char *level = <unsigned char *>malloc(n * 32)
    if level == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            memcpy(level + 32 * i, PyBytes_AS_STRING(leaves[i]), 32)
        width = n
        while width > 1:
            for i in range(width // 2):
                _pair(level + 32 * i, _NODE_PREFIX, level + 64 * i, level + 64 * i + 32)
            if width % 2:
                memcpy(level + 32 * (width // 2), level + 32 * (width - 1), 32)
            width = (width + 1) // 2
        return PyBytes_FromStringAndSize(<char *>level, 32)
    finally:
        free(level)


cdef bytes _exact(object item, Py_ssize_t size, str what):
    cdef bytes b = _as_bytes(item, what)
    if PyBytes_GET_SIZE(b) != size:
        raise ValueError(f"{what} must be {size} bytes, got {len(b)}")
    return b


def smt_value_hash(value):
    """Hash of a value stored in the sparse Merkle tree."""
    cdef bytes b = _as_bytes(value, "data")
    return _digest(_SMT_VALUE_PREFIX, <const unsigned char *>PyBytes_AS_STRING(b),
                   PyBytes_GET_SIZE(b))


def smt_leaf_hash(key, value_hash):
    """Hash of an SMT leaf: its full 32-byte key and the hash of its value."""
    cdef bytes k = _exact(key, HASH_SIZE, "key"), v = _exact(value_hash, HASH_SIZE, "value hash")
    cdef unsigned char out[32]
    _pair(out, _SMT_LEAF_PREFIX, <const unsigned char *>PyBytes_AS_STRING(k),
          <const unsigned char *>PyBytes_AS_STRING(v))
    return PyBytes_FromStringAndSize(<char *>out, 32)


def smt_node_hash(left, right):
    """Hash of an SMT inner node; an empty child is ``ZERO_HASH``."""
    cdef bytes l = _exact(left, HASH_SIZE, "left child"), r = _exact(right, HASH_SIZE, "right child")
    cdef unsigned char out[32]
    _pair(out, _SMT_NODE_PREFIX, <const unsigned char *>PyBytes_AS_STRING(l),
          <const unsigned char *>PyBytes_AS_STRING(r))
    return PyBytes_FromStringAndSize(<char *>out, 32)


def smt_climb(key, node_hash, siblings):
    """Hash from depth ``len(siblings)`` up to the root along ``key``'s path."""
    cdef bytes k = _exact(key, HASH_SIZE, "key")
    cdef bytes start = _exact(node_hash, HASH_SIZE, "node hash")
    if len(siblings) > 8 * HASH_SIZE:
        raise ValueError(f"at most {8 * HASH_SIZE} siblings, got {len(siblings)}")
    cdef list sibs = [_exact(s, HASH_SIZE, "sibling") for s in siblings]
    cdef const unsigned char *kp = <const unsigned char *>PyBytes_AS_STRING(k)
    cdef unsigned char h[32]
    cdef Py_ssize_t depth
    memcpy(h, PyBytes_AS_STRING(start), 32)
    for depth in range(len(sibs) - 1, -1, -1):
        if (kp[depth >> 3] >> (7 - (depth & 7))) & 1:
            _pair(h, _SMT_NODE_PREFIX, <const unsigned char *>PyBytes_AS_STRING(sibs[depth]), h)
        else:
            _pair(h, _SMT_NODE_PREFIX, h, <const unsigned char *>PyBytes_AS_STRING(sibs[depth]))
    return PyBytes_FromStringAndSize(<char *>h, 32)
