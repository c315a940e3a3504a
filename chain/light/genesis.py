"""Block 0 and its state computed from the genesis file alone: the anchor of a light node that
starts from genesis (docs/protocol.md §5, §8)."""

from edge import _fast
from edge._fast.codec_py import HEADER_VERSION
from edge._fast.smt_py import EMPTY_REF

from chain.block import NO_PRODUCER, NO_SIGNATURE, ZERO_HASH, Header
from chain.genesis import apply_genesis
from chain.state.view import StateView


def genesis_state(genesis):
    """Every record of the genesis state, by key."""
    view = StateView(lambda key: None)
    apply_genesis(view, genesis)
    return {key: value for key, value in view.changes.items() if value is not None}


def state_root(items):
    """The state tree's root (§10) over ``items`` (key -> value)."""
    keys = sorted(items)
    root, _ = _fast.smt.update(EMPTY_REF, keys, [items[k] for k in keys], 0,
                               lambda node_key: None)
    return root[1]


def block_zero(genesis, root):
    """Block 0's header: defined by the genesis and its state root (§5)."""
    return Header(HEADER_VERSION, 0, genesis.hash, genesis.genesis_time_ms, 0, NO_PRODUCER,
                  ZERO_HASH, None, 0, 0, ZERO_HASH, ZERO_HASH, root, ZERO_HASH, NO_SIGNATURE)


def genesis_anchor(genesis, keys):
    """``(block 0's header, {key: value} of ``keys`` in the genesis state)``."""
    items = genesis_state(genesis)
    return block_zero(genesis, state_root(items)), {key: items.get(key) for key in keys}
