"""Blocks always fit, and contract floods cannot stall a node: real node processes on 127.0.0.1.

- A 4-node testnet whose genesis makes blocks small (136 KiB, so that p2p frames are sized
  from the block limit) fills a block with maximum-size deploys; the block is gossiped to every
  running node, and a node that joins late syncs it (one block per Blocks message).
- A node flooded with maximum-gas contract calls from many senders keeps answering its API and
  producing blocks: dry runs are off the event loop and bounded, the rest is refused busy.
- A node refuses to start on a genesis that pins another VM (and such a genesis has another
  hash, which every handshake compares).
"""

import json
import os
import threading
import time

import pytest

from chain.block_limits import frame_limit
from chain.calls import contract_address
from chain.genesis import Genesis
from chain.keys import KeyPair
from chain.tx import Call, Deploy, Transfer, Tx
from contracts.values import encode_value
from edge import testnet
from edge.client import ApiClient
from tests.nodeproc import run_cli
from tests.test_network import Net

pytestmark = pytest.mark.slow
# Bytes bind first: 16 maximum-size deploys fill a block (17 would still fit its gas).
LIMITS = {"max_block_bytes": 136 * 1024, "max_code_bytes": 8192, "max_gas_per_tx": 1_000_000,
          "max_block_gas": 10_000_000}
DEPLOY_GAS = 540_000
CODE = "function f(n) local s = 0 for i = 1, n do s = s + i end return s end\n"


def signed(chain_id, key, nonce, payload, params):
    fee = params.min_fee_for(0, getattr(payload, "gas_limit", 0))
    while True:
        tx = Tx(chain_id, key.pubkey, nonce, fee, payload).signed_by(key)
        floor = params.min_fee_for(len(tx.raw), getattr(payload, "gas_limit", 0))
        if fee >= floor:
            return tx
        fee = floor


def max_size_deploy(chain_id, key, nonce, params, tag):
    """A deploy of max_code_bytes of valid source (a long comment pads it)."""
    head = f"{CODE}-- {tag} "
    code = (head + "x" * (params.max_code_bytes - len(head))).encode()
    assert len(code) == params.max_code_bytes
    return signed(chain_id, key, nonce, Deploy(code, b"", DEPLOY_GAS), params)


@pytest.fixture
def net_dir(tmp_path):
    directory = str(tmp_path / "net")
    yield directory
    if os.path.exists(os.path.join(directory, testnet.MANIFEST)):
        testnet.stop(directory, timeout=10)


def test_full_block_of_max_size_deploys_gossiped_and_synced_late(net_dir):
    manifest = testnet.create(net_dir, 4, slot_ms=5000, params=LIMITS)   # room for 10 M gas
    genesis = Genesis.load(os.path.join(manifest["nodes"][0]["home"], "genesis.json"))
    params = genesis.params
    assert frame_limit(params) == params.max_block_bytes + 1024      # sized from the block
    early, late = manifest["nodes"][:3], manifest["nodes"][3]
    for entry in early:
        testnet.start_node(entry)
    testnet.wait_ready({"nodes": early})
    net = Net(net_dir, manifest)
    clients = [ApiClient.for_home(n["home"], n["api"], timeout=10) for n in manifest["nodes"]]
    faucet = KeyPair.load(os.path.join(early[0]["home"], "wallets", "default.json"))
    nonce = clients[0].get(f"/v1/accounts/{faucet.address_text}")["next_nonce"]
    # 40 deploys: whatever the first producer had received, a later one holds 16 or more
    deploys = [max_size_deploy(genesis.chain_id, faucet, nonce + i, params, i) for i in range(40)]
    results = clients[0].submit([tx.raw for tx in deploys])
    assert all(r["accepted"] for r in results), results
    assert all(r["dry_run"]["ok"] for r in results)
    room = params.max_block_bytes - len(deploys[0].raw)

    def full_block():      # a block one more deploy would not fit in
        for height in range(1, clients[0].get("/v1/status")["height"] + 1):
            block = clients[0].get(f"/v1/blocks/{height}")
            if block["size"] > room:
                return block
    block = net.wait("a block filled with deploys", full_block)
    assert block["size"] <= params.max_block_bytes
    height, block_hash = block["header"]["height"], block["header"]["hash"]
    assert len(block["txs"]) == 16
    for client in clients[:3]:
        net.wait("the full block on every running node",
                 lambda c=client: c.get(f"/v1/blocks/{height}")["header"]["hash"] == block_hash)
    testnet.start_node(late)
    testnet.wait_ready({"nodes": [late]})
    net.wait("the late node to sync the full block",
             lambda: clients[3].get("/v1/status")["height"] >= height
             and clients[3].get(f"/v1/blocks/{height}")["header"]["hash"] == block_hash)
    deployed = clients[3].get(f"/v1/contracts/"
                              f"{_address_text(contract_address(faucet.address, nonce))}")
    assert deployed["code_size"] == params.max_code_bytes


def _address_text(raw):
    from chain.address import encode_address
    return encode_address(raw)


def test_node_answers_and_produces_while_flooded_with_max_gas_calls(net_dir):
    manifest = testnet.create(net_dir, 1, slot_ms=1000)
    entry = manifest["nodes"][0]
    testnet.start_node(entry)
    testnet.wait_ready(manifest)
    client = ApiClient.for_home(entry["home"], entry["api"], timeout=10)
    genesis = Genesis.load(os.path.join(entry["home"], "genesis.json"))
    params, chain_id = genesis.params, genesis.chain_id
    faucet = KeyPair.load(os.path.join(entry["home"], "wallets", "default.json"))
    nonce = client.get(f"/v1/accounts/{faucet.address_text}")["next_nonce"]
    spin = "function spin() while true do local t = {} end end"
    senders = [KeyPair.generate() for _ in range(40)]
    setup = [signed(chain_id, faucet, nonce, Deploy(spin.encode(), b"", 200_000), params)]
    setup += [signed(chain_id, faucet, nonce + 1 + i, Transfer(k.address, 10**10), params)
              for i, k in enumerate(senders)]
    assert all(r["accepted"] for r in client.submit([tx.raw for tx in setup]))
    target = contract_address(faucet.address, nonce)
    Net(net_dir, manifest).wait(
        "the contract and the senders' funds",
        lambda: client.get(f"/v1/accounts/{senders[-1].address_text}")["balance"] != "0")
    start_height = client.get("/v1/status")["height"]
    flood_results, stop = [], threading.Event()

    def flood():
        flooder = ApiClient.for_home(entry["home"], entry["api"], timeout=60)
        for round_ in range(6):
            txs = [signed(chain_id, k, round_, Call(target, "spin", encode_value([]), 0,
                                                    params.max_gas_per_tx), params)
                   for k in senders]
            for i in range(0, len(txs), 10):
                if stop.is_set():
                    return
                flood_results.extend(flooder.submit([tx.raw for tx in txs[i:i + 10]]))

    threads = [threading.Thread(target=flood) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            status = client.get("/v1/status")      # each within its 10 s timeout
            time.sleep(0.1)
        assert status["height"] >= start_height + 4, "blocks kept coming during the flood"
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    reasons = {r.get("reason") for r in flood_results if not r["accepted"]}
    accepted = [r for r in flood_results if r["accepted"]]
    assert accepted and all(r["dry_run"]["error"].startswith("out_of_gas") for r in accepted
                            if "dry_run" in r)
    # vm_limit: this node's wall-clock backstop (a quarter slot) on a loaded machine
    assert reasons <= {None, "bad_nonce", "duplicate", "mempool_full", "vm_limit"}, reasons


def test_node_refuses_a_genesis_pinning_another_vm(tmp_path):
    manifest = testnet.create(str(tmp_path / "net"), 2, slot_ms=1000)
    home = manifest["nodes"][0]["home"]
    path = os.path.join(home, "genesis.json")
    with open(path) as f:
        doc = json.load(f)
    doc["vm"]["lua"] = "5.4.7"
    with open(path, "w") as f:
        json.dump(doc, f)
    result = run_cli("--home", home, "node", "run", timeout=60)
    assert result.returncode != 0
    assert "lua 5.4.7" in result.output and "lupa==2.8" in result.output
    # a node started on such a genesis has another genesis hash: refused at every handshake
    theirs, ours = Genesis.load(path), Genesis.load(os.path.join(manifest["nodes"][1]["home"],
                                                                  "genesis.json"))
    assert theirs.params == ours.params and theirs.hash != ours.hash
