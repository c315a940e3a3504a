"""Benchmark of the state tree: batched updates, proof generation and proof verification.

Runs on real LMDB in a temporary directory, **synced like the node** (``sync=True``: a commit
returns once the pages are on disk), on a tree of 1,000,000 keys by default (prefilled in
chunks, untimed), with the implementation ``edge._fast`` selected (``SMARTSHARE_PURE=1`` forces
the pure-Python reference). Prints a table, then one JSON line.

    python bench/smt.py [--updates N] [--prefill N] [--proofs N] [--rounds N]
"""

import argparse
import json
import os
import random
import tempfile
import time

import lmdb

import edge._fast
from chain.state.proof import verify_proof
from chain.state.smt import SparseMerkleTree


def main():
    args = parse_args()
    rng = random.Random(2024)
    with tempfile.TemporaryDirectory(prefix="bench-smt-") as path:
        env = lmdb.open(path, max_dbs=8, map_size=1 << 40, sync=True)
        tree = SparseMerkleTree(env.open_db(b"chain"))
        keys = [rng.randbytes(32) for _ in range(args.prefill)]
        version = prefill(env, tree, keys, rng)
        update_s, commit_s, version = time_updates(env, tree, keys, rng, args, version)
        proofs, prove_s = time_proofs(env, tree, version, keys, rng, args.proofs)
        verify_s = time_verify(proofs)
        env.close()
    report(args, update_s, commit_s, prove_s, verify_s)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=1000, help="changes per batch (1000)")
    parser.add_argument("--prefill", type=int, default=1_000_000,
                        help="keys before timing (1000000)")
    parser.add_argument("--proofs", type=int, default=2000, help="proofs to make and check (2000)")
    parser.add_argument("--rounds", type=int, default=5, help="timed batches; the best counts (5)")
    return parser.parse_args()


def prefill(env, tree, keys, rng, chunk=50_000):
    """Insert ``keys`` in chunks (one version and one commit each); returns the last version."""
    version = None
    for start in range(0, len(keys), chunk):
        with env.begin(write=True) as txn:
            new = 0 if version is None else version + 1
            tree.update(txn, version, new, {k: rng.randbytes(40) for k in keys[start:start + chunk]})
            version = new
    return version


def time_updates(env, tree, keys, rng, args, version):
    """Best time of one ``update`` (changes + new root), and of its synced commit, over several
    rounds."""
    best_update = best_commit = float("inf")
    for _ in range(args.rounds):
        changes = random_changes(keys, rng, args.updates)
        txn = env.begin(write=True)
        start = time.perf_counter()
        tree.update(txn, version, version + 1, changes)
        middle = time.perf_counter()
        txn.commit()
        end = time.perf_counter()
        version += 1
        best_update = min(best_update, middle - start)
        best_commit = min(best_commit, end - middle)
    return best_update, best_commit, version


def random_changes(keys, rng, count):
    """A realistic block: mostly balance changes to existing keys, some new keys, a few deletes."""
    changes = {}
    while len(changes) < count:
        roll = rng.random()
        if roll < 0.8:
            changes[rng.choice(keys)] = rng.randbytes(40)
        elif roll < 0.95:
            key = rng.randbytes(32)
            keys.append(key)
            changes[key] = rng.randbytes(40)
        else:
            changes[rng.choice(keys)] = None
    return changes


def time_proofs(env, tree, version, keys, rng, count):
    """Proofs for a mix of present and absent keys, with the time taken to make them."""
    targets = [rng.choice(keys) if i % 4 else rng.randbytes(32) for i in range(count)]
    with env.begin() as txn:
        root = tree.root_hash(txn, version)
        start = time.perf_counter()
        proofs = [(key, *tree.prove(txn, version, key)) for key in targets]
        elapsed = time.perf_counter() - start
    return [(root, key, value, proof) for key, value, proof in proofs], elapsed


def time_verify(proofs):
    start = time.perf_counter()
    ok = all(verify_proof(root, key, value, proof) for root, key, value, proof in proofs)
    elapsed = time.perf_counter() - start
    if not ok:
        raise SystemExit("a proof failed to verify")
    return elapsed


def report(args, update_s, commit_s, prove_s, verify_s):
    figures = {
        "impl": edge._fast.IMPLEMENTATION,
        "hashing_impl": edge._fast.IMPLEMENTATIONS["hashing"],
        "keys": args.prefill, "sync": True,
        "smt_updates_per_s": round(args.updates / update_s),
        "smt_updates_committed_per_s": round(args.updates / (update_s + commit_s)),
        "prove_per_s": round(args.proofs / prove_s),
        "verify_per_s": round(args.proofs / verify_s),
    }
    pure = os.environ.get("SMARTSHARE_PURE", "")
    print(f"SMT benchmark: {args.prefill} keys prefilled, batches of {args.updates} changes, "
          f"best of {args.rounds}; implementation {figures['impl']} "
          f"(hashing: {figures['hashing_impl']}, SMARTSHARE_PURE={pure!r})")
    rows = [
        ("update batch + root", update_s, args.updates, figures["smt_updates_per_s"], "updates"),
        ("commit (sync on)", commit_s, 1, round(1 / commit_s), "commits"),
        ("prove", prove_s, args.proofs, figures["prove_per_s"], "proofs"),
        ("verify_proof", verify_s, args.proofs, figures["verify_per_s"], "proofs"),
    ]
    print(f"{'operation':<22}{'total ms':>10}{'count':>8}{'per second':>14}")
    for name, seconds, count, rate, unit in rows:
        print(f"{name:<22}{seconds * 1000:>10.1f}{count:>8}{rate:>14,} {unit}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
