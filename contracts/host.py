"""The host side of the VM: a fresh Lua runtime with the kernel loaded for every top-level call.

The kernel (``contracts/lua/kernel_*.lua``) is compiled once per process and loaded as bytecode
into every new runtime, whose own globals are then wiped. A runtime serves one top-level call
(with its nested calls) and is dropped: nothing a call does, its heap included, can change what
the next one computes. The Lua side calls back into ``Session._host(op, frame_id, ...)`` with
strings, integers and booleans only (a float is refused at this boundary), and every answer is
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

from .gas import MAX_EVENTS
from .overlay import Overlay
from .values import decode_value
from .vouchers import voucher_message

TAG_CONTRACT = b"ss/contract"
KERNEL_CHUNKS = ("meter", "codec", "sandbox", "frames")
OOM, INTERNAL = 1, 2          # host markers in place of a message (no contract can raise these)
# Codes a message may carry; the fatal ones (out_of_gas...) come only from the meter's flag.
_CODED = re.compile(r"^(forbidden|bad_value|depth|insufficient_funds|no_contract|no_method|"
                    r"runtime_error): ")
_POSITION = re.compile(r"^contract:\d+: ")


class Backstop(Exception):
    """A node-local limit fired (``code``: "timeout" or "memory"): the call has no result that
    another node would compute the same way, so it must never become a receipt."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code


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


def _lua_literal(value):
    """A Lua table constructor (or scalar) for kernel parameters: ints, bools, str keys."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_lua_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if type(value) is not int:
        raise TypeError(f"kernel parameter {value!r} is not an integer")
    return str(value)


_KERNEL_TEMPLATE = """local now, host = ...
local P = {params}
local meter = (function(...) {meter} end)(P, now)
local codec = (function(...) {codec} end)(meter, P)
local sandbox = (function(...) {sandbox} end)(meter, P, codec)
local frames = (function(...) {frames} end)(meter, codec, sandbox, P, host)
local G, nx = _G, next for k in nx, G do G[k] = nil end
return frames
"""


class KernelCode:
    """The kernel as one stripped bytecode chunk, with its parameters baked in (compiled once
    per VM configuration, in a private runtime). Running it in a new runtime loads the four
    modules (contracts/lua/kernel_*.lua), wipes the runtime's globals and returns the frames
    module."""

    def __init__(self, params):
        root = importlib.resources.files(__package__) / "lua"
        parts = {name: (root / f"kernel_{name}.lua").read_text("utf-8")
                 for name in KERNEL_CHUNKS}
        source = _KERNEL_TEMPLATE.format(params=_lua_literal(params), **parts)
        rt = lua54.LuaRuntime(register_eval=False, register_builtins=False, encoding=None)
        dump = rt.eval("function(src) return string.dump(assert(load(src, '=kernel', 't')), "
                       "true) end")
        self.code = dump(source.encode("utf-8"))


class Runtime:
    """A new Lua runtime with the kernel loaded; serves one top-level call (~0.15 ms to make)."""

    def __init__(self, vm):
        # Lua keeps a reference to the dispatcher: let it reach the session through this list,
        # not through the Runtime, so a finished Runtime is freed at once (no cycle via C).
        self._current = current = [None]

        def dispatch(op, fid, a=None, b=None, c=None, d=None):
            return current[0]._host(op, fid, a, b, c, d)

        self.rt = lua54.LuaRuntime(register_eval=False, register_builtins=False,
                                   max_memory=vm.memory_limit, encoding=None,
                                   unpack_returned_tuples=True)
        kernel = self.rt.globals().load(vm.kernel_code.code, b"=kernel", b"b")
        self.k = kernel(time.monotonic, dispatch)

    def begin(self, session):
        self._current[0] = session

    def end(self):
        self._current[0] = None


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
                     self._emit, self._call, self._verify, self._hash, self._voucher)
        self.peak_kb = 0
        runtime.begin(self)

    def close(self):
        self.runtime.end()
        self.k = self._ops = self.rt = self.runtime = None
        self.frames = self.active = []

    # -- running ---------------------------------------------------------------------------

    def run(self, code, method, args, deploy, extra, wall_clock_s):
        """(ok, payload, gas_used, fatal_code, events): payload is the result or the message.
        Raises Backstop when the memory cap or (if given) the wall-clock limit fired."""
        c = self.ctx
        frame = self._push(Frame(c.contract, Overlay(self.state), c.depth))
        deadline = False if wall_clock_s is None else time.monotonic() + wall_clock_s
        try:
            ok, payload, used, fatal = self.k.top(
                self.gas_limit, deadline, 0, code,
                method.encode(), args, deploy, extra, c.contract, c.caller, c.origin, c.value,
                c.height, c.time_ms)
        except lua54.LuaError as e:   # a tick between the run and the unhook, or the cap
            self.k.unhook()
            ok, payload = False, OOM if isinstance(e, lua54.LuaMemoryError) else INTERNAL
            used, (fatal, message) = self.k.used(), self.k.status()
            payload = message if fatal else payload
        finally:
            self.active.pop()
            if self.vm.probe:
                self.peak_kb = self.k.peak()
        if self.fault is not None:
            raise self.fault
        if fatal is None and payload in (OOM, INTERNAL):
            fatal = b"memory" if payload == OOM else b"internal"
        self.fatal = fatal and fatal.decode()
        if self.fatal == "internal":
            raise RuntimeError("contract VM kernel failure")
        if self.fatal in ("memory", "timeout"):
            raise Backstop(self.fatal, "the memory cap was reached" if self.fatal == "memory"
                           else f"the call ran over {wall_clock_s} s")
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
            if float in (type(a), type(b), type(c), type(d)):
                raise ContractError("bad_value", "a float reached the host (contracts are "
                                                 "integer-only)")
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
        code = self.vm.loadable(source)
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
