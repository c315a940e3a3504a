"""The node's devices: who asked to join, who was approved or revoked, and their frames.

Named LMDB databases in the node's one environment (DESIGN §9, docs/protocol.md §15.4):

    devices      device id (8 bytes) -> JSON record (public key, kind, model, status, times)
    device_seq   device id -> u64be(n of its newest stored frame, 0: none) || its
                 ``sequence.Position`` (frames start..mark are taken)
    frames       u64be(n) -> u64be(n of the same device's previous frame, 0: none) || u64be(seq)
                 || u64be(arrival, ms since the epoch) || the signed frame (§11)

Frames are numbered in the order they are stored, so every commit appends at the end of one
B-tree whatever the number of devices (keyed by device they would touch a page per device), and
the oldest go first when pruned (``prune_frames``: older than the retention window, or beyond the
byte budget). A device's frames are found by walking back from its newest.
"""

import json
import secrets
import struct
import time

from edge.mqtt import onboarding
from edge.mqtt.sequence import Position
from edge import _fast
from edge.mqtt.topics import device_id_of

PENDING, APPROVED, REVOKED = "pending", "approved", "revoked"
U64 = struct.Struct(">Q")
LINK = struct.Struct(">QQQ")     # previous n, seq, arrival ms
MAX_INFO = 256
PER_FRAME_OVERHEAD = 16   # an LMDB leaf node's header and key, beside the value
UNKNOWN = object()   # find_frame: too far back (or pruned) to tell whether a seq is stored


class DeviceError(Exception):
    """A device operation that cannot be done; the message says why."""


class DeviceRegistry:
    """Device records over the node's Store."""

    def __init__(self, store):
        self.store = store
        self.devices = store.db("devices")
        self.seqs = store.db("device_seq")
        self.frames = store.db("frames")

    def request(self, pubkey, info, source=None, now_ms=None):
        """Record a join request (pending), within the limits of ``onboarding.py``; a device
        already known keeps its status (a pending one is refreshed). Returns the record, or
        raises DeviceError saying why it was refused. ``info`` is a small dict (kind, model,
        firmware) shown to the owner; ``source`` where the request came from (an IP address;
        None: the owner, on this machine, with no per-source limit)."""
        device_id, now_ms = device_id_of(pubkey), now_ms if now_ms is not None else _now_ms()
        return self.store.write(lambda txn: self._request(txn, device_id, pubkey, info, source,
                                                          now_ms))

    def _request(self, txn, device_id, pubkey, info, source, now_ms):
        raw = txn.get(bytes(device_id), db=self.devices)
        if raw is not None:
            record = json.loads(raw)
            if record["status"] == PENDING and \
                    now_ms - record.get("last_request_ms", 0) >= onboarding.REFRESH_MS:
                record["last_request_ms"] = now_ms
                txn.put(bytes(device_id), _encode(record), db=self.devices)
            return record
        pending = [(key.hex(), r) for key, r in ((k, json.loads(v)) for k, v in
                                                 txn.cursor(db=self.devices))
                   if r["status"] == PENDING]
        try:
            expired, evicted = onboarding.admit(pending, device_id.hex(), source, now_ms)
        except ValueError as exc:
            raise DeviceError(str(exc)) from None
        for gone in expired + evicted:
            txn.delete(bytes.fromhex(gone), db=self.devices)
        record = {"id": device_id.hex(), "pubkey": bytes(pubkey).hex(), "status": PENDING,
                  "kind": _short(info.get("kind")), "model": _short(info.get("model")),
                  "firmware": _short(info.get("firmware")), "requested_ms": now_ms,
                  "last_request_ms": now_ms, "source": source or "local"}
        txn.put(bytes(device_id), _encode(record), db=self.devices)
        return record

    def approve(self, device_id):
        """Approve a pending (or revoked) device; returns ``(record, password)``: the new MQTT
        password, which only the device will be able to read."""
        record = self._require(device_id)
        if record["status"] == APPROVED:
            raise DeviceError(f"device {device_id.hex()} is already approved")
        password = secrets.token_urlsafe(24)
        record.update(status=APPROVED, approved_ms=_now_ms())
        self._put(device_id, record)
        return record, password

    def revoke(self, device_id):
        record = self._require(device_id)
        if record["status"] == REVOKED:
            raise DeviceError(f"device {device_id.hex()} is already revoked")
        record.update(status=REVOKED, revoked_ms=_now_ms())
        self._put(device_id, record)
        return record

    def get(self, device_id):
        with self.store.read() as txn:
            raw = txn.get(bytes(device_id), db=self.devices)
        return json.loads(raw) if raw is not None else None

    def all(self):
        with self.store.read() as txn:
            return [json.loads(raw) for _, raw in txn.cursor(db=self.devices)]

    def approved(self):
        """``{device id: public key}`` of every approved device."""
        return {bytes.fromhex(r["id"]): bytes.fromhex(r["pubkey"]) for r in self.all()
                if r["status"] == APPROVED}

    def position(self, txn, device_id):
        """The device's ``sequence.Position``: which of its frames are taken."""
        raw = txn.get(bytes(device_id), db=self.seqs)
        return Position.decode(raw[U64.size:] if raw is not None else None)

    def store_frames(self, txn, accepted, positions, now_ms=None):
        """Keep accepted frames ``[(device id, seq, frame)]`` (in order) and the devices' new
        ``positions`` (``{device id: Position}``), inside ``txn``: the frames are appended."""
        now_ms = _now_ms() if now_ms is None else now_ms
        heads = {bytes(d): self._head(txn, bytes(d)) for d in positions}
        cursor = txn.cursor(db=self.frames)
        n = U64.unpack(cursor.key())[0] if cursor.last() else 0
        records = []
        for device_id, seq, frame in accepted:
            device_id = bytes(device_id)
            n += 1
            records.append((U64.pack(n), LINK.pack(heads.get(device_id, 0), seq, now_ms) + frame))
            heads[device_id] = n
        if cursor.putmulti(records, append=True)[1] != len(records):
            raise DeviceError("the frame log is damaged: frames numbered beyond its end exist")
        with txn.cursor(db=self.seqs) as seqs:
            seqs.putmulti([(d, U64.pack(heads[d]) + p.encode())
                           for d, p in ((bytes(d), p) for d, p in positions.items())])

    def frames_of(self, device_id, limit=100, txn=None):
        """The newest ``limit`` stored frames of a device, newest first: ``[(seq, frame)]``."""
        def walk(t):
            return [(seq, frame) for _, seq, frame in self._back(t, bytes(device_id), limit)]
        return self._reading(walk, txn)

    def frames_after(self, device_id, seq, limit=1000, txn=None):
        """Frames of a device with a seq above ``seq``, oldest first, at most ``limit``:
        ``[(seq, frame)]``."""
        def walk(t):
            newer = []
            for _, frame_seq, frame in self._back(t, bytes(device_id)):
                if frame_seq <= seq:
                    break
                newer.append((frame_seq, frame))
            return newer[::-1][:limit]
        return self._reading(walk, txn)

    def last_seq(self, device_id, txn=None):
        """The seq of the device's newest stored frame (0: none)."""
        found = self.frames_of(device_id, 1, txn)
        return found[0][0] if found else 0

    def find_frame(self, txn, device_id, seq, mark, window):
        """The stored frame ``seq`` of a device whose position's mark is ``mark``: its bytes,
        None when it is not stored, or UNKNOWN when it lies more than ``window`` frames back
        (or was pruned)."""
        if seq > mark:
            return None
        if mark - seq >= window:
            return UNKNOWN
        for _, frame_seq, frame in self._back(txn, bytes(device_id), window):
            if frame_seq == seq:
                return frame
            if frame_seq < seq:
                return None
        return UNKNOWN

    def frames_bytes(self, txn):
        """The bytes the frame log's pages take in the data file."""
        stat = txn.stat(self.frames)
        return stat["psize"] * (stat["branch_pages"] + stat["leaf_pages"]
                                + stat["overflow_pages"])

    def prune_frames(self, txn, before_ms, budget_bytes, limit):
        """Delete, oldest first, at most ``limit`` frames that arrived before ``before_ms`` or
        that the log holds beyond ``budget_bytes``; returns how many."""
        excess = self.frames_bytes(txn) - budget_bytes
        cursor, deleted = txn.cursor(db=self.frames), 0
        while deleted < limit and cursor.first():
            value = cursor.value()
            if excess <= 0 and LINK.unpack_from(value)[2] >= before_ms:
                break
            excess -= len(value) + PER_FRAME_OVERHEAD
            cursor.delete()
            deleted += 1
        return deleted

    def _head(self, txn, device_id):
        raw = txn.get(device_id, db=self.seqs)
        return U64.unpack(raw[:U64.size])[0] if raw is not None else 0

    def _back(self, txn, device_id, limit=None):
        """``(n, seq, frame)`` of the device's stored frames, newest first (until a pruned one)."""
        n, count = self._head(txn, device_id), 0
        while n and (limit is None or count < limit):
            value = txn.get(U64.pack(n), db=self.frames)
            if value is None:
                return
            previous, seq, _ = LINK.unpack_from(value)
            yield n, seq, value[LINK.size:]
            n, count = previous, count + 1

    def _reading(self, work, txn):
        if txn is not None:
            return work(txn)
        with self.store.read() as t:
            return work(t)

    def prune_device_frames(self, device_id, below_seq, before_ms):
        """Delete the device's oldest frames with a seq below ``below_seq`` and a timestamp
        before ``before_ms`` (settled and past retention: edge/agent decides); returns how many.
        Only a run of the device's oldest frames goes, so its newest-first chain stays whole;
        timestamps never go back within a device (docs/protocol.md §15.6), so the run ends at
        the first frame that is too young."""
        device_id = bytes(device_id)

        def work(txn):
            doomed = []
            for n, seq, frame in reversed(list(self._back(txn, device_id))):  # oldest first
                if seq >= below_seq or _fast.decode_frame(frame)[4] >= before_ms:
                    break
                doomed.append(n)
            for n in doomed:
                txn.delete(U64.pack(n), db=self.frames)
            return len(doomed)
        return self.store.write(work)

    def _require(self, device_id):
        record = self.get(device_id)
        if record is None:
            raise DeviceError(f"no device {bytes(device_id).hex()}; `smartshare device list` "
                              "shows the known ones")
        return record

    def _put(self, device_id, record):
        raw = _encode(record)
        self.store.write(lambda txn: txn.put(bytes(device_id), raw, db=self.devices))


def _encode(record):
    return json.dumps(record, sort_keys=True).encode()


def _short(value):
    return value[:MAX_INFO] if isinstance(value, str) else ""


def _now_ms():
    return time.time_ns() // 1_000_000
