"""The contract VM: values encoding, host API, gas, failure semantics, nested calls, determinism.

Real Lua (lupa, Lua 5.4) everywhere; the state is contracts.memstate.MemState.
"""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from edge import _fast
from edge._fast.codec_py import DecodeError
from contracts.source import SourceError, check_source
from contracts.testkit import Harness, addr, events_of
from contracts.values import BadValue, MAX_DEPTH, MAX_SIZE, decode_value, encode_value
from contracts.vm import VM
from contracts.vouchers import voucher_message

_SEEDS = itertools.count(1)


def new_key():
    """A signing key, different on every call and the same on every run (the receipts of
    contract tests are compared across runs: tests/test_contracts_history.py)."""
    return SigningKey(next(_SEEDS).to_bytes(32, "big"))

C = addr("contract")
D = addr("other")
ALICE = addr("alice")

# -- values ----------------------------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**63 - 1),
                    st.binary(max_size=40), st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)),
    max_leaves=25)


@given(values)
@settings(max_examples=300, deadline=None)
def test_values_round_trip(v):
    data = encode_value(v)
    back = decode_value(data)
    assert encode_value(back) == data
    assert back == v


@pytest.mark.parametrize("v, data", [
    (None, b"\x00"), (False, b"\x01"), (True, b"\x02"), (0, b"\x03\x00"), (-1, b"\x03\x01"),
    (1, b"\x03\x02"), (-(2**63), b"\x03" + b"\xff" * 9 + b"\x01"), (b"ab", b"\x04\x02ab"),
    ("é", b"\x05\x02\xc3\xa9"), ([1, None], b"\x06\x02\x03\x02\x00"),
    ({"b": 1, "a": b""}, b"\x07\x02\x01a\x04\x00\x01b\x03\x02"),
])
def test_values_known_encodings(v, data):
    assert encode_value(v) == data
    assert decode_value(data) == v


@pytest.mark.parametrize("data, field", [
    (b"", "value.tag"), (b"\x08", "value"), (b"\x00\x00", "value"),
    (b"\x03\x80\x00", "value"),                      # non-minimal varint
    (b"\x04\x05ab", "value"),                         # truncated bytes
    (b"\x05\x01\xff", "value"),                       # invalid UTF-8
    (b"\x07\x02\x01b\x00\x01a\x00", "value.key[1]"),  # unsorted keys
    (b"\x07\x02\x01a\x00\x01a\x00", "value.key[1]"),  # duplicate keys
    (b"\x07\x01\x01\xff\x00", "value.key[0]"),        # key not UTF-8
    (b"\x06" * 17 + b"\x00" * 17, None),               # nesting too deep
])
def test_values_strict_decoding(data, field):
    with pytest.raises(DecodeError) as info:
        decode_value(data)
    if field:
        assert info.value.field.startswith(field)


@pytest.mark.parametrize("v", [1.5, float("nan"), [1, 2.0], {"x": 0.0}, 2**63, -(2**63) - 1,
                               {1: 2}, object(), "\ud800"])
def test_values_refused(v):
    with pytest.raises(BadValue):
        encode_value(v)


def test_values_limits():
    deep = []
    for _ in range(MAX_DEPTH):
        deep = [deep]
    with pytest.raises(BadValue):
        encode_value(deep)
    encode_value(deep[0])
    with pytest.raises(BadValue):
        encode_value(b"x" * MAX_SIZE)
    with pytest.raises(DecodeError):
        decode_value(b"\x04" + b"\x80\x80\x01" + b"x" * 16384)


ECHO = """
function echo(v) return v end
function shape(kind)
  if kind == 1 then return {1, 2, x = 3} end
  if kind == 2 then local t = {x = 1} t[1] = 2 return t end
  return {}
end
"""


@pytest.fixture(scope="module")
def echo():
    h = Harness()
    assert h.deploy(C, ECHO).ok
    return h


def _lua_view(v):
    """What a value looks like after a round trip through Lua: strings are bytes, {} is []."""
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, (list, tuple)):
        return [_lua_view(x) for x in v]
    if isinstance(v, dict):
        return {k: _lua_view(x) for k, x in v.items()} if v else []
    return v


lua_values = st.recursive(st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1),
                                    st.binary(max_size=30), st.text(max_size=10)),
                          lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                  st.dictionaries(st.text(max_size=6), inner,
                                                                  max_size=4)),
                          max_leaves=15)


@given(lua_values)
@settings(max_examples=120, deadline=None)
def test_lua_codec_matches_python(echo, v):
    result = echo.call(C, "echo", v)
    assert result.ok, result.error
    assert result.return_value == encode_value(_lua_view(v))


@pytest.mark.parametrize("kind", [1, 2])
def test_lua_table_shapes_refused(echo, kind):
    result = echo.call(C, "shape", kind)
    assert (result.ok, result.error_code) == (False, "bad_value")
    assert "unsupported table shape" in result.error


def test_float_and_nested_nil_args_refused(echo):
    for args in ([1.5], [[None]], [{"a": None}], [2**63]):
        result = echo.call(C, "echo", *args)
        assert (result.ok, result.error_code) == (False, "bad_value")
        assert result.gas_used == echo.vm.gas.call_base
    assert echo.value(C, "echo", None) is None        # a top-level nil argument is fine
    assert echo.value(C, "shape", 3) == []            # the empty table is the empty list


# -- host API --------------------------------------------------------------------------------

API = """
function ctx() return {chain.self(), chain.caller(), chain.origin(), chain.value(),
                       chain.height(), chain.time()} end
function put(k, v) chain.storage.set(k, v) end
function get(k) return chain.storage.get(k) end
function del(k) chain.storage.delete(k) end
function hash(d) return chain.hash(d) end
function verify(p, m, s) return chain.verify_ed25519(p, m, s) end
function voucher(id, p, a, n) return chain.voucher_message(id, p, a, n) end
function bal(a) return chain.balance(a) end
function pay(to, n) chain.transfer(to, n) end
function emit(n, d) chain.emit(n, d) end
function codec(v) return chain.decode(chain.encode(v)) end
function decode(s) return chain.decode(s) end
"""


@pytest.fixture
def api():
    h = Harness()
    assert h.deploy(C, API).ok
    return h


def test_context_values(api):
    h = api
    h.state.credit(ALICE, 50)
    assert h.value(C, "ctx", caller=ALICE, value=7) == [C, ALICE, ALICE, 7, h.height, h.time_ms]


def test_storage_round_trip_and_limits(api):
    api.value(C, "put", b"k", b"\x00\xffv")
    assert api.value(C, "get", b"k") == b"\x00\xffv"
    assert api.state.storage[(C, b"k")] == b"\x00\xffv"
    api.value(C, "del", b"k")
    assert api.value(C, "get", b"k") is None
    for args in ([b"k" * 65, b"v"], [b"", b"v"], [b"k", b"v" * 4001], [b"k", 5]):
        result = api.call(C, "put", *args)
        assert (result.ok, result.error_code) == (False, "bad_value"), args
    api.value(C, "put", b"k" * 64, b"v" * 4000)


def test_hash_verify_and_voucher_helpers(api):
    assert api.value(C, "hash", b"abc") == _fast.tagged_hash(b"ss/contract", b"abc")
    sk = new_key()
    sig = sk.sign(b"msg").signature
    assert api.value(C, "verify", bytes(sk.verify_key), b"msg", sig) is True
    assert api.value(C, "verify", bytes(sk.verify_key), b"msG", sig) is False
    assert api.value(C, "verify", b"\x00" * 32, b"msg", sig) is False
    assert api.call(C, "verify", b"\x00" * 31, b"msg", sig).error_code == "bad_value"
    assert api.value(C, "voucher", b"chan", ALICE, 5, 6) == voucher_message(
        "devnet", C, ALICE, b"chan", 5, 6)
    assert api.call(C, "voucher", b"chan", b"short", 5, 6).error_code == "bad_value"


def test_balance_transfer_and_events(api):
    api.state.credit(C, 100)
    result = api.call(C, "pay", ALICE, 30)
    assert result.ok and api.state.balance(ALICE) == 30 and api.value(C, "bal", C) == 70
    for amount in (0, -1, b"5"):
        assert api.call(C, "pay", ALICE, amount).error_code == "bad_value"
    result = api.call(C, "pay", ALICE, 71)
    assert (result.error_code, api.state.balance(C)) == ("insufficient_funds", 70)
    result = api.call(C, "emit", "tick", {"n": 1})
    assert events_of(result) == [("tick", {"n": 1})] and result.events[0][0] == C
    assert api.value(C, "codec", {"a": [1, b"x"]}) == {"a": [1, b"x"]}
    assert api.call(C, "decode", b"\x03\x80\x00").error_code == "bad_value"


def test_methods_and_deploy_errors():
    h = Harness()
    src = "function init(x) chain.storage.set('i', x) end function _hidden() end x = 1"
    assert h.deploy(C, src, [b"v"]).ok
    assert h.state.storage[(C, b"i")] == b"v"
    for method in ("init", "_hidden", "x", "assert", "chain", "missing"):
        assert h.call(C, method).error_code == "no_method", method
    assert h.call(D, "x").error_code == "no_contract"
    result = h.deploy(D, "function f( end")
    assert (result.ok, result.error_code) == (False, "bad_value") and "syntax" in result.error
    assert h.deploy(D, "function f() return 1 end").ok            # no init: fine
    multi = h.deploy(addr("m"), "function f() return 1, 2 end")
    assert multi.ok and h.call(addr("m"), "f").error_code == "bad_value"


def test_source_checks():
    ok = ("x = 1 // 2", "s = 'a..b 1.5 /'", "--[==[ 1.5 .. ]==] y = 0x10", "z = {a, b}",
          "t = [[ ^ ]]", "w = 0xffffffffffffffff", "v = a.b", "x = a .. b .. 1")
    for src in ok:
        check_source(src)
    bad = ("x = 1.5", "x = 1e3", "x = .5", "x = 0x1p4", "x = a / b", "x = 2 ^ 3", "z = {...}",
           "function f(...) end", "x = _ENV", "__ss_lt = 1", "x = {nil}", "x = {[1] = 2}",
           "a, t.x = 1, 2", "x = 9223372036854775808", "x = '" + "a" * 16385 + "'")
    for src in bad:
        with pytest.raises(SourceError) as info:
            check_source(src)
        assert info.value.code == "forbidden", src


# -- gas ---------------------------------------------------------------------------------------

LOOP = """
function spin(n) local s = 0 for i = 1, n do s = s + i end return s end
function write_then_spin(n) chain.storage.set('k', 'v') chain.emit('e', 1)
  chain.transfer(chain.caller(), 1) return spin(n) end
"""


def test_gas_grows_with_iterations():
    h = Harness()
    assert h.deploy(C, LOOP).ok
    gas = [h.call(C, "spin", n, gas=10**8).gas_used for n in (1000, 10_000, 100_000)]
    assert gas[0] < gas[1] < gas[2]
    per_iteration = (gas[2] - gas[1]) / 90_000
    assert 1.5 <= per_iteration <= 5
    assert h.value(C, "spin", 100) == 5050


def test_out_of_gas_bills_the_limit_and_changes_nothing():
    h = Harness()
    assert h.deploy(C, LOOP).ok
    h.state.credit(C, 10)
    before = h.state.snapshot()
    result = h.call(C, "write_then_spin", 10**9, caller=ALICE, gas=200_000)
    assert (result.ok, result.error_code, result.gas_used) == (False, "out_of_gas", 200_000)
    assert result.events == () and result.return_value == b""
    assert h.state.snapshot() == before
    assert h.call(C, "write_then_spin", 10, caller=ALICE).ok      # the same call, enough gas
    assert h.state.balance(ALICE) == 1 and h.state.storage[(C, b"k")] == b"v"


def test_gas_limit_below_base_cost():
    h = Harness()
    assert h.deploy(C, LOOP).ok
    result = h.call(C, "spin", 1, gas=100)
    assert (result.error_code, result.gas_used) == ("out_of_gas", 100)


def test_storage_gas_per_byte():
    h = Harness()
    assert h.deploy(C, API).ok
    small = h.call(C, "put", b"k", b"v").gas_used
    large = h.call(C, "put", b"k", b"v" * 1001).gas_used
    assert large - small >= 1000 * h.vm.gas.storage_write_byte


# -- nested calls ---------------------------------------------------------------------------

CALLER = """
function relay(target, method, args, value) return chain.call(target, method, args, value) end
function try(target, method, args)
  chain.storage.set('before', 'x')
  local ok, err = pcall(chain.call, target, method, args)
  chain.storage.set('after', ok and 'ok' or 'failed')
  return err
end
"""
CALLEE = """
function who() return {chain.caller(), chain.origin(), chain.self(), chain.value()} end
function write(v) chain.storage.set('w', v) chain.emit('wrote', v) return 'done' end
function fail(v) chain.storage.set('w', v) chain.emit('wrote', v) error('callee refuses', 0) end
function back(target) return chain.call(target, 'relay', {chain.self(), 'who', {}}) end
function deep(target, n) if n == 0 then return 0 end
  return 1 + chain.call(target, 'deep', {chain.self(), n - 1}) end
"""


@pytest.fixture
def pair():
    h = Harness()
    assert h.deploy(C, CALLER).ok and h.deploy(D, CALLEE).ok
    return h


def test_nested_call_context_and_value(pair):
    pair.state.credit(C, 100)
    result = pair.value(C, "relay", D, "who", [], 40, caller=ALICE)
    assert result == [C, ALICE, D, 40]
    assert (pair.state.balance(C), pair.state.balance(D)) == (60, 40)
    assert pair.call(C, "relay", D, "who", [], 61).error_code == "insufficient_funds"


def test_nested_success_merges_failure_reverts(pair):
    result = pair.call(C, "relay", D, "write", [b"a"])
    assert result.ok and events_of(result) == [("wrote", b"a")]
    assert pair.state.storage[(D, b"w")] == b"a"
    result = pair.call(C, "try", D, "fail", [b"b"])
    assert result.ok and decode_value(result.return_value) == b"callee refuses"
    assert pair.state.storage[(D, b"w")] == b"a"                 # the callee's write reverted
    assert pair.state.storage[(C, b"after")] == b"failed"          # the caller carried on
    assert result.events == ()
    uncaught = pair.call(C, "relay", D, "fail", [b"c"])
    assert (uncaught.ok, uncaught.error) == (False, "callee refuses")


def test_nested_errors(pair):
    assert pair.call(C, "relay", addr("nobody"), "x", []).error_code == "no_contract"
    assert pair.call(C, "relay", D, "missing", []).error_code == "no_method"
    assert pair.call(C, "relay", D, "who", {"a": 1}).error_code == "bad_value"
    reentrant = pair.call(D, "back", C)
    assert reentrant.error_code == "forbidden" and "reentrant" in reentrant.error


def _lua_bytes(b):
    return "'" + "".join(f"\\{x}" for x in b) + "'"


def test_call_depth_limit():
    h = Harness(vm=VM(max_depth=3))
    hops = [addr(f"hop{i}") for i in range(6)]
    for here, nxt in zip(hops, hops[1:] + hops[:1]):
        src = (f"NEXT = {_lua_bytes(nxt)} function go(n) if n == 0 then return 0 end "
               "return 1 + chain.call(NEXT, 'go', {n - 1}) end")
        assert h.deploy(here, src).ok
    assert h.value(hops[0], "go", 3) == 3
    result = h.call(hops[0], "go", 4)
    assert (result.ok, result.error_code) == (False, "depth")


# -- failure semantics and determinism ------------------------------------------------------

def test_failure_leaves_state_untouched():
    h = Harness()
    src = ("function f() chain.storage.set('a', 'b') chain.transfer(chain.caller(), 5) "
           "chain.emit('x', 1) error('late failure', 0) end")
    assert h.deploy(C, src).ok
    h.state.credit(C, 10)
    before = h.state.snapshot()
    result = h.call(C, "f", caller=ALICE)
    assert (result.ok, result.error_code, result.error) == (False, "runtime_error",
                                                            "late failure")
    assert result.gas_used > 0 and result.events == ()
    assert h.state.snapshot() == before


WORKLOAD = """
function work(n)
  local t = {}
  for i = 1, n do t[string.concat('key', i)] = i * 7 end
  for i = 1, n, 3 do t[string.concat('key', i)] = nil end
  for i = n, 2 * n do t[string.concat('new', i)] = i end
  local acc = {}
  for k, v in pairs(t) do acc[#acc + 1] = k end
  local list = {}
  for i = 1, n do list[i] = (i * 7919) % 1000 end
  table.sort(list)
  chain.storage.set(string.concat('first', n), acc[1])
  chain.storage.set(string.concat('last', n), acc[#acc])
  chain.emit('done', {n = n, count = #acc, top = list[n]})
  return chain.hash(table.concat(acc, ',', 1, math.min(#acc, 500)))
end
"""


def _run_workload(vm):
    h = Harness(vm=vm)
    assert h.deploy(C, WORKLOAD).ok
    results = [h.call(C, "work", n, gas=10**7) for n in (10, 200, 1000, 3000)]
    return results, h.state.writes


def test_determinism_across_independent_vms():
    first = _run_workload(VM())
    second = _run_workload(VM(instruction_step=1000, memory_limit=32 << 20))
    third = _run_workload(VM())
    assert first == second == third
    assert all(r.ok for r in first[0])


def test_vm_still_works_after_fatal_errors():
    vm = VM()
    h = Harness(vm=vm)
    assert h.deploy(C, LOOP).ok
    baseline = h.call(C, "spin", 500)
    for _ in range(3):
        assert h.call(C, "spin", 10**9, gas=50_000).error_code == "out_of_gas"
        assert h.call(C, "spin", 500) == baseline


def test_call_context_and_limits_validated():
    h = Harness()
    assert h.deploy(C, LOOP).ok
    good = h.ctx(C, ALICE)
    bad_contexts = [good._replace(chain_id=""), good._replace(chain_id="x" * 33),
                    good._replace(caller=b"short"), good._replace(value=-1),
                    good._replace(height=2**63)]
    for ctx in bad_contexts:
        result = h.vm.call(h.state, ctx, "spin", [1], 10**6)
        assert (result.ok, result.error_code) == (False, "bad_value"), ctx
    for gas in (-1, 2**63, 1.0):
        assert h.vm.call(h.state, good, "spin", [1], gas).error_code == "bad_value"
    for method in ("", "\ud800", "m" * 65, None):
        assert h.vm.call(h.state, good, method, [1], 10**6).error_code == "no_method"
    assert h.vm.deploy(h.state, good, b"function f() end", [], 10**6).error_code == "bad_value"
