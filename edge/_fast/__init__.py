"""Hot loops, each with a compiled twin and a pure-Python reference of the same API.

This module is the one place that chooses between them (docs/fast.md): ``SMARTSHARE_PURE=1``
forces the reference; otherwise each compiled twin is used when it was built. ``IMPLEMENTATION``
is ``"c"`` when every twin in use is compiled, else ``"py"``; ``IMPLEMENTATIONS`` tells per module.
This package imports nothing else of SmartShare's.
"""

import importlib
import os

PURE = os.environ.get("SMARTSHARE_PURE", "").strip() not in ("", "0")
# The OpenMP threads of the batch verifier sleep between batches instead of spinning, so they
# leave the cores to the transactions that execute meanwhile (must be set before libgomp loads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
MODULES = ("hashing", "codec", "sig", "smt")


def _load(name):
    if not PURE:
        try:
            return importlib.import_module(f"{__name__}.{name}_c"), "c"
        except ImportError:
            pass
    return importlib.import_module(f"{__name__}.{name}_py"), "py"


def compiled_modules():
    """The compiled twins that are importable in this process, by module name."""
    found = {}
    for name in MODULES:
        try:
            found[name] = importlib.import_module(f"{__name__}.{name}_c")
        except ImportError:
            pass
    return found


hashing, _h = _load("hashing")
codec, _c = _load("codec")
sig, _s = _load("sig")
smt, _t = _load("smt")
IMPLEMENTATIONS = {"hashing": _h, "codec": _c, "sig": _s, "smt": _t}
IMPLEMENTATION = "c" if set(IMPLEMENTATIONS.values()) == {"c"} else "py"

from . import codec_py  # noqa: E402  (the format's constants, whichever twin runs)
from .codec_py import DecodeError  # noqa: E402  (one exception class for both twins)

tagged_hash = hashing.tagged_hash
hash_batch = hashing.hash_batch
merkle_root = hashing.merkle_root
smt_value_hash = hashing.smt_value_hash
smt_leaf_hash = hashing.smt_leaf_hash
smt_node_hash = hashing.smt_node_hash
smt_climb = hashing.smt_climb
verify_batch = sig.verify_batch
start_verify = sig.start_verify
encode_tx = codec.encode_tx
encode_tx_unsigned = codec.encode_tx_unsigned
decode_tx = codec.decode_tx
encode_header = codec.encode_header
encode_header_unsigned = codec.encode_header_unsigned
decode_header = codec.decode_header
encode_block = codec.encode_block
decode_block = codec.decode_block
encode_account = codec.encode_account
decode_account = codec.decode_account
encode_frame = codec.encode_frame
encode_frame_unsigned = codec.encode_frame_unsigned
decode_frame = codec.decode_frame
