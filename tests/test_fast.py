"""edge._fast: both twins against an independent reference, each other, and bad input."""

import hashlib
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st
from nacl.signing import SigningKey

from edge import _fast
from tests.impls import both, twins

L = 2**252 + 27742317777372353535851937790883648493  # Ed25519 group order


@pytest.fixture(scope="module", params=twins("hashing"))
def hashing(request):
    return request.param


@pytest.fixture(scope="module", params=twins("sig"))
def sig(request):
    return request.param


def blake(tag, data):
    return hashlib.blake2b(bytes([len(tag)]) + tag + data, digest_size=32).digest()


# -- hashing ---------------------------------------------------------------------------------------

def test_tagged_hash_is_prefixed_blake2b(hashing):
    assert hashing.tagged_hash(b"ss/tx", b"abc") == blake(b"ss/tx", b"abc")
    assert hashing.tagged_hash(b"t", b"") == blake(b"t", b"")
    assert hashing.tagged_hash(b"t", b"x" * 5000) == blake(b"t", b"x" * 5000)


def test_domains_separate(hashing):
    assert hashing.tagged_hash(b"ss/a", b"bc") != hashing.tagged_hash(b"ss/ab", b"c")


def test_merkle_root_shapes(hashing):
    leaf = lambda x: blake(b"ss/merkle-leaf", x)  # noqa: E731
    node = lambda a, b: blake(b"ss/merkle-node", a + b)  # noqa: E731
    a, b, c = b"a", b"b", b"c"
    assert hashing.merkle_root([]) == bytes(32)
    assert hashing.merkle_root([a]) == leaf(a)
    assert hashing.merkle_root([a, b]) == node(leaf(a), leaf(b))
    assert hashing.merkle_root([a, b, c]) == node(node(leaf(a), leaf(b)), leaf(c))


def test_smt_hashes(hashing):
    k, v = os.urandom(32), os.urandom(32)
    assert hashing.smt_leaf_hash(k, v) == blake(b"ss/smt-leaf", k + v)
    assert hashing.smt_node_hash(k, v) == blake(b"ss/smt-node", k + v)
    assert hashing.smt_value_hash(b"val") == blake(b"ss/smt-value", b"val")
    key = bytes([0b10000000]) + bytes(31)  # goes right at depth 0, left at depth 1
    s0, s1, start = os.urandom(32), os.urandom(32), os.urandom(32)
    expected = hashing.smt_node_hash(s0, hashing.smt_node_hash(start, s1))
    assert hashing.smt_climb(key, start, [s0, s1]) == expected
    assert hashing.smt_climb(key, start, []) == start


@pytest.mark.parametrize("call, exc", [
    (lambda h: h.tagged_hash("tag", b"x"), TypeError),
    (lambda h: h.tagged_hash(b"", b"x"), ValueError),
    (lambda h: h.tagged_hash(b"t" * 256, b"x"), ValueError),
    (lambda h: h.tagged_hash(b"t", "text"), TypeError),
    (lambda h: h.hash_batch(b"t", [b"ok", 5]), TypeError),
    (lambda h: h.smt_leaf_hash(b"short", bytes(32)), ValueError),
    (lambda h: h.smt_node_hash(bytes(32), bytes(31)), ValueError),
    (lambda h: h.smt_climb(bytes(32), bytes(32), [bytes(32)] * 257), ValueError),
    (lambda h: h.smt_climb(bytes(32), bytes(32), [b"x"]), ValueError),
])
def test_hashing_bad_input(hashing, call, exc):
    with pytest.raises(exc):
        call(hashing)


@settings(max_examples=200, deadline=None)
@given(tag=st.binary(min_size=1, max_size=40), items=st.lists(st.binary(max_size=700), max_size=40))
def test_hashing_twins_agree(tag, items):
    py, c = both("hashing")
    if c is None:
        pytest.skip("compiled twin not built")
    assert py.hash_batch(tag, items) == c.hash_batch(tag, items)
    assert py.merkle_root(items) == c.merkle_root(items)
    for item in items[:3]:
        assert py.tagged_hash(tag, item) == c.tagged_hash(tag, item)


@settings(max_examples=100, deadline=None)
@given(key=st.binary(min_size=32, max_size=32), start=st.binary(min_size=32, max_size=32),
       depth=st.integers(0, 256), seed=st.binary(min_size=32, max_size=32))
def test_smt_climb_twins_agree(key, start, depth, seed):
    py, c = both("hashing")
    if c is None:
        pytest.skip("compiled twin not built")
    siblings = [hashlib.blake2b(seed + bytes([i % 256, i // 256]), digest_size=32).digest()
                if i % 3 else bytes(32) for i in range(depth)]
    assert py.smt_climb(key, start, siblings) == c.smt_climb(key, start, siblings)


# -- signatures ------------------------------------------------------------------------------------

def _signed(n):
    keys = [SigningKey(bytes([i + 1]) * 32) for i in range(n)]
    msgs = [f"message {i}".encode() for i in range(n)]
    return ([bytes(k.verify_key) for k in keys], msgs, [k.sign(m).signature for k, m in zip(keys, msgs)])


def test_verify_batch_mixed(sig):
    pks, msgs, sigs = _signed(6)
    sigs[2] = sigs[2][:10] + bytes([sigs[2][10] ^ 1]) + sigs[2][11:]
    msgs[4] = b"tampered"
    pks[5] = pks[0]
    assert sig.verify_batch(pks, msgs, sigs) == [True, True, False, True, False, False]


def test_non_canonical_s_rejected(sig):
    pks, msgs, sigs = _signed(1)
    s = int.from_bytes(sigs[0][32:], "little") + L  # same point equation, S >= L
    forged = sigs[0][:32] + s.to_bytes(32, "little")
    assert sig.verify_batch(pks, msgs, [forged]) == [False]


def test_small_order_pubkey_rejected(sig):
    identity = bytes([1]) + bytes(31)  # the neutral element: small order
    # With pk = identity and R = identity, S = 0 satisfies the verification equation.
    forged = identity + bytes(32)
    assert sig.verify_batch([identity], [b"anything"], [forged]) == [False]


@pytest.mark.parametrize("args, exc", [
    (([], [], []), ValueError),
    (([bytes(32)], [b"m"], []), ValueError),
    (([bytes(31)], [b"m"], [bytes(64)]), ValueError),
    (([bytes(32)], [b"m"], [bytes(63)]), ValueError),
    (([bytes(32)], ["m"], [bytes(64)]), TypeError),
    (([bytearray(32)], [b"m"], [bytes(64)]), TypeError),
    ((b"not a list", [b"m"], [bytes(64)]), TypeError),
])
def test_verify_batch_bad_input(sig, args, exc):
    with pytest.raises(exc):
        sig.verify_batch(*args)


def test_verify_batch_huge_rejected(sig):
    n = sig.MAX_BATCH + 1
    with pytest.raises(ValueError):
        sig.verify_batch([bytes(32)] * n, [b""] * n, [bytes(64)] * n)


# -- the switch ------------------------------------------------------------------------------------

def _implementation_in_subprocess(env_value):
    env = dict(os.environ)
    env.pop("SMARTSHARE_PURE", None)
    if env_value is not None:
        env["SMARTSHARE_PURE"] = env_value
    out = subprocess.run([sys.executable, "-c", "import edge._fast as f; "
                          "print(f.IMPLEMENTATION, sorted(set(f.IMPLEMENTATIONS.values())))"],
                         env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_pure_switch_forces_reference():
    assert _implementation_in_subprocess("1") == "py ['py']"


def test_extension_is_live_when_built():
    if _fast.PURE:
        pytest.skip("pure pass")
    assert _fast.compiled_modules(), "the Cython twins are not built: run `make install`"
    assert "c" in _implementation_in_subprocess(None)


def test_start_verify_matches_verify_batch(sig):
    pks, msgs, sigs = _signed(40)
    sigs[7] = bytes(64)
    job = sig.start_verify(pks, msgs, sigs)
    expected = sig.verify_batch(pks, msgs, sigs)
    assert job.result() == expected == [i != 7 for i in range(40)]
    assert job.result() == expected  # asking twice is fine


def test_start_verify_checks_input_at_once(sig):
    with pytest.raises(ValueError):
        sig.start_verify([bytes(31)], [b"m"], [bytes(64)])
    with pytest.raises(TypeError):
        sig.start_verify([bytes(32)], [None], [bytes(64)])


def test_abandoned_jobs_are_safe(sig):
    """Jobs dropped before their result is read must not crash or leak into later ones."""
    import gc
    pks, msgs, sigs = _signed(200)
    for _ in range(20):
        sig.start_verify(list(pks), list(msgs), list(sigs))
    gc.collect()
    assert all(sig.start_verify(pks, msgs, sigs).result())


@settings(max_examples=50, deadline=None)
@given(flips=st.lists(st.integers(0, 63), max_size=8), n=st.integers(1, 64))
def test_verify_twins_agree(flips, n):
    py, c = both("sig")
    if c is None:
        pytest.skip("compiled twin not built")
    pks, msgs, sigs = _signed(n)
    for i in flips:
        if i < n:
            sigs[i] = sigs[i][:5] + bytes([sigs[i][5] ^ 0x40]) + sigs[i][6:]
    assert c.verify_batch(pks, msgs, sigs) == py.verify_batch(pks, msgs, sigs)
    assert c.start_verify(pks, msgs, sigs).result() == py.start_verify(pks, msgs, sigs).result()
