"""Acknowledged transactions the mempool let go, and why (docs/api.md ``GET /v1/txs/{id}``).

A transaction the API accepted is pending, then committed, unless the mempool drops it: evicted
by a higher-paying one when full, or invalid once the committed state made it impossible (its
nonce used by another transaction, its sender no longer able to pay, a failure when a block was
built). Each drop is written in the same LMDB transaction that removes the transaction from the
durable mempool, so a crash never loses the record. The newest ``LIMIT`` drops are kept.

    dropped        tx id -> u8 status || u64be height || reason || 0x00 || detail (UTF-8)
    dropped_order  u64be drop number -> tx id (the oldest is pruned first)
"""

import struct

EVICTED, INVALID = "evicted", "invalid"
STATUSES = (EVICTED, INVALID)
LIMIT = 100_000
_HEAD = struct.Struct(">BQ")
_U64 = struct.Struct(">Q")


class DroppedTxs:
    """The drop records in a Store."""

    def __init__(self, store, limit=LIMIT):
        self.store, self.limit = store, limit
        self.db = store.db("dropped")
        self.order = store.db("dropped_order")

    def record(self, txn, drops, height):
        """Inside ``txn``: record ``drops`` ``[(tx, status, TxRejected)]`` at ``height``."""
        cursor = txn.cursor(db=self.order)
        number = _U64.unpack(cursor.key())[0] + 1 if cursor.last() else 0
        for tx, status, exc in drops:
            value = (_HEAD.pack(STATUSES.index(status), height) + exc.reason.value.encode()
                     + b"\0" + exc.detail.encode())
            txn.put(tx.id, value, db=self.db)
            txn.put(_U64.pack(number), tx.id, db=self.order)
            number += 1
        extra = txn.stat(self.order)["entries"] - self.limit
        while extra > 0 and cursor.first():
            txn.delete(cursor.value(), db=self.db)
            cursor.delete()
            extra -= 1

    def get(self, tx_id):
        """``{"status", "reason", "detail", "height"}`` of a dropped transaction, or None."""
        with self.store.read() as txn:
            value = txn.get(tx_id, db=self.db)
        if value is None:
            return None
        status, height = _HEAD.unpack_from(value)
        reason, _, detail = value[_HEAD.size:].partition(b"\0")
        return {"status": STATUSES[status], "reason": reason.decode(), "detail": detail.decode(),
                "height": height}
