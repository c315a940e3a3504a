"""The agent's named LMDB databases (DESIGN §2) and JSON records in them.

Every record is one JSON document (keys sorted); keys are bytes. ``Records`` wraps one database.
"""

import json
import struct

U64 = struct.Struct(">Q")

# name -> what it maps (docs/protocol.md §17.6)
AGENT_DBS = {
    "agent_meta": "text key -> JSON value (counters, the channel contract, cursors)",
    "agent_txs": "u64be id -> a transaction of the wallet's outbox, queued to final (JSON)",
    "agent_services": "service id (text) -> an offered service: type, device, price policy",
    "agent_orders": "order id (text) -> a resting order of the book (JSON)",
    "agent_sessions": "session id (8 bytes) -> a seller's session: terms, state, metering, vouchers",
    "agent_purchases": "order id (8 bytes) -> a buyer's session: terms, state, vouchers",
    "agent_cursor": "device id (8 bytes) -> u64be seq of its last frame metering has read",
    # the data desk (data_store.py, docs/protocol.md §18.2)
    "data_sets": "dataset id (text) -> an offered dataset: device, owner, cursor, counts",
    "data_records": "dataset key || u64be timestamp || u64be seq -> a signed data frame",
    "data_deliveries": "purchase id (16 bytes) -> a delivery: hash, records, size, state",
    "data_payloads": "purchase id -> the sealed envelope of a delivery",
}


def dumps(doc):
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


class Records:
    """JSON documents in one named database of a Store."""

    def __init__(self, store, name):
        self.store = store
        self.db = store.db(name)

    def get(self, key, txn=None):
        if txn is None:
            with self.store.read() as txn:
                raw = txn.get(key, db=self.db)
        else:
            raw = txn.get(key, db=self.db)
        return json.loads(raw) if raw is not None else None

    def put(self, key, doc, txn=None):
        if txn is None:
            self.store.write(lambda t: t.put(key, dumps(doc), db=self.db))
        else:
            txn.put(key, dumps(doc), db=self.db)

    def delete(self, key, txn=None):
        if txn is None:
            self.store.write(lambda t: t.delete(key, db=self.db))
        else:
            txn.delete(key, db=self.db)

    def items(self, txn=None, prefix=b""):
        """``[(key, doc)]`` in key order."""
        def scan(t):
            cursor = t.cursor(db=self.db)
            found = cursor.set_range(prefix) if prefix else cursor.first()
            out = []
            while found:
                key = cursor.key()
                if not key.startswith(prefix):
                    break
                out.append((key, json.loads(cursor.value())))
                found = cursor.next()
            return out
        if txn is not None:
            return scan(txn)
        with self.store.read() as t:
            return scan(t)

    def values(self, txn=None):
        return [doc for _, doc in self.items(txn)]


class Meta:
    """Small named values of the agent (``agent_meta``)."""

    def __init__(self, store):
        self.records = Records(store, "agent_meta")

    def get(self, name, default=None, txn=None):
        doc = self.records.get(name.encode(), txn)
        return default if doc is None else doc

    def set(self, name, value, txn=None):
        self.records.put(name.encode(), value, txn)

    def next_id(self, name, txn):
        """A counter that only goes up (inside the write transaction ``txn``)."""
        value = self.get(name, 0, txn) + 1
        self.set(name, value, txn)
        return value
