"""Block headers, blocks and receipts (docs/protocol.md §5)."""

from typing import NamedTuple

from edge import _fast
from edge._fast import codec_py as wire
from edge._fast import DecodeError
from edge._fast.codec_py import Reader, encode_bytes, encode_fixed, encode_text, encode_uvarint
from chain.crypto import TAG_HEADER, hash_of, verify
from chain.tx import Tx
from chain.votes import decode_votes

TAG_RECEIPT = 0x04
STATUS_OK = 0
STATUS_FAILED = 1
MAX_ERROR = 256
MAX_EVENTS = 64
MAX_EVENT_NAME = 64
MAX_EVENT_DATA = 1024
MAX_RETURN = 4096
ZERO_HASH = bytes(32)
NO_SIGNATURE = bytes(wire.SIGNATURE_SIZE)
NO_PRODUCER = bytes(wire.PUBKEY_SIZE)


class Header(NamedTuple):
    """A block header; ``hash`` covers everything but the producer's signature.

    ``reveal`` opens the next link of the producer's reveal chain (the schedule seed);
    ``renewal`` (or None) commits a new chain from its next block; ``justified_round`` and
    ``lib_height`` summarise finality after this block; ``votes_root`` commits to the finality
    votes the block carries (docs/protocol.md §13).
    """
    version: int
    height: int
    prev_hash: bytes
    timestamp_ms: int
    slot: int
    producer: bytes
    reveal: bytes
    renewal: object
    justified_round: int
    lib_height: int
    tx_root: bytes
    votes_root: bytes
    state_root: bytes
    receipts_root: bytes
    signature: bytes = NO_SIGNATURE

    @classmethod
    def decode(cls, data):
        return cls(*_fast.decode_header(bytes(data)))

    def encode(self):
        return _fast.encode_header(self)

    @property
    def hash(self):
        return hash_of(TAG_HEADER, _fast.encode_header_unsigned(self))

    def signed_by(self, keypair, chain_id):
        return self._replace(signature=keypair.sign(chain_id, self.hash))

    def signature_valid(self, chain_id):
        return verify(self.producer, chain_id, self.hash, self.signature)

    def to_json(self):
        return {"hash": self.hash.hex(), "height": self.height, "prev_hash": self.prev_hash.hex(),
                "timestamp_ms": self.timestamp_ms, "slot": self.slot,
                "producer_pubkey": self.producer.hex(), "reveal": self.reveal.hex(),
                "renewal": self.renewal.hex() if self.renewal is not None else None,
                "justified_round": self.justified_round, "lib_height": self.lib_height,
                "votes_root": self.votes_root.hex(), "tx_root": self.tx_root.hex(),
                "state_root": self.state_root.hex(), "receipts_root": self.receipts_root.hex(),
                "signature": self.signature.hex(), "raw": self.encode().hex()}


class Block:
    """A header, its ordered transactions and the finality votes it carries."""

    __slots__ = ("header", "txs", "votes", "_raw")

    def __init__(self, header, txs, votes=(), raw=None):
        self.header = header
        self.txs = list(txs)
        self.votes = list(votes)
        self._raw = raw

    @classmethod
    def decode(cls, data):
        """Strictly decode a block (raises DecodeError naming the field)."""
        data = bytes(data)
        header, _, txs, raws, votes = _fast.decode_block(data)
        return cls(Header(*header), [Tx.from_fields(t, raw) for t, raw in zip(txs, raws)],
                   decode_votes(votes), data)

    def encode(self):
        if self._raw is None:
            self._raw = _fast.encode_block(self.header.encode(), [tx.raw for tx in self.txs],
                                           [vote.encode() for vote in self.votes])
        return self._raw

    @property
    def hash(self):
        return self.header.hash

    @property
    def height(self):
        return self.header.height


class Receipt(NamedTuple):
    """The outcome of one transaction in a block. Contract calls add the gas they used, the
    error that failed them, the events they emitted ``((contract, name, data), ...)`` and their
    encoded return value; a failed call still pays its fee."""
    tx_id: bytes
    status: int
    fee: int
    gas_used: int = 0
    error: str = ""
    events: tuple = ()
    return_value: bytes = b""

    def encode(self):
        head = (bytes((TAG_RECEIPT,)) + encode_fixed(self.tx_id, 32, "receipt.tx_id")
                + bytes((self.status,)) + encode_uvarint(self.fee))
        if self.status == STATUS_OK and not (self.gas_used or self.events or self.return_value):
            return head + b"\x00"  # Performance note: the common, plain-transaction receipt
        parts = [head, encode_uvarint(self.gas_used + 1),
                 encode_text(self.error, MAX_ERROR, "receipt.error"),
                 encode_uvarint(len(self.events))]
        if len(self.events) > MAX_EVENTS:
            raise ValueError(f"receipt.events: {len(self.events)} exceeds {MAX_EVENTS}")
        for contract, name, data in self.events:
            parts += [encode_fixed(contract, 20, "event.contract"),
                      encode_text(name, MAX_EVENT_NAME, "event.name"),
                      encode_bytes(data, MAX_EVENT_DATA, "event.data")]
        parts.append(encode_bytes(self.return_value, MAX_RETURN, "receipt.return"))
        return b"".join(parts)

    @classmethod
    def read(cls, r: Reader):
        r.tag(TAG_RECEIPT, "receipt.tag")
        tx_id, status, fee = r.fixed(32, "receipt.tx_id"), r.u8("receipt.status"), \
            r.uvarint("receipt.fee")
        gas_plus_one = r.uvarint("receipt.gas_used")
        if gas_plus_one == 0:
            if status != STATUS_OK:
                raise DecodeError("receipt.gas_used", "a failed receipt carries its details")
            return cls(tx_id, status, fee)
        error = r.text(MAX_ERROR, "receipt.error")
        events = tuple((r.fixed(20, "event.contract"), r.text(MAX_EVENT_NAME, "event.name"),
                        r.var_bytes(MAX_EVENT_DATA, "event.data"))
                       for _ in range(r.count(MAX_EVENTS, "receipt.events")))
        receipt = cls(tx_id, status, fee, gas_plus_one - 1, error, events,
                      r.var_bytes(MAX_RETURN, "receipt.return"))
        if status == STATUS_OK and receipt == cls(tx_id, status, fee):
            raise DecodeError("receipt", "a plain receipt must use the short form")
        return receipt

    @classmethod
    def decode(cls, data):
        r = Reader(data)
        receipt = cls.read(r)
        r.end("receipt")
        return receipt


def encode_receipts(receipts):
    return encode_uvarint(len(receipts)) + b"".join(r.encode() for r in receipts)


def decode_receipts(data):
    r = Reader(data)
    out = [Receipt.read(r) for _ in range(r.count(wire.MAX_BLOCK_TXS, "receipts"))]
    r.end("receipts")
    return out


def tx_root(txs):
    """Merkle root of the transaction ids, in block order."""
    return _fast.merkle_root([tx.id for tx in txs])


def votes_root(votes):
    """Merkle root of the encoded finality votes, in block order."""
    return _fast.merkle_root([vote.encode() for vote in votes])


def receipts_root(receipts):
    """Merkle root of the encoded receipts, in block order."""
    return _fast.merkle_root([r.encode() for r in receipts])
