"""SSP economics on a real ledger: the genesis distribution plan, vesting (cliff, then at once or
linear), locked tokens that cannot move, and the supply report (docs/protocol.md §8)."""

import pytest

from chain.errors import Reason
from chain.keys import KeyPair
from chain.genesis import GenesisError, from_json
from chain.supply import supply_report
from chain.tx import Call, Transfer
from chain.vesting import vesting_address
from contracts.values import decode_value, encode_value
from tests.chainkit import COIN, TOTAL, TestChain

GRANT = 1_000_000 * COIN
CLIFF = 6


def release(chain, key):
    """Send ``release()`` to the team pool's vesting contract in a block; its receipt."""
    tx = chain.tx(key, Call(vesting_address("team"), "release", encode_value([]), 0, 200_000))
    block = chain.block([tx])
    return tx, chain.ledger.receipts(block.hash)[0]


def report(chain):
    with chain.store.read() as txn:
        return supply_report(chain.ledger.view(txn), chain.genesis, chain.ledger.head.height)


HOLDER = KeyPair.from_seed(bytes([3]) * 32)     # TestChain's keys[2]


def make(tmp_path, linear=0):
    chain = TestChain(tmp_path, n_keys=3, grants=((HOLDER.address, GRANT),), cliff=CLIFF,
                      linear=linear)
    assert chain.keys[2].address == HOLDER.address
    return chain


def test_team_grant_is_locked_until_the_cliff_then_released_at_once(tmp_path):
    chain = make(tmp_path)
    holder, other = chain.keys[2], chain.keys[0]
    contract = vesting_address("team")
    assert chain.account(contract).balance == GRANT
    assert report(chain)["locked"] == GRANT
    # Locked tokens are not the holder's: a transfer of them is refused, release fails.
    spendable = chain.account(holder).balance
    too_much = chain.tx(holder, Transfer(other.address, spendable + GRANT // 2))
    _, rejected = chain.build([too_much])
    assert [exc.reason for _, exc in rejected] == [Reason.INSUFFICIENT_BALANCE]
    tx, receipt = release(chain, holder)
    assert receipt.status == 1 and f"locked until height {CLIFF}" in receipt.error
    tx2, receipt2 = release(chain, other)
    assert receipt2.status == 1 and "no grant" in receipt2.error
    assert chain.account(contract).balance == GRANT and chain.supply() == TOTAL
    while chain.ledger.head.height < CLIFF - 1:
        chain.block([])
    before = chain.account(holder).balance
    tx, receipt = release(chain, holder)          # the block at the cliff's height
    assert receipt.status == 0 and decode_value(receipt.return_value) == GRANT
    assert chain.account(holder).balance == before - tx.fee + GRANT
    assert chain.account(contract).balance == 0
    _, receipt = release(chain, holder)
    assert receipt.status == 1 and "nothing more" in receipt.error
    chain.block([chain.tx(holder, Transfer(other.address, GRANT))])   # now it moves
    doc = report(chain)
    assert doc["locked"] == 0 and doc["circulating"] == TOTAL - doc["reward_pool"]
    assert chain.supply() == TOTAL


def test_linear_vesting_releases_exact_amounts(tmp_path):
    linear = 7
    chain = make(tmp_path, linear=linear)
    contract, released = vesting_address("team"), 0
    while chain.ledger.head.height < CLIFF + 1:
        chain.block([])
    for _ in range(2):                          # at heights cliff+3 and cliff+5
        chain.block([])
        tx, receipt = release(chain, HOLDER)
        height = chain.ledger.head.height
        due = GRANT * (height - CLIFF) // linear - released
        assert receipt.status == 0, receipt.error
        assert decode_value(receipt.return_value) == due
        released += due
        assert report(chain)["locked"] == GRANT - GRANT * (height - CLIFF) // linear
    while chain.ledger.head.height < CLIFF + linear:
        chain.block([])
    _, receipt = release(chain, HOLDER)
    assert decode_value(receipt.return_value) == GRANT - released
    assert chain.account(contract).balance == 0 and chain.supply() == TOTAL


def test_supply_report_adds_up(tmp_path):
    chain = make(tmp_path)
    doc = report(chain)
    assert doc["total"] == TOTAL and doc["locked"] == GRANT and doc["releasable"] == 0
    assert doc["circulating"] + doc["locked"] + doc["releasable"] + doc["reward_pool"] == TOTAL
    names = {p["name"]: p for p in doc["pools"]}
    assert names["team"]["held"] == GRANT and names["team"]["contract"] == vesting_address("team")
    assert names["ecological"]["held"] == doc["reward_pool"]
    assert sum(p["amount"] for p in doc["pools"]) == TOTAL
    while chain.ledger.head.height < CLIFF:
        chain.block([])
    doc = report(chain)          # vested, not yet released: no longer locked, not circulating
    assert doc["locked"] == 0 and doc["releasable"] == GRANT
    assert doc["circulating"] + doc["releasable"] + doc["reward_pool"] == TOTAL
