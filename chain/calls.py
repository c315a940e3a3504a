"""Contracts on the chain: deploy and call transactions run in the Lua VM over the state.

The VM (``contracts``) knows nothing of the chain: it is handed a ``ContractState`` over a
child StateView. A call that fails leaves nothing behind (the child is dropped); the sender
still pays its fee and the receipt says why (docs/protocol.md §14).
"""

from chain.block import STATUS_FAILED, STATUS_OK, Receipt
from chain.crypto import hash_of
from chain.errors import Reason, TxRejected
from chain.state import records
from contracts.values import decode_value
from contracts.vm import VM, CallContext

TAG_CONTRACT_ADDRESS = b"ss/contract-address"
CODE_CHUNK = 4000
MAX_ERROR = 256

_vm = None


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
    result = vm().deploy(ContractState(child), ctx, payload.code.decode("utf-8"),
                         decode_args(payload.args, "deploy"), payload.gas_limit)
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
    result = vm().call(ContractState(child), ctx, payload.method,
                       decode_args(payload.args, "call"), payload.gas_limit)
    return _settle(view, child, tx, result)


def query(view, chain_id, contract, method, args, height, time_ms, gas_limit):
    """A read-only call against the state (nothing is kept); returns the VM's Result."""
    if view.get(records.contract_key(contract)) is None:
        raise LookupError("no contract at that address")
    ctx = CallContext(chain_id, contract, bytes(20), bytes(20), 0, height, time_ms)
    return vm().call(ContractState(view.child()), ctx, method, args, gas_limit)


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


class ContractState:
    """What the VM may see and change of the chain's state, for one contract call."""

    def __init__(self, view):
        self.view = view
        self._code = {}

    def code(self, contract):
        if contract not in self._code:
            raw = self.view.get(records.contract_key(contract))
            if raw is None:
                return None
            info = records.decode_contract(raw)
            self._code[contract] = b"".join(
                self.view.get(records.code_key(contract, i)) for i in range(info.chunks)
            ).decode("utf-8")
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
