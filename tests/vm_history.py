"""A pytest plugin for the fresh-versus-used differential (tests/test_contracts_history.py).

Loaded with ``-p tests.vm_history --vm-history=fresh|used --vm-history-log=FILE``, it records,
in order and per test, the outcome of every ``VM.deploy`` and ``VM.call`` the tests make. In
``used`` mode every VM keeps its Lua runtime across calls (``reuse_runtime``) and every new
runtime runs 1,000 other calls before the tests' first one on it: allocation, garbage, caught and
fatal errors, string and table work, memory bombs stopped by the cap. VMs built alike share their
runtimes (one per thread), so a runtime also carries what earlier tests ran. The two logs must be
equal line for line.
"""

import json
import threading

from hypothesis import settings

from contracts.memstate import MemState
from contracts.testkit import addr
from contracts.vm import VM, Backstop, CallContext

WARMUP_CALLS = 1000
WARM = addr("history-warmup")
WARMUP = """
local keep = {}
function churn(n)
  local t = {}
  for i = 1, n do t[#t + 1] = string.rep(string.char(65 + i % 26), i % 200) end
  keep[#keep + 1] = table.concat(t, ",", 1, math.min(#t, 50))
  local m = {}
  for i = 1, n do m[string.concat("k", i)] = {i, i * 2} end
  for i = 1, n, 2 do m[string.concat("k", i)] = nil end
  local ok = pcall(function() error(string.rep("e", 1000)) end)
  for k in pairs(m) do keep[#keep + 1] = k end
  return #keep
end
function spin() while true do local x = {} end end
function deep() local function r() return r() + 1 end return r() end
function bomb() local t = {} for i = 1, 1 << 40 do t[i] = string.rep("x", 16000) end end
function cap() return string.rep("x", 1 << 20) end
"""


def pytest_addoption(parser):
    parser.addoption("--vm-history", choices=("fresh", "used"))
    parser.addoption("--vm-history-log")


def warm(vm):
    """Fill ``vm``'s runtime for this thread up to its cap (that runtime is dropped), then run
    WARMUP_CALLS calls of every kind on the next one."""
    state = MemState()
    ctx = CallContext("devnet", WARM, addr("w"), addr("w"), 0, 1, 1)
    result = _original["deploy"](vm, state, ctx, WARMUP, [], 10**9)
    assert result.ok, result.error
    state.set_code(WARM, result.code)
    try:
        _original["call"](vm, state, ctx, "bomb", [], 10**9)
    except Backstop:
        pass
    for i in range(WARMUP_CALLS):
        method, gas = [("churn", 10**7), ("spin", 20_000), ("deep", 10**6), ("cap", 10**6),
                       ("churn", 10**6)][i % 5]
        args = [i % 60] if method == "churn" else []
        _original["call"](vm, state, ctx, method, args, gas)


_original = {}
_LOCALS = {}      # a VM's settings -> the threading.local holding its (used) runtime


def pytest_configure(config):
    mode = config.getoption("--vm-history")
    if not mode:
        return
    settings.register_profile("vm-history", derandomize=True, database=None)
    settings.load_profile("vm-history")
    log = open(config.getoption("--vm-history-log"), "w", encoding="utf-8")
    current = {"test": None, "n": 0}
    _original.update(init=VM.__init__, deploy=VM.deploy, call=VM.call)

    def init(self, *args, **kwargs):
        if mode == "used":
            kwargs["reuse_runtime"] = 10**9
        _original["init"](self, *args, **kwargs)
        if mode == "used":
            key = (self.memory_limit, self.max_depth, self.instruction_step, repr(self.gas),
                   self.probe)
            self._local = _LOCALS.setdefault(key, threading.local())

    def recorded(name):
        def run(self, *args, **kwargs):
            if mode == "used" and getattr(self._local, "runtime", None) is None:
                warm(self)          # a new runtime (the first, or one a backstop dropped)
            current["n"] += 1
            try:
                result = _original[name](self, *args, **kwargs)
            except Backstop as exc:
                log.write(json.dumps([current["test"], current["n"], name,
                                      f"Backstop({exc.code})"]) + "\n")
                raise
            log.write(json.dumps([current["test"], current["n"], name, repr(result)]) + "\n")
            return result
        return run

    VM.__init__ = init
    VM.deploy, VM.call = recorded("deploy"), recorded("call")
    config._vm_history_log = log
    config._vm_history_current = current


def pytest_runtest_setup(item):
    current = getattr(item.config, "_vm_history_current", None)
    if current is not None:
        current["test"], current["n"] = item.nodeid, 0


def pytest_unconfigure(config):
    log = getattr(config, "_vm_history_log", None)
    if log is not None:
        log.close()
