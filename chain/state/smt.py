"""The authenticated state tree: a versioned sparse Merkle tree stored in LMDB.

Spec: docs/protocol.md §10. Keys are 32 bytes, values at most 4096 bytes. A subtree holding one
key is that key's leaf, placed as high as it is alone, so the root depends only on the key/value
set. Each update writes version ``v`` (the block height): new nodes are stored under
``v (8 bytes BE) || node hash`` and every node it replaces is recorded stale since ``v``, which
``prune`` deletes once no kept version can reach it. History is linear: each update builds on the
newest version, and ``rollback`` forgets versions above a block being reorganised away.
"""

from contextlib import contextmanager
from functools import partial
from operator import itemgetter

from edge import _fast
from edge._fast import smt_value_hash
from edge._fast.codec_py import encode_fixed
from edge._fast.smt_py import (EMPTY_REF, REF_EMPTY, REF_LEAF, decode_ref, encode_ref, load_node,
                               read_inner, read_leaf)

from chain.state.proof import EMPTY, INCLUSION, KEY_SIZE, MAX_VALUE, OTHER_LEAF, Proof

MAX_VERSION = (1 << 64) - 1
NODE_KEY_SIZE = 8 + 32


class StateError(Exception):
    """The state tree cannot do what was asked (bad version order, corrupt storage...)."""


class VersionPruned(StateError):
    """The version asked for was pruned, rolled back, or never written."""


class SparseMerkleTree:
    """Versioned sparse Merkle tree over three LMDB databases opened by the caller.

    ``nodes``: node key -> node record; ``roots``: version -> encoded root ref; ``stale``:
    version -> the sorted node keys it made stale, concatenated. Every method works inside the
    caller's transaction.
    """

    __slots__ = ("_nodes", "_roots", "_stale")
    #: The inner-loop implementation (``edge._fast.smt_py`` or ``smt_c``); bench/ swaps it.
    engine = _fast.smt

    def __init__(self, nodes_db, roots_db, stale_db):
        self._nodes = nodes_db
        self._roots = roots_db
        self._stale = stale_db

    def update(self, txn, base_version, new_version, changes) -> bytes:
        """Apply ``changes`` (key -> value or ``None`` to delete) as ``new_version``.

        ``base_version`` is the newest version, or ``None`` for the first one (on the empty tree).
        Returns the new root hash.
        """
        keys, values = _sorted_changes(changes)
        base_root = self._check_new_version(txn, base_version, new_version)
        with _missing_nodes_as_state_errors():
            root, new_nodes, stale = self.engine.update(base_root, keys, values, new_version,
                                                      self._node_getter(txn))
        # Performance note: the new nodes come sorted and their keys start with the newest
        # version, so they all sort after every stored node: LMDB appends them (no searches,
        # no page splits) in one C-level batch.
        appended = txn.cursor(db=self._nodes).putmulti(new_nodes, append=True)[1]
        if appended != len(new_nodes):
            raise StateError(f"stored nodes of version {new_version} or later already exist: "
                             "the state database is damaged")
        if stale:
            txn.put(_version_key(new_version), stale, db=self._stale)
        txn.put(_version_key(new_version), encode_ref(root), db=self._roots)
        return root[1]

    def root_hash(self, txn, version) -> bytes:
        """The root hash of ``version`` (``ZERO_HASH`` for an empty tree)."""
        return self._root_ref(txn, version)[1]

    def get(self, txn, version, key):
        """The value of ``key`` in ``version``, or ``None`` when absent."""
        key = _checked_key(key)
        terminal, _ = self._walk(txn, version, key)
        if terminal[0] == REF_LEAF:
            leaf_key, value = self._leaf(txn, terminal)
            if leaf_key == key:
                return value
        return None

    def prove(self, txn, version, key):
        """``(value or None, proof)`` for ``key`` in ``version``; check it with ``verify_proof``."""
        key = _checked_key(key)
        terminal, siblings = self._walk(txn, version, key)
        if terminal[0] == REF_EMPTY:
            return None, Proof(key, EMPTY, siblings)
        leaf_key, value = self._leaf(txn, terminal)
        if leaf_key == key:
            return value, Proof(key, INCLUSION, siblings)
        return None, Proof(key, OTHER_LEAF, siblings, leaf_key, smt_value_hash(value))

    def items(self, txn, version, after=b"", limit=1 << 30, max_bytes=1 << 62):
        """``[(key, value)]`` of ``version`` in key order, starting past ``after`` (b"": from the
        first key), at most ``limit`` pairs or about ``max_bytes`` of values; and whether the
        last key of the version is among them. Subtrees wholly at or below ``after`` are
        skipped without being read."""
        after_int = int.from_bytes(after, "big") if after else -1
        get = self._node_getter(txn)
        out, size, stack = [], 0, [(self._root_ref(txn, version), 0, 0)]
        with _missing_nodes_as_state_errors():
            while stack:
                if len(out) >= limit or size >= max_bytes:
                    return out, False
                ref, depth, prefix = stack.pop()
                span = 8 * KEY_SIZE - depth
                if ref[0] == REF_EMPTY or ((prefix + 1) << span) - 1 <= after_int:
                    continue
                record = load_node(get, ref)
                if ref[0] == REF_LEAF:
                    key, value = read_leaf(record)
                    if int.from_bytes(key, "big") > after_int:
                        out.append((key, value))
                        size += len(value) + KEY_SIZE
                    continue
                left, right = read_inner(record)
                stack.append((right, depth + 1, prefix << 1 | 1))
                stack.append((left, depth + 1, prefix << 1))
        return out, True

    def prune(self, txn, keep_from) -> int:
        """Delete what only versions older than ``keep_from`` use; returns the nodes deleted.

        Refuses a ``keep_from`` past the newest version, which would drop the live state.
        """
        _check_version(keep_from)
        _, newest = self.versions(txn)
        if newest is None:
            return 0
        if keep_from > newest:
            raise StateError(f"prune({keep_from}) would drop the newest version {newest}")
        # Performance note: the oldest kept version may be above keep_from; nodes stale since it
        # are not in it either, so pruning up to it frees them now rather than at the next prune.
        oldest_kept = _first_key_from(txn, self._roots, _version_key(keep_from))
        deleted = self._delete_stale_nodes(txn, _version_from_key(oldest_kept))
        cursor = txn.cursor(db=self._roots)
        while cursor.first() and cursor.key() < _version_key(keep_from):
            cursor.delete()
        return deleted

    def rollback(self, txn, to_version) -> int:
        """Forget every version after ``to_version`` (a reorganisation); returns nodes deleted."""
        self._root_ref(txn, to_version)
        if to_version == MAX_VERSION:
            return 0
        first_dropped = _version_key(to_version + 1)
        # Nodes, stale records and roots of a version all sort by that version first.
        _delete_from(txn, self._stale, first_dropped)
        _delete_from(txn, self._roots, first_dropped)
        return _delete_from(txn, self._nodes, first_dropped)

    def versions(self, txn):
        """``(oldest, newest)`` version present, or ``(None, None)`` before the first update."""
        cursor = txn.cursor(db=self._roots)
        if not cursor.first():
            return None, None
        oldest = _version_from_key(cursor.key())
        cursor.last()
        return oldest, _version_from_key(cursor.key())

    # -- private ---------------------------------------------------------------------------------

    def _check_new_version(self, txn, base_version, new_version):
        """The root ref to build on, after checking the update extends the newest version."""
        _check_version(new_version)
        _, newest = self.versions(txn)
        if base_version is None:
            if newest is not None:
                raise StateError(f"the tree already has versions; build on the newest, {newest}")
            return EMPTY_REF
        _check_version(base_version)
        base_root = self._root_ref(txn, base_version)
        if base_version != newest:
            raise StateError(f"update must build on the newest version {newest}, "
                             f"not {base_version}")
        if new_version <= base_version:
            raise StateError(f"new version {new_version} must be greater than {base_version}")
        return base_root

    def _root_ref(self, txn, version):
        _check_version(version)
        raw = txn.get(_version_key(version), db=self._roots)
        if raw is None:
            raise VersionPruned(self._missing_version_message(txn, version))
        return decode_ref(raw)

    def _missing_version_message(self, txn, version):
        oldest, newest = self.versions(txn)
        if oldest is None:
            return f"state version {version} is not stored: the tree has no versions yet"
        why = "was pruned" if version < oldest else "is not stored"
        return f"state version {version} {why} (versions {oldest}..{newest} are)"

    def _walk(self, txn, version, key):
        """The ref where ``key``'s path ends in ``version`` and the sibling hashes, top first."""
        with _missing_nodes_as_state_errors():
            return self.engine.walk(self._root_ref(txn, version), key, self._node_getter(txn))

    def _leaf(self, txn, ref):
        with _missing_nodes_as_state_errors():
            return read_leaf(load_node(self._node_getter(txn), ref))

    def _node_getter(self, txn):
        # Performance note: a C-level partial, so the compiled twin reads LMDB without a frame.
        return partial(txn.get, db=self._nodes)

    def _delete_stale_nodes(self, txn, up_to):
        """Delete nodes stale since ``up_to`` or earlier, with their stale records."""
        deleted = 0
        cursor = txn.cursor(db=self._stale)
        cursor.first()
        stop = _version_key(up_to + 1) if up_to < MAX_VERSION else None
        while cursor.key() and (stop is None or cursor.key() < stop):
            packed = cursor.value()
            for at in range(0, len(packed), NODE_KEY_SIZE):
                deleted += txn.delete(packed[at:at + NODE_KEY_SIZE], db=self._nodes)
            cursor.delete()
        return deleted


@contextmanager
def _missing_nodes_as_state_errors():
    try:
        yield
    except LookupError as exc:
        raise StateError(str(exc)) from None


def _version_key(version):
    return version.to_bytes(8, "big")


def _version_from_key(key):
    return int.from_bytes(key[:8], "big")


# -- helpers ---------------------------------------------------------------------------------------

def _sorted_changes(changes):
    """Validated changes as two parallel lists sorted by key."""
    if not isinstance(changes, dict):
        raise TypeError(f"changes must be a dict, not {type(changes).__name__}")
    # Performance note: the common case (32-byte bytes keys: distinct, being dict keys) sorts
    # the keys alone; anything else goes through the full checks, which convert it or say what
    # is wrong.
    if all(type(key) is bytes and len(key) == KEY_SIZE for key in changes):
        keys = sorted(changes)
        values = [changes[key] for key in keys]
        if all(value is None or (type(value) is bytes and len(value) <= MAX_VALUE)
               for value in values):
            return keys, values
    pairs = [(_checked_key(key), _checked_value(value)) for key, value in changes.items()]
    pairs.sort(key=itemgetter(0))
    keys = [key for key, _ in pairs]
    for previous, current in zip(keys, keys[1:]):
        if previous == current:
            raise ValueError(f"key {current.hex()} is changed twice")
    return keys, [value for _, value in pairs]


def _checked_key(key):
    return encode_fixed(key, KEY_SIZE, "key")


def _checked_value(value):
    if value is None:
        return None
    if not isinstance(value, (bytes, bytearray)):
        raise TypeError(f"value must be bytes or None, not {type(value).__name__}")
    if len(value) > MAX_VALUE:
        raise ValueError(f"value: {len(value)} bytes exceeds the limit of {MAX_VALUE}")
    return bytes(value)


def _check_version(version):
    if not isinstance(version, int) or isinstance(version, bool):
        raise TypeError(f"version must be an int, not {type(version).__name__}")
    if not 0 <= version <= MAX_VERSION:
        raise ValueError(f"version {version} is outside 0..2^64-1")


def _first_key_from(txn, db, start):
    cursor = txn.cursor(db=db)
    return cursor.key() if cursor.set_range(start) else None


def _delete_from(txn, db, start):
    """Delete every record of ``db`` whose key is ``>= start``; returns how many."""
    cursor = txn.cursor(db=db)
    deleted = 0
    if cursor.set_range(start):
        while cursor.delete():
            deleted += 1
    return deleted
