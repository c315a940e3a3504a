"""Storage faults under streaming devices: the LMDB map growing while other threads read and
write, and the disk refusing writes in the middle of a batch. A good frame is never refused and
never acknowledged before it is stored (docs/protocol.md §15.4)."""

import os
import resource
import threading

from tests.mqttkit import BridgeProcess, MqttWorld, wait_for

DEVICES, FRAMES_EACH = 20, 300


def stream(devices, frames_each, inflight=100):
    """Every device publishes ``frames_each`` signed frames (QoS 1), interleaved; returns the
    frames by device and the publish handles."""
    clients = [d.connect(inflight=inflight) for d in devices]
    frames = {d: [d.frame("meter", seq, {"kwh": seq, "pad": "x" * 64})
                  for seq in range(1, frames_each + 1)] for d in devices}
    infos = [client.publish(d.topic("meter"), frames[d][i], qos=1)
             for i in range(frames_each) for d, client in zip(devices, clients)]
    return frames, infos


def stored_count(world):
    with world.store.read() as txn:
        return world.registry.count_frames(txn)


class Neighbours:
    """What shares the node's LMDB with the bridge: the ledger writing blocks and the API
    reading devices and frames, each in a thread of its own."""

    def __init__(self, world, devices):
        self.world, self.devices = world, devices
        self.stop, self.errors = threading.Event(), []
        self.filler = world.store.db("neighbour")
        self.threads = [threading.Thread(target=self._guard, args=(fn,), daemon=True)
                        for fn in (self._write_blocks, self._read_devices)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _guard(self, fn):
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(exc))

    def _write_blocks(self):
        n = 0
        while not self.stop.wait(0.002):
            n += 1
            value = os.urandom(4096)
            self.world.store.write(lambda txn: txn.put(n.to_bytes(8, "big"), value,
                                                       db=self.filler))

    def _read_devices(self):
        registry = self.world.registry
        while not self.stop.is_set():
            registry.all()
            for device in self.devices:
                registry.frames_of(device.id, 20)


def test_map_grows_while_20_devices_stream(tmp_path):
    with MqttWorld(tmp_path, map_size=256 << 10) as world:
        devices = world.add_devices(DEVICES, kind="test-sensor")
        bridge = world.start_bridge(rate_per_s=1e6, burst=1e6)
        with Neighbours(world, devices) as neighbours:
            frames, infos = stream(devices, FRAMES_EACH)
            for info in infos:
                info.wait_for_publish(60)
            wait_for("every frame stored", lambda: stored_count(world) >= DEVICES * FRAMES_EACH,
                     timeout=120)
        assert neighbours.errors == []
        assert world.store.growths >= 3, world.store.growths
        for device in devices:
            assert world.stored(device) == dict(enumerate(frames[device], start=1))
            assert device.replies() == []
        stats = bridge.stats()
        assert stats["rejected"] == {} and stats["commit_failures"] == 0


def file_size_limit(limit):
    """A ``preexec_fn`` that caps the size of any file the child writes (RLIMIT_FSIZE): past it,
    the kernel refuses the write with EFBIG, as a full disk refuses it with ENOSPC."""
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    return apply


def test_disk_refusing_writes_mid_batch_refuses_and_loses_nothing(mqtt_world, tmp_path):
    world = mqtt_world
    devices = world.add_devices(5, kind="test-sensor")
    data_file = os.path.join(world.store.path, "data.mdb")
    bridge = BridgeProcess(world, tmp_path / "bridge.log", "disk-bridge",
                           preexec_fn=file_size_limit(os.path.getsize(data_file) + (64 << 10)))
    bridge.start()
    try:
        frames, infos = stream(devices, 400)
        log = tmp_path / "bridge.log"
        wait_for("the disk to refuse a commit", lambda: "failed, retrying" in log.read_text(),
                 timeout=60)
        stuck = stored_count(world)
        assert stuck < 5 * 400
        # The disk has room again (the operator freed some).
        resource.prlimit(bridge.process.pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        for info in infos:
            info.wait_for_publish(60)
        wait_for("every frame stored", lambda: stored_count(world) >= 5 * 400, timeout=120)
        stats = bridge.stop()
    finally:
        bridge.stop()
    assert stats["commit_failures"] >= 1 and stats["rejected"] == {}, stats
    for device in devices:
        assert world.stored(device) == dict(enumerate(frames[device], start=1))
        assert device.replies() == []
