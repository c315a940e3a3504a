"""How much a block may hold: bytes and gas (genesis ``max_block_bytes``, ``max_block_gas``), and
the p2p sizes derived from them (docs/protocol.md §9, §12.1).

A valid block's encoding is at most ``max_block_bytes`` and the gas limits of its contract
transactions add up to at most ``max_block_gas``. Every p2p frame is sized from the same
parameters (``frame_limit``), so any valid block can be gossiped and synced, and one
maximum-size transaction always fits.
"""

from edge._fast.codec_py import encode_uvarint

from chain.errors import BlockRejected
from chain.tx import Evidence

FRAME_OVERHEAD = 1024          # message type, counts and lengths around the largest item
MIN_FRAME = 128 * 1024         # a proof (value, proof, header) and a transaction always fit
HEADER_SLACK = 32              # the header's varints may grow between the draft and the end


def tx_gas(tx, params):
    """The gas a transaction may burn: its limit; for evidence against a heavy result, which
    re-runs a call, ``max_gas_per_tx`` (no call's limit is above it); else 0."""
    payload = tx.payload
    if isinstance(payload, Evidence) and payload.against_heavy:
        return params.max_gas_per_tx
    return getattr(payload, "gas_limit", 0)


def frame_limit(params):
    """The largest p2p message (plaintext of one frame) on a chain with ``params``."""
    return max(params.max_block_bytes, MIN_FRAME) + FRAME_OVERHEAD


def check_block(block, params):
    """BlockRejected unless ``block`` is within the block byte and gas limits."""
    size = len(block.encode())
    if size > params.max_block_bytes:
        raise BlockRejected(f"block is {size} bytes, the limit is {params.max_block_bytes}")
    gas = sum(tx_gas(tx, params) for tx in block.txs)
    if gas > params.max_block_gas:
        raise BlockRejected(f"block transactions may burn {gas} gas, the limit is "
                            f"{params.max_block_gas}")


class BlockBudget:
    """What is left of a block being built: bytes (around the header and votes already chosen)
    and gas. ``take(tx)`` is False (and takes nothing) when ``tx`` does not fit."""

    def __init__(self, params, draft_header, votes):
        fixed = (1 + len(draft_header.encode()) + HEADER_SLACK + 3
                 + len(encode_uvarint(len(votes)))
                 + sum(len(v) + len(encode_uvarint(len(v))) for v in (x.encode() for x in votes)))
        self.bytes = params.max_block_bytes - fixed
        self.gas = params.max_block_gas
        self.params = params

    def take(self, tx):
        size, gas = len(tx.raw), tx_gas(tx, self.params)
        if size > self.bytes or gas > self.gas:
            return False
        self.bytes -= size
        self.gas -= gas
        return True

    def give_back(self, tx):
        """Return what ``take`` took (the transaction was rejected after all)."""
        self.bytes += len(tx.raw)
        self.gas += tx_gas(tx, self.params)
