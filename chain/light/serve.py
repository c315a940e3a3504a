"""The full node's answers to light nodes: finality entries, state proofs at a height, proofs of
transactions, state snapshots, headers-only gossip (docs/protocol.md §12.8, §13.7)."""

import struct

from chain.block import Block
from chain.light.entries import FinalityEntries
from chain.light.merkle import merkle_path
from chain.p2p.light import (MAX_ENTRIES, MAX_SNAPSHOT_ITEMS, FinalityMsg, GetFinality, GetSnapshot,
                             GetState, GetTx, SnapshotMsg, StateMsg, Subscribe, TxProofMsg)
from chain.p2p.messages import BlockMsg, Headers, TxMsg, Txs
from chain.state.smt import StateError

U64 = struct.Struct(">Q")


def state_proofs(ledger, height, block_hash, keys):
    """``[(value or None, proof bytes)]`` of ``keys`` in the state after the main-chain block
    ``block_hash`` at ``height``; None when that block is not on the main chain or its state
    version is no longer kept."""
    with ledger.store.read() as txn:
        if ledger.blocks.hash_at(txn, height) != block_hash:
            return None
        try:
            proved = [ledger.smt.prove(txn, height, key) for key in keys]
        except StateError:
            return None
    return [(value, proof.encode()) for value, proof in proved]


def tx_proof(ledger, tx_id):
    """Where ``tx_id`` is on the main chain, with the Merkle paths of it and its receipt."""
    where = ledger.tx_location(tx_id)
    if where is None:
        return TxProofMsg(tx_id, False)
    height, index = where
    block_hash = ledger.block_hash_at(height)
    block, receipts = Block.decode(ledger.block_bytes_at(height)), ledger.receipts_at(height)
    encoded = [receipt.encode() for receipt in receipts]
    return TxProofMsg(tx_id, True, height, block_hash, index, len(block.txs),
                      block.txs[index].raw, tuple(merkle_path([tx.id for tx in block.txs], index)),
                      encoded[index], tuple(merkle_path(encoded, index)))


def snapshot_chunk(ledger, request, max_bytes=1 << 20):
    """The state entries after ``request.after`` in the state of the requested main-chain
    block (None: not served)."""
    with ledger.store.read() as txn:
        if ledger.blocks.hash_at(txn, request.height) != request.block_hash:
            items = None
        else:
            try:
                items, done = ledger.smt.items(txn, request.height, request.after,
                                               MAX_SNAPSHOT_ITEMS, max_bytes)
            except StateError:
                items = None
    if items is None:
        return SnapshotMsg(request.height, request.block_hash, request.after, None)
    return SnapshotMsg(request.height, request.block_hash, request.after, tuple(items), done)


class LightServer:
    """A full node's answers to light nodes, for ``chain.network.PeerNetwork``."""

    def __init__(self, ledger):
        self.ledger = ledger
        self.entries = FinalityEntries(ledger)

    def handlers(self):
        return {GetFinality: self._on_get_finality, GetState: self._on_get_state,
                GetTx: self._on_get_tx, GetSnapshot: self._on_get_snapshot,
                Subscribe: self._on_subscribe}

    async def _on_get_finality(self, peer, request):
        entries = self.entries.from_round(request.from_round, min(request.count, MAX_ENTRIES))
        await peer.conn.send(FinalityMsg(request.from_round, tuple(entries)))

    async def _on_get_state(self, peer, request):
        proofs = state_proofs(self.ledger, request.height, request.block_hash, request.keys)
        await peer.conn.send(StateMsg(request.height, request.block_hash,
                                      None if proofs is None else tuple(proofs)))

    async def _on_get_tx(self, peer, request):
        await peer.conn.send(tx_proof(self.ledger, request.tx_id))

    async def _on_get_snapshot(self, peer, request):
        await peer.conn.send(snapshot_chunk(self.ledger, request))

    async def _on_subscribe(self, peer, request):
        peer.headers_only = request.headers_only


def light_form(message):
    """What of a gossip ``message`` goes to a light node that subscribed to headers only: a
    block's header alone, no transactions (None: nothing)."""
    if isinstance(message, BlockMsg):
        return Headers((Block.decode(message.raw).header.encode(),))
    if isinstance(message, (Txs, TxMsg)):
        return None
    return message
