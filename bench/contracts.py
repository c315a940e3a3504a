"""Contract VM benchmark: throughput, overhead and gas calibration, measured side by side.

Prints a table; the last line is one JSON object with ``calls_per_s`` (iot_coin.transfer through
the VM over a MemState), ``vm_overhead_ratio`` (a trivial call against a plain Python function
doing the same state write), ``voucher_verify_per_s`` (the wallet-side voucher check), and the
figures they are compared with: a fresh runtime per call, the raw Ed25519 limit, on-chain redeems,
and honest vs worst-case nanoseconds per gas.

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

from contracts.system import system_contract  # noqa: E402
from contracts.testkit import Harness, addr  # noqa: E402
from contracts.vm import VM  # noqa: E402
from contracts.vouchers import Voucher, sign_voucher, verify_voucher  # noqa: E402

COIN, PC, C = addr("coin"), addr("channels"), addr("trivial")
ISSUER, SELLER, BUYER = addr("issuer"), addr("seller"), addr("buyer")
WORST = {
    "string <, 16 KiB": "local a = string.rep('a', 16384) local c = string.concat("
                        "string.rep('a', 16383), 'b') while true do local x = a < c end",
    "string ==, 16 KiB": "local a = string.rep('a', 16384) local c = string.concat("
                         "string.rep('a', 16383), 'a') while true do local x = a == c end",
    "string.rep 16 KiB": "while true do local x = string.rep('a', 16384) end",
    "sorted pairs, 5000 keys": "local t = {} for i = 1, 5000 do t[string.concat('k', i)] = i "
                               "end while true do for k in pairs(t) do end end",
}


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


def ns_per_gas(body, gas):
    vm = VM(wall_clock_s=60)
    h = Harness(vm=vm)
    assert h.deploy(C, f"function f() {body} end").ok
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        result = h.call(C, "f", gas=gas)
        best = min(best, time.perf_counter() - start)
    assert result.error_code == "out_of_gas", result.error
    return best * 1e9 / gas


def main():
    quick = "--quick" in sys.argv
    n = 300 if quick else 2000
    gas = 500_000 if quick else 2_000_000
    warm, warm_gas = transfer_rate(VM(), n)
    fresh, _ = transfer_rate(VM(fresh_runtime=True), n // 4)
    vm_rate, py_rate = overhead(VM(), n)
    verify, raw_verify = vouchers(n)
    redeem, redeem_gas = redeem_rate(VM(), n // 2)
    honest = ns_per_gas("local s = 0 for i = 1, 1 << 40 do s = s + i end", gas)
    worst = {name: ns_per_gas(body, gas) for name, body in WORST.items()}
    worst_name = max(worst, key=worst.get)
    rows = [
        ("iot_coin.transfer, warm runtime", f"{warm:,.0f} calls/s", f"{warm_gas} gas"),
        ("iot_coin.transfer, fresh runtime", f"{fresh:,.0f} calls/s", "kernel loaded per call"),
        ("trivial storage write, VM", f"{vm_rate:,.0f} calls/s", ""),
        ("same write, plain Python", f"{py_rate:,.0f} calls/s",
         f"ratio {py_rate / vm_rate:,.0f}x"),
        ("voucher check (hash + Ed25519)", f"{verify:,.0f} /s",
         f"{verify / raw_verify:.2f} of raw verify"),
        ("raw Ed25519 verify (PyNaCl)", f"{raw_verify:,.0f} /s", "the limit"),
        ("payment_channel.redeem, VM", f"{redeem:,.0f} calls/s", f"{redeem_gas} gas"),
        ("honest loop", f"{honest:.1f} ns/gas", ""),
    ] + [(f"worst: {k}", f"{v:.1f} ns/gas", f"{v / honest:.1f}x honest")
         for k, v in worst.items()]
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>18}  {note}")
    print(json.dumps({
        "calls_per_s": round(warm), "calls_per_s_fresh_runtime": round(fresh),
        "transfer_gas": warm_gas, "vm_overhead_ratio": round(py_rate / vm_rate, 1),
        "voucher_verify_per_s": round(verify), "raw_verify_per_s": round(raw_verify),
        "redeem_per_s": round(redeem), "redeem_gas": redeem_gas,
        "honest_ns_per_gas": round(honest, 1), "worst_ns_per_gas": round(worst[worst_name], 1),
        "worst_case": worst_name,
    }))


if __name__ == "__main__":
    main()
