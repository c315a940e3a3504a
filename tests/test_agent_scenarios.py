"""The seed's scenarios end to end (docs/protocol.md §17): a real devnet node selling its
devices' services through its agent, real Mosquitto, real simulated devices, and buyers that are
real ``smartshare market buy`` processes — all seven trading at once, as on a busy gateway. Each
ends with exact integer balances: what a buyer paid is what the device's own signed frames
metered at the agreed price, the seller received the sum of it, everyone paid their fees, the
rest of each deposit came back, and the channel contract holds nothing.
"""

import queue

import pytest

from chain.keys import KeyPair
from contracts.values import decode_value
from edge.agent import messages
from edge.agent.market_link import quote_topic
from edge.agent.services import SERVICE_TYPES, amount_for
from tests.agentkit import AgentGateway, address_hex, session_frames
from tests.mqttkit import connect

pytestmark = pytest.mark.slow

# buyer -> (service, max price in SSP, quantity, stop after (units))
ORDERS = {
    "car": ("parking.time", "0.02", 120, 4),
    "flat": ("purifier.runtime", "0.1", 7200, 600),
    "guest": ("router.bandwidth", "0.002", 400_000_000, 40_000_000),
    "farmer": ("weather.reading", "0.001", 50, 12),
    "archive": ("storage.space", "0.01", 10_000_000, 20_000),
    "lab": ("compute.job", "0.02", 3, None),
    "commuter": ("router.bandwidth", "0.002", 4_000_000_000, 400_000_000),
    "visitor": ("weather.reading", "0.001", 100_000, None),
}
CLOSED_BY_OWNER = {"visitor"}       # by ``smartshare channel close`` mid-session


class Market:
    """Every buyer of ``ORDERS`` trading at once with one gateway, balances taken before."""

    def __init__(self, gw):
        self.gw = gw
        self.buyers = gw.buyers(ORDERS, ssp=20)
        self.start = gw.height()
        self.before = {name: gw.balance(address) for name, address in self.buyers.items()}
        self.seller_books = gw.seller_books()
        self.procs = {name: gw.buy(name, *order) for name, order in ORDERS.items()}
        self.results = {}

    def settled(self, name):
        """The seller's settled session of ``name``, checked to the base unit on both sides."""
        if name not in self.results:
            self.results[name] = self._check(name)
        return self.results[name]

    def _check(self, name):
        gw, service = self.gw, ORDERS[name][0]
        (bought,) = gw.finish(self.procs[name])["sessions"]
        assert bought["state"] == "closed", bought
        session = gw.wait_settled(bought["session"])
        stype = SERVICE_TYPES[service]
        paid = session["redeemed"]
        due = amount_for(session["units"], session["price"], stype.per, stype.min_units)
        if name in CLOSED_BY_OWNER:
            # Closed by the owner mid-session: with the best voucher held, which lags what is
            # metered by at most the last interval's units (the seller's risk, never the buyer's).
            assert paid == bought["paid"] == session["voucher"]["amount"] <= due
        else:
            assert paid == bought["paid"] == due
        assert bought["refunded"] == session["deposit"] - paid
        if name in CLOSED_BY_OWNER:  # the buyer saw the units up to its last voucher
            assert bought["units"] <= session["units"], (bought, session)
        else:
            assert session["units"] == bought["units"], (bought, session)
        buyer = self.buyers[name]
        assert gw.balance(buyer) == self.before[name] - paid - gw.fees_since(buyer, self.start)
        return session

    def close(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture(scope="module")
def market(module_node_factory, tmp_path_factory):
    gw = AgentGateway(module_node_factory, tmp_path_factory.mktemp("agent"),
                      interval_s=1, settlement_s=2)
    trading = Market(gw)
    yield trading
    trading.close()
    gw.close()


def device_units(gw, session, kind, quantity_field):
    """The units the device's own closing frame reports for the commanded session."""
    frames = session_frames(gw.frames(gw.device(kind)), session["id"])
    assert frames[0].doc["ref"] == session["id"]
    return frames, frames[-1].doc[quantity_field]


def test_parking_gate_opens_on_a_voucher_and_bills_each_minute(market):
    session = market.settled("car")
    frames, minutes = device_units(market.gw, session, "parking-gate", "minutes")
    assert frames[-1].doc["event"] == "vehicle_exit" and minutes == session["units"] >= 4
    entry = frames[0]
    # The gate opened on the first voucher: after it, with nothing of the session on chain yet.
    assert entry.doc["event"] == "vehicle_entry"
    assert entry.timestamp_ms >= session["first_voucher_ms"]
    assert session["price"] == 1_000_000 and session["vouchers"] >= 2


def test_purifier_rented_per_running_hour(market):
    session = market.settled("flat")
    frames, running_s = device_units(market.gw, session, "purifier", "running_s")
    assert frames[-1].doc["event"] == "power_off" and running_s == session["units"] >= 600
    assert session["per"] == 3600


def test_router_shares_bandwidth_per_mb(market):
    session = market.settled("guest")
    frames, sent = device_units(market.gw, session, "router", "bytes")
    assert frames[-1].doc["event"] == "client_left" and sent == session["units"] >= 40_000_000


def test_weather_station_sells_readings(market):
    session = market.settled("farmer")
    device = market.gw.device("weather")
    readings = [f for f in market.gw.frames(device) if f.kind == "data"
                and f.seq > session["start_after"]]
    assert session["units"] >= 12 and len(readings) >= session["units"]
    assert session["per"] == 1


def test_storage_rented_with_proofs_of_holding_the_data(market):
    session = market.settled("archive")
    frames, mb_s = device_units(market.gw, session, "storage", "mb_s")
    assert frames[-1].doc["event"] == "object_deleted" and mb_s == session["units"] >= 20_000
    proofs = [f for f in frames if f.doc.get("event") == "proof"]
    assert proofs and {f.doc["challenge"] for f in proofs} <= set(session["challenges"])
    assert "proof" not in (session["reason"] or "")


def test_compute_jobs_confirmed_done(market):
    session = market.settled("lab")
    frames, done = device_units(market.gw, session, "compute", "jobs_done")
    assert frames[-1].doc["event"] == "job_finished" and done == session["units"] == 3


def test_installments_at_most_once_per_settlement_interval(market):
    """A longer session with a 2 s settlement interval: the seller redeems installments, never
    two within an interval, and the close pays the rest; each transaction settles every unit
    metered since the last one."""
    gw, session = market.gw, market.settled("commuter")
    txs = gw.client.get(f"/v1/accounts/{gw.seller}/txs?limit=1000")["txs"]
    settling = sorted((t["height"], t["index"], t["payload"]["method"]) for t in txs
                      if t["kind"] == "call" and t["payload"]["method"] in ("redeem", "close")
                      and decode_value(bytes.fromhex(t["payload"]["args"]))[0].hex()
                      == session["id"])
    assert settling[-1][2] == "close" and [m for *_, m in settling[:-1]] == ["redeem"] * (
        len(settling) - 1)
    redeems = session["redeems"]
    assert len(redeems) == len(settling) - 1 >= 1
    assert all(b - a >= 2000 for a, b in zip(redeems, redeems[1:]))


def test_the_cli_shows_the_market_changes_a_price_and_closes_a_channel(market):
    """``service``, ``market``, ``session`` and ``channel`` commands against the live gateway,
    the retained quote on MQTT following a price change, and a bad request refused with why."""
    gw, home = market.gw, market.gw.home
    car = market.settled("car")
    offers = home.cli("service", "list", "--json", check=True).json()["services"]
    parking = next(o for o in offers if o["type"] == "parking.time")
    changed = home.cli("service", "price", parking["id"], "--price", "0.015", "--ceiling",
                       "0.04", "--json", check=True).json()
    assert changed["policy"] == {"base": 1_500_000, "floor": 750_000, "ceiling": 4_000_000,
                                 "adjust_permille": parking["policy"]["adjust_permille"]}
    quotes = home.cli("market", "quotes", "--json", check=True).json()
    assert quotes["seller"] == gw.seller
    assert [o["price"] for o in quotes["quotes"]["parking.time"]["offers"]] == [1_500_000]
    received = queue.Queue()
    client = connect(gw.config.mqtt_port, "market", gw.config.market_password, "cli-test",
                     on_message=lambda c, u, m: received.put(m.payload))
    try:
        client.subscribe(quote_topic("parking.time"), qos=1)
        signer, body = messages.open_envelope(received.get(timeout=10), home.chain_id)
        while body["offers"][0]["price"] != 1_500_000:     # an older one until the next quote
            signer, body = messages.open_envelope(received.get(timeout=10), home.chain_id)
    finally:
        client.disconnect()
    assert body["type"] == "quote" and address_hex(gw.seller) == body["payee"]
    refused = home.cli("service", "add", "parking.time", gw.device("router"), "--json")
    assert refused.returncode != 0 and "needs a parking-gate" in refused.output

    books = home.cli("market", "orders", "--json", check=True).json()["books"]
    assert books["parking.time"]["trades"] >= 1 and books["router.bandwidth"]["trades"] >= 2
    listed = home.cli("session", "list", "--json", check=True).json()["sessions"]
    assert {s["id"] for s in listed} >= {market.settled(n)["id"] for n in ORDERS
                                        if n != "visitor"}
    shown = home.cli("session", "show", car["id"], "--json", check=True).json()
    assert (shown["units"], shown["redeemed"], shown["state"]) == (
        car["units"], car["redeemed"], "settled")

    pubkey = KeyPair.load(home.wallet_file("visitor")).pubkey.hex()
    visitor = next(s for s in listed if s["buyer"] == pubkey)
    channels = home.cli("channel", "list", "--json", check=True).json()
    assert channels["contract"] == gw.contract
    assert visitor["id"] in {c["channel"] for c in channels["channels"]}
    closed = home.cli("channel", "close", visitor["id"], "--json", check=True).json()
    assert closed["reason"] == "the owner closed the channel"
    market.settled("visitor")
    unknown = home.cli("channel", "close", "00" * 8, "--json")
    assert unknown.returncode != 0 and "no open channel" in unknown.output


def test_the_seller_received_exactly_what_every_buyer_paid(market):
    gw = market.gw
    paid = sum(market.settled(name)["redeemed"] for name in ORDERS)
    gw.check_seller_received(market.seller_books, paid, market.start)
