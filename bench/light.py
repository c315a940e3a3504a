"""A light node against a 4-node testnet of real node processes, after 10,000 blocks.

1. In this process: the finality proof of a 21-producer chain (real ledger, real votes); a
   light client's LightChain on its own store checking and keeping the chain's 10,000 headers
   (signature, schedule recomputed, round records and finality entries proven): headers/s, and
   its store once the window is full (``window_disk_mb``: the steady size, however long it
   runs); state proofs/s.
2. Real processes: a 4-node testnet whose first ``--blocks`` blocks (default 10,000) were made
   here beforehand; once the live testnet has finalised a block above them (before that there
   is no checkpoint to learn: ``network_ready_s``), a light node process that learns its
   checkpoint from its peers (``bootstrap_s``: from its start to following the head), and a second one that starts from
   genesis and checks the finality of every round since (``genesis_sync_s``). The first runs
   for ``--seconds`` (default 60) following the head: its peak RSS, its head lag behind the
   full nodes, and its disk at the end.

Prints a table, then one JSON object last.

    python bench/light.py [--blocks 10000] [--seconds 60]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chain.genesis import Genesis  # noqa: E402
from chain.keys import KeyPair  # noqa: E402
from chain.ledger import Ledger  # noqa: E402
from chain.light.entries import finality_entries  # noqa: E402
from chain.light.finality import FinalityEntry  # noqa: E402
from chain.light.chain import DEFAULT_WINDOW, LightChain  # noqa: E402
from chain.light.follow import HeaderRules  # noqa: E402
from chain.light.store import LightStore  # noqa: E402
from chain.producer import BlockSigner, watermark_path  # noqa: E402
from chain.state.proof import verify_proof  # noqa: E402
from chain.state.records import account_key  # noqa: E402
from chain.store import Store  # noqa: E402
from edge import testnet  # noqa: E402
from edge.client import ApiClient, ApiError  # noqa: E402

SLOT_MS = 500
HEADER_BATCH = 128  # headers checked, then stored in one transaction (as from one peer message)


# -- in this process -----------------------------------------------------------------------------

def finality_proof_bytes(directory):
    """Sizes of real finality proofs of a 21-producer chain (three rounds)."""
    from tests.chainkit import TEST_PARAMS, TestChain
    params = TEST_PARAMS._replace(producers_per_round=21, standby_slots=1, max_votes=30,
                                  evidence_window=100, unbonding_blocks=100)
    chain = TestChain(os.path.join(directory, "p21"), n_agents=21, params=params)
    for _ in range(22 * 4):
        chain.block()
    sizes = [len(FinalityEntry.decode(raw).proof.encode())
             for raw in finality_entries(chain.ledger, 0, 64)]
    chain.store.close()
    return sizes


def follow_rate(directory, blocks, window=DEFAULT_WINDOW):
    """A light client's LightChain, on its own LMDB store with the default window, checking
    the ``blocks`` headers of a real 4-producer chain (producer against the recomputed schedule,
    signature, round records proven against the tracker, finality entries) and storing them in
    batches as the light node does. Returns headers/s, state proofs/s, finality entries/s and
    its store: disk bytes and the headers and rounds it keeps once the window is full."""
    from tests.chainkit import TEST_PARAMS, TestChain
    from tests.lightkit import chain_material, keep_headers
    params = TEST_PARAMS._replace(producers_per_round=4, standby_slots=1,
                                  evidence_window=4 * blocks, unbonding_blocks=4 * blocks)
    chain = TestChain(os.path.join(directory, "p4"), n_agents=5, params=params,
                      prune_depth=blocks + 10, map_size=4 << 30)
    for _ in range(blocks):
        chain.block()
    headers, rounds, entries, genesis_values = chain_material(chain)
    with chain.store.read() as txn:
        proofs = [chain.ledger.smt.prove(txn, blocks, account_key(k.address)) for k in chain.keys]
    store = LightStore(os.path.join(directory, "light-store"))
    light = LightChain(store, HeaderRules(chain.ledger.chain_id, params,
                                          chain.genesis.genesis_time_ms), window=window)
    light.bootstrap(headers[0], genesis_values)
    started = time.perf_counter()
    keep_headers(light, headers[1:], rounds, entries, HEADER_BATCH)
    elapsed = time.perf_counter() - started
    with store.read() as txn:
        low, high = store.window_bounds(txn)
        kept_rounds = txn.stat(store.db["light_rounds"])["entries"]
    kept = {"disk_bytes": store.disk_bytes(), "headers": high - low + 1, "rounds": kept_rounds,
            "lib_height": light.lib.height}
    store.close()
    head = headers[-1]
    keys = [account_key(k.address) for k in chain.keys]
    started_proofs = time.perf_counter()
    repeats = 200
    for _ in range(repeats):
        for key, (value, proof) in zip(keys, proofs):
            assert verify_proof(head.state_root, key, value, proof)
    proof_s = time.perf_counter() - started_proofs
    chain.store.close()
    return blocks / elapsed, repeats * len(keys) / proof_s, len(entries) / elapsed, kept


# -- a testnet with a history ---------------------------------------------------------------------

def make_testnet(directory, blocks):
    """A 4-node testnet whose genesis lies ``blocks`` slots in the past and whose first
    ``blocks`` blocks are made here (with the nodes' own keys and vote watermarks)."""
    manifest = testnet.create(directory, 4, slot_ms=SLOT_MS,
                              params={"evidence_window": 4 * blocks, "unbonding_blocks": 4 * blocks})
    homes = [n["home"] for n in manifest["nodes"]]
    genesis_doc = json.load(open(os.path.join(homes[0], "genesis.json")))
    build_s_guess = blocks * 0.004 + 10
    genesis_doc["genesis_time_ms"] = (int(time.time() * 1000) - blocks * SLOT_MS
                                      + int(build_s_guess * 1000)) // SLOT_MS * SLOT_MS
    for home in homes:
        with open(os.path.join(home, "genesis.json"), "w") as f:
            json.dump(genesis_doc, f, indent=2)
    genesis = Genesis.load(os.path.join(homes[0], "genesis.json"))
    signers = {}
    for home in homes:
        key = KeyPair.load(os.path.join(home, "node_key.json"))
        signers[key.pubkey] = BlockSigner(key, watermark_path(os.path.join(home, "votes"),
                                                              key.pubkey))
    store = Store(os.path.join(homes[0], "data"))
    ledger = Ledger(store, genesis)
    started = time.monotonic()
    slot = 1
    while ledger.head.height < blocks:
        producer = ledger.producer_for(slot)
        ledger.produce_block(signers[producer], slot, [])
        slot += 1
    build_s = time.monotonic() - started
    store.close()
    for home in homes[1:]:
        shutil.copytree(os.path.join(homes[0], "data"), os.path.join(home, "data"))
    manifest["genesis_hash"] = genesis.hash.hex()
    with open(os.path.join(directory, testnet.MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2)
    return manifest, build_s


def start_light(directory, name, manifest, checkpoint=""):
    home = os.path.join(directory, name)
    seeds = [f"127.0.0.1:{n['p2p_port']}" for n in manifest["nodes"][:3]]
    api_port = testnet.free_ports(1)[0]
    args = [sys.executable, "-m", "edge.cli", "--home", home, "init", "--role", "light",
            "--genesis", os.path.join(manifest["nodes"][0]["home"], "genesis.json"),
            "--api-port", str(api_port), "--checkpoint", checkpoint, "--json"]
    for seed in seeds:
        args += ["--seed", seed]
    subprocess.run(args, check=True, capture_output=True)
    log = open(os.path.join(home, "node.log"), "ab")
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "edge.cli", "--home", home, "node", "run"],
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return home, process, ApiClient(f"http://127.0.0.1:{api_port}", timeout=2), started


def wait_following(client, full, started, timeout=300):
    while time.monotonic() - started < timeout:
        try:
            status = client.get("/v1/status")
            head = full.get("/v1/status")["height"]
        except ApiError:
            time.sleep(0.05)
            continue
        if status.get("head_hash") and status["lib_height"] > 0 and status["height"] >= head - 1:
            return time.monotonic() - started
        time.sleep(0.05)
    raise SystemExit("the light node did not reach the head in time")


def wait_network_final(full, blocks, timeout=600):
    """Seconds until the testnet, live again, has made a block irreversible above the ones made
    beforehand (those carry no finality votes): before that there is no checkpoint to learn,
    and a light node's wait for one would be the network's start, not its own bootstrap."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if full.get("/v1/status")["lib_height"] > blocks:
                return time.monotonic() - started
        except ApiError:
            pass
        time.sleep(0.1)
    raise SystemExit("the testnet did not finalise a block in time")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def disk_mb(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.stat(os.path.join(root, name)).st_blocks * 512
    return total / 1e6


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="bench-light-")
    results = {}
    try:
        sizes = finality_proof_bytes(directory)
        headers_per_s, proofs_per_s, entries_per_s, kept = follow_rate(directory, args.blocks)
        manifest, build_s = make_testnet(os.path.join(directory, "net"), args.blocks)
        testnet.start(os.path.join(directory, "net"))
        full = ApiClient(manifest["nodes"][0]["api"], timeout=2)
        network_ready_s = wait_network_final(full, args.blocks)
        home, light, client, started = start_light(directory, "light", manifest)
        bootstrap_s = wait_following(client, full, started)
        g_home, g_light, g_client, g_started = start_light(directory, "from-genesis", manifest,
                                                          "genesis")
        genesis_sync_s = wait_following(g_client, full, g_started)
        g_light.terminate()
        g_light.wait(15)
        lags, peak = [], 0
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            try:
                lags.append(full.get("/v1/status")["height"] - client.get("/v1/status")["height"])
            except ApiError:
                pass
            peak = max(peak, rss_kb(light.pid)[1])
            time.sleep(0.25)
        status = client.get("/v1/status")
        light.terminate()
        light.wait(15)
        results = {
            "blocks_before": args.blocks, "build_s": round(build_s, 1),
            "network_ready_s": round(network_ready_s, 1),
            "rss_mb": round(peak / 1024, 1), "disk_mb": round(disk_mb(os.path.join(home,
                                                                                    "light")), 2),
            "bootstrap_s": round(bootstrap_s, 2), "genesis_sync_s": round(genesis_sync_s, 2),
            "head_lag_max": max(lags), "head_lag_p50": sorted(lags)[len(lags) // 2],
            "lib_lag": status["height"] - status["lib_height"],
            "headers_per_s": round(headers_per_s), "proof_verify_per_s": round(proofs_per_s),
            "finality_entries_per_s": round(entries_per_s),
            "window_disk_mb": round(kept["disk_bytes"] / 1e6, 2),
            "window_headers": kept["headers"], "window_rounds": kept["rounds"],
            "finality_proof_bytes": max(sizes), "finality_proof_bytes_min": min(sizes),
        }
    finally:
        testnet.stop(os.path.join(directory, "net"), timeout=10)
        shutil.rmtree(directory, ignore_errors=True)
    rows = [
        ("blocks made before the light nodes start", results["blocks_before"]),
        ("light node peak RSS (MB), target <= 30", results["rss_mb"]),
        ("light node disk (MB) at the end, target <= 5", results["disk_mb"]),
        ("bootstrap to the head (s), learned checkpoint, target <= 10", results["bootstrap_s"]),
        ("from genesis to the head (s), every round's finality checked",
         results["genesis_sync_s"]),
        ("head lag behind the full nodes (blocks): max / median, target <= 1",
         f"{results['head_lag_max']} / {results['head_lag_p50']}"),
        ("headers checked and stored per second (in process)", results["headers_per_s"]),
        (f"store after {results['blocks_before']} headers (MB), full window, target <= 5",
         f"{results['window_disk_mb']} ({results['window_headers']} headers, "
         f"{results['window_rounds']} rounds kept)"),
        ("state proofs verified per second", results["proof_verify_per_s"]),
        ("finality proof at 21 producers (bytes), target <= 1024",
         results["finality_proof_bytes"]),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
