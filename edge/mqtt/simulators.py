"""Simulated devices over MQTT (DESIGN §6, docs/protocol.md §16.3): real paho clients with their
own Ed25519 keys that find the gateway (mDNS or a given broker), onboard, and publish signed
frames of a parking gate, an air purifier, a router or a weather station.

A device lives in its own folder of the simulators' state directory (``<kind>-<n>/device.json``,
mode 0600): its key, its MQTT credentials once approved, its last ``seq`` and its behaviour
(``edge/mqtt/sim_kinds.py``). Every frame is appended to the device's outbox (``outbox.py``)
*before* it is published and kept until the node's receipt covers it: a device sends again what a
receipt or an ``out_of_order`` reply shows missing, everything kept after it reconnects, and
everything kept when no receipt has come for a while. So a restarted (even killed) simulator goes on
above every ``seq`` it ever used, and no frame is lost by a broker or node crash.

    gateway = discover(chain_id, timeout=5)                      # or Gateway(host, port, prov)
    summary = SimulatedDevice("weather", folder, gateway, frames=10).run()

Running several devices, approving them through a node's API and ``node run --simulate`` are in
``edge/mqtt/sim_fleet.py``.
"""

import collections
import fcntl
import json
import os
import random
import threading
import time
from hashlib import blake2b
from typing import NamedTuple

import paho.mqtt.client as mqtt
from nacl.signing import SigningKey

from edge.discovery import find_gateway
from edge.mqtt import sim_kinds
from edge.mqtt.broker import PROVISION_USER
from edge.mqtt.frames import Frame, sign_frame
from edge.mqtt.outbox import MAX_KEPT, Outbox
from edge.mqtt import pinning
from edge.mqtt.provision import ProvisionError, join_request, open_credentials
from edge.mqtt.topics import (CA_TOPIC, credentials_topic, device_id_of, device_topic,
                              provision_topic, reply_topic)

STATE_FILE = "device.json"
OUTBOX_FILE = "outbox.bin"
CONNECT_TIMEOUT_S = 15.0
REFUSALS_BEFORE_REJOIN = 3     # refused logins as itself before the device onboards again
DRAIN_TIMEOUT_S = 15.0         # --frames: wait this long for receipts covering the last frames
RESEND_S = 5.0                 # no receipt progress for this long: send every kept frame again
RESEND_GAP_S = 1.0             # at most one resend of the same frames a second
JOIN_REPEAT_S = 30.0           # repeat an unanswered join request this often
RESUBSCRIBE_S = 5.0            # and fetch the retained credentials again this often


class SimulatorError(Exception):
    """A simulator cannot go on (no gateway, refused onboarding password...); says what to do."""


class Gateway(NamedTuple):
    """Where the devices connect: the broker, its onboarding password, (if known) the chain,
    and its TLS: the fingerprint of the gateway's CA (from mDNS) and/or the CA itself (a file
    the owner gave). ``tls`` False only for a plaintext broker on loopback (development)."""
    host: str
    port: int
    provision_password: str
    chain_id: str | None = None
    name: str = ""
    ca_sha256: str | None = None
    ca_pem: str | None = None
    tls: bool = True

    def __str__(self):
        chain = f", chain {self.chain_id}" if self.chain_id else ""
        tls = f", TLS (CA {self.ca_sha256[:16]})" if self.tls and self.ca_sha256 else \
            ("" if self.tls else ", no TLS")
        return f"{self.name + ' at ' if self.name else ''}{self.host}:{self.port}{chain}{tls}"


def gateway_with_ca(gateway, pem):
    """``gateway`` that trusts the CA ``pem`` (its fingerprint checked against an announced one)."""
    try:
        if gateway.ca_sha256:
            pinning.check(pem, gateway.ca_sha256)
        return gateway._replace(ca_pem=pem, ca_sha256=pinning.fingerprint(pem))
    except pinning.PinningError as exc:
        raise SimulatorError(str(exc)) from None


def discover(chain_id=None, timeout=5.0, interfaces=None):
    """The gateway advertised by mDNS (``_mqtt._tcp`` with TXT ``prov``), else SimulatorError."""
    found = find_gateway(chain_id=chain_id, timeout=timeout, interfaces=interfaces)
    if found is None:
        chain = f" for chain {chain_id}" if chain_id else ""
        raise SimulatorError(f"no SmartShare gateway found by mDNS{chain} within {timeout:g} s; "
                             "check that the node runs with [discovery] advertise = true on this "
                             "network, or pass --broker HOST:PORT")
    props = found["properties"]
    return Gateway(found["host"], int(found["port"]), props["prov"], props.get("chain") or None,
                   found.get("name", ""), ca_sha256=props.get("ca") or None,
                   tls=bool(props.get("ca")))


class DeviceState:
    """A device's key, credentials, last ``seq`` and behaviour state, kept in one JSON file."""

    def __init__(self, path, kind, seed, seq=0, credentials=None, behaviour=None):
        self.path, self.kind, self.seed, self.seq = path, kind, seed, seq
        self.credentials, self.behaviour = credentials, behaviour or {}
        self.lock = None
        self.outbox = None
        self.key = SigningKey(seed)
        self.pubkey = bytes(self.key.verify_key)
        self.id = device_id_of(self.pubkey)

    @classmethod
    def open(cls, folder, kind):
        """The device in ``folder`` (made, with a fresh key, when there is none yet), locked
        for this process: two simulators of one device would reuse each other's ``seq``."""
        os.makedirs(folder, mode=0o700, exist_ok=True)
        lock = open(os.path.join(folder, "lock"), "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise SimulatorError(f"another simulator runs the device in {folder}") from None
        try:
            state = cls._read(folder, kind)
            state.outbox = Outbox(os.path.join(folder, OUTBOX_FILE))
        except BaseException:
            lock.close()
            raise
        state.lock = lock
        state.seq = max(state.seq, state.outbox.last_seq)
        return state

    def close(self):
        """Close the outbox and release the folder's lock."""
        if self.outbox is not None:
            self.outbox.close()
            self.outbox = None
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    @classmethod
    def _read(cls, folder, kind):
        path = os.path.join(folder, STATE_FILE)
        try:
            with open(path) as f:
                doc = json.load(f)
        except FileNotFoundError:
            state = cls(path, kind, os.urandom(32))
            state.save()
            return state
        except ValueError as exc:
            raise SimulatorError(f"{path} is damaged ({exc}); delete its folder to start that "
                                 "device afresh") from None
        if doc.get("kind") != kind:
            raise SimulatorError(f"{path} holds a {doc.get('kind')!r} device, not {kind!r}")
        return cls(path, kind, bytes.fromhex(doc["seed"]), doc.get("seq", 0),
                   doc.get("credentials"), doc.get("behaviour"))

    def save(self):
        """Write atomically (a crash leaves the old or the new file, never half of one)."""
        doc = {"kind": self.kind, "id": self.id.hex(), "seed": self.seed.hex(), "seq": self.seq,
               "credentials": self.credentials, "behaviour": self.behaviour}
        fresh = self.path + ".new"
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(fresh, self.path)

    def salt(self):
        """The key of the keyed hashes (plates, MACs): secret, stable for the device."""
        return blake2b(self.seed, digest_size=16, person=b"ss-sim-salt").digest()


def describe(payload, limit=110):
    """A short one-line view of a payload (``event`` first)."""
    items = sorted(payload.items(), key=lambda kv: (kv[0] != "event", kv[0]))
    text = " ".join(f"{k}={v}" if k != "event" else str(v) for k, v in items
                    if not isinstance(v, (list, dict)))
    return text if len(text) <= limit else text[:limit - 3] + "..."


class SimulatedDevice:
    """One simulated device: onboards (once), then sends a hello and one frame per ``interval``
    until ``stop()`` (or ``frames`` frames). ``approve(device_id_hex, stop_event)``, when given,
    is called after the join request (e.g. ``sim_fleet.api_approver``); ``on_frame(device, seq, kind,
    payload, raw)`` sees every frame sent; ``log(line)`` every event."""

    def __init__(self, kind, folder, gateway, *, name=None, interval=1.0, frames=None,
                 approve=None, log=print, on_frame=None, log_disconnects=True):
        if kind not in sim_kinds.KINDS:
            raise SimulatorError(f"unknown device kind {kind!r}: one of "
                                 f"{', '.join(sim_kinds.KINDS)}")
        self.kind, self.gateway, self.interval, self.frames = kind, gateway, interval, frames
        self.state = DeviceState.open(folder, kind)
        self.name = name or os.path.basename(os.path.normpath(folder))
        self.approve, self._log, self.on_frame = approve, log, on_frame
        self.log_disconnects = log_disconnects
        self.stopping = threading.Event()
        self.sent, self.first_seq, self.errors = 0, None, []
        self.receipted = 0   # the highest seq the node said it has taken (reply/receipt)
        self.receipt = None  # the latest receipt
        self.error = None
        self._refusals = 0
        self._lock = threading.Lock()   # the outbox, between paho's thread and the loop
        self._wake = threading.Event()
        self._commands = collections.deque()   # the agent's commands (reply/command), in order
        self._resend_from = None        # resend kept frames from this seq (0: all)
        self._progress = time.monotonic()    # when a receipt last covered more
        self._resent = (0.0, None)      # when, and from which seq, frames were last resent
        self._full = False

    @property
    def id(self):
        return self.state.id.hex()

    def log(self, text):
        self._log(f"{self.name} {self.id}  {text}")

    def stop(self):
        self.stopping.set()

    def summary(self):
        return {"name": self.name, "kind": self.kind, "id": self.id, "frames": self.sent,
                "first_seq": self.first_seq, "last_seq": self.state.seq,
                "receipted_seq": self.receipted, "errors": list(self.errors),
                "kept": len(self.state.outbox or ()), "error": self.error}

    # -- the life of the device -----------------------------------------------------------------

    def run(self):
        """Onboard if needed, then publish until stopped; returns ``summary()``. Failures end
        up in ``summary()["error"]`` (and the log), never as an exception."""
        try:
            while not self.stopping.is_set():
                if not self._usable_credentials():
                    self._onboard()
                    continue
                if self._publish_loop():
                    break
        except SimulatorError as exc:
            self.error = str(exc)
            self.log(f"stopped: {exc}")
        except Exception as exc:  # noqa: BLE001 - one device's bug must not hide the others'
            self.error = f"{type(exc).__name__}: {exc}"
            self.log(f"stopped: {self.error}")
        finally:
            self.state.close()
        return self.summary()

    def _usable_credentials(self):
        creds = self.state.credentials
        if not creds:
            return False
        chain = self.gateway.chain_id
        if chain and creds.get("chain_id") != chain:
            self.log(f"credentials are for chain {creds.get('chain_id')}, the gateway runs "
                     f"{chain}: joining again")
            dropped = self.state.outbox.clear()
            if dropped:   # else they would fill the outbox for good and stop the device
                self.log(f"dropped {dropped} unreceipted frame(s) signed for chain "
                         f"{creds.get('chain_id')}: no gateway of {chain} can take them")
            self._forget_credentials()
            return False
        announced, pinned = self.gateway.ca_sha256, creds.get("ca_sha256")
        if self.gateway.tls and (not pinned or (announced and pinned != announced)):
            self.log(f"the device pinned CA {(pinned or 'none')[:16]}, the gateway shows "
                     f"{(announced or 'another')[:16]}: joining again (the owner re-approves it)")
            self._forget_credentials()
            return False
        return True

    def _forget_credentials(self):
        self.state.credentials = None
        self.state.save()

    def _client(self, client_id, username, password, clean, context=None):
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             clean_session=clean, protocol=mqtt.MQTTv311)
        client.username_pw_set(username, password)
        if context is not None:
            client.tls_set_context(context)
        client.reconnect_delay_set(1, 10)
        return client

    # -- TLS: the gateway's CA, pinned ----------------------------------------------------------

    def _joining_context(self):
        """The TLS context for onboarding: the CA given, else the one the broker hands out,
        kept only if its fingerprint is the announced one (docs/protocol.md §15.3)."""
        gw = self.gateway
        if not gw.tls:
            return None
        if gw.ca_pem is None:
            if not gw.ca_sha256:
                raise SimulatorError("the gateway's CA is unknown: find the gateway by mDNS, or "
                                     "give its CA with --ca-file (<home>/tls/ca.crt)")
            self.gateway = gateway_with_ca(gw, self._fetch_ca())
            self.log(f"gateway CA {self.gateway.ca_sha256[:16]}... matches its announcement")
        return pinning.client_context(self.gateway.ca_pem)

    def _fetch_ca(self):
        """The CA the broker keeps retained on ``ss/v1/ca``, read once without verification."""
        gw, got = self.gateway, []
        arrived = threading.Event()
        client = self._client(f"{self.id}-ca", PROVISION_USER, gw.provision_password, True,
                              pinning.unverified_context())

        def on_connect(c, userdata, flags, reason, properties):
            if not reason.is_failure:
                c.subscribe(CA_TOPIC, qos=1)

        def on_message(c, userdata, msg):
            got.append(msg.payload.decode(errors="replace"))
            arrived.set()

        client.on_connect, client.on_message = on_connect, on_message
        client.connect_async(gw.host, gw.port, keepalive=30)
        client.loop_start()
        try:
            if not self._wait(arrived, f"the gateway's CA from {gw.host}:{gw.port}",
                              CONNECT_TIMEOUT_S):
                raise SimulatorError("stopped while fetching the gateway's CA")
        finally:
            self._close(client)
        return got[-1]

    def _device_context(self):
        """The TLS context of the device's own connection: the CA its sealed credentials
        carry (pinned at onboarding); None on a plaintext broker."""
        creds = self.state.credentials
        if not self.gateway.tls:
            return None
        pem = creds.get("ca_pem")
        if not pem:
            raise SimulatorError("the device's credentials carry no gateway CA (a gateway "
                                 "without TLS?); delete its folder to onboard it again")
        return pinning.client_context(pem)

    def _wait(self, event, what, timeout=None):
        """Wait for ``event`` while not stopping; False when stopping, SimulatorError on time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.stopping.is_set():
            if event.wait(0.1):
                return True
            if deadline is not None and time.monotonic() > deadline:
                raise SimulatorError(f"timed out after {timeout:g} s waiting for {what}")
        return False

    # -- onboarding -----------------------------------------------------------------------------

    def _onboard(self):
        """Ask to join as the provisioning user and wait for the sealed credentials."""
        context = self._joining_context()
        gw, state = self.gateway, self.state
        sealed, connected, refused = [], threading.Event(), []
        got = threading.Event()
        client = self._client(self.id, PROVISION_USER, gw.provision_password, True,
                              context)

        def on_connect(c, userdata, flags, reason, properties):
            if reason.is_failure:
                refused.append(str(reason))
            connected.set()

        def on_message(c, userdata, msg):
            if msg.payload:          # an empty retained payload: credentials withdrawn
                sealed.append(msg.payload)
                got.set()

        client.on_connect, client.on_message = on_connect, on_message
        client.connect_async(gw.host, gw.port, keepalive=30)
        client.loop_start()
        try:
            if not self._wait(connected, f"the broker at {gw.host}:{gw.port}", CONNECT_TIMEOUT_S):
                return
            if refused:
                raise SimulatorError(f"the broker at {gw.host}:{gw.port} refused the onboarding "
                                     f"password ({refused[0]}); check the gateway's prov "
                                     "password")
            client.subscribe(credentials_topic(state.id), qos=1)
            request = join_request(state.pubkey, self.kind, sim_kinds.BEHAVIOURS[self.kind].model,
                                   sim_kinds.FIRMWARE)
            client.publish(provision_topic(state.id), request, qos=1)
            self.log(f"join request sent to {gw}; approve it with: smartshare device approve "
                     f"{self.id}")
            if self.approve is not None:
                self.approve(self.id, self.stopping)
            if not self._await_credentials(client, got, request):
                return
        finally:
            client.disconnect()
            client.loop_stop()
        try:
            state.credentials = open_credentials(state.key, sealed[-1])
        except ProvisionError as exc:
            raise SimulatorError(f"the gateway's credentials are unusable: {exc}") from None
        state.save()
        self.log(f"approved: MQTT user {state.credentials['username']} on chain "
                 f"{state.credentials['chain_id']}")

    def _await_credentials(self, client, got, request):
        """Wait for the sealed credentials; False when stopping. They are retained, so
        subscribing again fetches them should their delivery have been missed (the broker may
        be reloading its ACL just then), and the join request is repeated now and then (the
        gateway drops requests over its rate)."""
        waited = 0.0
        while True:
            try:
                return self._wait(got, "credentials", RESUBSCRIBE_S)
            except SimulatorError:
                waited += RESUBSCRIBE_S
            client.subscribe(credentials_topic(self.state.id), qos=1)
            if waited % JOIN_REPEAT_S < RESUBSCRIBE_S:
                client.publish(provision_topic(self.state.id), request, qos=1)

    # -- frames ---------------------------------------------------------------------------------

    def _connect_as_device(self):
        """A client logged in as the device itself, subscribed to its replies; None when the
        broker keeps refusing it (revoked, or the node forgot it) or when stopping."""
        creds, connected = self.state.credentials, threading.Event()
        client = self._client(self.id, creds["username"], creds["password"], False,
                              self._device_context())
        self._refusals = 0

        def on_connect(c, userdata, flags, reason, properties):
            if reason.is_failure:
                self._refusals += 1
                if self._refusals == 1:
                    self.log(f"the broker refused the device's login ({reason}); retrying")
                return
            if (self._refusals or connected.is_set()) and self.log_disconnects:
                self.log("connected again")
            self._refusals = 0
            c.subscribe(reply_topic(self.state.id, "#"), qos=1)
            self._want_resend(0)      # whatever the broker may have lost meanwhile
            connected.set()

        def on_disconnect(c, userdata, flags, reason, properties):
            if connected.is_set() and self.log_disconnects and not (self.stopping.is_set()
                                                                    or self._done()):
                self.log(f"lost the broker ({reason}); reconnecting")

        client.on_connect, client.on_disconnect = on_connect, on_disconnect
        client.on_message = self._on_reply
        client.connect_async(self.gateway.host, self.gateway.port, keepalive=30)
        client.loop_start()
        deadline = time.monotonic() + CONNECT_TIMEOUT_S + 10
        while not connected.wait(0.1):
            if self.stopping.is_set() or self._refusals >= REFUSALS_BEFORE_REJOIN:
                self._close(client)
                if not self.stopping.is_set():
                    self.log("the broker does not know this device any more: joining again")
                    self._forget_credentials()
                return None
            if time.monotonic() > deadline:
                self._close(client)
                raise SimulatorError(f"cannot reach the broker at {self.gateway.host}:"
                                     f"{self.gateway.port}")
        return client

    def _on_reply(self, client, userdata, msg):
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            doc = {"code": "?", "message": msg.payload[:80].decode(errors="replace")}
        if msg.topic.endswith("/receipt"):
            self._on_receipt(doc)
        elif msg.topic.endswith("/command"):
            self._commands.append(doc)
            self._wake.set()
        elif msg.topic.endswith("/error"):
            self.errors.append(doc)
            self.log(f"error {doc.get('code')}: {doc.get('message')} (seq {doc.get('seq')})")
            if doc.get("code") == "out_of_order" and isinstance(doc.get("expected"), int):
                self._want_resend(doc["expected"])
        else:
            self.log(f"reply on {msg.topic.rsplit('/', 1)[-1]}: {describe(doc)}")

    def _on_receipt(self, doc):
        """Forget the frames the receipt covers; note frames the node will never take."""
        mark, start = doc.get("seq"), doc.get("from", 1)
        if not isinstance(mark, int) or not isinstance(start, int):
            return
        with self._lock:
            if mark > self.receipted:
                self._progress = time.monotonic()
            self.receipted = max(self.receipted, mark)
            self.receipt = doc
            lost = self.state.outbox.settle(mark, start) if self.state.outbox else []
        if lost:
            self.log(f"the gateway began a new run at seq {start}: frames {lost[0]}..{lost[-1]} "
                     "it never took are given up")
        self._wake.set()

    def _want_resend(self, seq):
        with self._lock:
            self._resend_from = seq if self._resend_from is None else min(self._resend_from, seq)
        self._wake.set()

    def _resend(self, client):
        """Send again the kept frames a receipt, an ``out_of_order`` reply or a reconnection
        showed missing, or all of them after RESEND_S without receipt progress."""
        now = time.monotonic()
        with self._lock:
            outbox, start = self.state.outbox, self._resend_from
            if start is None and len(outbox) and now - self._progress > RESEND_S:
                start = 0
            last_at, last_from = self._resent
            if start is None or (now - last_at < RESEND_GAP_S and last_from is not None
                                 and start >= last_from):
                return
            self._resend_from, self._resent, self._progress = None, (now, start), now
            frames = outbox.since(start)
        for _, raw in frames:
            client.publish(device_topic(self.state.id, Frame.decode(raw).kind_name), raw, qos=1)

    @staticmethod
    def _close(client):
        client.disconnect()
        client.loop_stop()

    def _publish_loop(self):
        """Send the hello, then a frame per interval. True when done (stopped or ``frames``
        sent); False to onboard again."""
        client = self._connect_as_device()
        if client is None:
            return self.stopping.is_set()
        chain_id = self.state.credentials["chain_id"]
        behaviour = sim_kinds.behaviour(self.kind, random.Random(self.state.seed + bytes(
            str(self.state.seq), "ascii")), self.state.salt())
        behaviour.restore(self.state.behaviour)
        try:
            self._resend(client)      # frames an earlier run left unreceipted go first
            self._send(client, chain_id, "hello", behaviour.hello())
            next_at = time.monotonic() + self.interval
            while not self._done() and not self.stopping.is_set():
                self._wake.wait(max(0.0, next_at - time.monotonic()))
                self._wake.clear()
                if self.stopping.is_set():
                    break
                if self._refusals >= REFUSALS_BEFORE_REJOIN:
                    self.log("the broker refuses this device now (revoked?): joining again")
                    self._forget_credentials()
                    return False
                self._resend(client)
                self._serve(client, chain_id, behaviour)
                if time.monotonic() < next_at:
                    continue
                next_at = max(next_at + self.interval, time.monotonic())
                if not self._room():
                    continue
                kind, payload = behaviour.tick(self.state.seq + 1)
                self.state.behaviour = behaviour.state()
                self._send(client, chain_id, kind, payload)
            if not self.stopping.is_set():
                self._drain(client)
        finally:
            self._close(client)
        return True

    def _room(self):
        """False while the outbox is full (the node has not receipted MAX_KEPT frames): the
        device waits rather than drop any."""
        full = len(self.state.outbox) >= MAX_KEPT
        if full and not self._full:
            self.log(f"{MAX_KEPT} frames not receipted yet: waiting for the gateway")
        self._full = full
        return not full

    def _done(self):
        return self.frames is not None and self.sent >= self.frames

    def _serve(self, client, chain_id, behaviour):
        """Take the agent's commands (kept on disk at once), then send every frame the
        commanded sessions need now (their opening at once: a gate opens on the voucher)."""
        changed = False
        while self._commands:
            changed = behaviour.command(self._commands.popleft()) or changed
        if changed:
            self.state.behaviour = behaviour.state()
            self.state.save()
        while not self._done() and self._room():
            frame = behaviour.serve(self.state.seq + 1)
            if frame is None:
                return
            self.state.behaviour = behaviour.state()
            self._send(client, chain_id, *frame)

    def _send(self, client, chain_id, kind, payload):
        """Sign the next frame, keep it in the outbox (on disk), then publish it (QoS 1)."""
        state = self.state
        seq = state.seq + 1
        frame = sign_frame(state.key, chain_id, state.id, kind, seq, time.time_ns() // 1_000_000,
                           payload)
        with self._lock:
            state.outbox.keep(seq, frame)
        state.seq = seq
        state.save()
        client.publish(device_topic(state.id, kind), frame, qos=1)
        self.sent += 1
        if self.first_seq is None:
            self.first_seq = seq
        if self.on_frame is not None:
            self.on_frame(self, seq, kind, payload, frame)
        else:
            self.log(f"seq {seq:<6} {kind:<5}  {describe(payload)}")

    def _drain(self, client):
        """Wait (bounded) until receipts cover every kept frame, sending again what is missing."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while len(self.state.outbox):
            if time.monotonic() > deadline:
                self.log(f"no receipt for seq {self.state.seq} in time (the node confirmed "
                         f"seq {self.receipted}); {len(self.state.outbox)} frame(s) kept for the "
                         "next run")
                return
            self._resend(client)
            self._wake.wait(0.05)
            self._wake.clear()
