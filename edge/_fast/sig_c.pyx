# cython: language_level=3, boundscheck=False, wraparound=False
"""Ed25519 batch verification over libsodium on all cores: the compiled twin of sig_py.

The batch is checked under the GIL, then ``crypto_sign_verify_detached`` runs for every item in a
``prange`` loop with the GIL released (OpenMP threads), so verification scales with the cores.
Same names, results and errors as ``sig_py`` (the spec).
"""

import os

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from cython.parallel cimport prange
from libc.stdint cimport uintptr_t
from libc.stdlib cimport free, malloc

from edge._fast._sodium import symbol_address
from edge._fast.sig_py import MAX_BATCH, PUBKEY_SIZE, SIGNATURE_SIZE

ctypedef int (*verify_fn)(const unsigned char *sig, const unsigned char *m,
                          unsigned long long mlen, const unsigned char *pk) noexcept nogil

cdef verify_fn _verify = <verify_fn><uintptr_t>symbol_address("crypto_sign_verify_detached")
cdef int THREADS = max(1, os.cpu_count() or 1)


cdef Py_ssize_t _check_batch(object pubkeys, object messages, object signatures) except -1:
    cdef Py_ssize_t n, i
    for name, seq in (("pubkeys", pubkeys), ("messages", messages), ("signatures", signatures)):
        if not isinstance(seq, (list, tuple)):
            raise TypeError(f"{name} must be a list or tuple, not {type(seq).__name__}")
    n = len(pubkeys)
    if n == 0:
        raise ValueError("empty batch: nothing to verify")
    if n > MAX_BATCH:
        raise ValueError(f"batch of {n} exceeds the limit of {MAX_BATCH}")
    if len(messages) != n or len(signatures) != n:
        raise ValueError(f"batch lengths differ: {n} pubkeys, {len(messages)} messages, "
                         f"{len(signatures)} signatures")
    for i in range(n):
        _check_item(pubkeys[i], "pubkey", i, PUBKEY_SIZE)
        _check_item(messages[i], "message", i, -1)
        _check_item(signatures[i], "signature", i, SIGNATURE_SIZE)
    return n


cdef inline int _check_item(object item, str what, Py_ssize_t i, Py_ssize_t size) except -1:
    if not PyBytes_CheckExact(item):
        raise TypeError(f"{what} {i} must be bytes, not {type(item).__name__}")
    if size >= 0 and PyBytes_GET_SIZE(item) != size:
        raise ValueError(f"{what} {i} must be {size} bytes, got {len(item)}")
    return 0


def verify_batch(pubkeys, messages, signatures):
    """Verify each (pubkey, message, signature) triple; returns a list of bools."""
    cdef Py_ssize_t n = _check_batch(pubkeys, messages, signatures), i
    cdef const unsigned char **pks = <const unsigned char **>malloc(n * sizeof(void *))
    cdef const unsigned char **msgs = <const unsigned char **>malloc(n * sizeof(void *))
    cdef const unsigned char **sigs = <const unsigned char **>malloc(n * sizeof(void *))
    cdef unsigned long long *lens = <unsigned long long *>malloc(n * sizeof(unsigned long long))
    cdef char *ok = <char *>malloc(n)
    if pks == NULL or msgs == NULL or sigs == NULL or lens == NULL or ok == NULL:
        free(pks); free(msgs); free(sigs); free(lens); free(ok)
        raise MemoryError()
    try:
        for i in range(n):
            pks[i] = <const unsigned char *>PyBytes_AS_STRING(pubkeys[i])
            msgs[i] = <const unsigned char *>PyBytes_AS_STRING(messages[i])
            lens[i] = PyBytes_GET_SIZE(messages[i])
            sigs[i] = <const unsigned char *>PyBytes_AS_STRING(signatures[i])
        # The lists hold references to every buffer for the whole call, so the pointers stay valid.
        for i in prange(n, nogil=True, num_threads=THREADS, schedule="static"):
            ok[i] = _verify(sigs[i], msgs[i], lens[i], pks[i]) == 0
        return [ok[i] != 0 for i in range(n)]
    finally:
        free(pks); free(msgs); free(sigs); free(lens); free(ok)
