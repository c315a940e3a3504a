"""edge/_fast against its references and against the raw libsodium limit, in one run.

Measures, side by side on this machine:
  * batch Ed25519 verification (compiled, all cores) vs raw libsodium called through cffi on as
    many threads as there are cores (the limit), and the pure reference;
  * decode + encode of a block of 1,000 transfers, compiled vs reference codec;
  * 1,000 SMT updates + root on a 10,000-key tree in LMDB, compiled vs reference inner loop;
  * the same on a 1,000,000-key tree in LMDB synced like the node (sync on), with and without
    the synced commit (``--big-tree 0`` leaves it out; the prefill takes a while);
  * batch leaf hashing vs a Python loop over hashlib;
  * full validation of a 1,000-transfer block (decode, verify, execute, SMT, commit) in tx/s,
    each round beside the raw verify limit on 1,000 signatures (the ratio is their median).
Prints a table, then one JSON object on the last line. Run: python bench/fast.py [--quick]
"""

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import lmdb  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from chain.address import address_from_pubkey  # noqa: E402
from chain.block import Block  # noqa: E402
from chain.genesis import Allocation, Genesis, simple_plan  # noqa: E402
from chain.keys import KeyPair  # noqa: E402
from chain.ledger import Ledger  # noqa: E402
from chain.params import SSP_SUPPLY, Params  # noqa: E402
from chain.producer import BlockSigner  # noqa: E402
from chain.state.smt import SparseMerkleTree  # noqa: E402
from chain.store import Store  # noqa: E402
from chain.tx import Transfer, Tx  # noqa: E402
from edge.node_home import genesis_agent  # noqa: E402
from edge import _fast  # noqa: E402
from edge._fast import _sodium, codec_py, hashing_py, sig_py, smt_py  # noqa: E402

THREADS = os.cpu_count() or 1
COIN = 10**8


def best_of(rounds, fn):
    """The fastest of ``rounds`` timed calls of ``fn()``, in seconds."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


# -- signatures ------------------------------------------------------------------------------------

def signed_batch(n):
    keys = [SigningKey(bytes([i % 251 + 1]) * 32) for i in range(64)]
    msgs = [os.urandom(32) for _ in range(n)]
    pks = [bytes(keys[i % 64].verify_key) for i in range(n)]
    sigs = [keys[i % 64].sign(msgs[i]).signature for i in range(n)]
    return pks, msgs, sigs


def raw_verify_limit(pks, msgs, sigs):
    """A callable verifying the batch with libsodium straight through cffi (which releases the
    GIL), one chunk per thread: the limit our verifier is measured against."""
    verify = _sodium._lib.crypto_sign_verify_detached
    n = len(pks)
    bounds = [(n * t // THREADS, n * (t + 1) // THREADS) for t in range(THREADS)]
    pool = ThreadPoolExecutor(THREADS)

    def chunk(bound):
        return [verify(sigs[i], msgs[i], len(msgs[i]), pks[i]) == 0 for i in range(*bound)]

    return lambda: list(pool.map(chunk, bounds))


def bench_verify(n, rounds):
    pks, msgs, sigs = signed_batch(n)
    compiled = _fast.compiled_modules()["sig"]
    assert all(compiled.verify_batch(pks, msgs, sigs))
    limit = raw_verify_limit(pks, msgs, sigs)
    limit_s = ours_s = float("inf")
    for _ in range(rounds):  # interleaved, so both see the same machine
        limit_s = min(limit_s, best_of(1, limit))
        ours_s = min(ours_s, best_of(1, lambda: compiled.verify_batch(pks, msgs, sigs)))
    ref_s = best_of(1, lambda: sig_py.verify_batch(pks[:n // 4], msgs[:n // 4], sigs[:n // 4])) * 4
    return {"verify_per_s": n / ours_s, "verify_limit_per_s": n / limit_s,
            "verify_ratio": limit_s / ours_s, "verify_reference_per_s": n / ref_s}


# -- codec -----------------------------------------------------------------------------------------

def bench_codec(rounds):
    rng = random.Random(7)
    txs = [(1, "ss-bench", rng.randbytes(32), i, 2_500, (rng.randbytes(20), COIN + i, b""),
            rng.randbytes(64)) for i in range(1000)]
    # version, height, prev_hash, timestamp_ms, slot, producer, reveal, renewal, justified_round,
    # lib_height, tx_root, votes_root, state_root, receipts_root, signature (docs/protocol.md §5)
    header = (codec_py.HEADER_VERSION, 9, bytes(32), 1_000, 9, bytes(32), bytes(32), None, 7, 6,
              bytes(32), bytes(32), bytes(32), bytes(32), bytes(64))
    compiled = _fast.compiled_modules()["codec"]

    def round_trip(codec):
        raw = codec.encode_block(codec.encode_header(header), [codec.encode_tx(t) for t in txs])
        assert codec.decode_block(raw)[2] == txs

    ref_s = best_of(rounds, lambda: round_trip(codec_py))
    c_s = best_of(rounds, lambda: round_trip(compiled))
    return {"codec_speedup": ref_s / c_s, "codec_block_ms_reference": ref_s * 1e3,
            "codec_block_ms": c_s * 1e3}


# -- SMT -------------------------------------------------------------------------------------------

class ReferenceTree(SparseMerkleTree):
    __slots__ = ()
    engine = smt_py


class CompiledTree(SparseMerkleTree):
    __slots__ = ()
    engine = _fast.compiled_modules().get("smt")


def bench_smt(rounds, prefill=10_000, updates=1_000):
    """Both inner loops on identical trees and change sets, rounds interleaved (VM noise hits
    both alike); the best round of each counts."""
    rng = random.Random(11)
    best = {"reference": float("inf"), "compiled": float("inf")}
    inner = dict(best)
    with tempfile.TemporaryDirectory(prefix="bench-fast-") as path:
        env = lmdb.open(path, max_dbs=8, map_size=1 << 32, sync=False)
        keys = [rng.randbytes(32) for _ in range(prefill)]
        genesis = {k: rng.randbytes(40) for k in keys}
        trees = {}
        for name, cls in (("reference", ReferenceTree), ("compiled", CompiledTree)):
            trees[name] = cls(env.open_db(name.encode()))
            with env.begin(write=True) as txn:
                trees[name].update(txn, None, 0, genesis)
        for version in range(rounds):
            changes = {k: rng.randbytes(40) for k in rng.sample(keys, updates * 7 // 10)}
            changes.update({rng.randbytes(32): rng.randbytes(40)
                            for _ in range(updates - len(changes))})
            roots = set()
            for name, tree in trees.items():
                with env.begin(write=True) as txn:
                    start = time.perf_counter()
                    roots.add(tree.update(txn, version, version + 1, changes))
                    best[name] = min(best[name], time.perf_counter() - start)
                    inner[name] = min(inner[name], time_inner_loop(tree, txn, version + 1, changes))
            assert len(roots) == 1, "the twins disagree on the root"
        env.close()
    return {"smt_speedup": best["reference"] / best["compiled"],
            "smt_updates_per_s": updates / best["compiled"],
            "smt_updates_per_s_reference": updates / best["reference"],
            "smt_inner_loop_speedup": inner["reference"] / inner["compiled"]}


def bench_smt_big(rounds, prefill=1_000_000, updates=1_000, chunk=50_000):
    """Both engines on ONE tree of ``prefill`` keys in an LMDB opened with sync on, as the node
    opens its own: each round the reference computes the update in a transaction it aborts,
    then the compiled engine computes the same update and commits it (synced). The speedup is
    given for the update alone and with the synced commit both would pay."""
    rng = random.Random(12)
    best = {"reference": float("inf"), "compiled": float("inf"), "commit": float("inf")}
    with tempfile.TemporaryDirectory(prefix="bench-fast-big-") as path:
        env = lmdb.open(path, max_dbs=8, map_size=1 << 40, sync=True)
        db = env.open_db(b"chain")             # one database, as the node's (§10.2)
        trees = {"reference": ReferenceTree(db), "compiled": CompiledTree(db)}
        keys = [rng.randbytes(32) for _ in range(prefill)]
        version = None
        for start in range(0, prefill, chunk):
            with env.begin(write=True) as txn:
                new = 0 if version is None else version + 1
                trees["compiled"].update(txn, version, new,
                                         {k: rng.randbytes(40) for k in keys[start:start + chunk]})
                version = new
        for _ in range(rounds):
            changes = {k: rng.randbytes(40) for k in rng.sample(keys, updates * 7 // 10)}
            changes.update({rng.randbytes(32): rng.randbytes(40)
                            for _ in range(updates - len(changes))})
            roots = set()
            for name in ("reference", "compiled"):
                txn = env.begin(write=True)
                start = time.perf_counter()
                roots.add(trees[name].update(txn, version, version + 1, changes))
                best[name] = min(best[name], time.perf_counter() - start)
                if name == "reference":
                    txn.abort()
                    continue
                start = time.perf_counter()
                txn.commit()
                best["commit"] = min(best["commit"], time.perf_counter() - start)
            assert len(roots) == 1, "the twins disagree on the root"
            version += 1
        env.close()
    return {"smt_1m_keys": prefill, "smt_1m_speedup": best["reference"] / best["compiled"],
            "smt_1m_speedup_with_commit": (best["reference"] + best["commit"])
            / (best["compiled"] + best["commit"]),
            "smt_1m_updates_per_s": updates / best["compiled"],
            "smt_1m_commit_ms": best["commit"] * 1e3}


def time_inner_loop(tree, txn, version, changes):
    """The engine's update alone (reads through LMDB, writes nothing) on the version just made."""
    keys = sorted(changes)
    base = tree._root_ref(txn, version)
    start = time.perf_counter()
    tree.engine.update(base, keys, [changes[k] for k in keys], version + 1,
                       tree._node_getter(txn))
    return time.perf_counter() - start


# -- hashing ---------------------------------------------------------------------------------------

def bench_hash(rounds, n=10_000):
    items = [os.urandom(32) for _ in range(n)]
    prefix = bytes((len(hashing_py.TAG_MERKLE_LEAF),)) + hashing_py.TAG_MERKLE_LEAF

    def python_loop():
        return [hashlib.blake2b(prefix + item, digest_size=32).digest() for item in items]

    compiled = _fast.compiled_modules()["hashing"]
    assert compiled.hash_batch(hashing_py.TAG_MERKLE_LEAF, items) == python_loop()
    loop_s = best_of(rounds, python_loop)
    c_s = best_of(rounds, lambda: compiled.hash_batch(hashing_py.TAG_MERKLE_LEAF, items))
    return {"hash_speedup": loop_s / c_s, "hash_batch_per_s": n / c_s}


# -- full block validation -------------------------------------------------------------------------

def bench_block(rounds, n=1000):
    """Decode + validate + apply + commit blocks of ``n`` transfers from distinct senders, each
    round beside a measurement of the raw verify limit on a batch of the same size."""
    senders = [KeyPair.from_seed(i.to_bytes(32, "big")) for i in range(1, n + 1)]
    producer = KeyPair.from_seed(b"\xaa" * 32)
    params = Params(max_block_txs=n)
    genesis = bench_genesis(senders, producer, params)
    limit = raw_verify_limit(*signed_batch(n))
    best_block = best_limit = float("inf")
    ratios = []
    with tempfile.TemporaryDirectory(prefix="bench-block-") as path:
        builder = Ledger(Store(os.path.join(path, "a")), genesis)
        checker = Ledger(Store(os.path.join(path, "b")), genesis)
        for round_ in range(rounds):
            raw = block_of_transfers(builder, genesis, params, senders, producer, round_).encode()
            start = time.perf_counter()
            checker.apply_block(Block.decode(raw))
            block_s = time.perf_counter() - start
            limit_s = best_of(1, limit)
            ratios.append(limit_s / block_s)
            best_block, best_limit = min(best_block, block_s), min(best_limit, limit_s)
        builder.store.close()
        checker.store.close()
    ratios.sort()
    return {"block_validate_txs_per_s": n / best_block, "block_validate_ms": best_block * 1e3,
            "block_validate_ratio": ratios[len(ratios) // 2]}


def block_of_transfers(builder, genesis, params, senders, producer, round_):
    """A valid block in which every sender pays its neighbour, built and applied on ``builder``."""
    n, txs = len(senders), []
    for i, key in enumerate(senders):
        payload = Transfer(senders[(i + 1 + round_) % n].address, COIN)
        fee = params.min_fee_for(len(Tx(genesis.chain_id, key.pubkey, round_, 0, payload).raw) + 2)
        txs.append(Tx(genesis.chain_id, key.pubkey, round_, fee, payload).signed_by(key))
    block, rejected = builder.build_block(BlockSigner(producer), builder.head.slot + 1, txs)
    assert not rejected and len(block.txs) == n
    builder.apply_block(block)
    return block


def bench_genesis(senders, producer, params):
    total = SSP_SUPPLY * COIN
    pool = 10**6 * COIN
    allocations = [Allocation(k.address, 1000 * COIN) for k in senders]
    allocations.append(Allocation(producer.address, 0, params.agent_min_stake))
    rest = total - pool - sum(a.balance + a.stake for a in allocations)
    allocations.append(Allocation(address_from_pubkey(bytes(32)), rest))
    pools, allocations = simple_plan(total, pool, allocations)
    return Genesis("ss-bench", 1_700_000_000_000, 8, total, pool, params, allocations,
                   (genesis_agent(producer, "bench", producer.address),), pools=pools)


# -- report ----------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--big-tree", type=int, default=None, metavar="KEYS",
                        help="keys of the synced large-tree SMT comparison (default 1000000; "
                             "100000 with --quick; 0: skip it)")
    args = parser.parse_args()
    big = args.big_tree if args.big_tree is not None else (100_000 if args.quick else 1_000_000)
    rounds = 2 if args.quick else 5
    figures = {"threads": THREADS, "implementation": _fast.IMPLEMENTATION}
    figures.update(bench_verify(2000 if args.quick else 8000, rounds))
    figures.update(bench_codec(rounds))
    figures.update(bench_smt(rounds))
    if big:
        figures.update(bench_smt_big(rounds, prefill=big))
    figures.update(bench_hash(rounds))
    figures.update(bench_block(3 if args.quick else 7))
    print_table(figures)
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))


TARGETS = [
    ("verify_per_s", "batch verify, compiled, all cores", "/s", None),
    ("verify_limit_per_s", "raw libsodium, same threads", "/s", None),
    ("verify_ratio", "verify ratio", "x", 0.90),
    ("verify_reference_per_s", "batch verify, reference", "/s", None),
    ("codec_speedup", "codec block round trip", "x", 10),
    ("smt_speedup", "SMT 1,000 updates + root", "x", 5),
    ("smt_inner_loop_speedup", "  of which the inner loop alone", "x", None),
    ("smt_1m_speedup", "SMT 1,000 updates + root, big tree, sync", "x", None),
    ("smt_1m_speedup_with_commit", "  the same with its synced commit", "x", None),
    ("smt_1m_commit_ms", "  synced commit of those 1,000 (compiled)", "ms", None),
    ("hash_speedup", "batch leaf hashing vs hashlib loop", "x", None),
    ("block_validate_txs_per_s", "1,000-transfer block validation", "tx/s", None),
    ("block_validate_ratio", "block validation / verify limit (median)", "x", 0.50),
]


def print_table(f):
    print(f"edge/_fast on {f['threads']} threads ({f['implementation']} build)")
    print(f"{'measure':<40}{'value':>14}   target")
    if "smt_1m_keys" in f:
        print(f"(big tree: {f['smt_1m_keys']:,} keys in LMDB with sync on)")
    for key, label, unit, target in TARGETS:
        if key not in f:
            continue
        value = f[key]
        shown = f"{value:,.0f} {unit}" if unit != "x" else f"{value:.2f} x"
        verdict = "" if target is None else (f">= {target}  " + ("ok" if value >= target
                                                                 else "MISSED"))
        print(f"{label:<40}{shown:>14}   {verdict}")


if __name__ == "__main__":
    main()
