"""TLS for devices and Home Assistant (docs/protocol.md §15.2-15.3), through a real Mosquitto:
frames over TLS with the gateway's CA pinned; a broker of another CA, plaintext on the TLS port, a
plaintext listener beyond loopback and a forged CA announcement all refused; passwords never on a
command line; a rotated certificate loaded by the running broker."""

import os
import ssl
import stat
import subprocess

import pytest

from edge.config import ConfigError, load
from edge.mqtt import certs, pinning
from edge.mqtt.broker import Broker, BrokerError
from edge.mqtt.simulators import Gateway, SimulatedDevice, gateway_with_ca
from tests.mqttkit import MqttWorld, connect, wait_for


@pytest.fixture
def world(tmp_path):
    with MqttWorld(tmp_path, tls=True) as w:
        yield w


def served_certificate(port):
    """The DER certificate the broker presents on ``port``."""
    context = pinning.unverified_context()
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw) as tls:
            return tls.getpeercert(binary_form=True)


def test_frames_travel_over_tls_with_the_pinned_ca(world):
    device = world.add_device()
    world.start_bridge()
    client = connect(world.tls_port, device.id.hex(), device.password, "tls-device",
                     tls_context=pinning.client_context(world.ca_pem))
    frame = device.frame("meter", 1, {"n": 1})
    client.publish(device.topic("meter"), frame, qos=1)
    wait_for("the frame sent over TLS", lambda: world.stored(device) == {1: frame})
    client.disconnect()
    client.loop_stop()


def test_a_device_refuses_a_broker_of_another_ca_and_plaintext_gets_nothing(world, tmp_path):
    device = world.add_device()
    other = str(tmp_path / "impostor")
    certs.ensure(other)       # a stranger's gateway: its own CA
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(world.tls_port, device.id.hex(), device.password, "pinned",
                tls_context=pinning.client_context(certs.ca_pem(other)))
    with pytest.raises(ConnectionRefusedError):   # MQTT in clear on the TLS port
        connect(world.tls_port, device.id.hex(), device.password, "clear", timeout=3)
    with pytest.raises(pinning.PinningError, match="refusing it"):
        pinning.check(certs.ca_pem(other), certs.ca_fingerprint(world.home))


def test_a_forged_ca_announcement_stops_onboarding(world, tmp_path):
    """mDNS is unauthenticated: a device told a fingerprint that is not the broker's CA's
    (someone else's broker announced as the gateway, or a tampered record) never joins."""
    world.start_bridge()
    world.bridges[0].publish("ss/v1/ca", world.ca_pem.encode(), retain=True).wait_for_publish(5)
    gateway = Gateway("127.0.0.1", world.tls_port, world.provision_password, world.chain_id,
                      ca_sha256="ab" * 32)
    device = SimulatedDevice("weather", str(tmp_path / "dev"), gateway, frames=1,
                             log=lambda line: None)
    summary = device.run()
    assert "refusing it" in summary["error"] and summary["frames"] == 0
    honest = gateway._replace(ca_sha256=certs.ca_fingerprint(world.home))
    pinned = gateway_with_ca(honest, world.ca_pem)
    assert pinned.ca_pem == world.ca_pem


def test_plaintext_only_on_loopback(tmp_path):
    with pytest.raises(BrokerError, match="only be on loopback"):
        Broker(str(tmp_path / "mqtt"), "0.0.0.0", 1884, "b", "p")
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('[mqtt]\nport = 1884\nhost = "0.0.0.0"\n')
    with pytest.raises(ConfigError, match="only be on loopback"):
        load(str(home))


def test_passwords_never_appear_on_a_command_line(world, tmp_path):
    """Every mosquitto_passwd the node runs goes through a wrapper that records its argv."""
    log, wrapper = tmp_path / "argv.log", tmp_path / "bin" / "mosquitto_passwd"
    wrapper.parent.mkdir()
    real = subprocess.run(["which", "mosquitto_passwd"], capture_output=True, text=True).stdout
    wrapper.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\nexec {real.strip()} \"$@\"\n")
    wrapper.chmod(0o755)
    os.environ["PATH"] = f"{wrapper.parent}:{os.environ['PATH']}"
    try:
        devices = world.add_devices(3) + [world.add_device()]
    finally:
        os.environ["PATH"] = os.environ["PATH"].split(":", 1)[1]
    argv = log.read_text()
    assert argv.count("-U") >= 2
    secrets = [world.bridge_password, world.provision_password,
               world.home_assistant_password] + [d.password for d in devices]
    assert not [s for s in secrets if s in argv]
    passwd = world.broker.path("passwd")
    assert stat.S_IMODE(os.stat(passwd).st_mode) == 0o600
    assert not [s for s in secrets if s in open(passwd).read()]


def test_rotation_is_loaded_by_the_running_broker(world):
    device = world.add_device()
    context = pinning.client_context(world.ca_pem)
    before = served_certificate(world.tls_port)
    connected = connect(world.tls_port, device.id.hex(), device.password, "kept",
                        tls_context=context)
    fingerprint = certs.rotate(world.home)
    assert fingerprint == certs.ca_fingerprint(world.home)   # same CA: devices keep their pin
    world.broker.reload()
    wait_for("the new certificate", lambda: served_certificate(world.tls_port) != before)
    assert connected.is_connected(), "a reload dropped a connected device"
    again = connect(world.tls_port, device.id.hex(), device.password, "after",
                    tls_context=context)
    for client in (connected, again):
        client.disconnect()
        client.loop_stop()


def test_cert_rotate_command(tmp_path):
    from tests.nodeproc import NodeHome, free_port
    home = NodeHome.init(tmp_path / "home", mqtt_port=free_port())
    shown = home.cli("cert", "show", "--json", check=True).json()
    rotated = home.cli("cert", "rotate", "--name", "gw.example", "--json", check=True).json()
    assert rotated["ca_sha256"] == shown["ca_sha256"] and "no broker runs" in rotated["broker"]
    assert "gw.example" in home.cli("cert", "show", "--json", check=True).json()["names"]
    renewed = home.cli("cert", "rotate", "--ca", check=True).stdout
    assert "NEW CA" in renewed and "approve every device again" in renewed
    assert home.cli("cert", "show", "--json", check=True).json()["ca_sha256"] != \
        shown["ca_sha256"]
    key = os.path.join(home.path, "tls", "server.key")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
