"""How many transfers per second a devnet node admits, produces and a follower validates.

A real node in-process on a temp home (real LMDB synced as the node runs it, real signatures),
with ``--senders`` accounts funded in genesis, each sending its share of ``--txs`` transfers
(its own nonce chain) to distinct recipients, submitted interleaved in batches of 500:

1. admission: ``Node.submit``, the API's path without HTTP: decode, static checks, the batch's
   signatures verified together, the mempool's nonce and balance rules, then one synced LMDB
   write of the accepted batch before the answer;
2. production: ``Node.produce`` per slot, the slot clock's path: the block built from the
   mempool (each transfer executed once), its state tree updated and everything committed in
   one synced LMDB transaction. Signatures are NOT checked again here: admission verified them
   and the ledger remembers that (ids and signatures);
3. validation: a follower (a fresh ledger on its own store) applies every produced block as a
   peer's block: all signatures verified (nothing cached), every transfer re-executed, state and
   receipts roots recomputed and compared, one synced commit per block.

Prints a table, then one JSON object on the last line.

    python bench/devnet.py [--txs 5000] [--senders 100] [--block 1000]
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

from chain.genesis import Allocation, Genesis  # noqa: E402
from chain.keys import KeyPair  # noqa: E402
from chain.ledger import Ledger  # noqa: E402
from chain.store import Store  # noqa: E402
from chain.tx import Transfer, Tx  # noqa: E402
from edge import _fast  # noqa: E402
from edge import cli  # noqa: E402
from edge.config import load  # noqa: E402
from edge.node import Node  # noqa: E402

FUNDS = 1_000 * 10**8   # each sender's allocation, base units


def fund_senders(genesis, wallet, senders):
    """``genesis`` with ``FUNDS`` moved from the wallet's allocation to each sender's, started
    a day ago (so blocks can be produced faster than one per wall-clock slot)."""
    source = max((a for a in genesis.allocations if a.address == wallet.address),
                 key=lambda a: a.balance)
    allocations = [a._replace(balance=a.balance - FUNDS * len(senders)) if a == source else a
                   for a in genesis.allocations]
    allocations += [Allocation(s.address, FUNDS, 0, source.pool) for s in senders]
    return genesis._replace(allocations=tuple(sorted(allocations)),
                            genesis_time_ms=genesis.genesis_time_ms - 86_400_000)


def transfers(senders, chain_id, params, count):
    """``count`` signed transfers, round-robin over the senders (each its own nonce chain)."""
    out = []
    for i in range(count):
        sender, nonce = senders[i % len(senders)], i // len(senders)
        to = KeyPair.from_seed((i + 1).to_bytes(32, "big")).address
        tx = Tx(chain_id, sender.pubkey, nonce, 0, Transfer(to, 1000 + i))
        fee = params.min_fee_for(len(tx.raw) + 4)
        out.append(Tx(chain_id, sender.pubkey, nonce, fee, Transfer(to, 1000 + i))
                   .signed_by(sender))
    return out


def run(args, home):
    with contextlib.redirect_stdout(io.StringIO()):
        cli.main(["--home", home, "init", "--devnet", "--api-port", "1"])
    config = load(home)
    wallet = KeyPair.load(os.path.join(home, "wallets", "default.json"))
    senders = [KeyPair.from_seed(b"s" + i.to_bytes(31, "big")) for i in range(args.senders)]
    genesis_path = config.path(config.genesis_file)
    genesis = fund_senders(Genesis.load(genesis_path), wallet, senders)
    genesis.save(genesis_path)
    node = Node(config, log=lambda line: None)
    node.ledger.params = node.ledger.params._replace(max_block_txs=args.block)
    txs = transfers(senders, node.ledger.chain_id, node.ledger.params, args.txs)

    started = time.perf_counter()
    for i in range(0, len(txs), 500):
        results = node.submit([tx.raw for tx in txs[i:i + 500]])
        assert all(r["accepted"] for r in results), results[:3]
    submit_s = time.perf_counter() - started

    slot, blocks = node.ledger.head.slot, []
    started = time.perf_counter()
    while len(node.mempool):
        slot += 1
        blocks.append(node.produce(slot))
    produce_s = time.perf_counter() - started
    assert sum(len(b.txs) for b in blocks) == args.txs
    node.store.close()

    follower_store = Store(os.path.join(home, "follower"))
    follower = Ledger(follower_store, Genesis.load(genesis_path))
    follower.params = follower.params._replace(max_block_txs=args.block)
    started = time.perf_counter()
    for block in blocks:
        follower.apply_block(block)
    validate_s = time.perf_counter() - started
    follower_store.close()
    return {"impl": _fast.IMPLEMENTATION, "txs": args.txs, "senders": args.senders,
            "block_txs": args.block, "blocks": len(blocks),
            "submit_txs_per_s": round(args.txs / submit_s),
            "produce_txs_per_s": round(args.txs / produce_s),
            "validate_txs_per_s": round(args.txs / validate_s)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txs", type=int, default=5000)
    parser.add_argument("--senders", type=int, default=100)
    parser.add_argument("--block", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        figures = run(args, home)
    print(f"{'implementation':<44}{figures['impl']}")
    print(f"{'transfers':<44}{args.txs} from {args.senders} senders, "
          f"{figures['blocks']} blocks of up to {args.block}")
    print(f"{'admission (API path, synced mempool write)':<44}"
          f"{figures['submit_txs_per_s']:>10,} tx/s")
    print(f"{'production (execute once, synced commit)':<44}"
          f"{figures['produce_txs_per_s']:>10,} tx/s")
    print(f"{'follower validation (verify all, re-execute)':<44}"
          f"{figures['validate_txs_per_s']:>10,} tx/s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
