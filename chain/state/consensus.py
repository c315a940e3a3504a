"""Consensus records in the state: producer keys, finality, and the round in progress.

Their canonical encodings are in docs/protocol.md §7; what they mean is in §13. Every set of
public keys is stored sorted and without duplicates, so equal sets encode equally.
"""

from typing import NamedTuple

from edge._fast import DecodeError
from edge._fast.codec_py import (ADDRESS_SIZE, HASH_SIZE, PUBKEY_SIZE, Reader, encode_fixed,
                                 encode_u8, encode_uvarint)

TAG_PRODUCER = 0x16
TAG_FINALITY = 0x17
TAG_ROUND = 0x18
TAG_ROUND_VOTES = 0x19

MAX_SET = 255
MAX_STANDBY = 16
ZERO_HASH = bytes(HASH_SIZE)

# Finality phases: no change under way; a new producer set waits for the block that proposed
# it to become irreversible; both sets must reach a quorum until a block of the joint phase is.
STABLE, PROPOSED, JOINT = 0, 1, 2


def _decode(data, read, what):
    r = Reader(data)
    value = read(r)
    r.end(what)
    return value


def encode_key_set(keys, field):
    """A sorted, duplicate-free set of 32-byte public keys (at most 255)."""
    keys = tuple(keys)
    if len(keys) > MAX_SET:
        raise ValueError(f"{field}: {len(keys)} keys exceeds {MAX_SET}")
    if any(b <= a for a, b in zip(keys, keys[1:])):
        raise ValueError(f"{field}: keys must be sorted and unique")
    return encode_uvarint(len(keys)) + b"".join(encode_fixed(k, PUBKEY_SIZE, field) for k in keys)


def read_key_set(r, field):
    keys = []
    for _ in range(r.count(MAX_SET, field)):
        key = r.fixed(PUBKEY_SIZE, field)
        if keys and key <= keys[-1]:
            raise DecodeError(field, "keys must be sorted and unique")
        keys.append(key)
    return tuple(keys)


class Checkpoint(NamedTuple):
    """The block a round's finality votes point at: the last block before the round starts
    (``round`` 0 with the zero hash stands for genesis)."""
    round: int
    hash: bytes
    height: int

    def encode(self):
        return (encode_uvarint(self.round) + encode_fixed(self.hash, HASH_SIZE, "checkpoint.hash")
                + encode_uvarint(self.height))

    @classmethod
    def read(cls, r, field):
        return cls(r.uvarint(f"{field}.round"), r.fixed(HASH_SIZE, f"{field}.hash"),
                   r.uvarint(f"{field}.height"))


GENESIS_CHECKPOINT = Checkpoint(0, ZERO_HASH, 0)


class Producer(NamedTuple):
    """A block-signing key: the agent (owner address) it signs for, and its reveal chain.

    ``commit`` is the value the key's next reveal must hash to. A new chain set by a
    transaction (``next_epoch``/``next_commit``) takes over at round ``next_from_round``, when
    the other reveals of that round are still unknown to whoever chose it.
    """
    owner: bytes
    epoch: int
    commit: bytes
    next_epoch: int = 0
    next_commit: bytes = b""
    next_from_round: int = 0

    def effective(self, round_number):
        """This record as it stands for a block in ``round_number``."""
        if self.next_commit and round_number >= self.next_from_round:
            return Producer(self.owner, self.next_epoch, self.next_commit)
        return self

    def encode(self):
        parts = [bytes((TAG_PRODUCER,)), encode_fixed(self.owner, ADDRESS_SIZE, "producer.owner"),
                 encode_uvarint(self.epoch), encode_fixed(self.commit, HASH_SIZE, "producer.commit")]
        if self.next_commit:
            parts += [b"\x01", encode_uvarint(self.next_epoch),
                      encode_fixed(self.next_commit, HASH_SIZE, "producer.next_commit"),
                      encode_uvarint(self.next_from_round)]
        else:
            parts.append(b"\x00")
        return b"".join(parts)

    @classmethod
    def decode(cls, data):
        def read(r):
            r.tag(TAG_PRODUCER, "producer.tag")
            owner, epoch = r.fixed(ADDRESS_SIZE, "producer.owner"), r.uvarint("producer.epoch")
            commit = r.fixed(HASH_SIZE, "producer.commit")
            flag = r.u8("producer.next")
            if flag > 1:
                raise DecodeError("producer.next", f"presence flag must be 0 or 1, got {flag}")
            if not flag:
                return cls(owner, epoch, commit)
            return cls(owner, epoch, commit, r.uvarint("producer.next_epoch"),
                       r.fixed(HASH_SIZE, "producer.next_commit"),
                       r.uvarint("producer.next_from_round"))
        return _decode(data, read, "producer")


class Finality(NamedTuple):
    """The chain's finality: its latest justified and finalized checkpoints and the rule that
    counts votes (the active producer set, and the next one while a change is under way)."""
    justified: Checkpoint
    finalized: Checkpoint
    active: tuple
    phase: int = STABLE
    next: tuple = ()
    mark: int = 0

    def quorum_sets(self):
        """The sets whose 2/3+1 a link needs: the active set, and the next one when joint."""
        return (self.active, self.next) if self.phase == JOINT else (self.active,)

    def encode(self):
        return b"".join((bytes((TAG_FINALITY,)), self.justified.encode(), self.finalized.encode(),
                         encode_key_set(self.active, "finality.active"),
                         encode_u8(self.phase, "finality.phase"),
                         encode_key_set(self.next, "finality.next"), encode_uvarint(self.mark)))

    @classmethod
    def decode(cls, data):
        def read(r):
            r.tag(TAG_FINALITY, "finality.tag")
            justified = Checkpoint.read(r, "finality.justified")
            finalized = Checkpoint.read(r, "finality.finalized")
            active = read_key_set(r, "finality.active")
            phase = r.u8("finality.phase")
            if phase > JOINT:
                raise DecodeError("finality.phase", f"unknown phase {phase}")
            return cls(justified, finalized, active, phase, read_key_set(r, "finality.next"),
                       r.uvarint("finality.mark"))
        return _decode(data, read, "finality")


class RoundInfo(NamedTuple):
    """What a round fixed when it began: the link its votes make (``source`` -> ``target``),
    the sets whose quorum that link needs, and the standby candidates (producer key, votes)
    that the next round's order draws from."""
    round: int
    source: Checkpoint
    target: Checkpoint
    quorum_active: tuple
    quorum_next: tuple = ()
    standby: tuple = ()

    def quorum_sets(self):
        return (self.quorum_active, self.quorum_next) if self.quorum_next else (self.quorum_active,)

    def members(self):
        """Every key whose vote counts this round, sorted."""
        return tuple(sorted(set(self.quorum_active) | set(self.quorum_next)))

    def encode(self):
        if len(self.standby) > MAX_STANDBY:
            raise ValueError(f"round.standby: at most {MAX_STANDBY} candidates")
        parts = [bytes((TAG_ROUND,)), encode_uvarint(self.round), self.source.encode(),
                 self.target.encode(), encode_key_set(self.quorum_active, "round.quorum_active"),
                 encode_key_set(self.quorum_next, "round.quorum_next"),
                 encode_uvarint(len(self.standby))]
        for key, votes in self.standby:
            parts += [encode_fixed(key, PUBKEY_SIZE, "round.standby"), encode_uvarint(votes)]
        return b"".join(parts)

    @classmethod
    def decode(cls, data):
        def read(r):
            r.tag(TAG_ROUND, "round.tag")
            number = r.uvarint("round.round")
            source, target = Checkpoint.read(r, "round.source"), Checkpoint.read(r, "round.target")
            active, upcoming = read_key_set(r, "round.quorum_active"), read_key_set(
                r, "round.quorum_next")
            standby = tuple((r.fixed(PUBKEY_SIZE, "round.standby"), r.uvarint("round.standby"))
                            for _ in range(r.count(MAX_STANDBY, "round.standby")))
            return cls(number, source, target, active, upcoming, standby)
        return _decode(data, read, "round")


class RoundVotes(NamedTuple):
    """The round so far: who has voted for its link, and the seed its reveals have made."""
    seed: bytes
    voters: tuple = ()

    def encode(self):
        return b"".join((bytes((TAG_ROUND_VOTES,)), encode_fixed(self.seed, HASH_SIZE, "votes.seed"),
                         encode_key_set(self.voters, "votes.voters")))

    @classmethod
    def decode(cls, data):
        def read(r):
            r.tag(TAG_ROUND_VOTES, "votes.tag")
            return cls(r.fixed(HASH_SIZE, "votes.seed"), read_key_set(r, "votes.voters"))
        return _decode(data, read, "votes")
