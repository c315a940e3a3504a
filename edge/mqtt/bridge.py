"""The zero-loss MQTT bridge (DESIGN §6, docs §15): device frames from Mosquitto into LMDB.

paho's network thread only queues what arrives (with its arrival time). One worker thread takes
what is queued as it comes and, for each chunk:

1. checks each message without touching its signature (size, topic, approved device, layout,
   duplicate, rate, timestamp, JSON payload, the fields of its kind's schema: ``schemas.py``);
2. hands every remaining signature of the chunk to the verifier (``verifier.py``: one thread for
   the bridge's life), so the worker checks the next chunk meanwhile.

The checked chunks form a **batch**, finished once its oldest message has waited ``commit_ms``
(or it holds ``batch_size`` messages): so the bridge commits at most ``1000 / commit_ms`` times a
second, whatever the number of devices, and acknowledges every message within ``commit_ms`` plus
the time to finish its batch (docs §15.4). Finishing a batch:

3. checks sequence numbers in arrival order, against what the previous batches committed, so a
   forged frame never moves a device's sequence: a device's frames are taken strictly in seq
   order (``sequence.py``), and then the schema's stateful rules (timestamps, counters,
   sessions) the same way;
4. commits the accepted frames in ONE synced LMDB write transaction (appended to the frame log,
   ``devices.py``);
5. THEN acknowledges every message of the batch (``client.ack``) and sends the error replies;
6. tells each device, on ``reply/receipt``, ``{"seq": n, "from": s}``: every frame of it from
   ``s`` to ``n`` is stored. At most once a second per device while frames keep coming, and at
   once when the bridge is idle.

A message is acknowledged only once what it carried is durable (or refused), so a crash loses
nothing acknowledged: the broker keeps unacknowledged messages in the bridge's persistent session
and delivers them again, and a frame that was already stored comes back as a duplicate (same
sequence number, same bytes) and is acknowledged silently. The broker's PUBACK to a device only
means the broker has the frame (Mosquitto saves its queues now and then, not per message); the
receipt is the node's own word. A device keeps each frame until a receipt covers it and sends
again what a receipt or an ``out_of_order`` reply shows missing, so nothing is lost even when the
broker itself crashes: frames are taken in seq order, a frame above a missing one waits for it.

Acknowledgements name a packet id of one connection: the worker acknowledges a message only on
the connection that delivered it (a connection *generation*, moved under a lock by paho's
disconnect and connect callbacks), never a redelivered message's id on a later connection, where
the broker may already have given that id to another message.
"""

import collections
import re
import threading
import time
import traceback

import paho.mqtt.client as mqtt

from chain.store import StorageError
from edge.mqtt import ingest, schemas, topics
from edge._fast.codec_py import FRAME_HELLO
from edge.mqtt.frames import KIND_CODES, Frame, frame_message
from edge.mqtt.provision import ProvisionError, read_join_request
from edge.mqtt.devices import PENDING, UNKNOWN, DeviceError
from edge.mqtt.onboarding import TRACKED, JoinLimiter
from edge.mqtt.ratelimit import Buckets
from edge.mqtt.retention import DiskLow, Retention
from edge.mqtt.sequence import AHEAD, BEHIND, MAX_SKIP, NEXT, RESTART, Position
from edge.mqtt.topics import device_id_of
from edge.mqtt.verifier import Verifier

REFUSAL_LOG_S = 10.0         # refused join requests are logged at most this often
BROKER_LOG = "$SYS/broker/log/N"   # the broker's notices: who connected from where
_CONNECTED = re.compile(r"New client connected from (\S+):\d+ as ([0-9a-f]{16}) \(")
UNKNOWN_REFRESH_S = 1.0      # re-read the approved devices at most this often for unknown ids
RATE_REPLY_INTERVAL_S = 1.0  # at most one reply a second per device for each of these codes:
THROTTLED_REPLIES = (ingest.RATE_LIMITED, ingest.OUT_OF_ORDER)
REPLY_RATE = (10.0, 100)     # error replies a second per device, burst (beyond: counted only)
MAX_PENDING = 20_000         # paho's thread waits (TCP back-pressure) beyond this many queued
RETRY_S = 1.0                # a failed commit is retried after this long, never given up
RECEIPT_INTERVAL_S = 1.0     # at most one receipt a second per device while frames keep coming
COMMIT_MS = 200              # a message waits at most this long for its batch to be finished
BATCH_SIZE = 2000            # messages finished in one commit at most (a burst: back to back)
DUPLICATE_WINDOW = 1024      # frames a redelivery is looked for among, back from a device's newest
LATENCIES_KEPT = 100_000     # acknowledgement delays kept for ``stats()``


class BridgeMetrics:
    """Prometheus counters of the bridge, in ``registry`` (the node's), for /metrics."""

    def __init__(self, registry=None):
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram
        r = registry if registry is not None else REGISTRY
        self.accepted = Counter("smartshare_mqtt_frames_accepted", "Device frames stored",
                                registry=r)
        self.duplicates = Counter("smartshare_mqtt_frames_duplicate",
                                  "Redelivered frames already stored (acknowledged silently)",
                                  registry=r)
        self.rejected = Counter("smartshare_mqtt_frames_rejected", "Device frames refused, by code",
                                ["code"], registry=r)
        self.provision = Counter("smartshare_mqtt_provision_requests",
                                 "Join requests, by result", ["result"], registry=r)
        self.batch_seconds = Histogram(
            "smartshare_mqtt_batch_seconds", "Time to finish one batch (sequence, commit, ack)",
            registry=r, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0))
        self.ack_seconds = Histogram(
            "smartshare_mqtt_ack_seconds", "From a message's arrival to its acknowledgement",
            registry=r, buckets=(0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1.0, 2.5))
        self.pruned = Counter("smartshare_mqtt_frames_pruned",
                              "Stored frames deleted by the retention policy", registry=r)
        self.frames_bytes = Gauge("smartshare_mqtt_frames_bytes",
                                  "Bytes of the data file's pages holding frames", registry=r)
        self.disk_free = Gauge("smartshare_disk_free_bytes",
                               "Free bytes on the data folder's file system (at the last commit)",
                               registry=r)
        self.disk_low = Counter("smartshare_disk_low",
                                "Commits held back: free space under the watermark", registry=r)


class _Batch:
    """The working state of one batch."""

    __slots__ = ("acks", "arrivals", "replies", "candidates", "accepted", "joins", "positions",
                 "moved", "duplicates", "rejected", "stored", "jobs", "checked", "mono",
                 "started", "sequencing")

    def __init__(self):
        self.acks = []        # (generation, mid, qos) of every message
        self.arrivals = []    # when each message arrived (time.monotonic())
        self.replies = []     # (device id, code, message, seq, expected seq or None)
        # (device id, frame, raw, pubkey, schema, payload, refusal): their signatures to verify;
        # refusal is (code, message) when the content is refused: a signed frame that is the
        # next in seq order is then settled as refused (docs §15.4)
        self.candidates = []
        self.accepted = []    # (device id, seq, raw)
        self.joins = []       # (topic device id, payload) of provisioning messages
        self.positions = {}   # device id -> its stored Position (read once per batch)
        self.moved = {}       # device id -> its Position once this batch is committed
        self.duplicates = 0
        self.rejected = collections.Counter()
        self.stored = {}      # device id -> Position known stored (for its receipt)
        self.jobs = []        # the verifier's jobs for ``candidates``, in order
        self.checked = None   # (replies, rejected, duplicates, stored) after the checks
        self.mono = self.started = 0.0
        self.sequencing = None  # the schemas' stateful checks of this batch

    @classmethod
    def merged(cls, chunks):
        """One batch of the checked ``chunks``, in order (to be finished together)."""
        b = cls()
        for c in chunks:
            b.acks += c.acks
            b.arrivals += c.arrivals
            b.candidates += c.candidates
            b.joins += c.joins
            b.jobs += c.jobs
            b.replies += c.replies
            b.rejected.update(c.rejected)
            b.duplicates += c.duplicates
            b.stored.update(c.stored)
        b.mono, b.started = chunks[-1].mono, chunks[0].started
        b.checked = (list(b.replies), collections.Counter(b.rejected), b.duplicates,
                     dict(b.stored))
        return b

    def restart_sequencing(self):
        """Back to the state after the checks (a failed commit is sequenced again)."""
        replies, rejected, duplicates, stored = self.checked
        self.replies, self.rejected = list(replies), collections.Counter(rejected)
        self.duplicates, self.stored = duplicates, dict(stored)
        self.accepted, self.positions, self.moved = [], {}, {}


class Bridge:
    """Device frames from the broker into the Store, acknowledged after commit."""

    def __init__(self, store, registry, *, host, port, username, password, client_id, chain_id,
                 log=print, metrics=None, batch_size=BATCH_SIZE, commit_ms=COMMIT_MS,
                 rate_per_s=200, burst=1000, future_ms=300_000, on_commit=None,
                 on_subscribed=None, max_pending=MAX_PENDING, tls_context=None,
                 retention=None):
        if batch_size < 1 or commit_ms < 0:
            raise ValueError("batch_size must be >= 1 and commit_ms >= 0")
        self.store, self.registry = store, registry
        self.host, self.port, self.tls_context = host, port, tls_context
        self.username, self.password, self.client_id = username, password, client_id
        self.chain_id = chain_id
        self.log, self.metrics = log, metrics
        self.batch_size, self.commit_s = batch_size, commit_ms / 1000.0
        self.future_ms = future_ms
        self.on_commit = on_commit  # called as on_commit([(device id, seq), ...], time_ns)
        # called (paho's thread) once subscribed: the node has the broker save its session, so
        # after a broker restart the bridge is subscribed before any device can publish
        self.on_subscribed = on_subscribed
        self.max_pending = max_pending
        self.retention = retention if retention is not None else Retention(store.path)
        self._buckets = Buckets(rate_per_s, burst)
        self._joins = JoinLimiter(time.monotonic())
        self._sources = collections.OrderedDict()   # provisioning client id -> its address
        self._refusals, self._refusal_logged = 0, -REFUSAL_LOG_S
        self._replied_at = {}    # (device id, code) -> when a throttled code was last replied
        self._reply_buckets = Buckets(*REPLY_RATE)
        self._stored_seq = {}    # device id -> its Position known stored (for receipts)
        self._owed = set()       # devices owed a receipt
        self._receipted_at = {}  # device id -> monotonic time of its last receipt
        self._keys = {}
        self._keys_read_at = 0.0
        self.rules = schemas.FrameRules(store, registry)
        self._inbox = collections.deque()
        self._verifier = Verifier()
        self._latencies = collections.deque(maxlen=LATENCIES_KEPT)
        self._wake = threading.Event()
        self._ready = threading.Event()
        self._conn_lock = threading.Lock()
        self._generation = 0
        self._connected = False
        self._stopping = False
        self._client = None
        self._worker = None
        self._stats_lock = threading.Lock()
        self._stats = {"accepted": 0, "duplicates": 0, "rejected": collections.Counter(),
                       "provision_requests": 0, "provision_rejected": 0, "ignored": 0,
                       "batches": 0, "commits": 0, "commit_failures": 0, "connects": 0,
                       "acknowledged": 0, "pruned": 0, "frames_bytes": 0,
                       "disk_free_bytes": None, "disk_low": 0}

    # -- life cycle ----------------------------------------------------------------------------

    def start(self):
        """Connect (persistent session, QoS 1, manual acknowledgement), subscribe to device
        frames and join requests, and start the worker. Returns at once; ``wait_ready`` waits
        for the subscription. paho reconnects on its own (1 s .. 30 s backoff)."""
        if self._client is not None:
            raise RuntimeError("the bridge is already started")
        self.refresh_devices()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             clean_session=False, protocol=mqtt.MQTTv311, manual_ack=True)
        client.username_pw_set(self.username, self.password)
        if self.tls_context is not None:
            client.tls_set_context(self.tls_context)
        client.reconnect_delay_set(1, 30)
        client.max_inflight_messages_set(100)   # our own outgoing replies
        client.max_queued_messages_set(100_000)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        self._stopping = False
        self._verifier.start()
        self._worker = threading.Thread(target=self._run, name="mqtt-bridge", daemon=True)
        self._worker.start()
        client.connect_async(self.host, self.port, keepalive=30)
        client.loop_start()

    def wait_ready(self, timeout=None):
        """True once connected and subscribed (False on timeout)."""
        return self._ready.wait(timeout)

    def stop(self):
        """Finish the batch in hand (commit and acknowledge it), then disconnect. Messages still
        queued are not acknowledged: the broker delivers them again next time."""
        if self._client is None:
            return
        self._stopping = True
        self._wake.set()
        self._worker.join()
        self._verifier.stop()
        self._client.disconnect()
        self._client.loop_stop()
        self._client = self._worker = None
        self._ready.clear()

    def publish(self, topic, payload, qos=1, retain=False):
        """Publish from any thread (paho's queue is in memory: not durable)."""
        if self._client is None:
            raise RuntimeError("the bridge is not started")
        return self._client.publish(topic, payload, qos=qos, retain=retain)

    def refresh_devices(self):
        """Reload the approved devices' keys (after an approval or a revocation)."""
        keys = self.registry.approved()
        self.rules.refresh(self.registry.all())
        self._keys = keys
        self._keys_read_at = time.monotonic()
        self._buckets.forget(keys)
        self._reply_buckets.forget(keys)

    def stats(self):
        with self._stats_lock:
            out = dict(self._stats)
            out["rejected"] = dict(self._stats["rejected"])
        out["queued"] = len(self._inbox)
        out["connected"] = self._connected
        out["devices"] = len(self._keys)
        out["verify_batches"] = self._verifier.batches
        delays = sorted(self._latencies)
        if delays:
            out["ack_p99_ms"] = round(1000 * delays[min(len(delays) - 1,
                                                        int(0.99 * len(delays)))], 1)
            out["ack_max_ms"] = round(1000 * delays[-1], 1)
        return out

    # -- paho's thread -------------------------------------------------------------------------

    def _bump_generation(self, connected):
        with self._conn_lock:
            self._generation += 1
            self._connected = connected

    def _on_pre_connect(self, client, userdata):
        self._bump_generation(False)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.log(f"mqtt bridge: broker refused the connection ({reason_code})")
            return
        self._bump_generation(True)
        with self._stats_lock:
            self._stats["connects"] += 1
        client.subscribe([(topics.DEVICE_FRAMES, 1), (topics.PROVISIONING, 1), (BROKER_LOG, 0)])

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._bump_generation(False)
        self._ready.clear()
        if not self._stopping:
            self.log(f"mqtt bridge: disconnected ({reason_code}); reconnecting")

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        if any(code.is_failure for code in reason_codes):
            self.log(f"mqtt bridge: subscription refused ({reason_codes}); check the ACL")
            return
        self._ready.set()
        if self.on_subscribed is not None:
            self.on_subscribed()

    def _on_message(self, client, userdata, msg):
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = None
        if topic == BROKER_LOG:
            return self._note_source(msg.payload)
        inbox = self._inbox
        while len(inbox) >= self.max_pending and not self._stopping:
            time.sleep(0.002)  # the worker is behind: stop reading, let TCP push back
        inbox.append((self._generation, msg.mid, msg.qos, topic, msg.payload, time.monotonic()))
        self._wake.set()

    # -- the worker ----------------------------------------------------------------------------

    def _run(self):
        """Check what arrives as it comes (signatures verify meanwhile); finish the batch once
        its oldest message has waited ``commit_ms`` or it is full. On stop, the checked batch is
        finished (what is still queued is not acknowledged: the broker delivers it again)."""
        chunks, count, due = [], 0, None
        while not self._stopping:
            messages = self._take(due, self.batch_size - count)
            if messages:
                chunk = self._retrying(self._check_batch, messages)
                if chunk is None:
                    return
                chunks.append(chunk)
                count += len(messages)
                due = due or messages[0][5] + self.commit_s
            if chunks and (count >= self.batch_size or time.monotonic() >= due):
                if self._retrying(self._finish, chunks) is None:
                    return
                chunks, count, due = [], 0, None
            elif not chunks:
                self._send_receipts(time.monotonic(), idle=True)
        if chunks:
            self._retrying(self._finish, chunks)

    def _take(self, due, room):
        """Up to ``room`` queued messages; when none is queued, wait for one until ``due`` (or
        half a second with no batch open)."""
        inbox = self._inbox
        if not inbox:
            self._wake.clear()
            timeout = 0.5 if due is None else due - time.monotonic()
            if not inbox and timeout > 0:
                self._wake.wait(timeout)
        batch = []
        while inbox and len(batch) < room:
            batch.append(inbox.popleft())
        return batch

    def _retrying(self, step, work):
        """``step(work)``, retried after storage trouble (or any failure of a commit) until it
        succeeds: nothing is refused or acknowledged meanwhile. None if the bridge stopped first
        (the messages stay unacknowledged: the broker delivers them again)."""
        while True:
            try:
                return step(work)
            except DiskLow as exc:
                self._disk_low(exc)
                time.sleep(RETRY_S)
                if self._stopping:
                    return None
            except Exception:
                with self._stats_lock:
                    self._stats["commit_failures"] += 1
                self.log(f"mqtt bridge: {step.__name__.strip('_')} failed, retrying:\n"
                         + traceback.format_exc())
                time.sleep(RETRY_S)
                if self._stopping:
                    return None

    def _disk_low(self, exc):
        """Count a commit held back by the watermark; say so at most once a minute."""
        with self._stats_lock:
            self._stats["disk_low"] += 1
            first = self._stats["disk_low"] % 60 == 1
        self._note_free(exc.free)
        if self.metrics is not None:
            self.metrics.disk_low.inc()
        if first:
            self.log(f"mqtt bridge: {exc}")

    def _check_batch(self, messages):
        """Steps 1-2: check every message and hand the candidates' signatures to the
        verifier; returns the checked chunk."""
        b = _Batch()
        b.started = time.perf_counter()
        now_ms = time.time_ns() // 1_000_000
        b.mono = mono = time.monotonic()
        with self.store.read() as txn:
            for item in messages:
                b.acks.append(item[:3])
                b.arrivals.append(item[5])
                try:
                    self._check(item, txn, b, now_ms, mono)
                except StorageError:
                    raise       # the storage failed, not the message: the batch is retried
                except Exception as exc:  # a bug must not stop the others: refuse this one
                    self.log("mqtt bridge: could not check a message:\n" + traceback.format_exc())
                    device = topics.parse_device_topic(item[3] or "")
                    if device is not None:
                        self._reject(b, device[0], ingest.MALFORMED,
                                     f"could not be checked ({type(exc).__name__})", None, mono)
        if b.candidates:
            b.jobs.append(self._verifier.submit(
                [c[3] for c in b.candidates],
                [frame_message(self.chain_id, c[2]) for c in b.candidates],
                [c[1].signature for c in b.candidates]))
        b.checked = (list(b.replies), collections.Counter(b.rejected), b.duplicates,
                     dict(b.stored))
        return b

    def _finish(self, chunks):
        """Steps 3-6 for the checked ``chunks``: sequence checks on fresh storage, commit,
        acknowledge, reply; True."""
        b = _Batch.merged(chunks)
        b.restart_sequencing()
        if b.jobs:
            verified = [ok for job in b.jobs for ok in job.result()]
            with self.store.read() as txn:
                self._sequence(b, verified, txn, b.mono)
        for device_id, payload in b.joins:
            self._provision(device_id, payload, b.mono)
        b.joins = []
        if b.moved:
            self._note_free(self.retention.check_space())
            self.store.write(self._store_frames(b.accepted, b.sequencing, b.moved))
        if b.accepted and self.on_commit is not None:
            try:
                self.on_commit([(d, s) for d, s, _ in b.accepted], time.time_ns())
            except Exception:
                self.log("mqtt bridge: on_commit failed:\n" + traceback.format_exc())
        self._acknowledge(b.acks, b.arrivals)
        for device_id, code, message, seq, expected in b.replies:
            self._client.publish(topics.reply_topic(device_id, "error"),
                                 ingest.error_reply(code, message, seq, expected), qos=1)
        self._note_stored(b)
        self._send_receipts(time.monotonic(), idle=not self._inbox)
        self._account(b, time.perf_counter() - b.started)
        return True

    def _note_stored(self, b):
        """Remember the stored position of each device the batch touched (marks never go
        back: an older batch's view never replaces a newer one)."""
        known = self._stored_seq
        for device_id, position in list(b.stored.items()) + list(b.moved.items()):
            if position.mark >= known.get(device_id, Position()).mark:
                known[device_id] = position
        self._owed.update(b.stored)
        self._owed.update(b.moved)

    def _send_receipts(self, now, idle):
        """Publish ``{"seq": n, "from": s}`` on each device's ``reply/receipt``: every frame of it
        from ``s`` up to ``n`` is in LMDB. Idle: all that are owed; busy: only to devices not
        told for a second."""
        for device_id in list(self._owed):
            if idle or now - self._receipted_at.get(device_id, -RECEIPT_INTERVAL_S) \
                    >= RECEIPT_INTERVAL_S:
                self._owed.discard(device_id)
                self._receipted_at[device_id] = now
                self._client.publish(topics.reply_topic(device_id, "receipt"),
                                     ingest.receipt_reply(self._stored_seq[device_id]), qos=1)

    def _store_frames(self, accepted, sequencing, positions):
        def work(txn):
            now_ms = time.time_ns() // 1_000_000
            self.registry.store_frames(txn, accepted, positions, sequencing.changed(), now_ms)
            pruned = self.retention.prune(self.registry, txn, len(accepted),
                                          sum(len(raw) for _, _, raw in accepted), now_ms)
            kept = self.registry.frames_bytes(txn)
            with self._stats_lock:
                self._stats["pruned"] += pruned
                self._stats["frames_bytes"] = kept
            if self.metrics is not None:
                self.metrics.pruned.inc(pruned)
                self.metrics.frames_bytes.set(kept)
        return work

    def _note_free(self, free):
        with self._stats_lock:
            self._stats["disk_free_bytes"] = free
        if self.metrics is not None:
            self.metrics.disk_free.set(free)

    def _acknowledge(self, acks, arrivals):
        client = self._client
        with self._conn_lock:
            generation = self._generation
            for gen, mid, qos in acks:
                if qos and gen == generation:
                    client.ack(mid, qos)
        now = time.monotonic()
        delays = [now - arrived for arrived in arrivals]
        self._latencies.extend(delays)
        with self._stats_lock:
            self._stats["acknowledged"] += len(delays)
        if self.metrics is not None:
            for delay in delays:
                self.metrics.ack_seconds.observe(delay)

    # -- checks --------------------------------------------------------------------------------

    def _check(self, item, txn, b, now_ms, mono):
        topic, payload = item[3], item[4]
        parsed = topics.parse_device_topic(topic) if topic is not None else None
        if parsed is None:
            joining = topics.parse_provision_topic(topic) if topic is not None else None
            if joining is not None:
                b.joins.append((joining, payload))
            else:
                with self._stats_lock:
                    self._stats["ignored"] += 1
            return
        device_id, kind = parsed
        if len(payload) > ingest.MAX_MQTT_PAYLOAD:
            return self._reject(b, device_id, ingest.OVERSIZE,
                                f"MQTT payload of {len(payload)} bytes exceeds "
                                f"{ingest.MAX_MQTT_PAYLOAD}", None, mono)
        pubkey = self._keys.get(device_id)
        if pubkey is None and mono - self._keys_read_at >= UNKNOWN_REFRESH_S:
            self.refresh_devices()
            pubkey = self._keys.get(device_id)
        if pubkey is None:
            return self._reject(b, device_id, ingest.UNKNOWN_DEVICE,
                                f"device {device_id.hex()} is not approved", None, mono)
        try:
            frame, error = Frame.decode(payload), None
        except ValueError as exc:  # DecodeError names the field
            frame, error = None, str(exc)
        matches = (frame is not None and frame.device_id == device_id
                   and frame.kind == KIND_CODES[kind])
        if matches and self._is_stored(txn, b, device_id, frame.seq, payload):
            b.duplicates += 1
            b.stored[device_id] = b.positions[device_id]
            return
        seq = frame.seq if frame is not None else None
        if not self._buckets.take(device_id, mono):
            return self._reject(b, device_id, ingest.RATE_LIMITED,
                                f"over {self._buckets.rate:g} frames/s (burst "
                                f"{self._buckets.burst})", seq, mono)
        if frame is None:
            return self._reject(b, device_id, ingest.MALFORMED, error, None, mono)
        if frame.device_id != device_id:
            return self._reject(b, device_id, ingest.WRONG_TOPIC,
                                f"frame of device {frame.device_id.hex()} on the topic of "
                                f"{device_id.hex()}", seq, mono)
        schema, doc, refusal = None, None, self._content_refusal(kind, frame, matches, now_ms)
        if refusal is None:
            try:
                doc = ingest.check_payload(frame.payload)
                schema = self.rules.check_fields(device_id, kind, doc)
            except ingest.PayloadError as exc:
                refusal = (ingest.BAD_PAYLOAD, f"payload: {exc}")
            except schemas.SchemaError as exc:
                refusal = (exc.code, f"payload: {exc}")
        b.candidates.append((device_id, frame, payload, pubkey, schema, doc, refusal))

    def _content_refusal(self, kind, frame, matches, now_ms):
        """``(code, message)`` when the frame's kind or timestamp is refused, else None."""
        if not matches:
            return ingest.WRONG_TOPIC, f"{frame.kind_name} frame on the {kind} topic"
        if frame.timestamp_ms > now_ms + self.future_ms:
            return ingest.FUTURE, (f"timestamp {frame.timestamp_ms} is more than "
                                   f"{self.future_ms} ms ahead of the gateway's clock ({now_ms})")
        return None

    def _position(self, txn, b, device_id):
        position = b.positions.get(device_id)
        if position is None:
            position = b.positions[device_id] = self.registry.position(txn, device_id)
        return position

    def _is_stored(self, txn, b, device_id, seq, raw):
        return self._stored_frame(txn, device_id, seq, self._position(txn, b, device_id)) == raw

    def _stored_frame(self, txn, device_id, seq, position):
        """The stored bytes of a device's frame ``seq``, None, or UNKNOWN (devices.py)."""
        return self.registry.find_frame(txn, device_id, seq, position.mark, DUPLICATE_WINDOW)

    def _sequence(self, b, verified, txn, mono):
        """Sequence checks, in arrival order: each device's frames are taken strictly in seq
        order (``sequence.Position``); a refused frame moves the sequence only if it is the next
        one and its signature holds (only the device can settle its own seq)."""
        b.sequencing = self.rules.sequencing()
        taken = {}   # (device id, seq) -> frame bytes accepted earlier in this batch
        for (device_id, frame, raw, _, schema, doc, refusal), ok in zip(b.candidates, verified):
            seq = frame.seq
            position = b.moved.get(device_id) or self._position(txn, b, device_id)
            place = position.place(seq, frame.kind == FRAME_HELLO)
            if refusal is not None or not ok:
                code, message = refusal or (ingest.BAD_SIGNATURE, (
                    f"signature does not verify for device {device_id.hex()} on chain "
                    f"{self.chain_id!r}"))
                self._reject(b, device_id, code, message, seq, mono)
                if ok and place in (NEXT, RESTART):     # the device's own frame: settled
                    b.moved[device_id] = position.refuse(seq)
            elif place in (NEXT, RESTART):
                if self._schema_holds(b, txn, device_id, frame, schema, doc, mono):
                    b.moved[device_id] = position.stored(seq)
                    b.accepted.append((device_id, seq, raw))
                    taken[(device_id, seq)] = raw
                else:
                    b.moved[device_id] = position.refuse(seq)
            elif place == BEHIND:
                self._behind(b, txn, device_id, seq, raw, position, taken, mono)
            elif place == AHEAD:
                self._reject(b, device_id, ingest.OUT_OF_ORDER,
                             f"seq {seq} is not the next one: frames from seq {position.mark + 1} "
                             f"are missing; send them first", seq, mono, position.mark + 1)
            else:
                self._reject(b, device_id, ingest.OUT_OF_ORDER,
                             f"a hello may start a new run at most {MAX_SKIP} above the stored "
                             f"seq {position.mark}, not at {seq}", seq, mono, position.mark + 1)

    def _behind(self, b, txn, device_id, seq, raw, position, taken, mono):
        """A frame at or below the mark (its signature holds): a duplicate when those bytes are
        stored (or were taken earlier in this batch), or when its seq is too far back to tell
        (docs §15.4: its stored copy is beyond DUPLICATE_WINDOW frames, or pruned); else a
        replay."""
        stored = self._stored_frame(txn, device_id, seq, position)
        if taken.get((device_id, seq)) == raw or stored == raw or (
                stored is UNKNOWN and seq not in position.refused):
            b.duplicates += 1
            b.stored.setdefault(device_id, position)
        elif seq in position.refused:
            self._reject(b, device_id, ingest.REPLAYED, f"seq {seq} was refused before (its "
                         f"error reply said why); the next seq is {position.mark + 1}", seq, mono)
        else:
            self._reject(b, device_id, ingest.REPLAYED,
                         f"seq {seq} is at or below the stored seq {position.mark}, with other "
                         f"bytes", seq, mono)

    def _schema_holds(self, b, txn, device_id, frame, schema, doc, mono):
        """The schema's stateful rules (schemas.Sequencing); False after refusing the frame."""
        try:
            b.sequencing.check(txn, device_id, frame, schema, doc)
        except schemas.SchemaError as exc:
            self._reject(b, device_id, exc.code, str(exc), frame.seq, mono)
            return False
        return True

    def _reject(self, b, device_id, code, message, seq, mono, expected=None):
        """Count a refusal and queue its error reply, unless replies to the device are being
        throttled (so a device that never reads cannot grow its queue in the broker fast)."""
        b.rejected[code] += 1
        if code in THROTTLED_REPLIES:
            if mono - self._replied_at.get((device_id, code), -1e9) < RATE_REPLY_INTERVAL_S:
                return
            self._replied_at[(device_id, code)] = mono
        if self._reply_buckets.take(device_id, mono):
            b.replies.append((device_id, code, message, seq, expected))

    # -- join requests (onboarding.py) --------------------------------------------------------

    def _note_source(self, payload):
        """paho's thread: remember the address a provisioning client connected from (the ACL
        lets it publish a join request only under its own client id)."""
        found = _CONNECTED.search(payload.decode(errors="replace"))
        if found is not None and "u'provision'" in payload.decode(errors="replace"):
            address, client_id = found.groups()
            self._sources[client_id] = address
            self._sources.move_to_end(client_id)
            while len(self._sources) > TRACKED:
                self._sources.popitem(last=False)

    def _provision(self, topic_id, payload, mono):
        """A join request: recorded as a pending device within the limits of onboarding.py;
        refusals are counted and logged now and then (the device cannot read any reply before
        it is approved)."""
        result, source = "accepted", self._sources.get(topic_id.hex(), "unknown")
        try:
            known = self.registry.get(topic_id)
            refused = self._joins.allow(topic_id, source, mono,
                                        listed=known is not None and known["status"] == PENDING)
            if refused is not None:
                raise ProvisionError(refused)
            pubkey, info = read_join_request(payload)
            if device_id_of(pubkey) != topic_id:
                raise ProvisionError(f"pubkey is of device {device_id_of(pubkey).hex()}, not "
                                     f"{topic_id.hex()}")
            try:
                record = self.registry.request(pubkey, info, source=source)
            except DeviceError as exc:
                raise ProvisionError(str(exc)) from None
            if record.get("last_request_ms") == record.get("requested_ms"):   # a new one
                self.log(f"mqtt bridge: join request from device {topic_id.hex()} at {source} "
                         f"({record['status']})")
        except ProvisionError as exc:
            result = "rejected"
            self._log_refusal(topic_id, exc, mono)
        with self._stats_lock:
            self._stats["provision_requests" if result == "accepted" else "provision_rejected"] += 1
        if self.metrics is not None:
            self.metrics.provision.labels(result=result).inc()

    def _log_refusal(self, topic_id, exc, mono):
        self._refusals += 1
        if mono - self._refusal_logged >= REFUSAL_LOG_S:
            more = f" ({self._refusals - 1} more refused since)" if self._refusals > 1 else ""
            self.log(f"mqtt bridge: join request on {topics.provision_topic(topic_id)} refused: "
                     f"{exc}{more}")
            self._refusals, self._refusal_logged = 0, mono

    def _account(self, b, seconds):
        with self._stats_lock:
            s = self._stats
            s["batches"] += 1
            s["commits"] += 1 if b.accepted else 0
            s["accepted"] += len(b.accepted)
            s["duplicates"] += b.duplicates
            s["rejected"].update(b.rejected)
        m = self.metrics
        if m is not None:
            m.accepted.inc(len(b.accepted))
            m.duplicates.inc(b.duplicates)
            for code, n in b.rejected.items():
                m.rejected.labels(code=code).inc(n)
            m.batch_seconds.observe(seconds)
