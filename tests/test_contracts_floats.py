"""No float can exist in a contract: every path that could make one is enumerated here.

Lua makes floats from float literals and the / and ^ operators (refused at deploy), from strings
coerced to numbers (library arguments, numeric ``for`` bounds, arithmetic), from the float
functions and constants of ``math``, and from ``tonumber``. The test calls every function of the
environment (the VM lists it) with every combination of one or two arguments drawn from strings
that read as floats and from ordinary values, calls the iterators they return, applies every
operator, and checks that no result is a float. The host refuses a float as a last line.
"""

import itertools

import pytest

from contracts.host import ContractError, Session
from contracts.testkit import Harness, addr
from contracts.values import BadValue, decode_value, encode_value
from contracts.vm import VM

C = addr("floats")
FLOATY = ["1.5", "1e308", "1e999", "-1e999", "0x1p4", "0x1.8", ".5", "5.", "1E2", " 2.5 ",
          "nan", "inf", "-0.0", "9223372036854775808", "0x7fffffffffffffff1", "1e-400"]
VALUES = [f"'{s}'" for s in FLOATY] + ["3", "-1", "0", "math.maxinteger", "math.mininteger",
                                       "''", "'abc'", "{}", "{1, 2}", "true", "false"]
OPERATORS = ["a + b", "a - b", "a * b", "a // b", "a % b", "-a", "a & b", "a | b", "a ~ b",
             "a << b", "a >> b", "~a", "#a", "a .. b", "a < b", "a <= b", "a == b"]

PROBE = """
local values = {%(values)s}
local function floats(r)
  local n = 0
  for i = 1, r.n do
    local v = r[i]
    if math.type(v) == "float" then n = n + 1 end
    if type(v) == "table" then for _, w in pairs(v) do
      if math.type(w) == "float" then n = n + 1 end end end
    if type(v) == "function" then         -- an iterator: run it a few steps
      for _ = 1, 3 do
        local s = table.pack(pcall(v, r[i + 1], r[i + 2]))
        for j = 1, s.n do if math.type(s[j]) == "float" then n = n + 1 end end
      end
    end
  end
  return n
end
-- Calls with first argument values[i] (and second values[j] for j in lo..hi).
function probe(name, i, lo, hi)
  local f = %(lookup)s
  local found, calls = floats(table.pack(pcall(f, values[i]))), 0
  for j = lo, hi do
    found = found + floats(table.pack(pcall(f, values[i], values[j])))
    calls = calls + 1
  end
  return {found, calls}
end
"""


@pytest.fixture(scope="module")
def vm():
    return VM()


@pytest.fixture(scope="module")
def harness(vm):
    h = Harness(vm=vm)
    lookup = ("name == '' and nil or (function() local lib, key = string.match(name, "
              "'^(%w+)%.(%w+)$') if lib then return ({string = string, table = table, "
              "math = math, utf8 = utf8})[lib][key] end return ({assert = assert, error = "
              "error, ipairs = ipairs, select = select, tonumber = tonumber, tostring = "
              "tostring, type = type, unpack = unpack, pcall = pcall, xpcall = xpcall, "
              "rawequal = rawequal, rawlen = rawlen, pairs = pairs})[name] end)()")
    src = PROBE % {"values": ", ".join(VALUES), "lookup": lookup}
    assert h.deploy(C, src, gas=10**9).ok
    return h


def environment_functions():
    return [n for n in VM().environment() if n not in ("math.maxinteger", "math.mininteger",
                                                       "utf8.charpattern")]


@pytest.mark.parametrize("name", environment_functions())
def test_no_function_returns_a_float(harness, name):
    n, found, calls, ended = len(VALUES), 0, 0, set()
    for i in range(1, n + 1):
        spans = [(i, 1, n)]
        while spans:
            args = spans.pop()
            result = harness.call(C, "probe", name, *args, gas=10**8)
            if result.ok:
                f, c = decode_value(result.return_value)
                found, calls = found + f, calls + c
            elif args[1] < args[2]:       # a fatal error (string cap, gas): split the span
                mid = (args[1] + args[2]) // 2
                spans += [(i, args[1], mid), (i, mid + 1, args[2])]
            else:
                ended.add(result.error_code)
                calls += 1
    assert calls == n * n
    assert ended <= {"out_of_memory", "out_of_gas", "stack_overflow"}
    assert found == 0, f"{name} returned a float"


def test_the_environment_is_what_the_inventory_lists():
    names = set(VM().environment())
    assert {"string.rep", "table.move", "math.abs", "utf8.codes", "pairs", "tonumber"} <= names
    assert not names & {"math.huge", "math.pi", "math.sqrt", "math.random", "string.gsub",
                        "string.dump", "load", "next", "rawget", "rawset", "collectgarbage"}
    inventory = open("docs/protocol.md", encoding="utf-8").read()
    missing = [n for n in names if f"`{n}`" not in inventory]
    assert not missing, f"functions missing from the §14.3 inventory: {missing}"


@pytest.mark.parametrize("op", OPERATORS)
def test_no_operator_makes_a_float(vm, op):
    h = Harness(vm=vm)
    assert h.deploy(C, f"""
    local values = {{{", ".join(VALUES)}}}
    function f()
      local found = 0
      for i = 1, #values do for j = 1, #values do
        local a, b = values[i], values[j]
        local ok, v = pcall(function() return {op} end)
        if math.type(v) == "float" then found = found + 1 end
      end end
      return found
    end""", gas=10**9).ok
    assert h.value(C, "f", gas=10**9) == 0


@pytest.mark.parametrize("loop", [
    "for i = a, 3 do r = i break end", "for i = 1, a do r = i break end",
    "for i = 1, 3, a do r = i break end", "for i = a, a, a do r = i break end",
])
def test_numeric_for_never_counts_in_floats(vm, loop):
    h = Harness(vm=vm)
    assert h.deploy(C, f"""
    local values = {{{", ".join(VALUES)}}}
    function f()
      local found = 0
      for k = 1, #values do
        local a, r = values[k], nil
        local ok = pcall(function() {loop} end)
        if math.type(r) == "float" then found = found + 1 end
      end
      return found
    end""", gas=10**9).ok
    assert h.value(C, "f", gas=10**9) == 0


@pytest.mark.parametrize("source", [
    "x = 1.5", "x = 3e2", "x = .5", "x = 0x1p-2", "x = 0xA.8", "x = 1 / 2", "x = 2 ^ 2",
    "x = 9223372036854775808", "x = math.huge", "x = math.pi",
])
def test_float_sources_refused_before_or_at_run(vm, source):
    h = Harness(vm=vm)
    result = h.deploy(C, source + " function f() return x end")
    if result.ok:                       # math.huge/pi: forbidden when read
        result = h.call(C, "f")
    assert (result.ok, result.error_code) == (False, "forbidden"), result


def test_floats_refused_at_the_boundary(vm):
    with pytest.raises(BadValue):
        encode_value([1, 2.5])
    h = Harness(vm=vm)
    assert h.deploy(C, "function f(x) return x end").ok
    assert h.call(C, "f", 0.5).error_code == "bad_value"
    # the host's dispatcher refuses a float in any argument (the last line of defence)
    session = Session.__new__(Session)
    session.frames, session.fault = [None], None
    session._ops = [None, lambda *a: pytest.fail("a float reached a host operation")]
    ok, message = session._host(1, 0, b"k", 1.5)
    assert not ok and b"float" in message
    assert issubclass(ContractError, Exception)
