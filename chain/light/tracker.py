"""Which producer sets a round's link needs, followed from one trusted state (docs/protocol.md §13.7).

A light node starts from the finality record of a state it trusts (genesis, or an irreversible
block). From then on it only believes finality entries. A round whose link leaves the justified
checkpoint ``S`` is counted by the rule that stood after ``S`` was justified: between the two,
nothing was justified on that chain, so nothing was finalized and the rule could not change
(an election only *proposes* a set; it counts once a later block is final). The entry's own
state proof then gives the rule at the target, and justifying the link gives the rule that
counts the link after it. By induction every proof is checked against sets that come from
trusted states only: a peer can neither choose the signers nor forge the record.
"""

from typing import NamedTuple

from chain.dpos.rounds import advance_rule
from chain.light import LightError
from chain.light.finality import verify_proof
from chain.state.consensus import Checkpoint, Finality
from chain.state.proof import verify_proof as verify_state_proof
from chain.state.records import FINALITY_KEY
from edge._fast import DecodeError
from edge._fast.codec_py import Reader, encode_bytes, encode_uvarint

MAX_KEPT = 64  # justified checkpoints kept above the finalized one
# ...and below it: the round record of a round's first block is checked against the rule after
# its parent's justified round, which may be older than the finalized one when finality ran
# ahead of the headers (a window started at the newest justified checkpoint)
KEPT_BELOW = 4


class Justified(NamedTuple):
    """A justified checkpoint and the finality rule right after its justification: the rule
    that counts every link that leaves it."""
    checkpoint: Checkpoint
    record: Finality


def justify(record, source, target):
    """The finality record once the link ``source -> target`` is justified (what
    ``chain.dpos.rounds.apply_votes`` does to the state). The height a phase change marks is
    only compared with finalized checkpoints, so any height within the target's round will do:
    the target's height + 1."""
    if record.justified.round >= target.round:
        return record
    record = record._replace(justified=target)
    if source.round + 1 == target.round and source.round > record.finalized.round:
        record = advance_rule(record._replace(finalized=source), target.height + 1)
    return record


class FinalityTracker:
    """The justified checkpoints a light node knows above its last finalized one."""

    def __init__(self, chain_id, record, finalized=None, justified=None):
        """Start from ``record``, the finality record of a trusted state."""
        self.chain_id = chain_id
        self.finalized = finalized or record.finalized
        self.justified = justified or {record.justified.round: Justified(record.justified, record)}

    @property
    def latest(self):
        """The justified checkpoint of the highest round."""
        return self.justified[max(self.justified)]

    def rule_after(self, source_round):
        """The finality record that counts links leaving round ``source_round``'s checkpoint
        (rounds below the finalized one too, while kept: see KEPT_BELOW)."""
        found = self.justified.get(source_round)
        if found is None:
            raise LightError("unknown_source", f"round {source_round} is not a justified "
                             "checkpoint this node knows")
        return found

    def accept(self, entry, header):
        """Check a finality entry whose target block is ``header`` (already decoded from the
        entry); returns ``(Justified, newly finalized Checkpoint or None)``. Raises
        LightError: nothing changes when it fails."""
        proof = entry.proof
        if proof.source_round < self.finalized.round:
            raise LightError("unknown_source", f"round {proof.source_round} is below the "
                             f"finalized round {self.finalized.round}: no link leaves it")
        source = self.rule_after(proof.source_round)
        target = Checkpoint(proof.target_round, header.hash, header.height)
        verify_proof(proof, self.chain_id, source.checkpoint, target, source.record.quorum_sets())
        record = self._target_record(entry, header)
        if record.justified != source.checkpoint:
            raise LightError("bad_finality", "the target's state does not link from the proof's "
                             "source checkpoint")
        if record.quorum_sets() != source.record.quorum_sets():
            raise LightError("bad_finality", "the target's state counts other producer sets "
                             "than the source's")
        after = Justified(target, justify(record, source.checkpoint, target))
        self.justified[target.round] = after
        newly = None
        if source.checkpoint.round + 1 == target.round and \
                source.checkpoint.round > self.finalized.round:
            newly = self.finalized = source.checkpoint
        self._prune()
        return after, newly

    def _target_record(self, entry, header):
        try:
            record = Finality.decode(entry.record)
            state_proof = entry.state_proof()
        except DecodeError as exc:
            raise LightError("bad_finality", f"the entry's record does not decode ({exc})") from None
        if not verify_state_proof(header.state_root, FINALITY_KEY, entry.record, state_proof):
            raise LightError("bad_finality", "the finality record's state proof does not verify")
        return record

    def _prune(self):
        below = sorted(r for r in self.justified if r < self.finalized.round)[-KEPT_BELOW:]
        kept = {r: j for r, j in self.justified.items()
                if r >= self.finalized.round or r in below}
        while len(kept) > MAX_KEPT + KEPT_BELOW:
            del kept[min(kept)]
        self.justified = kept

    # -- storage --------------------------------------------------------------------------------

    def encode(self):
        parts = [self.finalized.encode(), encode_uvarint(len(self.justified))]
        for round_number in sorted(self.justified):
            found = self.justified[round_number]
            parts += [found.checkpoint.encode(), encode_bytes(found.record.encode(), 1 << 16,
                                                              "tracker.record")]
        return b"".join(parts)

    @classmethod
    def decode(cls, chain_id, data):
        r = Reader(data)
        finalized = Checkpoint.read(r, "tracker.finalized")
        justified = {}
        for _ in range(r.count(MAX_KEPT + KEPT_BELOW + 1, "tracker.justified")):
            checkpoint = Checkpoint.read(r, "tracker.checkpoint")
            record = Finality.decode(r.var_bytes(1 << 16, "tracker.record"))
            justified[checkpoint.round] = Justified(checkpoint, record)
        r.end("tracker")
        if not justified:
            raise DecodeError("tracker.justified", "no justified checkpoint")
        return cls(chain_id, None, finalized, justified)
