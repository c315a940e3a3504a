"""The authenticated state tree: a versioned sparse Merkle tree stored in LMDB.

Spec: docs/protocol.md §10. Keys are 32 bytes, values at most 4096 bytes. A subtree holding one
key is that key's leaf, placed as high as it is alone, so the root depends only on the key/value
set. Each update writes version ``v`` (the block height). Everything the tree stores sits in one
height-ordered database under ``u64be(v) || kind``: its new nodes (``|| u32be index``, in the
order the update made them) and its root. Kinds from ``OWNER_KINDS`` on are the owner's (the
ledger keeps its block records beside the versions), so one block's writes all land at the end
of one B-tree. What a version changed is never stored: ``diff`` finds it by walking two versions
side by side through the subtrees that differ, and ``prune`` uses it to delete the nodes no kept
version reaches. History is linear: each update builds on the newest version, and ``rollback``
forgets versions above a block being reorganised away.
"""

from contextlib import contextmanager
from functools import partial
from operator import itemgetter
from typing import NamedTuple

from edge import _fast
from edge._fast import smt_value_hash
from edge._fast.codec_py import encode_fixed
from edge._fast.smt_py import (EMPTY_REF, NODE_KIND, REF_EMPTY, REF_LEAF, decode_ref, encode_ref,
                               load_node, node_key, read_inner, read_leaf)

from chain.state.proof import EMPTY, INCLUSION, KEY_SIZE, MAX_VALUE, OTHER_LEAF, Proof

MAX_VERSION = (1 << 64) - 1
# Record kinds after the version (docs/protocol.md §10.2): nodes (0x00, then their index), the
# root; at version 0 only, the oldest version kept (0x02 held stale lists up to storage layout 4).
# The owner's kinds start at OWNER_KINDS, so a version's records sort as: nodes, root, the owner's.
ROOT_KIND, OLDEST_KIND = 0x01, 0x03
TREE_KINDS = (NODE_KIND, ROOT_KIND, OLDEST_KIND)
OWNER_KINDS = 0x10


class StateError(Exception):
    """The state tree cannot do what was asked (bad version order, corrupt storage...)."""


class VersionPruned(StateError):
    """The version asked for was pruned, rolled back, or never written."""


class Diff(NamedTuple):
    """What changed from one version to another: ``stale``, the node keys of the old version
    that the new one does not reach; ``prior``, every key whose value differs, mapped to its old
    value (``None`` when the old version lacks it)."""
    stale: frozenset
    prior: dict


class SparseMerkleTree:
    """Versioned sparse Merkle tree in one LMDB database opened by the caller, which it may share
    with records of its own under kinds from ``OWNER_KINDS`` on. Every method works inside the
    caller's transaction."""

    __slots__ = ("_db",)
    #: The inner-loop implementation (``edge._fast.smt_py`` or ``smt_c``); bench/ swaps it.
    engine = _fast.smt

    def __init__(self, db):
        self._db = db

    def update(self, txn, base_version, new_version, changes) -> bytes:
        """Apply ``changes`` (key -> value or ``None`` to delete) as ``new_version``.

        ``base_version`` is the newest version, or ``None`` for the first one (on the empty tree).
        Returns the new root hash.
        """
        keys, values = _sorted_changes(changes)
        base_root = self._check_new_version(txn, base_version, new_version)
        with _missing_nodes_as_state_errors():
            root, new_nodes = self.engine.update(base_root, keys, values, new_version,
                                                    self._node_getter(txn))
        # Performance note: the new nodes come sorted and their keys start with the newest
        # version, so they sort after every stored record, and so does the root after them:
        # LMDB appends them all (no searches, no page splits).
        records = new_nodes + [(record_key(new_version, ROOT_KIND), encode_ref(root))]
        if txn.cursor(db=self._db).putmulti(records, append=True)[1] != len(records):
            raise StateError(f"stored records of version {new_version} or later already exist: "
                             "the state database is damaged")
        if base_version is None:
            txn.put(_OLDEST_KEY, _version_key(new_version), db=self._db)
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

    def diff(self, txn, old_version, new_version) -> Diff:
        """What changed from ``old_version`` to ``new_version`` (both stored).

        Walks both trees in lock-step from the roots: equal refs are one stored subtree and are
        skipped, so only the subtrees that differ are read (for consecutive versions, the paths
        of the keys the newer one changed). A leaf or an empty subtree faces an inner node as if
        it had two empty children, so the inner side is read whole: it holds only changed keys
        and possibly that very leaf, moved (a leaf's hash does not depend on its depth). A node
        is in one place of a tree only, so what the old side holds and the new side lacks is
        exactly what the new version no longer reaches."""
        get = self._node_getter(txn)
        old_nodes, new_nodes, old_leaves, new_leaves = set(), set(), {}, {}
        stack = [(self._root_ref(txn, old_version), self._root_ref(txn, new_version))]
        with _missing_nodes_as_state_errors():
            while stack:
                old, new = stack.pop()
                if old != new:
                    old_children = _visit(get, old, old_nodes, old_leaves)
                    new_children = _visit(get, new, new_nodes, new_leaves)
                    stack += zip(old_children, new_children)
        prior = {key: value for key, (leaf_hash, value) in old_leaves.items()
                 if new_leaves.get(key, (None,))[0] != leaf_hash}
        prior.update((key, None) for key in new_leaves.keys() - old_leaves.keys())
        return Diff(frozenset(old_nodes - new_nodes), prior)

    def prune(self, txn, keep_from) -> int:
        """Delete what only versions older than ``keep_from`` use; returns the nodes deleted.

        Refuses a ``keep_from`` past the newest version, which would drop the live state.
        """
        _check_version(keep_from)
        oldest, newest = self.versions(txn)
        if newest is None or keep_from <= oldest:
            return 0
        if keep_from > newest:
            raise StateError(f"prune({keep_from}) would drop the newest version {newest}")
        # Performance note: the oldest kept version may be above keep_from; nodes stale since it
        # are not in it either, so pruning up to it frees them now rather than at the next prune.
        oldest_kept = self._first_version_from(txn, keep_from)
        deleted, version = 0, oldest
        # The nodes each version made stale were in its predecessor and are in no later version
        # (a node key holds its creating version, so a version never takes back a dropped node).
        # The oldest's own were deleted by the previous prune, which kept it.
        while version < oldest_kept:
            successor = self._first_version_from(txn, version + 1)
            for key in sorted(self.diff(txn, version, successor).stale):
                deleted += txn.delete(key, db=self._db)
            txn.delete(record_key(version, ROOT_KIND), db=self._db)
            version = successor
        txn.put(_OLDEST_KEY, _version_key(oldest_kept), db=self._db)
        return deleted

    def rollback(self, txn, to_version) -> int:
        """Forget every version after ``to_version`` (a reorganisation): the nodes and roots
        those versions wrote (their owner's records are its own to drop); returns the nodes
        deleted."""
        self._root_ref(txn, to_version)
        if to_version == MAX_VERSION:
            return 0
        deleted = 0
        cursor = txn.cursor(db=self._db)
        cursor.set_range(_version_key(to_version + 1))
        while cursor.key():
            kind = cursor.key()[8]
            if kind in TREE_KINDS:
                deleted += kind == NODE_KIND
                cursor.delete()
            else:
                cursor.next()
        return deleted

    def versions(self, txn):
        """``(oldest, newest)`` version present, or ``(None, None)`` before the first update."""
        oldest = txn.get(_OLDEST_KEY, db=self._db)
        if oldest is None:
            return None, None
        cursor = txn.cursor(db=self._db)
        cursor.last()
        return _version_from_key(oldest), _version_from_key(cursor.key())

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
        raw = txn.get(record_key(version, ROOT_KIND), db=self._db)
        if raw is None:
            raise VersionPruned(self._missing_version_message(txn, version))
        return decode_ref(raw)

    def _missing_version_message(self, txn, version):
        oldest, newest = self.versions(txn)
        if oldest is None:
            return f"state version {version} is not stored: the tree has no versions yet"
        why = "was pruned" if version < oldest else "is not stored"
        return f"state version {version} {why} (versions {oldest}..{newest} are)"

    def _first_version_from(self, txn, version):
        """The oldest version at or above ``version`` that has a root."""
        cursor = txn.cursor(db=self._db)
        while True:
            if not cursor.set_range(record_key(version, ROOT_KIND)):
                raise StateError(f"no state version at or above {version}")
            key = cursor.key()
            if key[8] == ROOT_KIND and len(key) == 9:
                return _version_from_key(key)
            version = _version_from_key(key) + (0 if key[8] < ROOT_KIND else 1)

    def _walk(self, txn, version, key):
        """The ref where ``key``'s path ends in ``version`` and the sibling hashes, top first."""
        with _missing_nodes_as_state_errors():
            return self.engine.walk(self._root_ref(txn, version), key, self._node_getter(txn))

    def _leaf(self, txn, ref):
        with _missing_nodes_as_state_errors():
            return read_leaf(load_node(self._node_getter(txn), ref))

    def _node_getter(self, txn):
        # Performance note: a C-level partial, so the compiled twin reads LMDB without a frame.
        return partial(txn.get, db=self._db)


def _visit(get, ref, nodes, leaves):
    """Note ``ref`` (its node key in ``nodes``, a leaf's key -> (hash, value) in ``leaves``);
    returns its children, two empty ones for a leaf or an empty subtree."""
    if ref[0] == REF_EMPTY:
        return EMPTY_REF, EMPTY_REF
    nodes.add(node_key(ref))
    record = load_node(get, ref)
    if ref[0] == REF_LEAF:
        key, value = read_leaf(record)
        leaves[key] = ref[1], value
        return EMPTY_REF, EMPTY_REF
    return read_inner(record)


def record_key(version, kind):
    """The key of a version's record of ``kind`` (one byte)."""
    return _version_key(version) + bytes((kind,))


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


_OLDEST_KEY = record_key(0, OLDEST_KIND)


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


