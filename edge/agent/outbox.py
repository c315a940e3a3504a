"""The wallet's durable outbox (``agent_txs``): every transaction the agent means to send, from
the moment it is decided until it is irreversible, survives a crash in LMDB.

A record moves ``queued`` (an intent, not signed yet) → ``signed`` (a nonce and fee chosen, bytes
kept, maybe sent) → ``pending`` (the node accepted it) → ``final`` (committed at or below the
last irreversible block) or ``failed`` (refused for good). A record whose chain is unreachable
waits with exponential backoff (1 s, 2 s, 4 s ... at most 60 s). A ``key`` names what a record
is for (``redeem:<channel>``): adding a record with the key of one still ``queued`` replaces it,
so a better voucher supersedes a worse one that never left.

Payloads are JSON: ``{"type": "call", "contract": hex, "method", "args": [values], "value",
"gas_limit"}``, ``{"type": "deploy", "code": text, "args", "gas_limit"}``, ``{"type":
"transfer", "to": hex, "amount", "memo": hex}``, ``{"type": "register_agent", "name",
"endpoint"}``; contract values use the API's JSON form (``{"bytes": hex}``).
"""

from edge.agent.records import U64, Meta, Records

QUEUED, SIGNED, PENDING, FINAL, FAILED = "queued", "signed", "pending", "final", "failed"
OPEN_STATES = (QUEUED, SIGNED, PENDING)
BACKOFF_BASE_MS = 1000
BACKOFF_MAX_MS = 60_000


def backoff_ms(attempts):
    """Delay before attempt ``attempts + 1``: 1 s doubling up to 60 s."""
    return min(BACKOFF_MAX_MS, BACKOFF_BASE_MS << max(0, min(attempts - 1, 16)))


class Outbox:
    """Records of ``agent_txs`` in id order (the order they were decided in)."""

    def __init__(self, store):
        self.store = store
        self.records = Records(store, "agent_txs")
        self.meta = Meta(store)

    def add(self, payload, label, key=None, now_ms=0, txn=None):
        """Queue a payload; returns its record id. Replaces a queued record of the same ``key``
        (keeping its id and place)."""
        def work(t):
            for record in self.open(t):
                if key is not None and record["key"] == key and record["status"] == QUEUED:
                    record.update(payload=payload, label=label)
                    self.put(record, t)
                    return record["id"]
            record = {"id": self.meta.next_id("outbox", t), "key": key, "label": label,
                      "payload": payload, "status": QUEUED, "attempts": 0, "next_ms": now_ms,
                      "created_ms": now_ms, "tx": None, "bump": 0, "height": None,
                      "receipt": None, "error": ""}
            self.put(record, t)
            return record["id"]
        return work(txn) if txn is not None else self.store.write(work)

    def put(self, record, txn=None):
        self.records.put(U64.pack(record["id"]), record, txn)

    def get(self, record_id, txn=None):
        return self.records.get(U64.pack(record_id), txn)

    def open(self, txn=None):
        """Records not final nor failed, oldest first."""
        return [r for r in self.records.values(txn) if r["status"] in OPEN_STATES]

    def all(self, txn=None):
        return self.records.values(txn)

    def by_key(self, key, txn=None):
        """The newest record of ``key``, or None."""
        found = [r for r in self.records.values(txn) if r["key"] == key]
        return found[-1] if found else None

    def delay(self, record, now_ms, error):
        """Count a failed attempt and schedule the next one."""
        record["attempts"] += 1
        record["next_ms"] = now_ms + backoff_ms(record["attempts"])
        record["error"] = error
        return record

    def prune(self, before_ms, txn):
        """Forget final and failed records created before ``before_ms``."""
        for key, record in self.records.items(txn):
            if record["status"] in (FINAL, FAILED) and record["created_ms"] < before_ms:
                txn.delete(key, db=self.records.db)
