"""Compact finality proofs and the per-round entries that carry them (docs/protocol.md §13.7).

A round's link ``source -> target`` is justified when 2/3+1 of every producer set the round
counts have signed it (§13.4). A ``FinalityProof`` names the link by its two rounds and says
which of the round's members signed, with their signatures; the verifier already knows the
source checkpoint, the target's header and the sets, and rebuilds each signed vote from them:

    proof = u8(0x31) || uvarint(source_round) || uvarint(target_round) || uvarint(n)
            || bitmap(ceil(n / 8)) || fixed(signature, 64) x popcount(bitmap)

``n`` is the number of members (the sorted union of the round's sets), bit ``i`` (most
significant first) says member ``i`` signed. With 21 producers a proof holds 15 signatures:
about 970 bytes. A ``FinalityEntry`` adds what makes it usable on its own: the target's header,
and the finality record in the target's state with its state proof, from which the next
round's sets follow.
"""

from typing import NamedTuple

from chain import crypto
from chain.dpos.finality import has_quorum, lib_threshold
from chain.light import LightError
from chain.state.consensus import MAX_SET, Checkpoint
from chain.state.proof import Proof
from chain.votes import FinalityVote
from edge._fast import DecodeError
from edge._fast.codec_py import (SIGNATURE_SIZE, Reader, encode_bytes, encode_fixed,
                                 encode_uvarint)

TAG_FINALITY_PROOF = 0x31
TAG_FINALITY_ENTRY = 0x32
MAX_MEMBERS = 2 * MAX_SET
MAX_HEADER = 1024
MAX_RECORD = 4096  # a state value (§10.1)
MAX_STATE_PROOF = 16384
MAX_PROOF_BYTES = 8 + (MAX_MEMBERS + 7) // 8 + MAX_MEMBERS * SIGNATURE_SIZE


def members_of(quorum_sets):
    """Every key a round counts, sorted: the order a proof's bitmap follows."""
    return tuple(sorted(set().union(*quorum_sets)))


class FinalityProof(NamedTuple):
    """Signatures of the round's members that signed the link ``source_round ->
    target_round``: ``signers`` are indexes into the sorted members (ascending), one
    signature each."""
    source_round: int
    target_round: int
    members: int
    signers: tuple
    signatures: tuple

    def encode(self):
        if not 0 < self.members <= MAX_MEMBERS:
            raise ValueError(f"finality_proof.members: {self.members} is outside 1..{MAX_MEMBERS}")
        if len(self.signers) != len(self.signatures):
            raise ValueError("finality_proof: one signature per signer")
        bitmap = bytearray((self.members + 7) // 8)
        previous = -1
        for index in self.signers:
            if not previous < index < self.members:
                raise ValueError("finality_proof.signers: indexes must increase within members")
            bitmap[index >> 3] |= 0x80 >> (index & 7)
            previous = index
        return b"".join((bytes((TAG_FINALITY_PROOF,)), encode_uvarint(self.source_round),
                         encode_uvarint(self.target_round), encode_uvarint(self.members),
                         bytes(bitmap), *(encode_fixed(s, SIGNATURE_SIZE, "finality_proof.signature")
                                          for s in self.signatures)))

    @classmethod
    def read(cls, r):
        r.tag(TAG_FINALITY_PROOF, "finality_proof.tag")
        source, target = r.uvarint("finality_proof.source_round"), r.uvarint(
            "finality_proof.target_round")
        members = r.uvarint("finality_proof.members")
        if not 0 < members <= MAX_MEMBERS:
            raise DecodeError("finality_proof.members", f"{members} is outside 1..{MAX_MEMBERS}")
        bitmap = r.fixed((members + 7) // 8, "finality_proof.bitmap")
        if members % 8 and bitmap[-1] & (0xFF >> (members % 8)):
            raise DecodeError("finality_proof.bitmap", "bits set past the members")
        signers = tuple(i for i in range(members) if bitmap[i >> 3] & (0x80 >> (i & 7)))
        signatures = tuple(r.fixed(SIGNATURE_SIZE, "finality_proof.signature") for _ in signers)
        return cls(source, target, members, signers, signatures)

    @classmethod
    def decode(cls, data):
        r = Reader(data)
        proof = cls.read(r)
        r.end("finality_proof")
        return proof


def make_proof(source_round, target_round, quorum_sets, signatures):
    """The smallest proof a verifier accepts, from ``signatures`` (producer key -> its
    signature of the link): members that count in more sets first, then by key. Raises
    ValueError when the signatures do not reach a quorum of every set."""
    members = members_of(quorum_sets)
    sets = [set(s) for s in quorum_sets if s]
    need = [lib_threshold(len(s)) for s in sets]
    chosen = set()
    for key in sorted(signatures, key=lambda k: (-sum(k in s for s in sets), k)):
        helps = [i for i, s in enumerate(sets) if key in s and need[i] > 0]
        if helps:
            chosen.add(key)
            for i in helps:
                need[i] -= 1
    if any(n > 0 for n in need) or not sets:
        raise ValueError("the signatures do not reach a quorum of every set")
    signers = tuple(i for i, key in enumerate(members) if key in chosen)
    return FinalityProof(source_round, target_round, len(members), signers,
                         tuple(signatures[members[i]] for i in signers))


def verify_proof(proof, chain_id, source, target, quorum_sets):
    """Check that ``proof`` justifies the link ``source -> target`` (two Checkpoints) under
    ``quorum_sets``; returns the signers' keys. Raises LightError(``bad_finality``)."""
    if (proof.source_round, proof.target_round) != (source.round, target.round):
        raise LightError("bad_finality", f"the proof links rounds {proof.source_round} -> "
                         f"{proof.target_round}, not {source.round} -> {target.round}")
    if target.round <= source.round:
        raise LightError("bad_finality", "a link must go forward")
    members = members_of(quorum_sets)
    if proof.members != len(members):
        raise LightError("bad_finality", f"the proof counts {proof.members} members, the round "
                         f"has {len(members)}")
    keys = [members[i] for i in proof.signers]
    items = [(key, FinalityVote(key, source.round, source.hash, target.round, target.hash).hash,
              signature) for key, signature in zip(keys, proof.signatures)]
    valid = crypto.verify_many(chain_id, items)
    if not all(valid):
        bad = keys[valid.index(False)]
        raise LightError("bad_finality", f"the signature of {bad.hex()[:16]} does not verify")
    if not has_quorum(keys, quorum_sets):
        raise LightError("bad_finality", f"{len(keys)} signatures are no quorum of the round")
    return keys


class FinalityEntry(NamedTuple):
    """Round ``proof.target_round`` justified: its checkpoint's header, the proof, and the
    finality record in that header's state with its state proof (§10.3):

        entry = u8(0x32) || bytes(target_header, 1024) || proof || bytes(record, 4096)
                || bytes(record_proof, 16384)
    """
    header: bytes
    proof: FinalityProof
    record: bytes
    record_proof: bytes

    def encode(self):
        return b"".join((bytes((TAG_FINALITY_ENTRY,)),
                         encode_bytes(self.header, MAX_HEADER, "finality_entry.header"),
                         self.proof.encode(),
                         encode_bytes(self.record, MAX_RECORD, "finality_entry.record"),
                         encode_bytes(self.record_proof, MAX_STATE_PROOF,
                                      "finality_entry.record_proof")))

    @classmethod
    def decode(cls, data):
        r = Reader(data)
        r.tag(TAG_FINALITY_ENTRY, "finality_entry.tag")
        entry = cls(r.var_bytes(MAX_HEADER, "finality_entry.header"), FinalityProof.read(r),
                    r.var_bytes(MAX_RECORD, "finality_entry.record"),
                    r.var_bytes(MAX_STATE_PROOF, "finality_entry.record_proof"))
        r.end("finality_entry")
        return entry

    def state_proof(self):
        """The record's state proof, decoded (DecodeError when it does not decode)."""
        return Proof.decode(self.record_proof)


def checkpoint_of(round_number, header):
    """The checkpoint of ``round_number`` whose block is ``header``."""
    return Checkpoint(round_number, header.hash, header.height)
