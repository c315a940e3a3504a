"""History-free limits: every contract test gives the same receipts on a fresh runtime and on
a runtime that already ran 1,000 other calls (docs/protocol.md §14.3).

The contract test modules run twice, side by side in subprocesses under the tests/vm_history.py plugin: once
with a fresh Lua runtime per call (what the node does), once with every VM's runtime reused
after 1,000 calls of churn, garbage, errors and a memory bomb. Every deploy and call outcome
(status, error, gas, return value, events, compiled code, or the backstop that fired) is logged
in order and the two logs must match line for line.
"""

import glob
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

MODULES = sorted(p for p in glob.glob("tests/test_contracts_*.py")
                 if not p.endswith("test_contracts_history.py"))


def start(mode, log):
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
         "tests.vm_history", f"--vm-history={mode}", f"--vm-history-log={log}", *MODULES],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"})


def finish(proc, log):
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-6000:]
    with open(log, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_fresh_and_used_runtimes_give_the_same_receipts(tmp_path):
    procs = {mode: start(mode, tmp_path / f"{mode}.log") for mode in ("fresh", "used")}
    try:
        fresh, used = (finish(procs[mode], tmp_path / f"{mode}.log") for mode in procs)
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()
    assert len(fresh) > 3000, "the contract tests made too few calls to compare"
    assert {entry[0].split("::")[0] for entry in fresh} == set(MODULES)
    assert len(fresh) == len(used)
    for a, b in zip(fresh, used):
        assert a == b, f"{a[0]} call {a[1]} differs:\n fresh {a[3][:500]}\n used  {b[3][:500]}"
