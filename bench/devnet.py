"""How many transactions per second the devnet node admits and applies.

Runs a real node in-process on a temp home (real LMDB, real signatures): transfers go through
``Node.submit`` (decode, checks, signature, durable mempool write) and ``Node.produce`` (build,
then full re-validation and one atomic commit per block), exactly the path the API and the slot
clock use. Prints a table, then one JSON object on the last line.

    python bench/devnet.py [--txs 5000] [--block 1000]
"""

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chain.genesis import Genesis  # noqa: E402
from chain.keys import KeyPair  # noqa: E402
from chain.tx import Transfer, Tx  # noqa: E402
from edge import _fast  # noqa: E402
from edge import cli  # noqa: E402
from edge.config import load  # noqa: E402
from edge.node import Node  # noqa: E402


def signed_transfers(wallet, chain_id, params, count):
    recipients = [KeyPair.from_seed(i.to_bytes(32, "big")).address for i in range(1, count + 1)]
    out = []
    for nonce, to in enumerate(recipients):
        tx = Tx(chain_id, wallet.pubkey, nonce, 0, Transfer(to, 1000 + nonce))
        fee = params.min_fee_for(len(tx.raw) + 4)
        out.append(Tx(chain_id, wallet.pubkey, nonce, fee, Transfer(to, 1000 + nonce)).signed_by(wallet))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txs", type=int, default=5000)
    parser.add_argument("--block", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        with contextlib.redirect_stdout(io.StringIO()):
            cli.main(["--home", home, "init", "--devnet", "--api-port", "1"])
        config = load(home)
        # Start the chain a day ago, so blocks can be produced faster than one per wall-clock slot.
        genesis_path = config.path(config.genesis_file)
        genesis = Genesis.load(genesis_path)
        genesis._replace(genesis_time_ms=genesis.genesis_time_ms - 86_400_000).save(genesis_path)
        node = Node(config, log=lambda line: None)
        node.ledger.params = node.ledger.params._replace(max_block_txs=args.block)
        wallet = KeyPair.load(os.path.join(home, "wallets", "default.json"))
        txs = signed_transfers(wallet, node.ledger.chain_id, node.ledger.params, args.txs)

        started = time.perf_counter()
        for i in range(0, len(txs), 500):
            results = node.submit([tx.raw for tx in txs[i:i + 500]])
            assert all(r["accepted"] for r in results), results[:3]
        submit_s = time.perf_counter() - started

        slot = node.ledger.head.slot
        started = time.perf_counter()
        applied = 0
        while len(node.mempool):
            slot += 1
            applied += len(node.produce(slot).txs)
        produce_s = time.perf_counter() - started
        assert applied == args.txs
        node.store.close()

    figures = {
        "impl": _fast.IMPLEMENTATION,
        "txs": args.txs,
        "block_txs": args.block,
        "submit_txs_per_s": round(args.txs / submit_s),
        "produce_txs_per_s": round(args.txs / produce_s),
    }
    print(f"{'implementation':<28}{figures['impl']}")
    print(f"{'transfers':<28}{args.txs} in blocks of up to {args.block}")
    print(f"{'admission (API path)':<28}{figures['submit_txs_per_s']:>10,} tx/s")
    print(f"{'produce + apply + commit':<28}{figures['produce_txs_per_s']:>10,} tx/s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
