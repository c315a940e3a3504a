"""Throughput and finality of a 4-node testnet of real node processes on this machine.

Starts a testnet, funds sender accounts, pre-signs transfers, then drives them for ``--seconds``
from several client threads (round-robin over the nodes' APIs) and measures: committed
transfers per second, the median time from a block's slot to its irreversibility, and the node
processes' CPU time per committed transfer. Then it floods every node's p2p port from many
loopback source addresses (tests/floodkit.py: garbage handshakes, valid hello1s, slow
half-handshakes, 50 sybil keys) and measures the nodes' CPU per flood connection against idle, and
the same transfer drive again under the flood (``tps_under_handshake_flood``), side by side with
the one before. Then it kills two of the four producers (SIGKILL) for
three rounds, starts them again and measures how long finality takes to resume
(``lib_recovery_s``, from the restart until the LIB passes where it froze). Prints a table, then
one JSON object last.

    python bench/network.py [--nodes 4] [--seconds 30] [--clients 4] [--senders 400]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chain.genesis import Genesis  # noqa: E402
from chain.keys import KeyPair  # noqa: E402
from chain.tx import Transfer, Tx  # noqa: E402
from edge import testnet  # noqa: E402
from edge.client import ApiClient, ApiError  # noqa: E402

COIN = 10**8
BATCH = 250


def signed(key, chain_id, params, nonce, to, amount):
    payload = Transfer(to, amount)
    fee = params.min_fee_for(len(Tx(chain_id, key.pubkey, nonce, 0, payload).raw) + 4)
    return Tx(chain_id, key.pubkey, nonce, fee, payload).signed_by(key).raw


def submit_all(client, raws):
    for i in range(0, len(raws), BATCH):
        results = client.submit(raws[i:i + BATCH])
        bad = [r for r in results if not r["accepted"]]
        if bad:
            raise SystemExit(f"a transfer was refused: {bad[0]}")


def wait_committed(client, tx_raw_list, timeout=120):
    ids = [Tx.decode(raw).id.hex() for raw in tx_raw_list]
    deadline = time.monotonic() + timeout
    for tx_id in ids:
        while client.get(f"/v1/txs/{tx_id}")["status"] != "committed":
            if time.monotonic() > deadline:
                raise SystemExit("funding transfers were not committed in time")
            time.sleep(0.2)


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Watcher(threading.Thread):
    """Polls one node: when each height is first seen, and when it became irreversible."""

    def __init__(self, client):
        super().__init__(daemon=True)
        self.client, self.stop = client, threading.Event()
        self.lib_seen = {}

    def run(self):
        last_lib = self.client.get("/v1/status")["lib_height"]
        while not self.stop.is_set():
            try:
                lib = self.client.get("/v1/status")["lib_height"]
            except ApiError:
                continue
            now = time.time()
            for h in range(last_lib + 1, lib + 1):
                self.lib_seen[h] = now
            last_lib = max(last_lib, lib)
            time.sleep(0.05)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--senders", type=int, default=400)
    parser.add_argument("--per-sender", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-net-") as directory:
        manifest = testnet.create(directory, args.nodes)
        try:
            testnet.start(directory)
            figures = drive(directory, manifest, args)
            figures.update(measure_flood(directory, manifest, args))
            figures.update(measure_lib_recovery(directory, manifest))
        finally:
            testnet.stop(directory)
    report(args, figures)


def drive(directory, manifest, args):
    nodes = manifest["nodes"]
    clients = [ApiClient.for_home(n["home"], n["api"], timeout=30) for n in nodes]
    genesis = Genesis.load(os.path.join(nodes[0]["home"], "genesis.json"))
    chain_id, params = genesis.chain_id, genesis.params
    faucet = KeyPair.load(os.path.join(nodes[0]["home"], "wallets", "default.json"))
    senders = [KeyPair.generate() for _ in range(args.senders)]
    first = clients[0].get(f"/v1/accounts/{faucet.address_text}")["next_nonce"]
    funding = [signed(faucet, chain_id, params, first + i, s.address, 10_000 * COIN)
               for i, s in enumerate(senders)]
    submit_all(clients[0], funding)
    wait_committed(clients[0], funding[-1:])
    print(f"funded {len(senders)} senders; signing {len(senders) * args.per_sender} transfers",
          file=sys.stderr)
    streams = [[] for _ in range(args.clients)]  # each client: its own senders, nonce order
    for i, s in enumerate(senders):
        to = senders[(i + 1) % len(senders)].address
        streams[i % args.clients].append([signed(s, chain_id, params, n, to, 1)
                                          for n in range(args.per_sender)])
    work = [[raw for n in range(args.per_sender) for raw in (b[n] for b in stream)]
            for stream in streams]
    pids = [testnet.node_pid(n) for n in nodes]
    watcher = Watcher(clients[0])
    watcher.start()
    start_height = clients[0].get("/v1/status")["height"]
    cpu_start, started = cpu_seconds(pids), time.time()
    refused = feed(clients, work, args)
    elapsed = time.time() - started
    end_height = clients[0].get("/v1/status")["height"]
    cpu = cpu_seconds(pids) - cpu_start
    committed, finality = 0, []
    for h in range(start_height + 1, end_height + 1):
        block = clients[0].get(f"/v1/blocks/{h}")
        committed += len(block["txs"])
        if h in watcher.lib_seen:
            finality.append(watcher.lib_seen[h] - block["header"]["timestamp_ms"] / 1000)
    watcher.stop.set()
    return {"nodes": args.nodes, "seconds": round(elapsed, 1), "committed": committed,
            "tps": round(committed / elapsed), "finality_s": round(statistics.median(finality), 2)
            if finality else None, "cpu_per_tx_us": round(cpu / max(committed, 1) * 1e6),
            "blocks": end_height - start_height, "refused": refused}


def measure_lib_recovery(directory, manifest):
    """Two producers of four down for three rounds, then back: seconds from their restart
    until the LIB moves past where it froze (and the same in rounds of slots)."""
    nodes = manifest["nodes"]
    client = ApiClient(nodes[0]["api"], timeout=10)
    genesis = Genesis.load(os.path.join(nodes[0]["home"], "genesis.json"))
    round_s = len(client.get("/v1/schedule")["producers"]) * genesis.params.slot_ms / 1000
    for entry in nodes[2:4]:
        os.kill(testnet.node_pid(entry), 9)
    time.sleep(3 * round_s)
    frozen = client.get("/v1/status")["lib_height"]
    time.sleep(round_s)
    restarted = time.time()
    testnet.start(directory)
    while client.get("/v1/status")["lib_height"] <= frozen:
        if time.time() - restarted > 120:
            return {"lib_recovery_s": None}
        time.sleep(0.05)
    seconds = time.time() - restarted
    return {"lib_recovery_s": round(seconds, 2), "lib_recovery_rounds": round(seconds / round_s,
                                                                              1)}


FLOOD_WARMUP_S = 3.0
FLOOD_WINDOW_S = 10.0


class Flood:
    """tests/floodkit.py processes hitting every node's p2p port at once: garbage handshakes
    from 200 source addresses, valid hello1s from 200 more, slow half-handshakes and 50 sybil
    keys, each kind from its own part of 127.0.0.0/8. They run at nice 19: an attacker's CPU is
    its own, so on this shared machine the flooders get only what the nodes leave (the rate
    they reach is reported)."""

    KINDS = (("garbage", "127.0.1.1", 200, 400), ("hello", "127.0.2.1", 200, 400),
             ("slow", "127.0.3.1", 10, 20), ("sybil", "127.0.4.1", 1, 10))

    def __init__(self, manifest, seconds):
        targets = [a for n in manifest["nodes"] for a in ("--target",
                                                          f"127.0.0.1:{n['p2p_port']}")]
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.procs = [subprocess.Popen(
            ["nice", "-n", "19", sys.executable, "-m", "tests.floodkit", *targets,
             "--mode", mode, "--source", source, "--sources", str(sources), "--rate", str(rate),
             "--seconds", str(seconds), "--keys", "50", "--chain-id", manifest["chain_id"],
             "--genesis", manifest["genesis_hash"]], cwd=root, stdout=subprocess.PIPE)
            for mode, source, sources, rate in self.KINDS]

    def cpu_seconds(self):
        return cpu_seconds([p.pid for p in self.procs])

    def stop(self):
        """End every flood process; their figures."""
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        return [json.loads(p.communicate(timeout=60)[0]) for p in self.procs]


def refusals(clients):
    """Connections refused plus handshakes failed, over every node (from /metrics)."""
    total = 0
    for client in clients:
        for line in client.get_text("/metrics").splitlines():
            if line.startswith(("smartshare_p2p_refused_total{",
                                "smartshare_p2p_handshakes_failed_total{")):
                total += float(line.rpartition(" ")[2])
    return total


def measure_flood(directory, manifest, args):
    """Node CPU idle vs. under the flood alone (per refused connection), then the transfer
    drive again with the flood still running: tps_under_handshake_flood."""
    nodes = manifest["nodes"]
    clients = [ApiClient.for_home(n["home"], n["api"], timeout=30) for n in nodes]
    pids = [testnet.node_pid(n) for n in nodes]
    cpu0, t0 = cpu_seconds(pids), time.time()
    time.sleep(FLOOD_WINDOW_S)
    idle_cpu_per_s = (cpu_seconds(pids) - cpu0) / (time.time() - t0)
    flood = Flood(manifest, seconds=FLOOD_WARMUP_S + FLOOD_WINDOW_S + args.seconds + 300)
    try:
        time.sleep(FLOOD_WARMUP_S)
        cpu0, refused0, flooder0, t0 = cpu_seconds(pids), refusals(clients), \
            flood.cpu_seconds(), time.time()
        time.sleep(FLOOD_WINDOW_S)
        window = time.time() - t0
        flood_cpu_per_s = (cpu_seconds(pids) - cpu0) / window
        refused_per_s = (refusals(clients) - refused0) / window
        flooder_cpu_per_s = (flood.cpu_seconds() - flooder0) / window
        under = drive(directory, manifest, args)
    finally:
        results = flood.stop()
    offered = sum(r["attempts"] for r in results) / max(r["seconds"] for r in results)
    extra_us = (flood_cpu_per_s - idle_cpu_per_s) / max(refused_per_s, 1) * 1e6
    return {"tps_under_handshake_flood": under["tps"],
            "finality_under_flood_s": under["finality_s"],
            "flood_offered_per_s": round(offered), "flood_refused_per_s": round(refused_per_s),
            "flood_node_cpu_us_per_refusal": round(extra_us, 1),
            "flood_node_cpu_pct": round(100 * (flood_cpu_per_s - idle_cpu_per_s), 1),
            "flood_sybils_held": max(r["max_held"] for r in results if r["mode"] == "sybil"),
            "flooder_cpu_pct": round(100 * flooder_cpu_per_s, 1)}


def feed(clients, work, args):
    """Client ``k`` submits its own stream to node ``k`` (a sender's transactions go to one
    node, in nonce order, as a wallet would) for ``args.seconds``; returns refusals."""
    deadline = time.monotonic() + args.seconds
    refused = [0] * len(work)
    reasons = {}

    def client_loop(k):
        client, stream = clients[k % len(clients)], work[k]
        for start in range(0, len(stream), BATCH):
            if time.monotonic() >= deadline:
                return
            try:
                results = client.submit(stream[start:start + BATCH])
            except ApiError:
                time.sleep(0.1)
                continue
            refused[k] += sum(not r["accepted"] for r in results)
            for r in results:
                if not r["accepted"]:
                    reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1

    threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(len(work))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    remaining = deadline - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
    if reasons:
        print(f"refused: {reasons}", file=sys.stderr)
    return sum(refused)


def report(args, f):
    print(f"{f['nodes']}-node testnet, {f['seconds']} s of transfers")
    print(f"{'committed transfers':<34}{f['committed']:>10,}")
    print(f"{'sustained throughput':<34}{f['tps']:>10,} tx/s   target >= 2,000")
    print(f"{'median slot-to-irreversible':<34}{f['finality_s']!s:>10} s")
    print(f"{'node CPU per committed transfer':<34}{f['cpu_per_tx_us']:>10,} us")
    print(f"{'throughput under handshake flood':<34}{f['tps_under_handshake_flood']:>10,} tx/s   "
          f"({f['flood_offered_per_s']:,} connections/s offered, "
          f"{f['flood_refused_per_s']:,}/s refused or failed)")
    print(f"{'finality under flood':<34}{f['finality_under_flood_s']!s:>10} s")
    print(f"{'node CPU per flood connection':<34}{f['flood_node_cpu_us_per_refusal']:>10,} us   "
          f"({f['flood_node_cpu_pct']}% of a core over idle, 4 nodes; flooder "
          f"{f['flooder_cpu_pct']}%)")
    print(f"{'sybil links held (50 keys)':<34}{f['flood_sybils_held']:>10}")
    print(f"{'LIB recovery (2 of 4 back)':<34}{f['lib_recovery_s']!s:>10} s   "
          f"({f.get('lib_recovery_rounds')} rounds, incl. process start and sync)")
    print(json.dumps(f))


if __name__ == "__main__":
    main()
