"""The chain on disk: genesis, full block validation, atomic application, and queries.

A block, its receipts, its indexes, its state changes and its SMT version commit in one LMDB
write transaction; a crash leaves either all of it or none of it. Restart resumes from ``head``.
"""

import struct

from chain import crypto
from chain.address import address_from_pubkey
from chain.block import NO_PRODUCER, NO_SIGNATURE, ZERO_HASH, Block, Header, decode_receipts, \
    encode_receipts, receipts_root, tx_root
from chain.errors import BlockRejected, TxRejected
from chain.execute import apply_tx, begin_block, check_static, end_block, execute_block
from chain.genesis import apply_genesis
from chain.state.records import Account, account_key
from chain.state.smt import SparseMerkleTree
from chain.state.view import StateView
from chain.tx import Transfer, compute_ids
from edge._fast.codec_py import HEADER_VERSION

U64 = struct.Struct(">Q")
LOCATION = struct.Struct(">QI")
DEFAULT_PRUNE_DEPTH = 1000


def _put_many(txn, db, items):
    """Write many records in one C-level call."""
    txn.cursor(db=db).putmulti(items)


class LedgerError(Exception):
    """The data directory does not fit this genesis, or is damaged."""


class Ledger:
    """Validated chain state over a Store."""

    def __init__(self, store, genesis, prune_depth=DEFAULT_PRUNE_DEPTH):
        self.store = store
        self.genesis = genesis
        self.params = genesis.params
        self.chain_id = genesis.chain_id
        self.prune_depth = prune_depth
        self.smt = SparseMerkleTree(store.db("smt_nodes"), store.db("smt_roots"),
                                    store.db("smt_stale"))
        self._db = {name: store.db(name) for name in
                    ("meta", "blocks", "headers", "heights", "txs", "receipts", "history",
                     "state", "mempool")}
        self.head = self._open()

    # -- opening --------------------------------------------------------------------------------

    def _open(self):
        with self.store.read() as txn:
            stored = txn.get(b"genesis", db=self._db["meta"])
        if stored is None:
            self.store.write(self._write_genesis)
        elif stored != self.genesis.hash:
            raise LedgerError(f"the data in {self.store.path} belongs to another genesis "
                              f"(stored {stored.hex()[:16]}, this one {self.genesis.hash.hex()[:16]})")
        with self.store.read() as txn:
            head_hash = txn.get(b"head", db=self._db["meta"])
            raw = txn.get(head_hash, db=self._db["headers"]) if head_hash else None
        if raw is None:
            raise LedgerError(f"the data in {self.store.path} has no head block: damaged store")
        return Header.decode(raw)

    def _write_genesis(self, txn):
        view = StateView(lambda key: None)
        apply_genesis(view, self.genesis)
        root = self.smt.update(txn, None, 0, view.changes)
        header = Header(HEADER_VERSION, 0, self.genesis.hash, self.genesis.genesis_time_ms, 0,
                        NO_PRODUCER, ZERO_HASH, root, ZERO_HASH, NO_SIGNATURE)
        self._commit(txn, Block(header, []), [], view.changes)
        txn.put(b"genesis", self.genesis.hash, db=self._db["meta"])

    # -- applying blocks ------------------------------------------------------------------------

    def apply_block(self, block, now_ms=None):
        """Validate ``block`` fully against the head and commit it; returns its receipts.
        Raises BlockRejected (nothing written) when any rule fails."""
        receipts = self.store.write(lambda txn: self._apply(txn, block, now_ms))
        self.head = block.header
        return receipts

    def _apply(self, txn, block, now_ms):
        header = block.header
        self._check_header(txn, header, now_ms)
        signatures = self._check_txs(block.txs)
        if tx_root(block.txs) != header.tx_root:
            raise BlockRejected("tx_root does not match the transactions")
        view = StateView(self._reader(txn))
        try:
            receipts = execute_block(view, block.txs, address_from_pubkey(header.producer),
                                     self.params, header.height)
        except TxRejected as exc:
            raise BlockRejected(f"invalid transaction in block: {exc}") from None
        root = self.smt.update(txn, header.height - 1, header.height, view.changes)
        if root != header.state_root:
            raise BlockRejected(f"state_root {header.state_root.hex()[:16]} does not match the "
                                f"executed state {root.hex()[:16]}")
        if receipts_root(receipts) != header.receipts_root:
            raise BlockRejected("receipts_root does not match the executed receipts")
        self._commit(txn, block, receipts, view.changes)
        if header.height > self.prune_depth:
            self.smt.prune(txn, header.height - self.prune_depth)
        # Everything above overlapped the signature checks; only the commit waits for them.
        valid = signatures.result()
        if not all(valid):
            raise BlockRejected(f"bad signature on transaction {valid.index(False)}")
        return receipts

    def _check_header(self, txn, header, now_ms):
        head = self.head
        if header.version != HEADER_VERSION:
            raise BlockRejected(f"unsupported header version {header.version}")
        if header.height != head.height + 1:
            raise BlockRejected(f"height {header.height} does not follow the head {head.height}")
        if header.prev_hash != head.hash:
            raise BlockRejected("prev_hash is not the head block")
        if header.slot <= head.slot:
            raise BlockRejected(f"slot {header.slot} is not after the head's slot {head.slot}")
        expected_time = self.slot_time_ms(header.slot)
        if header.timestamp_ms != expected_time:
            raise BlockRejected(f"timestamp {header.timestamp_ms} is not slot {header.slot}'s "
                                f"start {expected_time}")
        if now_ms is not None and header.timestamp_ms > now_ms + self.params.slot_ms:
            raise BlockRejected("block is from the future")
        expected = StateView(self._reader(txn)).schedule().producer_for(header.slot)
        if header.producer != expected:
            raise BlockRejected(f"slot {header.slot} belongs to another producer")
        if not header.signature_valid(self.chain_id):
            raise BlockRejected("bad producer signature")

    def _check_txs(self, txs):
        """Stateless checks; returns the job checking the signatures, which runs meanwhile."""
        if len(txs) > self.params.max_block_txs:
            raise BlockRejected(f"{len(txs)} transactions, at most {self.params.max_block_txs}")
        compute_ids(txs)
        if len({tx.id for tx in txs}) != len(txs):
            raise BlockRejected("a transaction appears twice")
        try:
            for tx in txs:
                check_static(tx, self.chain_id, self.params)
        except TxRejected as exc:
            raise BlockRejected(f"invalid transaction in block: {exc}") from None
        return crypto.start_verify_many(self.chain_id,
                                        [(tx.sender, tx.id, tx.signature) for tx in txs])

    def _commit(self, txn, block, receipts, changes):
        header, h = block.header, block.header.height
        block_hash = header.hash
        db = self._db
        txn.put(block_hash, block.encode(), db=db["blocks"])
        txn.put(block_hash, header.encode(), db=db["headers"])
        txn.put(U64.pack(h), block_hash, db=db["heights"])
        txn.put(block_hash, encode_receipts(receipts), db=db["receipts"])
        tx_index, history = [], []
        for index, tx in enumerate(block.txs):
            where = LOCATION.pack(h, index)
            tx_index.append((tx.id, where))
            history.append((tx.sender_address + where, tx.id))
            if isinstance(tx.payload, Transfer) and tx.payload.to != tx.sender_address:
                history.append((tx.payload.to + where, tx.id))
        _put_many(txn, db["txs"], tx_index)
        _put_many(txn, db["history"], history)
        if txn.stat(db["mempool"])["entries"]:
            for tx in block.txs:
                txn.delete(tx.id, db=db["mempool"])
        _put_many(txn, db["state"], [(k, v) for k, v in changes.items() if v is not None])
        for key, value in changes.items():
            if value is None:
                txn.delete(key, db=db["state"])
        txn.put(b"head", block_hash, db=db["meta"])

    def _reader(self, txn):
        state = self._db["state"]
        return lambda key: txn.get(key, db=state)

    # -- producing ------------------------------------------------------------------------------

    def slot_time_ms(self, slot):
        return self.genesis.genesis_time_ms + slot * self.params.slot_ms

    def slot_at(self, now_ms):
        return max(0, (now_ms - self.genesis.genesis_time_ms) // self.params.slot_ms)

    def producer_for(self, slot):
        """The public key scheduled for ``slot``, read from the state's schedule."""
        with self.store.read() as txn:
            return StateView(self._reader(txn)).schedule().producer_for(slot)

    def build_block(self, keypair, slot, candidates):
        """Build and sign a block for ``slot`` from ``candidates`` (in order), skipping those
        that fail; returns ``(block, rejected)`` where rejected lists ``(tx, TxRejected)``.
        Nothing is written: the block still goes through apply_block."""
        return self.store.write(lambda txn: self._build(txn, keypair, slot, candidates),
                                commit=False)

    def _build(self, txn, keypair, slot, candidates):
        height = self.head.height + 1
        view = StateView(self._reader(txn))
        begin_block(view, height)
        included, receipts, rejected = [], [], []
        for tx in candidates[:self.params.max_block_txs]:
            try:
                receipts.append(apply_tx(view, tx, self.params, height))
                included.append(tx)
            except TxRejected as exc:
                rejected.append((tx, exc))
        end_block(view, keypair.address, sum(r.fee for r in receipts), self.params)
        root = self.smt.update(txn, height - 1, height, view.changes)
        header = Header(HEADER_VERSION, height, self.head.hash, self.slot_time_ms(slot), slot,
                        keypair.pubkey, tx_root(included), root, receipts_root(receipts))
        return Block(header.signed_by(keypair, self.chain_id), included), rejected

    # -- queries --------------------------------------------------------------------------------

    def account(self, address):
        with self.store.read() as txn:
            return StateView(self._reader(txn)).account(address)

    def view_agent(self, address):
        """The agent record of ``address`` at the head, or None."""
        with self.store.read() as txn:
            return StateView(self._reader(txn)).agent(address)

    def view(self, txn):
        """A read-only StateView of the latest committed state inside ``txn``."""
        return StateView(self._reader(txn))

    def account_proof(self, address):
        """``(account, proof, header)``: the account at the head with its SMT proof."""
        with self.store.read() as txn:
            value, proof = self.smt.prove(txn, self.head.height, account_key(address))
        return (Account.decode(value) if value is not None else Account()), proof, self.head

    def block_hash_at(self, height):
        with self.store.read() as txn:
            return txn.get(U64.pack(height), db=self._db["heights"])

    def block(self, block_hash):
        with self.store.read() as txn:
            raw = txn.get(block_hash, db=self._db["blocks"])
        return Block.decode(raw) if raw is not None else None

    def receipts(self, block_hash):
        with self.store.read() as txn:
            raw = txn.get(block_hash, db=self._db["receipts"])
        return decode_receipts(raw) if raw is not None else None

    def tx_location(self, tx_id):
        """``(height, index)`` of a committed transaction, or None."""
        with self.store.read() as txn:
            raw = txn.get(tx_id, db=self._db["txs"])
        return LOCATION.unpack(raw) if raw is not None else None

    def committed_tx(self, tx_id):
        """``(tx, height, index, receipt)`` or None."""
        where = self.tx_location(tx_id)
        if where is None:
            return None
        height, index = where
        block_hash = self.block_hash_at(height)
        return (self.block(block_hash).txs[index], height, index,
                self.receipts(block_hash)[index])

    def history(self, address, limit=50):
        """Ids of the newest ``limit`` committed transactions touching ``address``, newest first."""
        out = []
        with self.store.read() as txn:
            cursor = txn.cursor(db=self._db["history"])
            # Position on the last key of this address: just before the first key past it.
            if cursor.set_range(address + b"\xff" * LOCATION.size):
                positioned = cursor.prev()
            else:
                positioned = cursor.last()
            for key, tx_id in (cursor.iterprev() if positioned else ()):
                if not key.startswith(address) or len(out) >= limit:
                    break
                out.append((LOCATION.unpack(key[len(address):]), tx_id))
        return out

