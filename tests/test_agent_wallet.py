"""The agent's wallet and outbox (edge/agent/wallet.py, outbox.py) against a real devnet node:
transactions tracked until irreversible, nonces taken by someone else, a node that is down
(backoff, then the queue drains), and crashes between signing, submitting and tracking — every
payload executes exactly once."""

import itertools
import os
import time

import pytest

from chain.store import Store
from edge.agent.chain_port import ChainPort
from edge.agent.signer import KeyFileSigner
from edge.agent.wallet import Wallet, payload_of
from tests.mqttkit import wait_for

pytestmark = pytest.mark.slow


class World:
    """One test's view of the module's node: a fresh funded wallet (the wallet under test signs
    with it), a fresh payee, and an agent store of its own."""

    def __init__(self, home, node, store, name):
        self.home, self.node, self.store, self.name = home, node, store, name
        self.address = home.cli("wallet", "new", "--name", name, "--json",
                                check=True).json()["address"]
        home.cli("wallet", "transfer", self.address, "10", "--wait", check=True)
        self.payee = os.urandom(20).hex()
        self.finals = []

    def make(self):
        """The wallet as the agent (re)starts it."""
        return Wallet(self.store, KeyFileSigner(self.home.wallet_file(self.name)),
                      ChainPort(self.home.client(timeout=3)), log=lambda *_: None,
                      on_final=lambda txn, record: self.finals.append(record))

    def transfer(self, amount):
        return {"type": "transfer", "to": self.payee, "amount": amount}

    def paid(self):
        return balance(self.home, self.payee)


@pytest.fixture(scope="module")
def chain(module_node_factory):
    home = module_node_factory.home("wallet")
    return home, module_node_factory.node(home)


_names = itertools.count(1)


@pytest.fixture
def world(chain, tmp_path):
    home, node = chain
    if not node.alive:
        node.start()                # after a test that killed it and failed
    store = Store(str(tmp_path / "agent"))
    try:
        yield World(home, node, store, f"w{next(_names)}")
    finally:
        store.close()


def run(wallet, records, done=("final", "failed"), timeout=30):
    """Step the wallet until every record id of ``records`` is done; returns them."""
    def finished():
        wallet.step()
        got = {r["id"]: r for r in wallet.records()}
        return [got[i] for i in records] if all(got[i]["status"] in done for i in records) \
            else None
    return wait_for(f"records {records} done", finished, timeout, interval=0.2)


def presign(wallet, record_id):
    """Sign a record as the wallet does before it submits (and keep it), without submitting."""
    record = wallet.outbox.get(record_id)
    nonce = wallet.chain.account(wallet.signer.address)["next_nonce"]
    tx = wallet._sign(record, wallet.status(), nonce)
    record.update(status="signed", tx={"id": tx.id.hex(), "raw": tx.raw.hex(), "nonce": nonce,
                                       "fee": tx.fee})
    wallet.outbox.put(record)
    return tx


def balance(home, address_hex):
    from chain.address import encode_address
    return int(home.client().get(f"/v1/accounts/{encode_address(bytes.fromhex(address_hex))}")
               ["balance"])


def test_transactions_reach_finality_in_nonce_order_despite_a_stolen_nonce(world):
    wallet = world.make()
    ids = [wallet.send(world.transfer(1000 + i), f"pay {i}") for i in range(3)]
    signed = presign(wallet, ids[0])
    # Someone else uses the same key meanwhile: the nonce the wallet signed with is taken.
    world.home.cli("wallet", "transfer", world.address, "1", "--name", world.name, check=True)
    records = run(wallet, ids)
    assert [r["status"] for r in records] == ["final"] * 3
    assert records[0]["tx"]["id"] != signed.id.hex()          # signed again, with a new nonce
    nonces = [r["tx"]["nonce"] for r in records]
    assert nonces == sorted(nonces) and len(set(nonces)) == 3
    assert world.paid() == 1000 + 1001 + 1002
    assert [r["id"] for r in world.finals] == ids
    assert all(r["height"] <= world.home.client().get("/v1/status")["lib_height"]
               for r in records)


def test_outbox_waits_with_backoff_while_the_node_is_down_then_drains(world):
    wallet = world.make()
    world.node.kill9()
    record_id = wallet.send(world.transfer(777), "pay while down")
    for _ in range(3):
        wait_for("the next attempt to be due", lambda: wallet.outbox.get(record_id)["next_ms"]
                 <= time.time_ns() // 1_000_000, 10, 0.05)
        wallet.step()
    record = wallet.outbox.get(record_id)
    assert record["status"] == "queued" and record["attempts"] == 3
    assert "chain unreachable" in record["error"]
    assert record["next_ms"] - record["created_ms"] >= 1000 + 2000   # backoff grew
    world.node.start()
    wallet = world.make()                                            # and the agent restarted
    (record,) = run(wallet, [record_id])
    assert record["status"] == "final" and world.paid() == 777


@pytest.mark.parametrize("delivered", [False, True], ids=["crash-before-submit",
                                                          "crash-after-submit"])
def test_a_crash_around_submission_executes_the_payload_once(world, delivered):
    wallet = world.make()
    record_id = wallet.send(world.transfer(5000), "pay once")
    tx = presign(wallet, record_id)             # what the wallet keeps before it submits
    nonce = tx.nonce
    if delivered:
        assert wallet.chain.submit(tx.raw)["accepted"]
    restarted = world.make()
    (done,) = run(restarted, [record_id])
    assert done["status"] == "final" and done["tx"]["id"] == tx.id.hex()
    assert world.paid() == 5000
    account = world.home.client().get(f"/v1/accounts/{world.address}")
    assert account["nonce"] == nonce + 1


def test_refused_for_good_and_failed_calls_are_reported(world):
    wallet = world.make()
    bad = wallet.send(world.transfer(0), "pay nothing")                 # invalid_amount
    call = wallet.send({"type": "call", "contract": "33" * 20, "method": "x", "args": [],
                        "value": 0, "gas_limit": 10_000}, "call nobody")
    bad_record, call_record = run(wallet, [bad, call])
    assert bad_record["status"] == "failed" and bad_record["error"].startswith("invalid_amount")
    assert call_record["status"] == "final" and call_record["receipt"]["status"] == 1
    assert {r["id"] for r in world.finals} == {bad, call}
    with pytest.raises(ValueError):
        payload_of({"type": "launch"})


def test_pending_records_survive_a_restart_of_the_wallet(world, tmp_path):
    ids = [world.make().send(world.transfer(10 * (i + 1)), f"pay {i}") for i in range(2)]
    assert os.path.isdir(tmp_path / "agent")
    records = run(world.make(), ids)
    assert [r["status"] for r in records] == ["final", "final"]
    assert world.paid() == 30
