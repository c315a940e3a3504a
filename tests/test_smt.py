"""The versioned sparse Merkle tree (chain/state/smt.py) and its proofs, on real LMDB."""

from hashlib import blake2b
from typing import NamedTuple

import lmdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.state.proof import EMPTY, INCLUSION, OTHER_LEAF, Proof, verify_proof
from chain.state.smt import SparseMerkleTree, StateError, VersionPruned
from edge._fast import DecodeError, smt_leaf_hash, smt_node_hash, smt_value_hash
from edge._fast.codec_py import Reader
from edge._fast.hashing_py import ZERO_HASH


# -- fixtures and helpers -------------------------------------------------------------------------

class Store(NamedTuple):
    tree: SparseMerkleTree
    db: object


def open_env(path):
    return lmdb.open(str(path), max_dbs=8, map_size=1 << 30)


def open_store(env, name=b"smt"):
    db = env.open_db(name)
    return Store(SparseMerkleTree(db), db)


@pytest.fixture
def env(tmp_path):
    environment = open_env(tmp_path)
    yield environment
    environment.close()


@pytest.fixture
def store(env):
    return open_store(env)


def make_key(n):
    return blake2b(n.to_bytes(4, "big"), digest_size=32).digest()


def flip(key, bit):
    out = bytearray(key)
    out[bit >> 3] ^= 0x80 >> (bit & 7)
    return bytes(out)


def prefix_key(first_byte):
    return bytes((first_byte,)) + bytes(31)


BASE = make_key(0)
# Small on purpose, so updates and deletes hit existing keys; some differ only in the last bits.
KEY_POOL = ([make_key(n) for n in range(1, 8)]
            + [BASE, flip(BASE, 255), flip(BASE, 254), flip(flip(BASE, 255), 254), flip(BASE, 128),
               flip(BASE, 7), flip(BASE, 0), bytes(32), flip(bytes(32), 255), b"\xff" * 32])
ABSENT_KEYS = [make_key(1000), flip(BASE, 253), flip(bytes(32), 254), flip(b"\xff" * 32, 200)]
VALUES = st.sampled_from([b"", b"a", b"b", b"x" * 300]) | st.binary(max_size=40)


def model_root(model):
    """The root straight from the spec: one key is its leaf, otherwise hash the two halves."""
    def subtree(items, depth):
        if not items:
            return ZERO_HASH
        if len(items) == 1:
            key, value = items[0]
            return smt_leaf_hash(key, smt_value_hash(value))
        left = [item for item in items if not bit(item[0], depth)]
        right = [item for item in items if bit(item[0], depth)]
        return smt_node_hash(subtree(left, depth + 1), subtree(right, depth + 1))
    return subtree(sorted(model.items()), 0)


def bit(key, depth):
    return key[depth >> 3] >> (7 - (depth & 7)) & 1


def read_ref(r):
    """A child reference, decoded from the documented storage format."""
    kind = r.u8("ref")
    if kind == 0:
        return None
    return kind, r.fixed(32, "hash"), r.uvarint("version"), r.uvarint("index")


def node_key(ref):
    return ref[2].to_bytes(8, "big") + b"\x00" + ref[3].to_bytes(4, "big")


def root_key(version):
    return version.to_bytes(8, "big") + b"\x01"


def reachable(txn, s, version):
    """The node keys of every node in ``version``'s tree, read without the tree's own code; each
    node stored where its reference points hashes to the hash the reference holds."""
    r = Reader(txn.get(root_key(version), db=s.db))
    stack, found = [read_ref(r)], set()
    r.end("root")
    while stack:
        ref = stack.pop()
        if ref is None:
            continue
        found.add(node_key(ref))
        record = txn.get(node_key(ref), db=s.db)
        assert record is not None, f"node of version {ref[2]} is missing"
        if ref[0] == 1:
            r = Reader(record)
            r.tag(0x00, "inner")
            children = read_ref(r), read_ref(r)
            r.end("inner")
            assert ref[1] == smt_node_hash(*(c[1] if c else bytes(32) for c in children))
            stack += children
        else:
            r = Reader(record)
            r.tag(0x01, "leaf")
            key, value = r.fixed(32, "key"), r.var_bytes(4096, "value")
            r.end("leaf")
            assert ref[1] == smt_leaf_hash(key, smt_value_hash(value))
    return found


def keys_of_kind(txn, s, kind):
    """The stored keys of one record kind (docs/protocol.md §10.2: ``version || kind ...``)."""
    return {key for key in txn.cursor(db=s.db).iternext(values=False) if key[8] == kind}


def node_keys(txn, s):
    return keys_of_kind(txn, s, 0x00)


def stored_versions(txn, s):
    return [int.from_bytes(k[:8], "big") for k in keys_of_kind(txn, s, 0x01)]


def check_storage(txn, s):
    """Nodes stored are exactly those reachable from stored versions (nothing leaks, nothing live
    is gone); of its own kinds (below the owner's 0x10), the tree stores nodes, roots and the
    oldest version only (§10.2)."""
    live = {version: reachable(txn, s, version) for version in stored_versions(txn, s)}
    assert node_keys(txn, s) == set().union(*live.values())
    assert all(len(key) == 13 for key in node_keys(txn, s))
    kinds = {key[8] for key in txn.cursor(db=s.db).iternext(values=False)}
    assert {kind for kind in kinds if kind < 0x10} <= {0x00, 0x01, 0x03}


def check_version(txn, s, version, model, more_keys=()):
    """Root, gets and proofs of ``version`` agree with the dict ``model`` (for the pool's keys,
    absent ones and ``more_keys``)."""
    root = s.tree.root_hash(txn, version)
    assert root == model_root(model)
    for key in KEY_POOL + ABSENT_KEYS + list(more_keys):
        expected = model.get(key)
        assert s.tree.get(txn, version, key) == expected
        value, proof = s.tree.prove(txn, version, key)
        assert value == expected
        assert (proof.kind == INCLUSION) == (expected is not None)
        assert verify_proof(root, key, value, proof)
        assert Proof.decode(proof.encode()) == proof
        assert not verify_proof(root, key, (value or b"") + b"!", proof)
        if value is not None:
            assert not verify_proof(root, key, None, proof)


def fresh_root(txn, scratch, model):
    """Root of a tree built from ``model`` in one batch, in emptied scratch databases."""
    txn.drop(scratch.db, delete=False)
    return scratch.tree.update(txn, None, 0, model)


def counts(txn, s):
    return len(node_keys(txn, s)), len(stored_versions(txn, s))


# -- model-based ----------------------------------------------------------------------------------

batches = st.lists(st.tuples(st.integers(1, 3), st.dictionaries(st.sampled_from(KEY_POOL),
                                                                 st.none() | VALUES, max_size=9)),
                   min_size=1, max_size=6)


@settings(max_examples=100, deadline=None)
@given(batches=batches, data=st.data())
def test_tree_matches_a_dict_model(tmp_path_factory, batches, data):
    env = open_env(tmp_path_factory.mktemp("smt"))
    s, scratch = open_store(env, b"tree"), open_store(env, b"scratch")
    model, history, version, base = {}, {}, 0, None
    with env.begin(write=True) as txn:
        for gap, changes in batches:
            version += gap
            root = s.tree.update(txn, base, version, changes)
            model = {k: v for k, v in {**model, **changes}.items() if v is not None}
            history[version], base = model, version
            check_version(txn, s, version, model)
            assert root == fresh_root(txn, scratch, model)
        for old_version, old_model in history.items():
            check_version(txn, s, old_version, old_model)
        check_storage(txn, s)

        keep_from = data.draw(st.integers(min(history), version), label="keep_from")
        nodes_before = len(node_keys(txn, s))
        deleted = s.tree.prune(txn, keep_from)
        assert len(node_keys(txn, s)) == nodes_before - deleted
        for old_version, old_model in history.items():
            if old_version < keep_from:
                with pytest.raises(VersionPruned):
                    s.tree.root_hash(txn, old_version)
            else:
                check_version(txn, s, old_version, old_model)
        check_storage(txn, s)

        kept = sorted(v for v in history if v >= keep_from)
        to_version = data.draw(st.sampled_from(kept), label="rollback_to")
        s.tree.rollback(txn, to_version)
        assert s.tree.versions(txn) == (kept[0], to_version)
        check_storage(txn, s)
        s.tree.update(txn, to_version, version + 1, {KEY_POOL[0]: b"after"})
        check_version(txn, s, version + 1, {**history[to_version], KEY_POOL[0]: b"after"})
        check_storage(txn, s)
    env.close()


@settings(max_examples=40, deadline=None)
@given(model=st.dictionaries(st.sampled_from(KEY_POOL), VALUES, max_size=len(KEY_POOL)),
       order=st.randoms())
def test_root_does_not_depend_on_insertion_order(tmp_path_factory, model, order):
    env = open_env(tmp_path_factory.mktemp("order"))
    s = open_store(env)
    items = list(model.items())
    order.shuffle(items)
    with env.begin(write=True) as txn:
        base = None
        for version, (key, value) in enumerate(items):
            s.tree.update(txn, base, version, {key: value})
            base = version
        if base is not None:
            assert s.tree.root_hash(txn, base) == model_root(model)
    env.close()


@st.composite
def histories(draw):
    """Batches of changes with the shapes pruning and rollback must follow: inserts, changes and
    deletes; values set to what they are; deletes down to one key (its leaf moves up); a key
    added next to a present one (they part deep down, the leaf moves down). Returns the batches
    and every key they use."""
    model, batches, keys = {}, [], set(KEY_POOL)
    for _ in range(draw(st.integers(1, 12), label="batches")):
        shape = draw(st.sampled_from(["random", "same", "down_to_one", "beside"]), label="shape")
        batch = draw(st.dictionaries(st.sampled_from(KEY_POOL), st.none() | VALUES, max_size=5))
        present = sorted(model)
        if shape == "same":
            batch = {key: model[key] for key in present[:draw(st.integers(0, 5))]}
        elif shape == "down_to_one" and present:
            keep = draw(st.sampled_from(present))
            batch = {key: None for key in present if key != keep}
        elif shape == "beside" and present:
            near = flip(draw(st.sampled_from(present)), draw(st.integers(0, 255)))
            keys.add(near)
            batch[near] = draw(VALUES)
        model = {k: v for k, v in {**model, **batch}.items() if v is not None}
        batches.append((draw(st.integers(1, 2), label="gap"), batch))
    return batches, sorted(keys)


@settings(max_examples=40, deadline=None)
@given(history=histories(), data=st.data())
def test_diffs_and_repeated_pruning_follow_a_model(tmp_path_factory, history, data):
    """``diff`` of consecutive versions finds exactly the nodes the newer one dropped and the
    old value of each key it changed; pruning at random points, again and again between
    updates, keeps every kept version whole and leaves no unreachable node behind."""
    batches, keys = history
    env = open_env(tmp_path_factory.mktemp("prune"))
    s = open_store(env)
    models, version, base = {}, 0, None
    with env.begin(write=True) as txn:
        for gap, batch in batches:
            model = {k: v for k, v in {**models.get(base, {}), **batch}.items() if v is not None}
            version += gap
            s.tree.update(txn, base, version, batch)
            if base is not None:
                diff = s.tree.diff(txn, base, version)
                assert diff.stale == reachable(txn, s, base) - reachable(txn, s, version)
                old = models[base]
                assert diff.prior == {k: old.get(k) for k in keys if old.get(k) != model.get(k)}
            models[version], base = model, version
            if data.draw(st.booleans(), label="prune now"):
                keep_from = data.draw(st.integers(min(models), version), label="keep_from")
                nodes_before = len(node_keys(txn, s))
                deleted = s.tree.prune(txn, keep_from)
                assert len(node_keys(txn, s)) == nodes_before - deleted
                models = {v: m for v, m in models.items() if v >= keep_from}
                check_storage(txn, s)
                for kept, kept_model in models.items():
                    check_version(txn, s, kept, kept_model, keys)
        s.tree.prune(txn, version)
        assert stored_versions(txn, s) == [version]
        assert node_keys(txn, s) == reachable(txn, s, version)
        check_version(txn, s, version, models[version], keys)
    env.close()


# -- proofs ----------------------------------------------------------------------------------------

def test_empty_tree(env, store):
    with env.begin(write=True) as txn:
        assert store.tree.versions(txn) == (None, None)
        assert store.tree.update(txn, None, 0, {BASE: None}) == ZERO_HASH
        assert store.tree.get(txn, 0, BASE) is None
        value, proof = store.tree.prove(txn, 0, BASE)
        assert value is None and proof == Proof(BASE, EMPTY, ())
        assert verify_proof(ZERO_HASH, BASE, None, proof)
        assert counts(txn, store) == (0, 1)


def test_all_three_proof_kinds_occur(env, store):
    # 000..., 001...: the root and the depth-1 node are (inner, empty); the leaves sit at depth 3.
    k1, k2 = prefix_key(0x00), prefix_key(0x20)
    cases = {k1: (INCLUSION, 3), prefix_key(0x80): (EMPTY, 1), prefix_key(0x40): (EMPTY, 2),
             prefix_key(0x10): (OTHER_LEAF, 3)}
    with env.begin(write=True) as txn:
        root = store.tree.update(txn, None, 1, {k1: b"one", k2: b"two"})
        for key, (kind, depth) in cases.items():
            value, proof = store.tree.prove(txn, 1, key)
            assert (proof.kind, len(proof.siblings)) == (kind, depth)
            assert verify_proof(root, key, value, proof)
            assert Proof.decode(proof.encode()) == proof
        _, other = store.tree.prove(txn, 1, prefix_key(0x10))
        assert other.other_key == k1 and other.other_value_hash == smt_value_hash(b"one")


def test_keys_differing_in_the_last_bit_prove_at_depth_256(env, store):
    k1, k2 = BASE, flip(BASE, 255)
    with env.begin(write=True) as txn:
        root = store.tree.update(txn, None, 0, {k1: b"a", k2: b"b"})
        value, proof = store.tree.prove(txn, 0, k2)
        assert value == b"b" and len(proof.siblings) == 256
        assert verify_proof(root, k2, b"b", proof)
        assert len(proof.encode()) == 1 + 32 + 1 + 2 + 32 + 32  # one non-empty sibling
        assert Proof.decode(proof.encode()) == proof


@pytest.fixture
def proved(env, store):
    """A tree over the key pool at versions 1 and 2, and proofs for one present key at version 2."""
    with env.begin(write=True) as txn:
        store.tree.update(txn, None, 1, {key: b"v1" for key in KEY_POOL})
        root = store.tree.update(txn, 1, 2, {KEY_POOL[0]: b"v2", KEY_POOL[1]: None})
        key = KEY_POOL[2]
        value, proof = store.tree.prove(txn, 2, key)
        _, absent = store.tree.prove(txn, 2, KEY_POOL[1])
        return root, store.tree.root_hash(txn, 1), key, value, proof, absent


def test_tampered_proofs_fail(proved):
    root, old_root, key, value, proof, absent = proved
    assert verify_proof(root, key, value, proof)
    siblings = list(proof.siblings)
    deepest = len(siblings) - 1
    siblings[deepest] = flip(siblings[deepest], 3)
    assert not verify_proof(root, key, value, proof._replace(siblings=tuple(siblings)))
    assert not verify_proof(root, key, b"v2", proof)
    assert not verify_proof(root, KEY_POOL[3], value, proof)
    assert not verify_proof(root, KEY_POOL[3], value, proof._replace(key=KEY_POOL[3]))
    assert not verify_proof(flip(root, 0), key, value, proof)
    assert not verify_proof(old_root, KEY_POOL[1], None, absent)
    assert not verify_proof(root, key, None, proof._replace(kind=EMPTY))
    assert not verify_proof(root, key, value, proof._replace(siblings=proof.siblings[1:]))


def test_impossible_shapes_are_rejected(proved):
    root, _, key, value, proof, absent = proved
    # An empty deepest sibling: a tree would have lifted the leaf, even if the hashes added up.
    padded = proof._replace(siblings=proof.siblings + (ZERO_HASH,))
    assert not verify_proof(root, key, value, padded)
    assert not verify_proof(root, key, value, proof._replace(siblings=(b"short",)))
    assert not verify_proof(root, key, value, proof._replace(kind=7))
    assert not verify_proof(root, key, value, proof._replace(other_key=key))
    if absent.kind == OTHER_LEAF:
        moved = absent._replace(other_key=flip(absent.other_key, 0))
        assert not verify_proof(root, KEY_POOL[1], None, moved)


def test_verify_checks_its_arguments(proved):
    root, _, key, value, proof, _ = proved
    with pytest.raises(TypeError):
        verify_proof(root.hex(), key, value, proof)
    with pytest.raises(ValueError):
        verify_proof(root, key[:31], value, proof)
    with pytest.raises(TypeError):
        verify_proof(root, key, "text", proof)
    with pytest.raises(ValueError):
        verify_proof(root, key, b"x" * 4097, proof)
    with pytest.raises(TypeError):
        verify_proof(root, key, value, tuple(proof))


def proof_bytes(kind=0, depth=b"\x02", bitmap=b"\x40", siblings=(b"\x11" * 32,), extra=b""):
    return b"\x30" + BASE + bytes((kind,)) + extra + depth + bitmap + b"".join(siblings)


def test_proof_encoding_is_byte_exact():
    proof = Proof.decode(proof_bytes())
    assert proof == Proof(BASE, INCLUSION, (ZERO_HASH, b"\x11" * 32))
    assert proof.encode() == proof_bytes()
    other = Proof(BASE, OTHER_LEAF, (), make_key(5), b"\x22" * 32)
    assert other.encode() == b"\x30" + BASE + b"\x02" + make_key(5) + b"\x22" * 32 + b"\x00"


@pytest.mark.parametrize("data, field", [
    (proof_bytes() + b"\x00", "proof"),
    (b"\x31" + proof_bytes()[1:], "proof.tag"),
    (proof_bytes(kind=3), "proof.kind"),
    (proof_bytes(depth=b"\x81\x02", bitmap=bytes(33), siblings=()), "proof.depth"),
    (proof_bytes(depth=b"\x82\x00", siblings=()), "proof.depth"),
    (proof_bytes(bitmap=b"\x60", siblings=(b"\x11" * 32, b"\x11" * 32)), "proof.bitmap"),
    (proof_bytes(siblings=(ZERO_HASH,)), "proof.sibling"),
    (proof_bytes(siblings=(b"\x11" * 31,)), "proof.sibling"),
    (proof_bytes(kind=2, extra=BASE + b"\x22" * 32), "proof.other_key"),
    (b"\x30" + BASE + b"\x02" + make_key(5) + bytes(31), "proof.other_value_hash"),
])
def test_proof_decoding_is_strict(data, field):
    with pytest.raises(DecodeError) as error:
        Proof.decode(data)
    assert error.value.field.startswith(field)


def test_a_full_depth_proof_with_every_sibling_round_trips():
    siblings = tuple(make_key(n) for n in range(256))
    proof = Proof(BASE, OTHER_LEAF, siblings, flip(BASE, 255), b"\x01" * 32)
    assert Proof.decode(proof.encode()) == proof
    with pytest.raises(ValueError):
        proof._replace(siblings=siblings + (BASE,)).encode()


# -- versions, pruning, storage --------------------------------------------------------------------

def test_a_value_set_back_survives_pruning(env, store):
    key, others = KEY_POOL[0], {k: b"other" for k in KEY_POOL[1:]}
    with env.begin(write=True) as txn:
        store.tree.update(txn, None, 1, {key: b"A", **others})
        store.tree.update(txn, 1, 2, {key: b"B"})
        store.tree.update(txn, 2, 3, {key: b"A"})
        assert store.tree.root_hash(txn, 3) == store.tree.root_hash(txn, 1)
        before = len(node_keys(txn, store))
        assert store.tree.prune(txn, 3) > 0
        assert len(node_keys(txn, store)) < before
        for version in (1, 2):
            with pytest.raises(VersionPruned, match="pruned"):
                store.tree.get(txn, version, key)
        check_version(txn, store, 3, {key: b"A", **others})
        check_storage(txn, store)
        store.tree.update(txn, 3, 4, {key: b"C"})
        check_version(txn, store, 4, {key: b"C", **others})


def test_pruning_keeps_later_versions_whole(env, store):
    model = {}
    with env.begin(write=True) as txn:
        for version in range(10):
            changes = {KEY_POOL[(version * 3 + i) % len(KEY_POOL)]: bytes((version, i))
                       for i in range(4)}
            changes[KEY_POOL[version % len(KEY_POOL)]] = None
            store.tree.update(txn, version - 1 if version else None, version, changes)
            model = {k: v for k, v in {**model, **changes}.items() if v is not None}
        assert store.tree.versions(txn) == (0, 9)
        assert store.tree.prune(txn, 6) > 0
        assert store.tree.versions(txn) == (6, 9)
        assert store.tree.prune(txn, 6) == 0
        check_storage(txn, store)
        check_version(txn, store, 9, model)
        with pytest.raises(StateError):
            store.tree.prune(txn, 10)


def test_no_op_updates_write_nothing(env, store):
    with env.begin(write=True) as txn:
        root = store.tree.update(txn, None, 1, {key: b"same" for key in KEY_POOL})
        before = counts(txn, store)
        no_ops = {KEY_POOL[0]: b"same", ABSENT_KEYS[0]: None, flip(BASE, 253): None}
        assert store.tree.update(txn, 1, 2, no_ops) == root
        assert store.tree.update(txn, 2, 3, {}) == root
        assert counts(txn, store) == (before[0], before[1] + 2)
        assert store.tree.diff(txn, 1, 3) == (frozenset(), {})


def test_a_no_op_beside_a_change_rewrites_nothing_on_its_path(env):
    written = []
    for name, extra in ((b"plain", {}), (b"mixed", {KEY_POOL[0]: b"same", ABSENT_KEYS[1]: None})):
        s = open_store(env, name)
        with env.begin(write=True) as txn:
            s.tree.update(txn, None, 1, {key: b"same" for key in KEY_POOL})
            s.tree.update(txn, 1, 2, {KEY_POOL[5]: b"new", **extra})
            written.append((node_keys(txn, s), s.tree.diff(txn, 1, 2)))
    assert written[0] == written[1]


def test_storage_records_follow_the_spec(env, store):
    left, right = prefix_key(0x00), prefix_key(0x80)
    left_hash = smt_leaf_hash(left, smt_value_hash(b"L"))
    right_hash = smt_leaf_hash(right, smt_value_hash(b"R"))
    root_hash = smt_node_hash(left_hash, right_hash)
    version = (5).to_bytes(8, "big")
    nodes = version + b"\x00"
    with env.begin(write=True) as txn:
        assert store.tree.update(txn, None, 5, {left: b"L", right: b"R"}) == root_hash
        # Nodes are numbered as they are made: the left leaf 0, the right leaf 1, the root 2.
        index = [i.to_bytes(4, "big") for i in range(3)]
        assert txn.get(version + b"\x01", db=store.db) == b"\x01" + root_hash + b"\x05\x02"
        assert txn.get(nodes + index[2], db=store.db) == (
            b"\x00" + b"\x02" + left_hash + b"\x05\x00" + b"\x02" + right_hash + b"\x05\x01")
        assert txn.get(nodes + index[0], db=store.db) == b"\x01" + left + b"\x01L"
        assert txn.get(bytes(8) + b"\x03", db=store.db) == version  # the oldest version kept
        store.tree.update(txn, 5, 300, {right: None})
        # The left leaf is lifted to the root without being rewritten; the rest is stale since 300.
        since = (300).to_bytes(8, "big")
        assert txn.get(since + b"\x01", db=store.db) == b"\x02" + left_hash + b"\x05\x00"
        assert [key for key in txn.cursor(db=store.db).iternext(values=False)
                if key[:8] == since] == [since + b"\x01"]  # nothing but the root
        assert store.tree.diff(txn, 5, 300) == ({nodes + index[2], nodes + index[1]},
                                                 {right: b"R"})
        assert store.tree.diff(txn, 300, 5) == (set(), {right: None})


def test_the_owners_records_beside_the_versions_are_left_alone(env, store):
    """The ledger keeps its block records under kinds 0x10.. of each version (§10.2)."""
    def owner_records(txn):
        return {k: v for k, v in txn.cursor(db=store.db) if k[8] >= 0x10}

    with env.begin(write=True) as txn:
        for version in range(1, 6):
            store.tree.update(txn, version - 1 if version > 1 else None, version,
                              {KEY_POOL[version]: b"v%d" % version, KEY_POOL[0]: b"%d" % version})
            txn.put(version.to_bytes(8, "big") + b"\x10", b"block %d" % version, db=store.db)
        records = owner_records(txn)
        assert store.tree.versions(txn) == (1, 5)
        store.tree.prune(txn, 3)
        store.tree.rollback(txn, 4)
        assert owner_records(txn) == records
        assert store.tree.versions(txn) == (3, 5)  # version 5's owner record is still there
        txn.delete((5).to_bytes(8, "big") + b"\x10", db=store.db)
        assert store.tree.versions(txn) == (3, 4)
        check_storage(txn, store)
        store.tree.update(txn, 4, 5, {KEY_POOL[0]: b"again"})
        assert store.tree.get(txn, 5, KEY_POOL[0]) == b"again"


def test_rollback_forgets_newer_versions(env, store):
    with env.begin(write=True) as txn:
        store.tree.update(txn, None, 1, {KEY_POOL[0]: b"a", KEY_POOL[1]: b"b"})
        store.tree.update(txn, 1, 2, {KEY_POOL[0]: None, KEY_POOL[2]: b"c"})
        snapshot = counts(txn, store)
        store.tree.update(txn, 2, 3, {KEY_POOL[2]: b"fork", KEY_POOL[3]: b"d"})
        assert store.tree.rollback(txn, 2) > 0
        assert counts(txn, store) == snapshot
        with pytest.raises(VersionPruned):
            store.tree.root_hash(txn, 3)
        store.tree.update(txn, 2, 3, {KEY_POOL[2]: b"canonical"})
        check_version(txn, store, 3, {KEY_POOL[1]: b"b", KEY_POOL[2]: b"canonical"})


def test_update_refuses_bad_versions_and_arguments(env, store):
    with env.begin(write=True) as txn:
        store.tree.update(txn, None, 1, {BASE: b"x"})
        store.tree.update(txn, 1, 2, {BASE: b"y"})
        with pytest.raises(StateError):
            store.tree.update(txn, 1, 3, {})  # not the newest
        with pytest.raises(StateError):
            store.tree.update(txn, 2, 2, {})
        with pytest.raises(StateError):
            store.tree.update(txn, None, 3, {})
        with pytest.raises(VersionPruned):
            store.tree.update(txn, 7, 8, {})
        with pytest.raises(ValueError):
            store.tree.update(txn, 2, 3, {BASE: b"x" * 4097})
        with pytest.raises(ValueError):
            store.tree.update(txn, 2, 3, {BASE[:31]: b"x"})
        with pytest.raises(TypeError):
            store.tree.update(txn, 2, 3, {BASE: "text"})
        with pytest.raises(TypeError):
            store.tree.get(txn, "2", BASE)
        assert store.tree.versions(txn) == (1, 2)


def test_the_worked_example_of_the_spec(env, store):
    """docs/protocol.md §10.4, byte for byte."""
    k1, k2 = prefix_key(0x00), prefix_key(0x20)
    root = bytes.fromhex("6d7149b89536d084660d01606d897404352a317c5de4f17dc27225a8f6320d71")
    depth1 = bytes.fromhex("0abc08de45f394e3078d87ab16e92f7118642a9abba65dada8a80456ba192361")
    depth2 = bytes.fromhex("ff5591aa24847c832910dcb23cd4acdc7a4cb31059e637be389ec853323c7428")
    leaf2 = bytes.fromhex("3490911a2c20645bbe6940c896ff8ce49fc7de361f45efdde9653dc8674d8e1e")
    value_hash = bytes.fromhex("d64f5e52ae9563122d8c361d43a3576ec7332b623a1b89ee1f73a1c7e0924543")
    leaf1 = bytes.fromhex("5ba4a2aae1bc197c41e98a68e2ba2db4ebc936264196fff4bb3ac6d6157ad4be")
    version = (1).to_bytes(8, "big")
    nodes = version + b"\x00"
    expected_proofs = {
        k2: b"\x30" + k2 + b"\x00\x03\x20" + leaf1,
        prefix_key(0x40): b"\x30" + prefix_key(0x40) + b"\x01\x02\x40" + depth2,
        prefix_key(0x10): (b"\x30" + prefix_key(0x10) + b"\x02" + k1 + value_hash
                           + b"\x03\x20" + leaf2),
    }
    with env.begin(write=True) as txn:
        assert store.tree.update(txn, None, 1, {k1: b"one", k2: b"two"}) == root
        assert txn.get(version + b"\x01", db=store.db) == b"\x01" + root + b"\x01\x04"
        assert txn.get(nodes + bytes.fromhex("00000004"), db=store.db) == (
            b"\x00\x01" + depth1 + b"\x01\x03\x00")
        assert txn.get(nodes + bytes(4), db=store.db) == b"\x01" + k1 + b"\x03one"
        assert smt_leaf_hash(k1, smt_value_hash(b"one")) == leaf1
        for key, encoded in expected_proofs.items():
            assert store.tree.prove(txn, 1, key)[1].encode() == encoded
