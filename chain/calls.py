"""Contracts on the chain: deploy and call transactions run in the Lua VM over the state.

The VM (``contracts``) knows nothing of the chain: it is handed a ``ContractState`` over a
child StateView. A call that fails leaves nothing behind (the child is dropped); the sender
still pays its fee and the receipt says why (docs/protocol.md §14).

The VM's backstops (its memory cap, and a wall clock while this node builds a block or admits a
transaction: ``with backstop(seconds):``) never become receipts: building or admitting, the
transaction is refused (``vm_limit``) and left out; validating someone else's block (no wall
clock), ``Backstop`` propagates as a node fault and the block is not applied.
"""

import contextlib
import contextvars

from chain.block import STATUS_FAILED, STATUS_OK, Receipt
from chain.crypto import hash_of
from chain.errors import Reason, TxRejected
from chain.state import records
from contracts.values import decode_value
from contracts.vm import VM, Backstop, CallContext, Result

TAG_CONTRACT_ADDRESS = b"ss/contract-address"
CODE_CHUNK = 4000
COMPILED_CHUNKS = 0x80    # code chunk indexes from here on hold the compiled contract
MAX_ERROR = 256

_vm = None
_wall_clock = contextvars.ContextVar("vm_wall_clock", default=None)


@contextlib.contextmanager
def backstop(seconds):
    """Arm the VM's wall-clock backstop for the contract calls made inside the block (this
    node building a block, admitting or querying); a call that hits it, or the memory cap, is
    refused with ``vm_limit`` instead of getting a receipt."""
    token = _wall_clock.set(seconds)
    try:
        yield
    finally:
        _wall_clock.reset(token)


def _run(method, *args):
    seconds = _wall_clock.get()
    try:
        return method(*args, wall_clock_s=seconds)
    except Backstop as exc:
        if seconds is None:
            raise             # validating a block: a node fault, never a verdict on the block
        raise TxRejected(Reason.VM_LIMIT, f"the contract VM's {exc.code} backstop fired; the "
                                          "transaction is left out") from None


def vm():
    """The process's contract VM (created on first use)."""
    global _vm
    if _vm is None:
        _vm = VM()
    return _vm


def contract_address(sender_address, nonce):
    """The address of the contract deployed by ``sender_address`` with ``nonce``."""
    return hash_of(TAG_CONTRACT_ADDRESS, sender_address + nonce.to_bytes(8, "big"))[:20]


def decode_args(raw, what):
    """The argument list of a deploy or call; TxRejected(malformed) when it is not one."""
    try:
        args = decode_value(raw) if raw else []
    except ValueError as exc:
        raise TxRejected(Reason.MALFORMED, f"{what} arguments: {exc}") from None
    if not isinstance(args, list):
        raise TxRejected(Reason.MALFORMED, f"{what} arguments must be a list")
    return args


def check_contract_tx(payload, params):
    """The stateless rules of deploy and call transactions."""
    if payload.gas_limit > params.max_gas_per_tx:
        raise TxRejected(Reason.INVALID_GAS, f"gas limit {payload.gas_limit} is above the "
                                             f"maximum {params.max_gas_per_tx}")
    if hasattr(payload, "code"):
        if len(payload.code) > params.max_code_bytes:
            raise TxRejected(Reason.OVERSIZE, f"code is {len(payload.code)} bytes, the limit is "
                                              f"{params.max_code_bytes}")
        try:
            payload.code.decode("utf-8")
        except UnicodeDecodeError:
            raise TxRejected(Reason.MALFORMED, "contract code must be UTF-8 Lua source") from None
    decode_args(payload.args, "contract")


def deploy(view, tx, header_info, params):
    """Create the contract of a deploy transaction and run its ``init``; returns the receipt."""
    payload = tx.payload
    address = contract_address(tx.sender_address, tx.nonce)
    child = view.child()
    if child.get(records.contract_key(address)) is not None:  # cannot happen twice; be sure
        return _failed(tx, 0, "exists: a contract already lives at that address")
    store_code(child, address, tx.sender_address, payload.code, header_info[0])
    ctx = _context(tx, address, 0, header_info)
    result = _run(vm().deploy, ContractState(child), ctx, payload.code.decode("utf-8"),
                  decode_args(payload.args, "deploy"), payload.gas_limit)
    if result.ok:
        store_compiled(child, address, result.code)
    return _settle(view, child, tx, result)


def call(view, tx, header_info, params):
    """Run a call transaction; the value moves to the contract only if the call succeeds."""
    payload = tx.payload
    child = view.child()
    if child.get(records.contract_key(payload.contract)) is None:
        return _failed(tx, 0, "no_contract: no contract at that address")
    if payload.value:
        ContractState(child).transfer(tx.sender_address, payload.contract, payload.value)
    ctx = _context(tx, payload.contract, payload.value, header_info)
    result = _run(vm().call, ContractState(child), ctx, payload.method,
                  decode_args(payload.args, "call"), payload.gas_limit)
    return _settle(view, child, tx, result)


def dry_run(view, tx, header_info, params):
    """The receipt the contract transaction ``tx`` would get on ``view`` now, its sender's
    nonce and fee aside (``view`` is thrown away); None when its value cannot be paid now.
    Raises TxRejected(vm_limit) when a backstop fires (``with backstop(...)``)."""
    run = deploy if hasattr(tx.payload, "code") else call
    try:
        return run(view, tx, header_info, params)
    except ValueError:
        return None


QUERY_WALL_CLOCK_S = 1.0


def query(view, chain_id, contract, method, args, height, time_ms, gas_limit):
    """A read-only call against the state (nothing is kept); returns the VM's Result (a backstop
    that fires is a failed Result with error code ``vm_limit``: a query makes no receipt)."""
    if view.get(records.contract_key(contract)) is None:
        raise LookupError("no contract at that address")
    ctx = CallContext(chain_id, contract, bytes(20), bytes(20), 0, height, time_ms)
    try:
        return vm().call(ContractState(view.child()), ctx, method, args, gas_limit,
                         wall_clock_s=_wall_clock.get() or QUERY_WALL_CLOCK_S)
    except Backstop as exc:
        return Result(False, gas_limit, Reason.VM_LIMIT.value, str(exc), (), b"")


def _context(tx, contract, value, header_info):
    height, time_ms = header_info
    return CallContext(tx.chain_id, contract, tx.sender_address, tx.sender_address, value,
                       height, time_ms)


def _settle(view, child, tx, result):
    if not result.ok:
        return _failed(tx, result.gas_used, f"{result.error_code}: {result.error}")
    view.merge(child)
    return Receipt(tx.id, STATUS_OK, tx.fee, result.gas_used, "", tuple(result.events),
                   result.return_value)


def _failed(tx, gas_used, error):
    return Receipt(tx.id, STATUS_FAILED, tx.fee, gas_used, error.encode()[:MAX_ERROR]
                   .decode("utf-8", "ignore"))


def store_code(view, address, creator, code, height):
    chunks = [code[i:i + CODE_CHUNK] for i in range(0, len(code), CODE_CHUNK)] or [b""]
    view.put(records.contract_key(address), records.encode_contract(
        records.Contract(creator, len(code), hash_of(b"ss/code", code), height, len(chunks))))
    for index, chunk in enumerate(chunks):
        view.put(records.code_key(address, index), chunk)


def store_compiled(view, address, compiled):
    """The compiled contract, in chunks from index COMPILED_CHUNKS (§7)."""
    for i in range(0, len(compiled), CODE_CHUNK):
        view.put(records.code_key(address, COMPILED_CHUNKS + i // CODE_CHUNK),
                 compiled[i:i + CODE_CHUNK])


class ContractState:
    """What the VM may see and change of the chain's state, for one contract call."""

    def __init__(self, view):
        self.view = view
        self._code = {}

    def code(self, contract):
        """The compiled contract the VM stored at deploy (None when there is none)."""
        if contract not in self._code:
            chunks, index = [], COMPILED_CHUNKS
            while index < 256:
                chunk = self.view.get(records.code_key(contract, index))
                if chunk is None:
                    break
                chunks.append(chunk)
                index += 1
            self._code[contract] = b"".join(chunks) or None
        return self._code[contract]

    def storage_get(self, contract, key):
        return self.view.get(records.storage_key(contract, key))

    def storage_set(self, contract, key, value):
        self.view.put(records.storage_key(contract, key), bytes(value))

    def storage_delete(self, contract, key):
        self.view.put(records.storage_key(contract, key), None)

    def balance(self, address):
        return self.view.account(address).balance

    def transfer(self, from_address, to_address, amount):
        if amount < 0:
            raise ValueError("amount must not be negative")
        sender = self.view.account(from_address)
        if sender.balance < amount:
            raise ValueError(f"balance {sender.balance} does not cover {amount}")
        self.view.set_account(from_address, sender._replace(balance=sender.balance - amount))
        recipient = self.view.account(to_address)
        self.view.set_account(to_address, recipient._replace(balance=recipient.balance + amount))
