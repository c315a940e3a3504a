"""Crash safety: ``kill -9`` a real node at random moments while transfers stream in.

Each round submits signed transfers through ``POST /v1/txs`` in small batches, remembers every
id the API acknowledged as accepted, and kills the node with SIGKILL: at a random moment while a
thread is still submitting, right after a block, or at a random delay after a burst. The node is
restarted and must be ready again. Afterwards, nothing acknowledged may be lost, the chain must
be contiguous and linked, balances must follow from the committed transfers, every block must
replay from genesis onto a fresh store (every state and receipts root recomputes), and the SSP
supply must be intact.

The random seed is printed; rerun a failure with ``SMARTSHARE_CRASH_SEED=<seed>``.
"""

import os
import random
import shutil
import threading
import time

import pytest

from chain import flat_state, participation
from chain.address import decode_address, encode_address
from chain.block import STATUS_OK
from chain.genesis import Genesis
from chain.keys import KeyPair
from chain.ledger import Ledger
from chain.state.records import TAG_ACCOUNT, Account
from chain.store import Store
from chain.tx import Transfer, make_tx
from edge.client import ApiError

pytestmark = pytest.mark.slow

ROUNDS = 12
MODES = ("in_flight", "after_block", "after_burst")
RECIPIENTS = 4


class Submitter:
    """Builds and submits signed transfers from the home's default wallet."""

    def __init__(self, home, status, rng):
        self.home = home
        self.pair = KeyPair.load(home.wallet_file())
        self.chain_id = status["chain_id"]
        self.min_fee = int(status["params"]["min_fee"])
        self.per_byte = int(status["params"]["fee_per_byte"])
        self.rng = rng
        self.recipients = [KeyPair.generate().address for _ in range(RECIPIENTS)]
        self.sent = {}          # id hex -> tx, every transaction ever put on the wire
        self.accepted = []      # ids (hex) the API acknowledged as accepted, in order
        self.rejected = []      # (id hex, result) the API refused: none are expected
        self.interrupted = 0    # submissions cut off by a kill (no answer)
        self.lock = threading.Lock()

    def make(self, nonce):
        to = self.rng.choice(self.recipients)
        amount = self.rng.randint(1, 10**6)
        memo = self.rng.randbytes(self.rng.randint(0, 16))
        extra = self.rng.choice((0, 0, 0, self.rng.randint(1, 500)))
        fee = self.min_fee
        while True:  # the fee is part of the size it pays for: iterate to the fixed point
            tx = make_tx(self.pair, self.chain_id, nonce, fee, Transfer(to, amount, memo))
            floor = self.min_fee + self.per_byte * len(tx.raw)
            if fee >= floor:
                break
            fee = floor
        if extra:
            tx = make_tx(self.pair, self.chain_id, nonce, fee + extra, Transfer(to, amount, memo))
            assert tx.fee >= self.min_fee + self.per_byte * len(tx.raw)
        return tx

    def next_nonce(self, client):
        return client.get(f"/v1/accounts/{self.pair.address_text}")["next_nonce"]

    def run(self, client, batches=None, stop=None, pause=0.01):
        """Submit batches of 1-8 transfers until ``batches`` are done, ``stop`` is set or the
        node stops answering; returns the number of ids acknowledged."""
        acked = 0
        try:
            nonce = self.next_nonce(client)
        except ApiError:
            return acked
        done = 0
        while (batches is None or done < batches) and not (stop and stop.is_set()):
            txs = [self.make(nonce + i) for i in range(self.rng.randint(1, 8))]
            with self.lock:
                self.sent.update((tx.id.hex(), tx) for tx in txs)
            try:
                results = client.submit([tx.raw for tx in txs])
            except ApiError:
                self.interrupted += 1
                return acked  # killed mid-request: neither accepted nor refused, as far as we know
            with self.lock:
                for tx, result in zip(txs, results, strict=True):
                    if result["accepted"]:
                        assert result["id"] == tx.id.hex(), result
                        self.accepted.append(tx.id.hex())
                        acked += 1
                    else:
                        self.rejected.append((tx.id.hex(), tx.nonce, result))
            if self.rejected:
                return acked  # the nonce sequence is broken: stop, the test will report it
            nonce += len(txs)
            done += 1
            time.sleep(self.rng.uniform(0, pause))
        return acked


def test_kill9_loses_nothing_and_replays(node_factory, tmp_path):
    seed = int(os.environ.get("SMARTSHARE_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    print(f"crash test seed {seed} (rerun with SMARTSHARE_CRASH_SEED={seed})")
    rng = random.Random(seed)
    where = f"[seed {seed}]"

    home = node_factory.home("crash")
    node = node_factory.node(home)
    client = home.client()
    status = node.wait_height(1)
    sub = Submitter(home, status, rng)
    modes = list(MODES) * (ROUNDS // len(MODES)) + list(MODES[:ROUNDS % len(MODES)])
    rng.shuffle(modes)
    checked = 0  # sub.accepted[:checked] were verified present after a restart

    for round_no, mode in enumerate(modes):
        if mode == "in_flight":
            stop = threading.Event()
            delay = rng.uniform(0.05, 1.5)  # drawn before the thread shares the rng
            errors = []

            def submit_until_killed():
                try:
                    sub.run(home.client(), stop=stop)
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            worker = threading.Thread(target=submit_until_killed, daemon=True)
            worker.start()
            time.sleep(delay)
            seen = node.status()
            node.kill9()
            stop.set()
            worker.join(30)
            assert not worker.is_alive(), f"{where} submitter hung after the kill"
            if errors:
                raise errors[0]
        elif mode == "after_block":
            sub.run(client, batches=rng.randint(1, 20))
            h0 = node.status()["height"]
            seen = node.wait_height(h0 + 1, timeout=30, poll=0.005)
            node.kill9()
        else:
            sub.run(client, batches=rng.randint(1, 30))
            time.sleep(rng.uniform(0, 1.2))
            seen = node.status()
            node.kill9()
        assert not sub.rejected, f"{where} round {round_no} ({mode}): refused {sub.rejected[:3]}"

        # Now and then, kill the restarting node again before it is ready (mid-recovery).
        startup_kill = rng.random() < 0.25
        if startup_kill:
            node.start(wait=False)
            time.sleep(rng.uniform(0.0, 0.8))
            node.kill9()
        node.start(wait=False)
        after = node.wait_ready()
        what = f"{where} round {round_no} ({mode}{', startup kill' if startup_kill else ''})"
        print(f"round {round_no:>2} {mode:<11} startup kill {startup_kill!s:<5} height "
              f"{seen['height']} -> {after['height']}, acknowledged {len(sub.accepted)}, "
              f"submissions cut by a kill {sub.interrupted}")
        assert after["height"] >= seen["height"], \
            f"{what}: height went back from {seen['height']} to {after['height']}"
        again = node.get(f"/v1/blocks/{seen['height']}")["header"]["hash"]
        assert again == seen["head_hash"], f"{what}: block {seen['height']} changed after restart"
        for tx_id in sub.accepted[checked:]:
            try:
                found = client.get(f"/v1/txs/{tx_id}")
            except ApiError as exc:
                if exc.code != "not_found":
                    raise
                raise AssertionError(f"{what}: acknowledged tx {tx_id} lost after kill -9 "
                                     f"({exc})\n{node.log_tail()}") from None
            assert found["status"] in ("pending", "committed"), found
        checked = len(sub.accepted)

    # A last burst on the restarted node, so the final state has work after the last crash
    # (and at least 100 transfers in all, whatever the seed).
    sub.run(client, batches=5)
    while len(sub.accepted) < 100 and not sub.rejected:
        sub.run(client, batches=5)
    assert not sub.rejected, f"{where} refused {sub.rejected[:3]}"

    node.wait_mempool_empty(timeout=60)
    status = node.status()
    head = status["height"]

    # The chain: blocks 0..head all present and linked.
    genesis = Genesis.load(home.genesis_file)
    committed = {}  # id hex -> (height, tx json, receipt)
    api_hashes = []
    prev_hash = None
    for h in range(head + 1):
        block = node.get(f"/v1/blocks/{h}")
        header = block["header"]
        assert header["height"] == h, f"{where} block {h}: {header}"
        if h == 0:
            assert header["prev_hash"] == genesis.hash.hex() == home.info["genesis_hash"]
        else:
            assert header["prev_hash"] == prev_hash, f"{where} block {h} does not link to {h - 1}"
        prev_hash = header["hash"]
        api_hashes.append(prev_hash)
        assert len(block["txs"]) == len(block["receipts"])
        for tx, receipt in zip(block["txs"], block["receipts"]):
            assert receipt["tx_id"] == tx["id"]
            assert tx["id"] not in committed, f"{where} tx {tx['id']} committed twice"
            committed[tx["id"]] = (h, tx, receipt)
    assert prev_hash == status["head_hash"]

    # Nothing acknowledged was lost.
    lost = [tx_id for tx_id in sub.accepted if tx_id not in committed]
    assert not lost, f"{where} {len(lost)} acknowledged txs missing from the chain: {lost[:5]}"
    print(f"{len(committed)} txs committed in {head} blocks; {len(sub.accepted)} acknowledged; "
          f"{len(set(committed) - set(sub.accepted))} committed though their answer was cut off")
    for tx_id in sub.accepted:
        found = node.get(f"/v1/txs/{tx_id}")
        assert found["status"] == "committed", f"{where} {tx_id}: {found}"
        assert found["height"] == committed[tx_id][0]

    # Balances follow from the committed transfers (only our wallet sends to the recipients).
    sender = sub.pair.address_text
    expected = {encode_address(r): 0 for r in sub.recipients}
    spent, count = 0, 0
    for tx_id, (h, tx, receipt) in committed.items():
        assert tx_id in sub.sent, f"{where} block {h} holds a tx this test never built: {tx}"
        assert tx["sender"] == sender and receipt["status"] == STATUS_OK
        expected[tx["payload"]["to"]] += int(tx["payload"]["amount"])
        spent += int(tx["payload"]["amount"]) + int(tx["fee"])
        count += 1
    for address, amount in expected.items():
        account = node.get(f"/v1/accounts/{address}")
        assert int(account["balance"]) == amount, f"{where} recipient {address}"
        assert account["nonce"] == 0
    start_balance = sum(a.balance for a in genesis.allocations
                        if encode_address(a.address) == sender)
    account = node.get(f"/v1/accounts/{sender}")
    assert int(account["balance"]) == start_balance - spent, f"{where} sender balance"
    assert account["nonce"] == count == account["next_nonce"]

    # Stop, then check the data on disk: every block replays onto a fresh store from genesis.
    assert node.stop() == 0, f"{where} node did not stop cleanly:\n{node.log_tail()}"
    copy = tmp_path / "crashed-copy"
    shutil.copytree(home.data_dir, copy, ignore=shutil.ignore_patterns("node.lock"))
    crashed_store = Store(str(copy))
    replay_store = Store(str(tmp_path / "replay"))
    try:
        crashed = Ledger(crashed_store, genesis)
        assert crashed.head.height >= head  # the node kept producing (empty) blocks
        replay = Ledger(replay_store, genesis)
        assert replay.block_hash_at(0) == crashed.block_hash_at(0)
        for h in range(1, crashed.head.height + 1):
            block_hash = crashed.block_hash_at(h)
            assert block_hash is not None, f"{where} no block at height {h} on disk"
            if h <= head:
                assert block_hash.hex() == api_hashes[h], f"{where} block {h} differs on disk"
            block = crashed.block(block_hash)
            replay.apply_block(block)  # re-executes; checks state_root and receipts_root
            assert replay.head.hash == block_hash
            assert replay.receipts(block_hash) == crashed.receipts(block_hash)
            if h == head:
                assert replay.head.state_root.hex() == status["state_root"]
        assert replay.head == crashed.head
        for ledger in (replay, crashed):
            assert total_supply(ledger) == genesis.total_supply, f"{where} supply changed"
        for address, amount in expected.items():
            assert replay.account(decode_address(address)).balance == amount
    finally:
        crashed_store.close()
        replay_store.close()


def total_supply(ledger):
    """Balances, stakes and unbonding of every account, plus the reward and participation
    pools."""
    total = 0
    with ledger.store.read() as txn:
        for value in flat_state.values(txn, ledger.main):
            if value[:1] == bytes((TAG_ACCOUNT,)):
                account = Account.decode(value)
                total += account.balance + account.stake + account.unbonding_total
        total += ledger.view(txn).pool() + participation.held(ledger.view(txn))
    return total
