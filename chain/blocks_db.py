"""Where the ledger keeps main-chain blocks: per-height records beside the state tree's versions.

The ``chain`` database is ordered by height (docs/protocol.md §10.2): version ``h`` of the state
tree (its nodes and root) and block ``h``'s own records share the prefix ``u64be(h)``, so
everything one block writes is appended at the end of one B-tree, touching a handful of pages.
The kinds (after the height):

    0x10  block hash || encoded header
    0x11  the block's body: the encoded block after its header (transactions, votes)
    0x12  encoded receipt list

No undo record is kept: taking a block back reads the prior values from the state tree's
versions (``SparseMerkleTree.diff``). When the state versions of a run of heights are pruned,
their block records move, in one batch, to ``blocks`` (same keys, densely appended): the pages
they shared with stale tree nodes are then freed whole instead of being rewritten. Fork blocks
live apart, in ``side`` (block hash -> u64be height || encoded block).
"""

import struct

from chain.state.smt import OWNER_KINDS, record_key
from edge._fast.codec_py import TAG_BLOCK

HEADER_KIND, BODY_KIND, RECEIPTS_KIND = range(OWNER_KINDS, OWNER_KINDS + 3)
BLOCK_KINDS = (HEADER_KIND, BODY_KIND, RECEIPTS_KIND)
HASH_SIZE = 32
U64 = struct.Struct(">Q")


class BlockRecords:
    """Main-chain blocks by height: recent ones in ``chain``, older ones in ``archive``."""

    def __init__(self, chain_db, archive_db):
        self.chain, self.archived = chain_db, archive_db

    def put(self, txn, block, receipts_bytes):
        """Append block ``h``'s header, body and receipts (after the state tree's version ``h``,
        which the same transaction wrote)."""
        h, header_bytes = block.height, block.header.encode()
        raw = block.encode()
        records = [(record_key(h, HEADER_KIND), block.hash + header_bytes),
                   (record_key(h, BODY_KIND), raw[1 + len(header_bytes):]),
                   (record_key(h, RECEIPTS_KIND), receipts_bytes)]
        if txn.cursor(db=self.chain).putmulti(records, append=True)[1] != len(records):
            raise ValueError(f"records of height {h} or above already exist: the chain "
                             "database is damaged")

    def delete(self, txn, height):
        """Drop block ``height``'s records (it is being taken back)."""
        for kind in BLOCK_KINDS:
            txn.delete(record_key(height, kind), db=self.chain)

    def archive(self, txn, first, last):
        """Move the blocks of heights ``first..last`` to the archive (their state versions are
        being pruned: no reorganisation reaches them)."""
        moved = []
        for height in range(first, last + 1):
            for kind in BLOCK_KINDS:
                key = record_key(height, kind)
                value = txn.get(key, db=self.chain)
                if value is not None:
                    moved.append((key, value))
                    txn.delete(key, db=self.chain)
        txn.cursor(db=self.archived).putmulti(moved, append=True)

    def hash_at(self, txn, height):
        """The hash of the main-chain block at ``height``, or None."""
        raw = self._get(txn, height, HEADER_KIND)
        return raw[:HASH_SIZE] if raw is not None else None

    def header_at(self, txn, height):
        """The encoded header of the main-chain block at ``height``, or None."""
        raw = self._get(txn, height, HEADER_KIND)
        return raw[HASH_SIZE:] if raw is not None else None

    def block_at(self, txn, height):
        """The encoded main-chain block at ``height``, or None."""
        header = self.header_at(txn, height)
        if header is None:
            return None
        return bytes((TAG_BLOCK,)) + header + self._get(txn, height, BODY_KIND)

    def receipts_at(self, txn, height):
        return self._get(txn, height, RECEIPTS_KIND)

    def head_height(self, txn):
        """The height of the newest record (the head block's), or None when there is none."""
        cursor = txn.cursor(db=self.chain)
        return U64.unpack(cursor.key()[:8])[0] if cursor.last() else None

    def _get(self, txn, height, kind):
        key = record_key(height, kind)
        value = txn.get(key, db=self.chain)
        return value if value is not None else txn.get(key, db=self.archived)
