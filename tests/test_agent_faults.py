"""SmartAgent faults end to end (docs/protocol.md §17): a buyer who stops paying, ``kill -9`` of
either side mid-session, the chain unreachable while settlements wait in the outbox, a buyer's
close answered by the seller's best voucher, bad vouchers, and a seller that vanishes. Every
test ends with exact integer balances: no metered unit lost, no voucher lost, nothing billed
twice.

Real parts only: a devnet node selling through its agent (killed with -9 and restarted), real
Mosquitto, simulated devices that outlive the node, ``market buy`` processes as buyers.
"""

import json
import os
import signal

import lmdb
import pytest

from chain.keys import KeyPair
from contracts.vouchers import Voucher
from edge.agent import messages
from edge.agent.services import SERVICE_TYPES, amount_for
from edge.config import load
from tests.agentkit import AgentGateway, address_hex, session_frames
from tests.mqttkit import wait_for

pytestmark = pytest.mark.slow
INTERVAL_S = 2


@pytest.fixture(scope="module")
def gw(module_node_factory, tmp_path_factory):
    gateway = AgentGateway(module_node_factory, tmp_path_factory.mktemp("faults"),
                           interval_s=INTERVAL_S, dispute_s=4,
                           kinds=("parking-gate", "purifier", "router"))
    yield gateway
    gateway.close()


class Purchase:
    """One buyer's session, watched from the seller's side, with balances before it."""

    def __init__(self, gw, name, service="parking.time", max_price="0.02", quantity=600,
                 stop_after=None, ssp=20):
        self.gw, self.name, self.service = gw, name, service
        self.buyer = gw.buyer(name, ssp)
        self.start = gw.height()
        self.before = gw.balance(self.buyer)
        self.seller_books = gw.seller_books()
        self.proc = gw.buy(name, service, max_price, quantity, stop_after)
        self.id = None

    def seller_session(self):
        sessions = self.gw.client.get("/v1/market/sessions")["sessions"]
        ours = [s for s in sessions if s["buyer"] == self.pubkey()]
        return self.gw.session(ours[0]["id"]) if ours else None

    def pubkey(self):
        return KeyPair.load(self.gw.home.wallet_file(self.name)).pubkey.hex()

    def wait_vouchers(self, count, timeout=60):
        session = wait_for(f"{count} vouchers of {self.name}", lambda: (
            lambda s: s if s and s["vouchers"] >= count else None)(self.seller_session()),
            timeout, 0.1)
        self.id = session["id"]
        return session

    def check_settled(self, expect_paid=None, seller=True):
        """Exact balances once the seller's session is settled (the seller's too unless
        another purchase ran beside this one: then ``check_seller``)."""
        gw, session = self.gw, self.gw.wait_settled(self.id, 90)
        stype = SERVICE_TYPES[self.service]
        paid = session["redeemed"]
        if expect_paid is None:
            expect_paid = amount_for(session["units"], session["price"], stype.per,
                                     stype.min_units)
        assert paid == expect_paid, (session, gw.node.log_tail(80))
        wait_for("the buyer's refund", lambda: gw.balance(self.buyer) == self.before - paid
                 - gw.fees_since(self.buyer, self.start), 30)
        if seller:
            check_seller(self)
        return session


def check_seller(first, *others):
    """The seller received exactly what the settled purchases paid, minus its fees, plus its
    participation rewards, since the ``first`` began; the contract holds nothing."""
    gw = first.gw
    paid = sum(gw.wait_settled(p.id, 90)["redeemed"] for p in (first, *others))
    gw.check_seller_received(first.seller_books, paid, first.start)


def device_units(gw, session, kind, field):
    frames = session_frames(gw.frames(gw.device(kind)), session["id"])
    return frames[-1].doc[field], frames


def test_buyers_killed_mid_session_one_cut_off_one_resumed_lose_nothing(gw):
    """Two buyers are killed with -9 after their second voucher: the one that stays away is cut
    off within two intervals and closed with its last voucher; the one resumed at once carries
    on with no unit or voucher lost; the first, resumed later, finds its last voucher is the one
    the seller holds."""
    deadbeat = Purchase(gw, "deadbeat")
    crashy = Purchase(gw, "crashy", stop_after=30)
    for p in (deadbeat, crashy):
        p.wait_vouchers(2)
        p.proc.send_signal(signal.SIGKILL)
        p.proc.wait(10)
    resumed = gw.resume("crashy")
    session = wait_for("the cut-off", lambda: (lambda s: s if s["state"] in (
        "ended", "closing", "settled") else None)(gw.session(deadbeat.id)), 60, 0.1)
    assert session["reason"] == "vouchers fell 2 intervals behind"
    # Decided at the first tick two intervals after the unpaid statement (200 ms ticks).
    assert 2 * INTERVAL_S * 1000 <= session["behind_ms"] < 3 * INTERVAL_S * 1000
    held = session["voucher"]["amount"]

    (bought,) = gw.finish(resumed)["sessions"]
    assert bought["state"] == "closed"
    settled = crashy.check_settled(seller=False)
    minutes, _ = device_units(gw, settled, "parking-gate", "minutes")
    assert minutes == settled["units"] == bought["units"] >= 30
    assert bought["paid"] == settled["redeemed"]

    settled = deadbeat.check_settled(expect_paid=held, seller=False)
    check_seller(deadbeat, crashy)
    assert settled["settled"]["refunded"] == settled["deposit"] - held
    (bought,) = gw.finish(gw.resume("deadbeat"))["sessions"]
    assert bought["state"] == "closed" and bought["paid"] == held


def test_kill_9_of_the_seller_mid_session_loses_nothing(gw):
    p = Purchase(gw, "steady", service="purifier.runtime", max_price="0.1", quantity=7200,
                 stop_after=1800)
    p.wait_vouchers(2)
    gw.node.kill9()
    gw.node.start()
    (bought,) = gw.finish(p.proc)["sessions"]
    assert bought["state"] == "closed", bought
    session = p.check_settled()
    running_s, frames = device_units(gw, session, "purifier", "running_s")
    assert running_s == session["units"] == bought["units"] >= 1800
    assert [f.doc.get("event") for f in frames].count("power_on") == 1


def test_outbox_waits_for_the_node_and_a_buyers_close_gets_the_best_voucher(gw):
    """The gateway dies mid-session and stays down: the buyer, hearing nothing for six
    intervals, asks to close on chain; the request waits in its outbox (backoff) until the node
    is back, and the restarted seller answers it with its best voucher at once."""
    p = Purchase(gw, "patient", service="router.bandwidth", max_price="0.002",
                 quantity=4_000_000_000)
    p.wait_vouchers(3)
    gw.node.kill9()
    outbox = os.path.join(gw.home.path, "buyers", "patient", "data")
    waiting = wait_for("the request in the buyer's outbox, retried", lambda: [
        r for r in read_records(outbox, b"agent_txs") if r["label"].startswith("request close")
        and r["attempts"] >= 2 and r["status"] == "queued"], 60, 0.2)
    assert "chain unreachable" in waiting[0]["error"]
    gw.node.start()
    (bought,) = gw.finish(p.proc)["sessions"]
    best = gw.wait_settled(p.id, 90)["voucher"]["amount"]
    p.check_settled(expect_paid=best)               # what came after it is the seller's risk
    assert bought["state"] == "closed" and bought["paid"] == best
    (request,) = [r for r in read_records(outbox, b"agent_txs")
                  if r["label"].startswith("request close")]
    assert request["status"] == "final" and request["receipt"]["status"] == 0
    closes = [t for t in gw.client.get(f"/v1/accounts/{gw.seller}/txs")["txs"]
              if t["kind"] == "call" and t["payload"]["method"] == "close"]
    assert closes[0]["height"] > request["height"]       # the seller answered the request


def test_bad_vouchers_are_refused_and_a_buyers_close_on_chain_is_answered(gw):
    """Beside each other: a buyer sends vouchers that are lower, replayed, for another channel
    or payee, over the deposit or badly signed, and each is refused with its reason; another
    asks to close on chain while its session runs, and the seller's agent notices at once (it
    watches its channels every interval) and closes with its best voucher."""
    sly, hasty = Purchase(gw, "sly"), Purchase(gw, "hasty")
    session = sly.wait_vouchers(2)
    hasty.wait_vouchers(2)
    gw.home.cli("contract", "call", gw.contract, "request_close", "0x" + hasty.id, "--name",
                "hasty", "--gas", "50000", "--wait", check=True)
    key = KeyPair.load(gw.home.wallet_file("sly"))
    held = session["voucher"]
    contract, payee, channel = address_hex(gw.contract), address_hex(gw.seller), session["id"]

    def send(amount, nonce, signer=key, **changes):
        v = Voucher(gw.home.chain_id, bytes.fromhex(changes.get("contract", contract)),
                    bytes.fromhex(changes.get("payee", payee)),
                    bytes.fromhex(changes.get("channel", channel)), amount, nonce)
        body = {"type": "voucher", "session": channel, "channel": channel, "contract": contract,
                "payee": payee, "amount": amount, "nonce": nonce, "upto": 0, "challenge": None,
                "signature": signer.sign(gw.home.chain_id, v.digest()).hex(), **changes}
        replies = gw.client.post("/v1/market/messages", {"envelope": messages.seal(
            key, gw.home.chain_id, body).decode()})["replies"]
        return messages.open_envelope(replies[0].encode(), gw.home.chain_id)[1]

    current = gw.session(channel)["voucher"]
    cases = [
        ((current["amount"] - 1, current["nonce"] + 1), {}, "lower than the one held"),
        ((current["amount"], current["nonce"] - 1), {}, "replayed"),
        ((current["amount"] + 5, current["nonce"] + 1), {"channel": "0" * 16},
         "another channel"),
        ((current["amount"] + 5, current["nonce"] + 1), {"payee": "ab" * 20}, "another payee"),
        ((session["deposit"] + 1, current["nonce"] + 1), {}, "exceeds the deposit"),
        ((current["amount"] + 5, current["nonce"] + 1), {"signer": KeyPair.generate()},
         "bad voucher signature"),
    ]
    for (amount, nonce), changes, reason in cases:
        reply = send(amount, nonce, **changes)
        assert reply["type"] == "ack" and not reply["accepted"], reply
        assert reason in reply["reason"], (reason, reply)
    replies = gw.client.post("/v1/market/messages", {"envelope": json.dumps(
        {"body": "{}", "signer": "00" * 32, "sig": "00" * 64})})["replies"]
    assert messages.open_envelope(replies[0].encode(), gw.home.chain_id)[1]["code"] == \
        "bad_message"
    assert gw.session(channel)["voucher"]["amount"] >= held["amount"]
    sly.proc.send_signal(signal.SIGINT)          # Ctrl-C: the session ends, the seller closes
    (bought,) = gw.finish(sly.proc)["sessions"]
    assert bought["state"] == "closed"
    sly.check_settled(seller=False)

    (bought,) = gw.finish(hasty.proc)["sessions"]
    session = gw.wait_settled(hasty.id, 60)
    assert session["reason"].startswith("the buyer started a close")
    hasty.check_settled(expect_paid=session["voucher"]["amount"], seller=False)
    assert bought["state"] == "closed" and bought["paid"] == session["redeemed"]
    check_seller(sly, hasty)


def test_a_seller_that_vanishes_leaves_the_buyer_its_deposit(gw):
    """The gateway comes back without its agent: the buyer asks to close, waits the dispute
    window (4 s here) and takes everything not redeemed back."""
    p = Purchase(gw, "stranded")
    p.wait_vouchers(2)
    gw.node.stop()
    config = load(gw.home.path)
    config.agent_enabled = False
    config.save()
    gw.node.start()
    try:
        (bought,) = gw.finish(p.proc)["sessions"]
        assert bought["state"] == "refunded", bought
        deposit = gw.client.get(f"/v1/contracts/{gw.contract}")
        assert int(deposit["balance"]) == 0
        fees = gw.fees_since(p.buyer, p.start)
        assert gw.balance(p.buyer) == p.before - fees      # nothing was ever redeemed
    finally:
        gw.node.stop()
        config.agent_enabled = True
        config.save()
        gw.node.start()


def read_records(path, name):
    """JSON records of a named database of another process's LMDB (read only)."""
    if not os.path.exists(os.path.join(path, "data.mdb")):
        return []
    env = lmdb.open(path, readonly=True, max_dbs=64, subdir=True)
    try:
        db = env.open_db(name, create=False)
        with env.begin(db=db) as txn:
            return [json.loads(v) for _, v in txn.cursor()]
    except lmdb.NotFoundError:
        return []
    finally:
        env.close()
