"""Finality and fork choice (DESIGN §4, docs/protocol.md §13) as pure integer functions.

Finality follows Casper FFG with rounds as epochs. Each block of a member of the round's
producer set may carry one vote: a link from the latest justified checkpoint (``source``) to
the round's checkpoint (``target``). A link voted by 2/3+1 of every set the round's rule names
justifies its target; a justified link between consecutive rounds finalizes its source. Two
votes of one producer conflict (and are slashable) when they target the same round with
different checkpoints, or when one's span strictly surrounds the other's.
"""

HASH_SIZE = 32
DOUBLE_PRODUCTION, DOUBLE_VOTE, SURROUND_VOTE = 0, 1, 2


def _int(value, name, low):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def lib_threshold(n_producers: int) -> int:
    """Distinct producers of a set of ``n`` needed for a quorum: ``2n // 3 + 1`` (n >= 1)."""
    return 2 * _int(n_producers, "n_producers", 1) // 3 + 1


def has_quorum(voters, sets) -> bool:
    """True when ``voters`` hold 2/3+1 of every non-empty set in ``sets`` (and there is one)."""
    voters = set(voters)
    counted = [s for s in sets if s]
    return bool(counted) and all(len(voters & set(s)) >= lib_threshold(len(s)) for s in counted)


def vote_offence(first, second):
    """``DOUBLE_VOTE`` or ``SURROUND_VOTE`` when two votes ``(source_round, source_hash,
    target_round, target_hash)`` of one producer conflict, else None."""
    if first is None or second is None or tuple(first) == tuple(second):
        return None
    s1, _, t1, h1 = first
    s2, _, t2, h2 = second
    if t1 == t2:
        return DOUBLE_VOTE if h1 != h2 or s1 != s2 else None
    if (s1 < s2 and t2 < t1) or (s2 < s1 and t1 < t2):
        return SURROUND_VOTE
    return None


def missed_slots(parent_slot: int, slot: int, producer_for_slot, limit: int) -> list:
    """Producers of the slots strictly between ``parent_slot`` and ``slot``, in slot order, keeping
    only the last ``limit`` of those slots; ``producer_for_slot`` is called for those slots only."""
    _int(parent_slot, "parent_slot", 0)
    _int(limit, "limit", 0)
    if _int(slot, "slot", 0) <= parent_slot:
        raise ValueError(f"slot {slot} must be after parent_slot {parent_slot}")
    first = max(parent_slot + 1, slot - limit)
    return [producer_for_slot(s) for s in range(first, slot)]


def fork_choice_key(justified_round: int, height: int, slot: int, tip_hash: bytes) -> tuple:
    """Sort key whose maximum is the preferred tip: the tip whose chain justified the latest
    round; then the greater height; then the tip made in the earlier slot (the block most
    nodes saw first); then the lower 32-byte hash."""
    _int(justified_round, "justified_round", 0)
    _int(height, "height", 0)
    _int(slot, "slot", 0)
    if len(tip_hash) != HASH_SIZE:
        raise ValueError(f"tip_hash must be {HASH_SIZE} bytes")
    return justified_round, height, -slot, -int.from_bytes(tip_hash, "big")
