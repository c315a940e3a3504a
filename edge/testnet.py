"""A local multi-node network: homes sharing one genesis, node processes on 127.0.0.1.

``smartshare testnet up --nodes 4`` writes ``DIR/node0..N-1`` (each a full node home whose node
key is one of the genesis agents, seeded with every other node's p2p address), a faucet wallet
in ``DIR/node0/wallets/default.json``, and ``DIR/testnet.json``; then starts one real
``smartshare node run`` process per home and waits until every API answers.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

from chain.genesis import Allocation, Genesis, simple_plan
from chain.keys import KeyPair
from chain.params import GAS_PER_SLOT_MS_BLOCK, GAS_PER_SLOT_MS_TX, SSP_SUPPLY, Params
from chain.producer import start_watermark
from edge.client import ApiClient, ApiError
from edge import node_home
from edge.config import Config

MANIFEST = "testnet.json"
DECIMALS = 8
READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 15


class TestnetError(Exception):
    """The testnet cannot be set up, started or reached; the message says why."""

    __test__ = False


def free_ports(n):
    """``n`` distinct free TCP ports on 127.0.0.1."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def create(directory, nodes, slot_ms=1000, chain_id=None, producers=None, params=None):
    """Write the homes, keys, genesis and manifest of a new testnet; returns the manifest.
    ``producers`` (default: every node) is the number elected per round; ``params`` overrides
    genesis parameters. Each home holds its node (producer) key and, in ``wallets/owner.json``,
    the owner key of its agent (stake and rewards)."""
    if os.path.exists(os.path.join(directory, MANIFEST)):
        raise TestnetError(f"{directory} already holds a testnet; run `smartshare testnet down "
                           f"--dir {directory}` and delete it to start over")
    if not 1 <= nodes <= 21:
        raise TestnetError("a testnet has 1 to 21 nodes")
    os.makedirs(directory, exist_ok=True)
    keys = [KeyPair.generate() for _ in range(nodes)]
    owners = [KeyPair.generate() for _ in range(nodes)]
    faucet = KeyPair.generate()
    chain_id = chain_id or f"ss-testnet-{os.urandom(3).hex()}"
    producers = producers or nodes
    if not 1 <= producers <= nodes:
        raise TestnetError("--producers must be between 1 and the number of nodes")
    api_ports, p2p_ports = free_ports(nodes), free_ports(nodes)
    configs, agents, entries = [], [], []
    for i, (key, owner) in enumerate(zip(keys, owners)):
        home = os.path.abspath(os.path.join(directory, f"node{i}"))
        os.makedirs(os.path.join(home, "wallets"), mode=0o700, exist_ok=True)
        config = Config(home=home, api_port=api_ports[i], p2p_port=p2p_ports[i],
                        seeds=[f"127.0.0.1:{p}" for j, p in enumerate(p2p_ports) if j != i],
                        admin_api=True, exempt_loopback=True)
        key.save(config.path(config.key_file))
        start_watermark(config.path(config.votes_dir), key.pubkey)
        agents.append(node_home.genesis_agent(key, f"node{i}", owner.address))
        owner.save(os.path.join(home, "wallets", "owner.json"))
        configs.append(config)
        entries.append({"name": f"node{i}", "home": home, "api": config.api_url,
                        "p2p_port": p2p_ports[i], "pubkey": key.pubkey.hex(),
                        "address": key.address_text, "agent_address": owner.address_text})
    genesis = _genesis(chain_id, keys, agents, faucet, slot_ms, producers, params or {})
    for config in configs:
        genesis.save(config.path(config.genesis_file))
        config.save()
    faucet.save(os.path.join(entries[0]["home"], "wallets", "default.json"))
    manifest = {"chain_id": chain_id, "genesis_hash": genesis.hash.hex(), "nodes": entries,
                "faucet": faucet.address_text}
    with open(os.path.join(directory, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=2)
    return manifest


def _genesis(chain_id, keys, agents, faucet, slot_ms, producers, overrides):
    """Owners stake the minimum and hold 1,000 SSP; producer keys hold 10 SSP for the fees of
    what the node sends itself (evidence)."""
    gas = {"max_gas_per_tx": min(Params().max_gas_per_tx, slot_ms * GAS_PER_SLOT_MS_TX),
           "max_block_gas": min(Params().max_block_gas, slot_ms * GAS_PER_SLOT_MS_BLOCK)}
    params = Params(**{"slot_ms": slot_ms, "producers_per_round": producers, **gas,
                       "max_block_txs": 3000, **overrides})
    if params.problems():
        raise TestnetError("; ".join(params.problems()))
    total = SSP_SUPPLY * 10**DECIMALS
    pool = 100_000_000 * 10**DECIMALS
    allocations = [Allocation(a.owner, 1_000 * 10**DECIMALS, params.agent_min_stake)
                   for a in agents]
    allocations += [Allocation(k.address, 10 * 10**DECIMALS) for k in keys]
    rest = total - pool - sum(a.balance + a.stake for a in allocations)
    allocations.append(Allocation(faucet.address, rest))
    start = (time.time_ns() // 1_000_000) // slot_ms * slot_ms
    pools, allocations = simple_plan(total, pool, allocations)
    return Genesis(chain_id, start, DECIMALS, total, pool, params, allocations, tuple(agents),
                   pools=pools)


def load_manifest(directory):
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise TestnetError(f"no testnet in {directory}; create one with: smartshare testnet up "
                           f"--dir {directory}") from None


def start_node(entry):
    """Start one node process in the background; returns its pid."""
    home = entry["home"]
    log = open(os.path.join(home, "node.log"), "ab")
    process = subprocess.Popen([sys.executable, "-m", "edge.cli", "--home", home, "node", "run"],
                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True)
    log.close()
    with open(os.path.join(home, "node.pid"), "w") as f:
        f.write(str(process.pid))
    return process.pid


def start(directory, timeout=READY_TIMEOUT_S):
    """Start every node of the testnet that is not running; wait until all answer."""
    manifest = load_manifest(directory)
    for entry in manifest["nodes"]:
        if node_pid(entry) is None:
            start_node(entry)
    wait_ready(manifest, timeout)
    return manifest


def wait_ready(manifest, timeout=READY_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    for entry in manifest["nodes"]:
        client = ApiClient.for_home(entry["home"], entry["api"], timeout=2)
        while True:
            try:
                client.get("/v1/status")
                break
            except ApiError:
                if time.monotonic() > deadline:
                    raise TestnetError(f"{entry['name']} did not answer within {timeout}s; see "
                                       f"{entry['home']}/node.log") from None
                time.sleep(0.1)


def node_pid(entry):
    """The pid of the node's running process, or None."""
    try:
        with open(os.path.join(entry["home"], "node.pid")) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid if _is_alive(pid) else None


def _is_alive(pid):
    """False for a zombie (exited, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def stop(directory, timeout=STOP_TIMEOUT_S):
    """SIGTERM every node, SIGKILL what is still running after ``timeout``; returns the count."""
    manifest = load_manifest(directory)
    pids = [pid for pid in map(node_pid, manifest["nodes"]) if pid is not None]
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_is_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        if _is_alive(pid):
            os.kill(pid, signal.SIGKILL)
    for entry in manifest["nodes"]:
        try:
            os.remove(os.path.join(entry["home"], "node.pid"))
        except FileNotFoundError:
            pass
    return len(pids)


def status(directory):
    """Per node: running or not, and its chain as its API reports it."""
    manifest = load_manifest(directory)
    out = []
    for entry in manifest["nodes"]:
        row = {"name": entry["name"], "pid": node_pid(entry), "api": entry["api"]}
        try:
            client = ApiClient.for_home(entry["home"], entry["api"], timeout=2)
            s = client.get("/v1/status")
            schedule = client.get("/v1/schedule")
            row.update(height=s["height"], lib_height=s["lib_height"], peers=s["peers"],
                       head_hash=s["head_hash"], round=schedule["round"],
                       producers=[p["name"] for p in schedule["producers"]])
        except ApiError as exc:
            row["error"] = str(exc)
        out.append(row)
    return {"chain_id": manifest["chain_id"], "nodes": out}
