"""Admission of contract transactions in-process (real LMDB, real Lua): cheap checks before any
dry run, dry runs off the event loop, bounded per peer and per sender (docs/protocol.md §9)."""

import asyncio
import contextlib
import io
import threading

import pytest

from chain.calls import contract_address
from chain.dryrun import Busy, DryRunner
from chain.keys import KeyPair
from chain.tx import Call, Deploy, Transfer, Tx
from contracts.values import encode_value
from edge import cli
from edge.config import load
from edge.node import Node

SPIN = "function spin() while true do local t = {} end end\nfunction one() return 1 end\n"


@pytest.fixture
def node(tmp_path):
    home = str(tmp_path / "home")
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["--home", home, "init", "--devnet", "--api-port", "1"]) == 0
    node = Node(load(home), log=lambda line: None)
    node.wallet = KeyPair.load(f"{home}/wallets/default.json")
    yield node
    node.dry_runs.close()
    node.store.close()


def signed(node, key, nonce, payload, signature=None):
    params, chain_id = node.ledger.params, node.ledger.chain_id
    gas = getattr(payload, "gas_limit", 0)
    fee = params.min_fee_for(len(Tx(chain_id, key.pubkey, nonce, 0, payload).raw) + 4, gas)
    tx = Tx(chain_id, key.pubkey, nonce, fee, payload).signed_by(key)
    if signature is not None:
        tx = Tx(chain_id, key.pubkey, nonce, fee, payload, signature)
    return tx.raw


def commit(node, raws):
    results = node.submit(raws)
    assert all(r["accepted"] for r in results), results
    block = node.produce(max(node.ledger.slot_at(node.ledger.genesis.genesis_time_ms) + 1,
                             node.ledger.head.slot + 1))
    assert len(block.txs) == len(raws)


def deploy_spin(node, senders=()):
    """The SPIN contract, and 10^12 base units for each of ``senders``; its address."""
    wallet = node.wallet
    commit(node, [signed(node, wallet, 0, Deploy(SPIN.encode(), b"", 500_000))]
           + [signed(node, wallet, 1 + i, Transfer(k.address, 10**12))
              for i, k in enumerate(senders)])
    return contract_address(wallet.address, 0)


def spin_call(node, key, nonce, target, method="spin"):
    return signed(node, key, nonce, Call(target, method, encode_value([]), 0,
                                         node.ledger.params.max_gas_per_tx))


def test_cheap_checks_refuse_before_any_dry_run(node):
    target = deploy_spin(node)
    poor = KeyPair.generate()
    forged = spin_call(node, node.wallet, 1, target)
    forged = signed(node, node.wallet, 1, Tx.decode(forged).payload, signature=bytes(64))
    results = node.submit([forged, spin_call(node, poor, 0, target),
                           spin_call(node, node.wallet, 0, target)])
    assert [r.get("reason") for r in results] == ["bad_signature", "insufficient_balance",
                                                  "bad_nonce"]
    assert not any("dry_run" in r for r in results)
    ok, spin = node.submit([spin_call(node, node.wallet, 1, target, "one"),
                            spin_call(node, node.wallet, 2, target)])
    assert ok["accepted"] and ok["dry_run"] == {"ok": True, "gas_used": ok["dry_run"]["gas_used"],
                                                "error": ""}
    # a call that fails is admitted: its fee pays for the work, as in a block
    assert spin["accepted"] and not spin["dry_run"]["ok"]
    assert spin["dry_run"]["error"].startswith("out_of_gas")
    assert spin["dry_run"]["gas_used"] == node.ledger.params.max_gas_per_tx


def test_dry_runs_leave_the_loop_free_and_are_bounded_per_peer_and_sender(node):
    senders = [KeyPair.generate() for _ in range(3)]
    target = deploy_spin(node, senders)
    many = [spin_call(node, senders[0], n, target) for n in range(6)]
    peer_a, peer_b = b"a" * 32, b"b" * 32

    async def flood():
        ticks = 0
        done = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0)
        ticking = asyncio.ensure_future(ticker())
        # one sender through one peer: 4 dry runs at a time, the rest admitted without one
        from_peer = await node.admit(many, [peer_a] * len(many))
        # other senders through another peer, while the API waits for room for its own
        api = node.admit([spin_call(node, senders[2], n, target) for n in range(6)])
        relayed = node.admit([spin_call(node, senders[1], n, target) for n in range(3)],
                             [peer_b] * 3)
        api, relayed = await asyncio.gather(api, relayed)
        done.set()
        await ticking
        return ticks, from_peer, api, relayed

    ticks, from_peer, api, relayed = asyncio.run(flood())
    assert all(r["accepted"] for r in from_peer)
    assert ["dry_run" in r for r in from_peer] == [True] * 4 + [False] * 2
    assert all(r["dry_run"]["error"].startswith("out_of_gas") for r in from_peer[:4] + api + relayed)
    # On the loop the dry runs would leave it one tick per await (about one per transaction);
    # off it, the loop spins freely (tens of thousands of ticks here).
    assert ticks > 10 * (len(from_peer) + len(api) + len(relayed)), ticks
    assert node.dry_runs.refused == 2
    assert len(node.mempool) == 6 + 6 + 3


def test_runner_bounds():
    async def scenario():
        runner = DryRunner(capacity=3, per_key=2, wall_clock_s=1)
        gate, started = threading.Event(), []

        def job(n):                          # holds the runner's thread until the gate opens
            started.append(n)
            assert gate.wait(30)
            return n
        first = [asyncio.ensure_future(runner.run([("sender", 1)], job, n)) for n in range(2)]
        await asyncio.sleep(0)
        assert runner.busy([("sender", 1)]) and not runner.busy([("sender", 2)])
        with pytest.raises(Busy):
            await runner.run([("sender", 1)], job, 9)
        third = asyncio.ensure_future(runner.run([("sender", 2)], job, 2))
        await asyncio.sleep(0)
        with pytest.raises(Busy):            # the runner is full for every key
            await runner.run([("sender", 3)], job, 9)
        waiting = asyncio.ensure_future(runner.run([("sender", 3)], job, 3, wait=True))
        gate.set()
        results = await asyncio.gather(*first, third, waiting)
        runner.close()
        return results, sorted(started), runner.refused
    results, started, refused = asyncio.run(scenario())
    assert results == [0, 1, 2, 3] and started == [0, 1, 2, 3] and refused == 2
