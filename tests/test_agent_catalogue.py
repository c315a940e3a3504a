"""The seller's catalogue (edge/agent/catalogue.py) over real LMDB: resting bids survive a restart,
asks wait for the channel contract, and a resting bid trades with one ask only — one session
per order — even when a second offer could fill the rest of it."""

from chain.keys import KeyPair
from chain.store import Store
from edge.agent.catalogue import Catalogue
from edge.agent.matching import BID
from edge.agent.services import new_offer
from edge.agent.signer import KeyFileSigner

SERVICE = "parking.time"
CONTRACT = b"\x01" * 20


class Shop:
    """A catalogue of two parking gates, each selling at most 5 minutes to one buyer at a time."""

    def __init__(self, path):
        self.store = Store(path)
        self.signer = KeyFileSigner.from_keypair(KeyPair.from_seed(b"s" * 32))
        self.contract = None
        self.catalogue = self.open()
        for device in (b"\x0a" * 8, b"\x0b" * 8):
            offer = new_offer(SERVICE, device, capacity=1, max_units=5)
            self.catalogue.offers.put(offer["id"].encode(), offer)
        self.catalogue.rebuild()

    def open(self):
        return Catalogue(self.store, None, self.signer, busy=lambda offer: 0,
                         contract=lambda: self.contract, log=lambda *_: None)

    def bid(self, order_id, quantity):
        book = self.catalogue.books[SERVICE]
        assert book.add(BID, order_id, book.ceiling, quantity, "buyer", None) == []
        self.catalogue.rest(book.orders[order_id], SERVICE, "buyer", "client-1", 0)


def test_resting_bids_survive_a_restart_and_asks_wait_for_the_contract(tmp_path):
    shop = Shop(str(tmp_path / "data"))
    shop.bid("order-1", 10)
    trades = []
    shop.catalogue.sync_asks(lambda *trade: trades.append(trade))
    assert trades == [] and shop.catalogue.book_view()[SERVICE]["asks"] == []
    restarted = shop.open()
    restarted.rebuild()
    assert restarted.book_view() == shop.catalogue.book_view()
    assert [o["id"] for o in restarted.book_view()[SERVICE]["bids"]] == ["order-1"]


def test_a_resting_bid_trades_with_one_ask_only(tmp_path):
    shop = Shop(str(tmp_path / "data"))
    shop.bid("order-1", 10)
    shop.contract = CONTRACT
    trades = []

    def open_session(trade, service, buyer):
        trades.append((trade.bid, trade.quantity, service, buyer))
        shop.catalogue.take_bid(service, trade.bid)

    shop.catalogue.sync_asks(open_session)
    assert trades == [("order-1", 5, SERVICE, ("buyer", "client-1"))]
    assert shop.catalogue.resting("order-1") is None
    view = shop.catalogue.book_view()[SERVICE]
    # the first gate sold all it had; the second still asks for all of its 5 minutes
    assert view["bids"] == [] and [(o["owner"], o["quantity"]) for o in view["asks"]] == [
        (shop.signer.address.hex(), 5)]
    quotes = shop.catalogue.changed_quotes()
    assert [q["contract"] for q in quotes] == [CONTRACT.hex()]
    assert shop.catalogue.changed_quotes() == []              # unchanged: nothing to publish
