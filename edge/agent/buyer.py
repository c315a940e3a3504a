"""The buyer's side of the market (docs/protocol.md §17): order a service, open the payment
channel with a deposit, then pay for what the seller's device signed that it delivered, one
cumulative voucher at a time, and get back what was not used.

The buyer trusts the seller's statements only as far as the device's own signed frames prove them
(the device's key comes with the trade, from the gateway's registry): it pays
``amount_for(units it verified)``, never more than the deposit, and checks storage proofs and
compute results itself. Every voucher is in LMDB before it is sent, and its nonce only goes up,
so a crash never signs two different vouchers for one nonce; what the seller has not acknowledged
is sent again.

A session (``agent_purchases``, keyed by its order id) moves ``ordered`` → ``resting`` (no
seller's ask meets the price yet) → ``matched`` (a trade, checked) → ``opening`` (the open
transaction is on its way) → ``open`` → ``active`` (vouchers flow) → ``ending`` (a stop was asked) → ``closed`` (the seller closed the channel: paid and
refunded). If the seller goes silent or never closes, the buyer asks to close on chain and takes
its deposit back after the dispute window (``refunding`` → ``refunded``).
"""

import json
import os
import time

from chain.address import address_from_pubkey
from chain.crypto import TAG_FRAME, hash_of, verify
from contracts.vouchers import Voucher
from edge import _fast
from edge.agent import channels, messages
from edge.agent.chain_port import ChainRefused, ChainUnavailable
from edge.agent.metering import KIND_NAMES
from edge.agent.records import Records
from edge.agent.services import SERVICE_TYPES, amount_for, service_type
from edge.agent.wallet import Wallet

LIVE = ("ordered", "resting", "matched", "opening", "open", "active", "ending", "refunding")
TAG_PROOF, TAG_JOB = b"ss/proof", b"ss/job"     # docs/protocol.md §17.4


def now_ms():
    return time.time_ns() // 1_000_000


class BuyerConfig:
    def __init__(self, silence_intervals=6, watch_ms=2_000, resend_ms=None):
        self.silence_intervals, self.watch_ms = silence_intervals, watch_ms
        self.resend_ms = resend_ms


class Buyer:
    """A buyer's agent over its own wallet. Not thread-safe: one worker calls it."""

    def __init__(self, store, signer, chain, chain_id, client_id, config=None, log=print):
        self.store, self.signer, self.chain, self.chain_id = store, signer, chain, chain_id
        self.client_id, self.config, self.log = client_id, config or BuyerConfig(), log
        self.wallet = Wallet(store, signer, chain, log, on_final=self._on_final)
        self.db = Records(store, "agent_purchases")
        self.sessions = {}      # order id hex -> record, live ones
        self.outgoing = []
        self._dirty = {}            # sessions changed since the last flush
        self._checked_contracts = set()
        self._next_watch = 0
        self.stats = {"vouchers": 0, "statements": 0}

    def start(self):
        for doc in self.db.values():
            if doc["state"] in LIVE:
                self.sessions[doc["order"]] = doc

    # -- what the user asks --------------------------------------------------------------------

    def buy(self, service, max_price, quantity, device=None, deposit_cap=None, stop_units=None,
            task=None):
        """Order a service; returns the order id. The session then runs by itself (``tick``)."""
        stype = service_type(service)
        if stype.name in ("storage.space", "compute.job") and task is None:
            task = os.urandom(64 if stype.name == "storage.space" else 32).hex()
        order = os.urandom(8).hex()
        session = {"role": "buyer", "order": order, "id": None, "service": service,
                   "device": device, "max_price": max_price, "quantity": quantity,
                   "deposit_cap": deposit_cap, "stop_units": stop_units, "task": task,
                   "state": "ordered", "created_ms": now_ms(), "sent_ms": 0, "seller": None,
                   "terms": None, "voucher": None, "acked": None, "units": 0, "upto": 0,
                   "dev_session": None, "result": None, "final": False, "statement_ms": 0,
                   "heard_ms": now_ms(), "challenges": [], "reason": None, "closed": None,
                   "stop_sent": False, "final_ms": None}
        self._save(session)
        self.sessions[order] = session
        self._send_order(session)
        return order

    def stop(self, order):
        """End a session: the seller stops the device and closes with the final voucher."""
        s = self.sessions.get(order)
        if s is None:
            raise ValueError(f"no live session of order {order}")
        if s["state"] in ("ordered", "resting", "matched"):
            s.update(state="closed", reason="stopped before the channel opened")
            self._finish(s)
        elif s["state"] in ("opening", "open", "active"):
            s["state"] = "ending"
            self._send_stop(s)
            self._save(s)
        return s

    # -- messages ------------------------------------------------------------------------------

    def _send(self, what, body):
        self.outgoing.append((("buyer", self.client_id, what),
                              messages.seal(self.signer, self.chain_id, body)))

    def _send_order(self, s):
        s["sent_ms"] = now_ms()
        self._send("order", {"type": "order", "order": s["order"], "service": s["service"],
                             "device": s["device"], "max_price": s["max_price"],
                             "quantity": s["quantity"]})

    def _send_stop(self, s):
        s["stop_sent"] = True
        self._send("stop", {"type": "stop", "session": s["id"]})

    def handle(self, raw):
        """A message from a seller (our reply topics, or an API answer)."""
        try:
            pubkey, body = messages.open_envelope(raw, self.chain_id)
        except messages.MessageError as exc:
            self.log(f"buyer: refused a message: {exc}")
            return
        if body["type"] == "quote":
            return
        s = self._session_for(body)
        if s is None:
            return
        if s["seller"] is not None and s["seller"] != pubkey.hex():
            self.log(f"buyer: a message for {s['order']} from another seller: ignored")
            return
        s["heard_ms"] = now_ms()
        handler = {"trade": self._on_trade, "resting": self._on_resting,
                   "statement": self._on_statement, "ack": self._on_ack,
                   "state": self._on_state, "error": self._on_error}[body["type"]]
        handler(s, pubkey, body)

    def _session_for(self, body):
        if "order" in body and body["order"] in self.sessions:
            return self.sessions[body["order"]]
        ref = body.get("session") or body.get("ref")
        for s in self.sessions.values():
            if ref is not None and ref in (s["id"], s["order"]):
                return s
        return None

    def _on_resting(self, s, pubkey, body):
        if s["state"] == "ordered":
            s["state"] = "resting"
            self._save(s)

    def _on_error(self, s, pubkey, body):
        self.log(f"buyer: {s['order']}: seller says {body['code']}: {body['message']}")
        if s["state"] in ("ordered", "resting") and body["code"] not in ("not_ready",):
            s.update(state="failed", reason=f"{body['code']}: {body['message']}")
            self._finish(s)

    def _on_trade(self, s, pubkey, t):
        if s["state"] not in ("ordered", "resting"):
            return
        refusal = self._trade_refusal(s, pubkey, t)
        if refusal:
            s.update(state="failed", reason=refusal)
            self.log(f"buyer: trade for {s['order']} refused: {refusal}")
            self._finish(s)
            return
        s.update(state="matched", id=t["session"], seller=pubkey.hex(), terms=t)
        self._save(s)

    def _open(self, s):
        """matched -> opening: the contract is genuine, the open transaction is queued (with an
        expiry counted from the chain's height now)."""
        t = s["terms"]
        contract = bytes.fromhex(t["contract"])
        if not self._genuine_contract(contract):
            s.update(state="failed", reason="the channel contract is not the system "
                                            "payment_channel")
            self._finish(s)
            return
        expiry = self.wallet.status()["height"] + t["expiry_blocks"]
        s.update(state="opening", expiry=expiry)
        if self.wallet.outbox.by_key(f"open:{t['session']}") is not None:   # after a crash
            return
        self.wallet.send(channels.open_payload(
            contract, bytes.fromhex(t["session"]), bytes.fromhex(t["payee"]), self.signer.pubkey,
            expiry, t["dispute_ms"], t["deposit"]),
            f"open channel {t['session']} with {t['deposit']}", key=f"open:{t['session']}")
        self._save(s)
        self.log(f"buyer: trade {s['service']} at {t['price']} per "
                 f"{SERVICE_TYPES[t['service']].price_unit}: opening channel {t['session']} "
                 f"with {t['deposit']}")

    def _trade_refusal(self, s, pubkey, t):
        stype = SERVICE_TYPES.get(t["service"])
        if stype is None or t["service"] != s["service"]:
            return "the trade is for another service"
        if t["price"] > s["max_price"] or t["quantity"] > s["quantity"]:
            return "the trade's price or quantity is above the order's"
        if (t["per"], t["min_units"]) != (stype.per, stype.min_units):
            return "the trade's units differ from the service type's"
        if t["deposit"] != amount_for(t["quantity"], t["price"], t["per"], t["min_units"]):
            return "the deposit asked is not the price of the quantity"
        if s["deposit_cap"] is not None and t["deposit"] > s["deposit_cap"]:
            return f"the deposit {t['deposit']} is above the cap {s['deposit_cap']}"
        if s["device"] is not None and t["device"] != s["device"]:
            return "the trade is for another device"
        if bytes.fromhex(t["payee"]) != address_from_pubkey(pubkey):
            return "the payee is not the seller that signed the trade"
        return None

    def _genuine_contract(self, contract):
        if contract in self._checked_contracts:
            return True
        info = self.chain.contract(contract)
        if info is None or info["code_hash"] != channels.CODE_HASH.hex():
            return False
        self._checked_contracts.add(contract)
        return True

    def _on_state(self, s, pubkey, body):
        if body["reason"] and body["state"] in ("stopping", "ended", "settled", "expired"):
            s["reason"] = s["reason"] or body["reason"]
        if body["state"] == "settled" and s["state"] in ("active", "ending"):
            self._next_watch = 0          # look at the chain soon

    def _on_ack(self, s, pubkey, body):
        if body["accepted"]:
            s["acked"] = {"amount": body["amount"], "nonce": body["nonce"]}
        else:
            self.log(f"buyer: voucher for {s['id']} refused: {body['reason']}")
            held = s["voucher"]
            if held is not None and body["nonce"] >= held["nonce"]:
                s["acked"] = {"amount": body["amount"], "nonce": body["nonce"]}
        self._save(s)

    # -- statements and vouchers ---------------------------------------------------------------

    def _on_statement(self, s, pubkey, body):
        if s["state"] not in ("active", "ending") or s["terms"] is None:
            return
        self.stats["statements"] += 1
        s["statement_ms"] = now_ms()
        self._verify_frames(s, body["frames"])
        t = s["terms"]
        payable = min(amount_for(s["units"], t["price"], t["per"], t["min_units"]),
                      body["amount"], t["deposit"])
        if self._proofs_overdue(s):
            s["reason"] = "a proof of storage is missing or wrong: not paying further"
            if not s["stop_sent"]:
                s["state"] = "ending"
                self._send_stop(s)
            payable = min(payable, (s["voucher"] or {"amount": 0})["amount"])
        if body["final"] and s["units"] >= body["units"]:
            s["final"] = True
        held = s["voucher"]
        if held is None or payable > held["amount"]:
            self._pay(s, payable)
        elif not self._acked(s):
            self._send_voucher(s)
        if s["stop_units"] is not None and s["units"] >= s["stop_units"] and not s["stop_sent"]:
            s["state"] = "ending"
            self._send_stop(s)
        self._save(s)

    @staticmethod
    def _acked(s):
        v = s["voucher"]
        return v is None or s["acked"] == {"amount": v["amount"], "nonce": v["nonce"]}

    def _pay(self, s, amount):
        """Sign the next voucher for ``amount`` (kept in LMDB before it is sent)."""
        held = s["voucher"]
        t = s["terms"]
        nonce = (held["nonce"] if held else 0) + 1
        voucher = Voucher(self.chain_id, bytes.fromhex(t["contract"]), bytes.fromhex(t["payee"]),
                          bytes.fromhex(s["id"]), amount, nonce)
        signature = self.signer.sign(self.chain_id, voucher.digest())
        s["voucher"] = {"amount": amount, "nonce": nonce, "signature": signature.hex()}
        if t["service"] == "storage.space" and s["state"] == "active":
            s["challenges"] = (s["challenges"] + [{"c": os.urandom(32).hex(), "at": now_ms(),
                                                    "ok": False}])[-16:]
        self._save(s)
        self.stats["vouchers"] += 1
        self._send_voucher(s)

    def _send_voucher(self, s):
        t, v = s["terms"], s["voucher"]
        challenge = None
        if t["service"] == "storage.space" and s["challenges"]:
            challenge = s["challenges"][-1]["c"]
        s["sent_ms"] = now_ms()
        self._send("voucher", {"type": "voucher", "session": s["id"], "channel": s["id"],
                               "contract": t["contract"], "payee": t["payee"],
                               "amount": v["amount"], "nonce": v["nonce"],
                               "signature": v["signature"], "upto": s["upto"],
                               "challenge": challenge})

    def _verify_frames(self, s, frames):
        """Raise ``units`` to what the device's own signed frames prove."""
        t = s["terms"]
        stype = SERVICE_TYPES[t["service"]]
        device, pubkey = bytes.fromhex(t["device"]), bytes.fromhex(t["device_pubkey"])
        for raw_hex in frames:
            frame = self._frame(bytes.fromhex(raw_hex), device, pubkey)
            if frame is None or frame["seq"] <= max(t["start_after"], 0):
                continue
            if stype.frames is not None:
                if frame["kind"] == stype.frames and frame["seq"] > s["upto"]:
                    s["units"] += 1
                    s["upto"] = frame["seq"]
                continue
            self._apply_counter(s, stype, frame)
            s["upto"] = max(s["upto"], frame["seq"])

    def _apply_counter(self, s, stype, frame):
        doc = frame["doc"]
        if frame["kind"] == "event" and doc.get("event") == stype.open_event:
            if doc.get("ref") == s["id"]:
                s["dev_session"] = doc["session"]
            return
        if s["dev_session"] is None or doc.get("session") != s["dev_session"]:
            return
        if doc.get("event") == "proof":
            self._check_proof(s, doc)
            return
        quantity = doc.get(stype.quantity)
        if not isinstance(quantity, int) or quantity <= s["units"]:
            return
        if stype.name == "compute.job" and not self._result_holds(s, quantity, doc.get("result")):
            return
        s["units"] = quantity

    def _frame(self, raw, device, pubkey):
        try:
            _, kind, device_id, seq, ts, payload, signature = _fast.decode_frame(raw)
            doc = json.loads(payload)
        except (ValueError, KeyError):
            return None
        digest = hash_of(TAG_FRAME, raw[:-64])
        if device_id != device or not verify(pubkey, self.chain_id, digest, signature):
            return None
        return {"kind": KIND_NAMES[kind], "seq": seq, "doc": doc}

    def _check_proof(self, s, doc):
        data = bytes.fromhex(s["task"])
        for challenge in s["challenges"]:
            if challenge["c"] == doc.get("challenge"):
                expected = hash_of(TAG_PROOF, bytes.fromhex(challenge["c"]) + data).hex()
                challenge["ok"] = doc.get("proof") == expected

    def _proofs_overdue(self, s):
        """A storage challenge older than two intervals without a valid proof."""
        if s["terms"]["service"] != "storage.space":
            return False
        late = now_ms() - 2 * s["terms"]["interval_ms"] - 2_000
        return any(not c["ok"] and c["at"] < late for c in s["challenges"])

    def _result_holds(self, s, jobs, result):
        """Compute jobs: result_0 = input, result_i = H("ss/job", result_{i-1} || input)."""
        task = bytes.fromhex(s["task"])
        value = task
        for _ in range(jobs):
            value = hash_of(TAG_JOB, value + task)
        return result == value.hex()

    # -- the clock -----------------------------------------------------------------------------

    def tick(self, now=None):
        now = now_ms() if now is None else now
        for s in list(self.sessions.values()):
            self._tick_session(s, now)
        if now >= self._next_watch:
            self._next_watch = now + self.config.watch_ms
            self._watch(now)
        self.wallet.step(now)

    def _interval(self, s):
        return s["terms"]["interval_ms"] if s["terms"] else 10_000

    def _tick_session(self, s, now):
        resend = self.config.resend_ms or self._interval(s)
        state = s["state"]
        if state == "ordered" and now - s["sent_ms"] >= resend:
            self._send_order(s)
        elif state == "matched":
            try:
                self._open(s)
            except (ChainUnavailable, ChainRefused):
                pass
        elif state == "open":
            self._send("channel", {"type": "channel", "session": s["id"], "tx": s["open_tx"],
                                   "task": s["task"]})
            s["state"] = "active"
            self._pay(s, amount_for(0, s["terms"]["price"], s["terms"]["per"],
                                    s["terms"]["min_units"]))
            self._save(s)
        elif state in ("active", "ending"):
            if not self._acked(s) and now - s["sent_ms"] >= resend:
                self._send("channel", {"type": "channel", "session": s["id"],
                                       "tx": s["open_tx"], "task": s["task"]})
                self._send_voucher(s)
                if state == "ending":
                    self._send_stop(s)
            if now - s["heard_ms"] >= self.config.silence_intervals * self._interval(s):
                self._give_up(s, "the seller went silent")

    def _give_up(self, s, reason):
        """Ask to close on chain; the deposit comes back after the dispute window."""
        if s["state"] == "refunding":
            return
        s.update(state="refunding", reason=s["reason"] or reason)
        t = s["terms"]
        self.wallet.send(channels.request_close_payload(bytes.fromhex(t["contract"]),
                                                        bytes.fromhex(s["id"])),
                         f"request close of {s['id']}", key=f"request_close:{s['id']}")
        self._save(s)
        self.log(f"buyer: session {s['id']}: {reason}; asking to close on chain")

    def _watch(self, now):
        """Channels closed by the seller end their sessions; a requested close is refunded once
        its dispute window is over, an expired channel at once."""
        try:
            status = None
            for s in list(self.sessions.values()):
                if s["state"] not in ("active", "ending", "refunding") or s["terms"] is None:
                    continue
                channel = channels.read_channel(self.chain, bytes.fromhex(s["terms"]["contract"]),
                                                bytes.fromhex(s["id"]))
                if channel is None:
                    continue
                if not channel["open"]:
                    refund = self.wallet.outbox.by_key(f"refund:{s['id']}")
                    if refund is not None and refund["status"] not in ("final", "failed"):
                        continue        # our refund's finality decides (``_on_final``)
                    ours = refund is not None and refund["status"] == "final" and \
                        refund["receipt"]["status"] == 0
                    s.update(state="refunded" if ours else "closed",
                             closed={"paid": channel["paid"],
                                     "refunded": channel["deposit"] - channel["paid"]})
                    self._finish(s)
                    self.log(f"buyer: session {s['id']} closed: paid {channel['paid']}, "
                             f"refunded {channel['deposit'] - channel['paid']}")
                    continue
                status = status or self.wallet.status()
                self._maybe_refund(s, channel, status)
        except (ChainUnavailable, ChainRefused):
            return

    def _maybe_refund(self, s, channel, status):
        closing = channel.get("closing")
        due = status["height"] >= channel["expiry"] or (
            closing is not None and status["timestamp_ms"] >= closing)
        if s["state"] == "ending" and s["final"] and closing is None and \
                now_ms() - s["statement_ms"] > 3 * self._interval(s):
            self._give_up(s, "the seller did not close after the final voucher")
        if due and self.wallet.outbox.by_key(f"refund:{s['id']}") is None:
            s["state"] = "refunding"
            self.wallet.send(channels.refund_payload(bytes.fromhex(s["terms"]["contract"]),
                                                     bytes.fromhex(s["id"])),
                             f"refund {s['id']}", key=f"refund:{s['id']}")
            self._save(s)

    def _on_final(self, txn, record):
        kind, _, session_id = (record["key"] or "").partition(":")
        s = next((x for x in self.sessions.values() if x["id"] == session_id), None)
        if s is None:
            return
        ok = record["status"] == "final" and record["receipt"]["status"] == 0
        if kind == "open":
            if ok:
                s.update(state="open", open_tx=record["tx"]["id"])
            else:
                s.update(state="failed", reason=f"the channel did not open: "
                         f"{record['error'] or record['receipt'].get('error')}")
        elif kind == "refund" and ok:
            s.update(state="refunded", closed={"refunded": record["receipt"]["return"]})
        self.db.put(bytes.fromhex(s["order"]), s, txn)
        if s["state"] not in LIVE:
            self.sessions.pop(s["order"], None)

    # -- helpers -------------------------------------------------------------------------------

    def _save(self, s):
        """Mark a session changed: ``flush`` writes every changed one in one LMDB commit, and
        the runner flushes before it sends or acknowledges anything."""
        self._dirty[s["order"]] = s

    def flush(self):
        if self._dirty:
            dirty = self._dirty
            self.store.write(lambda txn: [self.db.put(bytes.fromhex(k), doc, txn)
                                          for k, doc in dirty.items()])
            self._dirty = {}

    def _finish(self, s):
        self._save(s)
        self.sessions.pop(s["order"], None)

    def session(self, order):
        self.flush()
        return self.sessions.get(order) or self.db.get(bytes.fromhex(order))

    def all_sessions(self):
        self.flush()
        return self.db.values()

    def take_outgoing(self):
        out, self.outgoing = self.outgoing, []
        return out
