"""Buffered state changes of a contract call (docs §14.4, failure semantics).

Every frame writes into its own ``Overlay`` over its caller's. A frame that succeeds merges into
its caller; a frame that fails is dropped. Only a successful top-level call ``commit``s to the
chain's state, so a failed call leaves the state exactly as it was.
"""

_MISSING = object()


class Overlay:
    """Storage writes, balance deltas, transfers and events of one frame."""

    __slots__ = ("state", "parent", "storage", "deltas", "transfers", "events")

    def __init__(self, state, parent=None):
        self.state = state
        self.parent = parent
        self.storage = {}      # (contract, key) -> bytes, or None when deleted
        self.deltas = {}       # address -> signed balance change
        self.transfers = []    # (from, to, amount) in order
        self.events = []       # (contract, name, encoded data) in order

    def child(self):
        """A new overlay for a nested frame."""
        return Overlay(self.state, self)

    def get(self, contract, key):
        """The value seen by this frame (None when absent)."""
        o = self
        while o is not None:
            value = o.storage.get((contract, key), _MISSING)
            if value is not _MISSING:
                return value
            o = o.parent
        return self.state.storage_get(contract, key)

    def set(self, contract, key, value):
        self.storage[(contract, key)] = value

    def delete(self, contract, key):
        self.storage[(contract, key)] = None

    def balance(self, address):
        """The chain balance plus every pending delta along the frame chain."""
        total = self.state.balance(address)
        o = self
        while o is not None:
            total += o.deltas.get(address, 0)
            o = o.parent
        return total

    def transfer(self, sender, recipient, amount):
        """Record a transfer; False (and nothing recorded) if ``sender`` can't pay it."""
        if self.balance(sender) < amount:
            return False
        self.deltas[sender] = self.deltas.get(sender, 0) - amount
        self.deltas[recipient] = self.deltas.get(recipient, 0) + amount
        self.transfers.append((sender, recipient, amount))
        return True

    def event_count(self):
        n, o = 0, self
        while o is not None:
            n += len(o.events)
            o = o.parent
        return n

    def merge(self):
        """Fold this (successful) frame's changes into its caller's overlay."""
        p = self.parent
        p.storage.update(self.storage)
        for address, delta in self.deltas.items():
            p.deltas[address] = p.deltas.get(address, 0) + delta
        p.transfers.extend(self.transfers)
        p.events.extend(self.events)

    def commit(self):
        """Apply a successful top-level call to the state: storage writes, then transfers."""
        state = self.state
        for (contract, key), value in self.storage.items():
            if value is None:
                state.storage_delete(contract, key)
            else:
                state.storage_set(contract, key, value)
        for sender, recipient, amount in self.transfers:
            state.transfer(sender, recipient, amount)
