"""Consensus parameters, all set in genesis (DESIGN §4). Integers only."""

from typing import NamedTuple

from edge._fast import DecodeError
from edge._fast.codec_py import Reader, encode_uvarint

from chain.block_limits import FRAME_OVERHEAD
from chain.p2p.frames import MAX_FRAME_CEILING
from chain.p2p.messages import MAX_TX

SSP_SUPPLY = 1_000_000_000  # whole SSP, fixed for ever
MAX_HEAVY_WINDOW = 1000     # nodes keep heavy_window + 1 state versions at least (chain/ledger.py)

# Contract time on the slowest node (docs/protocol.md §14.3): bench/contracts.py finds the slowest
# work per gas W (about 26 ns here), taken 5x slower on a Pi-class CPU. A transaction's gas must
# run there within a quarter of the slot and a block's within half:
# gas ≤ slot_ms × 10^6 / (4 × 5 × W) per transaction and ≤ slot_ms × 10^6 / (2 × 5 × W) per block.
# These hold for any W up to 50 ns/gas (a margin of about 2x over the measured worst case).
GAS_PER_SLOT_MS_TX = 1_000
GAS_PER_SLOT_MS_BLOCK = 2_000


class Params(NamedTuple):
    """Chain-wide rules; ``encode`` fixes their order for the genesis hash."""
    slot_ms: int = 1000
    producers_per_round: int = 1
    max_votes: int = 30
    unbonding_blocks: int = 20
    min_fee: int = 1000
    fee_per_byte: int = 10
    max_tx_bytes: int = 2048
    max_block_txs: int = 5000
    agent_min_stake: int = 1_000_000 * 10**8
    block_reward: int = 10 * 10**8
    max_unbonding_entries: int = 16
    standby_slots: int = 1
    voter_share_permille: int = 500
    max_missed_in_a_row: int = 12
    jail_blocks: int = 100
    slash_permille: int = 100
    reporter_permille: int = 100
    gas_price: int = 1
    max_gas_per_tx: int = 1_000_000
    max_code_bytes: int = 8192
    evidence_window: int = 20
    max_block_bytes: int = 1 << 20
    max_block_gas: int = 2_000_000
    epoch_blocks: int = 100
    participation_cap: int = 1_000 * 10**8
    participation_agent_permille: int = 200
    heavy_gas: int = 0            # 0: no call is heavy
    heavy_load_gas: int = 1_000_000
    heavy_window: int = 20

    def encode(self):
        return encode_uvarint(len(self)) + b"".join(encode_uvarint(v) for v in self)

    @classmethod
    def read(cls, r: Reader):
        n = r.uvarint("params.count")
        if n != len(cls._fields):
            raise DecodeError("params.count", f"expected {len(cls._fields)} parameters, got {n}")
        return cls(*(r.uvarint(f"params.{name}") for name in cls._fields))

    def min_fee_for(self, tx_size, gas_limit=0):
        """The smallest fee a transaction of ``tx_size`` bytes may pay (contract transactions
        also pay for all the gas they may burn)."""
        return self.min_fee + self.fee_per_byte * tx_size + self.gas_price * gas_limit

    def problems(self):
        """Sentences describing impossible values (empty when fine)."""
        out = []
        for name in ("slot_ms", "producers_per_round", "max_tx_bytes", "max_block_txs"):
            if getattr(self, name) <= 0:
                out.append(f"params.{name} must be positive")
        if self.max_votes > 64:
            out.append("params.max_votes must be at most 64 (the wire limit)")
        if self.max_block_txs > 65535:
            out.append("params.max_block_txs must be at most 65535 (the wire limit)")
        if self.max_unbonding_entries > 64:
            out.append("params.max_unbonding_entries must be at most 64")
        if self.epoch_blocks <= 0:
            out.append("params.epoch_blocks must be positive")
        if self.heavy_load_gas <= 0:
            out.append("params.heavy_load_gas must be positive")
        if not 0 < self.heavy_window <= MAX_HEAVY_WINDOW:
            out.append(f"params.heavy_window must be 1..{MAX_HEAVY_WINDOW} (nodes keep that "
                       "many state versions to check heavy results)")
        elif self.heavy_window < self.round_length():
            out.append("params.heavy_window must be at least a round (producers_per_round + "
                       "standby_slots), so that another producer can carry the evidence")
        for name in ("voter_share_permille", "slash_permille", "reporter_permille",
                     "participation_agent_permille"):
            if getattr(self, name) > 1000:
                out.append(f"params.{name} must be at most 1000")
        if self.max_missed_in_a_row <= 0:
            out.append("params.max_missed_in_a_row must be positive")
        if self.max_code_bytes > 12288:
            out.append("params.max_code_bytes must be at most 12288 (the wire limit)")
        if self.evidence_window <= 0:
            out.append("params.evidence_window must be positive")
        if self.unbonding_blocks < self.heavy_window:
            out.append("params.unbonding_blocks must be at least params.heavy_window, so that "
                       "a wrong heavy result's evidence reaches stake on its way out")
        if self.unbonding_blocks < self.evidence_window:
            out.append("params.unbonding_blocks must be at least params.evidence_window, so "
                       "that evidence reaches stake on its way out")
        if self.producers_per_round + self.standby_slots > 255:
            out.append("params.producers_per_round + standby_slots must be at most 255")
        return out + self.block_problems()

    def block_problems(self):
        """What keeps blocks from fitting the wire or their slot (docs/protocol.md §9, §14.3)."""
        out = []
        if self.max_tx_bytes + self.max_code_bytes > MAX_TX:
            out.append(f"params.max_tx_bytes + max_code_bytes must be at most {MAX_TX} (the "
                       "largest transaction a p2p message carries)")
        smallest = self.max_tx_bytes + self.max_code_bytes + 16 * 1024
        if not smallest <= self.max_block_bytes <= MAX_FRAME_CEILING - FRAME_OVERHEAD:
            out.append(f"params.max_block_bytes must be {smallest}..{MAX_FRAME_CEILING - FRAME_OVERHEAD}"
                       " (a maximum-size transaction with a header and votes; a p2p frame)")
        if not 0 < self.max_gas_per_tx <= self.max_block_gas:
            out.append("params.max_gas_per_tx must be positive and at most params.max_block_gas")
        if self.max_gas_per_tx > self.slot_ms * GAS_PER_SLOT_MS_TX:
            out.append(f"params.max_gas_per_tx must be at most slot_ms × {GAS_PER_SLOT_MS_TX} "
                       f"= {self.slot_ms * GAS_PER_SLOT_MS_TX} (a quarter slot on a Pi-class CPU)")
        if self.max_block_gas > self.slot_ms * GAS_PER_SLOT_MS_BLOCK:
            out.append(f"params.max_block_gas must be at most slot_ms × {GAS_PER_SLOT_MS_BLOCK} "
                       f"= {self.slot_ms * GAS_PER_SLOT_MS_BLOCK} (half a slot on a Pi-class CPU)")
        return out

    def round_length(self):
        """Slots in a full round: the elected producers plus the standby slots."""
        return self.producers_per_round + self.standby_slots

