"""The chain on disk: genesis, block application and fork choice, and queries.

Every change goes through a ``ChainWriter`` inside one LMDB write transaction: a block with its
receipts, indexes, state changes and SMT version, or a whole reorganisation, commits together or
not at all. Restart resumes from the newest block in the ``chain`` database (docs/protocol.md §9,
§10.2). Blocks are found by height; by hash, the recent ones (a bounded map) and fork blocks.
"""

from collections import OrderedDict
from functools import partial

from chain import flat_state, heavy
from chain.blocks_db import BlockRecords
from chain.block import NO_PRODUCER, NO_SIGNATURE, ZERO_HASH, Block, Header, decode_receipts
from chain.dpos.finality import fork_choice_key
from chain.dpos.rounds import schedule_at
from chain.errors import BlockRejected, StaleBlock
from chain.genesis import apply_genesis
from chain.state.records import Account, account_key
from chain.state.smt import SparseMerkleTree, StateError
from chain.state.view import StateView
from chain.store import DEFAULT_PRUNE_DEPTH
from chain.writer import LOCATION, U64, ChainWriter
from edge._fast.codec_py import HEADER_VERSION

MAX_FORK_AHEAD = 1000
DBS = ("meta", "chain", "blocks", "side", "txs", "history", "mempool")
# The storage layout this code reads (meta b"layout"); older data folders are refused.
# 2: the height-ordered chain database; 3: device frames in one log (edge/mqtt/devices.py);
# 4: the flat state in the main database (chain/flat_state.py); 5: no stale lists nor undo
# records (derived from the state tree's versions, chain/state/smt.py ``diff``); 6: tree nodes
# keyed by their index in their version, not their hash (13-byte keys: two B-tree levels hold an
# idle gateway's whole chain database).
LAYOUT = 6


class VerifiedSignatures:
    """Transaction signatures already checked (at admission to the mempool), so a block that
    carries them need not check them again. Keyed by id and signature; bounded, oldest out."""

    LIMIT = 200_000

    def __init__(self):
        self._items = OrderedDict()

    def add(self, txs):
        for tx in txs:
            self._items[tx.id + tx.signature] = None
        while len(self._items) > self.LIMIT:
            self._items.popitem(last=False)

    def __contains__(self, tx):
        return tx.id + tx.signature in self._items


class RecentHashes:
    """Block hash -> height of recent main-chain blocks (and of heights recently looked up):
    the chain database is ordered by height and keeps no hash index (docs/protocol.md §10.2).
    Bounded, least recently used out."""

    LIMIT = 1 << 16

    def __init__(self):
        self._items = OrderedDict()

    def add(self, block_hash, height):
        self._items[block_hash] = height
        self._items.move_to_end(block_hash)
        while len(self._items) > self.LIMIT:
            self._items.popitem(last=False)

    def discard(self, block_hash):
        self._items.pop(block_hash, None)

    def get(self, block_hash):
        return self._items.get(block_hash)


class LedgerError(Exception):
    """The data directory does not fit this genesis, or is damaged."""


class AddResult:
    """What happened to a block from the network: ``status`` is ``applied``, ``reorganised``,
    ``stored`` (a fork that does not win, yet), ``known`` or ``orphan`` (its parent is unknown);
    ``applied`` lists the blocks now on the main chain, ``undone`` the transactions of blocks a
    reorganisation took back."""

    def __init__(self, status, applied=(), undone=()):
        self.status, self.applied, self.undone = status, list(applied), list(undone)


class Ledger:
    """Validated chain state over a Store, with fork choice above the last irreversible block."""

    def __init__(self, store, genesis, prune_depth=DEFAULT_PRUNE_DEPTH):
        self.store = store
        self.genesis = genesis
        self.params = genesis.params
        self.chain_id = genesis.chain_id
        # Heavy-result evidence re-runs calls on state versions up to heavy_window old.
        self.prune_depth = max(prune_depth, genesis.params.heavy_window + 1)
        self.heavy_runner = heavy.run   # what runs heavy calls this node's blocks carry
        self.main = store.main     # the flat state (chain/flat_state.py)
        self.smt = SparseMerkleTree(store.db("chain"))
        self.db = {name: store.db(name) for name in DBS}
        self.blocks = BlockRecords(self.db["chain"], self.db["blocks"])
        self.verified = VerifiedSignatures()
        self.hashes = RecentHashes()
        self.head, self.lib_height = self._open()

    # -- opening --------------------------------------------------------------------------------

    def _open(self):
        with self.store.read() as txn:
            stored = txn.get(b"genesis", db=self.db["meta"])
            layout = txn.get(b"layout", db=self.db["meta"])
        if stored is None:
            self.store.write(self._write_genesis)
        elif stored != self.genesis.hash:
            raise LedgerError(f"the data in {self.store.path} belongs to another genesis "
                              f"(stored {stored.hex()[:16]}, this one {self.genesis.hash.hex()[:16]})")
        elif layout != U64.pack(LAYOUT):
            raise LedgerError(f"the data in {self.store.path} was written by an older version "
                              "(another storage layout): move that folder aside and start the "
                              "node again to sync the chain afresh")
        with self.store.read() as txn:
            height = self.blocks.head_height(txn)
            raw = self.blocks.header_at(txn, height) if height is not None else None
            lib = txn.get(b"lib", db=self.db["meta"])
            if raw is None:
                raise LedgerError(f"the data in {self.store.path} has no head block: damaged "
                                  "store")
            for h in range(max(0, height - 4096), height + 1):
                block_hash = self.blocks.hash_at(txn, h)
                if block_hash is not None:  # a promoted node has nothing below its first block
                    self.hashes.add(block_hash, h)
        head = Header.decode(raw)
        return head, max(head.lib_height, U64.unpack(lib)[0] if lib else 0)

    def _write_genesis(self, txn):
        view = StateView(lambda key: None)
        apply_genesis(view, self.genesis)
        root = self.smt.update(txn, None, 0, view.changes)
        header = Header(HEADER_VERSION, 0, self.genesis.hash, self.genesis.genesis_time_ms, 0,
                        NO_PRODUCER, ZERO_HASH, None, 0, 0, ZERO_HASH, ZERO_HASH, root,
                        ZERO_HASH, NO_SIGNATURE)
        writer = ChainWriter(self, txn, header, 0)
        writer.write_block(Block(header, []), [], view.changes)
        txn.put(b"genesis", self.genesis.hash, db=self.db["meta"])
        txn.put(b"layout", U64.pack(LAYOUT), db=self.db["meta"])
        txn.put(b"lib", U64.pack(0), db=self.db["meta"])

    # -- changing the chain ---------------------------------------------------------------------

    def _write(self, work, commit=True):
        """Run ``work(writer)`` in one write transaction; adopt its tip when it commits."""
        def run(txn):
            writer = ChainWriter(self, txn, self.head, self.lib_height)
            return writer, work(writer)
        writer, result = self.store.write(run, commit=commit)
        if commit:
            self.head, self.lib_height = writer.head, writer.lib_height
            for block_hash in writer.taken_back:
                self.hashes.discard(block_hash)
            for block in writer.applied:
                self.hashes.add(block.hash, block.height)
        return writer, result

    def apply_block(self, block, now_ms=None):
        """Validate ``block`` fully on top of the head and commit it; returns its receipts.
        Raises BlockRejected (nothing written) when any rule fails."""
        return self._write(lambda writer: writer.extend(block, now_ms))[1]

    def add_block(self, block, now_ms=None):
        """Take a block from the network: extend the head, keep it as a fork, or switch to the
        fork it completes when that fork is preferred (the latest justified round, then the
        longest, then the earliest slot, then the lowest hash; docs/protocol.md §13). Raises
        BlockRejected when it is invalid (nothing written)."""
        block_hash = block.hash
        with self.store.read() as txn:
            if self._known(txn, block_hash, block.height):
                return AddResult("known")
            parent = self._known(txn, block.header.prev_hash, block.height - 1)
        if block.header.prev_hash == self.head.hash:
            self.apply_block(block, now_ms)
            return AddResult("applied", [block])
        if not parent:
            return AddResult("orphan")
        self._check_side_block(block)
        head = self.head
        if (fork_choice_key(block.header.justified_round, block.height, block.header.slot,
                            block_hash)
                <= fork_choice_key(head.justified_round, head.height, head.slot, head.hash)):
            self._write(lambda writer: writer.store_side(block))
            return AddResult("stored")
        writer, _ = self._write(lambda w: (w.store_side(block), w.reorganise(block_hash, now_ms)))
        return AddResult("reorganised", writer.applied, writer.undone)

    def _known(self, txn, block_hash, height):
        """Whether block ``block_hash`` (at ``height``) is stored, on the main chain or a fork."""
        return (height >= 0 and self.blocks.hash_at(txn, height) == block_hash
                or txn.get(block_hash, db=self.db["side"]) is not None)

    def _check_side_block(self, block):
        """Cheap checks before a fork block is stored: it must fork above the LIB, not run far
        ahead, be signed by its producer, and that producer must be an agent."""
        header = block.header
        if header.height <= self.lib_height:
            raise StaleBlock("the block forks below the last irreversible block")
        if header.height > self.head.height + MAX_FORK_AHEAD:
            raise StaleBlock("the block is too far ahead of the head")
        if not header.signature_valid(self.chain_id):
            raise BlockRejected("bad producer signature")
        with self.store.read() as txn:
            if self.view(txn).owner_of(header.producer) is None:
                raise BlockRejected("the block's producer key belongs to no agent")

    # -- producing ------------------------------------------------------------------------------

    def slot_time_ms(self, slot):
        return self.genesis.genesis_time_ms + slot * self.params.slot_ms

    def slot_at(self, now_ms):
        return max(0, (now_ms - self.genesis.genesis_time_ms) // self.params.slot_ms)

    def producer_for(self, slot):
        """The public key scheduled for ``slot`` on top of the head (the schedule of a later
        round is elected from the head's state)."""
        return self.schedule_for(slot).producer_for(slot)

    def schedule_for(self, slot):
        """The schedule of the round holding ``slot``, for a block on top of the head."""
        with self.store.read() as txn:
            return schedule_at(self.view(txn), self.params, slot)

    def build_block(self, signer, slot, candidates, votes=()):
        """Build and sign a block for ``slot`` from ``candidates`` (in order), skipping those
        that fail; returns ``(block, rejected)`` where rejected lists ``(tx, TxRejected)``.
        Nothing is written (apply_block may take the block later)."""
        block, rejected, *_ = self._write(
            lambda writer: writer.build(signer, slot, candidates, votes), commit=False)[1]
        return block, rejected

    def produce_block(self, signer, slot, candidates, votes=()):
        """Build this node's block for ``slot`` and commit it in the same transaction: the
        transactions are executed once, by the same rules that validate every block, and their
        signatures were checked when the mempool admitted them. ``signer`` is a
        chain.producer.BlockSigner; ``votes`` are others' finality votes it may carry.
        Returns ``(block, rejected)``."""
        def work(writer):
            block, rejected, receipts, view = writer.build(signer, slot, candidates, votes)
            writer.finish(block, receipts, view)
            return block, rejected
        return self._write(work)[1]

    def finality(self):
        """The head state's finality record (justified and finalized checkpoints, rule)."""
        with self.store.read() as txn:
            return self.view(txn).finality()

    # -- queries --------------------------------------------------------------------------------

    def account(self, address):
        with self.store.read() as txn:
            return self.view(txn).account(address)

    def view_agent(self, address):
        """The agent record of ``address`` at the head, or None."""
        with self.store.read() as txn:
            return self.view(txn).agent(address)

    def view(self, txn):
        """A read-only StateView of the latest committed state inside ``txn``."""
        return StateView(flat_state.reader(txn, self.main),
                         versions=lambda version: partial(self.smt.get, txn, version))

    def account_proof(self, address):
        """``(account, proof, header)``: the account at the head with its SMT proof."""
        with self.store.read() as txn:
            value, proof = self.smt.prove(txn, self.head.height, account_key(address))
        return (Account.decode(value) if value is not None else Account()), proof, self.head

    def block_hash_at(self, height):
        with self.store.read() as txn:
            block_hash = self.blocks.hash_at(txn, height)
        if block_hash is not None:
            self.hashes.add(block_hash, height)
        return block_hash

    def height_of(self, block_hash):
        """The height of a stored block known by hash (a recent or recently looked-up
        main-chain block, or a fork block), or None."""
        height = self.hashes.get(block_hash)
        if height is not None:
            return height
        with self.store.read() as txn:
            raw = txn.get(block_hash, db=self.db["side"])
        return U64.unpack(raw[:8])[0] if raw is not None else None

    def block_bytes_at(self, height):
        """The encoded main-chain block at ``height``, or None."""
        with self.store.read() as txn:
            return self.blocks.block_at(txn, height)

    def header_bytes_at(self, height):
        """The encoded header of the main-chain block at ``height``, or None."""
        with self.store.read() as txn:
            return self.blocks.header_at(txn, height)

    def receipts_at(self, height):
        """The receipts of the main-chain block at ``height``, or None."""
        with self.store.read() as txn:
            raw = self.blocks.receipts_at(txn, height)
        return decode_receipts(raw) if raw is not None else None

    def block_bytes(self, block_hash):
        """An encoded block by hash (see ``height_of``), or None."""
        with self.store.read() as txn:
            return self._by_hash(txn, block_hash, self.blocks.block_at, lambda raw: raw)

    def header_bytes(self, block_hash):
        with self.store.read() as txn:
            return self._by_hash(txn, block_hash, self.blocks.header_at,
                                 lambda raw: Block.decode(raw).header.encode())

    def block(self, block_hash):
        raw = self.block_bytes(block_hash)
        return Block.decode(raw) if raw is not None else None

    def receipts(self, block_hash):
        """The receipts of a main-chain block by hash, or None."""
        with self.store.read() as txn:
            height = self.hashes.get(block_hash)
            if height is None or self.blocks.hash_at(txn, height) != block_hash:
                return None
            raw = self.blocks.receipts_at(txn, height)
        return decode_receipts(raw) if raw is not None else None

    def _by_hash(self, txn, block_hash, read_main, from_side):
        height = self.hashes.get(block_hash)
        if height is not None and self.blocks.hash_at(txn, height) == block_hash:
            return read_main(txn, height)
        raw = txn.get(block_hash, db=self.db["side"])
        return from_side(raw[8:]) if raw is not None else None

    def state_proof(self, key, height):
        """``(value or None, proof, header)`` of state ``key`` at ``height`` (the head when the
        height is not on the main chain or its version was pruned)."""
        with self.store.read() as txn:
            header_raw = self.blocks.header_at(txn, height)
            header = Header.decode(header_raw) if header_raw else self.head
            try:
                value, proof = self.smt.prove(txn, header.height, key)
            except StateError:
                header = self.head
                value, proof = self.smt.prove(txn, header.height, key)
        return value, proof, header

    def tx_location(self, tx_id):
        """``(height, index)`` of a committed transaction, or None."""
        with self.store.read() as txn:
            raw = txn.get(tx_id, db=self.db["txs"])
        return LOCATION.unpack(raw) if raw is not None else None

    def committed_tx(self, tx_id):
        """``(tx, height, index, receipt)`` or None."""
        where = self.tx_location(tx_id)
        if where is None:
            return None
        height, index = where
        with self.store.read() as txn:
            raw = self.blocks.block_at(txn, height)
            receipts = self.blocks.receipts_at(txn, height)
        return Block.decode(raw).txs[index], height, index, decode_receipts(receipts)[index]

    def history(self, address, limit=50):
        """Ids of the newest ``limit`` committed transactions touching ``address``, newest first."""
        out = []
        with self.store.read() as txn:
            cursor = txn.cursor(db=self.db["history"])
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

