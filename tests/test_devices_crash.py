"""Receipts mean what they say through crashes of the whole gateway: five simulated devices
stream signed frames while the node's whole process group (the node and its Mosquitto) is killed
with SIGKILL 30 times, at random moments, and started again.

Mosquitto saves its queues only now and then, so each crash loses frames the broker had
acknowledged (PUBACK) to the devices. The devices (``edge/mqtt/simulators.py``) keep every frame
until a receipt covers it and send again what is missing; the bridge takes frames in seq order.
Afterwards every frame a device was told is stored (its latest receipt: ``from``..``seq``) is in
LMDB once, byte for byte as the device signed it, and LMDB holds no frame the device did not
send. The random seed is printed; rerun a failure with ``SMARTSHARE_CRASH_SEED=<seed>``.
"""

import os
import random
import threading
import time

import pytest

from chain.store import Store
from edge.config import load
from edge.mqtt.devices import DeviceRegistry
from edge.mqtt.sim_fleet import api_approver
from edge.mqtt.certs import ca_pem
from edge.mqtt.simulators import Gateway, SimulatedDevice, gateway_with_ca
from edge.testnet import free_ports
from tests.mqttkit import wait_for

pytestmark = pytest.mark.slow

KILLS = 30
KINDS = ("parking-gate", "purifier", "router", "weather", "weather")
INTERVAL_S = 0.02


class Fleet:
    """The five devices, each in a thread, recording every frame they signed."""

    def __init__(self, home, state_dir):
        config = load(home.path)
        gateway = gateway_with_ca(Gateway("127.0.0.1", config.mqtt_tls_port,
                                          config.mqtt_provision_password, home.chain_id,
                                          "node under test"), ca_pem(home.path))
        self.sent = {}           # device id -> {seq: frame bytes}
        self.lock = threading.Lock()
        self.devices = [SimulatedDevice(kind, os.path.join(state_dir, f"{kind}-{n}"), gateway,
                                        interval=INTERVAL_S, approve=api_approver(home.client()),
                                        log=lambda line: None, on_frame=self._on_frame,
                                        log_disconnects=False)
                        for n, kind in enumerate(KINDS)]
        self.threads = [threading.Thread(target=d.run, daemon=True) for d in self.devices]

    def _on_frame(self, device, seq, kind, payload, raw):
        with self.lock:
            self.sent.setdefault(device.id, {})[seq] = raw

    def start(self):
        for thread in self.threads:
            thread.start()

    def marks(self):
        return [d.receipted for d in self.devices]

    def stop(self):
        for device in self.devices:
            device.stop()
        for thread in self.threads:
            thread.join(30)


def test_receipted_frames_survive_30_kills_of_the_whole_gateway(node_factory, tmp_path):
    seed = int(os.environ.get("SMARTSHARE_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"SMARTSHARE_CRASH_SEED={seed}")
    rng = random.Random(seed)
    home = node_factory.home("gateway", mqtt_port=free_ports(1)[0])
    node = node_factory.node(home, own_group=True)
    fleet = Fleet(home, str(tmp_path / "devices"))
    fleet.start()
    try:
        wait_for("every device onboarded and receipted", lambda: all(fleet.marks()), timeout=90)
        for kill in range(KILLS):
            before = fleet.marks()
            wait_for(f"receipts to move on after restart {kill}",
                     lambda: all(m > b for m, b in zip(fleet.marks(), before)), timeout=60)
            time.sleep(rng.uniform(0, 0.5))
            node.kill_group()
            node.start()
        wait_for("receipts after the last restart", lambda: all(
            m > b for m, b in zip(fleet.marks(), before)), timeout=60)
    finally:
        fleet.stop()
        node.stop()
    store = Store(home.data_dir)
    try:
        registry = DeviceRegistry(store)
        for device in fleet.devices:
            assert device.error is None, device.error
            receipt, sent = device.receipt, fleet.sent[device.id]
            assert receipt["from"] == 1 and receipt["refused"] == [], receipt
            stored = dict(registry.frames_of(device.state.id, limit=10**9))
            told = range(receipt["from"], receipt["seq"] + 1)
            missing = [seq for seq in told if stored.get(seq) != sent[seq]]
            assert not missing, f"{device.name}: receipted frames not in LMDB: {missing[:10]}"
            assert all(sent.get(seq) == raw for seq, raw in stored.items()), device.name
            assert receipt["seq"] > KILLS, receipt
            codes = {e["code"] for e in device.errors}
            assert codes <= {"out_of_order"}, device.errors[:3]
    finally:
        store.close()
