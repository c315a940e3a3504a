"""The mempool: order, nonce chains, bounds, and durability through the node."""

import pytest

from chain.errors import Reason, TxRejected
from chain.mempool import Mempool
from chain.state.records import Account
from chain.tx import Transfer
from tests.chainkit import COIN, FUNDED, TestChain


@pytest.fixture
def chain(tmp_path):
    return TestChain(tmp_path, n_keys=6)


def add(pool, chain, tx):
    return pool.add(tx, chain.account(tx.sender_address))


def reason(pool, chain, tx):
    with pytest.raises(TxRejected) as info:
        add(pool, chain, tx)
    return info.value.reason


def test_order_is_fee_then_arrival_within_nonce_order(chain):
    a, b, c = chain.keys[:3]
    pool = Mempool()
    to = chain.keys[5].address
    a0 = chain.tx(a, Transfer(to, 1), nonce=0, fee=5000)
    a1 = chain.tx(a, Transfer(to, 1), nonce=1, fee=90000)
    b0 = chain.tx(b, Transfer(to, 1), nonce=0, fee=7000)
    c0 = chain.tx(c, Transfer(to, 1), nonce=0, fee=7000)
    for tx in (a0, a1, b0, c0):
        add(pool, chain, tx)
    # b0 and c0 pay the same: arrival decides; a1 pays most but must follow a0.
    assert pool.select(10) == [b0, c0, a0, a1]
    assert pool.select(2) == [b0, c0]


def test_duplicates_and_nonce_gaps(chain):
    a, b = chain.keys[:2]
    pool = Mempool()
    tx0 = chain.tx(a, Transfer(b.address, 1), nonce=0)
    add(pool, chain, tx0)
    assert reason(pool, chain, tx0) == Reason.DUPLICATE
    assert reason(pool, chain, chain.tx(a, Transfer(b.address, 2), nonce=0)) == Reason.BAD_NONCE
    assert reason(pool, chain, chain.tx(a, Transfer(b.address, 2), nonce=2)) == Reason.BAD_NONCE
    add(pool, chain, chain.tx(a, Transfer(b.address, 2), nonce=1))
    assert pool.next_nonce(a.address, chain.account(a)) == 2


def test_balance_covers_all_pending(chain):
    a, b = chain.keys[:2]
    pool = Mempool()
    add(pool, chain, chain.tx(a, Transfer(b.address, FUNDED // 2), nonce=0))
    assert reason(pool, chain, chain.tx(a, Transfer(b.address, FUNDED // 2), nonce=1)) == \
        Reason.INSUFFICIENT_BALANCE


def test_bounded_with_fee_eviction(chain):
    keys = chain.keys
    to = keys[5].address
    pool = Mempool(limit=3)
    cheap = [chain.tx(k, Transfer(to, 1), fee=3000 + i) for i, k in enumerate(keys[:3])]
    for tx in cheap:
        add(pool, chain, tx)
    assert reason(pool, chain, chain.tx(keys[3], Transfer(to, 1), fee=3000)) == \
        Reason.MEMPOOL_FULL
    rich = chain.tx(keys[4], Transfer(to, 1), fee=50_000)
    assert add(pool, chain, rich) == [cheap[0]]
    assert len(pool) == 3 and cheap[0].id not in pool and rich.id in pool


def test_revalidate_drops_what_a_block_made_stale(chain):
    a, b = chain.keys[:2]
    pool = Mempool()
    tx0 = chain.tx(a, Transfer(b.address, COIN), nonce=0)
    tx1 = chain.tx(a, Transfer(b.address, COIN), nonce=1)
    add(pool, chain, tx0)
    add(pool, chain, tx1)
    # Another node's block already spent nonce 0 with a different transaction.
    chain.block([chain.tx(a, Transfer(b.address, 3 * COIN), nonce=0)])
    assert [(tx, exc.reason) for tx, exc in pool.revalidate(chain.account)] == \
        [(tx0, Reason.BAD_NONCE)]
    assert pool.select(10) == [tx1]
    assert [(tx, exc.reason) for tx, exc in pool.revalidate(lambda address: Account())] == \
        [(tx1, Reason.BAD_NONCE)]
    assert len(pool) == 0
