"""The node's one LMDB environment and its named databases (DESIGN §9).

Consensus writes commit with sync, so a commit that returned survives ``kill -9`` and power loss.
The map grows on demand: a write that hits ``MapFullError`` is retried on a doubled map.
Other layers (the agent, the MQTT bridge) open their own named databases here with ``db()``.
"""

import os
import threading

import lmdb

# name -> what it maps
CHAIN_DBS = {
    "meta": "b'head' -> head block hash; b'lib' -> u64be LIB height; b'genesis' -> its hash",
    "blocks": "block hash -> encoded block (main chain and side forks)",
    "headers": "block hash -> encoded header (main chain and side forks)",
    "heights": "u64be height -> block hash (canonical chain)",
    "txs": "tx id -> u64be height || u32be index",
    "receipts": "block hash -> encoded receipt list",
    "history": "address || u64be height || u32be index -> tx id",
    "state": "state key -> record (latest version, flat)",
    "smt_nodes": "u64be version || node hash -> SMT node",
    "smt_roots": "u64be version -> SMT root reference",
    "smt_stale": "u64be version -> node keys it made stale (40 bytes each, sorted)",
    "mempool": "tx id -> u64be arrival seq || encoded tx (accepted, not yet in a block)",
    "voters": "agent || voter -> '' (who votes for whom, derived from the accounts' votes)",
    "undo": "u64be height -> undo record of that main-chain block (above the LIB only)",
    "side": "u64be height || block hash -> '' (fork blocks kept above the LIB)",
}
MAX_DBS = 64
DEFAULT_MAP_SIZE = 64 << 20


class Store:
    """An LMDB environment with named databases and map-growing write transactions."""

    def __init__(self, path, map_size=DEFAULT_MAP_SIZE):
        os.makedirs(path, exist_ok=True)
        self.path = path
        self.env = lmdb.open(path, map_size=map_size, max_dbs=MAX_DBS, subdir=True,
                             sync=True, metasync=True, readahead=False)
        self._dbs = {}
        self._lock = threading.Lock()
        for name in CHAIN_DBS:
            self.db(name)

    def db(self, name):
        """The handle of named database ``name``, created on first use."""
        handle = self._dbs.get(name)
        if handle is None:
            handle = self._write_once(lambda txn: self.env.open_db(name.encode(), txn=txn))
            self._dbs[name] = handle
        return handle

    def read(self):
        """A read transaction, for ``with store.read() as txn:``."""
        return self.env.begin(buffers=False)

    def write(self, work, commit=True):
        """Run ``work(txn)`` in one write transaction and commit it (or abort when ``commit`` is
        False); returns what ``work`` returned. ``work`` may run more than once: it must not
        change anything outside the transaction."""
        with self._lock:
            return self._write_once(work, commit)

    def _write_once(self, work, commit=True):
        while True:
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
            except lmdb.MapFullError:
                self.grow()

    def grow(self):
        """Double the map size (no transaction of ours may be open)."""
        self.env.set_mapsize(self.env.info()["map_size"] * 2)

    @property
    def map_size(self):
        return self.env.info()["map_size"]

    def close(self):
        self.env.close()
