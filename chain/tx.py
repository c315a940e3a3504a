"""Transactions: kinds, payloads, ids and signing (docs/protocol.md §4).

A transaction's id is ``H("ss/tx", unsigned encoding)``; its signature signs that id on the
transaction's chain (chain.crypto). Encoding and decoding are done by ``edge._fast`` (both twins).
"""

from typing import NamedTuple

from edge import _fast
from edge._fast import codec_py as wire
from chain.address import address_from_pubkey, encode_address
from chain.crypto import TAG_TX, hash_of

NO_SIGNATURE = bytes(wire.SIGNATURE_SIZE)


class Transfer(NamedTuple):
    """Move ``amount`` base units to address ``to``."""
    to: bytes
    amount: int
    memo: bytes = b""


class Stake(NamedTuple):
    """Lock ``amount`` of the balance as stake (vote weight, agent eligibility)."""
    amount: int


class Unstake(NamedTuple):
    """Start unbonding ``amount`` of stake; it returns to the balance after the unbonding delay."""
    amount: int


class Vote(NamedTuple):
    """Replace the sender's votes with ``candidates`` (agent addresses, sorted, unique)."""
    candidates: tuple = ()


class RegisterAgent(NamedTuple):
    """Become a block-producer candidate. The sender is the agent's owner (it holds the stake
    and earns the rewards); ``producer`` is the key that signs its blocks, which proves it
    agrees with ``binding`` over the owner, ``epoch`` and ``commit`` (the first link of its
    reveal chain)."""
    name: str
    endpoint: str
    producer: bytes
    epoch: int
    commit: bytes
    binding: bytes


class RotateProducer(NamedTuple):
    """The owner moves its agent to a new producer key (or the same key with a new reveal
    chain); the key proves it agrees with ``binding``, as in RegisterAgent."""
    producer: bytes
    epoch: int
    commit: bytes
    binding: bytes


class UnregisterAgent(NamedTuple):
    """Stop being a candidate."""


class Unjail(NamedTuple):
    """Return to the candidates after a jail term has passed."""


HEAVY_EVIDENCE = 0x30   # Evidence.first = u8(0x30) || a heavy call's tx id (chain/heavy.py)


class Evidence(NamedTuple):
    """Two signed objects of one producer that prove an offence (two headers for one slot, two
    conflicting finality votes), or ``u8(0x30) || tx id``: a heavy call's result proved wrong
    by re-running it."""
    first: bytes
    second: bytes

    @property
    def against_heavy(self):
        return self.first[:1] == bytes((HEAVY_EVIDENCE,))


class Deploy(NamedTuple):
    """Create a contract from Lua ``code``; ``args`` (an encoded value list) go to ``init``."""
    code: bytes
    args: bytes
    gas_limit: int


class Call(NamedTuple):
    """Call ``method`` of ``contract`` with encoded ``args``, sending ``value`` base units."""
    contract: bytes
    method: str
    args: bytes
    value: int
    gas_limit: int


class HeavyResult(NamedTuple):
    """In a block of agent-verified heavy calls (docs/protocol.md §9): the block producer's
    result of the heavy call ``call`` (its transaction id), right after it: ``status``,
    ``gas_used`` and ``result`` = H("ss/heavy-result", the full receipt). Never sent alone."""
    call: bytes
    status: int
    gas_used: int
    result: bytes


PAYLOADS = {
    wire.KIND_TRANSFER: Transfer, wire.KIND_STAKE: Stake, wire.KIND_UNSTAKE: Unstake,
    wire.KIND_VOTE: Vote, wire.KIND_REGISTER_AGENT: RegisterAgent,
    wire.KIND_UNREGISTER_AGENT: UnregisterAgent, wire.KIND_UNJAIL: Unjail,
    wire.KIND_EVIDENCE: Evidence, wire.KIND_DEPLOY: Deploy, wire.KIND_CALL: Call,
    wire.KIND_ROTATE_PRODUCER: RotateProducer, wire.KIND_HEAVY_RESULT: HeavyResult,
}
KIND_OF = {cls: kind for kind, cls in PAYLOADS.items()}
KIND_NAMES = {wire.KIND_TRANSFER: "transfer", wire.KIND_STAKE: "stake",
              wire.KIND_UNSTAKE: "unstake", wire.KIND_VOTE: "vote",
              wire.KIND_REGISTER_AGENT: "register_agent",
              wire.KIND_UNREGISTER_AGENT: "unregister_agent", wire.KIND_UNJAIL: "unjail",
              wire.KIND_EVIDENCE: "evidence", wire.KIND_DEPLOY: "deploy",
              wire.KIND_CALL: "call", wire.KIND_ROTATE_PRODUCER: "rotate_producer",
              wire.KIND_HEAVY_RESULT: "heavy_result"}


class Tx:
    """A signed transaction. Immutable by convention; ``raw`` and ``id`` are computed once."""

    __slots__ = ("kind", "chain_id", "sender", "nonce", "fee", "payload", "signature",
                 "_raw", "_id", "_sender_address")

    def __init__(self, chain_id, sender, nonce, fee, payload, signature=NO_SIGNATURE, raw=None):
        self.kind = KIND_OF[type(payload)]
        self.chain_id = chain_id
        self.sender = sender
        self.nonce = nonce
        self.fee = fee
        self.payload = payload
        self.signature = signature
        self._raw = raw
        self._id = None
        self._sender_address = None

    @classmethod
    def from_fields(cls, fields, raw=None):
        """Wrap a decoded ``edge._fast`` tuple."""
        kind, chain_id, sender, nonce, fee, payload, signature = fields
        return cls(chain_id, sender, nonce, fee, PAYLOADS[kind](*payload), signature, raw)

    @classmethod
    def decode(cls, data):
        """Strictly decode one transaction (raises DecodeError naming the field)."""
        data = bytes(data)
        return cls.from_fields(_fast.decode_tx(data), data)

    def fields(self):
        return (self.kind, self.chain_id, self.sender, self.nonce, self.fee, tuple(self.payload),
                self.signature)

    @property
    def raw(self):
        if self._raw is None:
            self._raw = _fast.encode_tx(self.fields())
        return self._raw

    @property
    def unsigned(self):
        return self.raw[:-wire.SIGNATURE_SIZE]

    @property
    def id(self):
        if self._id is None:
            self._id = hash_of(TAG_TX, self.unsigned)
        return self._id

    @property
    def sender_address(self):
        if self._sender_address is None:
            self._sender_address = address_from_pubkey(self.sender)
        return self._sender_address

    @property
    def kind_name(self):
        return KIND_NAMES[self.kind]

    def signed_by(self, keypair):
        """A copy signed by ``keypair`` (whose public key must be the sender)."""
        if keypair.pubkey != self.sender:
            raise ValueError("signing key does not match the transaction's sender")
        unsigned = Tx(self.chain_id, self.sender, self.nonce, self.fee, self.payload)
        return Tx(self.chain_id, self.sender, self.nonce, self.fee, self.payload,
                  keypair.sign(self.chain_id, unsigned.id))

    def __eq__(self, other):
        return isinstance(other, Tx) and self.raw == other.raw

    def __hash__(self):
        return hash(self.raw)

    def __repr__(self):
        return f"Tx({self.kind_name}, nonce={self.nonce}, id={self.id.hex()[:16]})"

    def to_json(self):
        """A JSON-ready description (amounts as decimal strings of base units)."""
        return {"id": self.id.hex(), "kind": self.kind_name, "chain_id": self.chain_id,
                "sender": encode_address(self.sender_address), "sender_pubkey": self.sender.hex(),
                "nonce": self.nonce, "fee": str(self.fee), "payload": payload_json(self.payload),
                "size": len(self.raw), "signature": self.signature.hex(), "raw": self.raw.hex()}


def compute_ids(txs):
    """Fill in the ids of ``txs`` with one batched hash call (a block's worth at once)."""
    missing = [tx for tx in txs if tx._id is None]
    for tx, tx_id in zip(missing, _fast.hash_batch(TAG_TX, [tx.unsigned for tx in missing])):
        tx._id = tx_id


def payload_json(payload):
    """JSON-ready payload fields."""
    if isinstance(payload, Transfer):
        return {"to": encode_address(payload.to), "amount": str(payload.amount),
                "memo": payload.memo.hex()}
    if isinstance(payload, (Stake, Unstake)):
        return {"amount": str(payload.amount)}
    if isinstance(payload, Vote):
        return {"candidates": [encode_address(c) for c in payload.candidates]}
    if isinstance(payload, RegisterAgent):
        return {"name": payload.name, "endpoint": payload.endpoint,
                "producer": payload.producer.hex(), "epoch": payload.epoch,
                "commit": payload.commit.hex()}
    if isinstance(payload, RotateProducer):
        return {"producer": payload.producer.hex(), "epoch": payload.epoch,
                "commit": payload.commit.hex()}
    if isinstance(payload, Evidence):
        return {"first": payload.first.hex(), "second": payload.second.hex()}
    if isinstance(payload, Deploy):
        return {"code_bytes": len(payload.code), "args": payload.args.hex(),
                "gas_limit": payload.gas_limit}
    if isinstance(payload, Call):
        return {"contract": encode_address(payload.contract), "method": payload.method,
                "args": payload.args.hex(), "value": str(payload.value),
                "gas_limit": payload.gas_limit}
    if isinstance(payload, HeavyResult):
        return {"call": payload.call.hex(), "status": payload.status,
                "gas_used": payload.gas_used, "result": payload.result.hex()}
    return {}


def make_tx(keypair, chain_id, nonce, fee, payload):
    """Build and sign a transaction from ``keypair``."""
    return Tx(chain_id, keypair.pubkey, nonce, fee, payload).signed_by(keypair)
