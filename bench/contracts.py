"""Contract VM benchmark: throughput, overhead and gas calibration, measured side by side.

Prints a table; the last line is one JSON object with ``calls_per_s`` (iot_coin.transfer through
the VM over a MemState, a fresh Lua runtime per call as the node runs it), ``vm_overhead_ratio``
(a trivial call against a plain Python function doing the same state write),
``voucher_verify_per_s`` (the wallet-side voucher check), and the figures they are compared
with: a reused runtime (what history-freedom costs), the raw Ed25519 limit, on-chain redeems.
Gas calibration (docs/protocol.md §14.3): the fuzzer of bench/vm_fuzz.py searches the whole
environment for ``worst_ns_per_gas`` and ``worst_bytes_per_gas`` (with the call that produced
each) against ``honest_ns_per_gas``; ``max_gas_per_tx`` and ``slot_ms`` are the defaults of
chain/params.py, checked against ``max_gas × worst × 5 < slot / 4`` (a Pi-class CPU is taken as
5× this machine), and ``max_block_gas`` against half a slot. bench/contract_flood.py floods a node
process with maximum-gas calls and reports ``api_p99_ms_under_flood`` beside the idle figure.

    .venv/bin/python bench/contracts.py [--quick]
"""

import json
import os
import sys
import time

# This file is named like the package it measures: keep bench/ off the import path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from nacl.signing import SigningKey  # noqa: E402

import importlib.util  # noqa: E402

from chain.params import Params  # noqa: E402
from contracts.system import system_contract  # noqa: E402
from contracts.testkit import Harness, addr  # noqa: E402
from contracts.vm import VM  # noqa: E402
from contracts.vouchers import Voucher, sign_voucher, verify_voucher  # noqa: E402

COIN, PC, C = addr("coin"), addr("channels"), addr("trivial")
ISSUER, SELLER, BUYER = addr("issuer"), addr("seller"), addr("buyer")
PI_FACTOR = 5


def _sibling(name):
    """bench/<name>.py as a module (bench/ stays off the import path)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(_HERE, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rate(fn, n):
    """Calls per second of ``fn`` over ``n`` calls (best of three rounds)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, time.perf_counter() - start)
    return n / best


def token_harness(vm):
    h = Harness(vm=vm)
    assert h.deploy(COIN, system_contract("iot_coin"), ["Watt", "WAT", 0, 10**12, None, False],
                    caller=ISSUER).ok
    return h


def transfer_rate(vm, n):
    h = token_harness(vm)
    recipients = [addr(f"r{i}") for i in range(64)]

    def one(i):
        result = h.call(COIN, "transfer", recipients[i % 64], 1, caller=ISSUER)
        assert result.ok, result.error
    per_s = rate(one, n)
    return per_s, h.call(COIN, "transfer", recipients[0], 1, caller=ISSUER).gas_used


def overhead(vm, n):
    h = Harness(vm=vm)
    assert h.deploy(C, "function put() chain.storage.set('k', 'v') end").ok
    state = h.state

    def plain(i):
        state.storage_set(C, b"k", b"v")
    vm_rate = rate(lambda i: h.call(C, "put"), n)
    py_rate = rate(plain, n * 20)
    return vm_rate, py_rate


def vouchers(n):
    key = SigningKey.generate()
    pub, cid = bytes(key.verify_key), b"c" * 32
    signed = [(v, sign_voucher(key, v)) for v in
              (Voucher("devnet", PC, SELLER, cid, a, a) for a in range(1, n + 1))]
    verify = rate(lambda i: verify_voucher(pub, *signed[i]), n)
    raw = [key.sign(b"m" * 32) for _ in range(n)]
    vk = key.verify_key
    raw_rate = rate(lambda i: vk.verify(raw[i]), n)
    return verify, raw_rate


def redeem_rate(vm, n):
    h = Harness(vm=vm)
    assert h.deploy(PC, system_contract("payment_channel")).ok
    key = SigningKey.generate()
    h.state.credit(BUYER, 10**12)
    result = h.call(PC, "open", b"chan", SELLER, bytes(key.verify_key), 10**9, caller=BUYER,
                    value=10**11)
    assert result.ok, result.error
    signed = [sign_voucher(key, Voucher(h.chain_id, PC, SELLER, b"chan", a, a))
              for a in range(1, 3 * n + 1)]
    counter = iter(range(1, 3 * n + 1))

    def one(i):
        a = next(counter)
        res = h.call(PC, "redeem", b"chan", a, a, signed[a - 1], caller=SELLER)
        assert res.ok, res.error
    per_s = rate(one, n)
    last = 10**6
    sig = sign_voucher(key, Voucher(h.chain_id, PC, SELLER, b"chan", last, last))
    return per_s, h.call(PC, "redeem", b"chan", last, last, sig, caller=SELLER).gas_used


def main():
    quick = "--quick" in sys.argv
    n = 300 if quick else 2000
    fresh, transfer_gas = transfer_rate(VM(), n)
    reused, _ = transfer_rate(VM(reuse_runtime=10**9), n)
    vm_rate, py_rate = overhead(VM(), n)
    verify, raw_verify = vouchers(n)
    redeem, redeem_gas = redeem_rate(VM(), n // 2)
    fuzzer = _sibling("vm_fuzz").Fuzzer()
    honest = fuzzer.honest_ns_per_gas()
    slowest, hungriest = fuzzer.run(20 if quick else 120)
    params = Params()
    budget_ms = params.max_gas_per_tx * slowest.ns_per_gas * PI_FACTOR / 1e6
    block_ms = params.max_block_gas * slowest.ns_per_gas * PI_FACTOR / 1e6
    flood = _sibling("contract_flood").run(10 if quick else 30)
    rows = [
        ("iot_coin.transfer (fresh runtime)", f"{fresh:,.0f} calls/s", f"{transfer_gas} gas"),
        ("same, runtime reused (tests only)", f"{reused:,.0f} calls/s",
         f"fresh costs {reused / fresh:.1f}x"),
        ("trivial storage write, VM", f"{vm_rate:,.0f} calls/s", ""),
        ("same write, plain Python", f"{py_rate:,.0f} calls/s",
         f"ratio {py_rate / vm_rate:,.0f}x"),
        ("voucher check (hash + Ed25519)", f"{verify:,.0f} /s",
         f"{verify / raw_verify:.2f} of raw verify"),
        ("raw Ed25519 verify (PyNaCl)", f"{raw_verify:,.0f} /s", "the limit"),
        ("payment_channel.redeem, VM", f"{redeem:,.0f} calls/s", f"{redeem_gas} gas"),
        ("honest loop", f"{honest:.1f} ns/gas", ""),
        ("fuzzer: slowest per gas", f"{slowest.ns_per_gas:.1f} ns/gas", slowest.describe()),
        ("fuzzer: hungriest per gas", f"{hungriest.bytes_per_gas:.1f} B/gas",
         hungriest.describe()),
        ("fuzzer: candidates measured", f"{len(fuzzer.measured):,}", ""),
        ("max_gas_per_tx x worst x 5", f"{budget_ms:.0f} ms",
         f"slot {params.slot_ms} ms: under a quarter is {params.slot_ms / 4:.0f} ms"),
        ("max_block_gas x worst x 5", f"{block_ms:.0f} ms",
         f"under half a slot is {params.slot_ms / 2:.0f} ms"),
        ("API p50 / p99, idle node", f"{flood['api_p50_ms_idle']} / "
         f"{flood['api_p99_ms_idle']} ms", "GET /v1/status"),
        ("API p50 / p99, max-gas call flood", f"{flood['api_p50_ms_under_flood']} / "
         f"{flood['api_p99_ms_under_flood']} ms",
         f"{flood['flood_blocks']} blocks in {flood['flood_slots']} slots; "
         f"answers {flood['flood_answers']}"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>18}  {note}")
    print(json.dumps({
        "calls_per_s": round(fresh), "calls_per_s_reused_runtime": round(reused),
        "transfer_gas": transfer_gas, "vm_overhead_ratio": round(py_rate / vm_rate, 1),
        "voucher_verify_per_s": round(verify), "raw_verify_per_s": round(raw_verify),
        "redeem_per_s": round(redeem), "redeem_gas": redeem_gas,
        "honest_ns_per_gas": round(honest, 1),
        "worst_ns_per_gas": round(slowest.ns_per_gas, 1), "worst_ns_call": slowest.describe(),
        "worst_bytes_per_gas": round(hungriest.bytes_per_gas, 1),
        "worst_bytes_call": hungriest.describe(),
        "max_gas_per_tx": params.max_gas_per_tx, "slot_ms": params.slot_ms,
        "max_gas_time_pi_ms": round(budget_ms), "fits_quarter_slot": budget_ms < params.slot_ms / 4,
        "max_block_gas": params.max_block_gas, "max_block_gas_time_pi_ms": round(block_ms),
        "fits_half_slot": block_ms < params.slot_ms / 2, **flood,
    }))


if __name__ == "__main__":
    main()
