"""The data delivery envelope (docs/protocol.md §18.3): sealing, the commitment, and every check
a buyer makes before it trusts a payload — hash, purchase, key, records and device signatures."""

import json

import pytest
from hypothesis import given, settings, strategies as st
from nacl.signing import SigningKey

from chain.keys import KeyPair
from edge.agent.data_envelope import (DataError, buyer_box, commitment, open_delivery,
                                      pack_records, seal, unpack_records, verified_frames)
from edge.mqtt.frames import sign_frame
from edge.mqtt.topics import device_id_of

CHAIN = "ss-devnet"
PID = bytes(range(16))


def station(n=5, key=None):
    key = key or SigningKey(b"\x07" * 32)
    pubkey = bytes(key.verify_key)
    device = device_id_of(pubkey)
    frames = [sign_frame(key, CHAIN, device, "data", seq, 1_700_000_000_000 + seq * 1000,
                         {"t_c": 20 + seq, "reading": seq}) for seq in range(1, n + 1)]
    return device, pubkey, frames


def delivery(buyer, n=5):
    device, pubkey, frames = station(n)
    box_key, _ = buyer_box(buyer)
    envelope = seal(PID, box_key, pack_records(b"ws-1", pubkey, frames))
    return device, frames, envelope


def test_round_trip_and_signatures():
    buyer = KeyPair.from_seed(b"\x01" * 32)
    device, frames, envelope = delivery(buyer)
    _, secret = buyer_box(buyer)
    plain = open_delivery(envelope, PID, commitment(envelope), secret)
    records = verified_frames(plain, {"device": device}, CHAIN)
    assert [(seq, json.loads(text)["t_c"]) for seq, _, text in records] == [
        (s, 20 + s) for s in range(1, 6)]
    assert unpack_records(plain)[2] == frames
    assert len(envelope) == 5 + 17 + 48 + len(plain)    # header, id, sealed-box overhead


def test_known_answer_commitment():
    """H("ss/data", envelope) is BLAKE2b-256 over u8(7) || "ss/data" || envelope (§2)."""
    import hashlib
    envelope = b"ssde\x01\x01x" + b"\x00" * 60
    assert commitment(envelope) == hashlib.blake2b(b"\x07ss/data" + envelope,
                                                   digest_size=32).digest()


def test_tampered_ciphertext_is_refused():
    buyer = KeyPair.from_seed(b"\x01" * 32)
    _, _, envelope = delivery(buyer)
    _, secret = buyer_box(buyer)
    committed = commitment(envelope)
    for at in (-1, -40, 30, 60):
        tampered = bytearray(envelope)
        tampered[at] ^= 0x20
        with pytest.raises(DataError, match="delivery hash mismatch"):
            open_delivery(bytes(tampered), PID, committed, secret)
        # even with the tampered bytes' own hash (a lying gateway), the box refuses them
        with pytest.raises(DataError, match="does not decrypt|another purchase|for purchase"):
            open_delivery(bytes(tampered), PID, commitment(bytes(tampered)), secret)


def test_other_buyer_other_purchase_no_commitment():
    alice, eve = KeyPair.from_seed(b"\x01" * 32), KeyPair.from_seed(b"\x02" * 32)
    _, _, envelope = delivery(alice)
    with pytest.raises(DataError, match="does not decrypt with this buyer's key"):
        open_delivery(envelope, PID, commitment(envelope), buyer_box(eve)[1])
    with pytest.raises(DataError, match="is for purchase"):
        open_delivery(envelope, bytes(16), commitment(envelope), buyer_box(alice)[1])
    with pytest.raises(DataError, match="no delivery is committed"):
        open_delivery(envelope, PID, None, buyer_box(alice)[1])


def test_records_of_another_device_or_forged_are_refused():
    device, pubkey, frames = station(3)
    other_device, other_key, other_frames = station(2, SigningKey(b"\x09" * 32))
    plain = pack_records(b"ws-1", other_key, other_frames)
    with pytest.raises(DataError, match="another device"):
        verified_frames(plain, {"device": device}, CHAIN)
    forged = bytearray(frames[1])
    forged[-1] ^= 1
    with pytest.raises(DataError, match="record 2 is not signed"):
        verified_frames(pack_records(b"ws-1", pubkey, [frames[0], bytes(forged)]),
                        {"device": device}, CHAIN)
    with pytest.raises(DataError, match="record 1 is not signed"):
        verified_frames(pack_records(b"ws-1", pubkey, frames), {"device": device}, "otherchain")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_records_decoder_is_strict(data):
    """Any bytes either parse to records that encode back to the same bytes, or DataError."""
    try:
        dataset, pubkey, frames = unpack_records(data)
    except DataError:
        return
    assert pack_records(dataset, pubkey, frames) == data


@pytest.mark.parametrize("cut", [0, 4, 6, 9, 20, 45, -1])
def test_truncated_records_refused(cut):
    _, pubkey, frames = station(2)
    plain = pack_records(b"ws-1", pubkey, frames)
    with pytest.raises(DataError):
        unpack_records(plain[:cut] if cut >= 0 else plain + b"\x00")



@pytest.fixture
def datasets(tmp_path):
    """A DataStore on real LMDB, 20 signed readings of one station and two empty datasets."""
    from chain.store import Store
    from edge.agent.data_store import DataStore
    store = Store(str(tmp_path / "data"))
    try:
        _, _, frames = station(20)
        docs = {name: {"id": name, "device": "00" * 8, "owner": "00" * 20, "cursor": 0,
                       "records": 0, "first_ms": 0, "last_ms": 0} for name in ("a", "b")}
        yield store, DataStore(store), frames, docs
    finally:
        store.close()


def test_dataset_records_range_bounds_limit_and_isolation(datasets):
    """A purchased range is [from_ms, to_ms) of device time, oldest first, at most the limit,
    and never reaches into another dataset's records (real LMDB)."""
    from edge.agent.metering import DeviceFrame
    store, data, frames, docs = datasets
    decoded = [DeviceFrame(f) for f in frames]
    store.write(lambda txn: data.add_records(txn, docs["a"], decoded[::-1][:10]))
    store.write(lambda txn: data.add_records(txn, docs["b"], decoded[10:]))
    assert docs["a"]["records"] == 10 and docs["a"]["cursor"] == 11
    base = 1_700_000_000_000
    got = data.range("a", base + 13_000, base + 17_000, 100)
    assert [DeviceFrame(f).seq for f in got] == [13, 14, 15, 16]
    assert [DeviceFrame(f).seq for f in data.range("a", 0, 2**62, 3)] == [11, 12, 13]
    assert [DeviceFrame(f).seq for f in data.range("b", 0, 2**62, 100)] == list(range(11, 21))
    assert data.range("a", base + 30_000, 2**62, 100) == []


def test_dataset_records_pruned_oldest_first_within_a_limit(datasets):
    from edge.agent.metering import DeviceFrame
    store, data, frames, docs = datasets
    for doc in docs.values():
        store.write(lambda txn, doc=doc: data.add_records(txn, doc, [DeviceFrame(f)
                                                                     for f in frames]))
    base = 1_700_000_000_000
    assert data.prune("a", base + 8_000, limit=3) == 3          # seqs 1, 2, 3
    assert data.prune("a", base + 8_000) == 4                   # 4..7; 8 is not before
    assert data.prune("a", base + 8_000) == 0
    assert [DeviceFrame(f).seq for f in data.range("a", 0, 2**62, 100)] == list(range(8, 21))
    assert data.dataset("a")["records"] == 13
    assert len(data.range("b", 0, 2**62, 100)) == 20 and data.dataset("b")["records"] == 20
    assert sorted(data.prune(name, 2**62) for name in ("a", "b")) == [13, 20]  # to the end
    assert data.range("a", 0, 2**62, 100) == data.range("b", 0, 2**62, 100) == []
