"""Addresses of libsodium functions inside PyNaCl's extension, for the Cython twins.

PyNaCl ships libsodium statically linked in ``nacl/_sodium.abi3.so`` and exports its symbols, so
cffi can open that file and hand raw function pointers to Cython: no libsodium-dev is needed to
build, and the compiled loops call libsodium with the GIL released (docs/fast.md).
"""

import cffi
import nacl._sodium

_CDEF = """
int crypto_sign_verify_detached(const unsigned char *sig, const unsigned char *m,
                                unsigned long long mlen, const unsigned char *pk);
int crypto_generichash_blake2b(unsigned char *out, size_t outlen, const unsigned char *in,
                               unsigned long long inlen, const unsigned char *key, size_t keylen);
"""

_ffi = cffi.FFI()
_ffi.cdef(_CDEF)
_lib = _ffi.dlopen(nacl._sodium.__file__)


def symbol_address(name):
    """The address of a libsodium function declared above, as an int."""
    return int(_ffi.cast("uintptr_t", getattr(_lib, name)))
