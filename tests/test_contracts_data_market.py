"""data_market.lua (docs/protocol.md §14.7): every method and every refusal, through the real VM.

Every refusal is checked to leave the contract's storage and every balance as they were: no
token is ever lost, and escrow stays claimable or refundable after a failed call.
"""

import pytest

from chain.params import Params
from contracts.system import system_contract
from contracts.testkit import Harness, addr, events_of
from contracts.values import decode_value

DM, COIN = addr("data-market"), addr("watt-coin")
OWNER, GATEWAY, BUYER, OTHER, FEES = (addr(n) for n in ("owner", "gateway", "buyer", "other",
                                                        "fees"))
DEVICE = bytes.fromhex("3f9c0a1b2c3d4e5f")
KEY = bytes(range(32))
HASH = bytes(range(100, 132))
HOUR = 3_600_000
PRICE = 7          # per record
FEE_PERMILLE = 25


def terms(**changes):
    base = {"device": DEVICE, "gateway": GATEWAY, "price": PRICE, "unit": "record",
            "description": "weather station, garden", "schema": "weather/data v1",
            "licence": "CC-BY-4.0"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture
def h():
    h = Harness()
    result = h.deploy(DM, system_contract("data_market"), [FEES, FEE_PERMILLE])
    assert result.ok, result.error
    assert events_of(result) == [("config", {"fee_to": FEES, "fee_permille": FEE_PERMILLE})]
    h.state.credit(BUYER, 100_000)
    h.state.credit(OTHER, 100_000)
    return h


def failure(result):
    assert not result.ok
    return result.error


def refused(h, method, *args, message, **kw):
    """The call fails with ``message`` and changes nothing at all."""
    before = settled(h)
    result = h.call(DM, method, *args, **kw)
    assert failure(result) == message, (method, args)
    assert settled(h) == before


def settled(h):
    """Code, storage and the non-zero balances (a refused call's value went there and back)."""
    codes, storage, balances = h.state.snapshot()
    return codes, storage, {a: b for a, b in balances.items() if b}


def listed(h, dataset="ws-1", everyone=True, **changes):
    assert h.value(DM, "register", dataset, terms(**changes), caller=OWNER) is True
    if everyone:
        assert h.value(DM, "consent", dataset, caller=OWNER) is True
    return dataset


def bought(h, dataset="ws-1", max_records=100, value=None, pid=b"p-1", buyer=BUYER,
           from_ms=0, to_ms=HOUR):
    value = PRICE * max_records if value is None else value
    result = h.call(DM, "purchase", pid, dataset, KEY, from_ms, to_ms, max_records,
                    caller=buyer, value=value)
    assert result.ok, result.error
    return decode_value(result.return_value)


# -- deploy, register ----------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    ([b"short", 10], "bad fee account"), ([FEES, -1], "bad fee"), ([FEES, 501], "bad fee"),
    ([FEES, "10"], "bad fee")])
def test_deploy_refusals(args, message):
    h = Harness()
    result = h.deploy(DM, system_contract("data_market"), args)
    assert failure(result) == message
    assert h.state.code(DM) is None and h.state.storage == {}


def test_register_and_views(h):
    result = h.call(DM, "register", "ws-1", terms(), caller=OWNER)
    assert result.ok, result.error
    assert events_of(result) == [("register", {"id": b"ws-1", "owner": OWNER, "device": DEVICE,
                                               "gateway": GATEWAY, "price": PRICE,
                                               "unit": b"record"})]
    d = h.value(DM, "dataset", "ws-1")
    assert d == {"owner": OWNER, "device": DEVICE, "gateway": GATEWAY, "price": PRICE,
                 "unit": b"record", "period_ms": 0, "delivery_ms": HOUR,
                 "description": b"weather station, garden", "schema": b"weather/data v1",
                 "licence": b"CC-BY-4.0", "all": False, "epoch": 0, "sales": 0, "height": 10}
    assert h.value(DM, "dataset", "nope") is None
    assert h.value(DM, "settings") == {"fee_to": FEES, "fee_permille": FEE_PERMILLE}
    assert h.value(DM, "consented", "ws-1", BUYER) is False
    assert h.value(DM, "purchase_of", "p-1") is None


@pytest.mark.parametrize("dataset, changes, message", [
    ("", {}, "bad dataset id"), ("x" * 33, {}, "bad dataset id"),
    ("ws", {"device": b"1234567"}, "bad device id"),
    ("ws", {"gateway": b"g"}, "bad gateway address"),
    ("ws", {"price": 0}, "price must be a positive integer"),
    ("ws", {"price": "5"}, "price must be a positive integer"),
    ("ws", {"unit": "byte"}, "unit must be record or period"),
    ("ws", {"unit": "period"}, "bad period"),
    ("ws", {"period_ms": 60_000}, "a per-record price has no period"),
    ("ws", {"delivery_ms": 0}, "bad delivery window"),
    ("ws", {"delivery_ms": 8 * 86_400_000}, "bad delivery window"),
    ("ws", {"token": b"t"}, "bad token address"),
    ("ws", {"licence": "x" * 257}, "bad licence"),
    ("ws", {"colour": "blue"}, "unknown term"),
])
def test_register_refusals(h, dataset, changes, message):
    refused(h, "register", dataset, terms(**changes), message=message, caller=OWNER)


def test_register_refuses_a_taken_id_and_non_map_terms(h):
    listed(h)
    refused(h, "register", "ws-1", terms(), message="dataset exists", caller=OTHER)
    refused(h, "register", "ws-2", [1, 2], message="terms must be a map", caller=OWNER)


# -- consent -------------------------------------------------------------------------------

def test_consent_for_every_buyer_or_one_and_revoke(h):
    listed(h, everyone=False)
    result = h.call(DM, "consent", "ws-1", BUYER, caller=OWNER)
    assert result.ok and events_of(result) == [("consent", {"id": b"ws-1", "buyer": BUYER})]
    assert h.value(DM, "consented", "ws-1", BUYER) is True
    assert h.value(DM, "consented", "ws-1", OTHER) is False
    result = h.call(DM, "revoke", "ws-1", BUYER, caller=OWNER)
    assert result.ok and events_of(result) == [("revoke", {"id": b"ws-1", "buyer": BUYER})]
    assert h.value(DM, "consented", "ws-1", BUYER) is False
    result = h.call(DM, "consent", "ws-1", caller=OWNER)
    assert result.ok and events_of(result) == [("consent", {"id": b"ws-1"})]
    assert h.value(DM, "consented", "ws-1", OTHER) is True
    result = h.call(DM, "revoke", "ws-1", caller=OWNER)
    assert result.ok and events_of(result) == [("revoke", {"id": b"ws-1"})]
    assert h.value(DM, "consented", "ws-1", OTHER) is False


def test_revoking_everything_ends_every_buyers_consent(h):
    listed(h, everyone=False)
    h.value(DM, "consent", "ws-1", BUYER, caller=OWNER)
    h.value(DM, "revoke", "ws-1", caller=OWNER)
    assert h.value(DM, "consented", "ws-1", BUYER) is False
    assert h.value(DM, "dataset", "ws-1")["epoch"] == 1
    h.value(DM, "consent", "ws-1", BUYER, caller=OWNER)       # given again, under epoch 1
    assert h.value(DM, "consented", "ws-1", BUYER) is True


def test_consent_refusals(h):
    listed(h, everyone=False)
    for method in ("consent", "revoke"):
        refused(h, method, "ws-1", message="not the dataset's owner", caller=GATEWAY)
        refused(h, method, "nope", message="no such dataset", caller=OWNER)
        refused(h, method, "ws-1", b"short", message="bad buyer address", caller=OWNER)
    refused(h, "revoke", "ws-1", BUYER, message="no consent of this buyer to revoke",
            caller=OWNER)
    h.value(DM, "consent", "ws-1", BUYER, caller=OWNER)
    refused(h, "consent", "ws-1", BUYER, message="consent already given to this buyer",
            caller=OWNER)
    h.value(DM, "consent", "ws-1", caller=OWNER)
    refused(h, "consent", "ws-1", message="consent already given to every buyer", caller=OWNER)
    refused(h, "consent", "ws-1", OTHER, message="consent already given to this buyer",
            caller=OWNER)
    refused(h, "consented", "ws-1", b"x", message="bad buyer address")
    refused(h, "consented", "nope", BUYER, message="no such dataset")


# -- purchase, deliver, refund (SSP) -------------------------------------------------------

def test_purchase_and_delivery_pay_owner_fee_and_return_the_rest(h):
    listed(h)
    result = h.call(DM, "purchase", b"p-1", "ws-1", KEY, 1000, 2000, 100, caller=BUYER,
                    value=700)
    assert result.ok, result.error
    assert decode_value(result.return_value) == b"p-1"
    deadline = h.time_ms + HOUR
    p = h.value(DM, "purchase_of", "p-1")
    assert p == {"dataset": b"ws-1", "buyer": BUYER, "box_key": KEY, "from_ms": 1000,
                 "to_ms": 2000, "max_records": 100, "amount": 700, "deadline": deadline,
                 "state": b"paid", "height": 10}
    assert events_of(result) == [("purchase", dict(p, id=b"p-1"))]
    assert h.state.balance(DM) == 700 and h.state.balance(BUYER) == 99_300
    assert h.value(DM, "dataset", "ws-1")["sales"] == 1
    result = h.call(DM, "deliver", b"p-1", HASH, 60, 9000, caller=GATEWAY)
    assert result.ok, result.error
    due = 60 * PRICE                        # 420: what the delivered records cost
    fee = due * FEE_PERMILLE // 1000        # 10 (rounded down)
    paid = {"owner_paid": due - fee, "fee": fee, "refunded": 700 - due}
    assert decode_value(result.return_value) == paid
    assert events_of(result) == [("deliver", dict(paid, id=b"p-1", hash=HASH, records=60,
                                                  size=9000))]
    assert (h.state.balance(OWNER), h.state.balance(FEES), h.state.balance(BUYER)) == (
        410, 10, 99_300 + 280)
    assert h.state.balance(DM) == 0
    p = h.value(DM, "purchase_of", "p-1")
    assert (p["state"], p["hash"], p["records"], p["size"]) == (b"delivered", HASH, 60, 9000)


def test_the_source_fits_a_deploy_transaction():
    assert len(system_contract("data_market").encode()) <= Params().max_code_bytes


def test_period_pricing(h):
    listed(h, unit="period", period_ms=60_000, price=500)
    result = h.call(DM, "purchase", b"p-1", "ws-1", KEY, 0, 180_000, 1000, caller=BUYER,
                    value=1500)
    assert result.ok, result.error
    refused(h, "purchase", b"p-2", "ws-1", KEY, 0, 90_000, 10, caller=BUYER, value=500,
            message="the range must be whole periods")
    result = h.call(DM, "deliver", b"p-1", HASH, 3, 300, caller=GATEWAY)
    assert decode_value(result.return_value) == {"owner_paid": 1500 - 37, "fee": 37,
                                                 "refunded": 0}


@pytest.mark.parametrize("args, value, message", [
    ((b"p", "nope", KEY, 0, HOUR, 10), 70, "no such dataset"),
    ((b"p", "", KEY, 0, HOUR, 10), 70, "bad dataset id"),
    ((b"p", "ws-1", b"k", 0, HOUR, 10), 70, "bad box key"),
    ((b"p", "ws-1", KEY, HOUR, HOUR, 10), 70, "bad range"),
    ((b"p", "ws-1", KEY, -1, HOUR, 10), 70, "bad range"),
    ((b"p", "ws-1", KEY, 0, HOUR, 0), 0, "bad record count"),
    ((b"p", "ws-1", KEY, 0, HOUR, 1_000_001), 0, "bad record count"),
    ((b"x" * 33, "ws-1", KEY, 0, HOUR, 10), 70, "bad purchase id"),
    ((None, "ws-1", KEY, 0, HOUR, 10), 70, "bad purchase id"),
    ((b"p", "ws-1", KEY, 0, HOUR, 10), 69, "send exactly 70"),
    ((b"p", "ws-1", KEY, 0, HOUR, 10), 71, "send exactly 70"),
])
def test_purchase_refusals(h, args, value, message):
    listed(h)
    refused(h, "purchase", *args, caller=BUYER, value=value, message=message)


def test_purchase_of_a_revoked_or_unconsented_dataset_is_refused(h):
    listed(h, everyone=False)
    refused(h, "purchase", b"p", "ws-1", KEY, 0, HOUR, 10, caller=BUYER, value=70,
            message="no consent of the owner for this buyer")
    h.value(DM, "consent", "ws-1", caller=OWNER)
    bought(h, max_records=10)                       # sold under consent...
    h.value(DM, "revoke", "ws-1", caller=OWNER)
    refused(h, "purchase", b"p-2", "ws-1", KEY, 0, HOUR, 10, caller=BUYER, value=70,
            message="no consent of the owner for this buyer")
    result = h.call(DM, "deliver", b"p-1", HASH, 10, 100, caller=GATEWAY)
    assert result.ok, result.error                  # ...and honoured after the revocation
    assert h.state.balance(OWNER) == 70 - 70 * FEE_PERMILLE // 1000


def test_purchase_price_overflow_refused(h):
    listed(h, price=2 ** 62)
    refused(h, "purchase", b"p", "ws-1", KEY, 0, HOUR, 4, caller=BUYER, value=0,
            message="price overflow")


def test_purchase_ids_are_unique(h):
    listed(h)
    bought(h, max_records=1)
    refused(h, "purchase", b"p-1", "ws-1", KEY, 0, HOUR, 1, caller=OTHER, value=7,
            message="purchase exists")


def test_delivery_refusals_leave_the_escrow_claimable(h):
    listed(h)
    bought(h, max_records=10)
    cases = [
        ((b"p-1", HASH, 10, 100), OTHER, "not the dataset's gateway"),
        ((b"p-1", HASH, 10, 100), OWNER, "not the dataset's gateway"),
        ((b"p-1", b"short", 10, 100), GATEWAY, "bad delivery hash"),
        ((b"p-1", HASH, 11, 100), GATEWAY, "bad record count"),
        ((b"p-1", HASH, -1, 100), GATEWAY, "bad record count"),
        ((b"p-1", HASH, 10, 0), GATEWAY, "bad size"),
        ((b"nope", HASH, 10, 100), GATEWAY, "no such purchase"),
    ]
    for args, caller, message in cases:
        refused(h, "deliver", *args, caller=caller, message=message)
    assert h.state.balance(DM) == 70
    assert h.value(DM, "deliver", b"p-1", HASH, 10, 100, caller=GATEWAY)["owner_paid"] == 69
    refused(h, "deliver", b"p-1", HASH, 10, 100, caller=GATEWAY, message="already delivered")
    refused(h, "refund", b"p-1", caller=BUYER, message="already delivered")


def test_a_claim_that_runs_out_of_gas_is_retried_and_pays_once(h):
    listed(h)
    bought(h, max_records=10)
    before = settled(h)
    result = h.call(DM, "deliver", b"p-1", HASH, 10, 100, caller=GATEWAY, gas=2_000)
    assert not result.ok and result.error_code == "out_of_gas"
    assert settled(h) == before          # the escrow is intact
    assert h.value(DM, "purchase_of", "p-1")["state"] == b"paid"
    assert h.value(DM, "deliver", b"p-1", HASH, 10, 100, caller=GATEWAY)["owner_paid"] == 69
    assert (h.state.balance(OWNER), h.state.balance(FEES), h.state.balance(DM)) == (69, 1, 0)


def test_refund_after_the_deadline_by_the_buyer_alone(h):
    listed(h)
    bought(h, max_records=10)
    refused(h, "refund", b"p-1", caller=BUYER, message="the delivery deadline is not reached")
    h.time_ms += HOUR - 1
    refused(h, "refund", b"p-1", caller=BUYER, message="the delivery deadline is not reached")
    h.time_ms += 1
    refused(h, "refund", b"p-1", caller=OTHER, message="not the buyer")
    refused(h, "refund", b"p-1", caller=OWNER, message="not the buyer")
    refused(h, "deliver", b"p-1", HASH, 10, 100, caller=GATEWAY,
            message="delivery deadline passed")
    result = h.call(DM, "refund", b"p-1", caller=BUYER)
    assert result.ok and decode_value(result.return_value) == 70
    assert events_of(result) == [("refund", {"id": b"p-1", "amount": 70})]
    assert h.state.balance(BUYER) == 100_000 and h.state.balance(DM) == 0
    refused(h, "refund", b"p-1", caller=BUYER, message="already refunded")
    refused(h, "deliver", b"p-1", HASH, 10, 100, caller=GATEWAY,
            message="the purchase was refunded")
    refused(h, "refund", b"nope", caller=BUYER, message="no such purchase")


def test_views_refuse_bad_ids(h):
    refused(h, "dataset", 5, message="bad dataset id")
    refused(h, "purchase_of", "", message="bad purchase id")


# -- iot_coin datasets ---------------------------------------------------------------------

@pytest.fixture
def coin(h):
    result = h.deploy(COIN, system_contract("iot_coin"), ["Watt", "WAT", 0, 10_000, BUYER])
    assert result.ok, result.error
    listed(h, token=COIN)
    return h


def coins(h, who):
    return h.value(COIN, "balance_of", who)


def test_token_purchase_delivery_and_refund(coin):
    h = coin
    assert h.value(COIN, "approve", DM, 140, caller=BUYER) is True
    bought(h, max_records=10, value=0)
    bought(h, max_records=10, value=0, pid=b"p-2")
    assert coins(h, DM) == 140 and coins(h, BUYER) == 9_860
    paid = h.value(DM, "deliver", b"p-1", HASH, 4, 100, caller=GATEWAY)
    assert paid == {"owner_paid": 28, "fee": 0, "refunded": 42}
    assert (coins(h, OWNER), coins(h, FEES), coins(h, BUYER)) == (28, 0, 9_902)
    h.time_ms += HOUR
    assert h.value(DM, "refund", b"p-2", caller=BUYER) == 70
    assert coins(h, BUYER) == 9_972 and coins(h, DM) == 0
    assert coins(h, OWNER) + coins(h, FEES) + coins(h, BUYER) == 10_000


def test_token_purchase_without_funds_or_allowance_loses_nothing(coin):
    h = coin
    refused(h, "purchase", b"p", "ws-1", KEY, 0, HOUR, 10, caller=BUYER,
            message="insufficient allowance")
    h.value(COIN, "approve", DM, 10**6, caller=BUYER)
    refused(h, "purchase", b"p", "ws-1", KEY, 0, HOUR, 10_000, caller=BUYER,
            message="insufficient balance")
    refused(h, "purchase", b"p", "ws-1", KEY, 0, HOUR, 10, caller=BUYER, value=70,
            message="this dataset is paid in tokens, not SSP")
    assert coins(h, BUYER) == 10_000 and h.state.balance(BUYER) == 100_000
