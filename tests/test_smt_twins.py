"""edge._fast.smt: both twins against each other on random trees and damaged records."""

import pytest
from hypothesis import given, settings, strategies as st

from edge._fast import DecodeError
from tests.impls import both, twins

KEYS = st.sampled_from([bytes([b]) + bytes(30) + bytes([e]) for b in (0, 1, 0x80, 0xFF)
                        for e in (0, 1, 2)]) | st.binary(min_size=32, max_size=32)
BATCH = st.dictionaries(KEYS, st.none() | st.binary(max_size=50), max_size=12)


class MemoryNodes:
    """A dict standing in for the LMDB node database (the twins only read through get)."""

    def __init__(self):
        self.records = {}

    def apply(self, new_nodes):
        for key, record in new_nodes:
            self.records[key] = record


def run(smt, batches):
    """Apply ``batches`` in turn; returns every step's (root, new nodes) and walks."""
    nodes, root, steps = MemoryNodes(), smt.EMPTY_REF, []
    for version, batch in enumerate(batches, start=1):
        keys = sorted(batch)
        root, new_nodes = smt.update(root, keys, [batch[k] for k in keys], version,
                                     nodes.records.get)
        # docs/protocol.md §10.2: version || 0x00 || u32be index, numbered as they are made
        assert [key for key, _ in new_nodes] == [version.to_bytes(8, "big") + b"\x00"
                                                 + i.to_bytes(4, "big")
                                                 for i in range(len(new_nodes))]
        nodes.apply(new_nodes)
        walks = [smt.walk(root, key, nodes.records.get) for key in keys]
        steps.append((root, new_nodes, walks))
    return steps


@settings(max_examples=150, deadline=None)
@given(batches=st.lists(BATCH, min_size=1, max_size=6))
def test_twins_build_identical_trees(batches):
    py, c = both("smt")
    if c is None:
        pytest.skip("compiled twin not built")
    assert run(c, batches) == run(py, batches)


@pytest.mark.parametrize("smt", twins("smt"))
def test_missing_node_is_a_lookup_error(smt):
    root, new_nodes = smt.update(smt.EMPTY_REF, [bytes(32), b"\x80" + bytes(31)], [b"a", b"b"],
                                    1, {}.get)
    with pytest.raises(LookupError, match="missing"):
        smt.walk(root, bytes(32), {}.get)
    with pytest.raises(LookupError, match="missing"):
        smt.update(root, [b"\x40" + bytes(31)], [b"c"], 2, {}.get)


@st.composite
def records(draw):
    """A valid inner or leaf record, often with one byte changed or the tail cut."""
    py = both("smt")[0]
    ref = st.sampled_from([0, 1, 2]).flatmap(lambda kind: st.just(py.EMPTY_REF) if kind == 0 else
                                             st.tuples(st.just(kind),
                                                       st.binary(min_size=32, max_size=32),
                                                       st.integers(0, 2**64 - 1),
                                                       st.integers(0, 2**33)))
    if draw(st.booleans()):
        raw = b"\x00" + py.encode_ref(draw(ref)) + py.encode_ref(draw(ref))
    else:
        value = draw(st.binary(max_size=40))
        raw = b"\x01" + draw(st.binary(min_size=32, max_size=32)) + bytes([len(value)]) + value
    at = draw(st.integers(0, len(raw) - 1))
    change = draw(st.sampled_from(["flip", "cut", "none"]))
    if change == "flip":
        raw = raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1:]
    elif change == "cut":
        raw = raw[:at]
    return raw


@settings(max_examples=400, deadline=None)
@given(record=records() | st.binary(max_size=120))
def test_twins_agree_on_damaged_records(record):
    py, c = both("smt")
    if c is None:
        pytest.skip("compiled twin not built")
    for name in ("read_inner", "read_leaf"):
        outcomes = []
        for twin in (py, c):
            try:
                outcomes.append(("ok", getattr(twin, name)(record)))
            except DecodeError as exc:
                outcomes.append(("error", exc.field, exc.reason))
        assert outcomes[0] == outcomes[1], name
