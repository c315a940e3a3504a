"""Home Assistant MQTT discovery (DESIGN §6, docs/protocol.md §16.2): an optional bridge that
makes each approved device's meters appear as HA sensors.

For every sensor of a device it publishes a retained discovery config on

    homeassistant/sensor/<node id>/<device id>_<key>/config

and the node republishes the device's latest readings, one JSON object per device, on

    ss/v1/ha/<device id>/state          (retained; keys = the sensor keys below)

Every config's ``value_template`` is ``{{ value_json.<key> }}``: the conversion from frame
payload fields to sensor values happens here (``SENSORS``), so HA never sees raw payloads.
When Home Assistant (re)starts it publishes ``online`` on ``homeassistant/status``; ``on_status``
then re-sends every config and state.

``HomeAssistant`` speaks no MQTT itself: it is handed a ``publish(topic, payload, qos, retain)``
function and fed decoded frame payloads. ``HomeAssistantLink`` is what the node runs: its own
MQTT connection (as the bridge user) for publishing and for HA's birth message, and a worker
that reads committed frames back from the registry when the device bridge reports a commit.
"""

import json
import re
import threading
import time
import traceback
from typing import NamedTuple

import paho.mqtt.client as mqtt

from edge.mqtt.frames import Frame

DISCOVERY_PREFIX = "homeassistant"
STATUS_TOPIC = f"{DISCOVERY_PREFIX}/status"
STATE_ROOT = "ss/v1/ha"
MANUFACTURER = "SmartShare"
MAX_DYNAMIC = 32          # per-client router sensors per device, at most
SEED_FRAMES = 32          # stored frames read back per device (at start, and per commit)
UNKNOWN_REFRESH_S = 1.0   # re-read the registry at most this often for devices not shown
_CLIENT_RE = re.compile(r"^[0-9a-z_-]{1,32}$")


class Sensor(NamedTuple):
    """One HA sensor of a device kind: its key (in the state JSON, the config topic and the
    unique id), its name, the payload field it is read from and how the value is derived."""
    key: str
    name: str
    field: str
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None
    icon: str | None = None
    scale: float | None = None      # value = payload[field] * scale (rounded to 3 places)


# Device kind -> its sensors. The payload fields are those of the simulated devices
# (edge/mqtt/simulators.py, docs/protocol.md §16.3); a real device of the same kind uses them too.
SENSORS = {
    "parking-gate": (
        Sensor("occupancy", "Occupancy", "occupancy", "vehicles", None, "measurement",
               "mdi:car-multiple"),
        Sensor("sessions", "Parking sessions", "sessions", None, None, "total_increasing",
               "mdi:counter"),
    ),
    "purifier": (
        Sensor("running_hours", "Running hours", "total_running_s", "h", "duration",
               "total_increasing", None, 1 / 3600),
        Sensor("pm25", "PM2.5", "pm25", "µg/m³", "pm25", "measurement"),
    ),
    "router": (
        Sensor("bytes_forwarded", "Bytes forwarded", "bytes_forwarded", "B", "data_size",
               "total_increasing"),
        Sensor("clients", "Active clients", "clients", None, None, "measurement",
               "mdi:lan-connect"),
    ),
    "weather": (
        Sensor("temperature", "Temperature", "t_c", "°C", "temperature", "measurement"),
        Sensor("humidity", "Humidity", "rh", "%", "humidity", "measurement"),
        Sensor("wind", "Wind speed", "wind_ms", "m/s", "wind_speed", "measurement"),
    ),
}

# Router: one more sensor per client seen, from meter payloads {"client": c, "client_bytes": n}.
ROUTER_CLIENT = Sensor("bytes_forwarded_{client}", "Bytes forwarded to {client}", "client_bytes",
                       "B", "data_size", "total_increasing")

KIND_ALIASES = {"parking": "parking-gate", "gate": "parking-gate", "air-purifier": "purifier",
                "weather-station": "weather", "wifi-router": "router"}

MODELS = {"parking-gate": "Parking gate", "purifier": "Air purifier", "router": "Router",
          "weather": "Weather station"}


def normalize_kind(kind):
    """The SENSORS key of a device kind ("parking_gate", "Parking-Gate" -> "parking-gate"), or
    None for a kind with no sensors."""
    kind = str(kind or "").strip().lower().replace("_", "-").replace(" ", "-")
    kind = KIND_ALIASES.get(kind, kind)
    return kind if kind in SENSORS else None


def _hex(device_id):
    return device_id.hex() if isinstance(device_id, (bytes, bytearray)) else str(device_id)


class _Device:
    def __init__(self, device_id, kind, model, name):
        self.id, self.kind, self.model, self.name = device_id, kind, model, name
        self.sensors = {s.key: s for s in SENSORS[kind]}
        self.state = {key: None for key in self.sensors}
        self.dirty = False
        self.last_publish = 0.0


class HomeAssistant:
    """The HA discovery bridge of one node.

    ``publish(topic, payload, qos, retain)`` sends one MQTT message (the node's bridge-user
    client: its ACL allows ``homeassistant/#`` and ``ss/v1/#``). ``node_id`` (hex) names the node
    in the discovery topics. ``min_interval_s`` throttles state republishing per device: updates
    inside the interval are merged and sent by the next ``update`` or ``flush`` after it.
    Thread-safe."""

    def __init__(self, publish, *, node_id, discovery_prefix=DISCOVERY_PREFIX,
                 state_root=STATE_ROOT, manufacturer=MANUFACTURER, min_interval_s=0.0,
                 qos=1, clock=time.monotonic):
        self.publish_fn = publish
        self.node = re.sub(r"[^a-zA-Z0-9_-]", "_", _hex(node_id))
        self.prefix, self.state_root = discovery_prefix.rstrip("/"), state_root.rstrip("/")
        self.status_topic = f"{self.prefix}/status"
        self.manufacturer, self.min_interval_s, self.qos = manufacturer, min_interval_s, qos
        self.clock = clock
        self.devices = {}
        self.resends = 0          # how many times HA's "online" made us re-send everything
        self._lock = threading.RLock()

    # -- topics --------------------------------------------------------------------------------

    def config_topic(self, device_id, key):
        return f"{self.prefix}/sensor/{self.node}/{_hex(device_id)}_{key}/config"

    def state_topic(self, device_id):
        return f"{self.state_root}/{_hex(device_id)}/state"

    # -- devices -------------------------------------------------------------------------------

    def add_device(self, device_id, kind, model="", name=None, readings=()):
        """Start showing an approved device; publishes its configs (retained) and its state,
        after merging ``readings`` (decoded payloads, oldest first: e.g. its stored frames).
        Returns the config topics, or [] for a kind without sensors. Adding a device again
        re-sends its configs and keeps its state."""
        kind = normalize_kind(kind)
        if kind is None:
            return []
        dev_hex = _hex(device_id)
        with self._lock:
            device = self.devices.get(dev_hex)
            if device is None or device.kind != kind:
                device = _Device(dev_hex, kind, model or MODELS[kind],
                                 name or f"{MODELS[kind]} {dev_hex[:8]}")
                self.devices[dev_hex] = device
            for payload in readings:
                self._merge(device, _as_dict(payload))
            topics = self._send_configs(device)
            self._send_state(device)
            return topics

    def remove_device(self, device_id):
        """Stop showing a device (revoked): empty retained configs delete its HA entities, and
        its retained state is cleared."""
        with self._lock:
            device = self.devices.pop(_hex(device_id), None)
            if device is None:
                return
            for key in device.sensors:
                self.publish_fn(self.config_topic(device.id, key), b"", self.qos, True)
            self.publish_fn(self.state_topic(device.id), b"", self.qos, True)

    def sync_devices(self, records, readings_of=None):
        """Match the shown devices to the registry: ``records`` are DeviceRegistry records
        (dicts with id, kind, model, status); approved ones are added (with the payloads
        ``readings_of(device id hex)`` returns, oldest first), others removed. Returns
        ``(added, removed)`` device ids (hex)."""
        wanted = {r["id"]: r for r in records if r.get("status") == "approved"
                  and normalize_kind(r.get("kind"))}
        added, removed = [], []
        with self._lock:
            for dev_hex in list(self.devices):
                if dev_hex not in wanted:
                    self.remove_device(dev_hex)
                    removed.append(dev_hex)
            for dev_hex, record in wanted.items():
                if dev_hex not in self.devices:
                    readings = readings_of(dev_hex) if readings_of is not None else ()
                    self.add_device(dev_hex, record["kind"], record.get("model", ""),
                                    readings=readings)
                    added.append(dev_hex)
        return added, removed

    # -- readings ------------------------------------------------------------------------------

    def update(self, device_id, *payloads):
        """Merge decoded frame payloads (dicts, or JSON text; oldest first) of an added device
        into its state and republish it once (subject to ``min_interval_s``). Fields that are
        not sensors are ignored, so any hello, meter, data or event payload may be passed.
        Returns True when the state changed."""
        payloads = [_as_dict(p) for p in payloads]
        with self._lock:
            device = self.devices.get(_hex(device_id))
            if device is None:
                return False
            changed = False
            for payload in payloads:
                changed = self._merge(device, payload) or changed
            if changed:
                device.dirty = True
            if device.dirty and self.clock() - device.last_publish >= self.min_interval_s:
                self._send_state(device)
            return changed

    def flush(self):
        """Publish every state held back by ``min_interval_s`` (call it from a timer)."""
        with self._lock:
            for device in self.devices.values():
                if device.dirty:
                    self._send_state(device)

    def _merge(self, device, payload):
        if not payload:
            return False
        changed = False
        for sensor in SENSORS[device.kind]:
            value = _value(payload.get(sensor.field), sensor.scale)
            if value is not None and device.state.get(sensor.key) != value:
                device.state[sensor.key] = value
                changed = True
        if device.kind == "router":
            client = payload.get("client")
            value = _value(payload.get(ROUTER_CLIENT.field), None)
            if isinstance(client, str) and _CLIENT_RE.match(client) and value is not None:
                key = ROUTER_CLIENT.key.format(client=client)
                if key not in device.sensors and len(device.sensors) < \
                        len(SENSORS["router"]) + MAX_DYNAMIC:
                    sensor = ROUTER_CLIENT._replace(key=key,
                                                    name=ROUTER_CLIENT.name.format(client=client))
                    device.sensors[key] = sensor
                    self._send_config(device, sensor)
                if key in device.sensors and device.state.get(key) != value:
                    device.state[key] = value
                    changed = True
        return changed

    # -- Home Assistant's birth message ----------------------------------------------------------

    def on_status(self, payload):
        """Feed every message of ``homeassistant/status`` here: ``online`` re-sends all configs
        and states (HA forgets non-retained discovery when it restarts). Returns True if sent."""
        text = payload.decode(errors="replace") if isinstance(payload, (bytes, bytearray)) \
            else str(payload)
        if text.strip() != "online":
            return False
        self.resends += 1
        self.publish_all()
        return True

    def handle_message(self, topic, payload):
        """Convenience for an on_message callback: True if the message was for this bridge."""
        if topic == self.status_topic:
            self.on_status(payload)
            return True
        return False

    def publish_all(self):
        with self._lock:
            for device in self.devices.values():
                self._send_configs(device)
                self._send_state(device)

    # -- payloads ------------------------------------------------------------------------------

    def config(self, device_id, key):
        """The discovery config (a dict) of one sensor of an added device."""
        with self._lock:
            device = self.devices[_hex(device_id)]
            return self._config(device, device.sensors[key])

    def _config(self, device, sensor):
        doc = {
            "name": sensor.name,
            "unique_id": f"smartshare_{device.id}_{sensor.key}",
            "state_topic": self.state_topic(device.id),
            "value_template": "{{ value_json.%s }}" % sensor.key,
            "device": {"identifiers": [f"smartshare_{device.id}"], "name": device.name,
                       "model": device.model, "manufacturer": self.manufacturer},
        }
        for name in ("unit_of_measurement", "device_class", "state_class", "icon"):
            value = getattr(sensor, "unit" if name == "unit_of_measurement" else name)
            if value is not None:
                doc[name] = value
        return doc

    def _send_config(self, device, sensor):
        topic = self.config_topic(device.id, sensor.key)
        self.publish_fn(topic, json.dumps(self._config(device, sensor), sort_keys=True,
                                          ensure_ascii=False).encode(), self.qos, True)
        return topic

    def _send_configs(self, device):
        return [self._send_config(device, sensor) for sensor in device.sensors.values()]

    def _send_state(self, device):
        self.publish_fn(self.state_topic(device.id),
                        json.dumps(device.state, sort_keys=True).encode(), self.qos, True)
        device.dirty = False
        device.last_publish = self.clock()


def _as_dict(payload):
    """A payload as a dict ({} for anything that is not a JSON object)."""
    if isinstance(payload, (str, bytes, bytearray)):
        try:
            payload = json.loads(payload)
        except ValueError:
            return {}
    return payload if isinstance(payload, dict) else {}


def _value(raw, scale):
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return None
    if raw != raw or raw in (float("inf"), float("-inf")):
        return None
    return round(raw * scale, 3) if scale is not None else raw


class HomeAssistantLink:
    """The HA bridge of a running node. Its own MQTT connection (as the bridge user, whose ACL
    covers ``homeassistant/#`` and ``ss/v1/#``) publishes ``HomeAssistant``'s configs and states,
    re-sends them all on every (re)connection and listens on ``homeassistant/status``. The
    device bridge calls ``on_commit`` after each commit; that only notes which devices moved, and
    a worker thread reads their newest frames back from the registry, so HA never slows the
    ingest path. ``refresh`` after an approval or revocation."""

    def __init__(self, registry, *, host, port, username, password, node_id, client_id=None,
                 discovery_prefix=DISCOVERY_PREFIX, log=print, tls_context=None):
        self.registry, self.log = registry, log
        self.host, self.port, self.tls_context = host, port, tls_context
        self.username, self.password = username, password
        self.client_id = client_id or f"smartshare-ha-{_hex(node_id)[:16]}"
        self.ha = HomeAssistant(self._publish, node_id=node_id, discovery_prefix=discovery_prefix)
        self._pending = {}           # device id (bytes) -> frames committed since last read
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._ready = threading.Event()
        self._connected = False
        self._stopping = False
        self._refreshed_at = 0.0
        self._client = self._worker = None

    # -- life cycle ----------------------------------------------------------------------------

    def start(self):
        """Show the approved devices (state rebuilt from their stored frames), connect, and
        start the worker. Returns at once; ``wait_ready`` waits for the connection."""
        if self._client is not None:
            raise RuntimeError("the Home Assistant link is already started")
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv311)
        client.username_pw_set(self.username, self.password)
        if self.tls_context is not None:
            client.tls_set_context(self.tls_context)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client, self._stopping = client, False
        try:
            self.refresh()
        except Exception:
            self._client = None
            raise
        self._worker = threading.Thread(target=self._run, name="home-assistant", daemon=True)
        self._worker.start()
        client.connect_async(self.host, self.port, keepalive=30)
        client.loop_start()

    def wait_ready(self, timeout=None):
        """True once connected, subscribed to HA's status and every config sent."""
        return self._ready.wait(timeout)

    def stop(self):
        if self._client is None:
            return
        self._stopping = True
        self._wake.set()
        if self._worker is not None:
            self._worker.join()
        self._client.disconnect()
        self._client.loop_stop()
        self._client = self._worker = None
        self._connected = False
        self._ready.clear()

    def refresh(self):
        """Match the shown devices to the registry (approved: shown; revoked: removed)."""
        self._refreshed_at = time.monotonic()
        return self.ha.sync_devices(self.registry.all(), readings_of=lambda dev_hex: (
            self._readings(bytes.fromhex(dev_hex), SEED_FRAMES)))

    def on_commit(self, committed, time_ns=None):
        """The device bridge's hook: ``committed`` is ``[(device id, seq), ...]``."""
        with self._lock:
            for device_id, _ in committed:
                device_id = bytes(device_id)
                self._pending[device_id] = self._pending.get(device_id, 0) + 1
        self._wake.set()

    def stats(self):
        return {"connected": self._connected, "devices": len(self.ha.devices),
                "resends": self.ha.resends}

    # -- MQTT ----------------------------------------------------------------------------------

    def _publish(self, topic, payload, qos, retain):
        # While disconnected nothing is sent: every (re)connection re-sends everything.
        client = self._client
        if self._connected and client is not None:
            client.publish(topic, payload, qos=qos, retain=retain)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.log(f"home assistant: broker refused the connection ({reason_code})")
            return
        self._connected = True
        client.subscribe(self.ha.status_topic, qos=1)
        self.ha.publish_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._connected = False
        self._ready.clear()
        if not self._stopping:
            self.log(f"home assistant: disconnected ({reason_code}); reconnecting")

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        if any(code.is_failure for code in reason_codes):
            self.log(f"home assistant: cannot subscribe to {self.ha.status_topic}; check the ACL")
            return
        self._ready.set()

    def _on_message(self, client, userdata, msg):
        try:
            self.ha.handle_message(msg.topic, msg.payload)
        except Exception:
            self.log("home assistant: status message failed:\n" + traceback.format_exc())

    # -- the worker ----------------------------------------------------------------------------

    def _run(self):
        while not self._stopping:
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                self._drain()
            except Exception:  # storage or a bug: log, keep serving the other devices
                self.log("home assistant: update failed:\n" + traceback.format_exc())

    def _drain(self):
        with self._lock:
            pending, self._pending = self._pending, {}
        unknown = [d for d in pending if d.hex() not in self.ha.devices]
        if unknown:  # approved by someone else meanwhile? (or a kind without sensors)
            if time.monotonic() - self._refreshed_at >= UNKNOWN_REFRESH_S:
                self.refresh()
            else:  # look again next round
                with self._lock:
                    for device_id in unknown:
                        self._pending[device_id] = self._pending.get(device_id, 0) \
                            + pending.pop(device_id)
        for device_id, count in pending.items():
            if device_id.hex() in self.ha.devices:
                self.ha.update(device_id, *self._readings(device_id, count))

    def _readings(self, device_id, count):
        """The payloads (JSON text) of a device's newest ``count`` stored frames, oldest first."""
        payloads = []
        for _, raw in reversed(self.registry.frames_of(device_id, min(count, SEED_FRAMES))):
            try:
                payloads.append(Frame.decode(raw).payload)
            except ValueError:
                continue
        return payloads
