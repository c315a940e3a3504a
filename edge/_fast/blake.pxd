# cython: language_level=3
"""BLAKE2b-256 over a libsodium function pointer, shared by the compiled twins (cimport only).

Each module fetches the pointer once with ``_sodium.symbol_address("crypto_generichash_blake2b")``.
"""

from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

ctypedef int (*generichash_fn)(unsigned char *out, size_t outlen, const unsigned char *inp,
                               unsigned long long inlen, const unsigned char *key,
                               size_t keylen) noexcept nogil


cdef inline int hash_parts(generichash_fn blake2b, unsigned char *out, const unsigned char *p,
                           size_t plen, const unsigned char *d, size_t dlen) noexcept nogil:
    """out = BLAKE2b-256(p || d); -1 when memory runs out."""
    cdef unsigned char stack[512]
    cdef unsigned char *buf = stack
    if plen + dlen > 512:
        buf = <unsigned char *>malloc(plen + dlen)
        if buf == NULL:
            return -1
    memcpy(buf, p, plen)
    memcpy(buf + plen, d, dlen)
    blake2b(out, 32, buf, plen + dlen, NULL, 0)
    if buf != stack:
        free(buf)
    return 0


cdef inline void hash_pair(generichash_fn blake2b, unsigned char *out, const unsigned char *p,
                           size_t plen, const unsigned char *left,
                           const unsigned char *right) noexcept nogil:
    """out = BLAKE2b-256(p || left || right) for two 32-byte halves (out may alias either)."""
    cdef unsigned char buf[64]
    memcpy(buf, left, 32)
    memcpy(buf + 32, right, 32)
    hash_parts(blake2b, out, p, plen, buf, 64)
