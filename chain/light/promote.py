"""A light node becoming an agent: the full node's store written from a verified state snapshot
at its last irreversible block, with no history replayed (docs/protocol.md §13.7).

The snapshot is every ``(key, value)`` of the state after that block; rebuilding the state tree
from them must give the root in the block's header (which the light node already trusts), so a
peer cannot add, drop or change a single value. The store then holds that block as head and
last irreversible block, the state at its height, and nothing below: the node syncs blocks
from there like any full node.
"""

from chain import flat_state
from chain.block import Block, encode_receipts, receipts_root, tx_root, votes_root
from chain.blocks_db import BlockRecords
from chain.ledger import DBS, LAYOUT
from chain.light import LightError
from chain.light.genesis import state_root
from chain.state.smt import SparseMerkleTree
from chain.writer import U64


def check_snapshot(header, items):
    """Raise LightError unless ``items`` (key -> value) are exactly the state of ``header``."""
    root = state_root(items)
    if root != header.state_root:
        raise LightError("bad_proof", f"the snapshot's state root {root.hex()[:16]} is not block "
                         f"{header.height}'s {header.state_root.hex()[:16]}")


def install(store, genesis, block, receipts, items):
    """Write a full node's store (``chain.store.Store``, empty) holding ``block`` (with its
    ``receipts``) as its head and last irreversible block, with the state ``items`` (checked
    against its header)."""
    header = block.header
    check_snapshot(header, items)
    if receipts_root(receipts) != header.receipts_root:
        raise LightError("bad_proof", f"the receipts of block {header.height} do not match its "
                         "header")

    db = {name: store.db(name) for name in DBS}

    def work(txn):
        if txn.get(b"genesis", db=db["meta"]) is not None:
            raise LightError("bad_state", f"{store.path} already holds a chain")
        smt = SparseMerkleTree(db["chain"])
        if smt.update(txn, None, header.height, items) != header.state_root:
            raise LightError("bad_state", "the rebuilt state tree does not match the header")
        flat_state.write(txn, store.main, items)
        BlockRecords(db["chain"], db["blocks"]).put(txn, block, encode_receipts(receipts))
        txn.put(b"genesis", genesis.hash, db=db["meta"])
        txn.put(b"layout", U64.pack(LAYOUT), db=db["meta"])
        txn.put(b"lib", U64.pack(header.height), db=db["meta"])
    store.write(work)


def decode_block(raw, header):
    """The block ``raw`` when it is the one ``header`` names (LightError otherwise)."""
    try:
        block = Block.decode(raw)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is the peer's
        raise LightError("malformed", f"the block does not decode ({exc})") from None
    if block.hash != header.hash:
        raise LightError("bad_proof", "the block is not the one asked for")
    if tx_root(block.txs) != header.tx_root or votes_root(block.votes) != header.votes_root:
        raise LightError("bad_proof", "the block's body does not match its header")
    return block
