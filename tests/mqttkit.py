"""A real Mosquitto on a free port, the node's device registry on a temp LMDB, real paho clients.

    with MqttWorld(tmp_path) as world:
        device = world.add_device("purifier")        # approved, with its own MQTT password
        bridge = world.start_bridge()                # in-process Bridge, subscribed
        client = device.connect()
        client.publish(device.topic("meter"), device.frame("meter", 1, {"x": 1}), qos=1)

Everything started here is stopped by ``close`` (the ``mqtt_world`` fixture does it).
"""

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
from nacl.signing import SigningKey

from chain.secretfile import write_secret
from chain.store import Store
from edge.mqtt.bridge import Bridge
from edge.mqtt.broker import BRIDGE_USER, PROVISION_USER, Broker, TlsListener
from edge.mqtt.devices import DeviceRegistry
from edge.mqtt.frames import sign_frame
from edge.mqtt.provision import join_request
from edge.mqtt.topics import device_id_of, device_topic, provision_topic, reply_topic
from edge.testnet import free_ports

CHAIN_ID = "smartshare-mqtt-test"


def wait_for(what, check, timeout=30, interval=0.02):
    """Poll ``check`` until it returns something truthy; AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class TestDevice:
    """A device with its own key: builds signed frames, connects as itself, records replies."""

    __test__ = False

    def __init__(self, world, kind, key=None):
        self.world, self.kind = world, kind
        self.key = key or SigningKey.generate()
        self.pubkey = bytes(self.key.verify_key)
        self.id = device_id_of(self.pubkey)
        self.password = None
        self.messages = []
        self._lock = threading.Lock()
        self.clients = []

    def topic(self, kind):
        return device_topic(self.id, kind)

    def frame(self, kind, seq, payload, timestamp_ms=None, chain_id=CHAIN_ID):
        ts = time.time_ns() // 1_000_000 if timestamp_ms is None else timestamp_ms
        return sign_frame(self.key, chain_id, self.id, kind, seq, ts, payload)

    def join_request(self):
        return join_request(self.pubkey, self.kind, model="test", firmware="1")

    def connect(self, username=None, password=None, subscribe_replies=True, client_id=None,
                inflight=20):
        """A connected paho client (as this device unless told otherwise)."""
        username = username or self.id.hex()
        password = password if password is not None else self.password
        client = connect(self.world.port, username, password,
                         client_id or f"{self.id.hex()}-{len(self.clients)}",
                         on_message=self._record, inflight=inflight)
        if subscribe_replies:
            subscribed = threading.Event()
            client.on_subscribe = lambda *a: subscribed.set()
            client.subscribe(reply_topic(self.id, "#"), qos=1)
            assert subscribed.wait(10), "reply subscription not confirmed"
        self.clients.append(client)
        return client

    def _record(self, client, userdata, msg):
        with self._lock:
            self.messages.append((msg.topic, msg.payload))

    def replies(self, what="error"):
        import json
        topic = reply_topic(self.id, what)
        with self._lock:
            return [json.loads(p) for t, p in self.messages if t == topic]

    def close(self):
        for client in self.clients:
            client.disconnect()
            client.loop_stop()
        self.clients = []


def connect(port, username, password, client_id, on_message=None, timeout=10, inflight=20,
            tls_context=None, **client_args):
    """A paho 2 client connected to 127.0.0.1:port (with TLS when given a context) with its
    network loop running; raises ConnectionRefusedError with the broker's reason when
    refused, or when no connection came about."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, **client_args)
    client.max_inflight_messages_set(inflight)
    if tls_context is not None:
        client.tls_set_context(tls_context)
    if username is not None:
        client.username_pw_set(username, password)
    done, result = threading.Event(), []

    def on_connect(c, u, flags, reason_code, properties):
        result.append(reason_code)
        done.set()

    client.on_connect = on_connect
    if on_message is not None:
        client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not done.wait(timeout) or result[0].is_failure:
        client.loop_stop()
        client.disconnect()
        raise ConnectionRefusedError(f"broker refused {username!r}: "
                                     f"{result[0] if result else 'no answer'}")
    return client


class MqttWorld:
    """Broker + LMDB + registry (+ bridges) for one test."""

    def __init__(self, directory, chain_id=CHAIN_ID, tls=False, **store_options):
        """``tls``: a TLS listener too (``tls_port``), with a gateway CA made in
        ``directory/home`` (``ca_pem``)."""
        self.directory = directory
        self.chain_id = chain_id
        self.port, self.tls_port = free_ports(2)
        self.home = str(directory / "home")
        listener = None
        if tls:
            from edge.mqtt import certs
            os.makedirs(self.home, exist_ok=True)
            certs.ensure(self.home)
            self.ca_pem = certs.ca_pem(self.home)
            listener = TlsListener("127.0.0.1", self.tls_port,
                                   certs.tls_path(self.home, certs.SERVER_CERT),
                                   certs.tls_path(self.home, certs.SERVER_KEY))
        self.bridge_password = secrets.token_urlsafe(16)
        self.provision_password = secrets.token_urlsafe(16)
        self.home_assistant_password = secrets.token_urlsafe(16)
        self.store = Store(str(directory / "data"), **store_options)
        self.registry = DeviceRegistry(self.store)
        self.broker = Broker(str(directory / "mqtt"), "127.0.0.1", self.port,
                             self.bridge_password, self.provision_password,
                             home_assistant_password=self.home_assistant_password,
                             tls=listener)
        self.bridge_password_file = str(directory / "bridge_password")
        write_secret(self.bridge_password_file, self.bridge_password)
        self.bridges = []
        self.devices = []
        self.broker.write_config({})
        self.broker.start()

    # -- devices ---------------------------------------------------------------------------------

    def add_device(self, kind="sensor", approve=True):
        """A device whose join request is recorded (and approved, with a password)."""
        device = TestDevice(self, kind)
        self.registry.request(device.pubkey, {"kind": kind, "model": "test"})
        if approve:
            self.approve(device)
        self.devices.append(device)
        return device

    def approve(self, device):
        _, device.password = self.registry.approve(device.id)
        self._reconfigure({device.id.hex(): device.password})

    def _reconfigure(self, fresh=()):
        """Rewrite the password file (approved devices keep their hashes), reload the broker
        and the bridges' keys."""
        users = {r["id"]: None for r in self.registry.all() if r["status"] == "approved"}
        users.update(fresh)
        self.broker.write_config(users)
        self.broker.reload()
        for bridge in self.bridges:
            bridge.refresh_devices()

    def add_devices(self, n, kind="sensor"):
        """``n`` approved devices with one password-file rewrite and one reload."""
        fresh = {}
        for _ in range(n):
            device = TestDevice(self, kind)
            self.registry.request(device.pubkey, {"kind": kind})
            _, device.password = self.registry.approve(device.id)
            fresh[device.id.hex()] = device.password
            self.devices.append(device)
        self._reconfigure(fresh)
        return self.devices[-n:]

    def revoke(self, device):
        self.registry.revoke(device.id)
        self._reconfigure()

    def provisioner(self, device, **options):
        """A provisioning client for ``device`` (its client id is the device's id: the ACL
        lets it announce that device only)."""
        return connect(self.port, PROVISION_USER, self.provision_password, device.id.hex(),
                       **options)

    # -- the bridge ------------------------------------------------------------------------------

    def start_bridge(self, client_id="test-bridge", **options):
        bridge = Bridge(self.store, self.registry, host="127.0.0.1", port=self.port,
                        username=BRIDGE_USER, password=self.bridge_password,
                        client_id=client_id, chain_id=self.chain_id, log=lambda *_: None,
                        on_subscribed=self.broker.save, **options)
        bridge.start()
        assert bridge.wait_ready(10), "bridge did not subscribe"
        self.bridges.append(bridge)
        return bridge

    def stop_bridge(self, bridge):
        bridge.stop()
        self.bridges.remove(bridge)

    def stored(self, device):
        """``{seq: raw frame}`` of a device in LMDB."""
        return dict(self.registry.frames_of(device.id, limit=10**9))

    def provision_topic(self, device):
        return provision_topic(device.id)

    def close(self):
        for device in self.devices:
            device.close()
        for bridge in self.bridges:
            bridge.stop()
        self.bridges = []
        self.broker.stop()
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class BridgeProcess:
    """The bridge as its own process (``python -m edge.mqtt.bridge_main``) on the world's
    LMDB and broker; ``preexec_fn`` runs in the child before it starts (e.g. to set limits)."""

    def __init__(self, world, log_path, client_id, preexec_fn=None):
        self.world, self.log_path, self.client_id = world, log_path, client_id
        self.preexec_fn = preexec_fn
        self.process = None
        self.kills = 0

    def start(self):
        w = self.world
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edge.mqtt.bridge_main", "--data", w.store.env.path(),
             "--broker", f"127.0.0.1:{w.port}", "--password-file", w.bridge_password_file,
             "--client-id", self.client_id, "--chain-id", w.chain_id, "--rate-per-s", "100000",
             "--burst", "100000"],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
            preexec_fn=self.preexec_fn)
        log.close()
        line = self.process.stdout.readline()
        assert line.strip() == b"bridge ready", f"bridge did not start: {line!r}; see {self.log_path}"

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process.stdout.close()
        self.kills += 1

    def stop(self):
        """SIGTERM: the bridge finishes its batch and prints its counters."""
        if self.process is None or self.process.poll() is not None:
            return None
        self.process.terminate()
        out, _ = self.process.communicate(timeout=30)
        return json.loads(out.splitlines()[-1])
