"""Matching (DESIGN §7): one order book per service type, price-time priority inside fair-price
bounds (docs/protocol.md §17.3).

Pure and deterministic: the book keeps no clock and no randomness; time priority is the order in
which orders reached it (``seq``). An incoming order trades with the best resting orders of the
other side it may trade with, at the resting (maker's) price, while prices cross:

- asks rank by lower price, then earlier arrival; bids by higher price, then earlier arrival;
- a bid may name a device: it then trades only with that device's asks;
- every price lies within the book's fair bounds ``floor..ceiling``: an order outside them is
  refused, and a resting order the bounds have since left behind does not trade;
- a trade never fills more than either order has left; what is left of the incoming order rests.

So no trade is ever outside both limits or the bounds, nothing is over-filled, and replaying the
same orders on an empty book gives the same trades.
"""

from typing import NamedTuple

BID, ASK = "bid", "ask"


class BookError(ValueError):
    """An order the book refuses; the message says why."""


class Order(NamedTuple):
    id: str
    side: str
    price: int           # base units per price unit
    quantity: int        # metered units still open
    seq: int             # arrival order
    owner: str
    device: str | None   # an ask's device; a bid's required device (None: any)


class Trade(NamedTuple):
    bid: str
    ask: str
    price: int
    quantity: int
    seq: int
    device: str | None


def _rank(order):
    return (order.price, order.seq) if order.side == ASK else (-order.price, order.seq)


class OrderBook:
    """Resting bids and asks of one service type."""

    def __init__(self, service, floor, ceiling):
        self.service = service
        self.floor, self.ceiling = floor, ceiling
        self.orders = {}        # id -> Order
        self.seq = 0            # orders received
        self.trades = 0         # trades made

    # -- changing ------------------------------------------------------------------------------

    def add(self, side, order_id, price, quantity, owner="", device=None):
        """Match a new order; returns the trades it made (what is left rests)."""
        if side not in (BID, ASK):
            raise BookError(f"side must be {BID!r} or {ASK!r}")
        if order_id in self.orders:
            raise BookError(f"order {order_id} is already in the book")
        for name, value in (("price", price), ("quantity", quantity)):
            if type(value) is not int or value < 0:
                raise BookError(f"{name} must be a non-negative integer")
        if quantity == 0:
            raise BookError("quantity must be positive")
        if not self.floor <= price <= self.ceiling:
            raise BookError(f"price {price} is outside the fair range {self.floor}..{self.ceiling}"
                            f" of {self.service}")
        self.seq += 1
        order = Order(order_id, side, price, quantity, self.seq, owner, device)
        trades = []
        for maker in self._candidates(order):
            if order.quantity == 0 or not self._crosses(order, maker):
                break
            fill = min(order.quantity, maker.quantity)
            self.trades += 1
            bid, ask = (order, maker) if side == BID else (maker, order)
            trades.append(Trade(bid.id, ask.id, maker.price, fill, self.trades, ask.device))
            order = order._replace(quantity=order.quantity - fill)
            self._set(maker._replace(quantity=maker.quantity - fill))
        if order.quantity:
            self.orders[order.id] = order
        return trades

    def restore(self, order):
        """Put back a resting order (after a restart), keeping its place in time."""
        self.orders[order.id] = order
        self.seq = max(self.seq, order.seq)

    def cancel(self, order_id):
        """Remove a resting order; returns it, or None if it is not in the book."""
        return self.orders.pop(order_id, None)

    def set_bounds(self, floor, ceiling):
        self.floor, self.ceiling = floor, ceiling

    # -- reading -------------------------------------------------------------------------------

    def side(self, side):
        """Resting orders of one side, best first."""
        return sorted((o for o in self.orders.values() if o.side == side), key=_rank)

    def best(self, side, device=None):
        """The best resting order of ``side`` (for an ask: of ``device`` when given)."""
        for order in self.side(side):
            if device is None or order.device in (None, device):
                return order
        return None

    # -- internals -----------------------------------------------------------------------------

    def _candidates(self, order):
        other = ASK if order.side == BID else BID
        return [o for o in self.side(other) if self._may_trade(order, o)]

    def _may_trade(self, a, b):
        """Device constraint and fair bounds (a resting order the bounds left out waits)."""
        bid, ask = (a, b) if a.side == BID else (b, a)
        if bid.device is not None and bid.device != ask.device:
            return False
        return self.floor <= b.price <= self.ceiling

    @staticmethod
    def _crosses(order, maker):
        return maker.price <= order.price if order.side == BID else maker.price >= order.price

    def _set(self, order):
        if order.quantity:
            self.orders[order.id] = order
        else:
            del self.orders[order.id]
