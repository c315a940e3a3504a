"""What it takes to take a block back: the prior values it overwrote, and the voter index.

Blocks above the last irreversible block may be reverted by a reorganisation. For each one the
ledger stores an undo record: the previous value (or absence) of every key it changed in the flat
state and in the voter index. The SMT keeps its own versions (``rollback``).

    undo record = list< u8(db) || fixed(key, 32 or 40) || u8(present) || [bytes(value)] >
"""

from edge._fast.codec_py import Reader, encode_bytes, encode_uvarint

DB_STATE = 0
DB_VOTERS = 1
MAX_VALUE = 1 << 16
MAX_ENTRIES = 1 << 24


def encode_undo(entries):
    """``entries``: ``(db, key, previous value or None)`` in the order they were recorded."""
    out = [encode_uvarint(len(entries))]
    for db, key, value in entries:
        out.append(bytes((db,)) + encode_bytes(key, 64, "undo.key"))
        out.append(b"\x00" if value is None else b"\x01" + encode_bytes(value, MAX_VALUE,
                                                                         "undo.value"))
    return b"".join(out)


def decode_undo(data):
    r = Reader(data)
    entries = []
    for _ in range(r.count(MAX_ENTRIES, "undo")):
        db, key = r.u8("undo.db"), r.var_bytes(64, "undo.key")
        present = r.u8("undo.present")
        entries.append((db, key, r.var_bytes(MAX_VALUE, "undo.value") if present else None))
    r.end("undo")
    return entries


class VoterIndex:
    """Who votes for whom, in the ``voters`` database (``agent || voter`` -> ``b""``), written
    inside the block's transaction with every change recorded for undo."""

    def __init__(self, txn, db, undo):
        self.txn, self.db, self.undo = txn, db, undo

    def voters_of(self, agent):
        cursor = self.txn.cursor(db=self.db)
        out = []
        if cursor.set_range(agent):
            for key in cursor.iternext(values=False):
                if not key.startswith(agent):
                    break
                out.append(key[len(agent):])
        return tuple(out)

    def set_vote(self, agent, voter, present):
        key = agent + voter
        before = self.txn.get(key, db=self.db)
        if (before is not None) == present:
            return
        self.undo.append((DB_VOTERS, key, before))
        if present:
            self.txn.put(key, b"", db=self.db)
        else:
            self.txn.delete(key, db=self.db)
