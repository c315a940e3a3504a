"""The node in-process: batched admission, the durable mempool, and production on the slot clock."""

import contextlib
import io

import pytest

from chain.keys import KeyPair
from chain.tx import Transfer, Tx
from edge import cli
from edge.config import load
from edge.node import Node, NodeError


@pytest.fixture
def home(tmp_path):
    path = str(tmp_path / "home")
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["--home", path, "init", "--devnet", "--api-port", "1"]) == 0
    return path


def open_node(home):
    return Node(load(home), log=lambda line: None)


def transfer(node, wallet, nonce, amount=10**8, signature=None):
    payload = Transfer(KeyPair.from_seed(b"\x09" * 32).address, amount)
    chain_id, params = node.ledger.chain_id, node.ledger.params
    fee = params.min_fee_for(len(Tx(chain_id, wallet.pubkey, nonce, 0, payload).raw) + 2)
    tx = Tx(chain_id, wallet.pubkey, nonce, fee, payload).signed_by(wallet)
    if signature is not None:
        tx = Tx(chain_id, wallet.pubkey, nonce, fee, payload, signature)
    return tx.raw


def test_batch_admission_keeps_order_and_reasons(home):
    node = open_node(home)
    wallet = KeyPair.load(f"{home}/wallets/default.json")
    good0, good1 = transfer(node, wallet, 0), transfer(node, wallet, 1)
    forged = transfer(node, wallet, 1, amount=5, signature=bytes(64))
    results = node.submit([good0, forged, b"\x01garbage", good0, good1, transfer(node, wallet, 9)])
    assert [r["accepted"] for r in results] == [True, False, False, False, True, False]
    assert [r.get("reason") for r in results] == [None, "bad_signature", "malformed",
                                                  "duplicate", None, "bad_nonce"]
    assert results[2]["detail"].startswith("tx.kind: unknown transaction kind")
    assert len(node.mempool) == 2


def test_acknowledged_transactions_survive_a_restart(home):
    node = open_node(home)
    wallet = KeyPair.load(f"{home}/wallets/default.json")
    ids = [r["id"] for r in node.submit([transfer(node, wallet, n) for n in range(3)])]
    node.store.close()
    node._lock.close()
    node = open_node(home)  # as after kill -9: only LMDB remains
    assert sorted(tx.id.hex() for tx in node.mempool.select(10)) == sorted(ids)
    slot = node.ledger.slot_at(node.ledger.genesis.genesis_time_ms) + 1
    block = node.produce(max(slot, node.ledger.head.slot + 1))
    assert [tx.id.hex() for tx in block.txs] == ids
    assert len(node.mempool) == 0
    node.store.close()
    node._lock.close()
    assert len(open_node(home).mempool) == 0


def test_one_node_per_data_folder(home):
    first = open_node(home)
    with pytest.raises(NodeError, match="already running"):
        open_node(home)
    first.store.close()


@pytest.mark.parametrize("name", ["config.toml", "node_key.json", "api_token"])
def test_a_secret_file_open_to_others_stops_the_start(home, name):
    import os
    from chain.keys import KeyFileError
    from chain.secretfile import SecretFileError
    first = open_node(home)                 # the first start made api_token
    first.store.close()
    first._lock.close()
    path = os.path.join(home, name)
    os.chmod(path, 0o644)
    with pytest.raises((SecretFileError, KeyFileError), match=r"chmod 600") as raised:
        open_node(home)
    assert name in str(raised.value)


def test_a_wiped_producer_counts_from_what_most_peers_say(home):
    """The recovery window's start (docs/protocol.md §13) follows the majority of peers: a few
    peers overstating their head or LIB neither stall a wiped producer nor shorten its wait."""
    from types import SimpleNamespace
    node = open_node(home)
    node.produce(node.ledger.slot_at(node.ledger.genesis.genesis_time_ms) + 1)
    schedule = node.ledger.schedule_for(node.ledger.head.slot + 1)

    def peers(*pairs, seeds=("127.0.0.1:1",)):
        node.network = SimpleNamespace(
            peers={i: SimpleNamespace(head_height=h, lib_height=lib)
                   for i, (h, lib) in enumerate(pairs)},
            manager=SimpleNamespace(seeds=list(seeds)))

    head, lib = node.ledger.head.height, node.ledger.lib_height
    peers()
    assert not node.caught_up(schedule), "seeds and no peer yet: not caught up"
    peers(seeds=())
    assert node.caught_up(schedule) and node.known_head_height() == head
    peers((head, lib), (head, lib), (10**9, 10**9 - 1))      # one liar among three
    assert node.caught_up(schedule) and node.known_head_height() == head
    peers((head + 50, lib + 40), (head + 50, lib + 40), (head, lib))   # most are ahead
    assert not node.caught_up(schedule) and node.known_head_height() == head + 50
    stale = schedule._replace(start_slot=schedule.start_slot + 3 * len(schedule.producers))
    peers(seeds=())
    assert not node.caught_up(stale), "a head from rounds ago is not caught up"
