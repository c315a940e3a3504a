"""Contracts through the ledger: deploy and call transactions, receipts, fees, reverts."""

import os

import pytest

from chain.calls import contract_address
from chain.errors import Reason
from chain.tx import Call, Deploy
from contracts.values import decode_value, encode_value
from tests.chainkit import COIN, TOTAL, TestChain
from tests.test_rules import verdict

LUA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "contracts", "lua")
COUNTER = b"""
function init(start) chain.storage.set("n", chain.encode(start)) end
function bump(by)
  local n = chain.decode(chain.storage.get("n")) + by
  chain.storage.set("n", chain.encode(n))
  chain.emit("bumped", {n = n})
  return n
end
function fail_after_write() chain.storage.set("n", chain.encode(-1)); error("nope", 0) end
function spin() while true do end end
"""


@pytest.fixture
def chain(tmp_path):
    return TestChain(tmp_path)


def deploy(chain, key, code, args, gas=1_000_000):
    nonce = chain.account(key).nonce
    tx = chain.tx(key, Deploy(code, encode_value(args), gas))
    block = chain.block([tx])
    receipt = chain.ledger.receipts(block.hash)[0]
    return contract_address(key.address, nonce), receipt


def call(chain, key, contract, method, args, value=0, gas=1_000_000):
    tx = chain.tx(key, Call(contract, method, encode_value(args), value, gas))
    block = chain.block([tx])
    return tx, chain.ledger.receipts(block.hash)[0]


def storage(chain, contract, key):
    from chain.calls import ContractState
    with chain.store.read() as txn:
        return ContractState(chain.ledger.view(txn)).storage_get(contract, key)


def test_deploy_call_events_and_return(chain):
    a = chain.keys[0]
    counter, receipt = deploy(chain, a, COUNTER, [5])
    assert receipt.status == 0 and receipt.gas_used > 0
    _, receipt = call(chain, a, counter, "bump", [3])
    assert receipt.status == 0
    assert decode_value(receipt.return_value) == 8
    assert [(e[0], e[1], decode_value(e[2])) for e in receipt.events] == [
        (counter, "bumped", {"n": 8})]
    assert chain.supply() == TOTAL


def test_failed_call_reverts_but_pays_its_fee(chain):
    a = chain.keys[0]
    counter, _ = deploy(chain, a, COUNTER, [5])
    before = chain.account(a).balance
    tx, receipt = call(chain, a, counter, "fail_after_write", [], value=3 * COIN)
    assert receipt.status == 1 and "nope" in receipt.error
    assert decode_value(storage(chain, counter, b"n")) == 5
    assert chain.account(a).balance == before - tx.fee  # the value came back, the fee did not
    assert chain.account(counter).balance == 0
    tx, receipt = call(chain, a, counter, "spin", [], gas=50_000)
    assert receipt.status == 1 and receipt.error.startswith("out_of_gas")
    assert receipt.gas_used >= 50_000 - 1000
    assert chain.supply() == TOTAL


def test_value_reaches_the_contract(chain):
    a = chain.keys[0]
    counter, _ = deploy(chain, a, COUNTER, [1])
    call(chain, a, counter, "bump", [1], value=2 * COIN)
    assert chain.account(counter).balance == 2 * COIN


def test_iot_coin_through_the_chain(chain):
    a, b = chain.keys[:2]
    with open(os.path.join(LUA, "iot_coin.lua"), "rb") as f:
        code = f.read()
    token, receipt = deploy(chain, a, code, ["Parking Credit", "PARK", 2, 10_000, None, False])
    assert receipt.status == 0, receipt.error
    _, receipt = call(chain, a, token, "transfer", [b.address, 2_500])
    assert receipt.status == 0, receipt.error
    _, receipt = call(chain, b, token, "transfer", [a.address, 9_999])
    assert receipt.status == 1 and "insufficient balance" in receipt.error


@pytest.mark.parametrize("payload, reason", [
    (Deploy(b"function x() end", b"\x07", 100), Reason.MALFORMED),         # args not a value
    (Deploy(b"\xff\xfe", encode_value([]), 100), Reason.MALFORMED),         # not UTF-8
    (Deploy(b"x", encode_value([]), 10**9), Reason.INVALID_GAS),            # over max gas
    (Call(b"\x01" * 20, "m", encode_value(5), 0, 100), Reason.MALFORMED),   # not a list
])
def test_contract_txs_statically_refused(chain, payload, reason):
    assert verdict(chain, chain.tx(chain.keys[0], payload)) == reason


def test_fee_must_cover_the_gas_limit(chain):
    a = chain.keys[0]
    tx = chain.tx(a, Deploy(COUNTER, encode_value([1]), 500_000), fee=chain.params.min_fee_for(400))
    assert verdict(chain, tx) == Reason.FEE_TOO_LOW


def test_call_to_no_contract_fails_and_pays(chain):
    a = chain.keys[0]
    tx, receipt = call(chain, a, b"\x09" * 20, "x", [])
    assert receipt.status == 1 and receipt.error.startswith("no_contract")


def test_payment_channel_life_cycle_on_chain(chain):
    """A parking session settled on chain: deposit, 1,000 vouchers off chain, 3 redeems, close."""
    from nacl.signing import SigningKey

    from contracts.system import system_contract
    from contracts.vouchers import Voucher, sign_voucher
    buyer, seller = chain.keys[:2]
    buyer_signing = SigningKey(bytes([1]) * 32)  # chainkit's seed for keys[0]
    assert bytes(buyer_signing.verify_key) == buyer.pubkey
    channels, receipt = deploy(chain, seller, system_contract("payment_channel").encode(), [])
    assert receipt.status == 0, receipt.error
    deposit = 50 * COIN
    expiry = chain.ledger.head.height + 100
    _, receipt = call(chain, buyer, channels, "open",
                      [b"parking-42", seller.address, buyer.pubkey, expiry], value=deposit)
    assert receipt.status == 0, receipt.error
    buyer_before, seller_before = chain.account(buyer).balance, chain.account(seller).balance
    vouchers = [(n * 3_000_000, n, sign_voucher(buyer_signing, Voucher(
        "ss-test", channels, seller.address, b"parking-42", n * 3_000_000, n)))
        for n in range(1, 1001)]
    fees = 0
    for amount, nonce, signature in (vouchers[299], vouchers[599], vouchers[899]):
        tx, receipt = call(chain, seller, channels, "redeem",
                           [b"parking-42", amount, nonce, signature])
        assert receipt.status == 0, receipt.error
        fees += tx.fee
    amount, nonce, signature = vouchers[599]  # an old voucher is refused
    _, receipt = call(chain, seller, channels, "redeem", [b"parking-42", amount, nonce, signature])
    assert receipt.status == 1
    fees += receipt.fee
    final, nonce, signature = vouchers[-1]
    tx, receipt = call(chain, seller, channels, "close", [b"parking-42", final, nonce, signature])
    assert receipt.status == 0, receipt.error
    fees += tx.fee
    assert final == 3_000_000_000
    assert chain.account(seller).balance == seller_before + final - fees
    assert chain.account(buyer).balance == buyer_before + deposit - final
    assert chain.account(channels).balance == 0
    assert chain.supply() == TOTAL
