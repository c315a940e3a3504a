"""Why a transaction or block is refused: stable reason codes with a human sentence."""

from enum import Enum


class Reason(str, Enum):
    """Stable, machine-readable rejection codes (API, CLI --json and receipts use them)."""

    MALFORMED = "malformed"
    OVERSIZE = "oversize"
    WRONG_CHAIN = "wrong_chain"
    BAD_SIGNATURE = "bad_signature"
    FEE_TOO_LOW = "fee_too_low"
    BAD_NONCE = "bad_nonce"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    INSUFFICIENT_STAKE = "insufficient_stake"
    INVALID_AMOUNT = "invalid_amount"
    TOO_MANY_VOTES = "too_many_votes"
    UNKNOWN_CANDIDATE = "unknown_candidate"
    ALREADY_AGENT = "already_agent"
    NOT_AN_AGENT = "not_an_agent"
    INVALID_NAME = "invalid_name"
    TOO_MANY_UNBONDING = "too_many_unbonding"
    NOT_JAILED = "not_jailed"
    STILL_JAILED = "still_jailed"
    INVALID_EVIDENCE = "invalid_evidence"
    DUPLICATE_EVIDENCE = "duplicate_evidence"
    INVALID_GAS = "invalid_gas"
    PRODUCER_IN_USE = "producer_in_use"
    BAD_BINDING = "bad_binding"
    DUPLICATE = "duplicate"
    MEMPOOL_FULL = "mempool_full"
    VM_LIMIT = "vm_limit"


class TxRejected(Exception):
    """A transaction is invalid here and now; ``reason`` is a Reason, ``detail`` a sentence."""

    def __init__(self, reason: Reason, detail: str):
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class BlockRejected(Exception):
    """A block breaks a consensus rule; nothing of it was applied."""


class StaleBlock(BlockRejected):
    """A block that may be valid but is of no use here: it forks below the last irreversible
    block or runs too far ahead. Its sender is not to blame (it may simply lag behind)."""
