"""A real multi-node network on 127.0.0.1: agreement, finality, faults, partitions, punishment.

Every test starts its own testnet of real node processes and stops every one of them.
"""

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from chain.block import Block, Header
from chain.genesis import Genesis
from chain.keys import KeyPair
from chain.p2p import (BlockMsg, ConnectionClosed, HandshakeError, Ping, Pong, Txs,
                       open_connection)
from chain.tx import Transfer, Tx
from edge import testnet
from edge.client import ApiClient, ApiError
from edge.config import load
from tests.nodeproc import run_cli

pytestmark = pytest.mark.slow
SLOT_MS = 500
DEADLINE_S = 60
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Net:
    """A running testnet and ways to look at its nodes."""

    def __init__(self, directory, manifest):
        self.dir, self.manifest = directory, manifest
        self.nodes = manifest["nodes"]
        self.clients = [ApiClient.for_home(n["home"], n["api"], timeout=5) for n in self.nodes]

    def status(self, i):
        return self.clients[i].get("/v1/status")

    def alive(self):
        return [i for i, n in enumerate(self.nodes) if testnet.node_pid(n) is not None]

    def wait(self, what, check, timeout=DEADLINE_S):
        """Poll ``check()`` until it is truthy; fail with ``what`` and the node logs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                result = check()
            except ApiError:
                result = None
            if result:
                return result
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")

    def logs(self, lines=15):
        out = []
        for n in self.nodes:
            path = os.path.join(n["home"], "node.log")
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    out.append(f"--- {n['name']}\n" + "".join(f.readlines()[-lines:]))
        return "\n".join(out)

    def heights(self, nodes=None):
        return {i: self.status(i)["height"] for i in (nodes or self.alive())}

    def wait_height(self, height, nodes=None):
        self.wait(f"height {height}", lambda: all(h >= height for h in
                                                   self.heights(nodes).values()))

    def block_hash(self, i, height):
        return self.clients[i].get(f"/v1/blocks/{height}")["header"]["hash"]

    def partition(self, groups):
        for group in groups:
            keys = [self.nodes[i]["pubkey"] for i in group]
            for i in group:
                self.clients[i].post("/v1/admin/partition", {"allow": keys})

    def heal(self):
        for client in self.clients:
            client.post("/v1/admin/partition", {"allow": None})


@pytest.fixture
def make_net(tmp_path):
    started = []

    def make(nodes=4, producers=None, configure=None, params=None, start=True):
        directory = str(tmp_path / f"net{len(started)}")
        manifest = testnet.create(directory, nodes, slot_ms=SLOT_MS, producers=producers,
                                  params=params)
        started.append(directory)
        if configure:
            configure(manifest)
        if start:
            testnet.start(directory)
        return Net(directory, manifest)

    yield make
    for directory in started:
        testnet.stop(directory, timeout=10)


def test_four_nodes_agree_and_finalise(make_net):
    net = make_net()
    net.wait_height(8)
    net.wait("LIB to advance on every node", lambda: all(net.status(i)["lib_height"] >= 5
                                                          for i in range(4)))
    lib = min(net.status(i)["lib_height"] for i in range(4))
    hashes = {net.block_hash(i, lib) for i in range(4)}
    assert len(hashes) == 1, "the nodes disagree below the LIB"
    assert all(net.status(i)["peers"] == 3 for i in range(4))
    producers = {b["header"]["producer_pubkey"] for b in
                 (net.clients[0].get(f"/v1/blocks/{h}") for h in range(1, 9))}
    assert len(producers) == 4, "every agent produces in turn"


def test_cli_testnet_up_status_down(tmp_path):
    directory = str(tmp_path / "cli-net")
    try:
        up = run_cli("testnet", "up", "--nodes", "3", "--dir", directory, "--slot-ms",
                     str(SLOT_MS), "--json", timeout=90)
        assert up.returncode == 0, up
        manifest = up.json()
        assert len(manifest["nodes"]) == 3
        net = Net(directory, manifest)
        net.wait_height(3)
        status = run_cli("testnet", "status", "--dir", directory, "--json")
        doc = status.json()
        assert [row["name"] for row in doc["nodes"]] == ["node0", "node1", "node2"]
        assert all(row["height"] >= 3 and row["peers"] == 2 for row in doc["nodes"])
        plain = run_cli("testnet", "status", "--dir", directory)
        assert "lib" in plain.stdout and "node2" in plain.stdout
    finally:
        down = run_cli("testnet", "down", "--dir", directory, "--json")
    assert down.json()["stopped"] == 3
    assert not any(testnet.node_pid(n) for n in manifest["nodes"])


def test_votes_move_the_producer_set(make_net):
    net = make_net(nodes=4, producers=3)
    net.wait_height(2)
    names = lambda: {p["name"] for p in net.clients[0].get("/v1/schedule")["producers"]}  # noqa
    outsider = ({"node0", "node1", "node2", "node3"} - names()).pop()
    address = next(n["agent_address"] for n in net.nodes if n["name"] == outsider)
    home = net.nodes[0]["home"]
    stake = run_cli("--home", home, "wallet", "stake", "1000000", "--wait", timeout=60)
    assert stake.returncode == 0, stake
    vote = run_cli("--home", home, "vote", address, "--wait", timeout=60)
    assert vote.returncode == 0, vote
    net.wait(f"{outsider} to be elected", lambda: outsider in names())


def test_killed_producer_is_missed_then_rejoins(make_net):
    net = make_net()
    net.wait_height(4)
    pid = testnet.node_pid(net.nodes[3])
    os.kill(pid, signal.SIGKILL)
    net.wait("node3 to die", lambda: 3 not in net.alive())
    lib_before = net.status(0)["lib_height"]
    height_before = net.status(0)["height"]
    net.wait_height(height_before + 6, nodes=[0, 1, 2])
    net.wait("LIB to advance with 3 of 4", lambda: net.status(0)["lib_height"] > lib_before + 2)
    testnet.start(net.dir)
    target = net.status(0)["height"]
    synced = run_cli("--home", net.nodes[3]["home"], "sync", "--timeout", "60", timeout=90)
    assert synced.returncode == 0, synced
    assert "in sync at height" in synced.stdout and "height" in synced.stderr  # the progress bar
    assert net.status(3)["height"] >= target
    net.wait("node3 to produce again", lambda: any(
        net.clients[0].get(f"/v1/blocks/{h}")["header"]["producer_pubkey"] == net.nodes[3]["pubkey"]
        for h in range(target, net.status(0)["height"] + 1)))
    assert net.block_hash(3, target) == net.block_hash(0, target)


JAIL_ROUNDS = 6  # max_missed_in_a_row: one jail threshold is 6 rounds of 4 slots, 12 s
FAULT_PARAMS = {"max_missed_in_a_row": JAIL_ROUNDS, "jail_blocks": 40}
ROUND_S = 4 * SLOT_MS / 1000
THRESHOLD_S = JAIL_ROUNDS * ROUND_S


class LibWatch:
    """Samples every node's LIB (height and block hash) in the background, so a test can check
    afterwards that no two nodes ever held different irreversible blocks at one height."""

    def __init__(self, net):
        import threading
        self.net, self.samples, self.stop = net, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.wait(0.25):
            for i in range(len(self.net.nodes)):
                try:
                    lib = self.net.status(i)["lib_height"]
                    self.samples.append((i, lib, self.net.block_hash(i, lib)))
                except ApiError:
                    pass

    def lib(self, i):
        return max((lib for node, lib, _ in self.samples if node == i), default=0)

    def check(self, final):
        """Every irreversible block ever seen is the block ``final`` holds at its height."""
        self.stop.set()
        self.thread.join()
        seen = {(lib, block_hash) for _, lib, block_hash in self.samples}
        for lib, block_hash in sorted(seen):
            assert self.net.block_hash(final, lib) == block_hash, \
                f"irreversible block {block_hash[:16]} at {lib} was reverted"
        by_height = {}
        for _, lib, block_hash in self.samples:
            by_height.setdefault(lib, set()).add(block_hash)
        assert all(len(hashes) == 1 for hashes in by_height.values()), \
            "two nodes held different irreversible blocks at one height"
        return len(seen)


def hold(seconds):
    time.sleep(seconds)  # a fault that must outlast the jail threshold: the duration is the test


def libs(net, nodes):
    return {i: net.status(i)["lib_height"] for i in nodes}


def one_chain(net):
    """Every node holds the same block at the lowest head height."""
    height = min(net.heights(range(4)).values())
    return len({net.block_hash(i, height) for i in range(4)}) == 1


def test_long_partitions_never_finalise_a_minority_and_heal_to_one_chain(make_net):
    net = make_net(params=FAULT_PARAMS)
    net.wait("a first LIB", lambda: min(libs(net, range(4)).values()) > 4)
    watch = LibWatch(net)
    # 2|2 for three jail thresholds: blocks voted before the cut may still finalise within a
    # round or two; after that, neither half may finalise anything.
    net.partition([[0, 1], [2, 3]])
    hold(3 * ROUND_S)
    frozen = libs(net, range(4))
    hold(3 * THRESHOLD_S)
    assert libs(net, range(4)) == frozen, "2 of 4 producers must not finalise anything"
    # 1|3: the three finalise (and jail the lone one); the lone producer never finalises.
    net.partition([[0], [1, 2, 3]])
    hold(ROUND_S)
    lone = net.status(0)["lib_height"]
    start = max(libs(net, [1, 2, 3]).values())
    hold(THRESHOLD_S + 4 * ROUND_S)
    assert net.status(0)["lib_height"] == lone, "a lone producer must never finalise"
    assert min(libs(net, [1, 2, 3]).values()) > start, "three of four keep finalising"
    net.heal()
    net.wait("one chain again", lambda: one_chain(net) and all(
        net.status(i)["peers"] == 3 for i in range(4)))
    net.wait("every node past the majority's LIB", lambda: min(
        libs(net, range(4)).values()) > start)
    assert watch.check(final=1) > 3


def test_two_producers_killed_for_three_thresholds_then_back_finalise_in_two_rounds(make_net):
    net = make_net(params=FAULT_PARAMS)
    net.wait("a first LIB", lambda: min(libs(net, range(4)).values()) > 4)
    watch = LibWatch(net)
    for i in (2, 3):
        os.kill(testnet.node_pid(net.nodes[i]), signal.SIGKILL)
    net.wait("nodes 2 and 3 to die", lambda: not {2, 3} & set(net.alive()))
    hold(2 * ROUND_S)
    frozen = libs(net, [0, 1])
    hold(3 * THRESHOLD_S)
    assert libs(net, [0, 1]) == frozen, "2 of 4 producers must not finalise anything"
    height = net.status(0)["height"]
    assert height > max(frozen.values()) + 3 * JAIL_ROUNDS, "the head went on without finality"
    testnet.start(net.dir)
    net.wait("the restarted nodes to catch up from the frozen LIB",
             lambda: min(net.heights([2, 3]).values()) >= height)
    back = net.status(0)["slot"]
    net.wait("the LIB to advance again", lambda: min(libs(net, range(4)).values()) >
             max(frozen.values()), timeout=10 * ROUND_S + 20)
    moved = next(h for h in range(max(frozen.values()) + 1, net.status(0)["height"] + 1)
                 if net.clients[0].get(f"/v1/blocks/{h}")["header"]["lib_height"] >
                 max(frozen.values()))
    rounds = (net.clients[0].get(f"/v1/blocks/{moved}")["header"]["slot"] - back) / 4
    assert rounds <= 2.5, f"finality took {rounds} rounds to resume"
    for i in range(4):
        account = net.clients[0].get(f"/v1/accounts/{net.nodes[i]['agent_address']}")
        assert account["agent"]["jailed_until"] == 0, "no one is jailed for an outage of the many"
    watch.check(final=0)


def equivocate(manifest):
    config = load(manifest["nodes"][1]["home"])
    config.equivocate = True
    config.save()


def test_double_production_is_slashed_and_jailed(make_net):
    net = make_net(configure=equivocate)
    offender = net.nodes[1]["agent_address"]
    account = lambda: net.clients[0].get(f"/v1/accounts/{offender}")  # noqa: E731
    stake = int(account()["stake"])
    net.wait("the offender to be jailed", lambda: account()["agent"]["jailed_until"] > 0,
             timeout=90)
    assert int(account()["stake"]) < stake
    net.wait("the jailed producer to leave the schedule", lambda: offender not in
             {p["address"] for p in net.clients[0].get("/v1/schedule")["producers"]})
    heights = net.heights([0, 2, 3])
    net.wait_height(max(heights.values()) + 3, nodes=[0, 2, 3])


async def send_forged_blocks(net, target, forger, chain_id, genesis_hash):
    """Blocks on the head that decode but break the rules: not the slot's producer, a bad
    signature, a timestamp far in the future. Each costs the sender; together, a ban."""
    head = net.clients[0].get("/v1/blocks/head")["header"]
    schedule = net.clients[0].get("/v1/schedule")
    slot = head["slot"] + 1
    offset = (slot - schedule["start_slot"]) % len(schedule["producers"])
    scheduled = bytes.fromhex(schedule["producers"][offset]["pubkey"])
    genesis_ms = head["timestamp_ms"] - head["slot"] * SLOT_MS
    draft = Header(2, head["height"] + 1, bytes.fromhex(head["hash"]),
                   genesis_ms + slot * SLOT_MS, slot, forger.pubkey, bytes(32), None, 0, 0,
                   bytes(32), bytes(32), bytes(32), bytes(32))
    headers = [
        draft.signed_by(forger, chain_id),                                       # not its slot
        draft._replace(producer=scheduled).signed_by(forger, chain_id),          # bad signature
        draft._replace(slot=10**9, timestamp_ms=genesis_ms + 10**9 * SLOT_MS,
                       tx_root=b"\x01" * 32).signed_by(forger, chain_id),         # the future
        draft._replace(tx_root=b"\x02" * 32).signed_by(forger, chain_id),         # not its slot
    ]
    conn = await open_connection("127.0.0.1", target["p2p_port"], forger, chain_id, genesis_hash)
    for header in headers:
        await conn.send(BlockMsg(Block(header, []).encode()))
    await asyncio.sleep(1)
    await conn.close()


def test_garbage_peer_is_banned_honest_peers_unaffected(make_net):
    net = make_net(nodes=3)
    net.wait_height(3)
    target = net.nodes[0]
    home = target["home"]
    with open(os.path.join(home, "genesis.json")) as f:
        chain_id = json.load(f)["chain_id"]
    genesis_hash = bytes.fromhex(net.manifest["genesis_hash"])
    rogue = KeyPair.generate()

    async def attack():
        conn = await open_connection("127.0.0.1", target["p2p_port"], rogue, chain_id,
                                     genesis_hash)
        conn._writer.write(b"\x00\x00\x00\x40" + os.urandom(64))  # a frame that fails its MAC
        await conn._writer.drain()
        await asyncio.sleep(1)
        await conn.close()
        try:
            again = await open_connection("127.0.0.1", target["p2p_port"], rogue, chain_id,
                                          genesis_hash, timeout=3)
            await again.send(Ping(1))
            reply = await asyncio.wait_for(again.recv(), 3)
            return reply
        except (HandshakeError, OSError, asyncio.TimeoutError, Exception) as exc:
            return exc

    outcome = asyncio.run(attack())
    assert not isinstance(outcome, type(Ping(1))), "a banned peer must not be served"

    forger = KeyPair.generate()
    asyncio.run(send_forged_blocks(net, target, forger, chain_id, genesis_hash))
    with open(os.path.join(home, "node.log")) as f:
        log = f.read()
    assert "bad_mac" in log and "banned" in log
    forged = [line for line in log.splitlines() if forger.pubkey.hex()[:12] in line]
    assert sum("invalid_block" in line for line in forged) == 4, forged
    assert any("banned" in line for line in forged), "the forger is banned too"
    height = net.status(0)["height"]
    net.wait_height(height + 3)
    assert all(net.status(i)["peers"] == 2 for i in range(3))
    relay_failing_transactions(net, 1, chain_id, genesis_hash)


def relay_failing_transactions(net, i, chain_id, genesis_hash):
    """A peer relays transactions that fail admission: nonce races cost it nothing, failures
    against the state 1 point each, transactions no honest node relays (a bad signature) 10 each,
    until its key is banned."""
    params = Genesis.load(os.path.join(net.nodes[i]["home"], "genesis.json")).params
    to = KeyPair.generate().address

    def transfer(key, nonce, signature=None):
        payload = Transfer(to, 1)
        fee = params.min_fee_for(len(Tx(chain_id, key.pubkey, nonce, 0, payload).raw) + 4)
        tx = Tx(chain_id, key.pubkey, nonce, fee, payload).signed_by(key)
        return tx.raw if signature is None else Tx(chain_id, key.pubkey, nonce, fee, payload,
                                                     signature).raw

    relay = KeyPair.generate()
    prefix = relay.pubkey.hex()

    def score():
        return next(p["score"] for p in net.clients[i].get("/v1/peers")["peers"]
                    if p["pubkey"] == prefix)

    async def scenario():
        conn = await open_connection("127.0.0.1", net.nodes[i]["p2p_port"], relay, chain_id,
                                     genesis_hash)
        faucet = KeyPair.load(os.path.join(net.nodes[0]["home"], "wallets", "default.json"))
        races = [transfer(faucet, 1000 + n) for n in range(20)]  # funded, nonce gap: bad_nonce
        await conn.send(Txs(tuple(races)))
        unfunded = [transfer(KeyPair.generate(), 0) for _ in range(30)]       # insufficient_balance
        await conn.send(Txs(tuple(unfunded)))
        await asyncio.to_thread(net.wait, "the failed transactions to cost 30 points",
                                lambda: score() <= -29)
        assert -30 <= score() <= -29                # the races were free
        await conn.send(Ping(3))                    # still served
        while not isinstance(await asyncio.wait_for(conn.recv(), 5), Pong):
            pass
        forged = [transfer(KeyPair.generate(), 0, os.urandom(64)) for _ in range(8)]
        await conn.send(Txs(tuple(forged)))
        with pytest.raises(ConnectionClosed):       # banned: the node hangs up
            while True:
                await asyncio.wait_for(conn.recv(), 10)

    asyncio.run(scenario())
    penalties = metric(net, i, "smartshare_p2p_penalties_total")
    assert penalties['{reason="failed_tx"}'] >= 1 and penalties['{reason="invalid_tx"}'] >= 1
    with open(os.path.join(net.nodes[i]["home"], "node.log")) as f:
        lines = [line for line in f if prefix[:12] in line]
    assert any("invalid_tx" in line and "bad_signature" in line for line in lines), lines
    assert any("banned" in line for line in lines), lines


def metric(net, i, name):
    """``{labels text: value}`` of one metric family on node ``i`` (``""`` for no labels)."""
    out = {}
    for line in net.clients[i].get_text("/metrics").splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            key, _, value = line.rpartition(" ")
            out[key[len(name):]] = float(value)
    return out


def lib_deadline(producers=4):
    """A generous wait for the LIB to move: many rounds of the testnet's genesis."""
    return max(DEADLINE_S, 30 * producers * SLOT_MS / 1000)


class FloodProcess:
    """tests/floodkit.py as its own process against node ``i`` of ``net``."""

    def __init__(self, net, i, mode, source, seconds, rate, keys=50):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.floodkit", "--target",
             f"127.0.0.1:{net.nodes[i]['p2p_port']}", "--source", source, "--mode", mode,
             "--seconds", str(seconds), "--rate", str(rate), "--keys", str(keys),
             "--chain-id", net.manifest["chain_id"], "--genesis", net.manifest["genesis_hash"]],
            stdout=subprocess.PIPE, cwd=ROOT, start_new_session=True)

    @property
    def running(self):
        return self.proc.poll() is None

    def result(self, timeout=30):
        """Stop the flood (if it still runs) and return its figures."""
        if self.running:
            self.proc.terminate()
        out, _ = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, out
        return json.loads(out)

    def kill(self):
        if self.running:
            self.proc.kill()
            self.proc.wait()


def p2p_lines(net, i):
    with open(os.path.join(net.nodes[i]["home"], "node.log"), errors="replace") as f:
        return [line for line in f if "p2p" in line]


def test_handshake_flood_and_sybils_while_the_testnet_finalises(make_net):
    """Thousands of garbage handshakes, slow half-handshakes and 50 sybil node keys, each from
    its own loopback address, hit node0: the LIB advances during and after, node0 keeps its
    honest peers, the sybils get at most peers_per_address slots, the refusals are counted in
    the metrics and the log stays a few summary lines."""
    net = make_net()
    net.wait_height(3)
    seconds = lib_deadline() + 30  # the longest a flood may last; it is stopped once checked
    lines_before = len(p2p_lines(net, 0))
    started = time.monotonic()
    floods = [FloodProcess(net, 0, "garbage", "127.0.0.2", seconds, rate=300),
              FloodProcess(net, 0, "hello", "127.0.0.5", seconds, rate=200),
              FloodProcess(net, 0, "slow", "127.0.0.4", seconds, rate=20),
              FloodProcess(net, 0, "sybil", "127.0.0.3", seconds, rate=10, keys=50)]
    try:
        lib = min(net.status(i)["lib_height"] for i in range(4))
        net.wait("the LIB to advance during the flood", lambda: time.monotonic() - started > 10
                 and min(net.status(i)["lib_height"] for i in range(4)) > lib + 4,
                 timeout=lib_deadline())
        assert all(f.running for f in floods), "the LIB must advance while the flood lasts"
        honest = {n["pubkey"] for n in net.nodes[1:]}
        peers = net.clients[0].get("/v1/peers")["peers"]
        assert honest <= {p["pubkey"] for p in peers}, "node0 keeps its honest peers"
        assert sum(p["remote"].startswith("127.0.0.3:") for p in peers) <= 4
        flood_s = time.monotonic() - started
        garbage, hello, slow, sybil = (f.result() for f in floods)
    finally:
        for f in floods:
            f.kill()
    assert garbage["attempts"] + hello["attempts"] >= 3000 and sybil["attempts"] == 50
    assert sybil["max_held"] <= 4 and garbage["answered"] <= 20
    assert hello["answered"] <= 20 + flood_s * 20 / 60 + 1  # one bucket, then its refill
    refused = metric(net, 0, "smartshare_p2p_refused_total")
    floods_total = garbage["attempts"] + hello["attempts"] + slow["attempts"]
    assert sum(refused.values()) >= floods_total - 100, refused
    for reason in ("banned", "source_rate", "source_busy", "source_peers"):
        assert refused[f'{{reason="{reason}"}}'] > 0, refused
    failed = metric(net, 0, "smartshare_p2p_handshakes_failed_total")
    assert sum(failed.values()) < 200, failed
    lib = min(net.status(i)["lib_height"] for i in range(4))
    net.wait("the LIB to advance after the flood",
             lambda: min(net.status(i)["lib_height"] for i in range(4)) > lib + 2,
             timeout=lib_deadline())
    written = p2p_lines(net, 0)[lines_before:]
    assert len(written) <= 2 * (flood_s / 10 + 3), written  # summaries, not a line per attempt


def votes_of(net, i, pubkey, heights):
    """The finality votes of ``pubkey`` carried by node ``i``'s chain over ``heights``."""
    out = []
    for h in heights:
        block = net.clients[i].get(f"/v1/blocks/{h}")
        out += [(h, v["target_round"], v["target_hash"]) for v in block["votes"]
                if v["producer_pubkey"] == pubkey]
    return out


def test_a_wiped_producer_waits_out_the_window_and_never_double_votes(make_net):
    net = make_net()
    net.wait("a first LIB", lambda: min(libs(net, range(4)).values()) > 4)
    pubkey = net.nodes[3]["pubkey"]
    os.kill(testnet.node_pid(net.nodes[3]), signal.SIGTERM)
    net.wait("node3 to stop", lambda: 3 not in net.alive())
    home = net.nodes[3]["home"]
    shutil.rmtree(os.path.join(home, "data"))
    shutil.rmtree(os.path.join(home, "votes"))  # the card is gone: store and watermark
    before = votes_of(net, 0, pubkey, range(1, net.status(0)["height"] + 1))
    assert before, "node3 voted before it was wiped"
    restart = net.status(0)["height"]
    testnet.start(net.dir)
    window = evidence_window(net)
    net.wait("node3 to produce again", lambda: any(
        net.clients[0].get(f"/v1/blocks/{h}")["header"]["producer_pubkey"] == pubkey
        for h in range(restart + 1, net.status(0)["height"] + 1)))
    net.wait("node3 to vote again after the window", lambda: votes_of(
        net, 0, pubkey, range(restart + 1, net.status(0)["height"] + 1)), timeout=90)
    after = votes_of(net, 0, pubkey, range(restart + 1, net.status(0)["height"] + 1))
    log = open(os.path.join(home, "node.log")).read()
    assert "no vote watermark" in log
    ended = re.search(r"votes again: (saw its own vote for round (\d+)|head \d+ is the "
                      r"evidence window past (\d+))", log)
    assert ended, "node3 voted without logging why its recovery ended"
    if ended.group(2):  # restarted within the round of its last vote: it saw that vote
        assert int(ended.group(2)) in [target for _, target, _ in before + after]
    else:  # the window counts from a head at least as high as the one it was wiped at
        assert int(ended.group(3)) >= restart
        assert after[0][0] >= restart + window, "it voted inside the evidence window"
    targets = [target for _, target, _ in before + after]
    assert targets == sorted(set(targets)), "a key voted twice for one round"
    account = net.clients[0].get(f"/v1/accounts/{net.nodes[3]['agent_address']}")
    assert account["agent"]["jailed_until"] == 0


def evidence_window(net):
    with open(os.path.join(net.nodes[0]["home"], "genesis.json")) as f:
        return json.load(f)["params"].get("evidence_window", 20)


def set_seeds(entry, seeds):
    config = load(entry["home"])
    config.seeds = seeds
    config.save()


def test_peer_exchange_finds_a_node_no_seed_named(make_net):
    """A and B seed each other, C seeds A, D seeds A: no seed names C or D. A learns C's
    address from C's Hello and proves it by dialling; D, started later, hears it from A and
    connects to C. Restarted without any seed, D dials the peers of its address book (LMDB)."""
    net = make_net(start=False)
    a, b, c, d = net.nodes
    address = {n["name"]: f"127.0.0.1:{n['p2p_port']}" for n in net.nodes}
    for node, seeds in ((a, [b]), (b, [a]), (c, [a]), (d, [a])):
        set_seeds(node, [address[s["name"]] for s in seeds])
    for node in (a, b, c):
        testnet.start_node(node)
    testnet.wait_ready({"nodes": [a, b, c]})
    net.wait("A to prove C's address and B's (a seed of A that dialled A first)", lambda: {
        address["node1"], address["node2"]} <= set(
        net.clients[0].get("/v1/peers")["address_book"]["shared"]))
    testnet.start_node(d)
    testnet.wait_ready({"nodes": [d]})

    def peers_of(i):
        return {p["pubkey"]: p for p in net.clients[i].get("/v1/peers")["peers"]}
    net.wait("D to connect to C and B", lambda: {c["pubkey"], b["pubkey"]} <= set(peers_of(3)))
    book = net.clients[3].get("/v1/peers")["address_book"]
    assert {address["node1"], address["node2"]} <= set(book["shared"]), book
    net.wait_height(net.status(0)["height"] + 2)

    os.kill(testnet.node_pid(d), signal.SIGTERM)         # a clean stop writes the book
    net.wait("D to stop", lambda: testnet.node_pid(d) is None)
    set_seeds(d, [])
    testnet.start_node(d)
    testnet.wait_ready({"nodes": [d]})
    net.wait("D to dial peers from its address book", lambda: sum(
        p["initiator"] for p in peers_of(3).values()) >= 2, timeout=lib_deadline())
