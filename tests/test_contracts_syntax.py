"""The contract front end keeps Lua's meaning: rewritten programs compute what Lua computes.

contracts/syntax.py rewrites comparisons, concatenation, numeric for bounds, table stores,
closures and constructors into metered kernel helpers. Every program here runs twice: as plain
Lua 5.4 in a bare runtime (the reference) and as a contract (parsed, rewritten, compiled and run
in the sandbox), and the results must be equal, errors (and their line numbers) included.
"""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lupa import lua54

from contracts.syntax import rewrite
from contracts.testkit import Harness, addr
from contracts.vm import VM, ContractError
from contracts.values import decode_value

C = addr("syntax")

PROGRAMS = {
    "order and equality": """
function main()
  local a, b, z = "a\\0b", "a\\0c", string.rep("x", 50)
  local r = {}
  r[#r + 1] = tostring(a < b) r[#r + 1] = tostring(b <= a) r[#r + 1] = tostring(a > "a")
  r[#r + 1] = tostring(z .. "y" == z .. "y") r[#r + 1] = tostring(z ~= z .. "")
  r[#r + 1] = tostring(1 < 2 == true) r[#r + 1] = tostring(not a == b)
  r[#r + 1] = tostring((a) >= (b)) r[#r + 1] = tostring(#a < 3)
  return table.concat(r, ",")
end""",
    "concatenation": """
function main()
  local n, s = 7, "s"
  local t = {1 .. 2 + 3, s .. n .. s, n .. "", "a" .. "b" .. "c" .. n * 2, (s .. s) .. s}
  return table.concat(t, "|")
end""",
    "evaluation order": """
local log = {}
local function v(x) log[#log + 1] = tostring(x) return x end
function main()
  local t = {}
  local ok = v(1) < v(2) and v("a") .. v("b") >= v("ab") or v(false)
  t[v("k")] = v(v(3) .. v(4))
  t[v(1)], t[v("j")] = v(10), v(20)
  local x = v(5) > v(6) or v("x") ~= v("y")
  return table.concat(log, ",") .. ";" .. tostring(ok) .. tostring(x) .. t.k .. t[1] .. t.j
end""",
    "stores and methods": """
local obj = {n = 0}
function obj.add(self, k) self.n = self.n + k return self end
function obj:twice(k) return self:add(k):add(k) end
local deep = {a = {b = {}}}
function deep.a.b.f(x) return x * 3 end
function main()
  obj:twice(4)
  deep.a.b.c = deep.a.b.f(obj.n)
  local list = {}
  for i = 1, 5 do list[#list + 1] = i * i end
  list[#list] = nil
  list[2], list[3] = list[3], list[2]
  return table.concat(list, ",") .. ":" .. obj.n .. ":" .. deep.a.b.c
end""",
    "closures and loops": """
local function counter()
  local n = 0
  return function(k) n = n + (k or 1) return n end
end
function main()
  local c, fs, out = counter(), {}, {}
  for i = 10, 1, -3 do fs[#fs + 1] = function() return i + c() end end
  for _, f in ipairs(fs) do out[#out + 1] = f() end
  local lo, hi, step = 2, 8, 2
  for i = lo, hi, step do out[#out + 1] = i end
  local j = 0
  repeat local k = j j = j + 1 until k >= 3
  while j < 6 do j = j + 1 end
  local function fact(n) if n <= 1 then return 1 end return n * fact(n - 1) end
  out[#out + 1] = fact(10) out[#out + 1] = j
  return table.concat(out, ",")
end""",
    "goto and blocks": """
function main()
  local s = 0
  for i = 1, 10 do
    if i % 2 == 0 then goto continue end
    do local i2 = i * i s = s + i2 end
    ::continue::
  end
  local t <const> = {x = 1}
  return s .. "," .. t.x
end""",
    "strings and methods": """
function main()
  local s = "Hello, World"
  local t = {s:upper(), s:sub(1, 5), ("x"):rep(3, "-"), s:find("World"), #s, s:byte(1),
    string.format("%5d|%-3s|%x", 42, "ab", 255)}
  return table.concat(t, ";")
end""",
}

ERRORS = {
    "compare on a later line": ("function main()\n  local a = 'x'\n\n  local b = 1\n"
                                "  return a < b\nend", 5),
    "concat a table": "function main()\n  local t = {}\n  return 'a' .. t\nend",
    "index nil": "function main()\n  local t\n  t.x = 1\nend",
    "call nil": "function main()\n  return missing_function()\nend",
}


def reference(src):
    rt = lua54.LuaRuntime(register_eval=False, encoding=None)
    for lib in ("string", "table"):
        rt.execute(f"for k in pairs({lib}) do end")
    rt.execute("getmetatable('').__add = nil getmetatable('').__concat = nil")
    rt.execute(src)
    try:
        return True, rt.eval("main()")
    except lua54.LuaError as exc:
        return False, str(exc)


_VM = []


def contract(src):
    if not _VM:
        _VM.append(VM())
    h = Harness(vm=_VM[0])
    deployed = h.deploy(C, src, gas=10**9)
    assert deployed.ok, deployed.error
    result = h.call(C, "main", gas=10**8)
    if result.ok:
        return True, decode_value(result.return_value)
    return False, result.error


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_programs_compute_what_lua_computes(name):
    expected = reference(PROGRAMS[name])
    assert expected[0], expected
    got = contract(PROGRAMS[name])
    assert got == (True, expected[1] if isinstance(expected[1], bytes) else expected[1]), \
        (got, expected)


def _line(message):
    m = re.search(r":(\d+):", message)
    return int(m.group(1)) if m else None


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_errors_keep_their_lines(name):
    src = ERRORS[name][0] if isinstance(ERRORS[name], tuple) else ERRORS[name]
    ok, message = reference(src)
    assert not ok
    got_ok, got = contract(src)
    assert not got_ok
    assert _line(got) == _line(message), (got, message)
    assert rewrite(src).count("\n") == src.count("\n")


ints = st.integers(-5, 5).map(str)
strs = st.sampled_from(["'a'", "'b'", "'ab'", "'a\\0'", "''", "'\\0'", "'ba'"])


def _exprs(leaf):
    return st.recursive(leaf, lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["<", "<=", ">", ">=", "==", "~="]), inner)
        .map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(inner, st.sampled_from(["and", "or"]), inner)
        .map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        inner.map(lambda e: f"(not {e})")), max_leaves=8)


int_exprs = st.recursive(ints, lambda inner: st.tuples(
    inner, st.sampled_from(["+", "-", "*", "//", "%"]), inner).map(
    lambda t: f"({t[0]} {t[1]} {t[2]})"), max_leaves=6)
str_exprs = st.recursive(strs, lambda inner: st.one_of(
    st.tuples(inner, inner).map(lambda t: f"{t[0]} .. {t[1]}"),
    st.tuples(inner, int_exprs).map(lambda t: f"({t[0]} .. {t[1]})")), max_leaves=5)


@given(st.one_of(_exprs(int_exprs), _exprs(str_exprs), _exprs(st.one_of(ints, strs))))
@settings(max_examples=150, deadline=None)
def test_random_expressions_agree_with_lua(expr):
    src = f"function main() local ok, v = pcall(function() return {expr} end) " \
          f"return ok and tostring(v) or 'error' end"
    expected = reference(src)
    assert contract(src) == (True, expected[1]), expr


@pytest.mark.parametrize("src", ["x = 1 .. ", "function f( end", "x = {", "return return",
                                 "x = 'unfinished", "--[[ open", "x = [==[ open", "a.b"])
def test_syntax_errors_refused(src):
    with pytest.raises(ContractError) as info:
        VM().compile(src)
    assert info.value.code == "bad_value"
