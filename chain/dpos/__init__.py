"""The deterministic DPoS rules (DESIGN §4) as pure integer functions: election, schedule,
rewards and slashing, finality and fork choice, reveal chains. No state, clock or floats."""

from chain.dpos.election import elect, rank_candidates
from chain.dpos.finality import (fork_choice_key, has_quorum, lib_threshold, missed_slots,
                                 vote_offence)
from chain.dpos.rewards import slash, split_reward
from chain.dpos.shuffle import Prng, draw_weighted, round_order, shuffle

__all__ = [
    "Prng", "draw_weighted", "elect", "fork_choice_key", "has_quorum", "lib_threshold",
    "missed_slots", "vote_offence", "rank_candidates", "round_order", "shuffle", "slash", "split_reward",
]
