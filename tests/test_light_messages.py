"""The light client's p2p messages (docs/protocol.md §12.8): layouts, round trips, strict
decoding."""

import pytest
from hypothesis import given, settings, strategies as st

from chain.p2p import MESSAGE_CLASSES, DecodeError, decode_message, encode_message
from chain.p2p.light import (LIGHT_MESSAGES, FinalityMsg, GetFinality, GetSnapshot, GetState, GetTx,
                             SnapshotMsg, StateMsg, Subscribe, TxProofMsg)

u64 = st.integers(0, 2**64 - 1)
blob = st.binary(max_size=48)
hash32 = st.binary(min_size=32, max_size=32)
keys = st.lists(hash32, min_size=1, max_size=4).map(tuple)


def _snapshot(height, block_hash, after, keys_, values, done, available):
    items = tuple(zip(sorted(k for k in set(keys_) if not after or k > after), values))
    return SnapshotMsg(height, block_hash, after, items if available else None,
                       done if available else False)


MESSAGES = st.one_of(
    st.builds(GetFinality, u64, st.integers(1, 64)),
    st.builds(FinalityMsg, u64, st.lists(blob, max_size=4).map(tuple)),
    st.builds(GetState, u64, hash32, keys),
    st.builds(StateMsg, u64, hash32,
              st.none() | st.lists(st.tuples(st.none() | blob, blob), max_size=4).map(tuple)),
    st.builds(GetTx, hash32),
    st.builds(lambda t: TxProofMsg(t, False), hash32),
    st.builds(lambda t, h, bh, ic, tx, p1, rc, p2: TxProofMsg(t, True, h, bh, min(ic), max(ic) + 1,
                                                              tx, p1, rc, p2),
              hash32, u64, hash32, st.lists(st.integers(0, 65534), min_size=2, max_size=2), blob,
              st.lists(hash32, max_size=3).map(tuple), blob,
              st.lists(hash32, max_size=3).map(tuple)),
    st.builds(GetSnapshot, u64, hash32, st.just(b"") | hash32),
    st.builds(_snapshot, u64, hash32, st.just(b"") | hash32, st.lists(hash32, max_size=4),
              st.lists(blob, min_size=4, max_size=4), st.booleans(), st.booleans()),
    st.builds(Subscribe, st.booleans()),
)

LAYOUTS = [
    (GetFinality(3, 64), "5d0340"),
    (FinalityMsg(3, (b"\x32",)), "5e03010132"),
    (GetState(7, b"\xbb" * 32, (b"\x01" * 32,)), "5f07" + "bb" * 32 + "01" + "01" * 32),
    (StateMsg(7, b"\xbb" * 32, None), "6007" + "bb" * 32 + "00"),
    (StateMsg(7, b"\xbb" * 32, ((None, b"\x30"), (b"", b"\x30"))),
     "6007" + "bb" * 32 + "0102" + "000130" + "01000130"),
    (GetTx(b"\x11" * 32), "61" + "11" * 32),
    (TxProofMsg(b"\x11" * 32, False), "62" + "11" * 32 + "00"),
    (TxProofMsg(b"\x11" * 32, True, 9, b"\xbb" * 32, 1, 2, b"\x01", (b"\xcc" * 32,), b"\x04", ()),
     "62" + "11" * 32 + "0109" + "bb" * 32 + "0102" + "0101" + "01" + "cc" * 32 + "0104" + "00"),
    (GetSnapshot(9, b"\xbb" * 32), "6309" + "bb" * 32 + "00"),
    (SnapshotMsg(9, b"\xbb" * 32, b"", ((b"\x01" * 32, b"v"),), True),
     "6409" + "bb" * 32 + "000101" + "01" * 32 + "017601"),
    (SnapshotMsg(9, b"\xbb" * 32, b"", None), "6409" + "bb" * 32 + "0000"),
    (Subscribe(True), "6501"),
]


def test_layouts_cover_every_light_type():
    assert {type(m).TYPE for m, _ in LAYOUTS} == set(LIGHT_MESSAGES) == set(range(0x5D, 0x66))
    assert set(LIGHT_MESSAGES) <= set(MESSAGE_CLASSES)


@pytest.mark.parametrize("message, encoded", LAYOUTS, ids=lambda v: type(v).__name__
                         if not isinstance(v, str) else "")
def test_message_layout(message, encoded):
    assert encode_message(message).hex() == encoded
    assert decode_message(bytes.fromhex(encoded)) == message


@settings(max_examples=300, deadline=None)
@given(message=MESSAGES)
def test_message_round_trip(message):
    raw = encode_message(message)
    assert decode_message(raw) == message
    assert encode_message(decode_message(raw)) == raw


@settings(max_examples=200, deadline=None)
@given(message=MESSAGES, extra=st.binary(min_size=1, max_size=4), data=st.data())
def test_message_trailing_or_truncated(message, extra, data):
    raw = encode_message(message)
    with pytest.raises(DecodeError, match="trailing"):
        decode_message(raw + extra)
    with pytest.raises(DecodeError):
        decode_message(raw[:data.draw(st.integers(0, len(raw) - 1))])


@pytest.mark.parametrize("raw, field", [
    ("5d0300", "get_finality.count"), ("5d0341", "get_finality.count"),
    ("5f07" + "bb" * 32 + "00", "get_state.keys"),
    ("6007" + "bb" * 32 + "02", "state.available"),
    ("62" + "11" * 32 + "0109" + "bb" * 32 + "0202", "tx_proof.index"),
    ("6409" + "bb" * 32 + "000102" + "02" * 32 + "00" + "01" * 32 + "0000", "snapshot.key"),
    ("6502", "subscribe.headers_only"),
])
def test_bad_light_messages_name_their_field(raw, field):
    with pytest.raises(DecodeError) as caught:
        decode_message(bytes.fromhex(raw))
    assert caught.value.field == field
