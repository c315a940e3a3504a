"""The deterministic DPoS rules (DESIGN §4) as pure integer functions: election, schedule,
rewards and slashing, finality and fork choice. No state, clock or floats."""

from chain.dpos.election import elect, rank_candidates
from chain.dpos.finality import fork_choice_key, last_irreversible, lib_threshold, missed_slots
from chain.dpos.rewards import slash, split_reward
from chain.dpos.shuffle import Prng, draw_weighted, round_order, shuffle

__all__ = [
    "Prng", "draw_weighted", "elect", "fork_choice_key", "last_irreversible", "lib_threshold",
    "missed_slots", "rank_candidates", "round_order", "shuffle", "slash", "split_reward",
]
