"""The order book (edge/agent/matching.py): price-time priority inside fair-price bounds, with
property-tested invariants: no trade outside both limits or the bounds, no over-fill, no
crossed book left behind, priority respected, and deterministic replay."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.agent.matching import ASK, BID, BookError, OrderBook

FLOOR, CEILING = 10, 1000
DEVICES = ("d1", "d2", None)


def book():
    return OrderBook("parking.time", FLOOR, CEILING)


def test_price_then_time_priority_at_the_makers_price():
    b = book()
    assert b.add(ASK, "a1", 50, 10, device="d1") == []
    assert b.add(ASK, "a2", 40, 10, device="d2") == []
    assert b.add(ASK, "a3", 40, 10, device="d1") == []
    trades = b.add(BID, "b1", 60, 25)
    assert [(t.ask, t.price, t.quantity) for t in trades] == [("a2", 40, 10), ("a3", 40, 10),
                                                              ("a1", 50, 5)]
    assert b.best(ASK).id == "a1" and b.best(ASK).quantity == 5
    assert "b1" not in b.orders


def test_a_bid_rests_then_trades_at_its_own_price():
    b = book()
    assert b.add(BID, "b1", 30, 5, device="d1") == []
    assert b.add(BID, "b2", 35, 5) == []
    assert b.add(ASK, "a1", 40, 5, device="d1") == []              # no bid reaches 40
    trades = b.add(ASK, "a2", 20, 20, device="d1")
    assert [(t.bid, t.price, t.quantity) for t in trades] == [("b2", 35, 5), ("b1", 30, 5)]
    assert b.orders["a2"].quantity == 10


def test_device_constraint():
    b = book()
    b.add(ASK, "a1", 20, 5, device="d1")
    assert b.add(BID, "b1", 100, 5, device="d2") == []
    trades = b.add(ASK, "a2", 30, 5, device="d2")
    assert [(t.bid, t.ask, t.price, t.device) for t in trades] == [("b1", "a2", 100, "d2")]


def test_refusals_and_bounds():
    b = book()
    for args, message in ((("x", "o", 10, 1), "side"), ((BID, "o", 9, 1), "fair range"),
                          ((BID, "o", 1001, 1), "fair range"), ((BID, "o", 10, 0), "positive"),
                          ((BID, "o", 10.0, 1), "integer"), ((BID, "o", 10, -1), "integer")):
        with pytest.raises(BookError, match=message):
            b.add(*args)
    b.add(BID, "b1", 500, 5)
    with pytest.raises(BookError, match="already"):
        b.add(BID, "b1", 500, 5)
    b.set_bounds(10, 100)            # the resting bid now lies outside: it waits
    assert b.add(ASK, "a1", 50, 5, device="d1") == []
    b.set_bounds(10, 1000)
    assert b.cancel("a1") is not None and b.cancel("a1") is None


OPS = st.lists(st.tuples(st.sampled_from([BID, ASK]), st.integers(1, 1100), st.integers(1, 50),
                         st.sampled_from(DEVICES), st.booleans()), max_size=60)


def run(ops):
    b, trades, quantities, limits = book(), [], {}, {}
    for i, (side, price, quantity, device, cancel_one) in enumerate(ops):
        order_id = f"o{i}"
        device = device if side == BID else (device or "d1")
        try:
            made = b.add(side, order_id, price, quantity, device=device)
        except BookError:
            assert not FLOOR <= price <= CEILING
            continue
        quantities[order_id], limits[order_id] = quantity, (side, price, device)
        check_priority(b, made, side, price, device)
        trades += made
        if cancel_one and b.orders:
            b.cancel(sorted(b.orders)[0])
        assert_uncrossed(b)
    return b, trades, quantities, limits


def check_priority(b, made, side, price, device):
    """Every resting order better ranked than the last one filled must have been unable to
    trade with the incoming order."""
    if not made:
        return
    worst = made[-1].price
    for resting in b.side(ASK if side == BID else BID):
        better = resting.price < worst if side == BID else resting.price > worst
        if better and side == BID:
            assert device is not None and resting.device != device
        if better and side == ASK:
            assert resting.device not in (None, device)


def assert_uncrossed(b):
    for bid in b.side(BID):
        for ask in b.side(ASK):
            if bid.device in (None, ask.device):
                assert bid.price < ask.price, (bid, ask)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_invariants(ops):
    b, trades, quantities, limits = run(ops)
    filled = {}
    for t in trades:
        bid_side, bid_price, bid_device = limits[t.bid]
        ask_side, ask_price, ask_device = limits[t.ask]
        assert (bid_side, ask_side) == (BID, ASK)
        assert ask_price <= t.price <= bid_price                  # inside both limits
        assert FLOOR <= t.price <= CEILING                        # inside the fair bounds
        assert t.price in (bid_price, ask_price)                  # the maker's price
        assert bid_device in (None, ask_device) and t.device == ask_device
        assert t.quantity > 0
        for order_id in (t.bid, t.ask):
            filled[order_id] = filled.get(order_id, 0) + t.quantity
    for order_id, amount in filled.items():
        assert amount <= quantities[order_id]                      # never over-filled
        if order_id in b.orders:
            assert b.orders[order_id].quantity == quantities[order_id] - amount
    assert [t.seq for t in trades] == list(range(1, len(trades) + 1))


@settings(max_examples=100, deadline=None)
@given(OPS)
def test_replay_is_deterministic(ops):
    first, trades, _, _ = run(ops)
    second, again, _, _ = run(ops)
    assert trades == again and first.orders == second.orders


def test_restore_keeps_time_priority():
    b = book()
    b.add(ASK, "a1", 50, 5, device="d1")
    b.add(ASK, "a2", 50, 5, device="d1")
    fresh = book()
    for order in sorted(b.orders.values(), key=lambda o: -o.seq):   # any order of restoring
        fresh.restore(order)
    assert fresh.add(BID, "b", 60, 5)[0].ask == "a1"
    assert fresh.seq == 3
