"""The seller's catalogue (docs/protocol.md §17.1, §17.3): the services its devices offer, the
price each asks for its free capacity, the buyers' resting bids, and one order book per service
type built from them.

Offers and resting bids are LMDB records; the books are rebuilt from them at start. How busy an
offer is and whether the channel contract is deployed belong to the seller: it passes them in as
``busy(offer)`` and ``contract()``. Trades are returned, never acted on: the seller opens the
sessions.
"""

from edge.agent.matching import ASK, BID, Order, OrderBook
from edge.agent.records import Records
from edge.agent.services import (SERVICE_TYPES, new_offer, offer_policy, service_id,
                                 service_type, types_for_kind)


class Catalogue:
    """Offers, resting bids and their order books, for one seller."""

    def __init__(self, store, identity, seller, busy, contract, log=print):
        """``seller`` is the seller's signer (payee and public key in quotes)."""
        self.identity, self.busy, self.contract, self.log = identity, busy, contract, log
        self.payee, self.seller_pubkey = seller.address.hex(), seller.pubkey.hex()
        self.offers = Records(store, "agent_services")
        self.orders = Records(store, "agent_orders")
        self.books = {}             # service type -> OrderBook
        self._quotes = {}           # service type -> last quote published

    def rebuild(self):
        """The books from the stored offers and resting bids (bids in their arrival order)."""
        self.books = {}
        for offer in self.offers.values():
            self._book(offer["type"])
        for order in sorted(self.orders.values(), key=lambda o: o["seq"]):
            book = self.books.get(order["service"])
            if book is not None:
                book.restore(Order(order["id"], BID, order["price"], order["quantity"],
                                   order["seq"], order["buyer"], order["device"]))

    def _book(self, type_name):
        book = self.books.get(type_name)
        floor, ceiling = self._bounds(type_name)
        if book is None:
            book = self.books[type_name] = OrderBook(type_name, floor, ceiling)
        else:
            book.set_bounds(floor, ceiling)
        return book

    def _bounds(self, type_name):
        """The fair range of a book: the lowest floor to the highest ceiling of its offers."""
        policies = [offer_policy(o) for o in self.offers.values() if o["type"] == type_name]
        if not policies:
            return 0, 0
        return min(p.floor for p in policies), max(p.ceiling for p in policies)

    # -- offers (service list|add|price) -------------------------------------------------------

    def add_offer(self, type_name, device_id, policy=None, capacity=None):
        stype = service_type(type_name)
        if self.identity.device(device_id) is None:
            raise ValueError(f"device {device_id.hex()} is not an approved device")
        kind = self.identity.kind(device_id)
        if kind != stype.device_kind:
            raise ValueError(f"{type_name} needs a {stype.device_kind}, device {device_id.hex()} "
                             f"is a {kind or 'device of unknown kind'}")
        offer = new_offer(type_name, device_id, policy, capacity)
        self.offers.put(offer["id"].encode(), offer)
        self._book(type_name)
        return offer

    def set_price(self, offer_id, policy):
        offer = self.offers.get(offer_id.encode())
        if offer is None:
            raise ValueError(f"no service {offer_id}; `smartshare service list` shows them")
        problems = policy.problems()
        if problems:
            raise ValueError("; ".join(problems))
        offer["policy"] = policy._asdict()
        self.offers.put(offer_id.encode(), offer)
        self._book(offer["type"])
        return offer

    def list_offers(self):
        out = []
        for offer in self.offers.values():
            busy = self.busy(offer)
            out.append(dict(offer, busy=busy, price=offer_policy(offer).price(
                busy, offer["capacity"])))
        return out

    def auto_offers(self):
        """Offer every service of each approved device of a known kind, at default prices."""
        if self.identity.devices is None:
            return
        known = {o["id"] for o in self.offers.values()}
        for device_id in self.identity.devices.approved():
            for stype in types_for_kind(self.identity.kind(device_id)):
                if service_id(stype.name, device_id) not in known:
                    self.add_offer(stype.name, device_id)
                    self.log(f"agent: offering {stype.name} of device {device_id.hex()}")

    # -- bids ----------------------------------------------------------------------------------

    def resting(self, order_id):
        """The stored resting bid ``order_id``, or None."""
        return self.orders.get(order_id.encode())

    def rest(self, order, service, buyer, client, time_ms):
        """Keep what is left of a buyer's bid ``order`` (an Order the book holds)."""
        self.orders.put(order.id.encode(), {
            "id": order.id, "service": service, "price": order.price,
            "quantity": order.quantity, "seq": order.seq, "buyer": buyer,
            "device": order.device, "client": client, "time_ms": time_ms})

    def take_bid(self, service, order_id):
        """A bid that traded leaves the book and the store (one session per order)."""
        self.books[service].cancel(order_id)
        self.orders.delete(order_id.encode())

    def best_ask(self, service, device=None):
        best = self.books[service].best(ASK, device)
        return best.price if best else None

    # -- asks ----------------------------------------------------------------------------------

    def sync_asks(self, on_trade):
        """One ask per enabled offer at its current price, for its free capacity; an ask whose
        price or size changed is replaced. Each trade with a resting bid goes at once to
        ``on_trade(trade, service type, (buyer, client))``, which takes the bid (``take_bid``)
        before the next ask is placed: one session per order."""
        for offer in self.offers.values():
            book = self._book(offer["type"])
            busy = self.busy(offer)
            price = offer_policy(offer).price(busy, offer["capacity"])
            quantity = min((offer["capacity"] - busy) * offer["max_units"], 1 << 62)
            current = book.orders.get(offer["id"])
            if current is not None and (current.price, current.quantity) == (price, quantity):
                continue
            book.cancel(offer["id"])
            if quantity <= 0 or not offer["enabled"] or self.contract() is None:
                continue
            for trade in book.add(ASK, offer["id"], price, quantity, self.payee,
                                  offer["device"]):
                stored = self.resting(trade.bid) or {}
                on_trade(trade, offer["type"], (stored.get("buyer"), stored.get("client")))

    # -- quotes and views ----------------------------------------------------------------------

    def quote_bodies(self):
        """The supply quote of each service type (what is published on MQTT and the API)."""
        contract = self.contract()
        out = {}
        for type_name, book in sorted(self.books.items()):
            stype = SERVICE_TYPES[type_name]
            offers = []
            for offer in self.offers.values():
                if offer["type"] != type_name or not offer["enabled"]:
                    continue
                busy = self.busy(offer)
                offers.append({"service_id": offer["id"], "device": offer["device"],
                               "price": offer_policy(offer).price(busy, offer["capacity"]),
                               "available": offer["capacity"] - busy,
                               "capacity": offer["capacity"]})
            best_bid = book.best(BID)
            out[type_name] = {
                "service": type_name, "unit": stype.unit, "price_unit": stype.price_unit,
                "per": stype.per, "min_units": stype.min_units, "offers": offers,
                "best_bid": best_bid.price if best_bid else None,
                "bounds": [book.floor, book.ceiling],
                "contract": contract.hex() if contract else None,
                "payee": self.payee, "seller": self.seller_pubkey}
        return out

    def changed_quotes(self):
        """The quotes that differ from the last ones this returned."""
        changed = []
        for type_name, quote in self.quote_bodies().items():
            if self._quotes.get(type_name) != quote:
                self._quotes[type_name] = quote
                changed.append(quote)
        return changed

    def book_view(self):
        """Resting orders of every book, best first."""
        return {name: {"bids": [o._asdict() for o in book.side(BID)],
                       "asks": [o._asdict() for o in book.side(ASK)],
                       "bounds": [book.floor, book.ceiling], "trades": book.trades}
                for name, book in sorted(self.books.items())}
