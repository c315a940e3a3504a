"""The Home Assistant bridge (edge/mqtt/homeassistant.py, docs/protocol.md §16.2) on a real
Mosquitto: exact discovery configs per device kind, retained for late subscribers, states that
follow committed frames only, re-sending on HA's ``online``, removal of revoked devices, and the
wiring through DeviceService. Home Assistant itself is played by an MQTT client."""

import json
import random
import secrets
import threading
import time

import pytest
from nacl.signing import SigningKey

from chain.store import Store
from edge.config import Config
from edge.mqtt import sim_kinds
from edge.mqtt.broker import BRIDGE_USER, HOME_ASSISTANT_USER
from edge.mqtt.frames import sign_frame
from edge.mqtt.homeassistant import SENSORS, HomeAssistant, HomeAssistantLink
from edge.mqtt.service import DeviceService
from edge.mqtt.topics import device_id_of
from edge.testnet import free_ports
from tests.mqttkit import CHAIN_ID, connect, wait_for

NODE = "00aa11bb22cc33dd"
TIMEOUT = 10

# kind -> key -> (name, unit, device_class, state_class, icon): what HA is told, spelled out.
EXPECTED = {
    "parking-gate": {
        "occupancy": ("Occupancy", "vehicles", None, "measurement", "mdi:car-multiple"),
        "sessions": ("Parking sessions", None, None, "total_increasing", "mdi:counter")},
    "purifier": {
        "running_hours": ("Running hours", "h", "duration", "total_increasing", None),
        "pm25": ("PM2.5", "µg/m³", "pm25", "measurement", None)},
    "router": {
        "bytes_forwarded": ("Bytes forwarded", "B", "data_size", "total_increasing", None),
        "clients": ("Active clients", None, None, "measurement", "mdi:lan-connect")},
    "weather": {
        "temperature": ("Temperature", "°C", "temperature", "measurement", None),
        "humidity": ("Humidity", "%", "humidity", "measurement", None),
        "wind": ("Wind speed", "m/s", "wind_speed", "measurement", None)},
}
MODEL_NAMES = {"parking-gate": "Parking gate", "purifier": "Air purifier", "router": "Router",
               "weather": "Weather station"}


def config_topic(device, key):
    return f"homeassistant/sensor/{NODE}/{device.id.hex()}_{key}/config"


def state_topic(device):
    return f"ss/v1/ha/{device.id.hex()}/state"


def expected_config(device, key, spec):
    name, unit, device_class, state_class, icon = spec
    dev = device.id.hex()
    doc = {"name": name, "unique_id": f"smartshare_{dev}_{key}",
           "state_topic": f"ss/v1/ha/{dev}/state", "value_template": "{{ value_json.%s }}" % key,
           "device": {"identifiers": [f"smartshare_{dev}"],
                      "name": f"{MODEL_NAMES[device.kind]} {dev[:8]}", "model": "test",
                      "manufacturer": "SmartShare"}}
    optional = {"unit_of_measurement": unit, "device_class": device_class,
                "state_class": state_class, "icon": icon}
    doc.update({k: v for k, v in optional.items() if v is not None})
    return doc


class Listener:
    """Plays Home Assistant's side: an MQTT client on Home Assistant's own broker account
    recording ``(topic, payload, retain)``."""

    def __init__(self, port, password, *filters):
        self.messages = []
        self._lock = threading.Lock()
        self.client = connect(port, HOME_ASSISTANT_USER, password,
                              f"ha-{secrets.token_hex(4)}", on_message=self._record)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.subscribe([(f, 1) for f in filters])
        assert subscribed.wait(TIMEOUT), "subscription not confirmed"

    def _record(self, client, userdata, msg):
        with self._lock:
            self.messages.append((msg.topic, msg.payload, msg.retain))

    def received(self, topic):
        with self._lock:
            return [(p, r) for t, p, r in self.messages if t == topic]

    def latest(self, topic):
        got = self.received(topic)
        return got[-1][0] if got else None

    def wait_json(self, topic, expected):
        """Wait until the newest message on ``topic`` is the JSON ``expected``."""
        return wait_for(f"{expected} on {topic} (got {self.latest(topic)!r})",
                        lambda: self.latest(topic) is not None
                        and json.loads(self.latest(topic)) == expected, TIMEOUT)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def ha(mqtt_world):
    """A HomeAssistantLink on the world's broker and registry, and Listeners; all closed after."""
    made = {"links": [], "listeners": []}

    def link():
        new = HomeAssistantLink(mqtt_world.registry, host="127.0.0.1", port=mqtt_world.port,
                                username=BRIDGE_USER, password=mqtt_world.bridge_password,
                                node_id=NODE, log=lambda *_: None)
        made["links"].append(new)
        return new

    def listener(*filters):
        made["listeners"].append(Listener(mqtt_world.port, mqtt_world.home_assistant_password,
                                          *filters))
        return made["listeners"][-1]

    yield link, listener
    for item in made["listeners"]:
        item.close()
    for item in made["links"]:
        item.stop()


def start(link):
    link.start()
    assert link.wait_ready(TIMEOUT), "the Home Assistant link did not connect"
    return link


def send(device, client, seq, kind, payload):
    client.publish(device.topic(kind), device.frame(kind, seq, payload), qos=1)


def test_configs_are_exact_per_kind_and_retained(mqtt_world, ha):
    make_link, listener = ha
    devices = [mqtt_world.add_device(kind) for kind in SENSORS]
    start(make_link())
    topics = {config_topic(d, key): expected_config(d, key, spec)
              for d in devices for key, spec in EXPECTED[d.kind].items()}
    assert len(topics) == 9
    early = listener("homeassistant/#")
    wait_for("every config", lambda: all(early.received(t) for t in topics), TIMEOUT)

    late = listener("homeassistant/#", "ss/v1/ha/#")   # subscribes after all were published
    wait_for("every config, retained", lambda: all(late.received(t) for t in topics), TIMEOUT)
    for topic, expected in topics.items():
        (payload, retained), = late.received(topic)
        assert retained and json.loads(payload) == expected, topic
    assert {t for t, _, _ in late.messages if t.startswith("homeassistant/")} == set(topics)
    for d in devices:   # each state is there from the start, every value unknown (null)
        wait_for("the retained state", lambda: late.received(state_topic(d)), TIMEOUT)
        (payload, retained), = late.received(state_topic(d))
        assert retained and json.loads(payload) == dict.fromkeys(EXPECTED[d.kind])


def test_state_follows_committed_frames_only(mqtt_world, ha):
    make_link, listener = ha
    gate, purifier, router, weather = [mqtt_world.add_device(k) for k in SENSORS]
    link = start(make_link())
    mqtt_world.start_bridge(on_commit=link.on_commit)
    watch = listener("ss/v1/ha/#", "homeassistant/#")
    clients = {d: d.connect() for d in (gate, purifier, router, weather)}

    send(gate, clients[gate], 1, "event", {"event": "vehicle_entry", "session": 1, "spot": 1,
                                           "occupancy": 1, "sessions": 1})
    send(gate, clients[gate], 2, "meter", {"session": 1, "minutes": 5, "occupancy": 1,
                                           "sessions": 1})
    send(gate, clients[gate], 3, "event", {"event": "vehicle_exit", "session": 1, "minutes": 9,
                                           "occupancy": 0, "sessions": 1})
    send(purifier, clients[purifier], 1, "data", {"pm25": 12.5, "pm10": 20.0, "running": True})
    send(purifier, clients[purifier], 2, "meter", {"session": 1, "running_s": 600,
                                                   "total_running_s": 9000, "fan": 2})
    send(router, clients[router], 1, "meter", {"session": 1, "client": "a1b2c3d4", "bytes": 700,
                                               "client_bytes": 1000, "bytes_forwarded": 5000,
                                               "clients": 2})
    send(weather, clients[weather], 1, "data", {"t_c": 21.5, "rh": 40.0, "wind_ms": 3.2,
                                                "wind_deg": 180, "p_hpa": 1012.0, "reading": 1})
    forged = sign_frame(SigningKey.generate(), CHAIN_ID, weather.id, "data", 2,
                        time.time_ns() // 1_000_000, {"t_c": 45.5})   # a stranger's key
    clients[weather].publish(weather.topic("data"), forged, qos=1)
    # A forged frame settles nothing: the device's own next frame is still seq 2.
    send(weather, clients[weather], 2, "data", {"t_c": 22.0, "rh": 41.0, "wind_ms": 3.0})

    watch.wait_json(state_topic(gate), {"occupancy": 0, "sessions": 1})
    watch.wait_json(state_topic(purifier), {"pm25": 12.5, "running_hours": 2.5})
    watch.wait_json(state_topic(router), {"bytes_forwarded": 5000, "clients": 2,
                                          "bytes_forwarded_a1b2c3d4": 1000})
    watch.wait_json(state_topic(weather), {"temperature": 22.0, "humidity": 41.0, "wind": 3.0})
    assert all(b"45.5" not in p for p, _ in watch.received(state_topic(weather)))
    wait_for("the error reply", lambda: weather.replies(), TIMEOUT)
    assert [r["code"] for r in weather.replies()] == ["bad_signature"]
    client_sensor = json.loads(watch.latest(config_topic(router, "bytes_forwarded_a1b2c3d4")))
    assert client_sensor == expected_config(
        router, "bytes_forwarded_a1b2c3d4",
        ("Bytes forwarded to a1b2c3d4", "B", "data_size", "total_increasing", None))


def test_state_is_rebuilt_from_stored_frames_at_start(mqtt_world, ha):
    make_link, listener = ha
    weather = mqtt_world.add_device("weather")
    mqtt_world.start_bridge()   # no Home Assistant yet
    client = weather.connect()
    send(weather, client, 1, "data", {"t_c": 5.0, "rh": 90.0, "wind_ms": 8.5})
    send(weather, client, 2, "data", {"t_c": 6.0})
    wait_for("two stored frames", lambda: len(mqtt_world.stored(weather)) == 2, TIMEOUT)
    start(make_link())
    listener(state_topic(weather)).wait_json(state_topic(weather),
                                             {"temperature": 6.0, "humidity": 90.0, "wind": 8.5})


def test_online_status_resends_everything(mqtt_world, ha):
    make_link, listener = ha
    purifier = mqtt_world.add_device("purifier")
    link = start(make_link())
    topics = [config_topic(purifier, key) for key in EXPECTED["purifier"]] + \
        [state_topic(purifier)]
    watch = listener("homeassistant/+/+/+/config", "ss/v1/ha/#")
    wait_for("the retained configs and state", lambda: all(
        watch.received(t) == [(watch.latest(t), True)] for t in topics), TIMEOUT)

    watch.client.publish("homeassistant/status", b"offline", qos=1)   # ignored
    watch.client.publish("homeassistant/status", b"online", qos=1)    # HA restarted
    wait_for("everything sent again", lambda: all(
        [r for _, r in watch.received(t)] == [True, False] for t in topics), TIMEOUT)
    assert link.stats()["resends"] == 1
    assert all(watch.received(t)[0][0] == watch.received(t)[1][0] for t in topics)


def test_revoked_device_entities_are_removed(mqtt_world, ha):
    make_link, listener = ha
    kept, revoked = mqtt_world.add_device("router"), mqtt_world.add_device("purifier")
    link = start(make_link())
    gone = [config_topic(revoked, key) for key in EXPECTED["purifier"]] + [state_topic(revoked)]
    watch = listener(*gone)
    wait_for("the purifier's retained configs", lambda: all(watch.received(t) for t in gone),
                                                             TIMEOUT)

    mqtt_world.revoke(revoked)
    assert link.refresh() == ([], [revoked.id.hex()])   # what DeviceService.revoke does
    wait_for("empty payloads", lambda: all(watch.latest(t) == b"" for t in gone), TIMEOUT)

    # A late subscriber gets nothing retained for it; the router's configs (asked for last, so
    # delivered last) are still there.
    kept_topic = config_topic(kept, "clients")
    late = listener(*gone, kept_topic)
    wait_for("the router's config", lambda: late.received(kept_topic), TIMEOUT)
    assert all(not late.received(t) for t in gone)
    assert set(link.ha.devices) == {kept.id.hex()}


def test_device_service_shows_approved_and_removes_revoked(tmp_path):
    """The node's wiring: [homeassistant] enabled makes DeviceService run the link (on the
    broker it starts), approve shows a device, revoke removes its entities."""
    port = free_ports(1)[0]
    config = Config(home=str(tmp_path / "node"), mqtt_port=port, ha_enabled=True,
                    mqtt_bridge_password=secrets.token_urlsafe(12),
                    mqtt_provision_password=secrets.token_urlsafe(12),
                    ha_password=secrets.token_urlsafe(12))
    store = Store(str(tmp_path / "node-data"))
    node_id = secrets.token_bytes(32)
    service = DeviceService(config, store, "ha-chain", node_id, log=lambda *_: None)
    try:
        service.start()
        assert service.home_assistant.wait_ready(TIMEOUT)
        key = SigningKey.generate()
        device_id = device_id_of(bytes(key.verify_key))
        service.registry.request(bytes(key.verify_key), {"kind": "weather", "model": "WS-1"})
        topic = f"homeassistant/sensor/{node_id.hex()[:16]}/{device_id.hex()}_temperature/config"
        watch = Listener(port, config.ha_password, topic)
        try:
            service.approve(device_id)
            wait_for("the approved device's config", lambda: watch.latest(topic), TIMEOUT)
            assert json.loads(watch.latest(topic))["device"]["model"] == "WS-1"
            assert service.status()["home_assistant"] == {"connected": True, "devices": 1,
                                                          "resends": 0}
            service.revoke(device_id)
            wait_for("the config removed", lambda: watch.latest(topic) == b"", TIMEOUT)
        finally:
            watch.close()
    finally:
        service.stop()
        store.close()


def test_sensor_fields_match_the_simulators():
    """Every sensor reads a field the simulated device of its kind really sends."""
    assert set(SENSORS) <= set(sim_kinds.KINDS)
    for kind in SENSORS:
        sim = sim_kinds.behaviour(kind, random.Random(7), b"salt")
        published = []
        ha = HomeAssistant(lambda *message: published.append(message), node_id=NODE)
        ha.add_device("0102030405060708", kind)
        payloads = [sim.tick(seq)[1] for seq in range(1, 400)]
        sent = {field for payload in payloads for field in payload}
        assert {s.field for s in SENSORS[kind]} <= sent, kind
        ha.update("0102030405060708", *payloads)
        state = json.loads(published[-1][1])
        assert all(state[s.key] is not None for s in SENSORS[kind]), (kind, state)
