"""The node's one LMDB environment and its named databases (DESIGN §9).

Consensus writes commit with sync, so a commit that returned survives ``kill -9`` and power loss.

The map is sized once, large (it is address space, not disk: 1 TiB on 64-bit machines), so it
practically never fills. If it does, it grows only while no transaction is open in any thread of
the process: py-lmdb's ``set_mapsize`` invalidates every open transaction and cursor, so every
transaction goes through a gate that a growth closes, waits empty, and opens again
(docs/protocol.md §15.4 relies on this: a storage error never refuses a good frame).
Other layers (the agent, the MQTT bridge) open their own named databases here with ``db()``.
The flat state lives in LMDB's main database (``main``; docs/protocol.md §10.2), beside the
names of the others: a block's commit rewrites that page anyway (the chain database's root moved),
so the flat state's changes of a small state cost no page of their own.
"""

import os
import sys
import threading

import lmdb

# The main (unnamed) database holds the names of the named ones (printable text) and the flat
# state: 0xFE/0xFF || state key -> the latest value (chain/flat_state.py, docs/protocol.md §10.2).
# name -> what it maps
CHAIN_DBS = {
    "meta": "b'genesis' -> its hash; b'layout' -> u64be storage layout; b'lib' -> u64be LIB "
            "height (written by pruning batches and reorganisations; else the head's)",
    "chain": "u64be height || u8 kind [|| u32be node index] -> the state tree's version and the "
             "main-chain block at that height, in height order (docs/protocol.md §10.2)",
    "side": "block hash -> u64be height || encoded block (fork blocks kept above the LIB)",
    "txs": "tx id -> u64be height || u32be index",
    "history": "address || u64be height || u32be index -> tx id",
    "mempool": "tx id -> u64be arrival seq || encoded tx (accepted, not yet in a block; a "
               "reorganisation puts taken-back transactions here with seq 0)",
    "dropped": "tx id -> why the mempool let an accepted transaction go (chain/dropped.py)",
    "dropped_order": "u64be drop number -> tx id (chain/dropped.py)",
    "peers": "'host:port' -> address book entry (chain/p2p/addressbook.py, protocol §12.7)",
    "finality": "u64be round -> u64be height of the block that justified it || its finality "
                "entry, written before pruning drops its state (chain/light/entries.py)",
}
MAX_DBS = 64
# State versions kept below the head (and always back to the LIB). 64 (plus a pruning batch of 64)
# keeps the chain database two B-tree levels deep on an idle gateway, so an empty block writes 4 or
# 5 pages; 1,000 adds a level, a page a block (docs/protocol.md §10.2).
DEFAULT_PRUNE_DEPTH = 64
# Address space only: pages reach the disk as they are written. 32-bit systems get 1 GiB.
DEFAULT_MAP_SIZE = 1 << 40 if sys.maxsize > 1 << 32 else 1 << 30

# Any failure of the storage itself (a full disk, an I/O error, a full map that cannot grow):
# callers retry, they never turn it into a verdict on what they were storing.
StorageError = lmdb.Error


class StoreError(StorageError):
    """The store was used in a way that could deadlock or corrupt it (a bug in the caller)."""


class Store:
    """An LMDB environment with named databases, gated transactions and map growth."""

    def __init__(self, path, map_size=DEFAULT_MAP_SIZE, dbs=CHAIN_DBS):
        """Open (or create) the environment in ``path`` with the named databases ``dbs``
        (a light node's store has its own, chain/light/store.py)."""
        os.makedirs(path, exist_ok=True)
        self.path = path
        self.env = lmdb.open(path, map_size=map_size, max_dbs=MAX_DBS, subdir=True,
                             sync=True, metasync=True, readahead=False)
        self.growths = 0
        self._gate = _Gate()
        self._dbs = {}
        self._lock = threading.Lock()   # one writer at a time
        self.main = self.env.open_db(None)
        for name in dbs:
            self.db(name)

    def db(self, name):
        """The handle of named database ``name``, created on first use."""
        handle = self._dbs.get(name)
        if handle is None:
            handle = self.write(lambda txn: self.env.open_db(name.encode(), txn=txn))
            self._dbs[name] = handle
        return handle

    def read(self):
        """A read transaction, for ``with store.read() as txn:`` (open it only for that block)."""
        return _Reading(self)

    def write(self, work, commit=True):
        """Run ``work(txn)`` in one write transaction and commit it (or abort when ``commit`` is
        False); returns what ``work`` returned. ``work`` may run more than once (after the map
        grew): it must not change anything outside the transaction. Never call it while this
        thread holds a read transaction."""
        if self._gate.depth():
            raise StoreError("a write transaction was begun while this thread holds a read "
                             "transaction (a map growth would deadlock)")
        with self._lock:
            while True:
                try:
                    return self._write_once(work, commit)
                except lmdb.MapFullError:
                    self._gate.exclusive(self._grow)

    def _write_once(self, work, commit):
        self._gate.enter()
        try:
            txn = self.env.begin(write=True)
            try:
                result = work(txn)
            except BaseException:
                txn.abort()
                raise
            if commit:
                txn.commit()
            else:
                txn.abort()
            return result
        finally:
            self._gate.leave()

    def _grow(self):
        """Double the map (the gate guarantees that no transaction is open)."""
        self.env.set_mapsize(self.env.info()["map_size"] * 2)
        self.growths += 1

    @property
    def map_size(self):
        return self.env.info()["map_size"]

    def close(self):
        self.env.close()


class _Reading:
    """``with store.read() as txn``: a buffers-off read transaction inside the gate."""

    __slots__ = ("store", "txn")

    def __init__(self, store):
        self.store, self.txn = store, None

    def __enter__(self):
        gate = self.store._gate
        gate.enter()
        try:
            self.txn = self.store.env.begin(buffers=False)
        except BaseException:
            gate.leave()
            raise
        return self.txn

    def __exit__(self, *exc):
        try:
            self.txn.abort()
        finally:
            self.txn = None
            self.store._gate.leave()


class _Gate:
    """Counts the transactions open in all threads. ``exclusive(fn)`` holds new ones back, waits
    until none is open and runs ``fn``; a thread that already holds one may nest another (it
    would otherwise wait for itself)."""

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._open = 0
        self._closed = False
        self._local = threading.local()

    def depth(self):
        """How many transactions this thread holds."""
        return getattr(self._local, "depth", 0)

    def enter(self):
        depth = self.depth()
        with self._cond:
            while self._closed and not depth:
                self._cond.wait()
            self._open += 1
        self._local.depth = depth + 1

    def leave(self):
        self._local.depth -= 1
        with self._cond:
            self._open -= 1
            if self._closed and not self._open:
                self._cond.notify_all()

    def exclusive(self, fn):
        if self.depth():
            raise StoreError("the map cannot grow while this thread holds a transaction")
        with self._cond:
            while self._closed:
                self._cond.wait()
            self._closed = True
            while self._open:
                self._cond.wait()
        try:
            fn()
        finally:
            with self._cond:
                self._closed = False
                self._cond.notify_all()
