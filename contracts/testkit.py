"""Helpers for contract tests and benchmarks: named addresses and a VM + MemState harness.

The harness plays the chain's part the way ``chain/calls.py`` does: it chooses contract
addresses, stores code after a successful deploy, and moves a call's value to the contract
before the call (moving it back if the call fails).
"""

from edge import _fast

from .memstate import MemState
from .values import decode_value
from .vm import VM, CallContext


def addr(name: str) -> bytes:
    """A 20-byte test address derived from ``name``."""
    return _fast.tagged_hash(b"ss/test-address", name.encode())[:20]


class Harness:
    """A VM over a MemState, with chain-like deploy and call."""

    def __init__(self, vm=None, chain_id="devnet", height=10, time_ms=1_700_000_000_000,
                 wall_clock_s=None):
        self.vm = vm or VM()
        self.wall_clock_s = wall_clock_s
        self.state = MemState()
        self.chain_id, self.height, self.time_ms = chain_id, height, time_ms

    def ctx(self, contract, caller, value=0, origin=None):
        return CallContext(self.chain_id, contract, caller, origin or caller, value,
                           self.height, self.time_ms)

    def deploy(self, contract, source, args=(), caller=None, gas=10**6):
        """Deploy ``source`` at ``contract``; the code is stored only if the deploy succeeds."""
        result = self.vm.deploy(self.state, self.ctx(contract, caller or addr("deployer")),
                                source, list(args), gas, self.wall_clock_s)
        if result.ok:
            self.state.set_code(contract, result.code)
        return result

    def call(self, contract, method, *args, caller=None, value=0, gas=10**6):
        caller = caller or addr("user")
        if value:
            self.state.transfer(caller, contract, value)
        try:
            result = self.vm.call(self.state, self.ctx(contract, caller, value), method,
                                  list(args), gas, self.wall_clock_s)
        except Exception:
            if value:
                self.state.transfer(contract, caller, value)
            raise
        if value and not result.ok:
            self.state.transfer(contract, caller, value)
        return result

    def value(self, contract, method, *args, **kw):
        """Call and return the decoded return value; AssertionError if the call failed."""
        result = self.call(contract, method, *args, **kw)
        assert result.ok, f"{method} failed: {result.error_code}: {result.error}"
        return decode_value(result.return_value)


def events_of(result):
    """[(name, decoded data), ...] of a result's events."""
    return [(name, decode_value(data)) for _, name, data in result.events]
