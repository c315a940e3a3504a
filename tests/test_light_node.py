"""A light node process against a real 4-node testnet: it learns its checkpoint from agreeing
peers, follows the head through producer-set changes, reads its balance with proofs, sends a
transfer through its peers, resumes after kill -9, and becomes an agent that produces
(docs/protocol.md §13.7)."""

import os
import time

import pytest

from chain.address import decode_address
from chain.keys import KeyPair
from edge import testnet
from edge.client import ApiClient, ApiError
from tests.nodeproc import NodeHome, NodeProcess, free_port, run_cli

pytestmark = pytest.mark.slow
SLOT_MS = 500
DEADLINE_S = 90


def wait(what, check, timeout=DEADLINE_S, logs=()):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except ApiError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    tails = "\n".join(f"--- {p}\n" + "".join(open(p, errors="replace").readlines()[-25:])
                      for p in logs if os.path.exists(p))
    raise AssertionError(f"timed out waiting for {what} (last: {last})\n{tails}")


@pytest.fixture
def net(tmp_path):
    directory = str(tmp_path / "net")
    manifest = testnet.create(directory, 4, slot_ms=SLOT_MS,
                              params={"max_missed_in_a_row": 3, "jail_blocks": 20})
    testnet.start(directory)
    yield manifest
    testnet.stop(directory, timeout=10)


def light_home(tmp_path, manifest, name="light"):
    path = tmp_path / name
    seeds = [f"127.0.0.1:{n['p2p_port']}" for n in manifest["nodes"][:2]]
    api_port = free_port()
    args = ["--home", path, "init", "--role", "light", "--genesis",
            os.path.join(manifest["nodes"][0]["home"], "genesis.json"), "--api-port", api_port,
            "--json"]
    for seed in seeds:
        args += ["--seed", seed]
    info = run_cli(*args, check=True).json()
    return NodeHome(path, api_port, info)


def test_a_light_node_follows_reads_sends_and_resumes(tmp_path, net):
    node0 = net["nodes"][0]["home"]
    home = light_home(tmp_path, net)
    light = NodeProcess(home).start()
    logs = [light.log_path, os.path.join(node0, "node.log")]
    full = ApiClient(net["nodes"][0]["api"])
    status = wait("the light node at the head with a LIB", lambda: (
        (s := light.status())["height"] >= full.get("/v1/status")["height"] - 1
        and s["lib_height"] > 0 and s), logs=logs)
    assert status["role"] == "light" and status["lag"] <= 1 and status["peers"] == 2
    text = home.cli("status").stdout
    assert "light" in text and "lib" in text
    synced = home.cli("sync", "--json", check=True).json()
    assert synced["role"] == "light" and synced["lag"] == 0 and synced["peers"] == 2

    # funds from the faucet, then its balance read with a proof at its LIB
    wallet = home.info["wallet_address"]
    run_cli("--home", node0, "wallet", "transfer", wallet, "100", "--wait", check=True)
    balance = wait("the balance at the LIB", lambda: (
        (a := home.client().get(f"/v1/accounts/{wallet}"))["balance"] == str(100 * 10**8) and a),
        logs=logs)
    assert balance["verified"] and balance["proof"] and balance["height"] <= \
        light.status()["lib_height"]
    shown = home.cli("wallet", "balance", "--json", check=True).json()
    assert shown["balance"] == str(100 * 10**8)

    # a transfer out through its peers, its inclusion proven against the followed headers
    payee = KeyPair.generate().address_text
    sent = home.cli("wallet", "transfer", payee, "12.5", "--wait", "--json", check=True).json()
    assert sent["status"] == "committed"
    wait("the payee paid on the full node", lambda: full.get(f"/v1/accounts/{payee}")[
        "balance"] == str(1_250_000_000), logs=logs)
    found = home.client().get(f"/v1/txs/{sent['id']}")
    assert found["status"] == "committed" and found["receipt"]["status"] == 0

    # kill -9: it resumes from its stored window, not from a new checkpoint
    before = light.status()
    light.kill9()
    light.start()
    after = light.status()
    assert after["height"] >= before["height"] - 1 and after["lib_height"] >= before["lib_height"]
    wait("the head again", lambda: light.status()["lag"] <= 1, logs=logs)
    with open(light.log_path) as f:
        assert f.read().count("light: started from") == 1
    light.stop()
