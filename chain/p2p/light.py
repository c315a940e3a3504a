"""P2P messages of the light client, 0x5D..0x65 (docs/protocol.md §12.8).

Full nodes answer them; light nodes ask. Like the other messages they carry finality entries,
headers, proofs and transactions as opaque bytes, decoded strictly (§1) by
``chain.p2p.messages.decode_message``, which registers them. There are no request ids: an
answer names what it answers (a round, a height and block hash, a transaction id).
"""

from typing import NamedTuple, Optional, Tuple

from edge._fast import DecodeError
from edge._fast.codec_py import (HASH_SIZE, encode_bytes, encode_fixed, encode_uvarint)

from chain.p2p.messages import MAX_PROOF, MAX_TX, _count, _fits, _read_count, _u64

GET_FINALITY, FINALITY, GET_STATE, STATE, GET_TX, TX_PROOF, GET_SNAPSHOT, SNAPSHOT, \
    SUBSCRIBE = range(0x5D, 0x66)

MAX_ENTRIES = 64             # finality entries per GetFinality / Finality
MAX_ENTRY = 64 * 1024        # one finality entry (§13.7)
MAX_KEYS = 64                # state keys per GetState / State
MAX_VALUE = 4096             # one state value (§10.1)
MAX_PATH = 16                # Merkle path of one of at most 65,535 items
MAX_RECEIPT = 128 * 1024     # one receipt (§5)
MAX_SNAPSHOT_ITEMS = 8192    # state entries per Snapshot (the message must fit a frame)


def _flag(r, field):
    value = r.u8(field)
    if value > 1:
        raise DecodeError(field, f"flag must be 0 or 1, got {value}")
    return bool(value)


def _hashes(items, limit, field):
    items = tuple(items)
    if len(items) > limit:
        raise ValueError(f"{field}: {len(items)} items exceeds the limit of {limit}")
    return encode_uvarint(len(items)) + b"".join(encode_fixed(h, HASH_SIZE, field) for h in items)


def _read_hashes(r, limit, field, minimum=0):
    n = r.count(limit, field)
    if n < minimum:
        raise DecodeError(field, f"at least {minimum} item(s)")
    return tuple(r.fixed(HASH_SIZE, field) for _ in range(n))


class GetFinality(NamedTuple):
    """0x5D: the finality entries of the justified rounds from ``from_round`` on (1..64)."""
    from_round: int
    count: int
    TYPE = GET_FINALITY

    def encode(self):
        return (bytes((GET_FINALITY,)) + _u64(self.from_round, "get_finality.from_round")
                + _count(self.count, MAX_ENTRIES, "get_finality.count", 1))

    @classmethod
    def read(cls, r):
        return cls(r.uvarint("get_finality.from_round"),
                   _read_count(r, MAX_ENTRIES, "get_finality.count", 1))


class FinalityMsg(NamedTuple):
    """0x5E: consecutive justified rounds' entries, oldest first, answering GetFinality
    (none: the responder knows no justified round from there)."""
    from_round: int
    entries: Tuple[bytes, ...]
    TYPE = FINALITY

    def encode(self):
        entries = tuple(self.entries)
        if len(entries) > MAX_ENTRIES:
            raise ValueError(f"finality: {len(entries)} entries exceeds {MAX_ENTRIES}")
        return _fits(b"".join((bytes((FINALITY,)), _u64(self.from_round, "finality.from_round"),
                               encode_uvarint(len(entries)),
                               *(encode_bytes(e, MAX_ENTRY, "finality.entry") for e in entries))),
                     "finality")

    @classmethod
    def read(cls, r):
        from_round = r.uvarint("finality.from_round")
        return cls(from_round, tuple(r.var_bytes(MAX_ENTRY, "finality.entry")
                                     for _ in range(r.count(MAX_ENTRIES, "finality"))))


class GetState(NamedTuple):
    """0x5F: the values of ``keys`` (1..64) in the state after block ``block_hash`` at
    ``height``, with their proofs (§10.3)."""
    height: int
    block_hash: bytes
    keys: Tuple[bytes, ...]
    TYPE = GET_STATE

    def encode(self):
        if not self.keys:
            raise ValueError("get_state.keys: at least one key")
        return b"".join((bytes((GET_STATE,)), _u64(self.height, "get_state.height"),
                         encode_fixed(self.block_hash, HASH_SIZE, "get_state.block_hash"),
                         _hashes(self.keys, MAX_KEYS, "get_state.keys")))

    @classmethod
    def read(cls, r):
        return cls(r.uvarint("get_state.height"), r.fixed(HASH_SIZE, "get_state.block_hash"),
                   _read_hashes(r, MAX_KEYS, "get_state.keys", 1))


class StateMsg(NamedTuple):
    """0x60: answers GetState. ``proofs`` is None when the responder cannot serve that state
    (the block is not on its main chain, or its state version was pruned); else one
    ``(value or None, proof)`` per key, in the order asked."""
    height: int
    block_hash: bytes
    proofs: Optional[Tuple[Tuple[Optional[bytes], bytes], ...]]
    TYPE = STATE

    def encode(self):
        parts = [bytes((STATE,)), _u64(self.height, "state.height"),
                 encode_fixed(self.block_hash, HASH_SIZE, "state.block_hash")]
        if self.proofs is None:
            parts.append(b"\x00")
        else:
            if len(self.proofs) > MAX_KEYS:
                raise ValueError(f"state.proofs: more than {MAX_KEYS}")
            parts += [b"\x01", encode_uvarint(len(self.proofs))]
            for value, proof in self.proofs:
                parts.append(b"\x00" if value is None else
                             b"\x01" + encode_bytes(value, MAX_VALUE, "state.value"))
                parts.append(encode_bytes(proof, MAX_PROOF, "state.proof"))
        return b"".join(parts)

    @classmethod
    def read(cls, r):
        height, block_hash = r.uvarint("state.height"), r.fixed(HASH_SIZE, "state.block_hash")
        if not _flag(r, "state.available"):
            return cls(height, block_hash, None)
        proofs = []
        for _ in range(r.count(MAX_KEYS, "state.proofs")):
            value = r.var_bytes(MAX_VALUE, "state.value") if _flag(r, "state.present") else None
            proofs.append((value, r.var_bytes(MAX_PROOF, "state.proof")))
        return cls(height, block_hash, tuple(proofs))


class GetTx(NamedTuple):
    """0x61: where transaction ``tx_id`` is on the main chain, with proofs."""
    tx_id: bytes
    TYPE = GET_TX

    def encode(self):
        return bytes((GET_TX,)) + encode_fixed(self.tx_id, HASH_SIZE, "get_tx.tx_id")

    @classmethod
    def read(cls, r):
        return cls(r.fixed(HASH_SIZE, "get_tx.tx_id"))


class TxProofMsg(NamedTuple):
    """0x62: answers GetTx. When found: the block (``height``, ``block_hash``), the
    transaction's ``index`` among ``count``, the transaction and its receipt with their
    ordered-Merkle paths to the header's ``tx_root`` and ``receipts_root`` (§12.8)."""
    tx_id: bytes
    found: bool
    height: int = 0
    block_hash: bytes = bytes(HASH_SIZE)
    index: int = 0
    count: int = 0
    tx: bytes = b""
    tx_path: Tuple[bytes, ...] = ()
    receipt: bytes = b""
    receipt_path: Tuple[bytes, ...] = ()
    TYPE = TX_PROOF

    def encode(self):
        head = bytes((TX_PROOF,)) + encode_fixed(self.tx_id, HASH_SIZE, "tx_proof.tx_id")
        if not self.found:
            return head + b"\x00"
        if not self.index < self.count <= 65535:
            raise ValueError("tx_proof: index must be below count (at most 65535)")
        return _fits(b"".join((head, b"\x01", _u64(self.height, "tx_proof.height"),
                               encode_fixed(self.block_hash, HASH_SIZE, "tx_proof.block_hash"),
                               encode_uvarint(self.index), encode_uvarint(self.count),
                               encode_bytes(self.tx, MAX_TX, "tx_proof.tx"),
                               _hashes(self.tx_path, MAX_PATH, "tx_proof.tx_path"),
                               encode_bytes(self.receipt, MAX_RECEIPT, "tx_proof.receipt"),
                               _hashes(self.receipt_path, MAX_PATH, "tx_proof.receipt_path"))),
                     "tx_proof")

    @classmethod
    def read(cls, r):
        tx_id = r.fixed(HASH_SIZE, "tx_proof.tx_id")
        if not _flag(r, "tx_proof.found"):
            return cls(tx_id, False)
        height, block_hash = r.uvarint("tx_proof.height"), r.fixed(HASH_SIZE, "tx_proof.block_hash")
        index, count = r.uvarint("tx_proof.index"), r.uvarint("tx_proof.count")
        if not index < count <= 65535:
            raise DecodeError("tx_proof.index", "must be below count (at most 65535)")
        return cls(tx_id, True, height, block_hash, index, count,
                   r.var_bytes(MAX_TX, "tx_proof.tx"), _read_hashes(r, MAX_PATH, "tx_proof.tx_path"),
                   r.var_bytes(MAX_RECEIPT, "tx_proof.receipt"),
                   _read_hashes(r, MAX_PATH, "tx_proof.receipt_path"))


class GetSnapshot(NamedTuple):
    """0x63: the state after block ``block_hash`` at ``height``, every key above ``after``
    (empty: from the first key), in key order."""
    height: int
    block_hash: bytes
    after: bytes = b""
    TYPE = GET_SNAPSHOT

    def encode(self):
        if len(self.after) not in (0, HASH_SIZE):
            raise ValueError("get_snapshot.after: empty or 32 bytes")
        return b"".join((bytes((GET_SNAPSHOT,)), _u64(self.height, "get_snapshot.height"),
                         encode_fixed(self.block_hash, HASH_SIZE, "get_snapshot.block_hash"),
                         b"\x01" + self.after if self.after else b"\x00"))

    @classmethod
    def read(cls, r):
        height, block_hash = r.uvarint("get_snapshot.height"), r.fixed(HASH_SIZE,
                                                                      "get_snapshot.block_hash")
        after = r.fixed(HASH_SIZE, "get_snapshot.after") if _flag(r, "get_snapshot.after") else b""
        return cls(height, block_hash, after)


class SnapshotMsg(NamedTuple):
    """0x64: answers GetSnapshot with the next state entries in key order (``items`` None: that
    state cannot be served); ``done`` when the last key of the state is in this chunk."""
    height: int
    block_hash: bytes
    after: bytes
    items: Optional[Tuple[Tuple[bytes, bytes], ...]]
    done: bool = False
    TYPE = SNAPSHOT

    def encode(self):
        parts = [bytes((SNAPSHOT,)), _u64(self.height, "snapshot.height"),
                 encode_fixed(self.block_hash, HASH_SIZE, "snapshot.block_hash"),
                 b"\x01" + self.after if self.after else b"\x00"]
        if self.items is None:
            return b"".join(parts + [b"\x00"])
        if len(self.items) > MAX_SNAPSHOT_ITEMS:
            raise ValueError(f"snapshot: more than {MAX_SNAPSHOT_ITEMS} entries")
        parts += [b"\x01", encode_uvarint(len(self.items))]
        for key, value in self.items:
            parts += [encode_fixed(key, HASH_SIZE, "snapshot.key"),
                      encode_bytes(value, MAX_VALUE, "snapshot.value")]
        parts.append(b"\x01" if self.done else b"\x00")
        return _fits(b"".join(parts), "snapshot")

    @classmethod
    def read(cls, r):
        height, block_hash = r.uvarint("snapshot.height"), r.fixed(HASH_SIZE, "snapshot.block_hash")
        after = r.fixed(HASH_SIZE, "snapshot.after") if _flag(r, "snapshot.after") else b""
        if not _flag(r, "snapshot.available"):
            return cls(height, block_hash, after, None)
        items, previous = [], after
        for _ in range(r.count(MAX_SNAPSHOT_ITEMS, "snapshot.items")):
            key = r.fixed(HASH_SIZE, "snapshot.key")
            if previous and key <= previous:
                raise DecodeError("snapshot.key", "keys must increase (and follow after)")
            items.append((key, r.var_bytes(MAX_VALUE, "snapshot.value")))
            previous = key
        return cls(height, block_hash, after, tuple(items), _flag(r, "snapshot.done"))


class Subscribe(NamedTuple):
    """0x65: what a peer wants pushed: ``headers_only`` asks for each new block's header
    (in a Headers message) instead of the block, and for no transaction gossip."""
    headers_only: bool
    TYPE = SUBSCRIBE

    def encode(self):
        return bytes((SUBSCRIBE, 1 if self.headers_only else 0))

    @classmethod
    def read(cls, r):
        return cls(_flag(r, "subscribe.headers_only"))


LIGHT_MESSAGES = {cls.TYPE: cls for cls in (GetFinality, FinalityMsg, GetState, StateMsg, GetTx,
                                            TxProofMsg, GetSnapshot, SnapshotMsg, Subscribe)}
