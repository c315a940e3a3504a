"""The host side of the VM: Lua runtimes with the kernel loaded, and one Session per call.

The kernel (``contracts/lua/kernel_*.lua``) is compiled once per process and loaded as bytecode
into every new runtime, whose own globals are then wiped. The Lua side calls back into
``Session._host(op, frame_id, ...)`` with strings and integers only, and every answer is
``(True, value)`` or ``(False, "code: message")``, which the Lua wrapper raises as an error.
"""

import importlib.resources
import re
import time
from typing import NamedTuple

from lupa import lua54
from nacl.exceptions import CryptoError
from nacl.signing import VerifyKey

from edge import _fast
from edge._fast.codec_py import DecodeError

from .gas import MAX_EVENTS, kernel_params
from .overlay import Overlay
from .source import SourceError
from .values import MAX_DEPTH, MAX_SIZE, BadValue, decode_value, lua_compatible
from .vouchers import voucher_message

TAG_CONTRACT = b"ss/contract"
KERNEL_CHUNKS = ("meter", "codec", "sandbox", "frames")
OOM, INTERNAL = 1, 2          # host markers in place of a message (no contract can raise these)
# Codes a message may carry; the fatal ones (out_of_gas...) come only from the meter's flag.
_CODED = re.compile(r"^(forbidden|bad_value|depth|insufficient_funds|no_contract|no_method|"
                    r"runtime_error): ")
_POSITION = re.compile(r"^contract:\d+: ")


class ContractError(Exception):
    """A refusal with one of the VM's error codes (see ``vm.ERROR_CODES``)."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Frame(NamedTuple):
    contract: bytes
    overlay: Overlay
    depth: int


def _lua_keys(obj):
    if isinstance(obj, dict):
        return {k.encode(): _lua_keys(v) for k, v in obj.items()}
    return obj


class KernelCode:
    """The kernel chunks as stripped bytecode (compiled once, in a private runtime)."""

    def __init__(self):
        rt = lua54.LuaRuntime(register_eval=False, register_builtins=False, encoding=None)
        dump = rt.eval("function(src, name) return string.dump(assert(load(src, name, 't')), "
                       "true) end")
        root = importlib.resources.files(__package__) / "lua"
        self.chunks = [(name, dump((root / f"kernel_{name}.lua").read_bytes(),
                                   b"=" + name.encode()))
                       for name in KERNEL_CHUNKS]


class Runtime:
    """A Lua runtime with the kernel loaded, reused by consecutive top-level calls.

    Nothing a contract creates outlives its call: every frame gets fresh global and library
    tables, the kernel's own state is reset by ``start``, and gas depends only on instruction
    counts and explicit charges, never on what earlier calls left in the heap. Each call gets
    ``memory_limit`` bytes on top of what the runtime already holds. A runtime is discarded
    after ``max_calls`` calls, and after a call that hit the memory cap, timed out or failed
    inside the host (out_of_gas and stack_overflow unwind cleanly and keep it).
    """

    def __init__(self, vm, max_calls):
        self.vm, self.calls, self.max_calls = vm, 0, max_calls
        self.broken = False
        # Lua keeps a reference to the dispatcher: let it reach the session through this list,
        # not through the Runtime, so a discarded Runtime is freed at once (no cycle via C).
        self._current = current = [None]

        def dispatch(op, fid, a=None, b=None, c=None, d=None):
            return current[0]._host(op, fid, a, b, c, d)

        self.rt = lua54.LuaRuntime(register_eval=False, register_builtins=False,
                                   max_memory=vm.memory_limit, encoding=None,
                                   unpack_returned_tuples=True)
        params = self.rt.table_from(_lua_keys(kernel_params(
            vm.gas, vm.instruction_step, MAX_DEPTH, MAX_SIZE)), recursive=True)
        load = self.rt.globals().load
        mods = {}
        for name, code in vm.kernel_code.chunks:
            chunk = load(code, b"=" + name.encode(), b"b")
            if name == "meter":
                mods[name] = chunk(params, time.monotonic)
            elif name == "frames":
                mods[name] = chunk(mods["meter"], mods["codec"], mods["sandbox"], params,
                                   dispatch)
            else:
                mods[name] = chunk(mods["meter"], params)
        self.rt.execute("local G, nx = _G, next for k in nx, G do G[k] = nil end")
        self.k = mods["frames"]

    def usable(self):
        return not self.broken and self.calls < self.max_calls

    def begin(self, session):
        self._current[0] = session
        self.calls += 1
        self.rt.set_max_memory(self.rt.get_memory_used() + self.vm.memory_limit)

    def end(self, fatal):
        self._current[0] = None
        if fatal in ("out_of_memory", "timeout", "internal"):
            self.broken = True


class Session:
    """Runs one top-level call on a ``Runtime``; ``close()`` detaches from it."""

    def __init__(self, vm, runtime, state, ctx, gas_limit):
        self.vm, self.state, self.ctx, self.gas_limit = vm, state, ctx, gas_limit
        self.runtime, self.rt, self.k = runtime, runtime.rt, runtime.k
        self.frames = []
        self.active = []
        self.fault = None
        self.fatal = None
        self._ops = (None, self._get, self._set, self._delete, self._balance, self._transfer,
                     self._emit, self._call, self._verify, self._hash, self._voucher,
                     self._decode)
        runtime.begin(self)

    def close(self):
        self.runtime.end(self.fatal if self.fault is None else "internal")
        self.k = self._ops = self.rt = self.runtime = None
        self.frames = self.active = []

    # -- running ---------------------------------------------------------------------------

    def run(self, code, method, args, deploy, extra):
        """(ok, payload, gas_used, fatal_code, events): payload is the result or the message."""
        c = self.ctx
        frame = self._push(Frame(c.contract, Overlay(self.state), c.depth))
        try:
            ok, payload, used, fatal = self.k.top(
                self.gas_limit, time.monotonic() + self.vm.wall_clock_s, 0, code,
                method.encode(), args, deploy, extra, c.contract, c.caller, c.origin, c.value,
                c.height, c.time_ms)
        except lua54.LuaError as e:   # a tick between the run and the unhook, or the cap
            self.k.unhook()
            ok, payload = False, OOM if isinstance(e, lua54.LuaMemoryError) else INTERNAL
            used, (fatal, message) = self.k.used(), self.k.status()
            payload = message if fatal else payload
        finally:
            self.active.pop()
        if self.fault is not None:
            raise self.fault
        if fatal is None and payload in (OOM, INTERNAL):
            fatal = b"out_of_memory" if payload == OOM else b"internal"
        self.fatal = fatal and fatal.decode()
        if self.fatal == "internal":
            raise RuntimeError("contract VM kernel failure")
        if ok:
            frame.overlay.commit()
            return True, payload, used, None, tuple(frame.overlay.events)
        return False, payload, used, self.fatal, ()

    def _push(self, frame):
        self.frames.append(frame)
        self.active.append(frame.contract)
        return frame

    def _run_nested(self, frame, code, method, args, extra, ctx):
        fid = len(self.frames)
        self._push(frame)
        try:
            return self.k.run(fid, code, method, args, False, extra, *ctx)
        except lua54.LuaMemoryError:
            return False, OOM
        except lua54.LuaError:
            return False, INTERNAL
        finally:
            self.active.pop()

    # -- host API (called from Lua) ------------------------------------------------------------

    def _host(self, op, fid, a=None, b=None, c=None, d=None):
        try:
            return True, self._ops[op](self.frames[fid], a, b, c, d)
        except _Passthrough as e:
            return False, e.payload
        except ContractError as e:
            return False, f"{e.code}: {e.message}".encode()
        except BaseException as e:  # noqa: BLE001  (reported after the call, not to Lua)
            self.fault = e
            return False, INTERNAL

    def _get(self, f, key, *_):
        return f.overlay.get(f.contract, key)

    def _set(self, f, key, value, *_):
        f.overlay.set(f.contract, key, value)

    def _delete(self, f, key, *_):
        f.overlay.delete(f.contract, key)

    def _balance(self, f, address, *_):
        return f.overlay.balance(address)

    def _transfer(self, f, to, amount, *_):
        if not f.overlay.transfer(f.contract, to, amount):
            raise ContractError("insufficient_funds",
                                f"contract balance is below {amount}")

    def _emit(self, f, name, data, *_):
        if f.overlay.event_count() >= MAX_EVENTS:
            raise ContractError("bad_value", f"more than {MAX_EVENTS} events")
        f.overlay.events.append((f.contract, name.decode("utf-8"), data))

    def _verify(self, f, pubkey, message, signature, *_):
        try:
            VerifyKey(pubkey).verify(message, signature)
        except (CryptoError, ValueError, TypeError):
            return False
        return True

    def _hash(self, f, data, *_):
        return _fast.tagged_hash(TAG_CONTRACT, data)

    def _voucher(self, f, channel_id, payee, amount, nonce):
        # Bound to the chain and to the calling contract itself (docs §14.6).
        return voucher_message(self.ctx.chain_id, f.contract, payee, channel_id, amount, nonce)

    def _decode(self, f, data, *_):
        try:
            lua_compatible(decode_value(data))
        except (DecodeError, BadValue) as e:
            raise ContractError("bad_value", str(e)) from None

    def _call(self, parent, contract, method, args, value):
        depth = parent.depth + 1
        if depth > self.vm.max_depth:
            raise ContractError("depth", f"call depth {depth} exceeds {self.vm.max_depth}")
        if contract in self.active:
            raise ContractError("forbidden", "reentrant call into a contract already running")
        source = self.state.code(contract)
        if source is None:
            raise ContractError("no_contract", f"no contract at {contract.hex()}")
        try:
            if not isinstance(decode_value(args), list):
                raise DecodeError("args", "not a list")
        except DecodeError:
            raise ContractError("bad_value", "call arguments must be a list") from None
        try:
            code = self.vm.compiler.bytecode(source)
        except SourceError as e:
            raise ContractError(e.code, e.message) from None
        overlay = parent.overlay.child()
        if value and not overlay.transfer(parent.contract, contract, value):
            raise ContractError("insufficient_funds", f"contract balance is below {value}")
        frame = Frame(contract, overlay, depth)
        ctx = (contract, parent.contract, self.ctx.origin, value, self.ctx.height,
               self.ctx.time_ms)
        ok, payload = self._run_nested(frame, code, method, args,
                                       self.vm.frame_cost(code, args), ctx)
        if not ok:
            raise _Passthrough(payload)
        overlay.merge()
        return payload


class _Passthrough(ContractError):
    """A nested frame's failure message, handed back to the caller unchanged."""

    def __init__(self, payload):
        Exception.__init__(self, payload)
        self.payload = payload


def classify(message, fatal):
    """(error_code, text) of a failed call's message; the text does not repeat the code."""
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    bare = _POSITION.sub("", text)
    match = _CODED.match(bare)
    code = fatal or (match.group(1) if match else "runtime_error")
    if bare.startswith(code + ": "):
        text = bare[len(code) + 2:]
    return code, text
