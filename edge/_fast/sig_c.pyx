# cython: language_level=3, boundscheck=False, wraparound=False
"""Ed25519 batch verification over libsodium on all cores: the compiled twin of sig_py.

The batch is checked under the GIL, then ``crypto_sign_verify_detached`` runs for every item in a
``prange`` loop with the GIL released (OpenMP threads), so verification scales with the cores.
``start_verify`` runs that loop on a native thread of its own, so the caller goes on with Python
work (executing the block) while the signatures are checked, with no GIL hand-offs at all.
Same names, results and errors as ``sig_py`` (the spec).
"""

import os

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cython.parallel cimport prange
from libc.stdint cimport uintptr_t
from libc.stdlib cimport free, malloc

from edge._fast._sodium import symbol_address
from edge._fast.sig_py import (MAX_BATCH, PUBKEY_SIZE, SIGNATURE_SIZE,  # same API as sig_py
                               check_batch)  # one set of input rules for both twins

ctypedef int (*verify_fn)(const unsigned char *sig, const unsigned char *m,
                          unsigned long long mlen, const unsigned char *pk) noexcept nogil

cdef verify_fn _verify = <verify_fn><uintptr_t>symbol_address("crypto_sign_verify_detached")
cdef int THREADS = max(1, os.cpu_count() or 1)


cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    int pthread_create(pthread_t *thread, const void *attr, void *(*start)(void *) noexcept nogil,
                       void *arg)
    int pthread_join(pthread_t thread, void **retval)


cdef struct Batch:
    Py_ssize_t n
    const unsigned char **pks
    const unsigned char **msgs
    const unsigned char **sigs
    unsigned long long *lens
    char *ok


cdef void _run(Batch *b) noexcept nogil:
    cdef Py_ssize_t i
    for i in prange(b.n, num_threads=THREADS, schedule="static"):
        b.ok[i] = _verify(b.sigs[i], b.msgs[i], b.lens[i], b.pks[i]) == 0


cdef void *_thread_main(void *arg) noexcept nogil:
    _run(<Batch *>arg)
    return NULL


cdef class VerifyJob:
    """A checked batch and its verification, run now or on a native thread of its own.

    The job holds the three lists, so every buffer it points into stays alive until it is done.
    """

    cdef Batch batch
    cdef tuple keep
    cdef pthread_t thread
    cdef bint running
    cdef list results

    def __cinit__(self, pubkeys, messages, signatures):
        cdef Py_ssize_t n = check_batch(pubkeys, messages, signatures), i
        self.keep = (pubkeys, messages, signatures)
        self.batch.n = n
        self.batch.pks = <const unsigned char **>malloc(n * sizeof(void *))
        self.batch.msgs = <const unsigned char **>malloc(n * sizeof(void *))
        self.batch.sigs = <const unsigned char **>malloc(n * sizeof(void *))
        self.batch.lens = <unsigned long long *>malloc(n * sizeof(unsigned long long))
        self.batch.ok = <char *>malloc(n)
        if (self.batch.pks == NULL or self.batch.msgs == NULL or self.batch.sigs == NULL
                or self.batch.lens == NULL or self.batch.ok == NULL):
            raise MemoryError()
        for i in range(n):
            self.batch.pks[i] = <const unsigned char *>PyBytes_AS_STRING(pubkeys[i])
            self.batch.msgs[i] = <const unsigned char *>PyBytes_AS_STRING(messages[i])
            self.batch.lens[i] = PyBytes_GET_SIZE(messages[i])
            self.batch.sigs[i] = <const unsigned char *>PyBytes_AS_STRING(signatures[i])

    cdef start(self):
        if pthread_create(&self.thread, NULL, _thread_main, &self.batch) != 0:
            with nogil:  # no thread to be had: verify on this one instead
                _run(&self.batch)
            self._collect()
        else:
            self.running = True

    cdef _collect(self):
        cdef Py_ssize_t i
        self.results = [self.batch.ok[i] != 0 for i in range(self.batch.n)]

    def result(self):
        """The per-item results, waiting for the verifying thread when there is one."""
        if self.results is None and self.running:
            with nogil:
                pthread_join(self.thread, NULL)
            self.running = False
            self._collect()
        elif self.results is None:
            with nogil:
                _run(&self.batch)
            self._collect()
        return list(self.results)

    def __dealloc__(self):
        if self.running:  # never free what the verifying thread still reads
            with nogil:
                pthread_join(self.thread, NULL)
        free(self.batch.pks); free(self.batch.msgs); free(self.batch.sigs)
        free(self.batch.lens); free(self.batch.ok)


def verify_batch(pubkeys, messages, signatures):
    """Verify each (pubkey, message, signature) triple; returns a list of bools."""
    return VerifyJob(pubkeys, messages, signatures).result()


def start_verify(pubkeys, messages, signatures):
    """Check the batch now and verify it in the background (all cores, no GIL); returns a job
    whose ``result()`` gives the list of bools."""
    cdef VerifyJob job = VerifyJob(pubkeys, messages, signatures)
    job.start()
    return job
