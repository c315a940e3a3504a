"""Finality votes: a producer's signed link from a justified checkpoint to its round's checkpoint.

A vote is its own signed object, so any block of the round may carry it: a vote made in a
block that lost a fork race is not lost with the block (docs/protocol.md §5, §13). Encoding:

    vote = u8(0x05) || fixed(producer, 32) || uvarint(source_round) || fixed(source_hash, 32)
           || uvarint(target_round) || fixed(target_hash, 32) || fixed(signature, 64)

signed over ``H("ss/vote", vote without its signature)`` for the chain.
"""

from typing import NamedTuple

from chain.crypto import hash_of, verify
from edge._fast import DecodeError
from edge._fast.codec_py import (HASH_SIZE, PUBKEY_SIZE, SIGNATURE_SIZE, Reader, encode_fixed,
                                 encode_uvarint)

TAG_VOTE = 0x05
TAG_VOTE_HASH = b"ss/vote"
NO_SIGNATURE = bytes(SIGNATURE_SIZE)


class FinalityVote(NamedTuple):
    """``producer`` votes for the link ``(source_round, source_hash) -> (target_round,
    target_hash)``."""
    producer: bytes
    source_round: int
    source_hash: bytes
    target_round: int
    target_hash: bytes
    signature: bytes = NO_SIGNATURE

    @property
    def link(self):
        return (self.source_round, self.source_hash, self.target_round, self.target_hash)

    def encode_unsigned(self):
        return b"".join((bytes((TAG_VOTE,)), encode_fixed(self.producer, PUBKEY_SIZE, "vote.producer"),
                         encode_uvarint(self.source_round),
                         encode_fixed(self.source_hash, HASH_SIZE, "vote.source_hash"),
                         encode_uvarint(self.target_round),
                         encode_fixed(self.target_hash, HASH_SIZE, "vote.target_hash")))

    def encode(self):
        return self.encode_unsigned() + encode_fixed(self.signature, SIGNATURE_SIZE,
                                                     "vote.signature")

    @classmethod
    def read(cls, r):
        r.tag(TAG_VOTE, "vote.tag")
        return cls(r.fixed(PUBKEY_SIZE, "vote.producer"), r.uvarint("vote.source_round"),
                   r.fixed(HASH_SIZE, "vote.source_hash"), r.uvarint("vote.target_round"),
                   r.fixed(HASH_SIZE, "vote.target_hash"), r.fixed(SIGNATURE_SIZE, "vote.signature"))

    @classmethod
    def decode(cls, data):
        r = Reader(data)
        vote = cls.read(r)
        r.end("vote")
        return vote

    @property
    def hash(self):
        return hash_of(TAG_VOTE_HASH, self.encode_unsigned())

    def signed_by(self, keypair, chain_id):
        return self._replace(signature=keypair.sign(chain_id, self.hash))

    def signature_valid(self, chain_id):
        return verify(self.producer, chain_id, self.hash, self.signature)

    def to_json(self):
        return {"producer_pubkey": self.producer.hex(), "source_round": self.source_round,
                "source_hash": self.source_hash.hex(), "target_round": self.target_round,
                "target_hash": self.target_hash.hex(), "signature": self.signature.hex()}


def make_vote(signer, link, chain_id):
    """``signer``'s vote for ``link`` (source_round, source_hash, target_round, target_hash)."""
    return FinalityVote(signer.pubkey, *link).signed_by(signer, chain_id)


def decode_votes(raws):
    """Decode a block's votes (``DecodeError`` names the one that fails)."""
    try:
        return [FinalityVote.decode(raw) for raw in raws]
    except DecodeError as exc:
        raise DecodeError(f"block.{exc.field}", exc.reason) from None


class VotePool:
    """Finality votes seen in any block, on any fork, for this node's blocks to carry: a vote
    whose block lost a fork race still counts once another block carries it. Signatures are
    checked on the way in; only the last few rounds are kept."""

    KEEP_ROUNDS = 3
    LIMIT = 4096

    def __init__(self, chain_id):
        self.chain_id = chain_id
        self._votes = {}  # (producer, link) -> vote

    def add(self, votes):
        """Keep the valid ones of ``votes``; returns those that were new."""
        new = []
        for vote in votes:
            key = (vote.producer, vote.link)
            if key in self._votes or len(self._votes) >= self.LIMIT:
                continue
            if vote.signature_valid(self.chain_id):
                self._votes[key] = vote
                new.append(vote)
        return new

    def for_round(self, target_round):
        """The votes kept for ``target_round`` (the builder keeps those that fit its chain)."""
        self.prune(target_round)
        return [vote for vote in self._votes.values() if vote.target_round == target_round]

    def prune(self, current_round):
        self._votes = {key: vote for key, vote in self._votes.items()
                       if vote.target_round + self.KEEP_ROUNDS > current_round}

    def __len__(self):
        return len(self._votes)
