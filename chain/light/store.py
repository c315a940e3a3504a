"""What a light node keeps on disk: its anchor, finality tracker, last irreversible header, and a
bounded window of recent headers with the round records that follow them (docs/protocol.md §13.7).

One small LMDB environment (``[light] data_dir``), every change in one synced transaction, so a
``kill -9`` resumes from the last committed window. The window never holds more than
``window`` headers: disk and memory stay flat however long the node runs.
"""

import struct

from chain.store import Store
from edge._fast.codec_py import Reader, encode_bytes, encode_uvarint

U64 = struct.Struct(">Q")
LIGHT_DBS = {
    "light_meta": "b'anchor', b'lib' -> header; b'tracker' -> finality tracker",
    "light_headers": "u64be height -> uvarint(round) || seed (32) || header (the window)",
    "light_rounds": "u64be round -> bytes(schedule) || bytes(round record or empty)",
    "light_justified": "u64be round -> header of that round's justified checkpoint",
    "light_sent": "tx id -> u64be ms first sent || raw tx (sent by this node, until irreversible)",
}
MAP_SIZE = 256 << 20  # address space; the store stays a few MB (it grows if ever full)


class LightStore:
    """The light node's LMDB environment and its databases."""

    def __init__(self, path, map_size=MAP_SIZE):
        self.store = Store(path, map_size=map_size, dbs=LIGHT_DBS)
        self.path = path
        self.db = {name: self.store.db(name) for name in LIGHT_DBS}

    def read(self):
        return self.store.read()

    def write(self, work):
        return self.store.write(work)

    def close(self):
        self.store.close()

    def clear(self, txn, names=tuple(LIGHT_DBS)):
        for name in names:
            txn.drop(self.db[name], delete=False)

    def meta(self, txn, key):
        value = txn.get(key, db=self.db["light_meta"])
        return bytes(value) if value is not None else None

    def put_meta(self, txn, key, value):
        txn.put(key, value, db=self.db["light_meta"])

    # -- the window ---------------------------------------------------------------------------

    def put_link(self, txn, height, round_number, seed, raw_header):
        txn.put(U64.pack(height), encode_uvarint(round_number) + seed + raw_header,
                db=self.db["light_headers"])

    def link(self, txn, height):
        """``(round, seed, raw header)`` at ``height`` in the window, or None."""
        value = txn.get(U64.pack(height), db=self.db["light_headers"])
        if value is None:
            return None
        r = Reader(bytes(value))
        round_number = r.uvarint("link.round")
        seed = r.fixed(32, "link.seed")
        return round_number, seed, r.data[r.pos:]

    def window_bounds(self, txn):
        """``(lowest, highest)`` height in the window, or None when it is empty."""
        cursor = txn.cursor(db=self.db["light_headers"])
        if not cursor.first():
            return None
        low = U64.unpack(cursor.key())[0]
        cursor.last()
        return low, U64.unpack(cursor.key())[0]

    def delete_links(self, txn, above=None, below=None):
        """Delete window headers above height ``above`` or below height ``below``."""
        _delete_outside(txn, self.db["light_headers"], above, below)

    def put_round(self, txn, round_number, schedule, info):
        txn.put(U64.pack(round_number),
                encode_bytes(schedule.encode(), 1 << 14, "round.schedule")
                + encode_bytes(info.encode() if info is not None else b"", 1 << 16, "round.info"),
                db=self.db["light_rounds"])

    def round(self, txn, round_number):
        """``(schedule bytes, round record bytes or b"")`` or None."""
        value = txn.get(U64.pack(round_number), db=self.db["light_rounds"])
        if value is None:
            return None
        r = Reader(bytes(value))
        return r.var_bytes(1 << 14, "round.schedule"), r.var_bytes(1 << 16, "round.info")

    def delete_rounds(self, txn, above=None, below=None):
        """Delete the rounds above ``above`` or below ``below``."""
        _delete_outside(txn, self.db["light_rounds"], above, below)

    # -- justified checkpoints and sent transactions --------------------------------------------

    def put_justified(self, txn, round_number, raw_header, keep_from):
        db = self.db["light_justified"]
        txn.put(U64.pack(round_number), raw_header, db=db)
        cursor = txn.cursor(db=db)
        while cursor.first() and U64.unpack(cursor.key())[0] < keep_from:
            cursor.delete()

    def justified_header(self, txn, round_number):
        value = txn.get(U64.pack(round_number), db=self.db["light_justified"])
        return bytes(value) if value is not None else None

    def put_sent(self, txn, tx_id, sent_ms, raw):
        txn.put(tx_id, U64.pack(sent_ms) + raw, db=self.db["light_sent"])

    def delete_sent(self, txn, tx_id):
        txn.delete(tx_id, db=self.db["light_sent"])

    def sent(self, txn):
        """``[(tx id, ms first sent, raw tx)]`` of what this node sent and still watches."""
        return [(bytes(k), U64.unpack(v[:8])[0], bytes(v[8:]))
                for k, v in txn.cursor(db=self.db["light_sent"])]

    def disk_bytes(self):
        """Bytes the environment's files take on disk."""
        import os
        total = 0
        for name in os.listdir(self.path):
            total += os.stat(os.path.join(self.path, name)).st_blocks * 512
        return total


def _delete_outside(txn, db, above, below):
    """Delete the records of ``db`` (u64be keys) above ``above`` or below ``below``."""
    cursor = txn.cursor(db=db)
    if above is not None and cursor.set_range(U64.pack(above + 1)):
        while cursor.delete():
            pass
    if below is not None:
        while cursor.first() and U64.unpack(cursor.key())[0] < below:
            cursor.delete()
