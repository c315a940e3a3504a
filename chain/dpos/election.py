"""Producer election (DESIGN §4): the top N candidates by stake-weighted votes, ties by id."""


def _votes(value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"votes must be an int, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"votes must be >= 0, got {value}")
    return value


def rank_candidates(candidates) -> list:
    """Addresses of ``candidates`` ((address: bytes, votes: int) pairs) by votes descending,
    ties broken by address ascending. Zero-vote candidates still rank; a repeated address is
    a ValueError."""
    pairs = [(address, _votes(votes)) for address, votes in candidates]
    if len({address for address, _ in pairs}) != len(pairs):
        raise ValueError("a candidate address appears more than once")
    return [address for address, _ in sorted(pairs, key=lambda p: (-p[1], p[0]))]


def elect(candidates, n) -> tuple[list, list]:
    """(the top ``n`` addresses as producers, the remaining addresses as standby, in rank order)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    ranked = rank_candidates(candidates)
    return ranked[:n], ranked[n:]
