"""What lives in the authenticated state, and its canonical encoding (docs/protocol.md §7).

Every record sits under a 32-byte key ``H("ss/state-key", u8(len(ns)) || ns || id)`` so that
keys spread evenly over the sparse Merkle tree and a light node can compute the key it needs.
"""

from functools import lru_cache
from typing import NamedTuple

from edge._fast.codec_py import (PUBKEY_SIZE, MAX_ENDPOINT, MAX_NAME,
                                 Reader, encode_address_set, encode_bytes, encode_fixed, encode_text,
                                 encode_u8, encode_uvarint, read_address_set)
from edge import _fast
from edge._fast import DecodeError
from chain.crypto import TAG_STATE_KEY, hash_of

TAG_ACCOUNT = _fast.codec_py.TAG_ACCOUNT
TAG_AGENT = 0x11
TAG_SCHEDULE = 0x12
TAG_ADDRESS_LIST = 0x13
TAG_AMOUNT = 0x14

MAX_PRODUCERS = 255
MAX_LIST = 1 << 20

NS_ACCOUNT = b"account"
NS_AGENT = b"agent"
NS_AGENTS = b"agents"
NS_SCHEDULE = b"schedule"
NS_POOL = b"pool"
NS_UNBOND = b"unbond"
NS_EVIDENCE = b"evidence"
NS_CONTRACT = b"contract"
NS_CODE = b"code"
NS_STORAGE = b"storage"
NS_PRODUCER = b"producer"
NS_FINALITY = b"finality"
NS_ROUND = b"round"
NS_ROUND_VOTES = b"round-votes"
NS_VOTER = b"voter"
TAG_VOTER = 0x1A
TAG_CONTRACT = 0x15


def state_key(namespace, ident=b""):
    """The tree key of record ``ident`` in ``namespace``."""
    return hash_of(TAG_STATE_KEY, bytes((len(namespace),)) + namespace + ident)


@lru_cache(maxsize=1 << 16)
def account_key(address):
    return state_key(NS_ACCOUNT, address)


@lru_cache(maxsize=1 << 12)
def agent_key(address):
    return state_key(NS_AGENT, address)


def unbond_key(height):
    return state_key(NS_UNBOND, height.to_bytes(8, "big"))


def contract_key(address):
    return state_key(NS_CONTRACT, address)


def code_key(address, index):
    return state_key(NS_CODE, address + bytes((index,)))


def storage_key(address, key):
    return state_key(NS_STORAGE, address + key)


class Contract(NamedTuple):
    """A deployed contract: who made it, when, and its code's size, hash and chunk count."""
    creator: bytes
    code_size: int
    code_hash: bytes
    created_height: int
    chunks: int


def encode_contract(c):
    return b"".join((bytes((TAG_CONTRACT,)), encode_fixed(c.creator, 20, "contract.creator"),
                     encode_uvarint(c.code_size), encode_fixed(c.code_hash, 32, "contract.code_hash"),
                     encode_uvarint(c.created_height), encode_u8(c.chunks, "contract.chunks")))


def decode_contract(data):
    def read(r):
        r.tag(TAG_CONTRACT, "contract.tag")
        return Contract(r.fixed(20, "contract.creator"), r.uvarint("contract.code_size"),
                        r.fixed(32, "contract.code_hash"), r.uvarint("contract.created_height"),
                        r.u8("contract.chunks"))
    return _decode(data, read, "contract")


def evidence_key(producer, offence, number):
    """Marks an offence of ``producer`` as punished (once): ``offence`` is 0 for double
    production (``number`` = the slot), 1 for a double vote (the target round), 2 for a
    surround vote (the inner vote's target round)."""
    return state_key(NS_EVIDENCE, producer + bytes((offence,)) + number.to_bytes(8, "big"))


@lru_cache(maxsize=1 << 12)
def producer_key(pubkey):
    return state_key(NS_PRODUCER, pubkey)


AGENTS_KEY = state_key(NS_AGENTS)
SCHEDULE_KEY = state_key(NS_SCHEDULE)
POOL_KEY = state_key(NS_POOL)
FINALITY_KEY = state_key(NS_FINALITY)
ROUND_KEY = state_key(NS_ROUND)
ROUND_VOTES_KEY = state_key(NS_ROUND_VOTES)


def _decode(data, read, what):
    r = Reader(data)
    value = read(r)
    r.end(what)
    return value


class Account(NamedTuple):
    """Balance, nonce, stake, current votes and stake on its way back (amount, release height)."""
    balance: int = 0
    nonce: int = 0
    stake: int = 0
    votes: tuple = ()
    unbonding: tuple = ()

    def encode(self):
        return _fast.encode_account(self)

    @classmethod
    def decode(cls, data):
        return tuple.__new__(cls, _fast.decode_account(data))

    @property
    def unbonding_total(self):
        return sum(amount for amount, _ in self.unbonding)

    def is_empty(self):
        return self == _EMPTY_ACCOUNT


_EMPTY_ACCOUNT = Account()


class Agent(NamedTuple):
    """A block-producer candidate, stored under its owner's address: the key that signs its
    blocks now (``pubkey``), its votes, its record as a producer, and its voters' pool.

    ``jailed_until`` is 0 when free, else the height from which it may unjail; ``voter_pool``
    holds the voters' share of its rewards until each voter settles it; ``reward_per_vote`` is
    the voters' share per unit of vote weight ever earned, times 2^64 (docs/protocol.md §13).
    """
    pubkey: bytes
    name: str
    endpoint: str = ""
    active: bool = True
    registered_height: int = 0
    votes: int = 0
    jailed_until: int = 0
    missed_in_a_row: int = 0
    missed_total: int = 0
    produced: int = 0
    voter_pool: int = 0
    reward_per_vote: int = 0

    @property
    def jailed(self):
        return self.jailed_until > 0

    @property
    def eligible(self):
        """May be elected: registered, active and not jailed."""
        return self.active and not self.jailed

    def encode(self):
        return b"".join((bytes((TAG_AGENT,)), encode_fixed(self.pubkey, PUBKEY_SIZE, "agent.pubkey"),
                         encode_text(self.name, MAX_NAME, "agent.name"),
                         encode_text(self.endpoint, MAX_ENDPOINT, "agent.endpoint"),
                         encode_u8(int(self.active), "agent.active"),
                         *(encode_uvarint(v) for v in self[4:-1]),
                         encode_big(self.reward_per_vote, "agent.reward_per_vote")))

    @classmethod
    def decode(cls, data):
        return _decode(data, cls._read, "agent")

    @classmethod
    def _read(cls, r):
        r.tag(TAG_AGENT, "agent.tag")
        pubkey = r.fixed(PUBKEY_SIZE, "agent.pubkey")
        name, endpoint = r.text(MAX_NAME, "agent.name"), r.text(MAX_ENDPOINT, "agent.endpoint")
        active = r.u8("agent.active")
        if active > 1:
            raise DecodeError("agent.active", f"must be 0 or 1, got {active}")
        counters = [r.uvarint(f"agent.{name}") for name in cls._fields[4:-1]]
        return cls(pubkey, name, endpoint, bool(active), *counters,
                   read_big(r, "agent.reward_per_vote"))


MAX_BIG = 32


def encode_big(value, field):
    """A non-negative integer of up to 256 bits: ``bytes(big-endian, no leading zero, 32)``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value >> 256:
        raise ValueError(f"{field}: {value!r} is not an integer in 0..2^256-1")
    return encode_bytes(value.to_bytes((value.bit_length() + 7) // 8, "big"), MAX_BIG, field)


def read_big(r, field):
    raw = r.var_bytes(MAX_BIG, field)
    if raw[:1] == b"\x00":
        raise DecodeError(field, "non-minimal integer encoding")
    return int.from_bytes(raw, "big")


def voter_key(voter, agent):
    """Where ``voter``'s reward checkpoint for ``agent`` lives."""
    return state_key(NS_VOTER, voter + agent)


def encode_checkpoint(reward_per_vote):
    return bytes((TAG_VOTER,)) + encode_big(reward_per_vote, "voter.reward_per_vote")


def decode_checkpoint(data):
    def read(r):
        r.tag(TAG_VOTER, "voter.tag")
        return read_big(r, "voter.reward_per_vote")
    return _decode(data, read, "voter")


class Schedule(NamedTuple):
    """The producers of a round in slot order; the round's slots start at ``start_slot``."""
    round: int
    start_slot: int
    producers: tuple

    def encode(self):
        if not 0 < len(self.producers) <= MAX_PRODUCERS:
            raise ValueError(f"a schedule holds 1..{MAX_PRODUCERS} producers")
        return b"".join((bytes((TAG_SCHEDULE,)), encode_uvarint(self.round),
                         encode_uvarint(self.start_slot), encode_uvarint(len(self.producers)),
                         *(encode_fixed(p, PUBKEY_SIZE, "schedule.producer")
                           for p in self.producers)))

    @classmethod
    def decode(cls, data):
        return _decode(data, cls._read, "schedule")

    @classmethod
    def _read(cls, r):
        r.tag(TAG_SCHEDULE, "schedule.tag")
        rnd, start = r.uvarint("schedule.round"), r.uvarint("schedule.start_slot")
        n = r.count(MAX_PRODUCERS, "schedule.producers")
        if n == 0:
            raise DecodeError("schedule.producers", "a schedule needs at least one producer")
        return cls(rnd, start, tuple(r.fixed(PUBKEY_SIZE, "schedule.producer") for _ in range(n)))

    @property
    def end_slot(self):
        """The first slot after this round."""
        return self.start_slot + len(self.producers)

    def producer_for(self, slot):
        """The producer of ``slot``, which must lie in this round."""
        if not self.start_slot <= slot < self.end_slot:
            raise ValueError(f"slot {slot} is outside round {self.round}")
        return self.producers[slot - self.start_slot]


def encode_address_list(addresses):
    """A sorted, duplicate-free list of addresses (agent index, unbonding queue)."""
    return bytes((TAG_ADDRESS_LIST,)) + encode_address_set(sorted(addresses), MAX_LIST, "addresses")


def decode_address_list(data):
    def read(r):
        r.tag(TAG_ADDRESS_LIST, "addresses.tag")
        return read_address_set(r, MAX_LIST, "addresses")
    return _decode(data, read, "addresses")


def encode_amount(amount):
    return bytes((TAG_AMOUNT,)) + encode_uvarint(amount)


def decode_amount(data):
    def read(r):
        r.tag(TAG_AMOUNT, "amount.tag")
        return r.uvarint("amount")
    return _decode(data, read, "amount")



NS_PARTICIPATION = b"participation"
NS_PARTICIPANT = b"participant"
NS_EPOCH_REWARD = b"epoch-reward"
TAG_PARTICIPATION = 0x1B
TAG_PARTICIPANT = 0x1C
TAG_EPOCH_REWARD = 0x1D
PARTICIPATION_KEY = state_key(NS_PARTICIPATION)


@lru_cache(maxsize=1 << 16)
def participant_key(address):
    return state_key(NS_PARTICIPANT, address)


def epoch_reward_key(epoch):
    return state_key(NS_EPOCH_REWARD, epoch.to_bytes(8, "big"))


class Participation(NamedTuple):
    """The participation-reward pool (docs/protocol.md §9): what is left to pay (``pool``), the
    open epoch and the service weight counted in it so far, what closed epochs set aside and
    participants have not taken yet (``payable``), and the code hash of the settlement
    contract whose payments count."""
    pool: int
    epoch: int
    weight: int
    payable: int
    code_hash: bytes

    def encode(self):
        return b"".join((bytes((TAG_PARTICIPATION,)), encode_uvarint(self.pool),
                         encode_uvarint(self.epoch), encode_uvarint(self.weight),
                         encode_uvarint(self.payable),
                         encode_fixed(self.code_hash, 32, "participation.code_hash")))

    @classmethod
    def decode(cls, data):
        def read(r):
            r.tag(TAG_PARTICIPATION, "participation.tag")
            return cls(r.uvarint("participation.pool"), r.uvarint("participation.epoch"),
                       r.uvarint("participation.weight"), r.uvarint("participation.payable"),
                       r.fixed(32, "participation.code_hash"))
        return _decode(data, read, "participation")


class Participant(NamedTuple):
    """A participant's service weight in one epoch, not yet paid."""
    epoch: int
    weight: int

    def encode(self):
        return b"".join((bytes((TAG_PARTICIPANT,)), encode_uvarint(self.epoch),
                         encode_uvarint(self.weight)))

    @classmethod
    def decode(cls, data):
        def read(r):
            r.tag(TAG_PARTICIPANT, "participant.tag")
            return cls(r.uvarint("participant.epoch"), r.uvarint("participant.weight"))
        return _decode(data, read, "participant")


def encode_epoch_reward(reward_per_weight):
    return bytes((TAG_EPOCH_REWARD,)) + encode_big(reward_per_weight, "epoch.reward_per_weight")


def decode_epoch_reward(data):
    def read(r):
        r.tag(TAG_EPOCH_REWARD, "epoch.tag")
        return read_big(r, "epoch.reward_per_weight")
    return _decode(data, read, "epoch reward")


NS_LOAD = b"load"
NS_HEAVY = b"heavy"
TAG_HEAVY = 0x1E
LOAD_KEY = state_key(NS_LOAD)
MAX_HEAVY_TX = 1 << 16


def heavy_key(tx_id):
    return state_key(NS_HEAVY, tx_id)


class HeavyRecord(NamedTuple):
    """A heavy call whose result only its block's producer computed (docs/protocol.md §9):
    where and when it ran, who vouched for the result, and the call itself, so that anyone can
    re-execute it on the state of the block before and prove the result wrong."""
    height: int
    time_ms: int
    producer: bytes
    status: int
    gas_used: int
    result: bytes
    tx: bytes

    def encode(self):
        return b"".join((bytes((TAG_HEAVY,)), encode_uvarint(self.height),
                         encode_uvarint(self.time_ms),
                         encode_fixed(self.producer, PUBKEY_SIZE, "heavy.producer"),
                         encode_u8(self.status, "heavy.status"), encode_uvarint(self.gas_used),
                         encode_fixed(self.result, 32, "heavy.result"),
                         encode_bytes(self.tx, MAX_HEAVY_TX, "heavy.tx")))

    @classmethod
    def decode(cls, data):
        def read(r):
            r.tag(TAG_HEAVY, "heavy.tag")
            return cls(r.uvarint("heavy.height"), r.uvarint("heavy.time_ms"),
                       r.fixed(PUBKEY_SIZE, "heavy.producer"), r.u8("heavy.status"),
                       r.uvarint("heavy.gas_used"), r.fixed(32, "heavy.result"),
                       r.var_bytes(MAX_HEAVY_TX, "heavy.tx"))
        return _decode(data, read, "heavy")


NS_HEAVY_EXPIRY = b"heavy-expiry"
TAG_HEAVY_EXPIRY = 0x1F
MAX_HEAVY_PER_BLOCK = 1 << 16


def heavy_expiry_key(height):
    return state_key(NS_HEAVY_EXPIRY, height.to_bytes(8, "big"))


def encode_tx_ids(ids):
    """The heavy calls an agent-verified block recorded, in block order."""
    if len(ids) > MAX_HEAVY_PER_BLOCK:
        raise ValueError(f"heavy-expiry: more than {MAX_HEAVY_PER_BLOCK} ids")
    return bytes((TAG_HEAVY_EXPIRY,)) + encode_uvarint(len(ids)) + b"".join(
        encode_fixed(i, 32, "heavy-expiry.id") for i in ids)


def decode_tx_ids(data):
    def read(r):
        r.tag(TAG_HEAVY_EXPIRY, "heavy-expiry.tag")
        return tuple(r.fixed(32, "heavy-expiry.id")
                     for _ in range(r.count(MAX_HEAVY_PER_BLOCK, "heavy-expiry.ids")))
    return _decode(data, read, "heavy-expiry")
