"""SmartAgent modules alone (edge/agent): market envelopes, prices and amounts, metering from
frames, the seller's voucher checks, the outbox's backoff and record keys, over real LMDB."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from chain.keys import KeyPair
from chain.store import Store
from contracts.vouchers import Voucher
from edge.agent import channels, messages
from edge.agent.metering import DeviceFrame, apply_frame, forget_paid_evidence
from edge.agent.outbox import Outbox, backoff_ms
from edge.agent.services import (SERVICE_TYPES, PricePolicy, amount_for, new_offer,
                                 parse_service_id)
from edge.agent.signer import KeyFileSigner, check_signer
from edge.mqtt.frames import sign_frame

CHAIN = "ss-agent-test"
BUYER, SELLER = KeyPair.from_seed(b"b" * 32), KeyPair.from_seed(b"s" * 32)
DEVICE_KEY = SigningKey(b"d" * 32)
DEVICE = b"\x01" * 8


# -- envelopes -------------------------------------------------------------------------------

def test_envelopes_round_trip_and_bind_signer_and_chain():
    body = {"type": "stop", "session": "00" * 8}
    raw = messages.seal(BUYER, CHAIN, body)
    assert messages.open_envelope(raw, CHAIN) == (BUYER.pubkey, body)
    with pytest.raises(messages.MessageError, match="bad signature"):
        messages.open_envelope(raw, "another-chain")
    doc = json.loads(raw)
    doc["signer"] = SELLER.pubkey.hex()
    with pytest.raises(messages.MessageError, match="bad signature"):
        messages.open_envelope(json.dumps(doc).encode(), CHAIN)
    doc = json.loads(raw)
    doc["body"] = doc["body"].replace("00", "11", 1)          # the signed text changed
    with pytest.raises(messages.MessageError, match="bad signature"):
        messages.open_envelope(json.dumps(doc).encode(), CHAIN)


def _signed(text):
    return json.dumps({"body": text, "signer": BUYER.pubkey.hex(), "sig": BUYER.sign(
        CHAIN, messages.message_hash(text)).hex()}).encode()


@pytest.mark.parametrize("text, reason", [
    ('{"type": "stop", "session": "0000000000000000", "x": 1}', "unknown field"),
    ('{"type": "stop"}', "missing field"),
    ('{"type": "stop", "session": "00"}', "16 lower-case hex"),
    ('{"type": "nope"}', "unknown message type"),
    ('{"type": "order", "order": "0000000000000000", "service": "p", "device": null, '
     '"max_price": 1.5, "quantity": 1}', "integers"),
    ('{"type": "order", "order": "0000000000000000", "service": "p", "device": null, '
     '"max_price": -1, "quantity": 1}', "integer 0.."),
    ('{"type": "stop", "session": "0000000000000000", "session": "1111111111111111"}',
     "duplicate"),
    ('{"type": "stop", "session": "\\ud800"}', "Unicode"),
    ('[1]', "JSON object"),
    ('{"type": "stop", "session": NaN}', "integers"),
])
def test_strict_bodies(text, reason):
    with pytest.raises(messages.MessageError, match=reason):
        messages.open_envelope(_signed(text), CHAIN)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_garbage_is_a_message_error(raw):
    with pytest.raises(messages.MessageError):
        messages.open_envelope(raw, CHAIN)


# -- prices and amounts ----------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(SERVICE_TYPES)), st.integers(0, 10**12), st.integers(0, 10**12),
       st.integers(0, 10**9))
def test_amounts_only_grow_and_never_exceed_the_exact_price(name, a, b, price):
    t = SERVICE_TYPES[name]
    low, high = sorted((a, b))
    assert amount_for(low, price, t.per, t.min_units) <= amount_for(high, price, t.per,
                                                                     t.min_units)
    exact = max(high, t.min_units * t.per) * price
    assert amount_for(high, price, t.per, t.min_units) * t.per <= exact


def test_amount_examples():
    assert amount_for(0, 1_000_000, 1, 1) == 1_000_000          # a parking gate's first minute
    assert amount_for(3, 1_000_000, 1, 1) == 3_000_000
    assert amount_for(5400, 5_000_000, 3600) == 7_500_000       # 1.5 running hours
    assert amount_for(1_999_999, 100_000, 1_000_000) == 199_999  # bytes, priced per MB


def test_price_policy_follows_utilisation_within_bounds():
    p = PricePolicy(1000, 800, 1400, 500)
    assert [p.price(busy, 4) for busy in range(5)] == [1000, 1125, 1250, 1375, 1400]
    assert PricePolicy(1000, 900, 2000, -500).price(4, 4) == 900
    assert PricePolicy(10, 20, 30).problems() == ["the base price must lie within floor..ceiling"]
    assert PricePolicy(1.5, 1, 2).problems()
    offer = new_offer("parking.time", DEVICE)
    assert offer["id"] == "parking.time@" + DEVICE.hex() and offer["capacity"] == 8
    assert parse_service_id(offer["id"]) == ("parking.time", DEVICE)
    for bad in ("parking.time", "nope.x@0101010101010101", "parking.time@01"):
        with pytest.raises(ValueError):
            parse_service_id(bad)


def test_key_file_signer(tmp_path):
    KeyPair.from_seed(b"k" * 32).save(str(tmp_path / "k.json"))
    signer = KeyFileSigner(str(tmp_path / "k.json"))
    check_signer(signer, CHAIN)
    assert "seed" not in repr(signer) and signer.pubkey == KeyPair.from_seed(b"k" * 32).pubkey


# -- metering --------------------------------------------------------------------------------

def frame(seq, kind, payload):
    return DeviceFrame(sign_frame(DEVICE_KEY, CHAIN, DEVICE, kind, seq, 1000 + seq, payload))


def session(service, **extra):
    return dict({"id": "aa" * 8, "state": "starting", "start_after": 10, "dev_session": None,
                 "units": 0, "final": False, "evidence": [], "started_ms": None,
                 "ended_ms": None, "service": service}, **extra)


def test_metering_follows_the_commanded_session_only():
    s, t = session("parking.time"), SERVICE_TYPES["parking.time"]
    feed = [
        frame(5, "event", {"event": "vehicle_entry", "session": 5, "ref": "aa" * 8}),   # too old
        frame(11, "event", {"event": "vehicle_entry", "session": 11}),          # another car
        frame(12, "event", {"event": "vehicle_entry", "session": 12, "ref": "aa" * 8}),
        frame(13, "meter", {"session": 11, "minutes": 50}),                     # not ours
        frame(14, "meter", {"session": 12, "minutes": 1}),
        frame(15, "meter", {"session": 12, "minutes": 3}),
    ]
    changed = [apply_frame(s, t, f) for f in feed]
    assert changed == [False, False, True, False, True, True]
    assert (s["state"], s["dev_session"], s["units"]) == ("active", 12, 3)
    assert [e[0] for e in s["evidence"]] == [12, 15]       # the opening is kept, the newest too
    for f in feed:                                          # applying again changes no count
        apply_frame(s, t, f)
    assert s["units"] == 3
    assert apply_frame(s, t, frame(16, "event", {"event": "vehicle_exit", "session": 12,
                                                 "minutes": 4}))
    assert (s["state"], s["final"], s["units"]) == ("ended", True, 4)
    assert not apply_frame(s, t, frame(17, "meter", {"session": 12, "minutes": 9}))
    forget_paid_evidence(s, 15)
    assert [e[0] for e in s["evidence"]] == [16]


def test_metering_counts_readings_after_the_start():
    s, t = session("weather.reading", state="active"), SERVICE_TYPES["weather.reading"]
    for seq in range(5, 25):
        apply_frame(s, t, frame(seq, "data", {"t_c": 1.0, "reading": seq}))
    assert s["units"] == 14 and len(s["evidence"]) == 14


# -- voucher checks --------------------------------------------------------------------------

def seller_session(**extra):
    return dict({"id": "0123456789abcdef", "state": "active", "contract": "cc" * 20,
                 "payee": SELLER.address.hex(), "deposit": 1000, "voucher": None,
                 "buyer": BUYER.pubkey.hex()}, **extra)


def voucher_body(s, amount, nonce, key=BUYER, **changes):
    v = Voucher(CHAIN, bytes.fromhex(s["contract"]), bytes.fromhex(s["payee"]),
                bytes.fromhex(s["id"]), amount, nonce)
    body = {"channel": s["id"], "contract": s["contract"], "payee": s["payee"],
            "amount": amount, "nonce": nonce,
            "signature": key.sign(CHAIN, v.digest()).hex()}
    body.update(changes)
    return body


def test_voucher_refusals_say_why():
    s = seller_session()
    assert channels.check_voucher(s, voucher_body(s, 300, 4), CHAIN) is None
    s["voucher"] = {"amount": 300, "nonce": 4}
    cases = [
        (voucher_body(s, 200, 5), "lower than the one held"),
        (voucher_body(s, 300, 4), "replayed"),
        (voucher_body(s, 400, 3), "replayed"),
        (voucher_body(s, 400, 5, channel="fedcba9876543210"), "another channel"),
        (voucher_body(s, 400, 5, payee="ab" * 20), "another payee"),
        (voucher_body(s, 400, 5, contract="ab" * 20), "another channel contract"),
        (voucher_body(s, 1001, 5), "exceeds the deposit"),
        (voucher_body(s, 400, 5, key=SELLER), "bad voucher signature"),
        (dict(voucher_body(s, 400, 5), amount=401), "bad voucher signature"),
    ]
    for body, reason in cases:
        assert reason in channels.check_voucher(s, body, CHAIN), reason
    assert "settled" in channels.check_voucher(dict(s, state="settled"),
                                               voucher_body(s, 500, 6), CHAIN)


# -- outbox ----------------------------------------------------------------------------------

def test_outbox_keys_supersede_queued_records_and_backoff_grows(tmp_path):
    store = Store(str(tmp_path / "data"))
    outbox = Outbox(store)
    first = outbox.add({"type": "x", "n": 1}, "redeem 1", key="redeem:a", now_ms=5)
    assert outbox.add({"type": "x", "n": 2}, "redeem 2", key="redeem:a", now_ms=6) == first
    other = outbox.add({"type": "x", "n": 3}, "close", key="close:a", now_ms=7)
    assert [r["payload"]["n"] for r in outbox.open()] == [2, 3] and other == first + 1
    record = outbox.get(first)
    record["status"] = "pending"
    outbox.put(record)
    assert outbox.add({"type": "x", "n": 4}, "redeem 3", key="redeem:a") == other + 1
    assert [backoff_ms(n) for n in (1, 2, 3, 7, 8, 100)] == [1000, 2000, 4000, 60_000,
                                                              60_000, 60_000]
    store.close()
    reopened = Outbox(Store(str(tmp_path / "data")))
    assert [r["payload"]["n"] for r in reopened.open()] == [2, 3, 4]
