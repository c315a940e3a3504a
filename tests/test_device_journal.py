"""Device states journaled in the frame log (edge/mqtt/devices.py, docs/protocol.md §15.4): over
a real LMDB, every reader (the writer's registry, another one, a fresh one as after a restart,
one holding an older snapshot) sees each device's newest state through checkpoints and pruning,
and pruning never drops a journal record not yet folded (it deletes the frames around it)."""

import random
import threading

import pytest

from chain.store import Store
from edge.mqtt import devices
from edge.mqtt.devices import DeviceRegistry, DeviceState
from edge.mqtt.sequence import Position

IDS = [bytes([i]) * 8 for i in range(1, 13)]


@pytest.fixture
def store(tmp_path):
    store = Store(str(tmp_path / "data"))
    yield store
    store.close()


class Fleet:
    """Commits random batches through one registry and remembers what each device's state is."""

    def __init__(self, store, seed):
        self.store, self.rng = store, random.Random(seed)
        self.registry = DeviceRegistry(store)
        self.truth, self.seqs, self.commits = {}, dict.fromkeys(IDS, 0), 0

    def commit(self, big=False):
        accepted, positions, schemas = [], {}, {}
        for device in self.rng.sample(IDS, self.rng.randint(0, 6)):
            if self.rng.random() < 0.8:
                self.seqs[device] += 1
                accepted.append((device, self.seqs[device], b"frame %d" % self.seqs[device]))
            positions[device] = Position(self.seqs[device] + self.rng.randint(0, 2), 1)
            if self.rng.random() < 0.7:
                schemas[device] = b'{"t":%d,"pad":"%s"}' % (self.commits,
                                                          b"x" * (3000 if big else 10))
        self.commits += 1
        self.store.write(lambda txn: self.registry.store_frames(txn, accepted, positions, schemas,
                                                               now_ms=self.commits))
        for device, position in positions.items():
            old = self.truth.get(device, DeviceState())
            head = self._head(device) if any(d == device for d, _, _ in accepted) else old.head
            self.truth[device] = DeviceState(head, position, schemas.get(device, old.schema))

    def _head(self, device):
        with self.store.read() as txn:
            return self.registry.state(txn, device).head

    def check(self, registry, txn, truth=None):
        for device, state in (truth or self.truth).items():
            assert registry.state(txn, device) == state, device.hex()
            frames = registry.frames_of(device, 1, txn)
            assert not frames or frames[0][1] == b"frame %d" % frames[0][0]


def test_every_reader_sees_the_newest_states_through_checkpoints_and_pruning(store):
    fleet, other = Fleet(store, 7), DeviceRegistry(store)
    for i in range(4 * devices.CHECKPOINT_EVERY + 3):
        fleet.commit(big=i % 17 == 0)
        if i % 9 == 0:
            store.write(lambda txn: fleet.registry.prune_frames(txn, 10**15, 0, 12))
        with store.read() as txn:
            for registry in (fleet.registry, other, DeviceRegistry(store)):
                fleet.check(registry, txn)
    with store.read() as txn:
        assert txn.get(devices.CHECKPOINT, db=fleet.registry.seqs)   # checkpoints were made


def test_a_reader_holding_an_older_snapshot_sees_that_snapshot(store):
    fleet = Fleet(store, 3)
    for _ in range(devices.CHECKPOINT_EVERY - 3):
        fleet.commit()
    then = dict(fleet.truth)
    with store.read() as old:
        later = threading.Thread(target=lambda: [fleet.commit() for _ in range(6)])
        later.start()   # past a checkpoint, from a thread that holds no read transaction
        later.join()
        assert fleet.truth != then
        fleet.check(DeviceRegistry(store), old, then)
        fleet.check(fleet.registry, old, then)
    with store.read() as txn:
        fleet.check(fleet.registry, txn)


def test_pruning_keeps_the_journal_records_not_yet_folded(store):
    fleet = Fleet(store, 5)
    for _ in range(devices.CHECKPOINT_EVERY + 4):
        fleet.commit()
    store.write(lambda txn: fleet.registry.prune_frames(txn, 10**15, 0, 10**6))
    with store.read() as txn:
        folded = txn.get(devices.CHECKPOINT, db=fleet.registry.seqs)
        keys = [key for key, _ in txn.cursor(db=fleet.registry.frames)]
        assert keys and all(len(key) != 8 and key > folded for key in keys)   # frames all gone
        fleet.check(DeviceRegistry(store), txn)
    store.write(fleet.registry.checkpoint)
    store.write(lambda txn: fleet.registry.prune_frames(txn, 10**15, 0, 10**6))
    with store.read() as txn:
        assert not list(txn.cursor(db=fleet.registry.frames))
        fleet.check(DeviceRegistry(store), txn)
