"""Devices through a real node process: onboarding with the CLI, signed frames, revocation."""

import json
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from nacl.signing import SigningKey

from edge.config import load
from edge.mqtt import pinning
from edge.mqtt.broker import PROVISION_USER
from edge.mqtt.certs import CA_CERT, ca_fingerprint, tls_path
from edge.mqtt.frames import sign_frame
from edge.mqtt.provision import join_request, open_credentials
from edge.mqtt.topics import (CA_TOPIC, credentials_topic, device_id_of, device_topic,
                              provision_topic, reply_topic)
from edge.testnet import free_ports

pytestmark = pytest.mark.slow


class Device:
    """A real MQTT device: its key, its connection, what it received."""

    def __init__(self, port, config):
        self.key = SigningKey.generate()
        self.id = device_id_of(bytes(self.key.verify_key))
        self.port, self.config = port, config
        self.messages, self.connected = [], threading.Event()
        self.client = None

    def connect(self, username, password, context, client_id=None):
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=client_id or self.id.hex() + username[:4])
        client.username_pw_set(username, password)
        client.tls_set_context(context)
        client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        client.on_connect = lambda c, u, f, rc, p: self.connected.set() if not rc.is_failure \
            else None
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        assert self.connected.wait(10), "device could not connect"
        self.client = client
        return client

    def close(self):
        if self.client is not None:
            self.client.loop_stop()
            self.client.disconnect()


def wait_for(what, check, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_onboard_publish_revoke(node_factory):
    home = node_factory.home("gateway", mqtt_port=free_ports(1)[0])
    node = node_factory.node(home)
    config = load(home.path)
    chain_id = home.chain_id
    device = Device(config.mqtt_tls_port, config)    # devices connect with TLS
    # Before it joins, the device knows the CA's fingerprint only (mDNS): it reads the CA the
    # broker hands out over an unverified connection and pins it if the fingerprint matches.
    announced = ca_fingerprint(home.path)
    peek = device.connect(PROVISION_USER, config.mqtt_provision_password,
                          pinning.unverified_context())
    peek.subscribe(CA_TOPIC, qos=1)
    served = wait_for("the CA on ss/v1/ca", lambda: [p for t, p in device.messages
                                                      if t == CA_TOPIC])
    ca = pinning.check(served[0].decode(), announced)
    device.close()
    device.connected.clear()
    prov = device.connect(PROVISION_USER, config.mqtt_provision_password,
                          pinning.client_context(ca), client_id=device.id.hex())
    prov.subscribe(credentials_topic(device.id), qos=1)
    prov.publish(provision_topic(device.id),
                 join_request(bytes(device.key.verify_key), "parking-gate", "gate-1"), qos=1)

    listed = wait_for("the join request", lambda: [
        d for d in home.cli("device", "list", "--json", check=True).json()["devices"]
        if d["id"] == device.id.hex()])
    assert listed[0]["status"] == "pending" and listed[0]["kind"] == "parking-gate"
    approved = home.cli("device", "approve", device.id.hex(), check=True)
    assert "approved" in approved.stdout

    sealed = wait_for("sealed credentials", lambda: [p for t, p in device.messages
                                                     if t == credentials_topic(device.id) and p])
    credentials = open_credentials(device.key, sealed[0])
    assert credentials["username"] == device.id.hex() and credentials["chain_id"] == chain_id
    assert (credentials["port"], credentials["tls"], credentials["ca_sha256"]) == \
        (config.mqtt_tls_port, True, announced)
    device.close()
    device.connected.clear()
    own = device.connect(credentials["username"], credentials["password"],
                         pinning.client_context(credentials["ca_pem"]))
    own.subscribe(reply_topic(device.id, "#"), qos=1)
    for seq in (1, 2, 3):
        frame = sign_frame(device.key, chain_id, device.id, "meter", seq,
                           time.time_ns() // 1_000_000, {"session": 1, "minutes": seq * 15})
        own.publish(device_topic(device.id, "meter"), frame, qos=1).wait_for_publish(10)
    stored = wait_for("3 stored frames", lambda: (
        lambda d: d["frames"] if len(d["frames"]) == 3 else None)(
            home.client().get(f"/v1/devices/{device.id.hex()}")))
    assert [f["seq"] for f in stored] == [3, 2, 1]
    assert [(f["kind"], f["payload"]) for f in stored] == [
        ("meter", {"session": 1, "minutes": m}) for m in (45, 30, 15)]

    forged = sign_frame(SigningKey.generate(), chain_id, device.id, "meter", 4,
                        time.time_ns() // 1_000_000, {"session": 1, "minutes": 99})
    own.publish(device_topic(device.id, "meter"), forged, qos=1)
    error = wait_for("an error reply", lambda: [json.loads(p) for t, p in device.messages
                                                if t == reply_topic(device.id, "error")])
    assert error[0]["code"] == "bad_signature"
    metrics = home.client().get_text("/metrics")
    assert 'smartshare_mqtt_frames_rejected_total{code="bad_signature"} 1.0' in metrics
    assert "smartshare_mqtt_frames_accepted_total 3.0" in metrics

    revoked = home.cli("device", "revoke", device.id.hex(), "--json", check=True).json()
    assert revoked["status"] == "revoked"
    wait_for("the revoked device to be cut off", lambda: not own.is_connected())
    device.close()
    assert node.alive


def test_one_command_approves_every_pending_device(node_factory):
    """8 devices (the most one source may have waiting) join at once; ``device approve
    --pending`` lets them all in with one broker reload and each gets its own sealed
    credentials. Naming an approved device approves nothing."""
    home = node_factory.home("gateway", mqtt_port=free_ports(1)[0])
    node = node_factory.node(home)
    config = load(home.path)
    with open(tls_path(home.path, CA_CERT)) as f:
        context = pinning.client_context(f.read())
    fleet = [Device(config.mqtt_tls_port, config) for _ in range(8)]
    try:
        for device in fleet:
            client = device.connect(PROVISION_USER, config.mqtt_provision_password, context,
                                    client_id=device.id.hex())
            client.subscribe(credentials_topic(device.id), qos=1)
            client.publish(provision_topic(device.id),
                           join_request(bytes(device.key.verify_key), "router", "r-1"), qos=1)
        wait_for("8 pending devices", lambda: sum(
            d["status"] == "pending"
            for d in home.cli("device", "list", "--json", check=True).json()["devices"]) == 8)
        done = home.cli("device", "approve", "--pending", "--json", check=True).json()
        assert sorted(r["id"] for r in done["approved"]) == sorted(d.id.hex() for d in fleet)
        for device in fleet:
            sealed = wait_for("sealed credentials", lambda d=device: [
                p for t, p in d.messages if t == credentials_topic(d.id) and p])
            assert open_credentials(device.key, sealed[0])["username"] == device.id.hex()
        again = home.cli("device", "approve", fleet[0].id.hex(), fleet[1].id.hex())
        assert again.returncode != 0 and "already approved" in again.stderr
        neither = home.cli("device", "approve")
        assert neither.returncode != 0 and "--pending" in neither.stderr
        status = home.client().get("/v1/status")
        assert status["disk"]["data_bytes"] > 0 and status["disk"]["free_bytes"] > 0
        bridge = home.client().get("/v1/devices")["bridge"]
        assert bridge["disk_low"] == 0 and bridge["provision_rejected"] == 0
    finally:
        for device in fleet:
            device.close()
    assert node.alive
