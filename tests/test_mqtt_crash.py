"""Zero loss through crashes: 20,000 signed QoS 1 frames from 20 real device clients while the
bridge process (``python -m edge.mqtt.bridge_main``) is killed with SIGKILL at random moments,
at least ten times, and restarted on the same persistent session.

Afterwards every frame the broker acknowledged to its device (PUBACK) is in LMDB exactly once,
byte for byte, and nothing else is. The random seed is printed; rerun a failure with
``SMARTSHARE_CRASH_SEED=<seed>``.
"""

import os
import random

import pytest

from tests.mqttkit import BridgeProcess, wait_for

pytestmark = pytest.mark.slow

DEVICES, FRAMES_EACH, WAVES = 20, 1000, 12


def publish_wave(devices, clients, frames, start, end):
    """Publish frames ``start..end-1`` of every device, interleaved; the MQTTMessageInfo of
    each, to learn later which ones the broker acknowledged."""
    infos = []
    for index in range(start, end):
        for device, client in zip(devices, clients):
            infos.append((device, index + 1,
                          client.publish(device.topic("meter"), frames[device][index], qos=1)))
    return infos


def stored_count(world):
    with world.store.read() as txn:
        return world.registry.count_frames(txn)


def test_no_acknowledged_frame_is_lost_or_doubled_through_kill_9(mqtt_world, tmp_path):
    seed = int(os.environ.get("SMARTSHARE_CRASH_SEED", random.randrange(1 << 32)))
    print(f"SMARTSHARE_CRASH_SEED={seed}")
    rng = random.Random(seed)
    world = mqtt_world
    devices = world.add_devices(DEVICES, kind="sensor")   # a kind without a schema
    frames = {d: [d.frame("meter", seq, {"running_s": seq * 60, "pm25": seq % 40})
                  for seq in range(1, FRAMES_EACH + 1)] for d in devices}
    clients = [d.connect(subscribe_replies=True, inflight=200) for d in devices]
    bridge = BridgeProcess(world, tmp_path / "bridge.log", "crash-bridge")
    bridge.start()
    infos = []
    try:
        per_wave = -(-FRAMES_EACH // WAVES)
        for wave in range(WAVES):
            start = wave * per_wave
            infos += publish_wave(devices, clients, frames, start,
                                  min(start + per_wave, FRAMES_EACH))
            before = stored_count(world)
            # Kill at a random moment while this wave is being ingested.
            wait_for("the bridge to make progress", lambda: stored_count(world) > before,
                     timeout=60, interval=rng.uniform(0.001, 0.05))
            bridge.kill()
            bridge.start()
        for _, _, info in infos:
            info.wait_for_publish(60)
        assert bridge.kills >= 10
        wait_for("every acknowledged frame stored",
                 lambda: stored_count(world) >= DEVICES * FRAMES_EACH, timeout=120)
        stats = bridge.stop()
    finally:
        bridge.stop()
    acknowledged = [(d, seq) for d, seq, info in infos if info.is_published()]
    assert len(acknowledged) == DEVICES * FRAMES_EACH
    for device in devices:
        stored = world.stored(device)
        assert stored == {seq: frames[device][seq - 1] for seq in range(1, FRAMES_EACH + 1)}
        assert device.replies() == [], f"error replies: {device.replies()[:3]}"
    assert stored_count(world) == DEVICES * FRAMES_EACH
    assert stats["commit_failures"] == 0 and stats["rejected"] == {}
