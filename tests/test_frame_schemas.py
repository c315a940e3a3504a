"""Typed frame payloads (edge/mqtt/schemas.py, docs/protocol.md §15.6).

Unit checks of every rule over a real LMDB, the simulators' payloads against their schemas over
thousands of frames, a hypothesis fuzz of the field checks, and the bridge refusing schema
breakers with error replies through a real Mosquitto while the good frames beside them are
stored, with the per-device state surviving a bridge restart.
"""

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.store import Store
from edge.mqtt import ingest, schemas, sim_kinds
from edge.mqtt.frames import Frame
from edge.mqtt.schemas import COUNTER, SCHEMA, SESSION, STALE, FrameRules, SchemaError
from tests.mqttkit import wait_for

APPROVED_MS = 1_000_000


@pytest.fixture
def rules(tmp_path):
    store = Store(str(tmp_path / "data"))
    rules = FrameRules(store)
    kinds = list(schemas.SCHEMAS) + ["sensor"]
    rules.refresh([{"id": f"{i:016x}", "kind": kind, "status": "approved",
                    "approved_ms": APPROVED_MS} for i, kind in enumerate(kinds)])
    rules.store = store
    rules.ids = {kind: bytes.fromhex(f"{i:016x}") for i, kind in enumerate(kinds)}
    yield rules
    store.close()


class Device:
    """Feeds frames of one device through both checks, committing each batch."""

    def __init__(self, rules, kind):
        self.rules, self.kind, self.id = rules, kind, rules.ids[kind]
        self.seq, self.ts = 0, APPROVED_MS

    def send(self, frame_kind, doc, seq=None, ts=None, commit=True):
        """None when accepted, else the SchemaError's code."""
        self.seq = seq if seq is not None else self.seq + 1
        self.ts = ts if ts is not None else self.ts + 1000
        frame = Frame(1, 0, self.id, self.seq, self.ts, json.dumps(doc), b"")
        try:
            schema = self.rules.check_fields(self.id, frame_kind, doc)
            sequencing = self.rules.sequencing()
            with self.rules.store.read() as txn:
                sequencing.check(txn, self.id, frame, schema, doc)
        except SchemaError as exc:
            return exc.code
        if commit:
            self.rules.store.write(sequencing.write)
        return None


@pytest.mark.parametrize("kind", sim_kinds.KINDS)
def test_simulated_payloads_follow_their_schema_for_thousands_of_frames(rules, kind):
    """Ambient frames, and commanded sessions (started, challenged, stopped) between them."""
    device = Device(rules, kind)
    b = sim_kinds.behaviour(kind, random.Random(11), b"s" * 16)
    assert device.send("hello", b.hello()) is None
    task = "ab" * 64 if kind == "storage" else "cd" * 32
    for tick in range(2500):
        ref = f"{tick // 100:016x}"
        if tick % 100 == 10:
            b.command({"cmd": "start", "ref": ref, "task": task, "quantity": 30})
        if tick % 100 == 40:
            b.command({"cmd": "challenge", "ref": ref, "challenge": "ee" * 32})
        if tick % 100 == 80:
            b.command({"cmd": "stop", "ref": ref})
        while (frame := b.serve(device.seq + 1)) is not None:
            assert device.send(*frame) is None, frame
        frame_kind, payload = b.tick(device.seq + 1)
        assert device.send(frame_kind, payload) is None, (device.seq, frame_kind, payload)


@pytest.mark.parametrize("kind, frame_kind, doc, code", [
    ("purifier", "meter", {"session": 1, "running_s": 60, "kwh": 1}, SCHEMA),   # unknown field
    ("purifier", "meter", {"running_s": 60}, SCHEMA),                           # missing session
    ("purifier", "meter", {"session": 1, "running_s": 60.0}, SCHEMA),           # float quantity
    ("purifier", "meter", {"session": 1, "running_s": True}, SCHEMA),           # boolean
    ("purifier", "meter", {"session": 0, "running_s": 60}, SCHEMA),             # session >= 1
    ("purifier", "meter", {"session": 1, "running_s": -1}, SCHEMA),             # below 0
    ("purifier", "meter", {"session": 1, "running_s": 1, "fan": 4}, SCHEMA),    # out of range
    ("purifier", "event", {"event": "explode", "session": 1}, SCHEMA),          # unknown event
    ("purifier", "event", {"session": 1}, SCHEMA),                              # no event name
    ("weather", "meter", {"session": 1}, SCHEMA),                               # no such frame
    ("weather", "data", {"t_c": "warm"}, SCHEMA),
    ("weather", "data", {"t_c": 71.0}, SCHEMA),
    ("router", "meter", {"session": 1, "bytes": 5, "client": "XYZ"}, SCHEMA),   # not hex
    ("router", "meter", {"session": 1, "bytes": 5, "client_bytes": 5}, SCHEMA),  # no key
    ("parking-gate", "hello", {"kind": "g", "model": "m", "firmware": "f",
                               "services": [{"type": "parking"}]}, SCHEMA),
    ("parking-gate", "hello", {"kind": "g", "model": "m", "firmware": "f", "services": [],
                               "capacity": 0}, SCHEMA),
])
def test_stateless_refusals(rules, kind, frame_kind, doc, code):
    assert Device(rules, kind).send(frame_kind, doc) == code


def test_kinds_without_schema_pass_and_aliases_resolve(rules):
    assert Device(rules, "sensor").send("meter", {"anything": [1, "two"]}) is None
    assert schemas.canonical_kind("Parking_Gate") == "parking-gate"
    assert schemas.canonical_kind("gate") == "parking-gate"
    assert schemas.frame_schema("weather-station", "data", {}) is not None


def test_counters_never_go_down(rules):
    router = Device(rules, "router")
    meter = {"session": 1, "bytes": 100, "client": "a1b2c3d4", "client_bytes": 500,
             "bytes_forwarded": 1000}
    assert router.send("meter", meter) is None
    for field, value in (("bytes", 99), ("client_bytes", 499), ("bytes_forwarded", 999)):
        assert router.send("meter", dict(meter, **{field: value})) == COUNTER, field
    assert router.send("meter", dict(meter, client="b1b2c3d4", client_bytes=7)) is None   # key
    assert router.send("meter", dict(meter, session=9, bytes=1)) is None   # another session
    assert router.send("meter", meter) is None                             # equal is fine
    gate = Device(rules, "parking-gate")
    assert gate.send("event", {"event": "vehicle_entry", "session": 1, "sessions": 5}) is None
    assert gate.send("meter", {"session": 1, "minutes": 10}) is None
    assert gate.send("event", {"event": "vehicle_exit", "session": 1, "minutes": 9}) == COUNTER
    assert gate.send("event", {"event": "vehicle_entry", "session": 4, "sessions": 4}) == COUNTER


def test_sessions_open_once_and_stay_closed(rules):
    gate = Device(rules, "parking-gate")
    assert gate.send("event", {"event": "vehicle_entry", "session": 5}, seq=4) == SESSION
    assert gate.send("event", {"event": "vehicle_entry", "session": 5}, seq=5) is None
    assert gate.send("event", {"event": "vehicle_entry", "session": 5}, seq=5) == SESSION
    assert gate.send("meter", {"session": 5, "minutes": 3}) is None
    assert gate.send("event", {"event": "vehicle_exit", "session": 5, "minutes": 4}) is None
    assert gate.send("meter", {"session": 5, "minutes": 5}) == SESSION
    assert gate.send("event", {"event": "vehicle_exit", "session": 5, "minutes": 5}) == SESSION
    # A meter of a session never seen opens it implicitly (e.g. state lost to an upgrade).
    assert gate.send("meter", {"session": 2, "minutes": 1}) is None


def test_open_sessions_are_bounded(rules, monkeypatch):
    monkeypatch.setattr(schemas, "MAX_OPEN_SESSIONS", 3)
    gate = Device(rules, "parking-gate")
    for session in (1, 2, 3):
        assert gate.send("meter", {"session": session, "minutes": 1}) is None
    assert gate.send("meter", {"session": 4, "minutes": 1}) == SESSION
    assert gate.send("event", {"event": "vehicle_exit", "session": 2, "minutes": 1}) is None
    assert gate.send("meter", {"session": 4, "minutes": 1}) is None


def test_timestamps_never_go_back_nor_before_approval(rules):
    weather = Device(rules, "weather")
    assert weather.send("data", {"t_c": 1.0}, ts=APPROVED_MS - 1) == STALE
    assert weather.send("data", {"t_c": 1.0}, ts=APPROVED_MS) is None
    assert weather.send("data", {"t_c": 1.0}, ts=APPROVED_MS + 500) is None
    assert weather.send("data", {"t_c": 1.0}, ts=APPROVED_MS + 499) == STALE
    assert weather.send("data", {"t_c": 1.0}, ts=APPROVED_MS + 500) is None   # equal is fine
    sensor = Device(rules, "sensor")      # no schema: the clock rule still holds
    assert sensor.send("data", {}, ts=APPROVED_MS - 5) == STALE


def test_a_refused_frame_changes_nothing(rules):
    purifier = Device(rules, "purifier")
    assert purifier.send("meter", {"session": 1, "running_s": 60}) is None
    assert purifier.send("meter", {"session": 1, "running_s": 10},
                         ts=APPROVED_MS + 10**6) == COUNTER
    assert purifier.send("meter", {"session": 1, "running_s": 60}, ts=APPROVED_MS + 3000) is None


@pytest.mark.parametrize("text", [
    '{"a": "\\ud800"}', '{"\\udfff": 1}', '{"a": ["ok", {"b": "x\\udc00y"}]}',
    '{"a": "\\ud83d"}',                  # a high surrogate with no low one after it
])
def test_lone_surrogates_are_refused(text):
    with pytest.raises(ingest.PayloadError, match="surrogate"):
        ingest.check_payload(text)


def test_surrogate_pairs_are_fine():
    assert ingest.check_payload('{"a": "\\ud83d\\ude00"}') == {"a": "\U0001F600"}


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70)
                           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
FIELD_NAMES = sorted({name for kind in schemas.SCHEMAS.values() for s in kind.values()
                      for name in s.fields} | {"x"})


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(schemas.SCHEMAS)),
       frame_kind=st.sampled_from(["hello", "meter", "event", "data"]),
       doc=st.dictionaries(st.sampled_from(FIELD_NAMES), JSON_VALUES, max_size=6))
def test_field_checks_only_ever_raise_schema_errors(kind, frame_kind, doc):
    try:
        schema = schemas.frame_schema(kind, frame_kind, doc)
        if schema is not None:
            schema.check(doc)
    except SchemaError as exc:
        assert exc.code == SCHEMA and str(exc)


# -- through the bridge ----------------------------------------------------------------------

def test_bridge_refuses_schema_breakers_with_replies_and_keeps_the_rest(mqtt_world):
    world = mqtt_world
    router = world.add_device("router")
    world.start_bridge()
    client = router.connect()
    meter = {"session": 1, "bytes": 1000, "client": "a1b2c3d4", "client_bytes": 1000,
             "bytes_forwarded": 1000}
    sends = [
        (1, "event", {"event": "client_joined", "client": "a1b2c3d4", "session": 1,
                      "clients": 1}, None),
        (2, "meter", meter, None),
        (3, "meter", dict(meter, bytes=999), COUNTER),
        (4, "meter", dict(meter, mb=1), SCHEMA),
        (5, "meter", dict(meter, bytes=1000.5), SCHEMA),
        (6, "event", {"event": "client_joined", "session": 1}, SESSION),
        (7, "meter", dict(meter, bytes=2000, client_bytes=2000, bytes_forwarded=2000), None),
        (8, "event", {"event": "client_left", "session": 1, "bytes": 2500}, None),
        (9, "meter", dict(meter, bytes=3000, client_bytes=3000, bytes_forwarded=3000),
         SESSION),
    ]
    for seq, kind, payload, _ in sends:
        client.publish(router.topic(kind), router.frame(kind, seq, payload), qos=1)
    approved_ms = world.registry.get(router.id)["approved_ms"]
    stale = router.frame("meter", 10, {"session": 3, "bytes": 1}, timestamp_ms=approved_ms - 1)
    client.publish(router.topic("meter"), stale, qos=1)
    client.publish(router.topic("data"), router.frame("hello", 11, {"kind": "router"}), qos=1)
    expected = [(seq, code) for seq, _, _, code in sends if code] + [(10, STALE)]
    wait_for("every reply", lambda: len(router.replies()) >= len(expected) + 1)
    replies = [(r["seq"], r["code"]) for r in router.replies()]
    assert sorted(r for r in replies if r[0] != 11) == expected
    assert (11, "wrong_topic") in replies
    wait_for("the good frames", lambda: sorted(world.stored(router)) == [1, 2, 7, 8])

    # The state is durable: a new bridge still refuses a lower counter for session 9.
    world.stop_bridge(world.bridges[0])
    world.start_bridge(client_id="second-bridge")
    client.publish(router.topic("meter"), router.frame("meter", 12, dict(
        meter, session=9, bytes=5, client_bytes=1999)), qos=1)
    client.publish(router.topic("meter"), router.frame("meter", 13, dict(
        meter, session=9, bytes=5, client_bytes=2000, bytes_forwarded=2000)), qos=1)
    wait_for("the counter reply", lambda: (12, COUNTER) in [(r["seq"], r["code"])
                                                           for r in router.replies()])
    wait_for("the good frame", lambda: 13 in world.stored(router))
