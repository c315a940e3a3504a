"""A node process flooded with maximum-gas contract calls: does its API still answer?

Starts a one-node testnet (1 s slots), deploys a contract whose method spins until its gas runs
out, funds senders, then measures ``GET /v1/status`` latency twice, side by side in one run: idle,
and while client threads submit maximum-gas calls of that method as fast as the node takes them
(each is dry-run at admission and executed when built into a block). Reports the p50 and p99
latency of both, the blocks produced during the flood against the slots that passed, and how
the node answered the flood (accepted, refused ``busy``...).

Used by bench/contracts.py; runnable alone: ``python bench/contract_flood.py [seconds]``.
"""

import os
import sys
import tempfile
import threading
import time
from collections import Counter

# bench/contracts.py is named like the package measured here: keep bench/ off the import path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from chain.calls import contract_address  # noqa: E402
from chain.genesis import Genesis  # noqa: E402
from chain.keys import KeyPair  # noqa: E402
from chain.tx import Call, Deploy, Transfer, Tx  # noqa: E402
from contracts.values import encode_value  # noqa: E402
from edge import testnet  # noqa: E402
from edge.client import ApiClient  # noqa: E402

SPIN = "function spin() while true do local t = {} end end"
SENDERS = 60
FLOODERS = 3


def signed(chain_id, params, key, nonce, payload):
    gas = getattr(payload, "gas_limit", 0)
    fee = params.min_fee_for(len(Tx(chain_id, key.pubkey, nonce, 0, payload).raw) + 4, gas)
    return Tx(chain_id, key.pubkey, nonce, fee, payload).signed_by(key).raw


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def latencies(client, seconds):
    """Milliseconds of each ``GET /v1/status`` made one after another for ``seconds``."""
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        start = time.perf_counter()
        client.get("/v1/status")
        out.append((time.perf_counter() - start) * 1000)
        time.sleep(0.01)
    return out


def setup(entry):
    """Deploy SPIN and fund the senders; (client, chain_id, params, target, senders)."""
    client = ApiClient.for_home(entry["home"], entry["api"], timeout=30)
    genesis = Genesis.load(os.path.join(entry["home"], "genesis.json"))
    chain_id, params = genesis.chain_id, genesis.params
    faucet = KeyPair.load(os.path.join(entry["home"], "wallets", "default.json"))
    nonce = client.get(f"/v1/accounts/{faucet.address_text}")["next_nonce"]
    senders = [KeyPair.generate() for _ in range(SENDERS)]
    raws = [signed(chain_id, params, faucet, nonce, Deploy(SPIN.encode(), b"", 300_000))]
    raws += [signed(chain_id, params, faucet, nonce + 1 + i, Transfer(k.address, 10**13))
             for i, k in enumerate(senders)]
    assert all(r["accepted"] for r in client.submit(raws))
    deadline = time.monotonic() + 60
    while client.get(f"/v1/accounts/{senders[-1].address_text}")["balance"] == "0":
        if time.monotonic() > deadline:
            raise SystemExit("the flood's setup was not committed in time")
        time.sleep(0.2)
    return client, chain_id, params, contract_address(faucet.address, nonce), senders


def flood(entry, seconds):
    """The figures of one flood against the node of ``entry`` (see the module docstring)."""
    client, chain_id, params, target, senders = setup(entry)
    idle = latencies(client, min(seconds, 5))
    answers, stop = Counter(), threading.Event()

    def flooder(k):
        mine = senders[k::FLOODERS]
        api = ApiClient.for_home(entry["home"], entry["api"], timeout=120)
        nonce = 0
        while not stop.is_set():
            raws = [signed(chain_id, params, key, nonce, Call(
                target, "spin", encode_value([]), 0, params.max_gas_per_tx)) for key in mine]
            for result in api.submit(raws):
                answers[result.get("reason", "accepted")] += 1
            nonce += 1
    threads = [threading.Thread(target=flooder, args=(k,), daemon=True) for k in range(FLOODERS)]
    start_status = client.get("/v1/status")
    for t in threads:
        t.start()
    try:
        loaded = latencies(client, seconds)
        end_status = client.get("/v1/status")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=180)
    slots = end_status["slot"] - start_status["slot"]
    return {
        "api_p50_ms_idle": round(percentile(idle, 50), 1),
        "api_p99_ms_idle": round(percentile(idle, 99), 1),
        "api_p50_ms_under_flood": round(percentile(loaded, 50), 1),
        "api_p99_ms_under_flood": round(percentile(loaded, 99), 1),
        "flood_blocks": end_status["height"] - start_status["height"], "flood_slots": slots,
        "flood_answers": dict(answers),
    }


def run(seconds=20):
    """Create, flood and stop a one-node testnet in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="ss-flood-") as directory:
        manifest = testnet.create(os.path.join(directory, "net"), 1, slot_ms=1000)
        try:
            testnet.start_node(manifest["nodes"][0])
            testnet.wait_ready(manifest)
            return flood(manifest["nodes"][0], seconds)
        finally:
            testnet.stop(os.path.join(directory, "net"))


if __name__ == "__main__":
    print(run(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
