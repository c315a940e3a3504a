"""The agent's wallet (DESIGN §7): SSP and iot_coin balances, and transactions signed, submitted,
tracked and re-submitted until they are irreversible.

``send`` only queues a payload in the durable outbox; ``step`` does the work, and is called again
and again by the agent's worker:

- a record with a transaction is looked up on the chain first: committed at or below the last
  irreversible block, it is ``final`` (``on_final(txn, record)`` runs in the same LMDB write);
  committed above it, it waits; unknown to the node (dropped, or never delivered before a
  crash), its same bytes are submitted again;
- a queued record is signed with the next nonce (the node's ``next_nonce``, which counts its
  pending transactions, then one more per record signed in the same step) and the minimum fee
  for its size and gas, kept in LMDB, and only then submitted; records are signed in the order
  they were decided in (a record waiting to be signed again holds back the later ones);
- refusals: ``bad_nonce`` re-signs with a fresh nonce (another transaction took it);
  ``fee_too_low``/``mempool_full`` double the fee (at most 16×) and re-sign; ``insufficient_
  balance`` and an unreachable node wait with backoff; any other reason fails the record for good
  (``on_final`` sees it, status ``failed``).

Nothing is ever signed twice for one nonce unless the first signature is known not to be on the
chain, so a payload is never executed twice.
"""

import time

from chain.tx import Call, Deploy, Transfer, Tx
from contracts.values import encode_value
from edge.agent.chain_port import ChainRefused, ChainUnavailable, from_json_value
from edge.agent.outbox import FAILED, FINAL, PENDING, QUEUED, SIGNED, Outbox

MAX_BUMP = 4                     # the fee doubles at most this many times
PROBE_MS = 1000                  # while the chain is unreachable, look for it this often
UNREACHABLE = "chain unreachable"
RETRY_NOW = ("bad_nonce",)
BUMP = ("fee_too_low", "mempool_full")
WAIT = ("insufficient_balance",)
ALREADY = ("duplicate",)


def now_ms():
    return time.time_ns() // 1_000_000


def payload_of(doc):
    """The chain.tx payload of an outbox payload document."""
    kind = doc["type"]
    if kind == "call":
        return Call(bytes.fromhex(doc["contract"]), doc["method"],
                    encode_value(from_json_value(doc["args"])), doc.get("value", 0),
                    doc["gas_limit"])
    if kind == "deploy":
        return Deploy(doc["code"].encode(), encode_value(from_json_value(doc["args"])),
                      doc["gas_limit"])
    if kind == "transfer":
        return Transfer(bytes.fromhex(doc["to"]), doc["amount"], bytes.fromhex(doc.get("memo", "")))
    raise ValueError(f"unknown payload type {kind!r}")


class Wallet:
    """One signer's transactions through one chain port."""

    def __init__(self, store, signer, chain, log=print, on_final=None):
        self.store, self.signer, self.chain, self.log = store, signer, chain, log
        self.outbox = Outbox(store)
        self.on_final = on_final
        self._status = None     # the chain's last status (chain id, params, lib_height)
        self._probe_at = 0

    # -- what the agent asks -------------------------------------------------------------------

    def send(self, payload, label, key=None, txn=None):
        """Queue ``payload`` (an outbox payload document); returns the record id. Nothing
        reaches the network until ``step``."""
        return self.outbox.add(payload, label, key, now_ms(), txn)

    def balance(self):
        return int(self.chain.account(self.signer.address)["balance"])

    def token_balance(self, token):
        return self.chain.query(token, "balance_of", self.signer.address)

    def status(self):
        """The chain's status, fetched now (ChainUnavailable when nobody answers)."""
        self._status = self.chain.status()
        return self._status

    # -- the work ------------------------------------------------------------------------------

    def step(self, now=None):
        """Track, sign and submit what is due; returns the number of records that moved.
        Never raises for an unreachable chain: records wait with backoff."""
        now = now_ms() if now is None else now
        waiting = self.outbox.open()
        records = [r for r in waiting if r["next_ms"] <= now]
        if not records:
            records = self._back_online(waiting, now)
        if not records:
            return 0
        try:
            status = self.status()
            moved, next_nonce, waiting = 0, None, False
            for record in records:
                if record["tx"] is not None:
                    moved += self._track(record, status, now)
                elif not waiting:      # nonces follow the order records were decided in
                    if next_nonce is None:
                        next_nonce = self.chain.account(self.signer.address)["next_nonce"]
                    moved += self._sign_and_submit(record, status, next_nonce, now)
                    if record["tx"] is not None and record["tx"]["nonce"] == next_nonce:
                        next_nonce += 1
                waiting = waiting or record["status"] == QUEUED
            return moved
        except ChainUnavailable as exc:
            self._delay_all(records, now, f"{UNREACHABLE}: {exc}")
            return 0

    def _back_online(self, waiting, now):
        """Records that wait only because the chain was unreachable are due again the moment it
        answers (probed at most once a second): the queue drains when the chain returns."""
        held = [r for r in waiting if r["error"].startswith(UNREACHABLE)]
        if not held or now < self._probe_at:
            return []
        self._probe_at = now + PROBE_MS
        try:
            self.status()
        except ChainUnavailable:
            return []
        return held

    def _delay_all(self, records, now, error):
        def work(txn):
            for record in records:
                fresh = self.outbox.get(record["id"], txn)
                if fresh["status"] in (QUEUED, SIGNED, PENDING) and fresh["next_ms"] <= now:
                    self.outbox.put(self.outbox.delay(fresh, now, error), txn)
        self.store.write(work)

    def _track(self, record, status, now):
        found = self.chain.tx(bytes.fromhex(record["tx"]["id"]))
        if found is None:                    # dropped, or never delivered: send the same bytes
            return self._submit(record, status, now)
        if found["status"] != "committed":
            if record["status"] != PENDING:
                record.update(status=PENDING, error="")
                self.outbox.put(record)
                return 1
            return 0
        record["height"] = found["height"]
        if found["height"] > status["lib_height"]:
            return 0
        receipt = found["receipt"]
        record.update(status=FINAL, receipt=receipt)
        self._finish(record)
        self.log(f"wallet: {record['label']} final in block {found['height']}"
                 + (f" (call failed: {receipt.get('error')})" if receipt["status"] else ""))
        return 1

    def _finish(self, record):
        def work(txn):
            self.outbox.put(record, txn)
            if self.on_final is not None:
                self.on_final(txn, record)
        self.store.write(work)

    def _sign_and_submit(self, record, status, nonce, now):
        tx = self._sign(record, status, nonce)
        record.update(status=SIGNED, tx={"id": tx.id.hex(), "raw": tx.raw.hex(), "nonce": nonce,
                                         "fee": tx.fee})
        self.outbox.put(record)                  # durable before anything leaves
        return self._submit(record, status, now)

    def _sign(self, record, status, nonce):
        payload = payload_of(record["payload"])
        params = status["params"]
        base = int(params["min_fee"]) + int(params.get("gas_price", "0")) * getattr(
            payload, "gas_limit", 0)
        per_byte = int(params["fee_per_byte"])
        fee = base
        while True:
            tx = Tx(status["chain_id"], self.signer.pubkey, nonce, fee, payload)
            floor = base + per_byte * len(tx.raw)
            if fee >= floor:
                break
            fee = floor
        fee <<= record["bump"]
        return Tx(status["chain_id"], self.signer.pubkey, nonce, fee, payload).signed_by(
            self.signer)

    def _submit(self, record, status, now):
        result = self.chain.submit(bytes.fromhex(record["tx"]["raw"]))
        reason = None if result["accepted"] else result["reason"]
        if reason is None or reason in ALREADY:
            record.update(status=PENDING, error="")
        elif reason in RETRY_NOW:
            record.update(status=QUEUED, tx=None, error=f"{reason}: {result['detail']}")
        elif reason in BUMP:
            record.update(status=QUEUED, tx=None, bump=min(MAX_BUMP, record["bump"] + 1))
            self.outbox.delay(record, now, f"{reason}: {result['detail']}")
        elif reason in WAIT:
            self.outbox.delay(record, now, f"{reason}: {result['detail']}")
        else:
            record.update(status=FAILED, error=f"{reason}: {result['detail']}")
            self._finish(record)
            self.log(f"wallet: {record['label']} refused for good: {record['error']}")
            return 1
        self.outbox.put(record)
        return 1

    # -- views ---------------------------------------------------------------------------------

    def records(self):
        return self.outbox.all()

    def pending_count(self):
        return len(self.outbox.open())


__all__ = ["Wallet", "payload_of", "ChainRefused", "ChainUnavailable", "FINAL", "FAILED"]
