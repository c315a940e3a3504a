"""Proofs of the state tree and their standalone verifier (docs/protocol.md §10.3).

A light node checks a value (or its absence) against a state root from a header with
``verify_proof`` alone: this module needs no database and imports nothing but ``edge._fast``.
"""

from enum import IntEnum
from typing import NamedTuple

from edge._fast import DecodeError, smt_climb, smt_leaf_hash, smt_value_hash
from edge._fast.codec_py import Reader, encode_fixed, encode_uvarint
from edge._fast.hashing_py import HASH_SIZE, ZERO_HASH

PROOF_TAG = 0x30
KEY_SIZE = HASH_SIZE
MAX_DEPTH = 8 * KEY_SIZE
MAX_VALUE = 4096


class ProofKind(IntEnum):
    """What a proof's path ends on: the key's own leaf, an empty subtree, or another key's leaf."""

    INCLUSION = 0
    EMPTY = 1
    OTHER_LEAF = 2


INCLUSION, EMPTY, OTHER_LEAF = ProofKind.INCLUSION, ProofKind.EMPTY, ProofKind.OTHER_LEAF


class Proof(NamedTuple):
    """The path from the root to where ``key`` is (or would be) in the tree.

    ``siblings`` are the hashes beside the path, top first (``ZERO_HASH`` for an empty one), so
    ``len(siblings)`` is the depth of the terminal. ``other_key`` and ``other_value_hash`` name the
    leaf found instead of ``key`` and are ``b""`` unless ``kind`` is ``OTHER_LEAF``.
    """

    key: bytes
    kind: ProofKind
    siblings: tuple
    other_key: bytes = b""
    other_value_hash: bytes = b""

    def encode(self) -> bytes:
        """The canonical wire encoding; refuses a proof that ``decode`` would reject."""
        kind = _checked_kind(self.kind)
        out = [bytes((PROOF_TAG,)), encode_fixed(self.key, KEY_SIZE, "proof.key"), bytes((kind,))]
        if kind == OTHER_LEAF:
            if self.other_key == self.key:
                raise ValueError("proof.other_key: equals the proven key")
            out.append(encode_fixed(self.other_key, KEY_SIZE, "proof.other_key"))
            out.append(encode_fixed(self.other_value_hash, HASH_SIZE, "proof.other_value_hash"))
        elif self.other_key or self.other_value_hash:
            raise ValueError("proof.other_key: only an OTHER_LEAF proof names another leaf")
        out.append(_encode_siblings(self.siblings))
        return b"".join(out)

    @classmethod
    def decode(cls, data) -> "Proof":
        """Decode exactly one proof; raises ``DecodeError`` on any non-canonical input."""
        r = Reader(data)
        r.tag(PROOF_TAG, "proof.tag")
        key = r.fixed(KEY_SIZE, "proof.key")
        kind = r.u8("proof.kind")
        if kind not in (INCLUSION, EMPTY, OTHER_LEAF):
            raise DecodeError("proof.kind", f"unknown proof kind {kind}")
        other_key = other_value_hash = b""
        if kind == OTHER_LEAF:
            other_key = r.fixed(KEY_SIZE, "proof.other_key")
            other_value_hash = r.fixed(HASH_SIZE, "proof.other_value_hash")
            if other_key == key:
                raise DecodeError("proof.other_key", "equals the proven key")
        siblings = _read_siblings(r)
        r.end("proof")
        return cls(key, ProofKind(kind), siblings, other_key, other_value_hash)


def verify_proof(root, key, value, proof) -> bool:
    """True when ``proof`` shows that ``key`` has ``value`` (``None``: is absent) under ``root``.

    Wrong argument types or lengths raise ``TypeError``/``ValueError``; a proof that is merely
    wrong, inconsistent, or of a shape no tree produces gives ``False``.
    """
    _check_hash(root, "root")
    _check_hash(key, "key")
    if value is not None:
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError(f"value must be bytes or None, not {type(value).__name__}")
        if len(value) > MAX_VALUE:
            raise ValueError(f"value: {len(value)} bytes exceeds the limit of {MAX_VALUE}")
    if not isinstance(proof, Proof):
        raise TypeError(f"proof must be a Proof, not {type(proof).__name__}")
    if not _well_formed(proof) or proof.key != key:
        return False
    start = _terminal_hash(proof, value)
    if start is None:
        return False
    return smt_climb(bytes(key), start, proof.siblings) == root


def _terminal_hash(proof, value):
    """The hash the path ends on, or None when the proof kind contradicts ``value``."""
    if proof.kind == INCLUSION:
        if value is None:
            return None
        return smt_leaf_hash(proof.key, smt_value_hash(bytes(value)))
    if value is not None:
        return None
    if proof.kind == EMPTY:
        return ZERO_HASH
    if _common_prefix_bits(proof.key, proof.other_key) < len(proof.siblings):
        return None  # that leaf does not sit on this key's path
    return smt_leaf_hash(proof.other_key, proof.other_value_hash)


def _well_formed(proof):
    """Whether a proof could have come out of ``decode`` and out of a real tree."""
    siblings = proof.siblings
    if not _is_hash(proof.key) or not isinstance(siblings, (tuple, list)):
        return False
    if len(siblings) > MAX_DEPTH or not all(_is_hash(s) for s in siblings):
        return False
    # An empty deepest sibling means a lone leaf (or nothing) below an inner node: a tree lifts it.
    if siblings and siblings[-1] == ZERO_HASH:
        return False
    kind = proof.kind
    if kind is True or kind is False or kind not in (INCLUSION, EMPTY, OTHER_LEAF):
        return False
    if kind == OTHER_LEAF:
        return (_is_hash(proof.other_key) and _is_hash(proof.other_value_hash)
                and proof.other_key != proof.key)
    return proof.other_key == b"" and proof.other_value_hash == b""


def _encode_siblings(siblings):
    """``uvarint depth || bitmap || non-empty siblings``: empty siblings cost one bit."""
    if len(siblings) > MAX_DEPTH:
        raise ValueError(f"proof.siblings: {len(siblings)} exceeds the depth limit of {MAX_DEPTH}")
    bitmap = bytearray((len(siblings) + 7) // 8)
    present = []
    for i, sibling in enumerate(siblings):
        encode_fixed(sibling, HASH_SIZE, "proof.sibling")
        if sibling != ZERO_HASH:
            bitmap[i >> 3] |= 0x80 >> (i & 7)
            present.append(bytes(sibling))
    return encode_uvarint(len(siblings)) + bytes(bitmap) + b"".join(present)


def _read_siblings(r):
    depth = r.uvarint("proof.depth")
    if depth > MAX_DEPTH:
        raise DecodeError("proof.depth", f"{depth} exceeds the limit of {MAX_DEPTH}")
    bitmap = r.fixed((depth + 7) // 8, "proof.bitmap")
    if depth % 8 and bitmap[-1] & (0xFF >> (depth % 8)):
        raise DecodeError("proof.bitmap", "bits set past the depth")
    siblings = []
    for i in range(depth):
        if bitmap[i >> 3] & (0x80 >> (i & 7)):
            sibling = r.fixed(HASH_SIZE, "proof.sibling")
            if sibling == ZERO_HASH:
                raise DecodeError("proof.sibling", "an empty sibling is marked present")
            siblings.append(sibling)
        else:
            siblings.append(ZERO_HASH)
    return tuple(siblings)


def _checked_kind(kind):
    if isinstance(kind, bool) or kind not in (INCLUSION, EMPTY, OTHER_LEAF):
        raise ValueError(f"proof.kind: unknown proof kind {kind!r}")
    return int(kind)


def _common_prefix_bits(a, b):
    """How many leading bits two 32-byte keys share."""
    diff = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
    return MAX_DEPTH - diff.bit_length()


def _is_hash(item):
    return isinstance(item, (bytes, bytearray)) and len(item) == HASH_SIZE


def _check_hash(item, what):
    if not isinstance(item, (bytes, bytearray)):
        raise TypeError(f"{what} must be bytes, not {type(item).__name__}")
    if len(item) != HASH_SIZE:
        raise ValueError(f"{what} must be {HASH_SIZE} bytes, got {len(item)}")
