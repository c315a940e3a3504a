"""The contract VM: deploy and call Lua contracts against a state view (docs §14).

The chain owns addresses, code storage, fees and nonces; the VM only runs code. ``deploy`` runs a
new contract's chunk and its ``init`` with ``ctx.contract`` already chosen by the chain (the
chain stores the code after a successful deploy); ``call`` runs one method of the contract whose
code ``state.code(ctx.contract)`` returns. Both return a ``Result`` and never raise for anything
a contract or a transaction does: a failed call has ``ok=False``, an error code, its gas, no
events, and has changed nothing in ``state``.
"""

import locale
import threading
from typing import NamedTuple

from edge._fast.codec_py import MAX_CHAIN_ID, DecodeError

from .gas import DEFAULT_GAS, MAX_NAME, GasCosts
from .host import ContractError, KernelCode, Runtime, Session, classify
from .source import Compiler, SourceError
from .values import BadValue, decode_value, encode_value, lua_compatible

__all__ = ["VM", "CallContext", "Result", "ContractError", "ERROR_CODES"]

ERROR_CODES = ("forbidden", "out_of_gas", "out_of_memory", "stack_overflow", "runtime_error",
               "bad_value", "timeout", "depth", "insufficient_funds", "no_contract", "no_method")
_KERNEL = None


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
    """Outcome of a deploy or call. ``events``: ((contract, name, encoded data), ...)."""

    ok: bool
    gas_used: int
    error_code: str
    error: str
    events: tuple
    return_value: bytes


def _kernel_code():
    global _KERNEL
    if _KERNEL is None:
        _KERNEL = KernelCode()
    return _KERNEL


def _check_collation():
    # Lua compares strings with strcoll: only the C locale gives the same order everywhere.
    if locale.setlocale(locale.LC_COLLATE) not in ("C", "POSIX"):
        raise RuntimeError("the contract VM needs LC_COLLATE=C (string order is consensus)")


class VM:
    """Runs contracts; one instance may serve many calls, one at a time per thread."""

    def __init__(self, memory_limit=32 << 20, max_depth=8, instruction_step=1000,
                 wall_clock_s=2.0, gas_costs: GasCosts = DEFAULT_GAS, fresh_runtime=False,
                 runtime_reuse=1000):
        _check_collation()
        if instruction_step < 1:
            raise ValueError("instruction_step must be positive")
        self.memory_limit = memory_limit
        self.max_depth = max_depth
        self.instruction_step = instruction_step
        self.wall_clock_s = wall_clock_s
        self.gas = gas_costs
        self.compiler = Compiler()
        self.kernel_code = _kernel_code()
        self.max_reuse = 1 if fresh_runtime else runtime_reuse
        self._local = threading.local()

    # -- public API ----------------------------------------------------------------------------

    def check_code(self, code: str) -> None:
        """Raise ``ContractError`` if ``code`` would be refused at deploy (for mempools)."""
        try:
            self.compiler.bytecode(code)
        except SourceError as e:
            raise ContractError(e.code, e.message) from None

    def deploy(self, state, ctx: CallContext, code: str, init_args: list,
               gas_limit: int) -> Result:
        """Run ``code``'s chunk, then ``init(*init_args)`` if it defines one."""
        base = self.gas.call_base
        try:
            _check_call(ctx, gas_limit)
            if not isinstance(code, str):
                raise ContractError("bad_value", "contract code must be a str")
            base += len(code.encode("utf-8", "replace")) * self.gas.deploy_byte
            bytecode = self.compiler.bytecode(code)
            args = _encode_args(init_args)
        except (SourceError, ContractError) as e:
            return _failure(e.code, e.message, min(base, gas_limit))
        return self._execute(state, ctx, bytecode, "init", args, True, base, gas_limit)

    def call(self, state, ctx: CallContext, method: str, args: list, gas_limit: int) -> Result:
        """Run ``method(*args)`` of the contract at ``ctx.contract``."""
        base = self.gas.call_base
        try:
            _check_call(ctx, gas_limit)
            _check_method(method)
            source = state.code(ctx.contract)
            if source is None:
                raise ContractError("no_contract", f"no contract at {ctx.contract.hex()}")
            bytecode = self.compiler.bytecode(source)
            args = _encode_args(args)
        except (SourceError, ContractError) as e:
            return _failure(e.code, e.message, min(base, gas_limit))
        return self._execute(state, ctx, bytecode, method, args, False, base, gas_limit)

    # -- internals -----------------------------------------------------------------------------

    def frame_cost(self, bytecode: bytes, args: bytes) -> int:
        """Gas billed when a frame starts: env, code load, argument bytes."""
        g = self.gas
        return g.frame + len(bytecode) // g.code_byte_per + len(args) // g.value_byte_per

    def _runtime(self):
        rt = getattr(self._local, "runtime", None)
        if rt is None or not rt.usable():
            _check_collation()
            rt = self._local.runtime = Runtime(self, self.max_reuse)
        return rt

    def _execute(self, state, ctx, bytecode, method, args, deploy, base, gas_limit):
        extra = base + self.frame_cost(bytecode, args)
        if extra > gas_limit:
            return _failure("out_of_gas", "gas limit below the call's base cost", gas_limit)
        session = Session(self, self._runtime(), state, ctx, gas_limit)
        try:
            ok, payload, used, fatal, events = session.run(bytecode, method, args, deploy,
                                                           extra)
        finally:
            session.close()
        if fatal in ("out_of_gas", "timeout"):
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
