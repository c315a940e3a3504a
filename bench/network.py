"""Throughput and finality of a 4-node testnet of real node processes on this machine.

Starts a testnet, funds sender accounts, pre-signs transfers, then drives them for ``--seconds``
from several client threads (round-robin over the nodes' APIs) and measures: committed
transfers per second, the median time from a block's slot to its irreversibility, and the node
processes' CPU time per committed transfer. Then it kills two of the four producers (SIGKILL) for
three rounds, starts them again and measures how long finality takes to resume
(``lib_recovery_s``, from the restart until the LIB passes where it froze). Prints a table, then
one JSON object last.

    python bench/network.py [--nodes 4] [--seconds 30] [--clients 4] [--senders 400]
"""

import argparse
import json
import os
import statistics
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
    funding = [signed(faucet, chain_id, params, i, s.address, 10_000 * COIN)
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
    print(f"{'LIB recovery (2 of 4 back)':<34}{f['lib_recovery_s']!s:>10} s   "
          f"({f.get('lib_recovery_rounds')} rounds, incl. process start and sync)")
    print(json.dumps(f))


if __name__ == "__main__":
    main()
