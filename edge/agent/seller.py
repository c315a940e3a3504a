"""The seller's side of the market (docs/protocol.md §17): the gateway's agent quotes its devices'
services, matches buyers' orders, meters each session from committed device frames, checks every
voucher at once, and settles through the payment channel.

A session moves ``matched`` (a trade; the buyer opens the channel) → ``ready`` (the open
transaction is irreversible and the channel is the one agreed) → ``starting`` (the first valid
voucher came: the device is told to start; a parking gate opens) → ``active`` (the device
confirmed) → ``stopping`` (the buyer asked, its vouchers fell ``behind_intervals`` intervals
behind, or the deposit or quantity is used up: the device is told to stop) → ``ended`` (the device
reported the end) → ``closing`` (the close transaction is on its way) → ``settled`` (irreversible).
A session whose buyer never opens its channel ends ``expired``.

Every state change is one LMDB write; every message the seller sends is derived from that state,
so after a crash it is simply sent again, and every buyer message is idempotent.
"""

import json
import os
import time

from chain.address import encode_address
from chain.calls import contract_address
from edge.agent import channels, messages
from edge.agent.catalogue import Catalogue
from edge.agent.chain_port import ChainRefused, ChainUnavailable
from edge.agent.data_desk import DataDesk
from edge.agent.matching import BID, BookError
from edge.agent.metering import METERING_STATES, Cursors, FrameReader, apply_frame, \
    forget_paid_evidence
from edge.agent.records import Meta, Records
from edge.agent.services import SERVICE_TYPES, amount_for
from edge.agent.wallet import Wallet

OPEN_STATES = ("matched", "ready", "starting", "active", "stopping", "ended", "closing")
CHANNEL_STATES = ("ready", "starting", "active", "stopping", "ended", "closing")
DONE_STATES = ("settled", "expired")
MAX_STATEMENT_FRAMES = 64
METER_BATCH = 500           # frames of one device read per metering pass
IDLE_CURSOR_SAVE_S = 60     # how often the cursors of devices with nothing to meter are saved


def now_ms():
    return time.time_ns() // 1_000_000


class SellerConfig:
    """Timing and policy of the seller (``[agent]`` in config.toml)."""

    def __init__(self, interval_ms=10_000, settle_interval_ms=86_400_000, dispute_ms=3_600_000,
                 channel_blocks=7 * 86_400, behind_intervals=2, retention_ms=7 * 86_400_000,
                 auto_offer=True, watch_ms=5_000, open_timeout_ms=None, contract=None):
        self.interval_ms, self.settle_interval_ms = interval_ms, settle_interval_ms
        self.dispute_ms, self.channel_blocks = dispute_ms, channel_blocks
        self.behind_intervals, self.retention_ms = behind_intervals, retention_ms
        self.auto_offer, self.watch_ms = auto_offer, watch_ms
        self.open_timeout_ms = open_timeout_ms or max(60_000, 30 * interval_ms)
        self.contract = contract        # a channel contract to use (bytes), else deploy one


DEPLOY_KEY = "deploy:payment_channel"   # the outbox key of the channel contract's deploy
MAX_DEPLOYS = 3                          # failed deploys in a row before waiting for a restart


def _deploy_failed(record):
    """True when no deploy was ever queued or the newest one failed for good."""
    return record is None or record["status"] == "failed" or (
        record["status"] == "final" and record["receipt"]["status"] != 0)


class Seller:
    """The gateway's selling agent. Not thread-safe: one worker calls it (``runner``)."""

    def __init__(self, store, signer, chain, chain_id, identity, frames, config=None,
                 log=print, data_config=None):
        """``frames`` is the device registry: it reads committed frames and prunes them.
        ``desk`` (the data market, §18) shares the wallet: one nonce sequence per key."""
        self.store, self.signer, self.chain, self.chain_id = store, signer, chain, chain_id
        self.identity, self.config, self.log = identity, config or SellerConfig(), log
        self.prune_frames = frames.prune_device_frames
        self.wallet = Wallet(store, signer, chain, log, on_final=self._on_final)
        self.desk = DataDesk(store, signer, chain, chain_id, identity, frames, self.wallet,
                             data_config, log)
        self.meta = Meta(store)
        self.catalogue = Catalogue(store, identity, signer, self._busy, lambda: self.contract,
                                   log)
        self.sessions_db = Records(store, "agent_sessions")
        self.frames, self.cursors = FrameReader(frames), Cursors(store)
        self.payee = signer.address.hex()
        self.sessions = {}          # id hex -> record, for sessions not done
        self.outgoing = []          # (destination, payload bytes) to send
        self._dirty = {}            # sessions changed since the last flush
        self._dirty_devices = set()
        self._idle_cursors = {}     # device -> seq read, for devices with nothing to meter
        self._idle_saved = time.monotonic()
        self._next = {"watch": 0, "retention": 0, "quotes": 0}
        self.stats = {"vouchers": 0, "vouchers_refused": 0, "statements": 0, "trades": 0,
                      "units": 0}

    # -- start ---------------------------------------------------------------------------------

    def start(self):
        """Load sessions, rebuild the books, catch up on frames committed while away, and make
        sure a channel contract is (being) deployed."""
        for doc in self.sessions_db.values():
            if doc["state"] not in DONE_STATES:
                self.sessions[doc["id"]] = doc
        self.catalogue.rebuild()
        self._dirty_devices.update(bytes.fromhex(s["device"]) for s in self.sessions.values())
        if self.contract is None:
            if self.config.contract is not None:
                self.meta.set("channel_contract", self.config.contract.hex())
            elif _deploy_failed(self.wallet.outbox.by_key(DEPLOY_KEY)):
                self.wallet.send(channels.deploy_payload(), "deploy payment_channel",
                                 key=DEPLOY_KEY)
        self.desk.start()

    @property
    def contract(self):
        found = self.meta.get("channel_contract")
        return bytes.fromhex(found) if found else None

    # -- offers (service list|add|price; the catalogue holds them) ---------------------------------

    def add_offer(self, type_name, device_id, policy=None, capacity=None):
        offer = self.catalogue.add_offer(type_name, device_id, policy, capacity)
        self._next["quotes"] = 0
        return offer

    def set_price(self, offer_id, policy):
        offer = self.catalogue.set_price(offer_id, policy)
        self._next["quotes"] = 0
        return offer

    def list_offers(self):
        return self.catalogue.list_offers()

    def _busy(self, offer):
        """Open sessions of ``offer``'s service on its device."""
        return sum(1 for s in self.sessions.values() if s["device"] == offer["device"]
                   and s["service"] == offer["type"] and s["state"] in OPEN_STATES)

    # -- messages from buyers ------------------------------------------------------------------

    def handle(self, raw, client=None):
        """Take one buyer envelope (from MQTT, with the buyer's client id, or from the API);
        returns the reply envelopes meant for this buyer (also queued for MQTT when a client id
        is known)."""
        try:
            pubkey, body = messages.open_envelope(raw, self.chain_id)
        except messages.MessageError as exc:
            return self._reply(client, {"type": "error", "ref": None, "code": "bad_message",
                                        "message": str(exc)[:300]})
        handler = {"order": self._on_order, "channel": self._on_channel,
                   "voucher": self._on_voucher, "stop": self._on_stop,
                   "data_fetch": self._on_data_fetch}.get(body["type"])
        if handler is None:
            return self._reply(client, _error(body, "bad_message",
                                              f"a seller takes no {body['type']} message"))
        return handler(pubkey.hex(), body, client)

    def _on_data_fetch(self, buyer, body, client):
        return self.desk.handle(bytes.fromhex(buyer), body, client)

    def _reply(self, client, body):
        envelope = messages.seal(self.signer, self.chain_id, body)
        if client is not None:
            self.outgoing.append((("reply", client, body["type"]), envelope))
        return [envelope]

    def _session_of(self, pubkey, body, client):
        session = self.sessions.get(body["session"]) or self.sessions_db.get(
            bytes.fromhex(body["session"]))
        if session is None or session["buyer"] != pubkey:
            return None, self._reply(client, _error(body, "unknown_session",
                                                    f"no session {body['session']} of yours"))
        if client is not None and session["client"] != client:
            session["client"] = client
        return session, None

    def _on_order(self, buyer, body, client):
        existing = [s for s in self.sessions.values() if s["order"] == body["order"]
                    and s["buyer"] == buyer]
        if existing:
            return self._reply(client, self._trade_body(existing[0]))
        resting = self.catalogue.resting(body["order"])
        if resting is not None and resting["buyer"] == buyer:
            return self._reply(client, {"type": "resting", "order": body["order"],
                                        "best_ask": self._best_ask(body)})
        refusal = self._order_refusal(body)
        if refusal:
            return self._reply(client, _error(body, *refusal, ref=body["order"]))
        self._sync_asks()
        book = self.catalogue.books[body["service"]]
        try:   # a bid above the fair range bids its ceiling (still within the buyer's limit)
            trades = book.add(BID, body["order"], min(body["max_price"], book.ceiling),
                              body["quantity"], buyer, body["device"])
        except BookError as exc:
            return self._reply(client, _error(body, "refused", str(exc), ref=body["order"]))
        if not trades:
            self.catalogue.rest(book.orders[body["order"]], body["service"], buyer, client,
                                now_ms())
            return self._reply(client, {"type": "resting", "order": body["order"],
                                        "best_ask": self._best_ask(body)})
        return self._open_sessions(trades, body["service"], (buyer, client))

    def _order_refusal(self, body):
        if self.contract is None:
            return "not_ready", "the seller's channel contract is not deployed yet; retry soon"
        if body["service"] not in self.catalogue.books:
            return "no_service", f"no {body['service']} offered here"
        return None

    def _best_ask(self, body):
        return self.catalogue.best_ask(body["service"], body["device"])

    def _open_sessions(self, trades, service, buyer):
        """A session per trade; ``buyer`` is ``(public key hex, MQTT client id or None)``."""
        replies = []
        for trade in trades:
            self.catalogue.take_bid(service, trade.bid)     # one session per order
            session = self._new_session(trade, service, buyer)
            replies += self._reply(session["client"], self._trade_body(session))
        return replies

    def _new_session(self, trade, service, buyer):
        stype = SERVICE_TYPES[service]
        device = bytes.fromhex(trade.device)
        session = {
            "id": os.urandom(8).hex(), "role": "seller", "service": service,
            "device": trade.device, "order": trade.bid, "buyer": buyer[0], "client": buyer[1],
            "price": trade.price, "per": stype.per, "min_units": stype.min_units,
            "quantity": trade.quantity, "deposit": amount_for(trade.quantity, trade.price,
                                                              stype.per, stype.min_units),
            "contract": self.contract.hex(), "payee": self.payee,
            "expiry_blocks": self.config.channel_blocks, "dispute_ms": self.config.dispute_ms,
            "interval_ms": self.config.interval_ms, "state": "matched", "created_ms": now_ms(),
            "open_tx": None, "start_after": self.frames.last_seq(device), "dev_session": None,
            "units": 0, "final": False, "evidence": [], "started_ms": None, "ended_ms": None,
            "voucher": None, "vouchers": 0, "first_voucher_ms": None, "stated": None,
            "redeems": [],
            "unpaid_since_ms": None, "redeemed": 0, "last_redeem_ms": None, "task": None,
            "challenges": [], "command_ms": 0, "reason": None, "settled": None,
            "statement_ms": 0, "watch_ms": 0,
        }
        self.sessions[session["id"]] = session
        self._save(session)
        self.stats["trades"] += 1
        self.log(f"agent: trade {service} on {trade.device} at {trade.price}/unit for "
                 f"{trade.quantity} units: session {session['id']}")
        return session

    def _trade_body(self, s):
        device = bytes.fromhex(s["device"])
        return {"type": "trade", "order": s["order"], "session": s["id"], "service": s["service"],
                "device": s["device"], "device_pubkey": self.identity.device_pubkey(device).hex(),
                "price": s["price"], "per": s["per"], "quantity": s["quantity"],
                "min_units": s["min_units"], "deposit": s["deposit"], "contract": s["contract"],
                "payee": s["payee"], "expiry_blocks": s["expiry_blocks"],
                "dispute_ms": s["dispute_ms"], "interval_ms": s["interval_ms"],
                "start_after": s["start_after"]}

    def _on_channel(self, buyer, body, client):
        session, refused = self._session_of(buyer, body, client)
        if refused:
            return refused
        if session["state"] == "matched":
            session["open_tx"] = body["tx"]
            if body.get("task") is not None:
                session["task"] = body["task"]
            self._save(session)
            self._check_channel(session)
        return self._reply(client, self._state_body(session))

    def _check_channel(self, session):
        """matched -> ready once the open transaction is irreversible and the channel right."""
        try:
            status = self.wallet.status()
            record = self.chain.tx(bytes.fromhex(session["open_tx"]))
            channel = channels.read_channel(self.chain, self.contract,
                                            bytes.fromhex(session["id"]))
        except (ChainUnavailable, ChainRefused):
            return
        reason, retry = channels.check_open(session, record, channel, self.signer.address,
                                            lambda h: h <= status["lib_height"])
        if reason is None and channel["expiry"] < status["height"] + session["expiry_blocks"] // 2:
            reason, retry = "the channel expires too soon", False
        if reason is None:
            session.update(state="ready", reason=None, expiry=channel["expiry"])
            self.log(f"agent: session {session['id']} channel open: deposit {channel['deposit']}")
        elif not retry:
            session.update(open_tx=None, reason=reason)
        self._save(session)
        self._notify_state(session)

    def _on_voucher(self, buyer, body, client):
        session, refused = self._session_of(buyer, body, client)
        if refused:
            return refused
        if session["state"] == "matched" and session["open_tx"]:
            self._check_channel(session)
        best = session["voucher"]
        if best is not None and (body["amount"], body["nonce"]) == (best["amount"],
                                                                    best["nonce"]):
            return self._reply(client, _ack(session, body, True, None))   # a re-send: fine
        reason = channels.check_voucher(session, body, self.chain_id)
        if reason is not None:
            self.stats["vouchers_refused"] += 1
            return self._reply(client, _ack(session, body, False, reason))
        self._accept_voucher(session, body)
        return self._reply(client, _ack(session, body, True, None))

    def _accept_voucher(self, session, body):
        now = now_ms()
        session["voucher"] = {"amount": body["amount"], "nonce": body["nonce"],
                              "signature": body["signature"]}
        session["vouchers"] += 1
        self.stats["vouchers"] += 1
        forget_paid_evidence(session, body["upto"])
        stated = session["stated"]
        if stated is None or body["amount"] >= stated["amount"]:
            session["unpaid_since_ms"] = None
        if session["first_voucher_ms"] is None:
            session["first_voucher_ms"] = now
        if session["state"] == "ready":
            self._start(session, now)
        challenge = body.get("challenge")
        if challenge and session["service"] == "storage.space" and \
                challenge not in session["challenges"]:
            session["challenges"] = (session["challenges"] + [challenge])[-8:]
            self._command(session, "challenge", challenge=challenge)
        self._save(session)

    def _start(self, session, now):
        """The first valid voucher: the service starts (a parking gate opens at once)."""
        stype = SERVICE_TYPES[session["service"]]
        session["start_after"] = max(session["start_after"],
                                     self.frames.last_seq(bytes.fromhex(session["device"])))
        if stype.frames is not None:
            session.update(state="active", started_ms=now)
        else:
            session["state"] = "starting"
            self._command(session, "start")
        self._notify_state(session)
        self.log(f"agent: session {session['id']} starts ({session['service']} on "
                 f"{session['device']})")

    def _on_stop(self, buyer, body, client):
        session, refused = self._session_of(buyer, body, client)
        if refused:
            return refused
        if session["state"] in ("ready", "starting", "active"):
            self._stop(session, "the buyer ended the session")
            self._save(session)
        return self._reply(client, self._state_body(session))

    def _stop(self, session, reason):
        stype = SERVICE_TYPES[session["service"]]
        session["reason"] = session["reason"] or reason
        session["stop_ms"] = now_ms()
        if stype.frames is not None or session["state"] == "ready":
            session.update(state="ended", final=True, ended_ms=now_ms())
        else:
            session["state"] = "stopping"
            self._command(session, "stop")
        self._notify_state(session)
        self.log(f"agent: session {session['id']} stopping: {reason}")

    # -- device commands -----------------------------------------------------------------------

    def _command(self, session, cmd, **extra):
        body = {"cmd": cmd, "ref": session["id"], **extra}
        if cmd == "start":
            body["quantity"] = session["quantity"]
            if session["task"]:
                body["task"] = session["task"]
        session["command_ms"] = now_ms()
        self.outgoing.append((("command", session["device"]), json.dumps(
            body, sort_keys=True, separators=(",", ":")).encode()))

    # -- frames from the bridge ----------------------------------------------------------------

    def on_frames(self, committed):
        """The bridge committed these ``(device id, seq)`` frames; metering reads them in the
        next ``meter`` call (cheap: just remembers the devices)."""
        self._dirty_devices.update(bytes(d) for d, _ in committed)
        self.desk.on_frames(committed)

    def meter(self):
        """Apply newly committed frames to their sessions: for every device with news, in one
        LMDB write with the devices' cursors (a frame is applied exactly once). A device with
        no session to meter only moves its cursor in memory, saved once a minute (or before
        retention): no LMDB commit per tick for a fleet that sells nothing yet."""
        devices, self._dirty_devices = self._dirty_devices, set()
        while devices:
            changed, cursors, more = {}, {}, set()
            for device in devices:
                if not self._device_sessions(device):
                    self._idle_cursors[device] = self.frames.last_seq(device)
                    continue
                cursor = self._idle_cursors.pop(device, None)
                cursor = self.cursors.get(device) if cursor is None else cursor
                frames = self.frames.after(device, cursor or 0, limit=METER_BATCH)
                if not frames:
                    continue
                cursors[device] = frames[-1].seq
                if len(frames) == METER_BATCH:
                    more.add(device)
                for session in self._device_sessions(device):
                    before = session["units"]
                    stype = SERVICE_TYPES[session["service"]]
                    for frame in frames:
                        if apply_frame(session, stype, frame):
                            changed[session["id"]] = session
                    self.stats["units"] += session["units"] - before
            if cursors:
                self.store.write(lambda txn: self._write_metering(txn, changed, cursors))
            for session in changed.values():
                self._dirty.pop(session["id"], None)       # written just now
                if session["state"] == "ended" and session["final"]:
                    self._notify_state(session)
            devices = more
        if time.monotonic() - self._idle_saved >= IDLE_CURSOR_SAVE_S:
            self._save_idle_cursors()

    def _save_idle_cursors(self):
        idle, self._idle_cursors = self._idle_cursors, {}
        self._idle_saved = time.monotonic()
        if idle:
            self.store.write(lambda txn: [self.cursors.set(d, seq, txn) for d, seq in idle.items()])

    def _write_metering(self, txn, changed, cursors):
        for session in changed.values():
            self.sessions_db.put(bytes.fromhex(session["id"]), session, txn)
        for device, seq in cursors.items():
            self.cursors.set(device, seq, txn)

    def _device_sessions(self, device):
        hexid = device.hex()
        return [s for s in self.sessions.values() if s["device"] == hexid
                and s["state"] in METERING_STATES]

    # -- the clock -----------------------------------------------------------------------------

    def tick(self, now=None):
        """Everything time drives: metering, statements, cut-offs, stops, closes, installments,
        the channel watch, quotes, the wallet and retention."""
        now = now_ms() if now is None else now
        self.meter()
        for session in list(self.sessions.values()):
            self._tick_session(session, now)
        if now >= self._next["watch"]:
            self._next["watch"] = now + min(self.config.watch_ms, self.config.interval_ms)
            self._watch_channels(now)
        if now >= self._next["quotes"]:
            self._next["quotes"] = now + self.config.interval_ms
            if self.config.auto_offer:
                self.catalogue.auto_offers()
            self._sync_asks()
            self._publish_quotes()
        self.desk.tick(now)
        self.wallet.step(now)
        if now >= self._next["retention"]:
            self._next["retention"] = now + 3_600_000
            self.retain(now)

    def _tick_session(self, s, now):
        state, interval = s["state"], self.config.interval_ms
        if state == "matched":
            if s["open_tx"] and now - s["command_ms"] >= 500:
                s["command_ms"] = now
                self._check_channel(s)
            if now - s["created_ms"] > self.config.open_timeout_ms and s["state"] == "matched":
                s.update(state="expired", reason="no channel was opened in time")
                self._finish(s)
            return
        if state in ("starting", "stopping") and now - s["command_ms"] >= interval:
            self._command(s, "start" if state == "starting" else "stop")
        if state in ("starting", "active", "stopping", "ended"):
            self._statement(s, now)
            self._enforce(s, now)
        if s["state"] in ("active", "stopping", "ended"):
            self._installment(s, now)
        if s["state"] == "ended":
            self._close_when_paid(s, now)

    def _due(self, s):
        return amount_for(s["units"], s["price"], s["per"], s["min_units"])

    def _statement(self, s, now):
        """Tell the buyer what it owes (with the device's signed frames as evidence) once per
        metering interval, and at once when the session ended."""
        due, paid = self._due(s), (s["voucher"] or {"amount": 0})["amount"]
        urgent = s["state"] == "ended" and (s["stated"] or {}).get("final") is not True
        if not urgent and now - s["statement_ms"] < self.config.interval_ms:
            return
        s["statement_ms"] = now
        if s["stated"] is None or due > s["stated"]["amount"] or urgent:
            s["stated"] = {"amount": due, "at_ms": now, "final": s["state"] == "ended"}
        if due > paid and s["unpaid_since_ms"] is None:
            s["unpaid_since_ms"] = now
        self._save(s)
        self.stats["statements"] += 1
        frames = [e[1] for e in s["evidence"][-MAX_STATEMENT_FRAMES:]]
        self._reply(s["client"], {"type": "statement", "session": s["id"], "units": s["units"],
                                  "amount": due, "final": s["state"] == "ended",
                                  "frames": frames})

    def _enforce(self, s, now):
        """Stop a session whose buyer fell behind, or whose deposit or quantity is used up."""
        if s["state"] not in ("starting", "active"):
            return
        behind = self.config.behind_intervals * self.config.interval_ms
        if s["unpaid_since_ms"] is not None and now - s["unpaid_since_ms"] >= behind:
            s["behind_ms"] = now - s["unpaid_since_ms"]
            self._stop(s, f"vouchers fell {self.config.behind_intervals} intervals behind")
        elif self._due(s) >= s["deposit"]:
            self._stop(s, "the deposit is used up")
        elif s["units"] >= s["quantity"]:
            self._stop(s, "the quantity ordered is reached")
        else:
            return
        self._save(s)

    def _installment(self, s, now):
        """Redeem the best voucher at most once per settlement interval."""
        best = s["voucher"]
        if best is None or best["amount"] <= s["redeemed"]:
            return
        last = s["last_redeem_ms"] or s["started_ms"] or s["created_ms"]
        if now - last < self.config.settle_interval_ms:
            return
        pending = self.wallet.outbox.by_key(f"redeem:{s['id']}")
        if pending is not None and pending["status"] in ("queued", "signed", "pending"):
            return
        s["last_redeem_ms"] = now
        s["redeems"].append(now)
        self.wallet.send(channels.redeem_payload(self.contract_of(s), bytes.fromhex(s["id"]),
                                                 best),
                         f"redeem {best['amount']} on {s['id']}", key=f"redeem:{s['id']}")
        self._save(s)

    def _close_when_paid(self, s, now):
        """Close with the best voucher once it covers the final amount, or ``behind_intervals``
        intervals after the final statement: the buyer learns the final amount from it, so the
        grace counts from then, not from the device's end (metering may see that late)."""
        due, best, stated = self._due(s), s["voucher"], s["stated"]
        grace = self.config.behind_intervals * self.config.interval_ms
        paid_up = best is not None and best["amount"] >= due
        final_at = stated["at_ms"] if stated is not None and stated["final"] else None
        if paid_up or (final_at is not None and now - final_at >= grace):
            self._close(s, "paid in full" if paid_up else "the final voucher did not come")

    def _close(self, s, reason):
        if s["state"] == "closing":
            return
        s.update(state="closing", reason=s["reason"] or reason)
        if self.wallet.outbox.by_key(f"close:{s['id']}") is None:   # not after a crash
            self.wallet.send(channels.close_payload(self.contract_of(s), bytes.fromhex(s["id"]),
                                                    s["voucher"]),
                             f"close {s['id']} at {(s['voucher'] or {}).get('amount', 0)}",
                             key=f"close:{s['id']}")
        self._save(s)
        self.log(f"agent: session {s['id']} closing: {reason}")

    def contract_of(self, s):
        return bytes.fromhex(s["contract"])

    def close_channel(self, session_id):
        """``smartshare channel close``: close now with the best voucher."""
        s = self.sessions.get(session_id)
        if s is None or s["state"] not in CHANNEL_STATES:
            raise ValueError(f"no open channel {session_id}")
        if s["state"] in ("starting", "active"):
            self._stop(s, "the owner closed the channel")
        self._close(s, "the owner closed the channel")
        return s

    # -- the chain -----------------------------------------------------------------------------

    def _watch_channels(self, now):
        """A buyer that started a close gets our best voucher at once; a channel closed or
        refunded by other means settles its session."""
        for s in list(self.sessions.values()):
            if s["state"] not in CHANNEL_STATES:
                continue
            try:
                channel = channels.read_channel(self.chain, self.contract_of(s),
                                                bytes.fromhex(s["id"]))
            except (ChainUnavailable, ChainRefused):
                return
            if channel is None:
                continue
            if not channel["open"] and s["state"] != "closing":
                s.update(state="settled", settled={"paid": channel["paid"], "by": "buyer"},
                         reason=s["reason"] or "the buyer took the deposit back")
                self._finish(s)
            elif channel.get("closing") is not None and s["state"] != "closing":
                if s["state"] in ("starting", "active"):
                    self._stop(s, "the buyer started a close on chain")
                self._close(s, "the buyer started a close: submitting the best voucher")

    def _on_final(self, txn, record):
        """A wallet transaction became irreversible (or failed for good): in the same LMDB
        write, update what it was for."""
        if self.desk.owns(record):
            self.desk.on_final(txn, record)
            return
        key = record["key"] or ""
        if key == DEPLOY_KEY:
            if not _deploy_failed(record):
                address = contract_address(self.signer.address, record["tx"]["nonce"])
                self.meta.set("channel_contract", address.hex(), txn)
                self.log(f"agent: payment channel contract at {encode_address(address)}")
                return
            tries = sum(r["key"] == DEPLOY_KEY for r in self.wallet.outbox.records.values(txn))
            again = tries < MAX_DEPLOYS
            self.log(f"agent: deploying the channel contract failed ({tries} of {MAX_DEPLOYS}): "
                     f"{record['error'] or record['receipt']}; "
                     + ("deploying it again" if again else "restart the node to try again, or "
                        "set [agent] channel_contract to a deployed one"))
            if again:
                self.wallet.send(channels.deploy_payload(), "deploy payment_channel",
                                 key=DEPLOY_KEY, txn=txn)
            return
        kind, _, session_id = key.partition(":")
        s = self.sessions.get(session_id)
        if s is None:
            return
        ok = record["status"] == "final" and record["receipt"]["status"] == 0
        if kind == "redeem" and ok:
            s["redeemed"] = max(s["redeemed"], record["payload"]["args"][1])
        elif kind == "close":
            result = (record["receipt"] or {}).get("return") if ok else None
            s.update(state="settled", settled=result or {"error": record["error"] or (
                record["receipt"] or {}).get("error")})
            if result:
                s["redeemed"] += result["paid"]
        self.sessions_db.put(bytes.fromhex(session_id), s, txn)
        if s["state"] == "settled":
            self.sessions.pop(session_id, None)
            self._notify_state(s)
            self.log(f"agent: session {session_id} settled: {s['settled']}")

    def _finish(self, s):
        self._save(s)
        self.sessions.pop(s["id"], None)
        self._notify_state(s)

    # -- quotes --------------------------------------------------------------------------------

    def _sync_asks(self):
        """The catalogue's asks at their current prices; a trade with a resting bid opens its
        session at once."""
        self.catalogue.sync_asks(lambda trade, service, buyer:
                                 self._open_sessions([trade], service, buyer))

    def quote_bodies(self):
        return self.catalogue.quote_bodies()

    def _publish_quotes(self):
        for quote in self.catalogue.changed_quotes():
            self.outgoing.append((("quote", quote["service"]), messages.seal(
                self.signer, self.chain_id, dict(quote, type="quote"))))

    # -- retention -----------------------------------------------------------------------------

    def retain(self, now):
        """Prune what is settled and older than the retention window: device frames no open
        session needs (through the registry), done sessions, final wallet records."""
        cutoff = now - self.config.retention_ms
        self._save_idle_cursors()
        for device, cursor in self.cursors.all().items():
            needed = [s["start_after"] for s in self.sessions.values()
                      if s["device"] == device.hex()]
            self.prune_frames(device, min([cursor + 1] + [n + 1 for n in needed]), cutoff)

        def work(txn):
            for key, doc in self.sessions_db.items(txn):
                if doc["state"] in DONE_STATES and doc["created_ms"] < cutoff:
                    self.sessions_db.delete(key, txn)
            self.wallet.outbox.prune(cutoff, txn)
        self.store.write(work)

    # -- views (API, CLI, the live view) --------------------------------------------------------

    def book_view(self):
        """Resting orders of every book, best first."""
        self._sync_asks()
        return self.catalogue.book_view()

    def summary(self, s):
        """A session in a few fields (lists)."""
        return {"id": s["id"], "service": s["service"], "device": s["device"],
                "state": s["state"], "units": s["units"], "price": s["price"], "per": s["per"],
                "due": self._due(s), "paid": (s["voucher"] or {"amount": 0})["amount"],
                "vouchers": s["vouchers"], "redeemed": s["redeemed"], "deposit": s["deposit"],
                "buyer": s["buyer"], "reason": s["reason"], "created_ms": s["created_ms"],
                "settled": s["settled"]}

    def detail(self, session_id):
        s = self.session(session_id)
        if s is None:
            return None
        doc = dict(s, due=self._due(s), evidence=len(s["evidence"]))
        doc["voucher"] = s["voucher"] and {k: s["voucher"][k] for k in ("amount", "nonce")}
        return doc

    def status(self):
        contract = self.contract
        return {"address": encode_address(self.signer.address), "pubkey": self.signer.pubkey.hex(),
                "contract": encode_address(contract) if contract else None,
                "data_contract": encode_address(self.desk.contract) if self.desk.contract
                else None,
                "sessions": len(self.sessions), "stats": dict(self.stats),
                "outbox": [{k: r[k] for k in ("id", "label", "status", "attempts", "error",
                                              "height")} for r in self.wallet.outbox.open()]}

    # -- helpers -------------------------------------------------------------------------------

    def _save(self, s):
        """Mark a session changed: ``flush`` writes every changed one in one LMDB commit, and
        the runner flushes before it sends or acknowledges anything."""
        self._dirty[s["id"]] = s

    def flush(self):
        if self._dirty:
            dirty = self._dirty
            self.store.write(lambda txn: [self.sessions_db.put(bytes.fromhex(k), doc, txn)
                                          for k, doc in dirty.items()])
            self._dirty = {}

    def _state_body(self, s):
        return {"type": "state", "session": s["id"], "state": s["state"],
                "reason": (s["reason"] or None) and s["reason"][:200]}

    def _notify_state(self, s):
        if s["client"] is not None:
            self._reply(s["client"], self._state_body(s))

    def session(self, session_id):
        self.flush()
        return self.sessions.get(session_id) or self.sessions_db.get(bytes.fromhex(session_id))

    def all_sessions(self):
        self.flush()
        return self.sessions_db.values()

    def take_outgoing(self):
        out, self.outgoing = self.outgoing, []
        return out + self.desk.take_outgoing()


def _error(body, code, message, ref=None):
    return {"type": "error", "ref": ref or body.get("session") or body.get("order"),
            "code": code, "message": message[:300]}


def _ack(session, body, accepted, reason):
    best = session["voucher"] or {"amount": 0, "nonce": 0}
    return {"type": "ack", "session": session["id"],
            "amount": body["amount"] if accepted else best["amount"],
            "nonce": body["nonce"] if accepted else best["nonce"], "accepted": accepted,
            "reason": reason}
