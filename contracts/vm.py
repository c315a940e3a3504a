"""The contract VM: deploy and call Lua contracts against a state view (docs §14).

The chain owns addresses, code storage, fees and nonces; the VM only runs code. ``deploy``
checks and compiles a new contract's source (contracts/syntax.py rewrites it so that every unit
of work is metered), runs its chunk and its ``init`` with ``ctx.contract`` already chosen by the
chain, and returns the compiled code in ``Result.code``: the chain stores it, and from then on
``state.code(contract)`` must return exactly those bytes (they are loaded as Lua bytecode, so they
must never come from anywhere else). ``call`` runs one method of the contract at ``ctx.contract``.

Both return a ``Result`` and never raise for anything a contract or a transaction does: a failed
call has ``ok=False``, an error code, its gas, no events, and has changed nothing in ``state``.
Every call runs in a fresh Lua runtime, so its result never depends on what ran before. They
raise ``Backstop`` when a node-local limit fires (the memory cap, or the wall clock when
``wall_clock_s`` is given): that outcome is not a result any other node would reproduce, so the
caller must leave the transaction out rather than record it.
"""

import functools
import locale
import re
import threading
from typing import NamedTuple

import lupa
from lupa import lua54

from edge._fast.codec_py import MAX_CHAIN_ID, DecodeError

from .gas import DEFAULT_GAS, GAS_SCHEDULE_VERSION, MAX_NAME, GasCosts, kernel_params
from .host import Backstop, ContractError, KernelCode, Runtime, Session, classify
from .source import Compiler, SourceError
from .values import MAX_DEPTH, MAX_SIZE, BadValue, decode_value, encode_value, lua_compatible

__all__ = ["VM", "CallContext", "Result", "ContractError", "Backstop", "ERROR_CODES",
           "VmPin", "running_pin"]

ERROR_CODES = ("forbidden", "out_of_gas", "out_of_memory", "stack_overflow", "runtime_error",
               "bad_value", "depth", "insufficient_funds", "no_contract", "no_method")
BYTECODE_MAGIC = b"\x1bLua"
_KERNELS = {}


class CallContext(NamedTuple):
    """Who calls what, given by the chain. ``value`` is already credited to ``contract``."""

    chain_id: str
    contract: bytes
    caller: bytes
    origin: bytes
    value: int
    height: int
    time_ms: int
    depth: int = 0


class Result(NamedTuple):
    """Outcome of a deploy or call. ``events``: ((contract, name, encoded data), ...);
    ``code``: the compiled contract after a successful deploy (b"" otherwise)."""

    ok: bool
    gas_used: int
    error_code: str
    error: str
    events: tuple
    return_value: bytes
    code: bytes = b""


class VmPin(NamedTuple):
    """What a chain's contracts run on, recorded in genesis (docs/protocol.md §8): the Lua
    release, the lupa release and the gas schedule (with the front end and kernel it names).
    Nodes that differ in any of them could compute different receipts."""

    lua: str
    lupa: str
    gas_schedule: int

    def text(self):
        """One line for the p2p handshake and messages: ``lua 5.4.8, lupa 2.8, gas 2``."""
        return f"lua {self.lua}, lupa {self.lupa}, gas {self.gas_schedule}"


@functools.lru_cache(maxsize=None)
def running_pin() -> VmPin:
    """The VM this process runs: the Lua release compiled into lupa's lua54 module (its
    ``$LuaVersion`` banner), lupa's version and GAS_SCHEDULE_VERSION."""
    with open(lua54.__file__, "rb") as f:
        found = re.search(rb"\$LuaVersion: Lua (\d+\.\d+\.\d+)", f.read())
    if found is None:
        raise RuntimeError(f"cannot read the Lua release of {lua54.__file__}")
    return VmPin(found.group(1).decode(), lupa.__version__, GAS_SCHEDULE_VERSION)


def _kernel_code(params):
    key = repr(params)
    if key not in _KERNELS:
        _KERNELS[key] = KernelCode(params)
    return _KERNELS[key]


def check_locale():
    """Lua compares strings with strcoll and classifies bytes with <ctype.h>: refuse a locale in
    which either differs from the C locale (string order and patterns are consensus)."""
    if locale.setlocale(locale.LC_COLLATE) not in ("C", "POSIX"):
        raise RuntimeError("the contract VM needs LC_COLLATE=C (string order is consensus)")
    rt = lua54.LuaRuntime(register_eval=False, register_builtins=False, encoding=None)
    probe = rt.execute(
        "local s = {} for b = 0, 255 do s[#s + 1] = string.char(b) end s = table.concat(s) "
        "local out = {string.upper(s), string.lower(s)} "
        "for c in ('acdglpsuwx'):gmatch('.') do out[#out + 1] = s:gsub('[^%' .. c .. ']', '') end "
        "return table.concat(out, '|')")
    if probe != _ASCII_PROBE:
        raise RuntimeError("the contract VM needs LC_CTYPE=C or a UTF-8 locale (byte classes "
                           "and case are consensus)")


def _ascii_probe():
    import string as py
    every = bytes(range(256))
    classes = {"a": py.ascii_letters, "c": bytes(range(32)) + b"\x7f", "d": py.digits,
               "g": bytes(range(33, 127)), "l": py.ascii_lowercase,
               "p": py.punctuation, "s": " \t\n\r\x0b\x0c", "u": py.ascii_uppercase,
               "w": py.ascii_letters + py.digits, "x": py.hexdigits}
    parts = [every.upper(), every.lower()]
    for c in "acdglpsuwx":
        chars = classes[c]
        chars = chars.encode() if isinstance(chars, str) else chars
        parts.append(bytes(b for b in every if b in chars))
    return b"|".join(parts)


_ASCII_PROBE = _ascii_probe()


class VM:
    """Runs contracts; one instance may serve many threads, each call in its own runtime."""

    def __init__(self, memory_limit=64 << 20, max_depth=8, instruction_step=1000,
                 gas_costs: GasCosts = DEFAULT_GAS, probe=False, reuse_runtime=1):
        check_locale()
        if instruction_step < 1 or reuse_runtime < 1:
            raise ValueError("instruction_step and reuse_runtime must be positive")
        self.memory_limit = memory_limit
        self.max_depth = max_depth
        self.instruction_step = instruction_step
        self.gas = gas_costs
        self.probe = probe          # benchmarks: record the peak Lua heap of each call
        # Tests and benchmarks only: serve this many calls per runtime (the memory backstop of a
        # reused runtime depends on what it ran before).
        self.reuse_runtime = reuse_runtime
        self._local = threading.local()
        self.compiler = Compiler()
        self.kernel_code = _kernel_code(kernel_params(gas_costs, instruction_step, MAX_DEPTH,
                                                      MAX_SIZE, probe))
        self.last_peak_kb = 0

    # -- public API ----------------------------------------------------------------------------

    def compile(self, code: str) -> bytes:
        """The compiled form of contract source ``code``; ``ContractError`` if it is refused."""
        try:
            return self.compiler.bytecode(code)
        except SourceError as e:
            raise ContractError(e.code, e.message) from None

    check_code = compile

    def deploy(self, state, ctx: CallContext, code: str, init_args: list,
               gas_limit: int, wall_clock_s=None) -> Result:
        """Compile ``code``, run its chunk, then ``init(*init_args)`` if it defines one."""
        base = self.gas.call_base
        try:
            _check_call(ctx, gas_limit)
            if not isinstance(code, str):
                raise ContractError("bad_value", "contract code must be a str")
            base += len(code.encode("utf-8", "replace")) * self.gas.deploy_byte
            if base > gas_limit:
                raise ContractError("out_of_gas", "gas limit below the deploy's base cost")
            bytecode = self.compile(code)
            args = _encode_args(init_args)
        except ContractError as e:
            return _failure(e.code, e.message, min(base, gas_limit))
        result = self._execute(state, ctx, bytecode, "init", args, True, base, gas_limit,
                               wall_clock_s)
        return result._replace(code=bytecode) if result.ok else result

    def call(self, state, ctx: CallContext, method: str, args: list, gas_limit: int,
             wall_clock_s=None) -> Result:
        """Run ``method(*args)`` of the contract at ``ctx.contract``."""
        base = self.gas.call_base
        try:
            _check_call(ctx, gas_limit)
            _check_method(method)
            code = state.code(ctx.contract)
            if code is None:
                raise ContractError("no_contract", f"no contract at {ctx.contract.hex()}")
            bytecode = self.loadable(code)
            args = _encode_args(args)
        except ContractError as e:
            return _failure(e.code, e.message, min(base, gas_limit))
        return self._execute(state, ctx, bytecode, method, args, False, base, gas_limit,
                             wall_clock_s)

    def loadable(self, code):
        """``code`` from ``state.code()``, checked to be what ``deploy`` returned."""
        if not isinstance(code, bytes) or not code.startswith(BYTECODE_MAGIC):
            raise RuntimeError("state.code() must return the code a deploy returned")
        return code

    def environment(self):
        """The names a contract can reach (``string.rep``, ``pairs``...), sorted."""
        runtime = Runtime(self)
        return sorted(runtime.k.names().decode().split())

    # -- internals -----------------------------------------------------------------------------

    def _runtime(self):
        if self.reuse_runtime == 1:
            return Runtime(self)
        local = self._local
        if getattr(local, "runtime", None) is None or local.calls >= self.reuse_runtime:
            local.runtime, local.calls = Runtime(self), 0
        local.calls += 1
        rt = local.runtime.rt
        rt.set_max_memory(rt.get_memory_used() + self.memory_limit)
        return local.runtime

    def frame_cost(self, bytecode: bytes, args: bytes) -> int:
        """Gas billed when a frame starts: env, code load, argument bytes."""
        g = self.gas
        return g.frame + len(bytecode) // g.code_byte_per + len(args) // g.value_byte_per

    def _execute(self, state, ctx, bytecode, method, args, deploy, base, gas_limit,
                 wall_clock_s):
        extra = base + self.frame_cost(bytecode, args)
        if extra > gas_limit:
            return _failure("out_of_gas", "gas limit below the call's base cost", gas_limit)
        session = Session(self, self._runtime(), state, ctx, gas_limit)
        try:
            ok, payload, used, fatal, events = session.run(bytecode, method, args, deploy,
                                                           extra, wall_clock_s)
        except BaseException:
            self._local.runtime = None
            raise
        finally:
            self.last_peak_kb = session.peak_kb
            session.close()
        if fatal == "out_of_gas":
            used = gas_limit
        used = min(used, gas_limit)
        if ok:
            decode_value(payload)  # the kernel's encoder is canonical; check it anyway
            return Result(True, used, "", "", events, payload)
        code, text = classify(payload, fatal)
        return _failure(code, text, used)


def _failure(code, message, gas):
    return Result(False, gas, code, message, (), b"")


def _check_method(method):
    try:
        size = len(method.encode("utf-8")) if isinstance(method, str) else 0
    except UnicodeEncodeError:
        size = 0
    if not 0 < size <= MAX_NAME:
        raise ContractError("no_method", f"method name must be 1..{MAX_NAME} bytes of UTF-8")


def _check_call(ctx, gas_limit):
    if not isinstance(ctx, CallContext):
        raise TypeError("ctx must be a CallContext")
    try:
        if not 0 < len(ctx.chain_id.encode("utf-8")) <= MAX_CHAIN_ID:
            raise ValueError
    except (AttributeError, UnicodeEncodeError, ValueError):
        raise ContractError("bad_value", f"ctx.chain_id must be 1..{MAX_CHAIN_ID} bytes") \
            from None
    for name in ("contract", "caller", "origin"):
        value = getattr(ctx, name)
        if not isinstance(value, bytes) or len(value) != 20:
            raise ContractError("bad_value", f"ctx.{name} must be a 20-byte address")
    for name in ("value", "height", "time_ms", "depth"):
        value = getattr(ctx, name)
        if type(value) is not int or not 0 <= value < 1 << 63:
            raise ContractError("bad_value", f"ctx.{name} must be an integer in 0..2^63-1")
    if type(gas_limit) is not int or not 0 <= gas_limit < 1 << 63:
        raise ContractError("bad_value", "gas limit must be an integer in 0..2^63-1")


def _encode_args(args):
    if not isinstance(args, (list, tuple)):
        raise ContractError("bad_value", "arguments must be a list")
    try:
        for i, item in enumerate(args):
            lua_compatible(item, f"args[{i}]")
        return encode_value(list(args))
    except (BadValue, DecodeError) as e:
        raise ContractError("bad_value", str(e)) from None
