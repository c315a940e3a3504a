"""Finality entries on a full node: made from the chain when asked, stored before the state they
need is pruned (docs/protocol.md §13.7).

A round's entry is made from the block that justified it (the first main-chain block whose
``justified_round`` is that round), the finality votes carried by the blocks of the round, and
the state versions of that block and of the round's checkpoint. While those versions are kept
(the last ``prune_depth`` blocks) an entry is made on request, and the newest are cached; when a
pruning batch is about to drop the checkpoint's version, the entries it still needs are written,
in that same transaction, to the ``finality`` database (``u64be round -> u64be height of the
justifying block || entry``), which keeps the rounds of the evidence window. So a full node
writes nothing per block for light clients (a devnet, whose every block justifies a round, would
otherwise pay a B-tree path a block), yet proves the finality of every round a light node may
ask for.
"""

import struct
from collections import OrderedDict

from chain.block import Block, Header
from chain.dpos.rounds import expected_vote
from chain.light.finality import FinalityEntry, make_proof
from chain.state.records import FINALITY_KEY
from chain.state.smt import StateError
from chain.state.view import StateView

U64 = struct.Struct(">Q")
DB_FINALITY = "finality"
CACHE_ENTRIES = 256


def keep_rounds(params):
    """Rounds of entries served: the evidence window (in rounds) and a margin. A light node
    never starts from an older checkpoint (§13.7)."""
    return params.evidence_window // params.round_length() + 16


def entry_at(ledger, txn, height):
    """``(round, encoded entry)`` when the main-chain block at ``height`` justified a round and
    its entry can be made (its checkpoint's state version and the round's blocks are here),
    else None."""
    header, before = _header(ledger, txn, height), _header(ledger, txn, height - 1)
    if header is None or before is None or header.justified_round <= before.justified_round:
        return None
    try:
        view = StateView(lambda key: ledger.smt.get(txn, height, key))
        finality, info = view.finality(), view.round_info()
        link = expected_vote(info)
        if link is None or info.target != finality.justified:
            return None
        signatures = {}
        for h in range(info.target.height + 1, height + 1):
            raw = ledger.blocks.block_at(txn, h)
            for vote in Block.decode(raw).votes if raw is not None else ():
                if vote.link == link:
                    signatures.setdefault(vote.producer, vote.signature)
        proof = make_proof(info.source.round, info.target.round, info.quorum_sets(),
                           signatures)
        if ledger.blocks.hash_at(txn, info.target.height) != info.target.hash:
            return None
        record, record_proof = ledger.smt.prove(txn, info.target.height, FINALITY_KEY)
    except (StateError, ValueError):  # pruned, or some of the round's blocks are not here
        return None
    entry = FinalityEntry(ledger.blocks.header_at(txn, info.target.height), proof, record,
                          record_proof.encode())
    return info.target.round, entry.encode()


def store_entries(writer, oldest, keep_from):
    """Called by a pruning batch before it drops the state versions ``oldest..keep_from - 1``:
    write the entries that need those versions (justified rounds whose checkpoint is below
    ``keep_from``) and are not written yet, and drop entries older than ``keep_rounds``."""
    txn, ledger = writer.txn, writer.ledger
    entries = ledger.store.db(DB_FINALITY)
    height = max(_last_written_height(txn, entries) + 1, oldest)
    written = []
    while height <= writer.head.height:
        made = entry_at(ledger, txn, height)
        if made is not None:
            checkpoint_height = Header.decode(FinalityEntry.decode(made[1]).header).height
            if checkpoint_height >= keep_from:
                break  # this one and every later one can still be made on request
            written.append((U64.pack(made[0]), U64.pack(height) + made[1]))
        height += 1
    if written:
        txn.cursor(db=entries).putmulti(written, append=True)
        _prune(txn, entries, U64.unpack(written[-1][0])[0] - keep_rounds(ledger.params))


def forget_justification(writer, header):
    """The block ``header`` is taken back: its stored entry (if it justified a round) goes."""
    entries = writer.ledger.store.db(DB_FINALITY)
    key = U64.pack(header.justified_round)
    stored = writer.txn.get(key, db=entries)
    if stored is not None and U64.unpack(stored[:8])[0] == header.height:
        writer.txn.delete(key, db=entries)


class FinalityEntries:
    """A full node's finality entries for light clients: stored ones, then ones made from the
    kept state versions (the newest cached by block hash)."""

    def __init__(self, ledger):
        self.ledger = ledger
        self._made = OrderedDict()   # justifying block hash -> (round, entry) or None

    def from_round(self, from_round, count, limit_bytes=1 << 20):
        """Encoded entries of the justified rounds from ``from_round`` on, in order (only the
        newest ``keep_rounds`` rounds are served)."""
        ledger = self.ledger
        out, size = [], 0
        with ledger.store.read() as txn:
            head = ledger.blocks.head_height(txn)
            newest = _header(ledger, txn, head).justified_round
            from_round = max(from_round, newest - keep_rounds(ledger.params) + 1)
            entries = ledger.store.db(DB_FINALITY)
            stored_to = _last_written_height(txn, entries)
            for round_number, entry in self._stored(txn, entries, from_round):
                if len(out) >= count or size + len(entry) > limit_bytes:
                    return out
                out.append(entry)
                size += len(entry)
                from_round = round_number + 1
            height = self._first_justifying(txn, max(stored_to + 1, 1), head, from_round)
            while height <= head and len(out) < count:
                made = self._entry(txn, height)
                height += 1
                if made is None or made[0] < from_round:
                    continue
                if size + len(made[1]) > limit_bytes:
                    break
                out.append(made[1])
                size += len(made[1])
        return out

    def _stored(self, txn, entries, from_round):
        cursor = txn.cursor(db=entries)
        if cursor.set_range(U64.pack(from_round)):
            for key, value in cursor:
                yield U64.unpack(key)[0], bytes(value[8:])

    def _first_justifying(self, txn, low, high, from_round):
        """The lowest height in ``low..high`` whose block's justified round is at least
        ``from_round`` (``high + 1`` when none): justified rounds never go down along a chain."""
        ledger = self.ledger
        while low <= high:
            middle = (low + high) // 2
            header = _header(ledger, txn, middle)
            if header is not None and header.justified_round >= from_round:
                high = middle - 1
            else:
                low = middle + 1
        return low

    def _entry(self, txn, height):
        block_hash = self.ledger.blocks.hash_at(txn, height)
        if block_hash in self._made:
            self._made.move_to_end(block_hash)
            return self._made[block_hash]
        made = entry_at(self.ledger, txn, height)
        self._made[block_hash] = made
        while len(self._made) > CACHE_ENTRIES:
            self._made.popitem(last=False)
        return made


def finality_entries(ledger, from_round, count, limit_bytes=1 << 20):
    """Encoded finality entries of the justified rounds from ``from_round`` on, in order."""
    return FinalityEntries(ledger).from_round(from_round, count, limit_bytes)


def _header(ledger, txn, height):
    raw = ledger.blocks.header_at(txn, height) if height >= 0 else None
    return Header.decode(raw) if raw is not None else None


def _last_written_height(txn, entries):
    cursor = txn.cursor(db=entries)
    return U64.unpack(cursor.value()[:8])[0] if cursor.last() else 0


def _prune(txn, entries, below_round):
    cursor = txn.cursor(db=entries)
    while below_round > 0 and cursor.first() and U64.unpack(cursor.key())[0] < below_round:
        cursor.delete()
