"""The data asset platform end to end (docs/protocol.md §18): a real devnet node whose agent keeps
a simulated weather station's data frames, an owner who offers them and consents, buyers who pay
into escrow, fetch over the API and MQTT, verify and decrypt; every refusal loses nothing, and the
balances of owner, platform fee account, buyers and contract end exact to the base unit.
"""

import json
import threading
import time

import pytest

from chain.address import decode_address, encode_address
from chain.keys import KeyPair
from edge.agent import data_calls, messages
from edge.agent.market_link import data_subscriptions, data_topic
from edge.agent.signer import KeyFileSigner
from edge.client import ApiError
from edge.data_client import DataClient, DataRefused
from tests.agentkit import AgentGateway
from tests.mqttkit import connect, wait_for

pytestmark = pytest.mark.slow

PRICE = 1_000          # base units per record
FEE_PERMILLE = 25


class World:
    """The gateway, the owner ("keeper"), a buyer, a stranger and the platform's fee account."""

    def __init__(self, gw, fee_account):
        self.gw, self.fee_account = gw, fee_account
        self.addresses = gw.buyers(["keeper", "alice", "mallory"], ssp=50)
        self.pairs = {name: KeyPair.load(gw.home.wallet_file(name)) for name in self.addresses}
        self.start = gw.height()
        self.before = {name: gw.balance(a) for name, a in self.addresses.items()}
        wait_for("the data market contract", lambda: gw.client.get("/v1/agent")
                 ["data_contract"], 60)
        self.contract = gw.client.get("/v1/agent")["data_contract"]
        self.device = gw.device("weather")

    def client(self, name, wait_s=60.0):
        return DataClient(self.gw.client, self.pairs[name], wait_s)

    def spent(self, name):
        """What ``name`` paid in transaction fees since the start."""
        return self.gw.fees_since(self.addresses[name], self.start)


@pytest.fixture(scope="module")
def world(module_node_factory, tmp_path_factory):
    fee_account = KeyPair.generate().address_text
    gw = AgentGateway(module_node_factory, tmp_path_factory.mktemp("data"), kinds=("weather",),
                      agent_data_fee_account=fee_account,
                      agent_data_fee_permille=FEE_PERMILLE)
    try:
        yield World(gw, fee_account)
    finally:
        gw.close()


@pytest.fixture(scope="module")
def offered(world):
    """The owner's weather dataset: kept by the gateway, registered, not yet consented."""
    owner = world.client("keeper")
    terms = owner.offer("ws-garden", world.device, PRICE, description="garden weather station",
                        schema="weather/data v1", licence="CC-BY-4.0")
    assert terms["owner"] == world.pairs["keeper"].address
    wait_for("40 records kept", lambda: _kept(world, "ws-garden") >= 40, 30, 0.1)
    return "ws-garden"


def _kept(world, dataset):
    found = [d for d in world.gw.client.get("/v1/data/datasets?all=1")["datasets"]
             if d["id"] == dataset]
    return found[0]["records"] if found else 0


def now_ms():
    return time.time_ns() // 1_000_000


def test_nothing_is_offered_or_sold_without_the_owners_consent(world, offered):
    alice = world.client("alice")
    assert alice.datasets() == []                     # registered, but no consent: not offered
    listed = {d["id"]: d for d in alice.datasets(everything=True)}
    assert listed[offered]["consent"] == "none" and listed[offered]["records"] >= 40
    with pytest.raises(DataRefused, match="not consented"):
        alice.buy(offered, 0, now_ms(), 5)
    assert world.gw.balance(world.addresses["alice"]) == world.before["alice"]   # not even a fee
    # On chain too: the contract refuses (the value comes back; only the fee is spent).
    contract = decode_address(world.contract)
    box = bytes(32)
    with pytest.raises(DataRefused, match="no consent of the owner for this buyer"):
        alice.send(data_calls.purchase_payload(contract, b"p" * 16, offered, box, 0, now_ms(),
                                               5, 5 * PRICE), "purchase")


def test_a_stranger_cannot_sell_the_owners_device(world, offered):
    """Mallory registers a dataset naming this gateway and the owner's device, consents, and
    buys it herself: the gateway exports nothing, and her escrow comes back after the deadline."""
    mallory = world.client("mallory")
    mallory.send(data_calls.register_payload(decode_address(world.contract), "stolen", {
        "device": bytes.fromhex(world.device), "gateway": decode_address(world.gw.seller),
        "price": 1, "unit": "record", "delivery_ms": 1_500}), "register stolen")
    mallory.consent("stolen")
    assert "stolen" not in {d["id"] for d in mallory.datasets(everything=True)}
    bought = mallory.buy("stolen", 0, now_ms(), 10)
    with pytest.raises(DataRefused, match="this gateway does not offer that dataset"):
        mallory.fetch(bought["purchase"])
    wait_for("the deadline", lambda: world.gw.client.get("/v1/status")["timestamp_ms"]
             >= bought["deadline"], 30, 0.2)
    assert mallory.refund(bought["purchase"])["refunded"] == 10
    assert world.gw.balance(world.addresses["mallory"]) == \
        world.before["mallory"] - world.spent("mallory")


def test_consented_purchase_delivered_verified_and_paid_out(world, offered):
    owner, alice = world.client("keeper"), world.client("alice")
    owner.consent(offered)
    (listed,) = alice.datasets()
    assert listed["id"] == offered and listed["consent"] == "every buyer"
    assert listed["terms"]["price"] == PRICE and listed["terms"]["licence"] == "CC-BY-4.0"
    bought = alice.buy(offered, 0, now_ms(), 30)
    assert bought["cost"] == 30 * PRICE
    got = alice.fetch(bought["purchase"])
    records = got["records"]
    assert len(records) == 30
    assert [r["seq"] for r in records] == sorted(r["seq"] for r in records)
    assert all("t_c" in r["data"] and "reading" in r["data"] for r in records)
    fee = 30 * PRICE * FEE_PERMILLE // 1000
    assert (got["owner_paid"], got["fee"], got["refunded"]) == (30 * PRICE - fee, fee, 0)
    again = alice.fetch(bought["purchase"])               # idempotent: the same delivery
    assert again["hash"] == got["hash"] and again["records"] == records
    world.alice_purchase = bought["purchase"]


def test_bad_inputs_are_refused_and_lose_nothing(world, offered):
    alice, mallory = world.client("alice"), world.client("mallory")
    pid = world.alice_purchase
    with pytest.raises(DataRefused, match="this purchase is not yours"):
        mallory.fetch(pid)
    body, payload = alice.request(pid)
    tampered = bytearray(payload)
    tampered[-10] ^= 1
    with pytest.raises(DataRefused, match="delivery hash mismatch"):
        alice.open(pid, bytes(tampered))
    with pytest.raises(DataRefused, match="no dataset 'nope'"):
        alice.buy("nope", 0, now_ms(), 1)
    broke = DataClient(world.gw.client, KeyPair.generate())
    with pytest.raises(DataRefused, match="not enough SSP"):
        broke.buy(offered, 0, now_ms(), 1)
    with pytest.raises(DataRefused, match="insufficient_balance"):
        broke.send(data_calls.purchase_payload(decode_address(world.contract), b"q" * 16,
                                               offered, bytes(32), 0, now_ms(), 1, PRICE),
                   "purchase")
    agent = DataClient(world.gw.client, KeyPair.load(world.gw.home.path + "/agent_key.json"))
    with pytest.raises(DataRefused, match="already delivered"):
        agent.send(data_calls.deliver_payload(decode_address(world.contract),
                                              bytes.fromhex(pid), bytes(32), 1, 1), "deliver")
    assert body["state"] == "delivered"


def test_the_cli_offers_buys_fetches_and_opens_a_file(world, offered, tmp_path):
    cli = world.gw.home.cli
    made = cli("data", "offer", "ws-cli", "--device", world.device, "--price", "0.00001",
               "--licence", "CC0", "--name", "keeper", "--json", check=True).json()
    assert made["unit"] == "record" and made["price"] == 1_000 and made["consent"] is False
    cli("data", "consent", "ws-cli", "--buyer", world.addresses["alice"], "--name", "keeper",
        "--json", check=True)
    listed = cli("data", "list", "--name", "alice", "--json", check=True).json()["datasets"]
    assert [d["consent"] for d in listed if d["id"] == "ws-cli"] == ["this buyer"]
    bought = cli("data", "buy", "ws-cli", "--records", 5, "--name", "alice", "--json",
                 check=True).json()
    out, envelope = tmp_path / "ws.jsonl", tmp_path / "ws.ssde"
    got = cli("data", "fetch", bought["purchase"], "--out", out, "--save-envelope", envelope,
              "--name", "alice", "--json", check=True).json()
    assert len(got["records"]) == 5 and len(out.read_text().splitlines()) == 5
    again = cli("data", "fetch", bought["purchase"], "--envelope", envelope, "--name", "alice",
                "--json", check=True).json()
    assert again["records"] == got["records"]
    envelope.write_bytes(envelope.read_bytes()[:-1] + b"\x00")
    bad = cli("data", "fetch", bought["purchase"], "--envelope", envelope, "--name", "alice",
              "--json")
    assert bad.returncode == 1 and json.loads(bad.stderr)["code"] == "bad_delivery"
    assert "delivery hash mismatch" in json.loads(bad.stderr)["error"]
    refused = cli("data", "buy", "ws-cli", "--records", 5, "--name", "mallory")
    assert refused.returncode == 1 and "has not consented" in refused.stderr
    world.cli_sold = 5 * 1_000


def test_fetch_over_mqtt(world, offered):
    """The same delivery over MQTT: a signed fetch on ss/v1/market/data/<client>/fetch, the
    state and the payload on the client's own topics (the ACL keeps other clients out)."""
    alice, pid = world.client("alice"), world.alice_purchase
    got, ready = {}, threading.Event()

    def on_message(client, userdata, msg):
        got[msg.topic.rsplit("/", 1)[-1] if "/payload/" in msg.topic else "state"] = msg.payload
        if pid in got:
            ready.set()
    cid = "alice-data"
    client = connect(world.gw.config.mqtt_port, "market", world.gw.config.market_password, cid,
                     on_message)
    try:
        for topic in data_subscriptions(cid):
            client.subscribe(topic, 1)
        envelope = messages.seal(KeyFileSigner.from_keypair(world.pairs["alice"]),
                                 alice.chain_id, {"type": "data_fetch", "purchase": pid})
        deadline = time.monotonic() + 20
        while not ready.wait(1) and time.monotonic() < deadline:
            client.publish(data_topic(cid, "fetch"), envelope, qos=1)
        assert ready.is_set(), got
        _, state = messages.open_envelope(got["state"], alice.chain_id)
        assert state["state"] == "delivered"
        assert len(alice.open(pid, got[pid])["records"]) == 30
    finally:
        client.loop_stop()
        client.disconnect()


def test_revoked_consent_stops_new_sales_and_honours_paid_ones(world, offered):
    owner, alice = world.client("keeper"), world.client("alice")
    paid = alice.buy(offered, 0, now_ms(), 10)            # paid before the revocation
    owner.consent(offered, revoke=True)
    assert offered not in {d["id"] for d in alice.datasets()}
    with pytest.raises(DataRefused, match="not consented"):
        alice.buy(offered, 0, now_ms(), 10)
    assert len(alice.fetch(paid["purchase"])["records"]) == 10
    owner.consent(offered, world.addresses["alice"])      # consent again, to alice alone
    assert {d["id"]: d["consent"] for d in alice.datasets()}[offered] == "this buyer"
    assert world.client("mallory").datasets() == []


def test_undelivered_purchase_refunded_by_the_buyer_and_balances_exact(world, offered):
    """A purchase never fetched is never delivered: after the deadline alice alone takes her
    escrow back. Then every balance is exact to the base unit."""
    owner, alice = world.client("keeper"), world.client("alice")
    short = owner.offer("ws-hourly", world.device, 7 * PRICE, unit="period", period_ms=60_000,
                        delivery_ms=1_500)
    assert short["unit"] == b"period"
    owner.consent("ws-hourly")
    bought = alice.buy("ws-hourly", 0, 120_000, 100)
    assert bought["cost"] == 14 * PRICE
    with pytest.raises(DataRefused, match="not the buyer"):
        world.client("mallory").refund(bought["purchase"])
    wait_for("the deadline", lambda: world.gw.client.get("/v1/status")["timestamp_ms"]
             >= bought["deadline"], 30, 0.2)
    assert alice.refund(bought["purchase"])["refunded"] == 14 * PRICE
    with pytest.raises(DataRefused, match="already refunded"):
        alice.refund(bought["purchase"])
    # Balances: alice bought 30 + 10 records, the 14-unit purchase came back; the owner got
    # what they cost minus the fee; the fee account the fee; the contract holds nothing.
    gw, sold = world.gw, [30 * PRICE, 10 * PRICE, world.cli_sold]
    fees = sum(v * FEE_PERMILLE // 1000 for v in sold)
    assert gw.balance(world.fee_account) == fees
    assert gw.balance(world.addresses["keeper"]) == \
        world.before["keeper"] + sum(sold) - fees - world.spent("keeper")
    assert gw.balance(world.addresses["alice"]) == \
        world.before["alice"] - sum(sold) - world.spent("alice")
    assert int(gw.client.get(f"/v1/contracts/{world.contract}")["balance"]) == 0
