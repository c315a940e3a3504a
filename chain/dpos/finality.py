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
    """The highest height confirmed by at least ``lib_threshold(n_producers)`` distinct
    producers; everything below it is irreversible too.

    ``chain`` lists the blocks strictly above ``current_lib_height``, ascending, as
    ``(height, producer)`` or ``(height, producer, confirmed_from)``: a block confirms the
    heights ``confirmed_from + 1 .. height`` of its chain (``confirmed_from`` 0 when absent: all
    its ancestors, the plain Graphene count). An honest producer never confirms a height twice,
    on any fork, so two conflicting blocks can never both gather 2/3+1 confirmations at one
    height. Returns ``current_lib_height`` when nothing new qualifies (the LIB never goes back).
    """
    threshold = lib_threshold(n_producers)
    _int(current_lib_height, "current_lib_height", 0)
    previous = current_lib_height
    confirmers = {}
    for block in chain:
        height, producer = block[0], block[1]
        if _int(height, "height", 0) <= previous:
            raise ValueError("chain heights must ascend strictly above current_lib_height")
        previous = height
        low = max(current_lib_height, _int(block[2] if len(block) > 2 else 0, "confirmed_from", 0))
        for confirmed in range(low + 1, height + 1):
            confirmers.setdefault(confirmed, set()).add(producer)
    final = [h for h, who in confirmers.items() if len(who) >= threshold]
    return max(final, default=current_lib_height)


def missed_slots(parent_slot: int, slot: int, producer_for_slot, limit: int) -> list:
    """Producers of the slots strictly between ``parent_slot`` and ``slot``, in slot order, keeping
    only the last ``limit`` of those slots; ``producer_for_slot`` is called for those slots only."""
    _int(parent_slot, "parent_slot", 0)
    _int(limit, "limit", 0)
    if _int(slot, "slot", 0) <= parent_slot:
        raise ValueError(f"slot {slot} must be after parent_slot {parent_slot}")
    first = max(parent_slot + 1, slot - limit)
    return [producer_for_slot(s) for s in range(first, slot)]


def fork_choice_key(height: int, slot: int, tip_hash: bytes) -> tuple:
    """Sort key whose maximum is the preferred tip: the greater height; at equal height the tip
    made in the earlier slot (the block most nodes saw first); then the lower 32-byte hash."""
    _int(height, "height", 0)
    _int(slot, "slot", 0)
    if len(tip_hash) != HASH_SIZE:
        raise ValueError(f"tip_hash must be {HASH_SIZE} bytes")
    return height, -slot, -int.from_bytes(tip_hash, "big")
