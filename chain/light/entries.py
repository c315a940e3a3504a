"""Finality entries on a full node: written with the block that justifies a round, taken back
with it (docs/protocol.md §13.7).

A block that justifies a round gets its finality entry written in the same LMDB transaction
(the ``finality`` database: ``u64be round -> u64be height of that block || entry``), while the
state version of the round's checkpoint is still kept; taking the block back deletes it. So a
full node can prove the finality of every recent round, however far its state tree was pruned.
"""

import struct

from chain.block import Block
from chain.dpos.rounds import expected_vote
from chain.light.finality import FinalityEntry, make_proof
from chain.state.records import FINALITY_KEY

U64 = struct.Struct(">Q")
DB_FINALITY = "finality"


def record_justification(writer, block, view, justified_before):
    """Called for every block written to the main chain: when it justified a round, store
    that round's finality entry (its votes are in the round's blocks up to this one)."""
    finality = view.finality()
    if finality.justified.round <= justified_before:
        return
    info = view.round_info()
    link = expected_vote(info)
    if link is None or info.target != finality.justified:
        return
    signatures = {}
    for carried in _round_blocks(writer, info.target.height + 1, block):
        for vote in carried.votes:
            if vote.link == link:
                signatures.setdefault(vote.producer, vote.signature)
    try:
        proof = make_proof(info.source.round, info.target.round, info.quorum_sets(), signatures)
    except ValueError:  # some of the round's blocks are not here (a node promoted mid-round)
        return
    txn = writer.txn
    record, record_proof = writer.ledger.smt.prove(txn, info.target.height, FINALITY_KEY)
    blocks = writer.ledger.blocks
    if blocks.hash_at(txn, info.target.height) != info.target.hash:
        return  # the justified block is not on this chain (cannot happen once it was written)
    entry = FinalityEntry(blocks.header_at(txn, info.target.height), proof, record,
                          record_proof.encode())
    entries = writer.ledger.store.db(DB_FINALITY)
    txn.put(U64.pack(info.target.round), U64.pack(block.height) + entry.encode(), db=entries)
    _prune(txn, entries, info.target.round - keep_rounds(writer.ledger.params))


def forget_justification(writer, header):
    """The block ``header`` is taken back: its finality entry (if it justified a round) goes."""
    entries = writer.ledger.store.db(DB_FINALITY)
    key = U64.pack(header.justified_round)
    stored = writer.txn.get(key, db=entries)
    if stored is not None and U64.unpack(stored[:8])[0] == header.height:
        writer.txn.delete(key, db=entries)


def keep_rounds(params):
    """Rounds of entries kept: the evidence window (in rounds) and a margin. A light node
    never starts from an older checkpoint (§13.7)."""
    return params.evidence_window // params.round_length() + 16


def _round_blocks(writer, from_height, last):
    """The main-chain blocks from ``from_height`` up to ``last`` (not yet written)."""
    txn, blocks = writer.txn, writer.ledger.blocks
    for height in range(from_height, last.height):
        raw = blocks.block_at(txn, height)
        if raw is not None:
            yield Block.decode(raw)
    yield last


def _prune(txn, entries, below_round):
    cursor = txn.cursor(db=entries)
    while below_round > 0 and cursor.first() and U64.unpack(cursor.key())[0] < below_round:
        cursor.delete()


def finality_entries(ledger, from_round, count, limit_bytes=1 << 20):
    """Encoded finality entries of the justified rounds from ``from_round`` on, in order."""
    out, size = [], 0
    with ledger.store.read() as txn:
        cursor = txn.cursor(db=ledger.store.db(DB_FINALITY))
        if not cursor.set_range(U64.pack(from_round)):
            return out
        for _, value in cursor:
            entry = bytes(value[8:])
            if len(out) >= count or size + len(entry) > limit_bytes:
                break
            out.append(entry)
            size += len(entry)
    return out
