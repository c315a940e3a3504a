"""Worst-case metering: every function and operator a contract reaches is billed for the worst
case of its arguments before it works, or refuses them (docs/protocol.md §14.3 inventory).

Each class of the inventory is attacked with the arguments that made C loop or build without
bound: the assertions are on gas (how much one operation must cost, how few of them fit in a
gas limit) and on refusals, never on time. Real Lua; the VM counts every instruction
(``instruction_step=1``) so that the gas of one operation can be read exactly.
"""

import pytest

from contracts.gas import DEFAULT_GAS, MAX_STRING
from contracts.testkit import Harness, addr
from contracts.vm import VM

C = addr("metered")
G = DEFAULT_GAS
NUL16K = "string.rep('\\0', 16383)"


@pytest.fixture(scope="module")
def vm():
    return VM(instruction_step=1)


def gas_of(vm, setup, op, n=4):
    """Gas of one ``op`` after ``setup``: the difference between running it n times and not."""
    h = Harness(vm=vm)
    src = f"function f(n) {setup} for i = 1, n do {op} end return 1 end"
    deployed = h.deploy(C, src, gas=10**9)
    assert deployed.ok, deployed.error
    runs = [h.call(C, "f", k, gas=10**9) for k in (0, n)]
    assert all(r.ok for r in runs), runs[1].error
    return (runs[1].gas_used - runs[0].gas_used) / n


def outcome(vm, body, gas=2_000_000):
    h = Harness(vm=vm)
    deployed = h.deploy(C, f"function f() {body} end", gas=10**9)
    assert deployed.ok, deployed.error
    return h.call(C, "f", gas=gas)


# -- empty units and separators ---------------------------------------------------------------

@pytest.mark.parametrize("call", [
    "string.rep('', 1 << 62)", "string.rep('', math.maxinteger, '')",
    "('').rep('', 1 << 50)", "string.rep('x', 0, string.rep('y', 100))",
])
def test_empty_repeats_are_free_and_instant(vm, call):
    result = outcome(vm, f"return #{call}")
    assert result.ok and result.gas_used < 50_000


@pytest.mark.parametrize("call", [
    "string.rep('', 1 << 40, 'x')", "string.rep('x', 1 << 40)", "string.rep('ab', 8193)",
    "string.rep('x', 16384, 'y')",
])
def test_repeats_over_the_cap_refused_before_building(vm, call):
    result = outcome(vm, f"return #{call}")
    assert (result.ok, result.error_code) == (False, "out_of_memory")
    assert str(MAX_STRING) in result.error and result.gas_used < 50_000


# -- ranges and counts --------------------------------------------------------------------------

@pytest.mark.parametrize("op, count", [
    ("local a = string.byte(s, 1, -1)", 16384), ("local a = string.byte(s, -16384, -1)", 16384),
    ("local a = string.byte(s, 1, 1 << 40)", 16384), ("local a = string.byte(s, 100, 99)", 0),
    ("local a = utf8.codepoint(u, 1, -1)", 16384), ("local a = table.unpack(t, 1, -1)", 0),
    ("local a = table.unpack(t)", 5000), ("local a = table.unpack(t, -10, 10)", 21),
])
def test_elements_pushed_are_billed(vm, op, count):
    setup = ("local s = string.rep('a', 16384) local u = string.rep('a', 16384) "
             "local t = {} for i = 1, 5000 do t[i] = i end")
    assert gas_of(vm, setup, op, n=2) >= count * DEFAULT_GAS.elem


@pytest.mark.parametrize("body", [
    "return table.unpack({}, 1, 1 << 40)", "table.move({}, 1, 1 << 50, 2)",
    "table.move({}, -(1 << 40), 1 << 40, 1)", "return select('#', table.unpack({}, -(1 << 62), 1 << 62))",
])
def test_huge_spans_run_out_of_gas_before_working(vm, body):
    result = outcome(vm, body)
    assert (result.ok, result.error_code, result.gas_used) == (False, "out_of_gas", 2_000_000)


# -- string builders --------------------------------------------------------------------------

@pytest.mark.parametrize("expr", [
    "string.char(table.unpack(big))",                     # 20 000 arguments
    "utf8.char(table.unpack(wide))",                      # 4 bytes each
    "string.format(string.rep('%99d', 200), table.unpack(big, 1, 200))",
    "string.format('%s%s', string.rep('a', 9000), string.rep('b', 9000))",
    "string.format(string.rep('%q', 4), q, q, q, q)",
    "string.pack('c16000c16000', '', '')", "string.pack('s8', string.rep('a', 16380))",
    "table.concat(big)", "table.concat({'a', 'b'}, string.rep(',', 16384))",
    "string.concat(string.rep('a', 9000), string.rep('b', 9000))",
    "string.rep('a', 9000) .. string.rep('b', 9000)", "('x'):rep(16384) .. 1",
])
def test_no_path_builds_a_string_over_the_cap(vm, expr):
    setup = ("local big = {} for i = 1, 20000 do big[i] = 65 end "
             "local wide = {} for i = 1, 4097 do wide[i] = 0x10FFFF end "
             "local q = string.rep('\\0', 4000) ")
    result = outcome(vm, f"{setup} return #({expr})", gas=10**8)
    assert (result.ok, result.error_code) == (False, "out_of_memory"), result.error


def test_strings_built_are_billed_per_byte(vm):
    per_byte = gas_of(vm, "", "local s = string.rep('a', 16384)") / 16384
    assert per_byte >= 1 / DEFAULT_GAS.value_byte_per
    assert gas_of(vm, "local s = string.rep('a', 16000)", "local t = s .. s:sub(1, 300)") >= \
        16300 // DEFAULT_GAS.value_byte_per


# -- numeric strings are never numbers --------------------------------------------------------

@pytest.mark.parametrize("call", [
    "string.sub('abc', z)", "string.byte('abc', z)", "string.rep('a', z)", "string.char(z)",
    "string.format('%d', z)", "string.pack('i4', z)", "string.unpack('i4', 'abcd', z)",
    "string.find('abc', 'b', z)", "table.unpack({}, z)", "table.insert({}, z, 1)",
    "table.concat({}, '', z)", "table.move({}, z, 1, 1)", "table.remove({1}, z)",
    "math.abs(z)", "math.max(z, 1)", "math.fmod(z, 3)", "math.ult(z, 1)", "utf8.char(z)",
    "utf8.codepoint('abc', z)", "utf8.offset('abc', z)", "utf8.len('abc', z)",
    "select(z, 1, 2)", "error('x', z)", "tonumber('10', z)",
])
def test_numeric_strings_refused_where_integers_are_expected(vm, call):
    result = outcome(vm, f"local z = string.concat(string.rep('0', 16383), '1') return {call}")
    assert (result.ok, result.error_code) == (False, "bad_value"), result.error
    assert "integer" in result.error and result.gas_used < 40_000


def test_math_tointeger_and_for_take_no_strings(vm):
    assert outcome(vm, "return math.tointeger('3')").return_value == b"\x00"
    result = outcome(vm, "local s = '1' for i = s, 3 do end")
    assert (result.ok, result.error_code) == (False, "runtime_error")
    assert "integers" in result.error


# -- patterns ------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    "local s = string.rep('a', 3000) return s:find(string.concat(string.rep('a*', 20), 'b'))",
    "local s = string.rep('a', 16000) return s:find(string.rep('a', 8000) .. 'b', 1, true)",
    "local s = string.rep(' ', 16384) while true do s:match('ab') end",
    "local p = string.rep('%a', 8000) while true do ('x'):match(p) end",
    "local s = string.rep('a', 16384) for w in s:gmatch('a-b') do end",
    "local s = string.rep('(', 8000) return s:find('%b()')",
])
def test_pattern_worst_cases_run_out_of_gas(vm, body):
    result = outcome(vm, body)
    assert (result.ok, result.error_code) == (False, "out_of_gas")


def test_pattern_matcher_billed_per_subject_byte(vm):
    setup = "local s = string.rep(' ', 16384)"
    assert gas_of(vm, setup, "local a = s:match('ab')", n=2) >= 16384 * 3 // DEFAULT_GAS.pattern_per
    assert gas_of(vm, setup, "local a = s:find('ab')", n=2) >= 16384 * 3 // 16


# -- comparisons, equality and concatenation ------------------------------------------------

def test_string_order_billed_per_compared_byte(vm):
    setup = (f"local a = string.concat({NUL16K}, 'a') local b = string.concat({NUL16K}, 'b')")
    per = gas_of(vm, setup, "local x = a < b")
    assert per >= 16383 // DEFAULT_GAS.cmp_per
    assert gas_of(vm, setup, "local x = a >= b") >= 16383 // DEFAULT_GAS.cmp_per
    # a loop comparing 16 KiB strings of zeros stops after a handful of comparisons
    result = outcome(vm, f"{setup} local n = 0 while true do local x = a < b n = n + 1 "
                         "chain.storage.set('n', chain.encode(n)) end", gas=500_000)
    assert result.error_code == "out_of_gas"


def test_string_order_results_are_byte_order(vm):
    h = Harness(vm=vm)
    src = ("function f(a, b) return {a < b, a <= b, a > b, a >= b, a == b, a ~= b} end")
    assert h.deploy(C, src).ok
    for a, b in [(b"a\x00b", b"a\x00c"), (b"\x00", b""), (b"\xff", b"\x7f"), (b"ab", b"ab"),
                 (b"a" * 50 + b"\x00", b"a" * 50 + b"\x01")]:
        got = h.value(C, "f", a, b)
        assert got == [a < b, a <= b, a > b, a >= b, a == b, a != b], (a, b)


def test_long_string_equality_billed(vm):
    setup = "local a = string.rep('a', 16384) local b = string.concat(string.rep('a', 16383), 'b')"
    assert gas_of(vm, setup, "local x = a == b") >= 16384 // DEFAULT_GAS.eq_per
    assert gas_of(vm, setup, "local x = rawequal(a, b)") >= 16384 // DEFAULT_GAS.eq_per


def test_comparing_mixed_types_is_a_runtime_error(vm):
    for body in ("return 1 < 'a'", "return {} < {}", "local a, b = 'x', 2 return a <= b"):
        result = outcome(vm, body)
        assert (result.ok, result.error_code) == (False, "runtime_error")
        assert "attempt to compare" in result.error and result.error.startswith("contract:1:")


def test_concat_operator_allowed_and_metered(vm):
    h = Harness(vm=vm)
    assert h.deploy(C, "function f(a, n) return a .. '-' .. n .. a end").ok
    assert h.value(C, "f", b"x", 7) == b"x-7x"
    assert h.call(C, "f", {}, 1).error_code == "runtime_error"


# -- tables ------------------------------------------------------------------------------------

def test_rehash_thrash_billed_per_table_size(vm):
    # Deleting one key and inserting another in a full table makes Lua rebuild it every time:
    # the first deletion after each insert pays for the table's size.
    setup = ("local t = {} for i = 1, 4096 do t[string.concat('k', i)] = i end local j = 0")
    op = "j = j + 1 t[string.concat('k', j)] = nil t[string.concat('z', j)] = j"
    assert gas_of(vm, setup, op) >= 4095 // DEFAULT_GAS.delete_per


@pytest.mark.parametrize("body, fragment", [
    ("local t = {} t[2] = 1", "list positions"), ("local t = {1, 2} t[0] = 1", "list positions"),
    ("local t = {1, 2, 3} t[1] = nil", "holes"), ("local t = {} t[-5] = 1", "list positions"),
    ("local t = {} t[true] = 1", "list positions or strings"),
    ("local t = {} t[{}] = 1", "list positions or strings"),
    ("local t = {} t[65535 * 1000] = 1", "list positions"),
    ("table.insert({1}, 5, 2)", "out of bounds"), ("table.insert({1, 2}, 1, nil)", "holes"),
    ("local t = {} table.move({1, 2}, 1, 2, 5, t)", "list positions"),
])
def test_sparse_lists_refused(vm, body, fragment):
    result = outcome(vm, body)
    assert (result.ok, result.error_code) == (False, "bad_value"), result.error
    assert fragment in result.error


def test_lists_and_maps_still_work(vm):
    h = Harness(vm=vm)
    assert h.deploy(C, """
    function f()
      local t = {}
      for i = 1, 10 do t[#t + 1] = i end
      table.insert(t, 1, 0) table.insert(t, 99) table.remove(t, 2) t[#t] = nil
      local m = {a = 1} m.b = 2 m.a = nil m["c"] = 3
      local s, u = {5, 3, 9}, {}
      table.sort(s)
      table.move(s, 1, 3, 1, u)
      t[1], t[2] = t[2], t[1]
      return {t = t, m = m, u = u, n = #t}
    end""").ok
    assert h.value(C, "f") == {"t": [2, 0, 3, 4, 5, 6, 7, 8, 9, 10], "m": {"b": 2, "c": 3},
                               "u": [3, 5, 9], "n": 10}


def test_global_stores_are_billed(vm):
    assert gas_of(vm, "", "g = 1") >= DEFAULT_GAS.global_store


# -- closures and constructors ----------------------------------------------------------------

def test_closures_billed_by_upvalues(vm):
    names = ", ".join(f"v{i}" for i in range(60))
    setup = f"local {names} = 1"
    many = gas_of(vm, setup, f"local f = function() return {names} end")
    one = gas_of(vm, setup, "local f = function() return v1 end")
    assert many - one >= 59 * DEFAULT_GAS.insert // 8      # per upvalue and list step


@pytest.mark.parametrize("source, fragment", [
    ("x = {nil}", "nil as a list item"), ("x = {1, (nil)}", "nil as a list item"),
    ("x = {1, nil and 2}", "nil as a list item"), ("x = {[1] = 2}", "[key] ="),
    ("x = {[k] = 2}", "[key] ="), ("a, t.x = 1, 2", "multiple assignment"),
])
def test_cheap_allocations_refused_at_deploy(vm, source, fragment):
    result = Harness(vm=vm).deploy(C, source)
    assert (result.ok, result.error_code) == (False, "forbidden") and fragment in result.error


def test_constructors_billed(vm):
    items = ", ".join("false" for _ in range(200))
    assert gas_of(vm, "", f"local t = {{{items}}}") >= 200 * DEFAULT_GAS.elem


# -- errors, sorting, iteration -----------------------------------------------------------------

def test_caught_error_messages_billed_and_capped(vm):
    setup = "local s = string.rep('x', 16384) local function e() error(s, 1) end"
    assert gas_of(vm, setup, "pcall(e)") >= DEFAULT_GAS.catch + 16384 // DEFAULT_GAS.value_byte_per
    h = Harness(vm=vm)
    assert h.deploy(C, "function f() local s = string.rep('x', 16384) "
                       "local ok, e = pcall(function() error(s, 1) end) return #e end").ok
    assert h.value(C, "f") == MAX_STRING


def test_sorting_keys_billed_by_their_bytes(vm):
    setup = ("local t = {} for i = 1, 8 do t[string.concat(string.rep('\\0', 2000), i)] = i end")
    assert gas_of(vm, setup, "for k in pairs(t) do end") >= 16000 * 3 // DEFAULT_GAS.cmp_per
    setup = ("local t = {} for i = 1, 8 do t[i] = string.concat(string.rep('\\0', 2000), 9 - i)"
             " end")
    assert gas_of(vm, setup, "table.sort(t)") >= 16000 * 3 // DEFAULT_GAS.cmp_per


def test_utf8_codes_cannot_rescan(vm):
    result = outcome(vm, "for p, c in utf8.codes(string.rep('\\128', 16384)) do end")
    assert (result.ok, result.error_code) == (False, "runtime_error")
    assert "invalid UTF-8" in result.error
    result = outcome(vm, "local f, s = utf8.codes('abc') return f(s, '1')")
    assert (result.ok, result.error_code) == (False, "bad_value")
    assert outcome(vm, "local f, s = utf8.codes('abc') local p = f(s, 1) return p").ok


def test_deep_nesting_refused_before_python_recursion(vm):
    result = Harness(vm=vm).deploy(C, "x = " + "(" * 2000 + "1" + ")" * 2000)
    assert (result.ok, result.error_code) == (False, "bad_value") and "nested" in result.error
