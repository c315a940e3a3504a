"""An in-memory chain state with the interface the VM expects, for tests and benchmarks."""

import copy

from .gas import MAX_KEY, MAX_STORED


class MemState:
    """Contract code, contract storage and balances in dicts; ``writes`` journals every change."""

    def __init__(self):
        self.codes = {}
        self.storage = {}      # (contract, key) -> bytes
        self.balances = {}
        self.writes = []       # ("set"|"delete"|"transfer", ...) in order

    def code(self, contract):
        return self.codes.get(contract)

    def set_code(self, contract, source):
        self.codes[contract] = source

    def storage_get(self, contract, key):
        return self.storage.get((contract, key))

    def storage_set(self, contract, key, value):
        if len(key) > MAX_KEY or len(value) > MAX_STORED:
            raise ValueError("storage key or value too long")
        self.storage[(contract, key)] = bytes(value)
        self.writes.append(("set", contract, key, bytes(value)))

    def storage_delete(self, contract, key):
        self.storage.pop((contract, key), None)
        self.writes.append(("delete", contract, key))

    def balance(self, address):
        return self.balances.get(address, 0)

    def credit(self, address, amount):
        """Test helper: mint ``amount`` to ``address`` outside any contract."""
        self.balances[address] = self.balances.get(address, 0) + amount

    def transfer(self, sender, recipient, amount):
        if amount < 0 or self.balance(sender) < amount:
            raise ValueError("insufficient balance")
        self.balances[sender] = self.balance(sender) - amount
        self.balances[recipient] = self.balance(recipient) + amount
        self.writes.append(("transfer", sender, recipient, amount))

    def snapshot(self):
        """A deep copy of everything, for before/after comparisons."""
        return copy.deepcopy((self.codes, self.storage, self.balances))
