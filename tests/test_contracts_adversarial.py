"""Hostile contracts: every attack ends with a clear error code, bills gas, changes nothing.

Each attack runs after the contract has written storage, emitted an event and moved SSP, so
"changes nothing" checks the buffering too. Real Lua throughout.
"""

import pytest

from contracts.testkit import Harness, addr
from contracts.vm import VM, Backstop

C, D, USER = addr("attacker"), addr("victim"), addr("user")
GAS = 300_000

PREFIX = "chain.storage.set('x', 'y') chain.emit('e', 1) chain.transfer(chain.caller(), 1) "

# (id, body of attack(), expected code, message fragment)
ATTACKS = [
    ("global_table", "return _G", "forbidden", "_G"),
    ("env_io", "return io.open('/etc/passwd')", "forbidden", "io"),
    ("string_metatable", "return getmetatable('').__index", "forbidden", "getmetatable"),
    ("string_dump", "return string.dump(attack)", "forbidden", "string.dump"),
    ("dump_via_method", "return ('x'):dump()", "forbidden", "string.dump"),
    ("load_text", "return load('return 1')()", "forbidden", "load"),
    ("require_os", "return require('os')", "forbidden", "require"),
    ("os_exit", "os.exit(1)", "forbidden", "os"),
    ("debug_sethook", "debug.sethook()", "forbidden", "debug"),
    ("python_bridge", "return python.eval('1')", "forbidden", "python"),
    ("collectgarbage", "collectgarbage('stop')", "forbidden", "collectgarbage"),
    ("coroutine_dodge", "local co = coroutine.wrap(function() while true do end end) co()",
     "forbidden", "coroutine"),
    ("setmetatable_tostring_loop",
     "error(setmetatable({}, {__tostring = function() while true do end end}))",
     "forbidden", "setmetatable"),
    ("next_hash_order", "return next({a = 1})", "forbidden", "next"),
    ("rawset_globals", "rawset(chain, 'x', 1)", "forbidden", "rawset"),
    ("gsub", "return ('aaa'):gsub('a', 'bb')", "forbidden", "gsub"),
    ("format_pointer", "return string.format('%p', {})", "forbidden", "%p"),
    ("pack_float", "return string.pack('d', 1)", "forbidden", "float"),
    ("math_random", "return math.random(6)", "forbidden", "math.random"),
    ("error_object_table", "error({code = 1})", "runtime_error", "error object of type table"),
    ("string_arith_coercion", "return '10' + 1", "runtime_error", "arithmetic on a string"),
    ("format_table_arg", "return string.format('%s', {})", "bad_value", "string.format"),
    ("rep_huge", "return string.rep('x', 1 << 40)", "out_of_memory", "16384"),
    ("rep_via_method", "local rep = ('').rep return rep('ab', 1 << 30)", "out_of_memory", "16384"),
    ("concat_growth", "local s = 'x' for i = 1, 40 do s = string.concat(s, s) end",
     "out_of_memory", "16384"),
    ("pattern_backtracking",
     "local s = string.rep('a', 3000) return s:find(string.concat(string.rep('a*', 20), 'b'))",
     "out_of_gas", ""),
    ("plain_find_quadratic",
     "local s = string.rep('a', 16000) return s:find(string.concat(string.rep('a', 8000), 'b'), "
     "1, true)", "out_of_gas", ""),
    ("table_move_bomb", "table.move({}, 1, 1 << 50, 2)", "out_of_gas", ""),
    ("unpack_bomb", "return table.unpack({}, 1, 1 << 40)", "out_of_gas", ""),
    ("insert_shift", "local t = {} for i = 1, 5000 do t[i] = i end "
     "for i = 1, 100000 do table.insert(t, 1, i) end", "out_of_gas", ""),
    ("infinite_loop", "while true do end", "out_of_gas", ""),
    ("pcall_swallows_gas", "while true do pcall(function() while true do end end) end",
     "out_of_gas", ""),
    ("xpcall_handler_swallows", "while true do xpcall(function() while true do end end, "
     "function() return 'ignored' end) end", "out_of_gas", ""),
    ("deep_recursion", "local function r(n) return 1 + r(n + 1) end return r(1)",
     "stack_overflow", ""),
    ("pcall_hides_recursion", "local function r(n) return 1 + r(n + 1) end pcall(r, 1) "
     "return 'survived'", "stack_overflow", ""),
    ("pcall_c_stack", "local function r() return pcall(r) end return r()", "stack_overflow", ""),
    ("huge_return_value", "local t = {} for i = 1, 9 do t[i] = string.rep('x', 2000) end return t",
     "bad_value", "16384"),
    ("float_amount_from_string", "chain.transfer(chain.caller(), tonumber('1.5'))",
     "bad_value", "integer"),
    ("string_amount", "chain.transfer(chain.caller(), '5')", "bad_value", "integer"),
    ("function_as_value", "chain.emit('e', attack)", "bad_value", "function"),
    ("too_many_events", "for i = 1, 300 do chain.emit('e', i) end", "bad_value", "events"),
    ("self_reentrancy", "return chain.call(chain.self(), 'attack', {})", "forbidden",
     "reentrant"),
    ("overdraft", "chain.transfer(chain.caller(), 10)", "insufficient_funds", ""),
]


@pytest.fixture(scope="module")
def vm():
    return VM()


def _attack_source(body):
    return f"function attack() {PREFIX}{body} end function ok() return 'fine' end"


def _run(h, body, gas=GAS):
    assert h.deploy(C, _attack_source(body)).ok
    h.state.credit(C, 10)
    before = h.state.snapshot()
    result = h.call(C, "attack", caller=USER, gas=gas)
    assert h.state.snapshot() == before, "a failed call changed the state"
    assert result.events == () and result.return_value == b""
    return result


@pytest.mark.parametrize("name, body, code, fragment", ATTACKS, ids=[a[0] for a in ATTACKS])
def test_attack(vm, name, body, code, fragment):
    h = Harness(vm=vm)
    result = _run(h, body)
    assert (result.ok, result.error_code) == (False, code), result.error
    assert fragment in result.error
    assert 0 < result.gas_used <= GAS
    if code == "out_of_gas":
        assert result.gas_used == GAS
    assert h.value(C, "ok") == b"fine"             # the VM (and its runtime) still works


@pytest.mark.parametrize("source, fragment", [
    ("function f() return 1.5 end", "float literal"),
    ("function f(a) return a / 2 end", "'/'"),
    ("function f(a) return a ^ 2 end", "'^'"),
    ("function f(...) return ... end", "'...'"),
    ("function f() return _ENV end", "_ENV"),
    ("function f() return 9223372036854775808 end", "2^63-1"),
])
def test_forbidden_syntax_refused_at_deploy(vm, source, fragment):
    h = Harness(vm=vm)
    result = h.deploy(C, source)
    assert (result.ok, result.error_code) == (False, "forbidden") and fragment in result.error
    assert result.gas_used > 0 and h.state.code(C) is None and h.state.writes == []


def _backstop(h, body, gas):
    assert h.deploy(C, _attack_source(body)).ok
    h.state.credit(C, 10)
    before = h.state.snapshot()
    with pytest.raises(Backstop) as info:
        h.call(C, "attack", caller=USER, gas=gas)
    assert h.state.snapshot() == before, "a call stopped by a backstop changed the state"
    assert h.value(C, "ok") == b"fine"
    return info.value.code


def test_memory_cap_is_a_backstop_never_a_result():
    h = Harness(vm=VM(memory_limit=4 << 20))
    for body in ("local t = {} for i = 1, 1 << 40 do t[i] = string.rep('x', 16000) end",
                 "local t = {} for i = 1, 1 << 40 do t[i] = i end",
                 "local ok = pcall(function() local t = {} "
                 "for i = 1, 1 << 40 do t[i] = string.rep('y', 16000) end end) return ok"):
        assert _backstop(h, body, 10**8) == "memory"


def test_wall_clock_backstop_never_a_result():
    h = Harness(wall_clock_s=0.05)
    assert _backstop(h, "while true do end", 10**12) == "timeout"
    assert Harness().call(C, "ok").error_code == "no_contract"   # off unless armed


def test_float_arguments_refused(vm):
    h = Harness(vm=vm)
    assert h.deploy(C, "function pay(n) chain.transfer(chain.caller(), n) end").ok
    h.state.credit(C, 10)
    before = h.state.snapshot()
    for amount in (1.0, 0.5, float("inf")):
        result = h.call(C, "pay", amount)
        assert (result.ok, result.error_code) == (False, "bad_value")
        assert result.gas_used == vm.gas.call_base
    assert h.state.snapshot() == before


def test_nested_depth_bomb():
    h = Harness(vm=VM(max_depth=4))
    hops = [addr(f"d{i}") for i in range(8)]
    for here, nxt in zip(hops, hops[1:] + hops[:1]):
        literal = "'" + "".join(f"\\{x}" for x in nxt) + "'"
        assert h.deploy(here, f"function go() chain.storage.set('k', 'v') "
                              f"return chain.call({literal}, 'go', {{}}) end").ok
    before = h.state.snapshot()
    result = h.call(hops[0], "go")
    assert (result.ok, result.error_code) == (False, "depth")
    assert h.state.snapshot() == before


def test_indirect_reentrancy(vm):
    h = Harness(vm=vm)
    d_lit = "'" + "".join(f"\\{x}" for x in D) + "'"
    assert h.deploy(C, f"function go() return chain.call({d_lit}, 'back', {{chain.self()}}) end "
                       "function steal() chain.transfer(chain.origin(), 5) end").ok
    assert h.deploy(D, "function back(c) return chain.call(c, 'steal', {}) end").ok
    h.state.credit(C, 10)
    result = h.call(C, "go")
    assert (result.error_code, h.state.balance(C)) == ("forbidden", 10)


def test_contract_cannot_tamper_with_shared_libraries(vm):
    h = Harness(vm=vm)
    d_lit = "'" + "".join(f"\\{x}" for x in D) + "'"
    assert h.deploy(C, "function go() string.rep = nil chain.transfer = nil table.sort = nil "
                       f"return chain.call({d_lit}, 'use', {{}}) end").ok
    assert h.deploy(D, "function use() local t = {3, 1, 2} table.sort(t) "
                       "return string.concat(string.rep('a', 2), ('b'):rep(2), t[1]) end").ok
    assert h.value(C, "go") == b"aabb1"


def test_tostring_hides_addresses(vm):
    h = Harness(vm=vm)
    assert h.deploy(C, "function f() return string.concat(tostring({}), tostring(f), "
                       "type(tostring(1))) end").ok
    assert h.value(C, "f") == b"tablefunctionstring"


def test_200_bad_calls_then_a_good_one(vm):
    h = Harness(vm=vm)
    bodies = ["while true do end", "local function r() return r() + 1 end return r()",
              "return _G", "return string.rep('x', 1 << 40)", "error({})",
              "while true do pcall(function() while true do end end) end",
              "return table.unpack({}, 1, 1 << 40)", "chain.transfer(chain.caller(), 10)"]
    methods = " ".join(f"function bad{i}() {PREFIX}{b} end" for i, b in enumerate(bodies))
    assert h.deploy(C, methods + " function good(n) chain.storage.set('n', chain.encode(n)) "
                                 "return n + 1 end").ok
    h.state.credit(C, 10)
    before = h.state.snapshot()
    first = h.call(C, "good", 41)
    h.state.storage.pop((C, b"n"))
    h.state.writes.clear()
    before = h.state.snapshot()
    codes = set()
    for i in range(200):
        result = h.call(C, f"bad{i % len(bodies)}", gas=20_000)
        assert not result.ok and result.gas_used > 0
        codes.add(result.error_code)
    assert h.state.snapshot() == before and h.state.writes == []
    assert codes == {"out_of_gas", "stack_overflow", "forbidden", "out_of_memory",
                     "runtime_error", "insufficient_funds"}
    again = h.call(C, "good", 41)
    assert again == first and again.ok
