"""Finality and fork choice (DESIGN §4): the Graphene/EOS 2/3+1 LIB rule, missed slots, tip order."""

HASH_SIZE = 32


def _int(value, name, low):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def lib_threshold(n_producers: int) -> int:
    """Distinct producers needed to make a block irreversible: ``2n // 3 + 1`` (n >= 1)."""
    return 2 * _int(n_producers, "n_producers", 1) // 3 + 1


def last_irreversible(chain, n_producers, current_lib_height) -> int:
    """The highest height whose block, together with the blocks above it up to the head, was
    produced by at least ``lib_threshold(n_producers)`` distinct producers; ``chain`` is the list
    of (height, producer_pubkey) strictly above ``current_lib_height``, ascending. Returns
    ``current_lib_height`` when no such block exists (the LIB never goes back)."""
    threshold = lib_threshold(n_producers)
    _int(current_lib_height, "current_lib_height", 0)
    previous = current_lib_height
    for height, _ in chain:
        if _int(height, "height", 0) <= previous:
            raise ValueError("chain heights must ascend strictly above current_lib_height")
        previous = height
    seen = set()
    for height, producer in reversed(chain):
        seen.add(producer)
        if len(seen) >= threshold:
            return height
    return current_lib_height


def missed_slots(parent_slot: int, slot: int, producer_for_slot, limit: int) -> list:
    """Producers of the slots strictly between ``parent_slot`` and ``slot``, in slot order, keeping
    only the last ``limit`` of those slots; ``producer_for_slot`` is called for those slots only."""
    _int(parent_slot, "parent_slot", 0)
    _int(limit, "limit", 0)
    if _int(slot, "slot", 0) <= parent_slot:
        raise ValueError(f"slot {slot} must be after parent_slot {parent_slot}")
    first = max(parent_slot + 1, slot - limit)
    return [producer_for_slot(s) for s in range(first, slot)]


def fork_choice_key(height: int, tip_hash: bytes) -> tuple:
    """Sort key whose maximum is the preferred tip: the greater height, then the lower 32-byte hash."""
    _int(height, "height", 0)
    if len(tip_hash) != HASH_SIZE:
        raise ValueError(f"tip_hash must be {HASH_SIZE} bytes")
    return height, -int.from_bytes(tip_hash, "big")
