"""The node's devices: who asked to join, who was approved or revoked, and their frames.

Named LMDB databases in the node's one environment (DESIGN §9):

    devices      device id (8 bytes) -> JSON record (public key, kind, model, status, times)
    device_seq   device id -> u64be(mark) || u64be(start): frames start..mark are stored
                 (``sequence.Position``)
    frames       device id || u64be seq -> the signed frame (docs/protocol.md §11)
"""

import json
import secrets
import struct
import time

from edge.mqtt import onboarding
from edge.mqtt.sequence import Position
from edge.mqtt.topics import device_id_of

PENDING, APPROVED, REVOKED = "pending", "approved", "revoked"
U64 = struct.Struct(">Q")
MAX_INFO = 256


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
        """The device's ``sequence.Position``: which of its frames are stored."""
        return Position.decode(txn.get(bytes(device_id), db=self.seqs))

    def store_frames(self, txn, accepted, positions):
        """Keep accepted frames ``[(device id, seq, frame)]`` and the devices' new
        ``positions`` (``{device id: Position}``), inside ``txn``."""
        with txn.cursor(db=self.frames) as cursor:
            cursor.putmulti([(bytes(d) + U64.pack(seq), frame) for d, seq, frame in accepted])
        with txn.cursor(db=self.seqs) as cursor:
            cursor.putmulti([(bytes(d), p.encode()) for d, p in positions.items()])

    def frames_of(self, device_id, limit=100):
        """The newest ``limit`` stored frames of a device, newest first."""
        out = []
        with self.store.read() as txn:
            cursor = txn.cursor(db=self.frames)
            # Position on the device's last frame: just before the first key past it.
            if cursor.set_range(bytes(device_id) + b"\xff" * 8):
                positioned = cursor.prev()
            else:
                positioned = cursor.last()
            for key, frame in (cursor.iterprev() if positioned else ()):
                if not key.startswith(bytes(device_id)) or len(out) >= limit:
                    break
                out.append((U64.unpack(key[8:])[0], frame))
        return out

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
