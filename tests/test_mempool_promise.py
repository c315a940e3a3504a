"""The mempool's promise (README "What the node guarantees"): a transaction the API accepted is,
from then on and across kill -9, pending, committed, or visibly dropped (evicted or invalid, with
the reason). Real LMDB, real signatures, the node in-process; the reorganisation test kills a
real process with SIGKILL right after the reorganisation commits, then asks a node process."""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys

import pytest

from chain.genesis import Genesis
from chain.keys import KeyPair
from chain.ledger import Ledger
from chain.store import Store
from chain.tx import Transfer, Tx
from edge import cli
from edge.config import load
from edge.node import Node
from tests import nodeproc
from tests.chainkit import signer_for, make_genesis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OTHERS = [KeyPair.from_seed(bytes([0xB0 + i]) * 32) for i in range(3)]


@pytest.fixture
def home(tmp_path):
    path = str(tmp_path / "home")
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["--home", path, "init", "--devnet", "--api-port",
                         str(nodeproc.free_port())]) == 0
    return path


def open_node(home, **settings):
    config = load(home)
    for name, value in settings.items():
        setattr(config, name, value)
    return Node(config, log=lambda line: None)


def transfer(node, sender, nonce, to=None, amount=10**8, extra_fee=0):
    payload = Transfer(to or KeyPair.from_seed(b"\x09" * 32).address, amount)
    chain_id, params = node.ledger.chain_id, node.ledger.params
    fee = params.min_fee_for(len(Tx(chain_id, sender.pubkey, nonce, 0, payload).raw) + 4)
    return Tx(chain_id, sender.pubkey, nonce, fee + extra_fee, payload).signed_by(sender)


def fork_of(node, path):
    """A second ledger on a consistent copy of the node's chain as it is now (another node's)."""
    os.makedirs(path)
    node.store.env.copy(path)
    return Ledger(Store(path), node.genesis)


def four_producers(home):
    """Give ``home`` a genesis of four producers (its node and three test keys): a block is
    irreversible only once three of them built on it, so a reorganisation can take it back."""
    config = load(home)
    old = Genesis.load(config.path(config.genesis_file))
    wallet = KeyPair.load(os.path.join(home, "wallets", "default.json"))
    producers = [KeyPair.load(config.path(config.key_file))] + OTHERS
    genesis = make_genesis([wallet], producers, old.params._replace(producers_per_round=4),
                           old.chain_id)
    genesis._replace(genesis_time_ms=old.genesis_time_ms).save(
        config.path(config.genesis_file) + ".new")
    os.replace(config.path(config.genesis_file) + ".new", config.path(config.genesis_file))
    return old.chain_id


def produce(ledger, keys, slot, candidates=()):
    """The block of ``slot``, built and committed by whichever of ``keys`` it belongs to."""
    signer = signer_for({k.pubkey: k for k in keys}[ledger.producer_for(slot)])
    return ledger.produce_block(signer, slot, list(candidates))


def reorganise_then_die(home):
    """Child process: blocks of another fork take back the node's block holding acknowledged
    transfers; SIGKILL right after that reorganisation commits, before anything else runs."""
    node = open_node(home)
    keys = [node.key] + OTHERS
    wallet = KeyPair.load(os.path.join(home, "wallets", "default.json"))
    fork = fork_of(node, os.path.join(home, "fork"))
    results = node.submit([transfer(node, wallet, n).raw for n in range(5)])
    assert all(r["accepted"] for r in results), results
    slot = node.ledger.head.slot + 1
    taken_back, rejected = produce(node.ledger, keys, slot, node.mempool.select(100))
    node.chain_changed(taken_back, included=taken_back.txs, dropped=rejected)
    assert len(taken_back.txs) == 5 and not node.mempool.select(100)
    b1, _ = produce(fork, keys, slot + 1)
    b2, _ = produce(fork, keys, slot + 2)
    assert node.ledger.add_block(b1).status == "stored"
    print(json.dumps({"ids": [r["id"] for r in results], "head": b2.hash.hex(),
                      "height": b2.height}), flush=True)
    assert node.ledger.add_block(b2).status == "reorganised"
    os.kill(os.getpid(), signal.SIGKILL)


def test_transactions_a_reorganisation_took_back_survive_kill_9(home, node_factory):
    chain_id = four_producers(home)
    child = subprocess.run([sys.executable, "-c", "import sys; from tests.test_mempool_promise "
                            "import reorganise_then_die; reorganise_then_die(sys.argv[1])", home],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    expected = json.loads(child.stdout)
    node = node_factory.node(nodeproc.NodeHome(home, load(home).api_port, {"chain_id": chain_id}))
    # The restarted node is one of four producers and may already have built its own slot on
    # that head (taking the transfers in): the head it died on must still be on its chain, and
    # each transfer pending, or committed in a block after it.
    head = node.get(f"/v1/blocks/{expected['height']}")["header"]
    assert head["hash"] == expected["head"]
    for tx_id in expected["ids"]:
        status = node.get(f"/v1/txs/{tx_id}")
        assert status["status"] == "pending" or (
            status["status"] == "committed" and status["height"] > expected["height"]), status


def test_evicted_and_invalidated_transactions_say_why(home, tmp_path):
    node = open_node(home, mempool_limit=2)
    wallet = KeyPair.load(os.path.join(home, "wallets", "default.json"))
    other = KeyPair.from_seed(b"\x42" * 32)
    node.submit([transfer(node, wallet, 0, to=other.address, amount=10**10).raw])
    node.produce(node.ledger.head.slot + 1)
    fork = fork_of(node, str(tmp_path / "fork"))
    cheap = [transfer(node, wallet, n) for n in (1, 2)]
    assert all(r["accepted"] for r in node.submit([tx.raw for tx in cheap]))
    # The pool is full: a transfer paying more takes the place of the cheapest tail.
    rich = transfer(node, other, 0, extra_fee=10**6)
    assert node.submit([rich.raw])[0]["accepted"]
    evicted = node.tx_status(cheap[1].id)
    assert (evicted["status"], evicted["reason"]) == ("evicted", "mempool_full")
    # Another node's block uses the wallet's nonce 1 for another transfer: cheap[0] is invalid.
    rival = transfer(node, wallet, 1, amount=7)
    block, _ = fork.produce_block(signer_for(node.key), node.ledger.head.slot + 1, [rival])
    result = node.ledger.add_block(block)
    node._on_network_block(block, result)
    invalid = node.tx_status(cheap[0].id)
    assert (invalid["status"], invalid["reason"]) == ("invalid", "bad_nonce")
    assert "used by another committed transaction" in invalid["detail"]
    assert node.tx_status(rival.id)["status"] == "committed"
    assert node.tx_status(rich.id)["status"] == "pending"
    metrics = node.metrics.registry
    for status, reason in (("evicted", "mempool_full"), ("invalid", "bad_nonce")):
        assert metrics.get_sample_value("smartshare_txs_dropped_total",
                                        {"status": status, "reason": reason}) == 1
    node.store.close()
    node._lock.close()
    node = open_node(home)            # as after kill -9: only LMDB remains
    assert node.tx_status(cheap[1].id)["status"] == "evicted"
    assert node.tx_status(cheap[0].id)["status"] == "invalid"


def test_drop_records_keep_the_newest(tmp_path):
    from chain.dropped import INVALID, DroppedTxs
    from chain.errors import Reason, TxRejected
    store = Store(str(tmp_path / "data"))
    dropped = DroppedTxs(store, limit=3)
    wallet = KeyPair.from_seed(b"\x05" * 32)
    txs = [Tx("c", wallet.pubkey, n, 1, Transfer(wallet.address, 1)).signed_by(wallet)
           for n in range(5)]
    for n, tx in enumerate(txs):
        store.write(lambda txn, tx=tx, n=n: dropped.record(
            txn, [(tx, INVALID, TxRejected(Reason.BAD_NONCE, f"number {n}"))], height=n))
    assert [dropped.get(tx.id) for tx in txs[:2]] == [None, None]
    assert dropped.get(txs[4].id) == {"status": "invalid", "reason": "bad_nonce",
                                      "detail": "number 4", "height": 4}
    store.close()
