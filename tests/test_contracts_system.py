"""System contracts (contracts/lua): iot_coin and payment_channel, through the real VM."""

import itertools

import pytest
from nacl.signing import SigningKey

from contracts.system import system_contract
from contracts.testkit import Harness, addr, events_of
from contracts.values import decode_value
from contracts.vouchers import Voucher, sign_voucher, verify_voucher, voucher_message

_SEEDS = itertools.count(1)


def new_key():
    """A signing key, different on every call and the same on every run (the receipts of
    contract tests are compared across runs: tests/test_contracts_history.py)."""
    return SigningKey(next(_SEEDS).to_bytes(32, "big"))

COIN, COIN2, PC, PC2 = addr("coin"), addr("coin2"), addr("channels"), addr("channels2")
ISSUER, BOB, CAROL, SELLER = addr("issuer"), addr("bob"), addr("carol"), addr("seller")
BUYER = addr("buyer")
VOUCHER_DIGEST = "b7c223d5b1a6ad462f040573a67b6b04e11ab5ed6011232d68a671cfbc466c17"
VOUCHER_MESSAGE = "c80e21291912efa27e3f7b2b0401e650453a8cca267458dc1da6a8a570129e01"


@pytest.fixture
def coin():
    h = Harness()
    result = h.deploy(COIN, system_contract("iot_coin"), ["Watt", "WAT", 3, 1_000_000, None, True],
                      caller=ISSUER)
    assert result.ok, result.error
    assert events_of(result) == [("issue", {"name": b"Watt", "symbol": b"WAT",
                                            "issuer": ISSUER, "supply": 1_000_000})]
    return h


def failure(result):
    assert not result.ok
    return result.error_code, result.error


# -- iot_coin --------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["", "W", 0, 1], "bad token name"), (["x" * 33, "W", 0, 1], "bad token name"),
    (["Watt", "", 0, 1], "bad symbol"), (["Watt", "W", 19, 1], "bad decimals"),
    (["Watt", "W", -1, 1], "bad decimals"),
    (["Watt", "W", 2, -5], "amount must be a positive integer"),
    (["Watt", "W", 2, 5, b"short"], "bad address"),
    (["Watt", "W", 2, 5, None, 1], "mintable must be a boolean"),
])
def test_issue_refusals(args, message):
    h = Harness()
    result = h.deploy(COIN, system_contract("iot_coin"), args, caller=ISSUER)
    assert failure(result) == ("runtime_error", message)
    assert h.state.code(COIN) is None and h.state.storage == {}


def test_issue_and_views(coin):
    assert coin.value(COIN, "info") == {"name": b"Watt", "symbol": b"WAT", "decimals": 3,
                                        "issuer": ISSUER, "mintable": True, "supply": 1_000_000}
    assert coin.value(COIN, "name") == b"Watt" and coin.value(COIN, "symbol") == b"WAT"
    assert coin.value(COIN, "decimals") == 3 and coin.value(COIN, "issuer") == ISSUER
    assert coin.value(COIN, "total_supply") == 1_000_000
    assert coin.value(COIN, "balance_of", ISSUER) == 1_000_000
    assert coin.value(COIN, "balance_of", BOB) == 0
    assert failure(coin.call(COIN, "balance_of", b"x")) == ("runtime_error", "bad address")


def test_transfer(coin):
    result = coin.call(COIN, "transfer", BOB, 250, caller=ISSUER)
    assert result.ok
    assert events_of(result) == [("transfer", {"from": ISSUER, "to": BOB, "amount": 250})]
    assert coin.value(COIN, "balance_of", BOB) == 250
    assert coin.value(COIN, "balance_of", ISSUER) == 999_750
    assert failure(coin.call(COIN, "transfer", CAROL, 251, caller=BOB)) == (
        "runtime_error", "insufficient balance")
    for amount in (0, -3, b"1", None):
        assert failure(coin.call(COIN, "transfer", CAROL, amount, caller=BOB)) == (
            "runtime_error", "amount must be a positive integer")
    assert failure(coin.call(COIN, "transfer", b"bad", 1, caller=BOB)) == (
        "runtime_error", "bad address")
    assert coin.call(COIN, "transfer", BOB, 50, caller=BOB).ok          # to oneself
    assert coin.value(COIN, "balance_of", BOB) == 250


def test_approve_allowance_transfer_from(coin):
    result = coin.call(COIN, "approve", BOB, 100, caller=ISSUER)
    assert events_of(result) == [("approval", {"owner": ISSUER, "spender": BOB, "amount": 100})]
    assert coin.value(COIN, "allowance", ISSUER, BOB) == 100
    result = coin.call(COIN, "transfer_from", ISSUER, CAROL, 60, caller=BOB)
    assert events_of(result) == [("transfer", {"from": ISSUER, "to": CAROL, "amount": 60})]
    assert coin.value(COIN, "allowance", ISSUER, BOB) == 40
    assert coin.value(COIN, "balance_of", CAROL) == 60
    assert failure(coin.call(COIN, "transfer_from", ISSUER, CAROL, 41, caller=BOB)) == (
        "runtime_error", "insufficient allowance")
    assert failure(coin.call(COIN, "transfer_from", ISSUER, CAROL, 1, caller=CAROL)) == (
        "runtime_error", "insufficient allowance")
    coin.value(COIN, "approve", ISSUER, 500, caller=CAROL)
    assert failure(coin.call(COIN, "transfer_from", CAROL, BOB, 61, caller=ISSUER)) == (
        "runtime_error", "insufficient balance")
    assert coin.value(COIN, "allowance", CAROL, ISSUER) == 500        # unchanged by the failure
    coin.value(COIN, "approve", BOB, 0, caller=ISSUER)
    assert coin.value(COIN, "allowance", ISSUER, BOB) == 0
    assert (COIN, b"a" + ISSUER + BOB) not in coin.state.storage      # zero entries deleted
    assert failure(coin.call(COIN, "approve", BOB, -1, caller=ISSUER))[1] == (
        "amount must be a positive integer")


def test_mint_and_burn(coin):
    result = coin.call(COIN, "mint", BOB, 500, caller=ISSUER)
    assert events_of(result) == [("mint", {"to": BOB, "amount": 500})]
    assert coin.value(COIN, "total_supply") == 1_000_500
    assert failure(coin.call(COIN, "mint", BOB, 1, caller=BOB)) == ("runtime_error",
                                                                    "not the issuer")
    assert failure(coin.call(COIN, "mint", BOB, 2**63 - 1, caller=ISSUER)) == (
        "runtime_error", "supply overflow")
    result = coin.call(COIN, "burn", 1000, caller=ISSUER)
    assert events_of(result) == [("burn", {"from": ISSUER, "amount": 1000})]
    assert coin.value(COIN, "total_supply") == 999_500
    assert coin.value(COIN, "balance_of", ISSUER) == 999_000
    assert failure(coin.call(COIN, "burn", 1, caller=BOB)) == ("runtime_error", "not the issuer")
    assert failure(coin.call(COIN, "burn", 10**9, caller=ISSUER)) == ("runtime_error",
                                                                      "insufficient balance")


def test_fixed_supply_and_coexisting_tokens(coin):
    result = coin.deploy(COIN2, system_contract("iot_coin"), ["Air", "AIR", 0, 10, BOB],
                         caller=ISSUER)
    assert result.ok
    assert coin.value(COIN2, "issuer") == BOB and coin.value(COIN2, "balance_of", BOB) == 10
    assert failure(coin.call(COIN2, "mint", BOB, 1, caller=BOB)) == ("runtime_error",
                                                                     "token is not mintable")
    assert failure(coin.call(COIN2, "burn", 1, caller=BOB)) == ("runtime_error",
                                                                "token is not mintable")
    coin.value(COIN2, "transfer", CAROL, 4, caller=BOB)
    coin.value(COIN, "transfer", CAROL, 7, caller=ISSUER)
    assert coin.value(COIN2, "balance_of", CAROL) == 4
    assert coin.value(COIN, "balance_of", CAROL) == 7
    assert coin.value(COIN2, "total_supply") == 10


# -- payment_channel -------------------------------------------------------------------------

@pytest.fixture
def channels():
    h = Harness()
    assert h.deploy(PC, system_contract("payment_channel")).ok
    h.state.credit(BUYER, 10_000)
    return h


def _open(h, key, deposit=1000, expiry=100, channel_id=None, dispute_ms=None):
    args = [channel_id, SELLER, bytes(key.verify_key), expiry]
    if dispute_ms is not None:
        args += [None, None, dispute_ms]
    result = h.call(PC, "open", *args, caller=BUYER, value=deposit)
    assert result.ok, result.error
    return h.value(PC, "channel", _id(result)), _id(result)


def _id(result):
    return decode_value(result.return_value)


def _sign(h, key, cid, amount, nonce, contract=PC, payee=SELLER, chain_id=None):
    return sign_voucher(key, Voucher(chain_id or h.chain_id, contract, payee, cid, amount, nonce))


def test_channel_lifecycle_with_1000_vouchers(channels):
    h, key = channels, new_key()
    record, cid = _open(h, key, deposit=5000)
    assert len(cid) == 32 and record["deposit"] == 5000 and record["buyer"] == BUYER
    assert record["dispute"] == 3_600_000 and "closing" not in record
    price = 3
    vouchers = [(n * price, n, _sign(h, key, cid, n * price, n)) for n in range(1, 1001)]
    assert all(verify_voucher(bytes(key.verify_key),
                              Voucher(h.chain_id, PC, SELLER, cid, a, n), s)
               for a, n, s in vouchers[:5])
    paid = 0
    for index in (249, 599, 899):
        amount, nonce, sig = vouchers[index]
        assert h.value(PC, "redeem", cid, amount, nonce, sig, caller=SELLER) == amount - paid
        paid = amount
        assert h.state.balance(SELLER) == paid
    amount, nonce, sig = vouchers[-1]
    result = h.call(PC, "close", cid, amount, nonce, sig, caller=SELLER)
    assert result.ok, result.error
    assert _id(result) == {"paid": 3000 - 2700, "refunded": 2000}
    assert events_of(result) == [("close", {"id": cid, "paid": 300, "refunded": 2000})]
    assert h.state.balance(SELLER) == 3000
    assert h.state.balance(BUYER) == 10_000 - 5000 + 2000
    assert h.state.balance(PC) == 0
    assert h.value(PC, "channel", cid)["open"] is False
    assert failure(h.call(PC, "redeem", cid, amount, nonce + 1, sig, caller=SELLER)) == (
        "runtime_error", "channel is closed")


def test_bad_vouchers_refused(channels):
    h, key = channels, new_key()
    _, cid = _open(h, key)
    good = _sign(h, key, cid, 100, 5)
    assert h.value(PC, "redeem", cid, 100, 5, good, caller=SELLER) == 100
    other = new_key()
    cases = [
        ((cid, 100, 5, good), "voucher amount must increase"),              # replay
        ((cid, 90, 6, _sign(h, key, cid, 90, 6)), "voucher amount must increase"),
        ((cid, 150, 5, _sign(h, key, cid, 150, 5)), "voucher nonce must increase"),
        ((cid, 150, 6, _sign(h, other, cid, 150, 6)), "bad voucher signature"),
        ((cid, 150, 6, _sign(h, key, cid, 150, 6, chain_id="otherchain")),
         "bad voucher signature"),
        ((cid, 150, 6, _sign(h, key, b"x" * 32, 150, 6)), "bad voucher signature"),
        ((cid, 150, 6, _sign(h, key, cid, 150, 6, payee=CAROL)), "bad voucher signature"),
        ((cid, 150, 6, _sign(h, key, cid, 150, 6, contract=COIN)), "bad voucher signature"),
        ((cid, 150, 6, good), "bad voucher signature"),                      # wrong message
        ((cid, 150, 6, b"\x00" * 64), "bad voucher signature"),
        ((cid, 1001, 6, _sign(h, key, cid, 1001, 6)), "voucher exceeds deposit"),
        ((b"nope", 150, 6, good), "no such channel"),
    ]
    for args, message in cases:
        assert failure(h.call(PC, "redeem", *args, caller=SELLER)) == ("runtime_error",
                                                                        message), message
    assert failure(h.call(PC, "redeem", cid, 150, 6, _sign(h, key, cid, 150, 6),
                          caller=BUYER)) == ("runtime_error", "not the seller")
    assert h.state.balance(SELLER) == 100 and h.value(PC, "channel", cid)["paid"] == 100


def test_voucher_of_one_deployment_is_refused_by_another(channels):
    """Two deployments of the contract, the same channel id, buyer and seller: a voucher
    signed for one is worthless on the other (the binding to the contract address)."""
    h, key = channels, new_key()
    assert h.deploy(PC2, system_contract("payment_channel")).ok
    _open(h, key, channel_id=b"same")
    result = h.call(PC2, "open", b"same", SELLER, bytes(key.verify_key), 100, caller=BUYER,
                    value=1000)
    assert result.ok, result.error
    sig = _sign(h, key, b"same", 400, 1)
    assert h.value(PC, "redeem", b"same", 400, 1, sig, caller=SELLER) == 400
    assert failure(h.call(PC2, "redeem", b"same", 400, 1, sig, caller=SELLER)) == (
        "runtime_error", "bad voucher signature")
    assert failure(h.call(PC2, "close", b"same", 400, 1, sig, caller=SELLER)) == (
        "runtime_error", "bad voucher signature")
    assert h.state.balance(SELLER) == 400 and h.state.balance(PC2) == 1000


def test_open_refusals(channels):
    h, key = channels, new_key()
    pub = bytes(key.verify_key)
    cases = [
        ((None, SELLER, pub, 100), 0, "deposit must be positive"),
        ((None, SELLER, pub, 10), 5, "expiry must be in the future"),
        ((None, b"short", pub, 100), 5, "bad seller address"),
        ((None, SELLER, b"k" * 31, 100), 5, "bad buyer public key"),
        ((None, SELLER, pub, 100, BOB, 5), 5, "send either SSP or tokens, not both"),
        ((None, SELLER, pub, 100, None, None, 0), 5, "bad dispute window"),
        ((None, SELLER, pub, 100, None, None, 7 * 86_400_000 + 1), 5, "bad dispute window"),
        ((None, SELLER, pub, 100, None, None, b"1"), 5, "bad dispute window"),
    ]
    for args, value, message in cases:
        assert failure(h.call(PC, "open", *args, caller=BUYER, value=value)) == (
            "runtime_error", message), message
    _open(h, key, channel_id=b"chan-1")
    assert failure(h.call(PC, "open", b"chan-1", SELLER, pub, 100, caller=BUYER, value=5)) == (
        "runtime_error", "channel exists")
    assert h.state.balance(BUYER) == 10_000 - 1000


def test_refund_after_expiry(channels):
    h, key = channels, new_key()
    _, cid = _open(h, key, deposit=800, expiry=20)
    h.value(PC, "redeem", cid, 300, 1, _sign(h, key, cid, 300, 1), caller=SELLER)
    assert failure(h.call(PC, "refund", cid, caller=BUYER)) == ("runtime_error",
                                                                "channel has not expired")
    h.height = 20
    assert failure(h.call(PC, "refund", cid, caller=SELLER)) == ("runtime_error",
                                                                 "not the buyer")
    result = h.call(PC, "refund", cid, caller=BUYER)
    assert result.ok and _id(result) == 500
    assert events_of(result) == [("refund", {"id": cid, "refunded": 500})]
    assert (h.state.balance(BUYER), h.state.balance(SELLER), h.state.balance(PC)) == (
        10_000 - 800 + 500, 300, 0)
    assert failure(h.call(PC, "refund", cid, caller=BUYER)) == ("runtime_error",
                                                                "channel is closed")


def test_buyer_close_gives_the_seller_its_dispute_window(channels):
    """The buyer asks to close; within the window the seller submits its best voucher; after
    it, a buyer whose seller stayed silent takes back what was not redeemed."""
    h, key = channels, new_key()
    _, cid = _open(h, key, deposit=900, dispute_ms=60_000)
    _, quiet = _open(h, key, deposit=700, dispute_ms=60_000)
    assert failure(h.call(PC, "request_close", cid, caller=SELLER)) == ("runtime_error",
                                                                        "not the buyer")
    result = h.call(PC, "request_close", cid, caller=BUYER)
    assert result.ok and _id(result) == h.time_ms + 60_000
    assert events_of(result) == [("closing", {"id": cid, "at": h.time_ms + 60_000})]
    assert h.value(PC, "channel", cid)["closing"] == h.time_ms + 60_000
    assert failure(h.call(PC, "request_close", cid, caller=BUYER)) == (
        "runtime_error", "close already requested")
    assert failure(h.call(PC, "refund", cid, caller=BUYER)) == ("runtime_error",
                                                                "dispute window is not over")
    h.time_ms += 59_999
    assert h.value(PC, "close", cid, 250, 3, _sign(h, key, cid, 250, 3), caller=SELLER) == {
        "paid": 250, "refunded": 650}
    h.value(PC, "request_close", quiet, caller=BUYER)
    h.time_ms += 60_000
    assert h.value(PC, "refund", quiet, caller=BUYER) == 700
    assert (h.state.balance(BUYER), h.state.balance(SELLER), h.state.balance(PC)) == (
        10_000 - 250, 250, 0)


def test_close_without_voucher_and_seller_only(channels):
    h, key = channels, new_key()
    _, cid = _open(h, key, deposit=400)
    assert failure(h.call(PC, "close", cid, caller=BUYER)) == ("runtime_error", "not the seller")
    assert h.value(PC, "close", cid, caller=SELLER) == {"paid": 0, "refunded": 400}
    assert h.state.balance(BUYER) == 10_000


def test_token_deposit_channel(channels):
    h, key = channels, new_key()
    assert h.deploy(COIN, system_contract("iot_coin"), ["Watt", "WAT", 0, 5000, BUYER]).ok
    h.value(COIN, "approve", PC, 1200, caller=BUYER)
    pub = bytes(key.verify_key)
    result = h.call(PC, "open", b"tok", SELLER, pub, 50, COIN, 1200, caller=BUYER)
    assert result.ok, result.error
    names = [name for name, _ in events_of(result)]
    assert names == ["transfer", "open"]                          # the token's event, then ours
    assert h.value(COIN, "balance_of", PC) == 1200
    h.value(PC, "redeem", b"tok", 700, 1, _sign(h, key, b"tok", 700, 1), caller=SELLER)
    assert h.value(PC, "close", b"tok", caller=SELLER) == {"paid": 0, "refunded": 500}
    balances = [h.value(COIN, "balance_of", a) for a in (BUYER, SELLER, PC)]
    assert balances == [5000 - 1200 + 500, 700, 0]
    assert h.state.balance(PC) == 0                               # no SSP involved
    too_much = h.call(PC, "open", b"tok2", SELLER, pub, 50, COIN, 10**6, caller=BUYER)
    assert failure(too_much) == ("runtime_error", "insufficient allowance")


def test_voucher_helpers():
    key = new_key()
    v = Voucher("devnet", PC, SELLER, b"c", 1, 2)
    message = v.message()
    assert len(message) == 32 and message == voucher_message("devnet", PC, SELLER, b"c", 1, 2)
    for changed in (v._replace(chain_id="devnet2"), v._replace(contract=PC2),
                    v._replace(payee=CAROL), v._replace(channel_id=b"d"),
                    v._replace(amount=2), v._replace(nonce=3)):
        assert changed.message() != message
    # The channel id is length-prefixed: moving bytes between fields never collides.
    assert Voucher("devnet", PC, SELLER, b"c" * 2, 1, 2).message() != message
    sig = sign_voucher(key, v)
    assert verify_voucher(bytes(key.verify_key), v, sig)
    assert not verify_voucher(bytes(key.verify_key), v._replace(nonce=3), sig)
    assert not verify_voucher(b"\x00" * 31, v, sig)
    for bad in (dict(channel_id=b""), dict(channel_id=b"c" * 65), dict(amount=-1),
                dict(nonce=2**64), dict(contract=b"short"), dict(payee=None), dict(amount=True)):
        with pytest.raises(ValueError):
            v._replace(**bad).message()


def test_voucher_golden_vector():
    """The digest of a fixed voucher, pinned (docs/protocol.md §14.6)."""
    v = Voucher("ss-devnet", bytes(range(20)), bytes(range(20, 40)), b"chan-1", 1234, 7)
    assert v.digest().hex() == VOUCHER_DIGEST
    assert v.message().hex() == VOUCHER_MESSAGE
