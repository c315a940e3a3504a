"""Typed frame payloads (docs/protocol.md §15.6): a schema per device kind, enforced by the bridge.

A schema names every field a frame of a kind may carry: its type, its bounds, the unit of a
quantity, and whether it is a counter that only goes up (for the whole device, per session, or per
key such as a router's client). Checks come in two parts:

- ``check_fields`` (stateless, before the signature check): no unknown field, required fields
  present, integers where a quantity is counted, bounds, a known event. A frame of a kind with no
  schema (a third-party sensor) passes: it is stored, never metered.
- ``Sequencing.check`` (after the signature, in arrival order, on committed state): the timestamp
  is neither before the device's previous frame nor before its approval; counters never go down;
  a session is opened once (by a frame whose ``seq`` is the session id), and nothing arrives for
  a session after it closed. The state it keeps per device (JSON, in the device's state:
  ``devices.DeviceState``) is written in the same LMDB transaction as the frames.

Metering (``edge/agent``) reads only frames that passed both.
"""

import json
import re

from edge.mqtt.devices import DeviceRegistry

# Error codes of reply/error added by the schemas (docs/protocol.md §15.5).
SCHEMA = "schema"      # the payload breaks its kind's schema
STALE = "stale"        # timestamp before the device's previous frame or its approval
COUNTER = "counter"    # a counter went down
SESSION = "session"    # a session opened twice, used after it closed, or too many open
CODES = (SCHEMA, STALE, COUNTER, SESSION)

MAX_OPEN_SESSIONS = 1024     # per device
CLOSED_REMEMBERED = 64       # recently closed sessions per device (late frames are refused)
MAX_KEYED = 256              # keys of a keyed counter per device (the oldest is forgotten)
INT_MAX = (1 << 63) - 1


class SchemaError(ValueError):
    """A payload that breaks its schema; ``code`` is one of ``CODES``."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def _fail(message, code=SCHEMA):
    raise SchemaError(code, message)


# -- field types ------------------------------------------------------------------------------

class Field:
    """A field type: ``check(name, value)`` raises SchemaError; ``unit`` names a quantity's unit;
    ``counter`` is None, "device", "session" or "keyed" (keyed by ``key`` field's value)."""
    unit = None
    counter = None
    key = None

    def check(self, name, value):
        raise NotImplementedError


class Int(Field):
    """An integer (never a float, never a boolean) within ``low..high``."""

    def __init__(self, low=0, high=INT_MAX, unit=None):
        self.low, self.high, self.unit = low, high, unit

    def check(self, name, value):
        if type(value) is not int:
            _fail(f"{name} must be an integer, not {type(value).__name__}")
        if not self.low <= value <= self.high:
            _fail(f"{name} must be within {self.low}..{self.high}, not {value}")


class Counter(Int):
    """An integer count of ``unit`` that never goes down: over the device's life ("device"), over
    a session ("session"), or per value of another field ("keyed", e.g. per router client)."""

    def __init__(self, unit, scope="device", key=None):
        super().__init__(0, INT_MAX, unit)
        self.counter, self.key = scope, key


class Number(Field):
    """A reading: an integer or a finite float within ``low..high``."""

    def __init__(self, low, high, unit=None):
        self.low, self.high, self.unit = low, high, unit

    def check(self, name, value):
        if type(value) not in (int, float):
            _fail(f"{name} must be a number, not {type(value).__name__}")
        if not self.low <= value <= self.high:
            _fail(f"{name} must be within {self.low}..{self.high}, not {value}")


class Hex(Field):
    """Lower-case hex text of exactly ``size`` characters."""

    def __init__(self, size):
        self.size = size
        self._re = re.compile(rf"^[0-9a-f]{{{size}}}$")

    def check(self, name, value):
        if not isinstance(value, str) or not self._re.match(value):
            _fail(f"{name} must be {self.size} lower-case hex characters")


class Text(Field):
    """Text of at most ``max_bytes`` UTF-8 bytes."""

    def __init__(self, max_bytes):
        self.max_bytes = max_bytes

    def check(self, name, value):
        if not isinstance(value, str) or len(value.encode("utf-8")) > self.max_bytes:
            _fail(f"{name} must be text of at most {self.max_bytes} bytes")


class Bool(Field):
    def check(self, name, value):
        if type(value) is not bool:
            _fail(f"{name} must be true or false")


class Services(Field):
    """The services a device offers in its hello: ``[{"type": text, "unit": text}]``."""

    def check(self, name, value):
        if not isinstance(value, list) or len(value) > 16:
            _fail(f"{name} must be a list of at most 16 services")
        for item in value:
            if not isinstance(item, dict) or set(item) != {"type", "unit"} or not all(
                    isinstance(v, str) and 0 < len(v) <= 32 for v in item.values()):
                _fail(f"{name} items must be {{\"type\": text, \"unit\": text}}")


class Session(Int):
    """A session id (the ``seq`` of the frame that opened it); ``role`` is "open", "use" or
    "close"."""

    def __init__(self, role="use"):
        super().__init__(1, INT_MAX)
        self.role = role


# -- schemas ----------------------------------------------------------------------------------

class FrameSchema:
    """The fields of one frame kind (or one event) of a device kind."""

    def __init__(self, required, optional=None):
        self.fields = dict(required, **(optional or {}))
        self.required = frozenset(required)
        self.session = next((n for n, f in self.fields.items() if isinstance(f, Session)), None)

    def check(self, doc):
        unknown = sorted(set(doc) - set(self.fields))
        if unknown:
            _fail(f"unknown field {unknown[0][:32]!r}")
        missing = sorted(self.required - set(doc))
        if missing:
            _fail(f"missing field {missing[0]!r}")
        for name, value in doc.items():
            self.fields[name].check(name, value)


HELLO = {"kind": Text(32), "model": Text(64), "firmware": Text(32), "services": Services()}
REF = {"ref": Hex(16)}      # the agent session a commanded session serves (edge/agent)
PLATE, CLIENT, DIGEST = Hex(32), Hex(8), Hex(64)


def _events(**events):
    return {("event", name): FrameSchema(dict(fields[0], event=Text(32)), *fields[1:])
            for name, fields in events.items()}


SCHEMAS = {
    "parking-gate": {
        ("hello", None): FrameSchema(HELLO, {"capacity": Int(1, 100_000)}),
        **_events(
            vehicle_entry=({"session": Session("open")},
                           dict(REF, plate_hash=PLATE, spot=Int(1, 100_000),
                                occupancy=Int(0, 100_000), sessions=Counter("session"))),
            vehicle_exit=({"session": Session("close"),
                           "minutes": Counter("minute", "session")},
                          dict(plate_hash=PLATE, spot=Int(1, 100_000), occupancy=Int(0, 100_000),
                               sessions=Counter("session")))),
        ("meter", None): FrameSchema({"session": Session(), "minutes": Counter("minute", "session")},
                                     {"plate_hash": PLATE, "occupancy": Int(0, 100_000),
                                      "sessions": Counter("session")}),
    },
    "purifier": {
        ("hello", None): FrameSchema(HELLO),
        **_events(
            power_on=({"session": Session("open")}, dict(REF, fan=Int(1, 3))),
            power_off=({"session": Session("close"),
                        "running_s": Counter("second", "session")},
                       {"total_running_s": Counter("second")})),
        ("meter", None): FrameSchema({"session": Session(),
                                      "running_s": Counter("second", "session")},
                                     {"total_running_s": Counter("second"), "fan": Int(1, 3)}),
        ("data", None): FrameSchema({}, {"pm25": Number(0, 1000, "µg/m³"),
                                         "pm10": Number(0, 2000, "µg/m³"), "running": Bool()}),
    },
    "router": {
        ("hello", None): FrameSchema(HELLO),
        **_events(
            client_joined=({"session": Session("open")},
                           dict(REF, client=CLIENT, clients=Int(0, 100_000))),
            client_left=({"session": Session("close"), "bytes": Counter("byte", "session")},
                         {"client": CLIENT, "clients": Int(0, 100_000)})),
        ("meter", None): FrameSchema({"session": Session(), "bytes": Counter("byte", "session")},
                                     {"client": CLIENT,
                                      "client_bytes": Counter("byte", "keyed", "client"),
                                      "bytes_forwarded": Counter("byte"),
                                      "clients": Int(0, 100_000)}),
    },
    "weather": {
        ("hello", None): FrameSchema(HELLO),
        ("data", None): FrameSchema({}, {"t_c": Number(-90, 70, "°C"), "rh": Number(0, 100, "%"),
                                         "wind_ms": Number(0, 150, "m/s"),
                                         "wind_deg": Int(0, 359), "p_hpa": Number(800, 1100, "hPa"),
                                         "reading": Counter("reading")}),
    },
    "storage": {
        ("hello", None): FrameSchema(HELLO, {"capacity_mb": Int(1, 1 << 40)}),
        **_events(
            object_stored=({"session": Session("open"), "object": DIGEST, "mb": Int(1, 1 << 40)},
                           dict(REF, used_mb=Int(0, 1 << 40))),
            proof=({"session": Session(), "challenge": DIGEST, "proof": DIGEST}, {}),
            object_deleted=({"session": Session("close"), "mb_s": Counter("MB·s", "session")},
                            {"held_s": Counter("second", "session"), "used_mb": Int(0, 1 << 40)})),
        ("meter", None): FrameSchema({"session": Session(), "mb_s": Counter("MB·s", "session")},
                                     {"mb": Int(1, 1 << 40), "held_s": Counter("second", "session")}),
        ("data", None): FrameSchema({}, {"used_mb": Int(0, 1 << 40), "free_mb": Int(0, 1 << 40),
                                         "objects": Int(0, 1 << 32)}),
    },
    "compute": {
        ("hello", None): FrameSchema(HELLO, {"cores": Int(1, 4096)}),
        **_events(
            job_started=({"session": Session("open"), "jobs": Int(1, 1 << 32), "input": DIGEST},
                         REF),
            job_finished=({"session": Session("close"),
                           "jobs_done": Counter("job", "session"), "result": DIGEST}, {})),
        ("meter", None): FrameSchema({"session": Session(), "jobs_done": Counter("job", "session"),
                                      "result": DIGEST}, {}),
        ("data", None): FrameSchema({}, {"load": Number(0, 100, "%"),
                                         "jobs_total": Counter("job")}),
    },
}

KIND_ALIASES = {"parking": "parking-gate", "gate": "parking-gate", "air-purifier": "purifier",
                "weather-station": "weather", "wifi-router": "router", "nas": "storage"}


def canonical_kind(kind):
    """A device kind as the schemas spell it ("Parking_Gate", "gate" -> "parking-gate")."""
    kind = str(kind or "").strip().lower().replace("_", "-").replace(" ", "-")
    return KIND_ALIASES.get(kind, kind)


def frame_schema(kind, frame_kind, doc):
    """The FrameSchema a payload ``doc`` of a ``frame_kind`` frame must match for a device of
    ``kind``; None for a kind without schemas. SchemaError for a frame kind or event the kind
    does not have."""
    schemas = SCHEMAS.get(canonical_kind(kind))
    if schemas is None:
        return None
    event = None
    if frame_kind == "event":
        event = doc.get("event")
        if not isinstance(event, str):
            _fail("an event frame needs an \"event\" name")
    schema = schemas.get((frame_kind, event))
    if schema is None:
        _fail(f"a {canonical_kind(kind)} sends no {frame_kind} frame"
              + (f" {event[:32]!r}" if event is not None else ""))
    return schema


# -- the bridge's side ------------------------------------------------------------------------

class FrameRules:
    """What the bridge knows of each approved device for the schema checks: its kind and the
    time it was approved. ``refresh`` after approvals and revocations."""

    def __init__(self, store, registry=None):
        self.registry = registry if registry is not None else DeviceRegistry(store)
        self._devices = {}      # device id -> (kind, approved_ms)

    def refresh(self, records):
        self._devices = {bytes.fromhex(r["id"]): (r.get("kind") or "", r.get("approved_ms") or 0)
                         for r in records if r.get("status") == "approved"}

    def check_fields(self, device_id, frame_kind, doc):
        """Stateless checks; returns the FrameSchema (or None) or raises SchemaError."""
        kind, _ = self._devices.get(device_id, ("", 0))
        schema = frame_schema(kind, frame_kind, doc)
        if schema is not None:
            schema.check(doc)
        return schema

    def sequencing(self):
        """The stateful checks of one batch (state read on first use, written by ``write``)."""
        return Sequencing(self)


class Sequencing:
    """Timestamps, counters and sessions of one batch, in arrival order, over committed state."""

    def __init__(self, rules):
        self.rules = rules
        self.states = {}        # device id -> state dict (changed ones are written)
        self.loaded = {}        # device id -> its state as read (JSON bytes)

    def check(self, txn, device_id, frame, schema, doc):
        """Raise SchemaError, or record the frame's effect on the device's state."""
        state = self._state(txn, device_id)
        if frame.timestamp_ms < state["t"]:
            _fail(f"timestamp {frame.timestamp_ms} is before the device's previous frame or its "
                  f"approval ({state['t']})", STALE)
        update = {}
        if schema is not None:
            self._check_session(state, schema, frame.seq, doc)
            self._check_counters(state, schema, doc, update)
        state["t"] = frame.timestamp_ms
        self._apply(state, schema, doc, update)

    def changed(self):
        """``{device id: JSON bytes}`` of the states this batch changed."""
        encoded = {d: json.dumps(s, separators=(",", ":")).encode() for d, s in self.states.items()}
        return {d: raw for d, raw in encoded.items() if raw != self.loaded[d]}

    def write(self, txn):
        """Commit the changed states alone (the bridge commits them with its frames)."""
        self.rules.registry.store_frames(txn, [], {}, self.changed())

    # -- internals ------------------------------------------------------------------------------

    def _state(self, txn, device_id):
        state = self.states.get(device_id)
        if state is None:
            raw = self.loaded[device_id] = self.rules.registry.state(txn, device_id).schema
            state = json.loads(raw) if raw else {"t": 0, "c": {}, "k": {}, "s": {}, "x": []}
            state["t"] = max(state["t"], self.rules._devices.get(device_id, ("", 0))[1])
            self.states[device_id] = state
        return state

    @staticmethod
    def _check_session(state, schema, seq, doc):
        name = schema.session
        if name is None or name not in doc:
            return
        session, role = doc[name], schema.fields[name].role
        key = str(session)
        if session in state["x"]:
            _fail(f"session {session} is closed", SESSION)
        if role == "open":
            if session != seq:
                _fail(f"a session is opened by the frame whose seq is its id: {session} is not "
                      f"{seq}", SESSION)
            if key in state["s"]:
                _fail(f"session {session} is already open", SESSION)
        if key not in state["s"] and len(state["s"]) >= MAX_OPEN_SESSIONS:
            _fail(f"more than {MAX_OPEN_SESSIONS} open sessions", SESSION)

    @staticmethod
    def _check_counters(state, schema, doc, update):
        session = str(doc.get(schema.session)) if schema.session in doc else None
        for name, value in doc.items():
            field = schema.fields[name]
            if field.counter is None:
                continue
            if field.counter == "device":
                where, slot = state["c"], name
            elif field.counter == "session":
                where, slot = state["s"].get(session, {}), name
            else:
                key = doc.get(field.key)
                if key is None:
                    _fail(f"{name} is counted per {field.key}, which is missing")
                where, slot = state["k"].get(name, {}), key
            previous = where.get(slot)
            if previous is not None and value < previous:
                _fail(f"{name} went down from {previous} to {value}", COUNTER)
            update[(field.counter, name, slot)] = value

    @staticmethod
    def _apply(state, schema, doc, update):
        session = doc.get(schema.session) if schema is not None else None
        key = str(session)
        if session is not None:
            state["s"].setdefault(key, {})
        for (scope, name, slot), value in update.items():
            if scope == "device":
                state["c"][name] = value
            elif scope == "session":
                state["s"][key][name] = value
            else:
                keyed = state["k"].setdefault(name, {})
                keyed.pop(slot, None)          # re-insert: the most recent key last
                keyed[slot] = value
                while len(keyed) > MAX_KEYED:
                    del keyed[next(iter(keyed))]
        if session is not None and schema.fields[schema.session].role == "close":
            del state["s"][key]
            state["x"] = (state["x"] + [session])[-CLOSED_REMEMBERED:]
