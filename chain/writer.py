"""Changing the chain inside one LMDB write transaction: extend, take back, reorganise.

A ``ChainWriter`` holds the transaction and the tip as it moves. Whatever it does commits
together or not at all, so a crash mid-reorganisation leaves the old chain intact. A block is
fully re-validated every time it is applied (DESIGN §4, docs/protocol.md §9).
"""

import struct
from functools import partial

from chain import crypto, flat_state
from chain.block_limits import BlockBudget, check_block
from chain.block import (ZERO_HASH, Block, Header, encode_receipts, receipts_root, tx_root,
                         votes_root)
from chain.dpos.rounds import apply_votes, expected_vote, schedule_at
from chain import heavy
from chain.errors import BlockRejected, Reason, StaleBlock, TxRejected
from chain.execute import (apply_heavy, apply_tx, begin_block, check_static, end_block,
                           execute_block)
from chain.light.entries import forget_justification, store_entries
from chain.state.smt import StateError
from chain.state.view import StateView
from chain.tx import HeavyResult, Transfer, Tx, compute_ids
from edge._fast.codec_py import HEADER_VERSION

U64 = struct.Struct(">Q")
LOCATION = struct.Struct(">QI")
RETURNED = U64.pack(0)  # the arrival seq of a transaction a reorganisation gave back
# Pruning runs once the versions to drop reach this many (docs/protocol.md §10.2): one batch
# frees whole pages at the old end of the chain database instead of touching them every block.
PRUNE_BATCH = 64


class ChainWriter:
    """One write transaction's worth of chain changes, starting from ``head`` and ``lib``."""

    def __init__(self, ledger, txn, head, lib_height):
        self.ledger, self.txn = ledger, txn
        self.db = ledger.db
        self.head, self.lib_height = head, lib_height
        self.undone = []  # transactions of blocks taken back, for the mempool
        self.applied = []  # blocks written, in order
        self.taken_back = []  # hashes of main-chain blocks taken back, newest first

    # -- extending ------------------------------------------------------------------------------

    def extend(self, block, now_ms=None):
        """Validate ``block`` on top of the tip and write it; returns its receipts."""
        ledger, header = self.ledger, block.header
        self.check_header(header, now_ms)
        check_block(block, ledger.params)
        signatures = self.check_txs(block.txs)
        if tx_root(block.txs) != header.tx_root:
            raise BlockRejected("tx_root does not match the transactions")
        if votes_root(block.votes) != header.votes_root:
            raise BlockRejected("votes_root does not match the votes")
        view = self.view()
        try:
            receipts = execute_block(view, block, self.head, ledger.params, ledger.chain_id)
        except TxRejected as exc:
            raise BlockRejected(f"invalid transaction in block: {exc}") from None
        finality = view.finality()
        if (header.justified_round, header.lib_height) != (finality.justified.round,
                                                            finality.finalized.height):
            raise BlockRejected(f"the header's finality (justified round {header.justified_round},"
                                f" lib {header.lib_height}) is not the executed state's "
                                f"({finality.justified.round}, {finality.finalized.height})")
        root = ledger.smt.update(self.txn, header.height - 1, header.height, view.changes)
        if root != header.state_root:
            raise BlockRejected(f"state_root {header.state_root.hex()[:16]} does not match the "
                                f"executed state {root.hex()[:16]}")
        if receipts_root(receipts) != header.receipts_root:
            raise BlockRejected("receipts_root does not match the executed receipts")
        self.finish(block, receipts, view)
        # Everything above overlapped the signature checks; only the commit waits for them.
        valid = signatures.result()
        if not all(valid):
            raise BlockRejected(f"bad signature on transaction {valid.index(False)}")
        return receipts

    def finish(self, block, receipts, view):
        """Write an executed block: the block, the state, the new LIB."""
        read = flat_state.reader(self.txn, self.ledger.main)
        changes = {key: value for key, value in view.changes.items() if value != read(key)}
        self.write_block(block, receipts, changes)
        self.applied.append(block)
        self.advance_lib(view.finality().finalized.height)

    # -- producing ------------------------------------------------------------------------------

    def build(self, signer, slot, candidates, votes=()):
        """Execute ``candidates`` (in order, skipping those that fail) into a block for
        ``slot`` on the tip, signed by ``signer`` (a chain.producer.BlockSigner): its reveal,
        its own finality vote when it may cast one, and the ``votes`` of others that count
        here. Returns ``(block, rejected, receipts, view)``; only the state tree's version is
        written yet (``finish`` writes the rest)."""
        ledger, head = self.ledger, self.head
        height = head.height + 1
        view = self.view()
        round_number = schedule_at(view, ledger.params, slot).round
        record = view.producer(signer.pubkey)
        if record is None:
            raise BlockRejected("this node's producer key belongs to no agent")
        reveal, renewal = signer.reveal_for(record.effective(round_number))
        draft = Header(HEADER_VERSION, height, head.hash, ledger.slot_time_ms(slot), slot,
                       signer.pubkey, reveal, renewal, 0, 0, ZERO_HASH, ZERO_HASH, ZERO_HASH,
                       ZERO_HASH)
        begin_block(view, ledger.params, draft, head)
        carried = self._choose_votes(view, signer, votes)
        apply_votes(view, carried, ledger.chain_id, height)
        included, receipts, rejected = [], [], []
        budget, deferred = BlockBudget(ledger.params, draft, carried), set()
        agent = heavy.mode(view, ledger.params) == heavy.AGENT
        for tx in candidates[:ledger.params.max_block_txs]:
            if tx.sender in deferred or not budget.take(tx):
                deferred.add(tx.sender)   # no room: it and its successors wait for a block
                continue
            pair = [tx]
            try:
                if agent and heavy.is_heavy(tx, ledger.params):
                    pair = self._with_result(view, tx, signer, draft, budget)
                    receipts += apply_heavy(view, tx, pair[1], ledger.params, draft)
                else:
                    receipts.append(apply_tx(view, tx, ledger.params, height, draft.timestamp_ms))
                included += pair
            except TxRejected as exc:
                for taken in pair:
                    budget.give_back(taken)
                rejected.append((tx, exc))
        end_block(view, ledger.params, signer.pubkey, included, receipts)
        root = ledger.smt.update(self.txn, height - 1, height, view.changes)
        finality = view.finality()
        header = draft._replace(justified_round=finality.justified.round,
                                lib_height=finality.finalized.height, tx_root=tx_root(included),
                                votes_root=votes_root(carried), state_root=root,
                                receipts_root=receipts_root(receipts))
        block = Block(header.signed_by(signer, ledger.chain_id), included, carried)
        return block, rejected, receipts, view

    def _with_result(self, view, tx, signer, draft, budget):
        """``[tx, the producer's HeavyResult of it]``, the result signed by ``signer`` (run by
        ``ledger.heavy_runner``); TxRejected when the result does not fit the block."""
        ledger = self.ledger
        if isinstance(tx.payload, HeavyResult):
            raise TxRejected(Reason.MALFORMED, "a heavy result is never sent")
        result = ledger.heavy_runner(StateView(view.base), tx, (draft.height, draft.timestamp_ms),
                                     ledger.params)
        result_tx = Tx(ledger.chain_id, signer.pubkey, 0, 0, result).signed_by(signer.keypair)
        if not budget.take(result_tx):
            raise TxRejected(Reason.OVERSIZE, "no room left for the heavy call's result")
        return [tx, result_tx]

    def _choose_votes(self, view, signer, offered):
        """The votes this block carries, sorted by producer: those ``offered`` for the round's
        link from members that have not voted yet, and the signer's own when it is a member and
        its record allows it (it never votes twice for one round nor surrounds an earlier
        vote; the vote is recorded before it is signed)."""
        info = view.round_info()
        link = expected_vote(info)
        if link is None:
            return []
        members, voted = set(info.members()), set(view.round_votes().voters)
        chosen = {v.producer: v for v in offered
                  if v.link == link and v.producer in members and v.producer not in voted}
        if (signer.pubkey in members and signer.pubkey not in voted
                and signer.pubkey not in chosen and signer.may_vote(link)):
            chosen[signer.pubkey] = signer.vote(link, self.ledger.chain_id)
        return [chosen[key] for key in sorted(chosen)]

    def view(self):
        """The tip's state (and its older versions, for heavy-result evidence)."""
        return StateView(flat_state.reader(self.txn, self.ledger.main),
                         versions=partial(_version_reader, self.ledger.smt, self.txn))

    def check_header(self, header, now_ms):
        head, ledger = self.head, self.ledger
        if header.version != HEADER_VERSION:
            raise BlockRejected(f"unsupported header version {header.version}")
        if header.height != head.height + 1:
            raise BlockRejected(f"height {header.height} does not follow the head {head.height}")
        if header.prev_hash != head.hash:
            raise BlockRejected("prev_hash is not the head block")
        if header.slot <= head.slot:
            raise BlockRejected(f"slot {header.slot} is not after the head's slot {head.slot}")
        expected_time = ledger.slot_time_ms(header.slot)
        if header.timestamp_ms != expected_time:
            raise BlockRejected(f"timestamp {header.timestamp_ms} is not slot {header.slot}'s "
                                f"start {expected_time}")
        if now_ms is not None and header.timestamp_ms > now_ms + ledger.params.slot_ms:
            raise BlockRejected("block is from the future")
        schedule = schedule_at(self.view(), ledger.params, header.slot)
        if header.producer != schedule.producer_for(header.slot):
            raise BlockRejected(f"slot {header.slot} belongs to another producer")
        if not header.signature_valid(ledger.chain_id):
            raise BlockRejected("bad producer signature")

    def check_txs(self, txs):
        """Stateless checks; returns the job checking the signatures, which runs meanwhile."""
        ledger = self.ledger
        if len(txs) > ledger.params.max_block_txs:
            raise BlockRejected(f"{len(txs)} transactions, at most {ledger.params.max_block_txs}")
        compute_ids(txs)
        if len({tx.id for tx in txs}) != len(txs):
            raise BlockRejected("a transaction appears twice")
        try:
            for tx in txs:
                check_static(tx, ledger.chain_id, ledger.params, in_block=True)
        except TxRejected as exc:
            raise BlockRejected(f"invalid transaction in block: {exc}") from None
        # Performance note: signatures checked when the mempool admitted them are not checked
        # again; the cache is keyed by id and signature, so nothing unverified slips through.
        unchecked = [tx for tx in txs if tx not in ledger.verified]
        return _Checked(txs, unchecked, crypto.start_verify_many(
            ledger.chain_id, [(tx.sender, tx.id, tx.signature) for tx in unchecked]))

    def write_block(self, block, receipts, changes):
        """The block, its indexes and its state changes, and the new head."""
        txn, db = self.txn, self.db
        self.ledger.blocks.put(txn, block, encode_receipts(receipts))
        txn.delete(block.hash, db=db["side"])
        tx_index, history = [], []
        for where, tx in self.locations(block):
            tx_index.append((tx.id, where))
            history.extend((address + where, tx.id) for address in touched(tx))
        if tx_index:
            txn.cursor(db=db["txs"]).putmulti(tx_index)
            txn.cursor(db=db["history"]).putmulti(history)
            if txn.stat(db["mempool"])["entries"]:
                for tx in block.txs:
                    txn.delete(tx.id, db=db["mempool"])
        flat_state.write(txn, self.ledger.main, changes)
        self.head = block.header

    def store_side(self, block):
        """Keep a fork block until it wins or falls below the LIB."""
        self.txn.put(block.hash, U64.pack(block.height) + block.encode(), db=self.db["side"])

    def locations(self, block):
        for index, tx in enumerate(block.txs):
            yield LOCATION.pack(block.height, index), tx

    # -- finality and pruning -------------------------------------------------------------------

    def advance_lib(self, finalized_height):
        """Move the last irreversible block up to the state's finalized checkpoint. The LIB
        never goes back. What only reverting below it would need (fork blocks, state versions
        beyond ``prune_depth``) is dropped in batches."""
        lib = finalized_height
        if lib <= self.lib_height:
            return
        self.lib_height = lib
        if self.txn.stat(self.db["side"])["entries"]:
            self.prune_side(lib)
        keep_from = min(lib, self.head.height - self.ledger.prune_depth)
        oldest = self.ledger.smt.versions(self.txn)[0]
        if keep_from - oldest >= PRUNE_BATCH:
            self.prune(oldest, keep_from)

    def prune(self, oldest, keep_from):
        """Drop the state versions below ``keep_from``, move their blocks to the archive, and
        keep the LIB (only reorganisations write it otherwise)."""
        store_entries(self, oldest, keep_from)  # light clients' finality entries (§13.7)
        self.ledger.smt.prune(self.txn, keep_from)
        self.ledger.blocks.archive(self.txn, oldest, keep_from - 1)
        self.txn.put(b"lib", U64.pack(self.lib_height), db=self.db["meta"])

    def prune_side(self, lib):
        """Drop side blocks at or below the LIB: no fork can ever need them."""
        cursor = self.txn.cursor(db=self.db["side"])
        for block_hash, value in list(cursor):
            if U64.unpack(value[:8])[0] <= lib:
                self.txn.delete(block_hash, db=self.db["side"])

    def header_at(self, height):
        """The header of the main-chain block at ``height`` (at or below the tip)."""
        return Header.decode(self.ledger.blocks.header_at(self.txn, height))

    def block_at(self, height):
        """The main-chain block at ``height`` (at or below the tip)."""
        return Block.decode(self.ledger.blocks.block_at(self.txn, height))

    # -- taking back and reorganising -----------------------------------------------------------

    def rollback_head(self):
        """Take the tip block back (it must be above the LIB); it becomes a side block. The
        flat state gets back the values the block changed, found by comparing its state
        version with the one before (pruning keeps every version from the LIB on)."""
        header, txn, db = self.head, self.txn, self.db
        h = header.height
        if h <= self.lib_height:
            raise BlockRejected(f"block {h} is irreversible")
        forget_justification(self, header)
        try:
            prior = self.ledger.smt.diff(txn, h - 1, h).prior
        except StateError as exc:
            raise StateError(f"block {h} cannot be taken back: {exc}") from None
        flat_state.write(txn, self.ledger.main, prior)
        block = self.block_at(h)
        self.ledger.smt.rollback(txn, h - 1)
        self.ledger.blocks.delete(txn, h)
        for where, tx in self.locations(block):
            txn.delete(tx.id, db=db["txs"])
            for address in touched(tx):
                txn.delete(address + where, db=db["history"])
        self.store_side(block)
        self.undone.extend(block.txs)
        self.taken_back.append(block.hash)
        # Back to the durable mempool in this same transaction, ahead of everything (arrival
        # seq 0): a crash right after a reorganisation loses none of them. A fork block that
        # carries one again deletes it in write_block.
        for tx in block.txs:
            txn.put(tx.id, RETURNED + tx.raw, db=db["mempool"])
        # The LIB is otherwise derived from the head's header: keep it as the head goes back.
        txn.put(b"lib", U64.pack(self.lib_height), db=db["meta"])
        self.head = self.header_at(h - 1)

    def reorganise(self, tip_hash, now_ms=None):
        """Switch to the fork ending at ``tip_hash``: take blocks back to the common ancestor
        (never at or below the LIB), then apply the fork's blocks in order."""
        fork = self.fork_to(tip_hash)
        ancestor_height = fork[0].height - 1
        if ancestor_height < self.lib_height:
            raise StaleBlock("the fork leaves the chain below the last irreversible block")
        while self.head.height > ancestor_height:
            self.rollback_head()
        for block in fork:
            self.extend(block, now_ms)

    def fork_to(self, tip_hash):
        """The side blocks from the main chain up to ``tip_hash``, oldest first."""
        fork, block_hash = [], tip_hash
        while True:
            raw = self.txn.get(block_hash, db=self.db["side"])
            if raw is None:
                if fork and self.ledger.blocks.hash_at(self.txn,
                                                       fork[-1].height - 1) == block_hash:
                    return list(reversed(fork))
                raise BlockRejected("a block of the fork is missing")
            block = Block.decode(raw[8:])
            fork.append(block)
            block_hash = block.header.prev_hash


def _version_reader(smt, txn, version):
    """A reader of state version ``version`` (kept for at least ``heavy_window`` blocks)."""
    return partial(smt.get, txn, version)


class _Checked:
    """The signature results of a block's transactions: cached ones are valid, the rest come
    from the verification job."""

    def __init__(self, txs, unchecked, job):
        self.txs, self.unchecked, self.job = txs, unchecked, job

    def result(self):
        bad = {tx.id for tx, ok in zip(self.unchecked, self.job.result()) if not ok}
        return [tx.id not in bad for tx in self.txs]


def touched(tx):
    """The addresses whose history lists ``tx``."""
    if isinstance(tx.payload, Transfer) and tx.payload.to != tx.sender_address:
        return (tx.sender_address, tx.payload.to)
    return (tx.sender_address,)
