"""Pending transactions, ordered by fee then arrival, bounded, one nonce chain per sender.

A transaction is admitted only as the next nonce of its sender (after the state's nonce and the
sender's pending ones) and only if the sender's balance covers everything pending. When full, a
new transaction evicts the cheapest evictable one (the last pending nonce of some sender) if it
pays a strictly higher fee, else it is refused.
"""

import heapq
import itertools

from chain.errors import Reason, TxRejected
from chain.execute import spend_of

DEFAULT_LIMIT = 20_000


class Mempool:
    """In-memory index of admitted transactions (durability is the node's job)."""

    def __init__(self, limit=DEFAULT_LIMIT):
        self.limit = limit
        self._by_id = {}        # tx id -> (seq, tx)
        self._by_sender = {}    # sender address -> list of txs in nonce order
        self._spend = {}        # sender address -> sum of spend_of() over its pending txs
        self._by_fee = []       # lazy min-heap of (fee, seq, tx id): the cheapest pending first
        self._seq = itertools.count()

    def __len__(self):
        return len(self._by_id)

    def __contains__(self, tx_id):
        return tx_id in self._by_id

    def get(self, tx_id):
        entry = self._by_id.get(tx_id)
        return entry[1] if entry else None

    def pending_of(self, address):
        return list(self._by_sender.get(address, ()))

    def next_nonce(self, address, account):
        """The nonce the sender's next transaction must carry."""
        return account.nonce + len(self._by_sender.get(address, ()))

    def add(self, tx, account):
        """Admit ``tx`` given its sender's committed ``account``; returns evicted txs.
        Raises TxRejected (duplicate, bad_nonce, insufficient_balance, mempool_full)."""
        if tx.id in self._by_id:
            raise TxRejected(Reason.DUPLICATE, "transaction is already pending")
        sender = tx.sender_address
        chain = self._by_sender.get(sender, [])
        expected = account.nonce + len(chain)
        if tx.nonce != expected:
            raise TxRejected(Reason.BAD_NONCE, f"nonce {tx.nonce}, expected {expected}"
                             + (" (pending transactions count)" if chain else ""))
        need = self._spend.get(sender, 0) + spend_of(tx)
        if need > account.balance:
            raise TxRejected(Reason.INSUFFICIENT_BALANCE,
                             f"balance {account.balance} does not cover {need} base units "
                             "(this and the sender's pending transactions)")
        evicted = []
        if len(self._by_id) >= self.limit:
            # Every evictable tail pays at least the cheapest fee in the pool: a transaction that
            # does not pay more is refused without looking further.
            victim = None if tx.fee <= self._cheapest_fee() else self._cheapest_tail(sender)
            if victim is None or victim.fee >= tx.fee:
                raise TxRejected(Reason.MEMPOOL_FULL, f"{len(self)} pending transactions; "
                                                      "pay a higher fee or retry later")
            self.remove([victim])
            evicted.append(victim)
        self._insert(tx)
        return evicted

    def _insert(self, tx):
        seq = next(self._seq)
        self._by_id[tx.id] = (seq, tx)
        chain = self._by_sender.setdefault(tx.sender_address, [])
        chain.append(tx)
        if len(chain) > 1 and chain[-2].nonce > tx.nonce:
            chain.sort(key=lambda t: t.nonce)
        self._spend[tx.sender_address] = self._spend.get(tx.sender_address, 0) + spend_of(tx)
        heapq.heappush(self._by_fee, (tx.fee, seq, tx.id))

    def _cheapest_fee(self):
        """The lowest fee pending (dropping heap entries of transactions already gone)."""
        heap = self._by_fee
        while heap and self._by_id.get(heap[0][2], (None,))[0] != heap[0][1]:
            heapq.heappop(heap)
        return heap[0][0] if heap else 0

    def restore(self, tx):
        """Re-admit a transaction loaded from disk without checks (``revalidate`` follows)."""
        if tx.id not in self._by_id:
            self._insert(tx)

    def _cheapest_tail(self, exclude):
        """The cheapest transaction that is the last pending one of a sender other than
        ``exclude`` (evicting it leaves no nonce gap)."""
        tails = [chain[-1] for sender, chain in self._by_sender.items() if sender != exclude]
        return min(tails, key=lambda t: (t.fee, -self._by_id[t.id][0]), default=None)

    def remove(self, txs):
        """Forget ``txs`` (included in a block or dropped)."""
        for tx in txs:
            if self._by_id.pop(tx.id, None) is None:
                continue
            sender = tx.sender_address
            chain = self._by_sender[sender]
            chain.remove(tx)
            self._spend[sender] -= spend_of(tx)
            if not chain:
                del self._by_sender[sender]
                del self._spend[sender]
        if len(self._by_fee) > 2 * len(self._by_id) + 1024:  # shed entries of removed txs
            self._by_fee = [(tx.fee, seq, tx_id) for tx_id, (seq, tx) in self._by_id.items()]
            heapq.heapify(self._by_fee)

    def select(self, limit):
        """Up to ``limit`` transactions by fee then arrival, keeping each sender's nonce order."""
        heap = []
        for chain in self._by_sender.values():
            self._push(heap, chain, 0)
        out = []
        while heap and len(out) < limit:
            _, _, chain, index = heapq.heappop(heap)
            out.append(chain[index])
            self._push(heap, chain, index + 1)
        return out

    def _push(self, heap, chain, index):
        if index < len(chain):
            tx = chain[index]
            heapq.heappush(heap, (-tx.fee, self._by_id[tx.id][0], chain, index))

    def revalidate(self, account_of):
        """Drop transactions the committed state has made impossible; returns them as
        ``[(tx, TxRejected saying why)]``."""
        dropped = []
        for sender, chain in list(self._by_sender.items()):
            account = account_of(sender)
            budget, nonce, why = account.balance, account.nonce, None
            for tx in chain:
                if tx.nonce < account.nonce:
                    dropped.append((tx, TxRejected(Reason.BAD_NONCE, f"nonce {tx.nonce} was used "
                                                   "by another committed transaction")))
                    continue
                # The rest must still form an affordable, gap-free chain.
                if why is None and tx.nonce != nonce:
                    why = TxRejected(Reason.BAD_NONCE, f"nonce {tx.nonce} follows a transaction "
                                     "that was dropped")
                elif why is None and spend_of(tx) > budget:
                    why = TxRejected(Reason.INSUFFICIENT_BALANCE, f"balance {budget} no longer "
                                     f"covers {spend_of(tx)} base units")
                if why is None:
                    nonce += 1
                    budget -= spend_of(tx)
                else:
                    dropped.append((tx, why))
        self.remove([tx for tx, _ in dropped])
        return dropped
