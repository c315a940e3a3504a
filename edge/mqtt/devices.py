"""The node's devices: who asked to join, who was approved or revoked, and their frames.

Named LMDB databases in the node's one environment (DESIGN §9, docs/protocol.md §15.4):

    devices      device id (8 bytes) -> JSON record (public key, kind, model, status, times)
    frames       u64be(n) -> u64be(n of the same device's previous frame, 0: none) || u64be(seq)
                 || u64be(arrival, ms since the epoch) || the signed frame (§11);
                 u64be(n) || u32be(k) -> a journal record: the new state of each device a
                 commit changed (after frame n, the k-th such record there; zlib)
    device_seq   device id -> its state as of the checkpoint: u64be(n of its newest stored
                 frame, 0: none) || u8(count) || ``sequence.Position`` || schema state (JSON);
                 b"journal" -> the frames key of the last journal record folded in

Frames are numbered in the order they are stored, so every commit appends at the end of one
B-tree whatever the number of devices, and the oldest go first when pruned (``prune_frames``:
older than the retention window, or beyond the byte budget). A device's frames are found by
walking back from its newest. Its state changes with each commit that touches it; rather than
rewriting its record in place (a page per few devices, every commit), a commit appends the
changed states to the log as one journal record, and every ``CHECKPOINT_EVERY`` commits the
states are folded into ``device_seq`` at once. A reader takes the checkpoint and the journal
records after it (kept in memory, extended as the log grows).
"""

import json
import secrets
import struct
import threading
import time
import zlib
from typing import NamedTuple

from edge.mqtt import onboarding
from edge.mqtt.sequence import Position
from edge import _fast
from edge.mqtt.topics import device_id_of

PENDING, APPROVED, REVOKED = "pending", "approved", "revoked"
U64 = struct.Struct(">Q")
LINK = struct.Struct(">QQQ")     # previous n, seq, arrival ms
MAX_INFO = 256
PER_FRAME_OVERHEAD = 16   # an LMDB leaf node's header and key, beside the value
U32 = struct.Struct(">I")
ENTRY = struct.Struct(">8sI")     # a journal entry: device id, length of its state
CHECKPOINT = b"journal"           # device_seq: the last journal record folded in
CHECKPOINT_EVERY = 25             # commits between two checkpoints (5 s at 5 commits a second)
JOURNAL_RECORD = 4800             # bytes of entries per journal record (compressed: ~1.4 kB;
                                  # LMDB moves a value over ~2 kB off the log's pages)
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
        self._journal = _Journal(self.frames, self.seqs)

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
        return self.state(txn, device_id).position

    def state(self, txn, device_id):
        """The device's ``DeviceState`` as ``txn`` sees it (checkpoint and journal)."""
        device_id = bytes(device_id)
        found = self._journal.states(txn).get(device_id)
        if found is None:
            found = DeviceState.decode(txn.get(device_id, db=self.seqs))
        return found

    def store_frames(self, txn, accepted, positions, schemas=None, now_ms=None):
        """Keep accepted frames ``[(device id, seq, frame)]`` (in order), the devices' new
        ``positions`` (``{device id: Position}``) and schema states (``{device id: JSON
        bytes}``), inside ``txn``: the frames and a journal record are appended."""
        now_ms = _now_ms() if now_ms is None else now_ms
        schemas = schemas or {}
        prior = self._journal.states(txn)
        changed = {bytes(d) for d in positions} | {bytes(d) for d in schemas}
        states = {d: self.state(txn, d) for d in changed}
        cursor = txn.cursor(db=self.frames)
        n = U64.unpack(cursor.key()[:U64.size])[0] if cursor.last() else 0
        records = []
        for device_id, seq, frame in accepted:
            device_id = bytes(device_id)
            n += 1
            head = states[device_id].head
            records.append((U64.pack(n), LINK.pack(head, seq, now_ms) + frame))
            states[device_id] = states[device_id]._replace(head=n)
        for device_id, position in positions.items():
            states[bytes(device_id)] = states[bytes(device_id)]._replace(position=position)
        for device_id, schema in schemas.items():
            states[bytes(device_id)] = states[bytes(device_id)]._replace(schema=schema)
        if cursor.putmulti(records, append=True)[1] != len(records):
            raise DeviceError("the frame log is damaged: frames numbered beyond its end exist")
        self._journal.write(txn, prior, states)

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

    def checkpoint(self, txn):
        """Fold every device state of the journal into ``device_seq`` now."""
        self._journal.write(txn, self._journal.states(txn), {}, fold=True)

    def frames_bytes(self, txn):
        """The bytes the frame log's pages take in the data file."""
        stat = txn.stat(self.frames)
        return stat["psize"] * (stat["branch_pages"] + stat["leaf_pages"]
                                + stat["overflow_pages"])

    def prune_frames(self, txn, before_ms, budget_bytes, limit):
        """Delete, oldest first, at most ``limit`` frames that arrived before ``before_ms`` or
        that the log holds beyond ``budget_bytes``; returns how many. Journal records go with
        them once folded into a checkpoint; one that is not yet folded (the last few commits')
        is stepped over and kept."""
        excess = self.frames_bytes(txn) - budget_bytes
        folded = txn.get(CHECKPOINT, db=self.seqs) or b""
        cursor, deleted = txn.cursor(db=self.frames), 0
        cursor.first()
        while deleted < limit and cursor.key():
            key, value = cursor.item()
            if len(key) != U64.size:
                if key > folded:
                    cursor.next()
                    continue
            elif excess <= 0 and LINK.unpack_from(value)[2] >= before_ms:
                break
            else:
                deleted += 1
            excess -= len(value) + PER_FRAME_OVERHEAD
            cursor.delete()     # and on to the next record
        return deleted

    def log(self, txn):
        """``(n, seq, frame)`` of every stored frame in the order stored (tests, tools)."""
        for key, value in txn.cursor(db=self.frames):
            if len(key) == U64.size:
                yield U64.unpack(key)[0], LINK.unpack_from(value)[1], value[LINK.size:]

    def count_frames(self, txn):
        """How many frames the log holds (its journal records aside); walks its keys."""
        return sum(len(key) == U64.size
                   for key in txn.cursor(db=self.frames).iternext(values=False))

    def _head(self, txn, device_id):
        return self.state(txn, device_id).head

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


class DeviceState(NamedTuple):
    """What the bridge keeps of a device besides its record: the number of its newest stored
    frame (0: none), its ``sequence.Position`` and its schema state (JSON bytes, b"": none)."""
    head: int = 0
    position: Position = Position()
    schema: bytes = b""

    def encode(self):
        numbers = self.position.encode()
        return U64.pack(self.head) + bytes((len(numbers) // U64.size,)) + numbers + self.schema

    @classmethod
    def decode(cls, raw):
        if raw is None:
            return cls()
        end = U64.size + 1 + raw[U64.size] * U64.size
        return cls(U64.unpack_from(raw)[0], Position.decode(raw[U64.size + 1:end]), raw[end:])


class _Journal:
    """The device states committed since the last checkpoint, as the newest reader saw them:
    ``states(txn)`` brings them up to ``txn`` (reading only the journal records it has not
    seen); ``write`` appends a commit's states, or folds them all into ``device_seq``."""

    def __init__(self, frames, seqs):
        self.frames, self.seqs = frames, seqs
        self._lock = threading.Lock()
        self._seen = (None, b"", {})   # (checkpoint, last key read, states)
        self._commits = 0

    def states(self, txn):
        folded = txn.get(CHECKPOINT, db=self.seqs) or b""
        cursor = txn.cursor(db=self.frames)
        last = cursor.key() if cursor.last() else b""
        with self._lock:
            mark, upto, states = self._seen
        if (mark, upto) == (folded, last):
            return states
        if mark != folded or upto > last:
            upto, states = folded, {}
        states = dict(states)
        if not upto:
            positioned = cursor.first()
        elif cursor.set_range(upto):
            positioned = cursor.next() if cursor.key() == upto else True
        else:
            positioned = False
        for key in (cursor.iternext(values=False) if positioned else ()):
            if len(key) != U64.size:
                states.update(_journal_entries(txn.get(key, db=self.frames)))
        with self._lock:
            if self._seen[0] != folded or self._seen[1] <= last:
                self._seen = (folded, last, states)
        return states

    def write(self, txn, prior, changed, fold=False):
        """Record ``changed`` ({device id: DeviceState}) after the frames just appended;
        ``prior`` is what ``states`` returned before they were."""
        self._commits += 1
        if fold or self._commits % CHECKPOINT_EVERY == 0:
            states = dict(prior)
            states.update(changed)
            txn.cursor(db=self.seqs).putmulti(sorted((d, s.encode()) for d, s in states.items()))
            cursor = txn.cursor(db=self.frames)
            txn.put(CHECKPOINT, cursor.key() if cursor.last() else b"", db=self.seqs)
            return
        if not changed:
            return
        cursor = txn.cursor(db=self.frames)
        key = cursor.key() if cursor.last() else bytes(U64.size)
        k = U32.unpack(key[U64.size:])[0] + 1 if len(key) != U64.size else 0
        records = [(key[:U64.size] + U32.pack(k + i), value)
                   for i, value in enumerate(_journal_values(changed))]
        if cursor.putmulti(records, append=True)[1] != len(records):
            raise DeviceError("the frame log is damaged: records beyond its end exist")


def _journal_values(changed):
    """The journal records of ``changed``: entries packed by JOURNAL_RECORD bytes and
    compressed (zlib: the states of a fleet are much alike), so a record stays on the log's own
    pages instead of taking pages of its own."""
    chunks, current = [], b""
    for device_id, state in sorted(changed.items()):
        raw = state.encode()
        entry = ENTRY.pack(device_id, len(raw)) + raw
        if current and len(current) + len(entry) > JOURNAL_RECORD:
            chunks.append(current)
            current = b""
        current += entry
    return [zlib.compress(chunk) for chunk in chunks + ([current] if current else [])]


def _journal_entries(record):
    try:
        raw = zlib.decompress(record)
    except zlib.error as exc:
        raise DeviceError(f"a journal record of the frame log is damaged ({exc})") from None
    at, entries = 0, {}
    while at < len(raw):
        device_id, size = ENTRY.unpack_from(raw, at)
        at += ENTRY.size
        entries[device_id] = DeviceState.decode(raw[at:at + size])
        at += size
    return entries


def _encode(record):
    return json.dumps(record, sort_keys=True).encode()


def _short(value):
    return value[:MAX_INFO] if isinstance(value, str) else ""


def _now_ms():
    return time.time_ns() // 1_000_000
