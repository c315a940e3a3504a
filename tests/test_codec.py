"""The canonical codec: round trips, byte-level layout, and strict decoding (both twins)."""

import pytest
from hypothesis import given, settings, strategies as st

from edge._fast import DecodeError
from edge._fast import codec_py
from tests.impls import both, twins
from tests.strategies import accounts, frames, headers, txs, vote_blobs

U64_MAX = 2**64 - 1


@pytest.fixture(scope="module", params=twins("codec"))
def codec(request):
    return request.param


SAMPLE_TX = (1, "ss-test", bytes(range(32)), 7, 2500, (bytes(20), 10**8, b"hi"), bytes(64))


# -- primitives ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, encoded", [
    (0, "00"), (1, "01"), (127, "7f"), (128, "8001"), (300, "ac02"),
    (U64_MAX, "ffffffffffffffffff01"),
])
def test_uvarint_layout(value, encoded):
    assert codec_py.encode_uvarint(value).hex() == encoded
    assert codec_py.Reader(bytes.fromhex(encoded)).uvarint("x") == value


@pytest.mark.parametrize("raw, message", [
    ("8000", "non-minimal"), ("ff00", "non-minimal"), ("80808000", "non-minimal"),
    ("ffffffffffffffffff02", "exceeds 64 bits"), ("ffffffffffffffffffff01", "exceeds 64 bits"),
    ("80", "unexpected end"), ("", "unexpected end"),
])
def test_uvarint_strict(raw, message):
    with pytest.raises(DecodeError, match=message):
        codec_py.Reader(bytes.fromhex(raw)).uvarint("nonce")


def test_encode_rejects_out_of_range():
    for bad in (-1, 2**64):
        with pytest.raises(ValueError):
            codec_py.encode_uvarint(bad)
    with pytest.raises(TypeError):
        codec_py.encode_uvarint(True)


def test_text_must_be_utf8():
    with pytest.raises(DecodeError, match="UTF-8"):
        codec_py.Reader(b"\x02\xff\xfe").text(10, "name")


# -- transactions ----------------------------------------------------------------------------------

def test_tx_layout(codec):
    raw = codec.encode_tx(SAMPLE_TX)
    expected = ("01" "01" "07" + b"ss-test".hex() + bytes(range(32)).hex() + "07" + "c413"
                + "00" * 20 + "80c2d72f" + "02" + b"hi".hex() + "00" * 64)
    assert raw.hex() == expected
    assert codec.decode_tx(raw) == SAMPLE_TX


@settings(max_examples=300, deadline=None)
@given(tx=txs())
def test_tx_round_trip(codec, tx):
    raw = codec.encode_tx(tx)
    assert codec.decode_tx(raw) == tx
    assert codec.encode_tx_unsigned(tx) == raw[:-64]


@settings(max_examples=100, deadline=None)
@given(tx=txs(), extra=st.binary(min_size=1, max_size=8))
def test_tx_trailing_bytes(codec, tx, extra):
    with pytest.raises(DecodeError, match="trailing"):
        codec.decode_tx(codec.encode_tx(tx) + extra)


@settings(max_examples=100, deadline=None)
@given(tx=txs(), data=st.data())
def test_tx_truncated(codec, tx, data):
    raw = codec.encode_tx(tx)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(DecodeError):
        codec.decode_tx(raw[:cut])


@pytest.mark.parametrize("mutate, field", [
    (lambda raw: b"\x02" + raw[1:], "tx.tag"),
    (lambda raw: raw[:1] + b"\x63" + raw[2:], "tx.kind"),
    (lambda raw: raw[:2] + b"\x21" + raw[3:], "tx.chain_id"),   # length 33 > 32
])
def test_tx_bad_fields_named(codec, mutate, field):
    with pytest.raises(DecodeError) as info:
        codec.decode_tx(mutate(codec.encode_tx(SAMPLE_TX)))
    assert info.value.field.startswith(field)


def test_tx_non_minimal_nonce(codec):
    raw = codec.encode_tx(SAMPLE_TX)
    nonce_at = 3 + 7 + 32
    bad = raw[:nonce_at] + b"\x87\x00" + raw[nonce_at + 1:]
    with pytest.raises(DecodeError, match="non-minimal") as info:
        codec.decode_tx(bad)
    assert info.value.field == "tx.nonce"


def test_vote_must_be_sorted_set(codec):
    a, b = b"\x01" * 20, b"\x02" * 20
    good = (4, "c", bytes(32), 0, 0, ((a, b),), bytes(64))
    raw = codec.encode_tx(good)
    swapped = raw.replace(a + b, b + a)
    duplicated = raw.replace(a + b, a + a)
    for bad in (swapped, duplicated):
        with pytest.raises(DecodeError, match="sorted and unique"):
            codec.decode_tx(bad)
    with pytest.raises(ValueError):
        codec.encode_tx((4, "c", bytes(32), 0, 0, ((b, a),), bytes(64)))


def test_oversize_fields_rejected(codec):
    memo = b"m" * 65
    with pytest.raises(ValueError):
        codec.encode_tx((1, "c", bytes(32), 0, 0, (bytes(20), 1, memo), bytes(64)))
    raw = codec.encode_tx((1, "c", bytes(32), 0, 0, (bytes(20), 1, b"m" * 64), bytes(64)))
    bad = raw.replace(b"\x40" + b"m" * 64, b"\x41" + b"m" * 64 + b"m")
    with pytest.raises(DecodeError, match="exceeds the limit") as info:
        codec.decode_tx(bad)
    assert info.value.field == "transfer.memo"


# -- headers and blocks ----------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(header=headers)
def test_header_round_trip(codec, header):
    raw = codec.encode_header(header)
    assert codec.decode_header(raw) == header
    assert codec.encode_header_unsigned(header) == raw[:-64]


def test_header_unknown_version(codec):
    header = (2, 5, bytes(32), 1000, 3, bytes(32), bytes(32), None, 4, 3, bytes(32),
              bytes(32), bytes(32), bytes(32), bytes(64))
    raw = codec.encode_header(header)
    with pytest.raises(DecodeError, match="unsupported version"):
        codec.decode_header(raw[:1] + b"\x01" + raw[2:])


def test_header_renewal_flag_is_strict(codec):
    header = (2, 5, bytes(32), 1000, 3, bytes(32), bytes(32), None, 4, 3, bytes(32),
              bytes(32), bytes(32), bytes(32), bytes(64))
    raw = codec.encode_header(header)
    flag_at = 1 + 1 + 1 + 32 + 2 + 1 + 32 + 32  # tag, version, height, prev, time, slot, keys
    assert raw[flag_at] == 0
    for flag in (2, 255):
        with pytest.raises(DecodeError, match="presence flag") as info:
            codec.decode_header(raw[:flag_at] + bytes((flag,)) + raw[flag_at + 1:])
        assert info.value.field == "header.renewal"


@settings(max_examples=50, deadline=None)
@given(header=headers, body=st.lists(txs(), max_size=8), votes=vote_blobs)
def test_block_round_trip(codec, header, body, votes):
    header_raw = codec.encode_header(header)
    tx_raws = [codec.encode_tx(t) for t in body]
    raw = codec.encode_block(header_raw, tx_raws, votes)
    h, h_raw, decoded, raws, vote_raws = codec.decode_block(raw)
    assert (h, h_raw, decoded, raws, vote_raws) == (header, header_raw, body, tx_raws, votes)
    with pytest.raises(DecodeError):
        codec.decode_block(raw + b"\x00")
    with pytest.raises(DecodeError):
        codec.decode_block(raw[:-1])


def test_block_vote_limits(codec):
    header = codec.encode_header((2, 5, bytes(32), 1000, 3, bytes(32), bytes(32), None, 4, 3,
                                  bytes(32), bytes(32), bytes(32), bytes(32), bytes(64)))
    too_long = codec.encode_block(header, [], [b"v" * 192])[:-193] + b"\xc1\x01" + b"v" * 193
    with pytest.raises(DecodeError, match="exceeds the limit") as info:
        codec.decode_block(too_long)
    assert info.value.field == "block.vote"
    with pytest.raises(ValueError):
        codec.encode_block(header, [], [b""] * 256)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400))
def test_garbage_never_crashes(codec, data):
    for decode in (codec.decode_tx, codec.decode_header, codec.decode_block):
        try:
            decode(data)
        except DecodeError:
            pass


@settings(max_examples=200, deadline=None)
@given(tx=txs())
def test_codec_twins_agree(tx):
    py, c = both("codec")
    if c is None:
        pytest.skip("compiled twin not built")
    raw = py.encode_tx(tx)
    assert c.encode_tx(tx) == raw
    assert c.decode_tx(raw) == py.decode_tx(raw)


def _outcome(fn, data):
    try:
        return ("ok", fn(data))
    except DecodeError as exc:
        return ("error", exc.field, exc.reason)


@st.composite
def damaged(draw):
    """A valid transaction, header or block encoding with one random change."""
    kind = draw(st.sampled_from(["tx", "header", "block", "account", "frame"]))
    py = both("codec")[0]
    if kind == "account":
        raw = py.encode_account(draw(accounts))
    elif kind == "frame":
        raw = py.encode_frame(draw(frames))
    elif kind == "tx":
        raw = py.encode_tx(draw(txs()))
    elif kind == "header":
        raw = py.encode_header(draw(headers))
    else:
        raw = py.encode_block(py.encode_header(draw(headers)),
                              [py.encode_tx(t) for t in draw(st.lists(txs(), max_size=3))],
                              draw(vote_blobs))
    at = draw(st.integers(0, len(raw) - 1))
    change = draw(st.sampled_from(["flip", "cut", "insert", "none"]))
    if change == "flip":
        raw = raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1:]
    elif change == "cut":
        raw = raw[:at]
    elif change == "insert":
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=3)) + raw[at:]
    return raw


@settings(max_examples=500, deadline=None)
@given(data=st.one_of(damaged(), st.binary(max_size=200)))
def test_twins_agree_on_damaged_input(data):
    """Same result, or the same DecodeError field and reason, in both twins."""
    py, c = both("codec")
    if c is None:
        pytest.skip("compiled twin not built")
    for name in ("decode_tx", "decode_header", "decode_block", "decode_account", "decode_frame"):
        assert _outcome(getattr(c, name), data) == _outcome(getattr(py, name), data), name


@settings(max_examples=200, deadline=None)
@given(account=accounts)
def test_account_round_trip(codec, account):
    raw = codec.encode_account(account)
    assert codec.decode_account(raw) == account
    py, c = both("codec")
    assert py.encode_account(account) == raw


def test_account_rules(codec):
    good = (5, 1, 2, (), ((10, 7), (3, 9)))
    raw = codec.encode_account(good)
    with pytest.raises(ValueError, match="release order"):
        codec.encode_account((5, 1, 2, (), ((10, 9), (3, 7))))
    swapped = raw.replace(bytes([10, 7, 3, 9]), bytes([10, 9, 3, 7]))
    with pytest.raises(DecodeError, match="release order"):
        codec.decode_account(swapped)
    with pytest.raises(ValueError, match="exceeds the limit"):
        codec.encode_account((0, 0, 0, (), ((1, 1),) * 65))


@settings(max_examples=200, deadline=None)
@given(frame=frames)
def test_frame_round_trip(codec, frame):
    raw = codec.encode_frame(frame)
    assert codec.decode_frame(raw) == frame
    assert codec.encode_frame_unsigned(frame) == raw[:-64]
    assert both("codec")[0].encode_frame(frame) == raw


@pytest.mark.parametrize("mutate, field", [
    (lambda raw: raw[:1] + b"\x02" + raw[2:], "frame.version"),
    (lambda raw: raw[:2] + b"\x09" + raw[3:], "frame.kind"),
    (lambda raw: raw[:-64] + raw[-63:], "frame.signature"),
])
def test_frame_bad_fields_named(codec, mutate, field):
    frame = (1, 2, b"gate0001", 7, 1_795_600_000_000, '{"kwh": 3}', bytes(64))
    with pytest.raises(DecodeError) as info:
        codec.decode_frame(mutate(codec.encode_frame(frame)))
    assert info.value.field == field


def test_frame_payload_limits(codec):
    with pytest.raises(ValueError, match="exceeds the limit"):
        codec.encode_frame((1, 2, b"gate0001", 1, 1, "x" * 1025, bytes(64)))
    with pytest.raises(ValueError, match="unknown frame kind"):
        codec.encode_frame((1, 9, b"gate0001", 1, 1, "", bytes(64)))
    raw = codec.encode_frame((1, 4, b"gate0001", 1, 1, "ab", bytes(64)))
    with pytest.raises(DecodeError, match="UTF-8"):
        codec.decode_frame(raw.replace(b"\x02ab", b"\x02\xff\xfe"))
