"""The authenticated state tree: a versioned sparse Merkle tree stored in LMDB.

Spec: docs/protocol.md §10. Keys are 32 bytes, values at most 4096 bytes. A subtree holding one
key is that key's leaf, placed as high as it is alone, so the root depends only on the key/value
set. Each update writes version ``v`` (the block height): new nodes are stored under
``v (8 bytes BE) || node hash`` and every node it replaces is recorded stale since ``v``, which
``prune`` deletes once no kept version can reach it. History is linear: each update builds on the
newest version, and ``rollback`` forgets versions above a block being reorganised away.
"""

from bisect import bisect_left

from edge._fast import DecodeError, smt_leaf_hash, smt_node_hash, smt_value_hash
from edge._fast.codec_py import Reader, encode_bytes, encode_fixed, encode_uvarint
from edge._fast.hashing_py import HASH_SIZE, ZERO_HASH

from chain.state.proof import EMPTY, INCLUSION, KEY_SIZE, MAX_VALUE, OTHER_LEAF, Proof

# A child reference is (kind, hash, version); the kinds are also the ref's first encoded byte.
REF_EMPTY, REF_INNER, REF_LEAF = 0, 1, 2
EMPTY_REF = (REF_EMPTY, ZERO_HASH, 0)
# Node records start with one of these.
RECORD_INNER, RECORD_LEAF = 0, 1
MAX_VERSION = (1 << 64) - 1


class StateError(Exception):
    """The state tree cannot do what was asked (bad version order, corrupt storage...)."""


class VersionPruned(StateError):
    """The version asked for was pruned, rolled back, or never written."""


class SparseMerkleTree:
    """Versioned sparse Merkle tree over three LMDB databases opened by the caller.

    ``nodes``: node key -> node record; ``roots``: version -> encoded root ref; ``stale``:
    ``stale_since || node key`` -> ``b""``. Every method works inside the caller's transaction.
    """

    __slots__ = ("_nodes", "_roots", "_stale")

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
        root = _Update(self, txn, new_version, keys, values).subtree(base_root, 0, 0, len(keys))
        txn.put(_version_key(new_version), _encode_ref(root), db=self._roots)
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
        r = Reader(raw)
        ref = _read_ref(r, "root")
        r.end("root")
        return ref

    def _missing_version_message(self, txn, version):
        oldest, newest = self.versions(txn)
        if oldest is None:
            return f"state version {version} is not stored: the tree has no versions yet"
        why = "was pruned" if version < oldest else "is not stored"
        return f"state version {version} {why} (versions {oldest}..{newest} are)"

    def _walk(self, txn, version, key):
        """The ref where ``key``'s path ends in ``version`` and the sibling hashes, top first."""
        ref = self._root_ref(txn, version)
        siblings = []
        depth = 0
        while ref[0] == REF_INNER:
            left, right = self._inner(txn, ref)
            if _bit(key, depth):
                ref, sibling = right, left
            else:
                ref, sibling = left, right
            siblings.append(sibling[1])
            depth += 1
        return ref, tuple(siblings)

    def _inner(self, txn, ref):
        """``(left ref, right ref)`` of a stored inner node."""
        r = self._record(txn, ref, RECORD_INNER)
        children = _read_ref(r, "node.left"), _read_ref(r, "node.right")
        r.end("node")
        return children

    def _leaf(self, txn, ref):
        """``(key, value)`` of a stored leaf."""
        r = self._record(txn, ref, RECORD_LEAF)
        leaf = r.fixed(KEY_SIZE, "node.key"), r.var_bytes(MAX_VALUE, "node.value")
        r.end("node")
        return leaf

    def _record(self, txn, ref, record_tag):
        raw = txn.get(_node_key(ref), db=self._nodes)
        if raw is None:
            raise StateError(f"node {ref[1].hex()} of version {ref[2]} is missing")
        r = Reader(raw)
        tag = r.u8("node.tag")
        if tag != record_tag:
            raise DecodeError("node.tag", f"record tag 0x{tag:02x}, expected 0x{record_tag:02x}")
        return r

    def _delete_stale_nodes(self, txn, up_to):
        """Delete nodes stale since ``up_to`` or earlier, with their stale records."""
        deleted = 0
        cursor = txn.cursor(db=self._stale)
        cursor.first()
        stop = _version_key(up_to + 1) if up_to < MAX_VERSION else None
        while cursor.key() and (stop is None or cursor.key() < stop):
            deleted += txn.delete(cursor.key()[8:], db=self._nodes)
            cursor.delete()
        return deleted


class _Update:
    """One batched update: a single recursive pass over the sorted changed keys."""

    __slots__ = ("tree", "txn", "version", "keys", "values")

    def __init__(self, tree, txn, version, keys, values):
        self.tree, self.txn, self.version = tree, txn, version
        self.keys, self.values = keys, values

    def subtree(self, ref, depth, lo, hi):
        """The new ref of subtree ``ref`` at ``depth`` once changes ``lo:hi`` are applied."""
        if lo == hi:
            return ref
        if ref[0] == REF_INNER:
            left, right = self.tree._inner(self.txn, ref)
            return self._split(ref, (left, right), depth, lo, hi)
        if ref[0] == REF_LEAF:
            return self._at_leaf(ref, depth, lo, hi)
        inserts = [i for i in range(lo, hi) if self.values[i] is not None]
        if len(inserts) <= 1:
            return self._write_leaf(inserts[0]) if inserts else EMPTY_REF
        return self._split(None, (EMPTY_REF, EMPTY_REF), depth, lo, hi)

    def _at_leaf(self, ref, depth, lo, hi):
        """Changes reaching a leaf: settle them here, or push the leaf down beside new keys."""
        leaf_key, leaf_value = self.tree._leaf(self.txn, ref)
        own = bisect_left(self.keys, leaf_key, lo, hi)
        own = own if own < hi and self.keys[own] == leaf_key else None
        if any(self.values[i] is not None for i in range(lo, hi) if i != own):
            # The leaf's hash does not depend on its depth, so it moves down as the same ref.
            children = (ref, EMPTY_REF) if _bit(leaf_key, depth) == 0 else (EMPTY_REF, ref)
            return self._split(None, children, depth, lo, hi)
        if own is None or self.values[own] == leaf_value:
            return ref
        self._mark_stale(ref)
        return EMPTY_REF if self.values[own] is None else self._write_leaf(own)

    def _split(self, ref, children, depth, lo, hi):
        """Apply changes to both halves of a (possibly virtual, when ``ref`` is None) inner node."""
        mid = bisect_left(self.keys, _right_half_start(self.keys[lo], depth), lo, hi)
        left, right = children
        new_left = self.subtree(left, depth + 1, lo, mid)
        new_right = self.subtree(right, depth + 1, mid, hi)
        if ref is not None:
            if (new_left, new_right) == children:
                return ref
            self._mark_stale(ref)
        if new_left[0] == REF_EMPTY and new_right[0] != REF_INNER:
            return new_right  # lift a lone leaf (or an empty subtree)
        if new_right[0] == REF_EMPTY and new_left[0] != REF_INNER:
            return new_left
        return self._write_inner(new_left, new_right)

    def _write_leaf(self, index):
        key, value = self.keys[index], self.values[index]
        ref = (REF_LEAF, smt_leaf_hash(key, smt_value_hash(value)), self.version)
        record = bytes((RECORD_LEAF,)) + key + encode_bytes(value, MAX_VALUE, "node.value")
        self.txn.put(_node_key(ref), record, db=self.tree._nodes)
        return ref

    def _write_inner(self, left, right):
        ref = (REF_INNER, smt_node_hash(left[1], right[1]), self.version)
        record = bytes((RECORD_INNER,)) + _encode_ref(left) + _encode_ref(right)
        self.txn.put(_node_key(ref), record, db=self.tree._nodes)
        return ref

    def _mark_stale(self, ref):
        self.txn.put(_version_key(self.version) + _node_key(ref), b"", db=self.tree._stale)


# -- encodings ------------------------------------------------------------------------------------

def _encode_ref(ref):
    kind, node_hash, version = ref
    if kind == REF_EMPTY:
        return b"\x00"
    return bytes((kind,)) + node_hash + encode_uvarint(version)


def _read_ref(r, field):
    kind = r.u8(field + ".kind")
    if kind == REF_EMPTY:
        return EMPTY_REF
    if kind not in (REF_INNER, REF_LEAF):
        raise DecodeError(field + ".kind", f"unknown child kind {kind}")
    return kind, r.fixed(HASH_SIZE, field + ".hash"), r.uvarint(field + ".version")


def _node_key(ref):
    return _version_key(ref[2]) + ref[1]


def _version_key(version):
    return version.to_bytes(8, "big")


def _version_from_key(key):
    return int.from_bytes(key[:8], "big")


# -- helpers ---------------------------------------------------------------------------------------

def _sorted_changes(changes):
    """Validated changes as two parallel lists sorted by key."""
    if not isinstance(changes, dict):
        raise TypeError(f"changes must be a dict, not {type(changes).__name__}")
    items = sorted((_checked_key(key), _checked_value(value)) for key, value in changes.items())
    for previous, current in zip(items, items[1:]):
        if previous[0] == current[0]:
            raise ValueError(f"key {current[0].hex()} is changed twice")
    return [key for key, _ in items], [value for _, value in items]


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


def _bit(key, depth):
    """Bit ``depth`` of ``key``, most significant first: 1 means the path goes right."""
    return key[depth >> 3] >> (7 - (depth & 7)) & 1


def _right_half_start(key, depth):
    """The smallest key sharing ``key``'s first ``depth`` bits whose bit ``depth`` is set."""
    shift = 8 * KEY_SIZE - 1 - depth
    n = int.from_bytes(key, "big") >> (shift + 1) << 1 | 1
    return (n << shift).to_bytes(KEY_SIZE, "big")


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
