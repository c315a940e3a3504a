"""Metering (DESIGN §7): usage per session from the device frames the bridge committed
(docs/protocol.md §17.4).

The bridge stores every accepted frame in the ``frames`` database of the node's LMDB
(``device id || u64be(seq)``, §15.4), after its schema checks (§15.6); metering trusts nothing
else. For each device the agent keeps a cursor (``agent_cursor``: the last seq it has read) and
moves it in the same LMDB write as the sessions the frames changed, so a frame is applied exactly
once, whatever the redeliveries, restarts or crashes: after a restart it reads on from the
cursor. What a frame does to a session:

- an opening event (``vehicle_entry``...) whose ``ref`` is the agent session starts it and names
  the device's own session id;
- a frame of that device session raises ``units`` to its counter (``minutes``, ``running_s``...;
  counters only go up, so ``units = max(units, counter)`` is idempotent too); the closing event
  fixes the final ``units``;
- a service counted in frames (``weather.reading``) counts every ``data`` frame after the start.

Frames of a session are kept as evidence (signed by the device) until the buyer has paid for
them; the buyer verifies them itself (§17.5).
"""

import json

from edge import _fast
from edge.agent.records import U64
from edge._fast.codec_py import FRAME_DATA, FRAME_EVENT, FRAME_HELLO, FRAME_METER

KIND_NAMES = {FRAME_HELLO: "hello", FRAME_METER: "meter", FRAME_EVENT: "event",
              FRAME_DATA: "data"}
MAX_EVIDENCE = 4096                  # frames kept per session until paid for
METERING_STATES = ("starting", "active", "stopping")


class DeviceFrame:
    """One committed frame: its seq, kind name, timestamp, JSON payload and raw bytes."""

    __slots__ = ("device_id", "seq", "kind", "timestamp_ms", "doc", "raw")

    def __init__(self, raw):
        version, kind, device_id, seq, timestamp_ms, payload, _ = _fast.decode_frame(raw)
        self.device_id, self.seq, self.kind = device_id, seq, KIND_NAMES[kind]
        self.timestamp_ms, self.raw = timestamp_ms, raw
        self.doc = json.loads(payload)


class FrameReader:
    """Committed frames of the bridge, read through the device registry, which keeps their
    layout (edge/mqtt/devices.py, docs/protocol.md §15.4): any object with ``frames_after``
    and ``last_seq``."""

    def __init__(self, registry):
        self.registry = registry

    def after(self, device_id, seq, limit=1000, txn=None):
        """Frames of ``device_id`` with a seq above ``seq``, ascending, at most ``limit``."""
        return [DeviceFrame(bytes(raw))
                for _, raw in self.registry.frames_after(device_id, seq, limit, txn)]

    def last_seq(self, device_id, txn=None):
        """The device's newest committed seq (0 when none)."""
        return self.registry.last_seq(device_id, txn)


class Cursors:
    """Per device, the seq of the last frame metering has applied (``agent_cursor``)."""

    def __init__(self, store):
        self.store = store
        self.db = store.db("agent_cursor")

    def get(self, device_id, txn=None):
        if txn is None:
            with self.store.read() as t:
                raw = t.get(device_id, db=self.db)
        else:
            raw = txn.get(device_id, db=self.db)
        return U64.unpack(raw)[0] if raw is not None else None

    def set(self, device_id, seq, txn):
        txn.put(device_id, U64.pack(seq), db=self.db)

    def all(self):
        with self.store.read() as t:
            return {bytes(k): U64.unpack(v)[0] for k, v in t.cursor(db=self.db)}


def apply_frame(session, stype, frame):
    """Apply one committed frame of the session's device; True when the session changed.

    ``session`` is the seller's session record (a dict, changed in place): ``start_after`` (the
    device's last seq when the session was made), ``dev_session``, ``units``, ``final``,
    ``evidence`` ([[seq, raw hex]], oldest first)."""
    if session["state"] not in METERING_STATES or frame.seq <= session["start_after"]:
        return False
    doc = frame.doc
    if stype.frames is not None:
        if frame.kind != stype.frames or session["state"] == "starting":
            return False
        session["units"] += 1
        _keep(session, frame, counted=True)
        return True
    if frame.kind == "event" and doc.get("event") == stype.open_event:
        if doc.get("ref") != session["id"] or session["dev_session"] is not None:
            return False
        session.update(dev_session=doc["session"], state="active" if session["state"] ==
                       "starting" else session["state"], started_ms=frame.timestamp_ms)
        _keep(session, frame, counted=False, pinned=True)
        return True
    if session["dev_session"] is None or doc.get("session") != session["dev_session"]:
        return False
    quantity = doc.get(stype.quantity)
    if isinstance(quantity, int) and quantity > session["units"]:
        session["units"] = quantity
    if frame.kind == "event" and doc.get("event") == stype.close_event:
        session.update(final=True, state="ended", ended_ms=frame.timestamp_ms)
    _keep(session, frame, counted=False, pinned=frame.doc.get("event") == "proof")
    return True


def _keep(session, frame, counted, pinned=False):
    """Keep the frame as evidence until the buyer has seen it: every counted frame; for a
    counter, the opening event and every proof (pinned) and only the newest of the others."""
    evidence = session["evidence"]
    if not counted and not pinned:
        evidence[:] = [e for e in evidence if e[2]]
    evidence.append([frame.seq, frame.raw.hex(), pinned])
    del evidence[:-MAX_EVIDENCE]


def forget_paid_evidence(session, upto_seq):
    """Drop evidence the buyer has acknowledged (frames up to ``upto_seq``)."""
    session["evidence"] = [e for e in session["evidence"] if e[0] > upto_seq]
