"""A light node process against a real 4-node testnet: it learns its checkpoint from agreeing
peers, follows the head through producer-set changes, reads its balance with proofs, sends a
transfer through its peers, resumes after kill -9, and becomes an agent that produces
(docs/protocol.md §13.7)."""

import os
import time

import pytest

from chain.genesis import Genesis
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
    assert status["role"] == "light" and status["lag"] <= 1 and status["peers"] >= 2
    text = home.cli("status").stdout
    assert "light" in text and "lib" in text
    synced = home.cli("sync", "--json", check=True).json()
    assert synced["role"] == "light" and synced["lag"] == 0 and synced["peers"] >= 2

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


def submit_signed(client, key, payload, chain_id):
    """Sign ``payload`` from ``key`` (minimum fee, next nonce as the node sees it) and send it."""
    from chain.params import Params
    from chain.tx import Tx
    params = Params()
    nonce = client.get(f"/v1/accounts/{key.address_text}")["next_nonce"]
    fee = params.min_fee
    while True:
        tx = Tx(chain_id, key.pubkey, nonce, fee, payload).signed_by(key)
        if fee >= params.min_fee_for(len(tx.raw)):
            break
        fee = params.min_fee_for(len(tx.raw))
    result = client.submit([tx.raw])[0]
    assert result["accepted"], result
    return tx.id.hex()


def committed(client, tx_id):
    try:
        return client.get(f"/v1/txs/{tx_id}")["status"] == "committed"
    except ApiError:
        return False


def test_a_light_node_follows_a_set_change_then_becomes_an_agent_that_produces(tmp_path, net):
    from chain.dpos.reveal import binding_hash
    from chain.producer import BlockSigner
    from chain.tx import RegisterAgent, Stake, Transfer, Vote
    chain_id = net["chain_id"]
    node0 = net["nodes"][0]["home"]
    full = ApiClient.for_home(node0, net["nodes"][0]["api"])
    faucet = KeyPair.load(os.path.join(node0, "wallets", "default.json"))
    min_stake = Genesis.load(os.path.join(node0, "genesis.json")).params.agent_min_stake
    home = light_home(tmp_path, net)
    light = NodeProcess(home).start()
    logs = [light.log_path, os.path.join(node0, "node.log")]
    wait("the light node at the head", lambda: light.status()["lag"] <= 1
         and light.status()["lib_height"] > 0, logs=logs)

    # a new agent whose key no node runs: elected by the faucet's votes, it joins the set
    # (proposed, joint, stable) and misses its slots; the light node checks every header
    ghost, owner = KeyPair.generate(), KeyPair.generate()
    tx_ids = [submit_signed(full, faucet, Transfer(owner.address, min_stake + 10**9), chain_id)]
    wait("the owner funded", lambda: committed(full, tx_ids[-1]), logs=logs)
    tx_ids.append(submit_signed(full, owner, Stake(min_stake), chain_id))
    wait("the owner staked", lambda: committed(full, tx_ids[-1]), logs=logs)
    commit = BlockSigner(ghost).commitment(0)
    binding = ghost.sign(chain_id, binding_hash(owner.address, 0, commit))
    tx_ids.append(submit_signed(full, owner, RegisterAgent("ghost", "", ghost.pubkey, 0, commit,
                                                           binding), chain_id))
    wait("the ghost registered", lambda: committed(full, tx_ids[-1]), logs=logs)
    tx_ids.append(submit_signed(full, faucet, Stake(10 * min_stake), chain_id))
    wait("the faucet staked", lambda: committed(full, tx_ids[-1]), logs=logs)
    tx_ids.append(submit_signed(full, faucet, Vote((owner.address,)), chain_id))
    phases, lags = [], []

    def watched():
        """The light node's status, its finality phase and lag recorded on every poll."""
        status = light.status()
        if not phases or phases[-1] != status["finality"]["phase"]:
            phases.append(status["finality"]["phase"])
        lags.append(status["lag"])
        return status

    def ghost_scheduled():
        watched()
        producers = home.client().get("/v1/schedule")["producers"]
        return ghost.pubkey.hex() in [p["pubkey"] for p in producers]
    wait("the light node following rounds that schedule the new agent", ghost_scheduled,
         logs=logs)
    # the schedule names the ghost as soon as it is elected; the finality rule takes it in
    # only through the proposed and joint phases, each checked from finality entries
    def ghost_in_the_rule():  # phase and set from one status answer: they cannot disagree
        status = watched()
        return status["lib_height"] > full.get("/v1/status")["height"] - 20 and \
            ghost.pubkey.hex() in status["finality"]["active"]
    wait("finality with the ghost in the set", ghost_in_the_rule, logs=logs)
    assert ghost.pubkey.hex() in home.client().get("/v1/finality")["rule"]["active"]
    assert "joint" in phases and phases[-1] == "stable", phases
    assert max(lags[-5:]) <= 1

    # promotion: the state at its LIB from a peer, checked; then it runs as an agent node
    light.stop()
    promoted = home.cli("node", "promote", "--json", check=True).json()
    assert promoted["height"] > 0 and promoted["entries"] > 10
    agent = NodeProcess(home).start()
    logs[0] = agent.log_path
    assert agent.status()["role"] == "agent"
    wait("the agent node synced", lambda: agent.status()["height"] >=
         full.get("/v1/status")["height"] - 1, logs=logs)
    # its owner (the home's wallet) stakes, registers this node's key, and gets the votes
    wallet = home.info["wallet_address"]
    run_cli("--home", node0, "wallet", "transfer", wallet, str(2 * min_stake // 10**8),
            "--wait", check=True)
    home.cli("wallet", "stake", str(min_stake // 10**8), "--wait", check=True)
    home.cli("agent", "register", "promoted", "--owner", "default", "--wait", check=True)
    run_cli("--home", node0, "vote", wallet, "--wait", check=True)
    me = home.info["node_pubkey"]

    def produced():
        head = agent.status()["height"]
        return any(full.get(f"/v1/blocks/{h}")["header"]["producer_pubkey"] == me
                   for h in range(max(1, head - 8), head + 1))
    wait("a block produced by the promoted node", produced, timeout=120, logs=logs)
    agent.stop()
