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

This module speaks no MQTT itself: it is handed a ``publish(topic, payload, qos, retain)``
function (``paho.mqtt.client.Client.publish`` fits) and is fed decoded frame payloads.
"""

import json
import re
import threading
import time
from typing import NamedTuple

DISCOVERY_PREFIX = "homeassistant"
STATUS_TOPIC = f"{DISCOVERY_PREFIX}/status"
STATE_ROOT = "ss/v1/ha"
MANUFACTURER = "SmartShare"
MAX_DYNAMIC = 32          # per-client router sensors per device, at most
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
        Sensor("clients", "Active clients", "clients", None, None, "measurement", "mdi:lan-connect"),
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
        self._lock = threading.RLock()

    # -- topics --------------------------------------------------------------------------------

    def config_topic(self, device_id, key):
        return f"{self.prefix}/sensor/{self.node}/{_hex(device_id)}_{key}/config"

    def state_topic(self, device_id):
        return f"{self.state_root}/{_hex(device_id)}/state"

    # -- devices -------------------------------------------------------------------------------

    def add_device(self, device_id, kind, model="", name=None):
        """Start showing an approved device; publishes its configs (retained) and its state.
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

    def sync_devices(self, records):
        """Match the shown devices to the registry: ``records`` are DeviceRegistry records
        (dicts with id, kind, model, status); approved ones are added, others removed."""
        wanted = {r["id"]: r for r in records if r.get("status") == "approved"
                  and normalize_kind(r.get("kind"))}
        with self._lock:
            for dev_hex in list(self.devices):
                if dev_hex not in wanted:
                    self.remove_device(dev_hex)
            for dev_hex, record in wanted.items():
                if dev_hex not in self.devices:
                    self.add_device(dev_hex, record["kind"], record.get("model", ""))

    # -- readings ------------------------------------------------------------------------------

    def update(self, device_id, payload):
        """Merge a decoded frame payload (a dict, or JSON text) of an added device into its state
        and republish it (subject to ``min_interval_s``). Fields that are not sensors are
        ignored, so any meter, data or event payload may be passed. Returns True when the state
        changed."""
        if isinstance(payload, (str, bytes, bytearray)):
            try:
                payload = json.loads(payload)
            except ValueError:
                return False
        if not isinstance(payload, dict):
            return False
        with self._lock:
            device = self.devices.get(_hex(device_id))
            if device is None:
                return False
            changed = self._merge(device, payload)
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


def _value(raw, scale):
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return None
    if raw != raw or raw in (float("inf"), float("-inf")):
        return None
    return round(raw * scale, 3) if scale is not None else raw
