"""The gateway's datasets in LMDB (docs/protocol.md §18.2): the datasets its owner offers, their
records (the data frames of each dataset's device, copied from the frame log, kept
``[agent] data_retention_days``), and the deliveries made from them.

    data_sets        dataset id (text) -> JSON: device, owner, cursor (the last device seq copied),
                     records, first_ms, last_ms, created_ms
    data_records     H(dataset id)[:8] || u64be(device timestamp ms) || u64be(seq) -> signed frame
    data_deliveries  purchase id (16 bytes) -> JSON: dataset, buyer, hash, records, size, state
    data_payloads    purchase id -> the sealed envelope (§18.3) the hash commits to

Records are kept per dataset, apart from the frame log (which retention prunes after days), in
timestamp order, so a purchased range is one cursor walk.
"""

import struct

from chain.crypto import hash_of
from edge.agent.records import Records

KEY = struct.Struct(">QQ")
DATA_DBS = ("data_sets", "data_records", "data_deliveries", "data_payloads")


def dataset_key(dataset_id):
    return hash_of(b"ss/dataset", dataset_id.encode())[:8]


class DataStore:
    """Datasets, records, deliveries and payloads of one gateway."""

    def __init__(self, store):
        self.store = store
        self.sets = Records(store, "data_sets")
        self.deliveries = Records(store, "data_deliveries")
        self.records_db = store.db("data_records")
        self.payloads_db = store.db("data_payloads")

    def dataset(self, dataset_id, txn=None):
        return self.sets.get(dataset_id.encode(), txn)

    def datasets(self):
        return self.sets.values()

    def put_dataset(self, doc, txn=None):
        self.sets.put(doc["id"].encode(), doc, txn)

    def add_records(self, txn, doc, frames):
        """Keep ``frames`` (DeviceFrame, ascending seq) of the dataset ``doc`` and move its
        cursor past them, inside ``txn``."""
        prefix = dataset_key(doc["id"])
        for frame in frames:
            if frame.kind == "data":
                txn.put(prefix + KEY.pack(frame.timestamp_ms, frame.seq), frame.raw,
                        db=self.records_db)
                doc["records"] += 1
                doc["first_ms"] = min(doc["first_ms"] or frame.timestamp_ms, frame.timestamp_ms)
                doc["last_ms"] = max(doc["last_ms"], frame.timestamp_ms)
        if frames:
            doc["cursor"] = frames[-1].seq
        self.put_dataset(doc, txn)

    def range(self, dataset_id, from_ms, to_ms, limit):
        """Signed frames of a dataset with a timestamp in ``[from_ms, to_ms)``, oldest first,
        at most ``limit``."""
        prefix = dataset_key(dataset_id)
        end, out = prefix + KEY.pack(to_ms, 0), []
        with self.store.read() as txn:
            cursor = txn.cursor(db=self.records_db)
            if not cursor.set_range(prefix + KEY.pack(from_ms, 0)):
                return out
            for key, value in cursor.iternext():
                if key >= end or len(out) >= limit:
                    break
                out.append(value)
        return out

    def prune(self, dataset_id, before_ms, limit=10_000):
        """Delete, oldest first, at most ``limit`` records of a dataset with a device timestamp
        before ``before_ms``; returns how many (one LMDB write)."""
        prefix = dataset_key(dataset_id)
        end = prefix + KEY.pack(before_ms, 0)

        def work(txn):
            cursor, deleted = txn.cursor(db=self.records_db), 0
            cursor.set_range(prefix)
            while deleted < limit:
                key = cursor.key()            # b"" past the last record
                if not key or key >= end:
                    break
                cursor.delete()               # moves to the next record
                deleted += 1
            if deleted:
                doc = self.dataset(dataset_id, txn)
                doc["records"] -= deleted
                self.put_dataset(doc, txn)
            return deleted
        return self.store.write(work)

    def delivery(self, purchase_id, txn=None):
        return self.deliveries.get(purchase_id, txn)

    def put_delivery(self, purchase_id, doc, txn):
        self.deliveries.put(purchase_id, doc, txn)

    def put_payload(self, purchase_id, envelope, txn):
        txn.put(purchase_id, envelope, db=self.payloads_db)

    def payload(self, purchase_id):
        with self.store.read() as txn:
            raw = txn.get(purchase_id, db=self.payloads_db)
        return bytes(raw) if raw is not None else None
