"""The MQTT front through real parts: Mosquitto on a free port with the node's ACL and password
file, real paho clients, the bridge in-process on a temp LMDB (tests/mqttkit.py)."""

import json
import os
import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from edge._fast.codec_py import TAG_FRAME, encode_uvarint
from edge.mqtt import ingest
from edge.mqtt.bridge import BridgeMetrics
from edge.mqtt.frames import Frame, frame_message
from edge.mqtt.provision import join_request
from edge.mqtt.retention import MB, Retention
from edge.mqtt.sequence import Position
from edge.mqtt.topics import reply_topic
from tests.mqttkit import CHAIN_ID, TestDevice, connect, wait_for


def now_ms():
    return time.time_ns() // 1_000_000


def raw_frame(device, *, version=1, kind=2, device_id=None, seq=b"\x01", ts=None, payload=b"{}",
              sign=True, signature=None):
    """Frame bytes assembled field by field (each field may be wrong), signed by ``device``."""
    ts = encode_uvarint(now_ms()) if ts is None else ts
    body = b"".join((bytes((TAG_FRAME, version, kind)), device_id or device.id, seq, ts,
                     encode_uvarint(len(payload)), payload))
    if signature is None:
        signature = device.key.sign(frame_message(CHAIN_ID, body + bytes(64))).signature \
            if sign else bytes(64)
    return body + signature


def rejected(metrics_registry, code):
    value = metrics_registry.get_sample_value("smartshare_mqtt_frames_rejected_total",
                                              {"code": code})
    return int(value or 0)


@pytest.fixture
def world(mqtt_world):
    return mqtt_world


# -- the broker's own guards (ACL, passwords) ----------------------------------------------------

def test_anonymous_and_wrong_password_refused(world):
    device = world.add_device()
    with pytest.raises(ConnectionRefusedError):
        connect(world.port, None, None, "anonymous")
    with pytest.raises(ConnectionRefusedError):
        connect(world.port, device.id.hex(), "not-the-password", "guess")
    pending = world.add_device(approve=False)
    with pytest.raises(ConnectionRefusedError):
        connect(world.port, pending.id.hex(), "anything", "pending")


def test_device_cannot_publish_as_another_or_read_its_replies(world):
    a, b = world.add_device(), world.add_device()
    world.start_bridge()
    client_a, client_b = a.connect(), b.connect()
    # A publishes a correctly signed frame of B's (it could have sniffed one) on B's topic.
    client_a.publish(b.topic("meter"), b.frame("meter", 1, {"kwh": 1}), qos=1).wait_for_publish(5)
    # A snoops on B's replies; B triggers one.
    snooped = threading.Event()
    client_a.message_callback_add(reply_topic(b.id, "#"), lambda *a_: snooped.set())
    client_a.subscribe(reply_topic(b.id, "#"), qos=1)
    client_b.publish(b.topic("meter"), b"garbage", qos=1)
    wait_for("B's error reply", lambda: b.replies())
    # A's own next frame round-trips, so anything A did before has been handled by now.
    client_a.publish(a.topic("meter"), a.frame("meter", 1, {"kwh": 2}), qos=1)
    wait_for("A's frame stored", lambda: world.stored(a))
    assert world.stored(b) == {}, "a device published under another device's topic"
    assert not snooped.is_set(), "a device read another device's replies"


def test_revoked_device_is_cut_off_and_cannot_return(world):
    device, other = world.add_device(), world.add_device()
    world.start_bridge()
    client, other_client = device.connect(), other.connect()
    world.revoke(device)
    wait_for("the revoked device's disconnection", lambda: not client.is_connected())
    with pytest.raises(ConnectionRefusedError):
        connect(world.port, device.id.hex(), device.password, "comeback")
    assert other_client.is_connected(), "a reload dropped a device that was not revoked"
    other_client.publish(other.topic("meter"), other.frame("meter", 1, {}), qos=1)
    wait_for("the other device's frame", lambda: world.stored(other))


# -- frames --------------------------------------------------------------------------------------

def malformed_cases(device):
    """(name, raw payload, expected error code) for every kind of bad frame."""
    good_seq, ts = encode_uvarint(500), encode_uvarint(now_ms())
    valid = device.frame("meter", 500, {"kwh": 5})
    return [
        ("empty", b"", ingest.MALFORMED),
        ("truncated", valid[:-10], ingest.MALFORMED),
        ("trailing bytes", valid + b"\x00", ingest.MALFORMED),
        ("wrong tag", b"\x41" + valid[1:], ingest.MALFORMED),
        ("unknown version", raw_frame(device, version=9, seq=good_seq), ingest.MALFORMED),
        ("unknown kind", raw_frame(device, kind=77, seq=good_seq), ingest.MALFORMED),
        ("short device id", raw_frame(device, device_id=device.id[:5], seq=good_seq),
         ingest.MALFORMED),
        ("non-minimal seq", raw_frame(device, seq=b"\x81\x00"), ingest.MALFORMED),
        ("seq over 64 bits", raw_frame(device, seq=b"\xff" * 10 + b"\x01"), ingest.MALFORMED),
        ("timestamp over 64 bits", raw_frame(device, seq=good_seq, ts=b"\xff" * 10 + b"\x01"),
         ingest.MALFORMED),
        ("invalid UTF-8", raw_frame(device, seq=good_seq, payload=b'{"a":"\xff\xfe"}'),
         ingest.MALFORMED),
        ("payload not JSON", raw_frame(device, seq=good_seq, payload=b"{kwh: 1}"),
         ingest.BAD_PAYLOAD),
        ("payload a list", raw_frame(device, seq=good_seq, payload=b"[1,2]"), ingest.BAD_PAYLOAD),
        ("payload a string", raw_frame(device, seq=good_seq, payload=b'"kwh"'),
         ingest.BAD_PAYLOAD),
        ("NaN", raw_frame(device, seq=good_seq, payload=b'{"t":NaN}'), ingest.BAD_PAYLOAD),
        ("Infinity", raw_frame(device, seq=good_seq, payload=b'{"t":-Infinity}'),
         ingest.BAD_PAYLOAD),
        ("huge float", raw_frame(device, seq=good_seq, payload=b'{"t":1e400}'),
         ingest.BAD_PAYLOAD),
        ("huge integer", raw_frame(device, seq=good_seq, payload=b'{"t":' + b"9" * 40 + b"}"),
         ingest.BAD_PAYLOAD),
        ("duplicate key", raw_frame(device, seq=good_seq, payload=b'{"t":1,"t":2}'),
         ingest.BAD_PAYLOAD),
        ("too deep", raw_frame(device, seq=good_seq, payload=b'{"a":' * 9 + b"1" + b"}" * 9),
         ingest.BAD_PAYLOAD),
        ("kind differs from topic", device.frame("event", 500, {"e": 1}), ingest.WRONG_TOPIC),
        ("far-future timestamp", device.frame("meter", 500, {}, timestamp_ms=now_ms() + 3_600_000),
         ingest.FUTURE),
        ("forged signature", raw_frame(device, seq=good_seq, sign=False), ingest.BAD_SIGNATURE),
        ("signed for another chain", device.frame("meter", 500, {}, chain_id="other-chain"),
         ingest.BAD_SIGNATURE),
        ("seq far ahead", device.frame("meter", 10**9, {}), ingest.OUT_OF_ORDER),
        ("oversize", b"\x40" * (ingest.MAX_MQTT_PAYLOAD + 1), ingest.OVERSIZE),
    ]


def test_every_bad_frame_gets_an_error_reply_and_good_frames_beside_it_are_stored(world):
    metrics_registry = CollectorRegistry()
    device = world.add_device()
    world.start_bridge(metrics=BridgeMetrics(metrics_registry))
    client = device.connect()
    cases = malformed_cases(device)
    seq = 0
    good = {}
    for name, payload, _ in cases:
        seq += 1
        good[seq] = device.frame("meter", seq, {"kwh": seq})
        client.publish(device.topic("meter"), good[seq], qos=1)
        client.publish(device.topic("meter"), payload, qos=1)
    seq += 1
    good[seq] = device.frame("meter", seq, {"kwh": seq})
    client.publish(device.topic("meter"), good[seq], qos=1)
    replies = wait_for("one reply per bad frame", lambda: (lambda r: r if len(r) >= len(cases)
                                                           else None)(device.replies()))
    # Signatures are checked batch-wise after the layout checks: compare regardless of order.
    assert sorted(r["code"] for r in replies) == sorted(code for _, _, code in cases), replies
    for reply in replies:
        extra = {"expected"} if reply["code"] == "out_of_order" else set()
        assert reply["message"] and set(reply) == {"code", "message", "seq"} | extra
    wait_for("every good frame", lambda: len(world.stored(device)) == len(good))
    assert world.stored(device) == good
    expected = {}
    for _, _, code in cases:
        expected[code] = expected.get(code, 0) + 1
    assert {code: rejected(metrics_registry, code) for code in expected} == expected


def test_replay_and_backwards_seq_refused_but_redelivery_is_silent(world):
    device = world.add_device()
    world.start_bridge()
    client = device.connect()
    for seq in (1, 2, 3):
        client.publish(device.topic("meter"), device.frame("meter", seq, {"n": seq}), qos=1)
    wait_for("3 frames", lambda: len(world.stored(device)) == 3)
    original = world.stored(device)[2]
    client.publish(device.topic("meter"), original, qos=1)               # a redelivery
    client.publish(device.topic("meter"), device.frame("meter", 2, {"n": 99}), qos=1)
    client.publish(device.topic("meter"), device.frame("meter", 1, {"n": 98}), qos=1)
    client.publish(device.topic("meter"), device.frame("meter", 4, {"n": 4}), qos=1)
    wait_for("frame 4", lambda: len(world.stored(device)) == 4)
    replies = wait_for("2 replies", lambda: (lambda r: r if len(r) == 2 else None)(
        device.replies()))
    assert [(r["code"], r["seq"]) for r in replies] == [("replayed", 2), ("replayed", 1)]
    assert world.stored(device)[2] == original
    assert world.bridges[0].stats()["duplicates"] == 1


def test_unknown_device_gets_an_error(world):
    device = world.add_device()
    bridge = world.start_bridge()
    client = device.connect()
    world.registry.revoke(device.id)   # revoked in the registry; the broker not yet reloaded
    bridge.refresh_devices()
    client.publish(device.topic("meter"), device.frame("meter", 1, {}), qos=1)
    reply = wait_for("a reply", device.replies)[0]
    assert reply["code"] == "unknown_device"
    assert world.stored(device) == {}


def test_a_flooding_device_does_not_starve_the_others(world):
    flooder, *others = world.add_devices(4)
    bridge = world.start_bridge(rate_per_s=50, burst=100)
    flood_client = flooder.connect(inflight=1000)
    frames = [flooder.frame("data", seq, {"bytes": seq}) for seq in range(1, 3001)]
    quiet = {d: [d.frame("meter", seq, {"n": seq}) for seq in range(1, 41)] for d in others}
    started = time.monotonic()
    flooding = threading.Thread(target=lambda: [flood_client.publish(flooder.topic("data"), f,
                                                                     qos=1) for f in frames])
    flooding.start()
    for device, device_frames in quiet.items():
        client = device.connect()
        for frame in device_frames:
            client.publish(device.topic("meter"), frame, qos=1)
    flooding.join()
    for device in others:
        wait_for(f"all frames of {device.id.hex()}", lambda d=device: len(world.stored(d)) == 40)
    wait_for("the flood to be handled", lambda: bridge.stats()["queued"] == 0 and sum(
        bridge.stats()["rejected"].values()) + len(world.stored(flooder)) >= len(frames))
    elapsed = time.monotonic() - started
    stored = world.stored(flooder)
    # Taken in seq order: what is stored is a prefix; behind the first refusal the rest waits.
    assert stored == {seq: frames[seq - 1] for seq in range(1, len(stored) + 1)}
    assert len(stored) <= 100 + 50 * elapsed + 1, (len(stored), elapsed)
    rejected_codes = bridge.stats()["rejected"]
    assert sum(rejected_codes.values()) == len(frames) - len(stored)
    assert set(rejected_codes) == {"rate_limited", "out_of_order"}
    codes = [r["code"] for r in flooder.replies()]
    for code in ("rate_limited", "out_of_order"):   # at most one reply a second for each
        assert 1 <= codes.count(code) <= elapsed / 1.0 + 2


def test_a_client_that_stops_reading_costs_the_broker_a_bounded_amount(world):
    """Home Assistant's account subscribes and then never reads its socket while the node
    publishes about 100 MiB of the largest messages the broker takes to it: Mosquitto keeps at
    most its queue and in-flight limits for that client (dropping the rest, and saying so in its
    log), and goes on serving the others."""
    import paho.mqtt.client as mqtt
    from edge.mqtt.broker import (BRIDGE_USER, HOME_ASSISTANT_USER, MAX_INFLIGHT_BYTES,
                                  MAX_QUEUED_BYTES)
    device = world.add_device()
    stalled = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="stalled-reader")
    stalled.username_pw_set(HOME_ASSISTANT_USER, world.home_assistant_password)
    subscribed = []
    stalled.on_connect = lambda *a: stalled.subscribe("homeassistant/#", qos=1)
    stalled.on_subscribe = lambda *a: subscribed.append(True)
    stalled.connect("127.0.0.1", world.port)
    try:
        wait_for("the subscription", lambda: stalled.loop(0.05) or subscribed, 10)
        before = _rss_bytes(world.broker.process.pid)
        node = connect(world.port, BRIDGE_USER, world.bridge_password, "node", inflight=100)
        size, count = 65_000, 1600
        sent = [node.publish("homeassistant/sensor/x/config", i.to_bytes(4, "big") +
                             bytes(size - 4), qos=1) for i in range(count)]
        for info in sent:
            info.wait_for_publish(30)
        node.disconnect()
        node.loop_stop()
        grown = _rss_bytes(world.broker.process.pid) - before
        # Queued bodies, in-flight packets and the broker's own copies: about 30 MiB measured.
        assert grown < 2 * MAX_QUEUED_BYTES + MAX_INFLIGHT_BYTES + (8 << 20), grown >> 20
        log = open(world.broker.path("mosquitto.log")).read()
        assert "Outgoing messages are being dropped for client stalled-reader" in log
        world.start_bridge()
        client = device.connect()
        client.publish(device.topic("meter"), device.frame("meter", 1, {"n": 1}), qos=1)
        wait_for("the device's frame", lambda: world.stored(device))
    finally:
        stalled.socket().close()


def _rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) << 10 for line in f if line.startswith("VmRSS:"))


def test_frames_published_while_the_bridge_is_down_arrive_later(world):
    device = world.add_device()
    bridge = world.start_bridge(client_id="durable")
    world.stop_bridge(bridge)
    client = device.connect()
    frames = {seq: device.frame("meter", seq, {"n": seq}) for seq in range(1, 201)}
    for seq, frame in frames.items():
        client.publish(device.topic("meter"), frame, qos=1).wait_for_publish(5)
    assert world.stored(device) == {}
    world.start_bridge(client_id="durable")
    wait_for("the queued frames", lambda: len(world.stored(device)) == 200)
    assert world.stored(device) == frames
    assert Frame.decode(frames[7]).seq == 7


# -- onboarding ----------------------------------------------------------------------------------

def test_join_requests_are_recorded_pending_and_bad_ones_refused(world):
    world.start_bridge()
    joining, impostor, other = (TestDevice(world, "weather") for _ in range(3))
    client, second = world.provisioner(joining), world.provisioner(impostor)
    client.publish(world.provision_topic(joining), joining.join_request(), qos=1)
    # The topic names one device, the request carries another's key: refused.
    client.publish(world.provision_topic(joining),
                   join_request(impostor.pubkey, "weather"), qos=1)
    # A provisioning client may announce only the device its client id names (the ACL).
    client.publish(world.provision_topic(other), other.join_request(), qos=1)
    second.publish(world.provision_topic(impostor), b"not json", qos=1)
    record = wait_for("the pending device", lambda: world.registry.get(joining.id))
    assert record["status"] == "pending" and record["kind"] == "weather"
    assert record["source"] == "127.0.0.1"
    wait_for("all handled", lambda: world.bridges[0].stats()["provision_rejected"] == 2)
    assert world.registry.get(impostor.id) is None and world.registry.get(other.id) is None
    for c in (client, second):
        c.disconnect()
        c.loop_stop()


def test_provisioning_account_cannot_publish_frames(world):
    device = world.add_device()
    world.start_bridge()
    client = world.provisioner(TestDevice(world, "weather"))
    client.publish(device.topic("meter"), device.frame("meter", 1, {}), qos=1).wait_for_publish(5)
    own = device.connect()
    mine = device.frame("meter", 1, {"mine": True})
    own.publish(device.topic("meter"), mine, qos=1)
    wait_for("the device's own frame", lambda: world.stored(device))
    assert world.stored(device) == {1: mine}
    client.disconnect()
    client.loop_stop()


def test_error_reply_body_is_small_json():
    body = json.loads(ingest.error_reply("replayed", "seq 2 is not above 3", 2))
    assert body == {"code": "replayed", "message": "seq 2 is not above 3", "seq": 2}


def test_home_assistant_account_reads_its_topics_only(world):
    from edge.mqtt.broker import HOME_ASSISTANT_USER
    device = world.add_device()
    world.start_bridge()
    bridge_client = world.bridges[0]
    seen = []
    ha = connect(world.port, HOME_ASSISTANT_USER, world.home_assistant_password, "ha",
                 on_message=lambda c, u, m: seen.append(m.topic))
    subscribed = threading.Event()
    ha.on_subscribe = lambda *a: subscribed.set()
    ha.subscribe([("homeassistant/#", 1), ("ss/v1/#", 1)])
    assert subscribed.wait(10)
    ha.publish(device.topic("meter"), device.frame("meter", 1, {}), qos=1)   # not allowed
    client = device.connect()
    client.publish(device.topic("meter"), b"bad", qos=1)                       # a reply to B
    wait_for("the device's error reply", device.replies)
    bridge_client.publish("ss/v1/ha/x/state", b"{}", qos=1)
    bridge_client.publish("homeassistant/sensor/n/x/config", b"{}", qos=1)
    wait_for("HA's own topics", lambda: len(seen) >= 2)
    mine = device.frame("meter", 1, {"mine": True})
    client.publish(device.topic("meter"), mine, qos=1)
    wait_for("the device's frame", lambda: world.stored(device))
    assert world.stored(device) == {1: mine}, "Home Assistant published a device frame"
    assert sorted(set(seen)) == ["homeassistant/sensor/n/x/config", "ss/v1/ha/x/state"], seen
    ha.disconnect()
    ha.loop_stop()


def test_reload_reaches_a_broker_started_by_systemd(tmp_path):
    """On the image systemd runs Mosquitto on the node's files ([mqtt] run_broker = false):
    approving a device must still reload it (SIGHUP through the pid file)."""
    import subprocess
    from edge.mqtt.broker import Broker, BrokerError, mosquitto_binary
    from edge.testnet import free_ports
    port = free_ports(1)[0]
    broker = Broker(str(tmp_path / "mqtt"), "127.0.0.1", port, "bridge-pw", "prov-pw")
    broker.write_config({})
    with pytest.raises(BrokerError, match="no Mosquitto runs"):
        broker.reload()
    service = subprocess.Popen([mosquitto_binary(), "-c", broker.path("mosquitto.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for("the broker's pid file", broker.running_pid)
        with pytest.raises(ConnectionRefusedError):
            connect(port, "0011223344556677", "device-pw", "early")
        broker.write_config({"0011223344556677": "device-pw"})
        broker.reload()
        client = wait_for("the device's login", lambda: _try_connect(port))
        client.disconnect()
        client.loop_stop()
        assert service.poll() is None
    finally:
        service.terminate()
        service.wait(10)


def test_reload_returns_once_the_broker_reads_the_new_files(world):
    """A SIGHUP only sets a flag Mosquitto looks at between two rounds of its event loop (and
    one arriving while it reloads is dropped): ``reload`` returns only once the broker has
    begun a reload after the files were written, so a device approved just before logs in at
    its first try. Here the broker is frozen (SIGSTOP) while the reload is asked for."""
    import signal
    device = TestDevice(world, "sensor")
    world.registry.request(device.pubkey, {"kind": "sensor"})
    _, device.password = world.registry.approve(device.id)
    world.devices.append(device)
    world.broker.write_config({device.id.hex(): device.password})
    pid = world.broker.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        reload = threading.Thread(target=world.broker.reload)
        reload.start()
        wait_for("the SIGHUP pending", lambda: _pending_signals(pid) >> (signal.SIGHUP - 1) & 1)
        reload.join(1)   # beyond RELOAD_RESEND_S: the SIGHUP is sent again, still pending
        assert reload.is_alive(), "reload returned while the broker could not have reloaded"
    finally:
        os.kill(pid, signal.SIGCONT)
    reload.join(15)
    assert not reload.is_alive()
    device.connect()   # at once: raises ConnectionRefusedError when the broker says no


def _pending_signals(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1], 16) for line in f if line.startswith("ShdPnd:"))


def _try_connect(port):
    try:
        return connect(port, "0011223344556677", "device-pw", "late")
    except ConnectionRefusedError:
        return None


def test_receipts_tell_the_device_what_is_stored(world):
    """After a commit the device hears the highest seq of its that is in LMDB (reply/receipt),
    also for a redelivered duplicate, so it may drop those frames from its own outbox."""
    device = world.add_device()
    world.start_bridge()
    client = device.connect()
    frames = {seq: device.frame("meter", seq, {"n": seq}) for seq in range(1, 6)}
    for frame in frames.values():
        client.publish(device.topic("meter"), frame, qos=1)
    five = {"seq": 5, "from": 1, "refused": []}
    wait_for("a receipt for seq 5", lambda: five in device.replies("receipt"))
    assert all(r["seq"] <= 5 for r in device.replies("receipt"))
    client.publish(device.topic("meter"), frames[3], qos=1)       # a redelivery
    wait_for("a second receipt for seq 5", lambda: device.replies("receipt").count(five) >= 2)
    client.publish(device.topic("meter"), b"garbage", qos=1)      # refused: no receipt
    wait_for("the error reply", device.replies)
    assert device.replies("receipt")[-1] == five


def test_a_lost_frame_holds_back_those_above_it_until_it_is_sent(world):
    """The broker lost frame 2 (say, in a crash): 3 and 4 wait (out_of_order, expected 2), no
    receipt goes past 1; once 2 comes, 2..4 are taken and the receipt says so."""
    device = world.add_device()
    world.start_bridge()
    client = device.connect()
    frames = {seq: device.frame("meter", seq, {"n": seq}) for seq in range(1, 5)}
    for seq in (1, 3, 4):
        client.publish(device.topic("meter"), frames[seq], qos=1)
    reply = wait_for("the out_of_order reply", device.replies)[0]
    assert (reply["code"], reply["seq"], reply["expected"]) == ("out_of_order", 3, 2)
    wait_for("a receipt for seq 1", lambda: device.replies("receipt"))
    assert world.stored(device) == {1: frames[1]}
    assert all(r["seq"] == 1 for r in device.replies("receipt"))
    for seq in (2, 3, 4):                     # the device sends what is missing, in order
        client.publish(device.topic("meter"), frames[seq], qos=1)
    wait_for("a receipt for seq 4", lambda: {"seq": 4, "from": 1, "refused": []}
             in device.replies("receipt"))
    assert world.stored(device) == frames


def test_a_refused_frame_is_settled_and_named_in_the_receipt(world):
    """The device's own (signed) frame refused for its content takes its seq, so the device
    goes on with the next; the receipt lists it as refused. A forged one settles nothing."""
    device = world.add_device()
    world.start_bridge()
    client = device.connect()
    good = device.frame("meter", 1, {"n": 1})
    bad = device.frame("meter", 2, '{"n": NaN}')
    forged = raw_frame(device, seq=encode_uvarint(3), sign=False)
    after = device.frame("meter", 3, {"n": 3})
    for frame in (good, bad, forged, after):
        client.publish(device.topic("meter"), frame, qos=1)
    wait_for("frame 3 stored", lambda: 3 in world.stored(device))
    assert world.stored(device) == {1: good, 3: after}
    wait_for("two error replies", lambda: len(device.replies()) == 2)
    codes = sorted((r["seq"], r["code"]) for r in device.replies())
    assert codes == [(2, "bad_payload"), (3, "bad_signature")]
    wait_for("the receipt", lambda: {"seq": 3, "from": 1, "refused": [2]}
             in device.replies("receipt"))
    client.publish(device.topic("meter"), device.frame("meter", 2, {"n": 2}), qos=1)
    wait_for("the replay reply", lambda: len(device.replies()) == 3)
    assert device.replies()[-1]["code"] == "replayed"


def test_a_hello_starts_a_new_run_above_a_gap(world):
    """A device that lost frames (or a gateway whose data was wiped) goes on with a hello: it
    starts a new run at its seq; the receipt's ``from`` says where the run began."""
    device = world.add_device()
    world.start_bridge()
    client = device.connect()
    client.publish(device.topic("meter"), device.frame("meter", 1, {}), qos=1)
    hello = device.frame("hello", 500, {"kind": "sensor"})
    client.publish(device.topic("hello"), hello, qos=1)
    client.publish(device.topic("meter"), device.frame("meter", 501, {}), qos=1)
    wait_for("the new run's receipt", lambda: {"seq": 501, "from": 500, "refused": []}
             in device.replies("receipt"))
    assert sorted(world.stored(device)) == [1, 500, 501]
    client.publish(device.topic("hello"), device.frame("hello", 501 + 2_000_000, {}), qos=1)
    reply = wait_for("the too-far reply", device.replies)[0]
    assert (reply["code"], reply["expected"]) == ("out_of_order", 502)


def test_after_a_broker_crash_the_bridge_is_subscribed_before_devices_publish(world):
    """The node has the broker save the bridge's session once it subscribed: a broker killed
    with SIGKILL comes back with that subscription, so a frame published before the bridge
    reconnects is queued for it, not dropped."""
    device = world.add_device()
    bridge = world.start_bridge(client_id="durable")
    world.stop_bridge(bridge)
    wait_for("the saved database", lambda: os.path.exists(world.broker.path("mosquitto.db")))
    world.broker.process.kill()
    world.broker.process.wait()
    world.broker.start()
    client = device.connect()
    frame = device.frame("meter", 1, {"n": 1})
    client.publish(device.topic("meter"), frame, qos=1).wait_for_publish(5)
    world.start_bridge(client_id="durable")
    wait_for("the frame published while no bridge was connected",
             lambda: world.stored(device) == {1: frame})


# -- the write budget: batches by time and count, one verifier, the frame log ---------------------

def test_a_batch_is_finished_when_full_and_the_rest_waits_for_its_time(world):
    """``batch_size`` messages make a commit at once; fewer wait for ``commit_ms`` (here longer
    than the test), and stopping the bridge finishes them."""
    device = world.add_device()
    bridge = world.start_bridge(batch_size=10, commit_ms=600_000)
    client = device.connect()
    frames = [device.frame("meter", seq, {"n": seq}) for seq in range(1, 26)]
    for frame in frames:
        client.publish(device.topic("meter"), frame, qos=1)
    wait_for("two full batches", lambda: len(world.stored(device)) == 20)
    assert bridge.stats()["commits"] == 2
    wait_for("the last five queued", lambda: bridge.stats()["queued"] == 0)
    assert len(world.stored(device)) == 20
    world.stop_bridge(bridge)
    assert world.stored(device) == dict(enumerate(frames, start=1))
    assert bridge.stats()["commits"] == 3 and bridge.stats()["acknowledged"] == 25


def test_one_verifier_thread_serves_every_batch(world):
    devices = world.add_devices(4)
    bridge = world.start_bridge(commit_ms=5)
    clients = [d.connect() for d in devices]
    for seq in range(1, 31):
        for device, client in zip(devices, clients):
            client.publish(device.topic("meter"), device.frame("meter", seq, {"n": seq}), qos=1)
    wait_for("all frames", lambda: all(len(world.stored(d)) == 30 for d in devices))
    names = [t.name for t in threading.enumerate()]
    assert names.count("frame-verifier") == 1
    assert bridge.stats()["verify_batches"] > 1
    world.stop_bridge(bridge)
    assert "frame-verifier" not in [t.name for t in threading.enumerate()]


def test_frames_are_numbered_in_arrival_order_and_found_by_device(world):
    a, b = world.add_device(), world.add_device()
    world.start_bridge(commit_ms=5)
    ca, cb = a.connect(), b.connect()
    for seq in range(1, 6):
        ca.publish(a.topic("meter"), a.frame("meter", seq, {"n": seq}), qos=1).wait_for_publish(5)
        cb.publish(b.topic("meter"), b.frame("meter", seq, {"n": seq}), qos=1).wait_for_publish(5)
    wait_for("both stored", lambda: len(world.stored(a)) == len(world.stored(b)) == 5)
    with world.store.read() as txn:
        log = [(n, Frame.decode(frame).device_id) for n, _, frame in world.registry.log(txn)]
    assert [n for n, _ in log] == list(range(1, 11))          # appended, densely numbered
    assert {d for _, d in log} == {a.id, b.id}
    registry = world.registry
    assert [seq for seq, _ in registry.frames_of(a.id, 3)] == [5, 4, 3]
    assert [seq for seq, _ in registry.frames_after(b.id, 2)] == [3, 4, 5]
    assert registry.last_seq(a.id) == 5 and registry.last_seq(b"\0" * 8) == 0


def test_a_redelivery_too_far_back_to_compare_is_a_silent_duplicate(world, monkeypatch):
    """Beyond DUPLICATE_WINDOW frames back, a validly signed frame at or below the mark counts
    as a duplicate (its stored copy is not looked for); within it, other bytes are a replay."""
    monkeypatch.setattr("edge.mqtt.bridge.DUPLICATE_WINDOW", 4)
    device = world.add_device()
    bridge = world.start_bridge(commit_ms=5)
    client = device.connect()
    frames = [device.frame("meter", seq, {"n": seq}) for seq in range(1, 11)]
    for frame in frames:
        client.publish(device.topic("meter"), frame, qos=1)
    wait_for("10 frames", lambda: len(world.stored(device)) == 10)
    client.publish(device.topic("meter"), frames[0], qos=1)                       # far back
    client.publish(device.topic("meter"), device.frame("meter", 2, {"n": 0}), qos=1)  # far back
    client.publish(device.topic("meter"), device.frame("meter", 9, {"n": 0}), qos=1)  # near
    client.publish(device.topic("meter"), frames[9], qos=1)                       # near, same
    wait_for("the replay reply", device.replies)
    wait_for("every message", lambda: bridge.stats()["acknowledged"] == 14)
    assert [(r["code"], r["seq"]) for r in device.replies()] == [("replayed", 9)]
    assert bridge.stats()["duplicates"] == 3
    assert world.stored(device) == dict(enumerate(frames, start=1))


# -- retention and the free-space watermark (docs §15.7) -------------------------------------------

def test_commits_prune_the_oldest_frames_beyond_the_budget_and_keep_positions(world):
    """A budget of three pages: each commit deletes the oldest frames beyond it (in the same
    transaction), the newest stay, and an old frame sent again is a silent duplicate."""
    device = world.add_device()
    page = os.sysconf("SC_PAGE_SIZE")
    retention = Retention(world.store.path, budget_mb=3 * page / MB, min_free_mb=0)
    bridge = world.start_bridge(commit_ms=5, retention=retention)
    client = device.connect()
    frames = [device.frame("meter", seq, {"n": seq}) for seq in range(1, 201)]
    for frame in frames:
        client.publish(device.topic("meter"), frame, qos=1).wait_for_publish(5)
    wait_for("200 frames taken", lambda: bridge.stats()["acknowledged"] == 200)
    kept = world.stored(device)
    assert 0 < len(kept) < 200 and bridge.stats()["pruned"] == 200 - len(kept)
    assert sorted(kept) == list(range(201 - len(kept), 201))      # the newest, in order
    assert all(kept[seq] == frames[seq - 1] for seq in kept)
    with world.store.read() as txn:
        assert world.registry.frames_bytes(txn) <= 5 * page
        assert world.registry.position(txn, device.id).mark == 200
    client.publish(device.topic("meter"), frames[0], qos=1)       # pruned: a duplicate
    wait_for("the redelivery", lambda: bridge.stats()["acknowledged"] == 201)
    assert bridge.stats()["duplicates"] == 1 and not device.replies()


def test_prune_frames_deletes_by_age_oldest_first_within_its_limit(world):
    device = world.add_device()
    raw = [device.frame("meter", seq, {"n": seq}) for seq in range(1, 11)]
    positions = {device.id: Position(10, 1)}
    for seq in range(1, 11):   # arrivals 1000, 2000, ... 10000 ms
        world.store.write(lambda txn, s=seq: world.registry.store_frames(
            txn, [(device.id, s, raw[s - 1])], positions, now_ms=1000 * s))
    big = 1 << 40
    prune = world.registry.prune_frames
    assert world.store.write(lambda txn: prune(txn, 4500, big, 2)) == 2       # the limit
    assert world.store.write(lambda txn: prune(txn, 4500, big, 100)) == 2     # 3 and 4
    assert world.store.write(lambda txn: prune(txn, 4500, big, 100)) == 0
    assert list(world.stored(device)) == [10, 9, 8, 7, 6, 5]
    assert world.store.write(lambda txn: prune(txn, 0, 0, 100)) == 6          # over budget
    assert world.stored(device) == {}


def test_under_the_watermark_nothing_is_written_or_acknowledged_until_space_returns(world):
    device = world.add_device()
    retention = Retention(world.store.path, min_free_mb=1 << 40)   # more than any disk has
    bridge = world.start_bridge(commit_ms=5, retention=retention)
    client = device.connect()
    frames = [device.frame("meter", seq, {"n": seq}) for seq in range(1, 4)]
    for frame in frames:
        client.publish(device.topic("meter"), frame, qos=1)
    wait_for("a commit held back", lambda: bridge.stats()["disk_low"] >= 1)
    assert world.stored(device) == {} and bridge.stats()["acknowledged"] == 0
    assert 0 < bridge.stats()["disk_free_bytes"] < retention.min_free_bytes
    retention.min_free_bytes = 0                                       # space freed
    wait_for("the frames stored", lambda: world.stored(device) == dict(
        enumerate(frames, start=1)))
    wait_for("acknowledged", lambda: bridge.stats()["acknowledged"] == 3)
    assert not device.replies()
