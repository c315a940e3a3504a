"""The gas schedule and the sandbox limits of the contract VM (docs §14.3).

One gas is about one Lua VM instruction (~5-10 ns on x86_64). The count hook bills
``instruction_step`` gas every ``instruction_step`` instructions; everything whose work is not
one instruction bills explicitly, per item or per byte, before doing it (the worst case of its
arguments). Gas never depends on the Lua heap or the clock. ``GAS_SCHEDULE_VERSION`` names this
schedule together with the kernel and the source rewrite: genesis pins it (§8).
"""

from typing import NamedTuple


GAS_SCHEDULE_VERSION = 2


class GasCosts(NamedTuple):
    """Explicit charges, in gas. Changing any of them is a consensus change."""

    call_base: int = 10_000         # a top-level call: a fresh runtime with the kernel loaded
    frame: int = 500                # every frame (top-level or nested): env and code load
    code_byte_per: int = 2          # frame load: 1 gas per this many bytes of bytecode
    deploy_byte: int = 64           # deploy: per byte of source (parse, rewrite, compile)
    value_byte_per: int = 4         # 1 gas per this many bytes of args / return / strings
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
    elem: int = 2                   # per element pushed or moved by C (unpack, byte, move...)
    pattern_per: int = 2            # 1 gas per this many worst-case pattern-matcher steps
    object: int = 8                 # a new table or string (allocation and collection)
    cmp_per: int = 1                # string < <= > >=: 1 gas per this many bytes (shorter one)
    eq_per: int = 64                # string == of two long strings: 1 gas per this many bytes
    insert: int = 16                # a new key in a table (amortised rebuilds)
    delete_per: int = 1             # first deletion after an insert: 1 gas per this many keys
    pcall: int = 10                 # a protected call (pcall/xpcall)
    catch: int = 250                # an error caught by pcall/xpcall (plus its message bytes)
    global_store: int = 20          # a store into a global (a metamethod called from C)
    sort: int = 16                  # per comparison of keys sorted in hash order (pairs, encode)


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


def kernel_params(gas: GasCosts, step: int, max_depth: int, max_size: int,
                  probe: bool = False) -> dict:
    """The parameter table handed to the Lua kernel (keys as the kernel reads them)."""
    return {
        "step": step, "max_frames": MAX_FRAMES, "clock_every": CLOCK_EVERY, "probe": probe,
        "max_depth": max_depth, "max_size": max_size, "max_string": MAX_STRING,
        "byte_unit": gas.value_byte_per, "elem_gas": gas.elem, "pattern_unit": gas.pattern_per,
        "cmp_unit": gas.cmp_per, "eq_unit": gas.eq_per, "insert_gas": gas.insert,
        "delete_unit": gas.delete_per, "catch_gas": gas.catch, "sort_gas": gas.sort,
        "object_gas": gas.object, "pcall_gas": gas.pcall, "global_gas": gas.global_store,
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
