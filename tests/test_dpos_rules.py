"""The pure DPoS rule functions (chain/dpos, DESIGN §4): election, PRNG and schedule, rewards,
slashing, finality and fork choice. Every random-looking input comes from a fixed seed."""

import ast
import hashlib
from collections import Counter
from itertools import permutations
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.crypto import hash_of
from chain.dpos import (Prng, draw_weighted, elect, fork_choice_key, has_quorum,
                        lib_threshold, missed_slots, rank_candidates, round_order, shuffle, slash,
                        split_reward, vote_offence)
from chain.dpos.finality import DOUBLE_VOTE, SURROUND_VOTE


def seed(i, label=b"seed"):
    """A fixed 32-byte seed number ``i``."""
    return hashlib.blake2b(label + i.to_bytes(8, "big"), digest_size=32).digest()


def addr(i):
    """A 20-byte address whose byte order follows ``i``."""
    return i.to_bytes(20, "big")


# -- the package stays pure ----------------------------------------------------------------------

def test_dpos_rules_import_only_hash_of_and_nothing_uses_floats():
    allowed = {"chain.crypto", "chain.dpos.election", "chain.dpos.finality", "chain.dpos.rewards",
               "chain.dpos.shuffle"}
    pure = {"__init__.py", "election.py", "finality.py", "rewards.py", "shuffle.py", "reveal.py"}
    for path in Path(__file__).resolve().parents[1].joinpath("chain", "dpos").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if path.name not in pure:  # rounds.py applies the rules to the state
                pass
            elif isinstance(node, ast.Import):
                raise AssertionError(f"{path.name} imports {[a.name for a in node.names]}")
            elif isinstance(node, ast.ImportFrom):
                assert node.module in allowed, f"{path.name} imports {node.module}"
                if node.module == "chain.crypto":
                    assert [a.name for a in node.names] == ["hash_of"]
            assert not (isinstance(node, ast.Constant) and isinstance(node.value, float)), path.name
            assert not isinstance(node.op if isinstance(node, ast.BinOp) else None, ast.Div), \
                f"{path.name} uses true division"
            assert not (isinstance(node, ast.Name) and node.id == "float"), path.name


# -- election ------------------------------------------------------------------------------------

def test_rank_by_votes_descending():
    cands = [(addr(1), 10), (addr(2), 30), (addr(3), 20)]
    assert rank_candidates(cands) == [addr(2), addr(3), addr(1)]


def test_rank_ties_broken_by_address_ascending_and_zero_votes_rank():
    cands = [(addr(9), 5), (addr(3), 5), (addr(7), 0), (addr(1), 0), (addr(5), 5)]
    assert rank_candidates(cands) == [addr(3), addr(5), addr(9), addr(1), addr(7)]
    assert rank_candidates(reversed(cands)) == rank_candidates(cands)


def test_rank_orders_addresses_bytewise():
    low, high = b"\x00" + b"\xff" * 19, b"\x01" + b"\x00" * 19
    assert rank_candidates([(high, 1), (low, 1)]) == [low, high]


def test_elect_splits_producers_and_standby():
    cands = [(addr(i), 100 - i) for i in range(10)]
    producers, standby = elect(cands, 3)
    assert producers == [addr(0), addr(1), addr(2)]
    assert standby == [addr(i) for i in range(3, 10)]


def test_elect_n_larger_than_candidates_and_empty_input():
    cands = [(addr(2), 1), (addr(1), 1)]
    assert elect(cands, 5) == ([addr(1), addr(2)], [])
    assert elect([], 3) == ([], [])
    assert rank_candidates([]) == []
    assert elect(cands, 0) == ([], [addr(1), addr(2)])


def test_election_rejects_bad_input():
    with pytest.raises(ValueError):
        rank_candidates([(addr(1), 1), (addr(1), 2)])
    with pytest.raises(ValueError):
        rank_candidates([(addr(1), -1)])
    with pytest.raises(TypeError):
        rank_candidates([(addr(1), 1.0)])
    with pytest.raises(ValueError):
        elect([(addr(1), 1)], -1)


# -- Prng ----------------------------------------------------------------------------------------

def test_prng_is_deterministic_per_seed():
    a, b = Prng(seed(1)), Prng(seed(1))
    assert [a.below(1000) for _ in range(200)] == [b.below(1000) for _ in range(200)]


def test_prng_different_seeds_differ():
    a, b = Prng(seed(1)), Prng(seed(2))
    assert [a.below(2**32) for _ in range(10)] != [b.below(2**32) for _ in range(10)]


def test_prng_stream_follows_the_spec():
    """below(n) reads ceil(bits/8) bytes of H("ss/prng", seed || u64be(i)) blocks, big-endian,
    keeps the low bits and rejects values >= n."""
    s = seed(7)
    stream = b"".join(hash_of(b"ss/prng", s + i.to_bytes(8, "big")) for i in range(4))
    prng = Prng(s)
    assert [prng.below(256) for _ in range(40)] == list(stream[:40])
    prng, expected, pos = Prng(s), [], 0
    while len(expected) < 50:  # below(5): 3 bits of each byte, 5..7 rejected
        value = stream[pos] & 7
        pos += 1
        if value < 5:
            expected.append(value)
    assert [prng.below(5) for _ in range(50)] == expected
    prng = Prng(s)
    assert prng.below(2**16) == int.from_bytes(stream[:2], "big")


def test_prng_below_range_and_uniformity():
    prng = Prng(seed(3))
    counts = Counter(prng.below(6) for _ in range(60_000))
    assert set(counts) == set(range(6))
    for value in range(6):
        assert 9_500 <= counts[value] <= 10_500, counts


def test_prng_below_large_n_stays_in_range():
    prng = Prng(seed(4))
    n = 2**200 + 12345
    draws = [prng.below(n) for _ in range(200)]
    assert all(0 <= d < n for d in draws)
    assert max(draws) > 2**199  # the high bits are used


def test_prng_below_edge_cases():
    prng = Prng(seed(5))
    assert [prng.below(1) for _ in range(10)] == [0] * 10
    with pytest.raises(ValueError):
        prng.below(0)
    with pytest.raises(ValueError):
        prng.below(-3)
    with pytest.raises(TypeError):
        prng.below(6.0)
    with pytest.raises(ValueError):
        Prng(b"short")


# -- shuffle -------------------------------------------------------------------------------------

def test_shuffle_is_a_deterministic_permutation_and_leaves_input_alone():
    items = [addr(i) for i in range(21)]
    out = shuffle(items, seed(1))
    assert sorted(out) == items and out != items
    assert items == [addr(i) for i in range(21)]
    assert shuffle(items, seed(1)) == out
    assert shuffle(items, seed(2)) != out
    assert shuffle([], seed(1)) == [] and shuffle(["x"], seed(1)) == ["x"]


def test_shuffle_orders_of_three_are_uniform():
    counts = Counter(tuple(shuffle("abc", seed(i))) for i in range(6_000))
    assert set(counts) == set(permutations("abc"))
    for order, count in counts.items():
        assert 850 <= count <= 1_150, counts


# -- draw_weighted -------------------------------------------------------------------------------

def test_draw_weighted_follows_weights():
    weighted = [("a", 1), ("b", 2), ("zero", 0), ("c", 7)]
    counts = Counter(draw_weighted(weighted, seed(i)) for i in range(10_000))
    assert "zero" not in counts and None not in counts
    for item, weight in (("a", 1), ("b", 2), ("c", 7)):
        assert abs(counts[item] * 100 - weight * 10_000 * 10) <= 2 * 10_000, counts


def test_draw_weighted_is_deterministic_and_handles_no_weight():
    weighted = [("a", 3), ("b", 5)]
    assert draw_weighted(weighted, seed(9)) == draw_weighted(weighted, seed(9))
    assert draw_weighted([("a", 0), ("b", 0)], seed(1)) is None
    assert draw_weighted([], seed(1)) is None
    assert all(draw_weighted([("a", 0), ("b", 4), ("c", 0)], seed(i)) == "b" for i in range(50))
    with pytest.raises(ValueError):
        draw_weighted([("a", -1), ("b", 2)], seed(1))


# -- round_order ---------------------------------------------------------------------------------

PRODUCERS = [addr(i) for i in range(1, 5)]
STANDBY = [(addr(10), 3), (addr(11), 1), (addr(12), 0)]


def test_round_order_has_every_producer_once_plus_one_standby():
    for i in range(200):
        order = round_order(PRODUCERS, STANDBY, seed(i), 1)
        assert len(order) == 5
        assert sorted(a for a in order if a in PRODUCERS) == PRODUCERS
        extra = [a for a in order if a not in PRODUCERS]
        assert len(extra) == 1 and extra[0] in (addr(10), addr(11))
        assert round_order(PRODUCERS, STANDBY, seed(i), 1) == order


def test_round_order_producer_part_is_the_shuffle():
    order = round_order(PRODUCERS, STANDBY, seed(3), 1)
    assert [a for a in order if a in PRODUCERS] == shuffle(PRODUCERS, seed(3))


def test_round_order_standby_frequency_and_position():
    picks, positions = Counter(), Counter()
    for i in range(10_000):
        order = round_order(PRODUCERS, STANDBY, seed(i, b"round"), 1)
        (pos, who), = [(p, a) for p, a in enumerate(order) if a not in PRODUCERS]
        picks[who] += 1
        positions[pos] += 1
    assert addr(12) not in picks
    assert abs(picks[addr(10)] - 7_500) <= 200 and abs(picks[addr(11)] - 2_500) <= 200, picks
    assert sorted(positions) == list(range(5))
    assert all(abs(count - 2_000) <= 200 for count in positions.values()), positions


def test_round_order_several_standby_slots_without_replacement():
    for i in range(100):
        order = round_order(PRODUCERS, STANDBY, seed(i), 2)
        assert len(order) == 6
        assert sorted(a for a in order if a not in PRODUCERS) == [addr(10), addr(11)]
    # only two standbys have votes: asking for five still adds two
    assert len(round_order(PRODUCERS, STANDBY, seed(1), 5)) == 6


def test_round_order_without_standby():
    for standby, slots in (([], 1), ([(addr(10), 0)], 1), (STANDBY, 0)):
        assert round_order(PRODUCERS, standby, seed(2), slots) == shuffle(PRODUCERS, seed(2))


def test_round_order_rejects_overlap_and_bad_slots():
    with pytest.raises(ValueError):
        round_order(PRODUCERS, [(PRODUCERS[0], 5)], seed(1), 1)
    with pytest.raises(ValueError):
        round_order(PRODUCERS, STANDBY, seed(1), -1)


# -- rewards and slashing ------------------------------------------------------------------------

def test_split_reward_examples():
    assert split_reward(1000, 500, [(b"a", 1), (b"b", 2)]) == (1000 - 166 - 333,
                                                               [(b"a", 166), (b"b", 333)])
    assert split_reward(1000, 0, [(b"a", 1)]) == (1000, [])
    assert split_reward(1000, 1000, [(b"a", 1)]) == (0, [(b"a", 1000)])
    assert split_reward(1000, 300, []) == (1000, [])
    assert split_reward(1000, 300, [(b"a", 0), (b"b", 0)]) == (1000, [])
    # pool 1: a gets 1*1//1001 = 0 (omitted), b gets 1*1000//1001 = 0 (omitted)
    assert split_reward(10, 100, [(b"a", 1), (b"b", 1000)]) == (10, [])


def test_split_reward_rejects_bad_input():
    with pytest.raises(ValueError):
        split_reward(-1, 100, [])
    with pytest.raises(ValueError):
        split_reward(10, 1001, [])
    with pytest.raises(ValueError):
        split_reward(10, 100, [(b"a", -5)])
    with pytest.raises(TypeError):
        split_reward(10.0, 100, [])


voters_st = st.lists(st.tuples(st.binary(min_size=20, max_size=20), st.integers(0, 10**20)),
                     max_size=30)


@settings(max_examples=300, deadline=None)
@given(reward=st.integers(0, 10**18), share=st.integers(0, 1000), voters=voters_st)
def test_split_reward_is_exact(reward, share, voters):
    producer, paid = split_reward(reward, share, voters)
    amounts = [producer] + [amount for _, amount in paid]
    assert all(type(a) is int and a >= 0 for a in amounts)
    assert sum(amounts) == reward
    assert all(amount > 0 for _, amount in paid)
    total = sum(stake for _, stake in voters)
    pool = reward * share // 1000
    expected = [(a, pool * s // total) for a, s in voters] if total else []
    assert paid == [(a, amount) for a, amount in expected if amount > 0]
    assert producer >= reward - pool


def test_slash_examples():
    assert slash(1_000_000, 100, 500) == (100_000, 50_000, 50_000)
    assert slash(999, 333, 333) == (332, 110, 222)
    assert slash(0, 1000, 1000) == (0, 0, 0)
    assert slash(12345, 1000, 0) == (12345, 0, 12345)
    with pytest.raises(ValueError):
        slash(100, 1001, 0)
    with pytest.raises(ValueError):
        slash(-1, 10, 0)


@given(stake=st.integers(0, 10**20), slash_pm=st.integers(0, 1000), rep_pm=st.integers(0, 1000))
def test_slash_is_exact(stake, slash_pm, rep_pm):
    slashed, to_reporter, to_pool = slash(stake, slash_pm, rep_pm)
    assert slashed == stake * slash_pm // 1000 <= stake
    assert to_reporter == slashed * rep_pm // 1000
    assert to_reporter + to_pool == slashed and min(to_reporter, to_pool) >= 0


# -- finality ------------------------------------------------------------------------------------

def test_lib_threshold():
    assert [lib_threshold(n) for n in (1, 2, 3, 4, 5, 6, 7, 21)] == [1, 2, 3, 3, 4, 5, 5, 15]
    with pytest.raises(ValueError):
        lib_threshold(0)


def test_quorum_needs_two_thirds_plus_one_of_every_set():
    a, b, c, d, e = (bytes([k]) * 32 for k in range(5))
    assert has_quorum({a, b, c}, [(a, b, c, d)])
    assert not has_quorum({a, b, e}, [(a, b, c, d)])  # e is no member
    assert not has_quorum({a, b}, [(a, b, c, d)])
    # joint: the old set (a b c d) and the new one (a b e) must both reach 2/3+1
    assert has_quorum({a, b, c, e}, [(a, b, c, d), (a, b, e)])
    assert not has_quorum({a, b, c}, [(a, b, c, d), (a, b, e)])
    assert not has_quorum({a, b, e}, [(a, b, c, d), (a, b, e)])
    assert not has_quorum({a}, [])
    assert has_quorum({a}, [(a,), ()])


def vote(source, target, target_hash=b"T"):
    return (source, b"S" * 32, target, target_hash * 32)


def test_vote_offences():
    assert vote_offence(vote(1, 2), vote(1, 2)) is None  # the same vote twice
    assert vote_offence(vote(1, 2), vote(1, 2, b"U")) == DOUBLE_VOTE
    assert vote_offence(vote(0, 2), vote(1, 2, b"U")) == DOUBLE_VOTE
    assert vote_offence(vote(1, 5), vote(2, 3)) == SURROUND_VOTE
    assert vote_offence(vote(2, 3), vote(1, 5)) == SURROUND_VOTE
    assert vote_offence(vote(1, 2), vote(2, 3)) is None  # consecutive links
    assert vote_offence(vote(1, 3), vote(1, 5)) is None  # same source: not strictly inside
    assert vote_offence(vote(1, 5), vote(2, 5, b"U")) == DOUBLE_VOTE
    assert vote_offence(None, vote(1, 2)) is None


@settings(max_examples=300)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6), st.sampled_from(b"AB")),
                min_size=2, max_size=2))
def test_honest_watermark_never_signs_an_offence(pair):
    """Votes whose target only rises and whose source never falls never conflict."""
    (s1, t1, h1), (s2, t2, h2) = pair
    first, second = vote(s1, t1, bytes([h1])), vote(s2, t2, bytes([h2]))
    if s1 < t1 and s2 < t2 and t2 > t1 and s2 >= s1:
        assert vote_offence(first, second) is None


def test_missed_slots():
    who = lambda s: f"p{s % 4}"  # noqa: E731
    assert missed_slots(10, 11, who, 100) == []
    assert missed_slots(10, 15, who, 100) == ["p3", "p0", "p1", "p2"]
    assert missed_slots(10, 15, who, 2) == ["p1", "p2"]
    assert missed_slots(10, 15, who, 4) == missed_slots(10, 15, who, 5)
    assert missed_slots(10, 15, who, 0) == []
    with pytest.raises(ValueError):
        missed_slots(10, 10, who, 5)


def test_missed_slots_long_outage_only_looks_at_the_limit():
    calls = []
    out = missed_slots(0, 10**12, lambda s: calls.append(s) or s, 3)
    assert out == calls == [10**12 - 3, 10**12 - 2, 10**12 - 1]


def test_fork_choice_prefers_justified_then_longest_then_earlier_slot_then_lower_hash():
    low, high = b"\x00" * 31 + b"\x01", b"\xff" * 32
    tips = [(0, 10, 3, high), (0, 11, 9, high), (0, 11, 9, low), (0, 11, 12, low), (0, 9, 1, low)]
    assert max(tips, key=lambda t: fork_choice_key(*t)) == (0, 11, 9, low)
    assert fork_choice_key(0, 5, 7, high) > fork_choice_key(0, 5, 8, low)
    assert fork_choice_key(0, 5, 7, low) > fork_choice_key(0, 5, 7, high)
    assert fork_choice_key(0, 6, 99, high) > fork_choice_key(0, 5, 1, low)
    # a shorter chain that justified a later round wins
    assert fork_choice_key(3, 5, 9, high) > fork_choice_key(2, 50, 1, low)
    with pytest.raises(ValueError):
        fork_choice_key(0, 1, 1, b"short")
