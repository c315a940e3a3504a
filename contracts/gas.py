"""The gas schedule and the sandbox limits of the contract VM (docs §14.3).

One gas is about one Lua VM instruction (~10–15 ns on x86_64). The count hook bills
``instruction_step`` gas every ``instruction_step`` instructions; everything whose work is not
one instruction bills explicitly, per item or per byte, before or right after doing it. Gas
never depends on the Lua heap size, whose exact value varies with Lua's per-runtime hash seed.
"""

from typing import NamedTuple


class GasCosts(NamedTuple):
    """Explicit charges, in gas. Changing any of them is a consensus change."""

    call_base: int = 1_000          # a top-level call: runtime, kernel, frame
    frame: int = 500                # every frame (top-level or nested): env and code load
    code_byte_per: int = 16         # frame load: 1 gas per this many bytes of bytecode
    deploy_byte: int = 2            # deploy: per byte of source (check and compile)
    value_byte_per: int = 16        # 1 gas per this many bytes of args / return / strings
    context: int = 5                # chain.self/caller/origin/value/height/time
    storage_read: int = 200
    storage_read_byte: int = 1
    storage_write: int = 1_000
    storage_write_byte: int = 10    # per byte of key + value
    storage_delete: int = 500
    balance: int = 200
    transfer: int = 1_000
    event: int = 300
    event_byte: int = 2             # per byte of name + encoded data
    call: int = 2_000               # chain.call, plus `frame` and the callee's code load
    verify: int = 5_000             # one Ed25519 verification (~50 µs)
    hash: int = 200                 # one BLAKE2b-256, plus 1 gas per value_byte_per bytes
    elem: int = 2                   # per element moved/pushed by table.move/insert/remove/unpack
    pattern_per: int = 16           # 1 gas per this many worst-case pattern-matcher steps


DEFAULT_GAS = GasCosts()

# Sandbox limits (consensus-relevant as well).
MAX_STRING = 16 * 1024     # longest Lua string a contract can build
MAX_CODE = 64 * 1024       # contract source size
MAX_KEY = 64               # storage key
MAX_STORED = 4000          # storage value
MAX_NAME = 64              # event and method names
MAX_EVENTS = 256           # events per top-level call
MAX_FRAMES = 200           # Lua call frames (host frames included), checked at every tick
CLOCK_EVERY = 16           # ticks between two wall-clock checks


def kernel_params(gas: GasCosts, step: int, max_depth: int, max_size: int) -> dict:
    """The parameter table handed to the Lua kernel (keys as the kernel reads them)."""
    return {
        "step": step, "max_frames": MAX_FRAMES, "clock_every": CLOCK_EVERY,
        "max_depth": max_depth, "max_size": max_size, "max_string": MAX_STRING,
        "byte_unit": gas.value_byte_per, "elem_gas": gas.elem, "pattern_unit": gas.pattern_per,
        "max_key": MAX_KEY, "max_value": MAX_STORED, "max_name": MAX_NAME,
        "gas": {
            "context": gas.context, "storage_read": gas.storage_read,
            "storage_read_byte": gas.storage_read_byte, "storage_write": gas.storage_write,
            "storage_write_byte": gas.storage_write_byte, "storage_delete": gas.storage_delete,
            "balance": gas.balance, "transfer": gas.transfer, "event": gas.event,
            "event_byte": gas.event_byte, "call": gas.call, "verify": gas.verify,
            "hash": gas.hash,
        },
    }
