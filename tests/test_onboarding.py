"""Join-request limits (edge/mqtt/onboarding.py, docs/protocol.md §15.3): a flood of join
requests from one source, through a real Mosquitto, neither grows storage nor crowds out a real
device asking from elsewhere; pending records are capped, refreshed by repeats and expire."""

import socket
import time

import pytest

from edge.mqtt import onboarding
from edge.mqtt.devices import DeviceError, DeviceRegistry
from edge.mqtt.topics import provision_topic
from tests.mqttkit import TestDevice, wait_for

FLOOD = 300


def _packet(kind, body):
    size, length = len(body), b""
    while True:
        byte, size = size & 0x7F, size >> 7
        length += bytes([byte | (0x80 if size else 0)])
        if not size:
            return bytes([kind]) + length + body


def _text(raw):
    return len(raw).to_bytes(2, "big") + raw


def raw_join(port, password, device, source="127.0.0.1"):
    """One provisioning connection from ``source`` that announces ``device`` (QoS 0) and
    leaves: MQTT 3.1.1 packets written by hand, as a cheap flooding script would."""
    with socket.create_connection(("127.0.0.1", port), timeout=5,
                                  source_address=(source, 0)) as sock:
        client_id = device.id.hex().encode()
        sock.sendall(_packet(0x10, _text(b"MQTT") + bytes([4, 0xC2]) + (30).to_bytes(2, "big")
                             + _text(client_id) + _text(b"provision") + _text(password.encode())))
        assert sock.recv(4) == b"\x20\x02\x00\x00", "the broker refused the provisioning login"
        sock.sendall(_packet(0x30, _text(provision_topic(device.id).encode())
                             + device.join_request()))
        sock.sendall(b"\xe0\x00")


def pending(registry):
    return [r for r in registry.all() if r["status"] == "pending"]


def test_a_join_flood_neither_grows_storage_nor_crowds_out_a_real_device(mqtt_world):
    world = mqtt_world
    bridge = world.start_bridge()
    started = time.monotonic()
    for _ in range(FLOOD):
        raw_join(world.port, world.provision_password, TestDevice(world, "weather"))
    flooding_s = time.monotonic() - started
    real = TestDevice(world, "purifier")
    raw_join(world.port, world.provision_password, real, source="127.0.0.2")
    wait_for("the real device listed", lambda: world.registry.get(real.id))
    wait_for("the flood handled", lambda: bridge.stats()["provision_requests"]
             + bridge.stats()["provision_rejected"] == FLOOD + 1)
    waiting = pending(world.registry)
    assert world.registry.get(real.id)["source"] == "127.0.0.2"
    flood = [r for r in waiting if r["source"] == "127.0.0.1"]
    assert len(flood) <= onboarding.MAX_PER_SOURCE and len(waiting) == len(flood) + 1
    # The source's burst holds a fleet (docs §15.3): beyond it, only its rate while it floods.
    rate, burst = onboarding.SOURCE_RATE
    assert bridge.stats()["provision_rejected"] >= FLOOD - burst - rate * flooding_s - 1


def test_pending_records_are_capped_refreshed_and_expire(tmp_path):
    from chain.store import Store
    store = Store(str(tmp_path / "data"))
    registry = DeviceRegistry(store)
    keys = [TestDevice(None, "weather") for _ in range(onboarding.MAX_PENDING + 2)]
    t0 = 1_000_000
    for i, device in enumerate(keys[:onboarding.MAX_PENDING]):
        source = f"10.0.{i // onboarding.MAX_PER_SOURCE}.1"
        registry.request(device.pubkey, {"kind": "weather"}, source, t0 + i)
    registry.request(keys[0].pubkey, {}, "10.0.0.1", t0 + 10**6)    # a repeat: refreshed
    with pytest.raises(DeviceError, match="already waiting for approval"):
        registry.request(TestDevice(None, "x").pubkey, {}, "10.0.0.1", t0 + 10**6)
    # Full: a newcomer takes the place of the pending device heard from least recently (the
    # second: the first has just repeated its request).
    registry.request(keys[-2].pubkey, {}, "192.168.9.9", t0 + 2 * 10**6)
    assert registry.get(keys[1].id) is None and registry.get(keys[0].id) is not None
    assert len(pending(registry)) == onboarding.MAX_PENDING
    # A day later without a repeat, pending requests are forgotten.
    late = t0 + 2 * 10**6 + onboarding.PENDING_TTL_MS + 1
    registry.request(keys[-1].pubkey, {}, "192.168.9.8", late)
    assert [r["id"] for r in pending(registry)] == [keys[-1].id.hex()]
    store.close()
