"""Finality on real ledgers (docs/protocol.md §13): partitions longer than any threshold, the
ungrindable schedule, offences that are slashed, votes that survive forks, a wiped producer.

Two ledgers with one genesis stand for the two sides of a partition; they share their producers'
signers, so every key keeps one vote watermark whichever side it signs on, as a real node does.
"""

import pytest

from chain.errors import BlockRejected, Reason
from chain.producer import BlockSigner, start_watermark, watermark_path
from chain.state.consensus import JOINT, PROPOSED, STABLE
from chain.tx import Evidence, Stake, Transfer, Unstake, Vote
from chain.votes import FinalityVote
from tests.chainkit import COIN, TEST_PARAMS, TOTAL, TestChain
from tests.test_rules import verdict

FOUR = TEST_PARAMS._replace(producers_per_round=4, standby_slots=0, max_missed_in_a_row=3,
                            jail_blocks=4, max_votes=5, unbonding_blocks=12, evidence_window=12)
ROUND = 4


def four(path, **changes):
    return TestChain(path, n_agents=4, params=FOUR._replace(**changes))


def sides(tmp_path, **changes):
    """Two ledgers of one network, sharing the signers (and so the watermarks)."""
    a, b = four(tmp_path / "a", **changes), four(tmp_path / "b", **changes)
    b.signers = a.signers
    return a, b


def produce_as(chain, group, blocks=1):
    """``blocks`` blocks in the slots of ``group`` (agent indexes) only: the others are cut off
    and their slots stay empty."""
    keys = {chain.agents[i].pubkey for i in group}
    made = []
    for _ in range(blocks):
        slot = chain.next_slot()
        while chain.ledger.producer_for(slot) not in keys:
            slot += 1
        made.append(chain.block(slot=slot))
    return made


def copy_blocks(source, target, blocks):
    for block in blocks:
        target.ledger.apply_block(block)


def lib_hash(chain):
    return chain.ledger.block_hash_at(chain.ledger.lib_height)


def test_a_long_2_2_partition_finalises_nothing_jails_no_one_and_heals(tmp_path):
    a, b = sides(tmp_path)
    shared = produce_as(a, range(4), 3 * ROUND)
    copy_blocks(a, b, shared)
    lib = a.ledger.lib_height
    assert lib > 0 and b.ledger.lib_height == lib
    # Each side holds half the producers for ten jail thresholds' worth of rounds.
    rounds = 10 * FOUR.max_missed_in_a_row
    for _ in range(rounds):
        produce_as(a, [0, 1], 2)
        produce_as(b, [2, 3], 2)
        assert a.ledger.lib_height == b.ledger.lib_height == lib
    for side in (a, b):
        finality = side.ledger.finality()
        assert finality.phase == STABLE and len(finality.active) == 4
        assert not any(side.ledger.view_agent(agent.address).jailed for agent in side.agents)
    # Heal: the producers of b join a's chain (it won the fork choice). Their watermarks hold
    # their votes on b, so they cannot vote twice for a round; from the next round on they do.
    healed = produce_as(a, range(4), 3 * ROUND)
    assert a.ledger.lib_height > lib
    assert a.ledger.block_hash_at(lib) == b.ledger.block_hash_at(lib)
    finalized = [block for block in healed if block.height <= a.ledger.lib_height]
    assert finalized, "blocks made after the partition became irreversible"
    assert a.supply() == TOTAL


def test_a_lone_producer_never_finalises_the_three_do_and_drop_it(tmp_path):
    a, lone = sides(tmp_path)
    copy_blocks(a, lone, produce_as(a, range(4), 3 * ROUND))
    lib = lone.ledger.lib_height
    libs = set()
    phases = []
    for _ in range(12 * FOUR.max_missed_in_a_row):
        produce_as(a, [0, 1, 2], 3)
        produce_as(lone, [3], 1)
        libs.add(a.ledger.lib_height)
        phases.append(a.ledger.finality().phase)
        assert lone.ledger.lib_height == lib, "a lone producer must never finalise"
    assert len(libs) > 5, "the majority keeps finalising"
    # The majority jailed the absent producer and, once that was final, dropped it: proposed,
    # then joint (both sets had to agree), then the three alone.
    assert a.ledger.view_agent(a.agents[3].address).jailed
    assert {PROPOSED, JOINT} <= set(phases)
    assert a.ledger.finality().active == tuple(sorted(k.pubkey for k in a.agents[:3]))
    assert a.ledger.block_hash_at(lib) == lone.ledger.block_hash_at(lib)


def test_two_of_four_stopped_for_rounds_then_back_finality_resumes(tmp_path):
    chain = four(tmp_path)
    produce_as(chain, range(4), 3 * ROUND)
    lib = chain.ledger.lib_height
    produce_as(chain, [0, 1], 2 * 3)  # three rounds with half the producers stopped
    assert chain.ledger.lib_height == lib
    start = chain.ledger.head.height
    for _ in range(2 * ROUND):  # two full rounds with everyone back
        chain.block()
    assert chain.ledger.lib_height > max(lib, start - 2 * ROUND)
    assert not any(chain.ledger.view_agent(agent.address).jailed for agent in chain.agents)


def test_a_vote_in_a_block_that_lost_the_fork_race_is_carried_by_the_winner(tmp_path):
    a, b = sides(tmp_path)
    copy_blocks(a, b, produce_as(a, range(4), 2 * ROUND))
    # b makes a block with its producer's vote that a never takes.
    lost = produce_as(b, range(4))[0]
    assert lost.votes and lost.votes[0].producer == lost.header.producer
    info_round = lost.votes[0].target_round
    # a's producers skip that slot; the next block carries the lost vote.
    slot = a.next_slot() + 1
    carrier, _ = a.ledger.build_block(a.signer(slot), slot, [], votes=lost.votes)
    a.ledger.apply_block(carrier)
    assert lost.votes[0] in carrier.votes
    with a.store.read() as txn:
        assert lost.header.producer in a.ledger.view(txn).round_votes().voters
    assert carrier.votes[0].target_round == info_round


def test_blocks_with_bad_votes_are_refused(tmp_path):
    chain = four(tmp_path)
    produce_as(chain, range(4), 2 * ROUND)
    slot = chain.next_slot()
    signer = chain.signer(slot)
    good, _ = chain.ledger.build_block(signer, slot, [])
    vote = good.votes[0]
    outsider = chain.keys[0]
    cases = {
        "not for this round's link": vote._replace(target_round=vote.target_round + 1),
        "outside the round's producer sets": FinalityVote(outsider.pubkey, *vote.link),
        "signature does not verify": vote._replace(signature=bytes(64)),
    }
    for message, bad in cases.items():
        if message != "signature does not verify":
            bad = bad.signed_by(outsider if bad.producer == outsider.pubkey else signer,
                                chain.genesis.chain_id)
        block = rebuild(chain, signer, good, [bad])
        with pytest.raises(BlockRejected, match=message):
            chain.ledger.apply_block(block)
    with pytest.raises(BlockRejected, match="counted once"):
        chain.ledger.apply_block(rebuild(chain, signer, good, [vote, vote]))


def rebuild(chain, signer, block, votes):
    from chain.block import Block, votes_root
    header = block.header._replace(votes_root=votes_root(votes)).signed_by(
        signer, chain.genesis.chain_id)
    return Block(header, block.txs, votes)


# -- the schedule seed cannot be ground -----------------------------------------------------------

def next_order(chain):
    """The order of the round after the current one, as the head's state fixes it."""
    from chain.dpos.rounds import next_schedule
    with chain.store.read() as txn:
        view = chain.ledger.view(txn)
        return next_schedule(view, chain.params, view.schedule()).producers


def test_the_last_producer_of_a_round_cannot_move_the_next_order(tmp_path):
    """Every variant the round's last producer controls — transactions (votes, stakes,
    transfers), a reveal-chain renewal, its slot — gives the same next order; withholding its
    block is the only other choice, so at most two orders are reachable."""
    chain = four(tmp_path, standby_slots=1)
    # a fifth candidate with votes makes the standby draw part of the order
    from tests.chainkit import registration
    owner, producer = chain.keys[0], chain.keys[3]
    chain.block([chain.tx(owner, Stake(FOUR.agent_min_stake))])
    chain.block([chain.tx(owner, registration(owner, producer, "standby"))])
    chain.block([chain.tx(chain.keys[1], Stake(50 * COIN))])
    chain.block([chain.tx(chain.keys[1], Vote((owner.address,)))])
    while True:  # move to the last slot of a round
        with chain.store.read() as txn:
            schedule = chain.ledger.view(txn).schedule()
        if chain.next_slot() == schedule.end_slot - 1:
            break
        chain.block()
    slot = chain.next_slot()
    signer = chain.signer(slot)
    k = chain.keys
    variants = [[], [chain.tx(k[2], Transfer(k[1].address, COIN))],
                [chain.tx(k[2], Stake(500 * COIN))],
                [chain.tx(k[1], Vote(tuple(sorted((owner.address, chain.agents[0].address)))))],
                [chain.tx(k[1], Unstake(10 * COIN))]]
    orders = set()
    for txs in variants:
        block, rejected = chain.ledger.build_block(signer, slot, txs)
        assert not rejected
        orders.add(order_after(chain, block))
    renewal = signer_with_renewal(signer)
    block, _ = chain.ledger.build_block(renewal, slot, [])
    assert block.header.renewal is not None
    orders.add(order_after(chain, block))
    assert len(orders) == 1, "the last producer's choices must not move the next order"
    # Withholding: the next producer's block opens the round without that reveal.
    skipped = rebuild_fresh(chain, slot + 1)
    assert len(orders | {order_after(chain, skipped)}) <= 2


def order_after(chain, block):
    """The next round's order once ``block`` is applied (on a scratch copy of the ledger)."""
    def work(writer):
        writer.extend(block)
        from chain.dpos.rounds import schedule_at
        view = writer.view()
        return schedule_at(view, chain.params, view.schedule().end_slot).producers
    return chain.ledger._write(work, commit=False)[1]


def rebuild_fresh(chain, slot):
    return chain.ledger.build_block(chain.signer(slot), slot, [])[0]


class _Renewing(BlockSigner):
    def reveal_for(self, record):
        reveal, _ = super().reveal_for(record)
        return reveal, self.commitment(record.epoch + 1)


def signer_with_renewal(signer):
    renewing = _Renewing(signer.keypair, chains=signer._chain_source)
    renewing.last_source, renewing.last_target = signer.last_source, signer.last_target
    return renewing


# -- offences -------------------------------------------------------------------------------------

def test_equivocate_then_unstake_is_still_slashed(tmp_path):
    chain = four(tmp_path, slash_permille=200, reporter_permille=0)
    produce_as(chain, range(4), ROUND)
    slot = chain.next_slot()
    offender = chain.signer(slot)
    owner = next(agent for agent in chain.agents if agent.pubkey == offender.pubkey)
    stake = chain.account(owner).stake
    # the offender signs two blocks for its slot, and unstakes everything in one of them
    first, _ = chain.ledger.build_block(offender, slot, [])
    second, _ = chain.ledger.build_block(offender, slot, [chain.tx(owner, Unstake(stake))])
    chain.ledger.apply_block(second)
    assert chain.account(owner).stake == 0 and chain.account(owner).unbonding_total == stake
    chain.block([chain.tx(chain.keys[2], Evidence(first.header.encode(),
                                                  second.header.encode()))])
    assert chain.account(owner).unbonding_total == stake - stake * 200 // 1000
    assert chain.ledger.view_agent(owner.address).jailed
    assert chain.supply() == TOTAL


def conflicting_votes(chain, signer, kind):
    link = (2, b"\x01" * 32, 3, b"\x02" * 32)
    other = {"double": (2, b"\x01" * 32, 3, b"\x03" * 32),
             "surround": (1, b"\x04" * 32, 4, b"\x05" * 32)}[kind]
    chain_id = chain.genesis.chain_id
    return (FinalityVote(signer.pubkey, *link).signed_by(signer, chain_id),
            FinalityVote(signer.pubkey, *other).signed_by(signer, chain_id))


@pytest.mark.parametrize("kind", ["double", "surround"])
def test_a_double_or_surround_vote_is_slashed_once(tmp_path, kind):
    chain = four(tmp_path, slash_permille=100, reporter_permille=500)
    produce_as(chain, range(4), ROUND)
    offender = chain.agents[1]
    first, second = conflicting_votes(chain, chain.signers[offender.pubkey], kind)
    stake = chain.account(offender).stake
    reporter = chain.keys[2]
    balance = chain.account(reporter).balance
    evidence = chain.tx(reporter, Evidence(first.encode(), second.encode()))
    chain.block([evidence])
    slashed = stake * 100 // 1000
    assert chain.account(offender).stake == stake - slashed
    assert chain.account(reporter).balance == balance - evidence.fee + slashed // 2
    assert chain.ledger.view_agent(offender.address).jailed
    again = chain.tx(chain.keys[3], Evidence(second.encode(), first.encode()))
    assert verdict(chain, again) == Reason.DUPLICATE_EVIDENCE
    assert chain.supply() == TOTAL


def test_votes_that_do_not_conflict_are_no_evidence(tmp_path):
    chain = four(tmp_path)
    signer = chain.signers[chain.agents[1].pubkey]
    chain_id = chain.genesis.chain_id
    a = FinalityVote(signer.pubkey, 2, b"\x01" * 32, 3, b"\x02" * 32).signed_by(signer, chain_id)
    b = FinalityVote(signer.pubkey, 3, b"\x02" * 32, 4, b"\x03" * 32).signed_by(signer, chain_id)
    other = chain.signers[chain.agents[2].pubkey]
    c = FinalityVote(other.pubkey, 2, b"\x01" * 32, 3, b"\x09" * 32).signed_by(other, chain_id)
    for first, second in ((a, b), (a, c), (a, a)):
        tx = chain.tx(chain.keys[0], Evidence(first.encode(), second.encode()))
        assert verdict(chain, tx) == Reason.INVALID_EVIDENCE


# -- the honest producer's watermark --------------------------------------------------------------

def test_a_signer_never_signs_conflicting_votes():
    from chain.dpos.finality import vote_offence
    from chain.keys import KeyPair
    signer = BlockSigner(KeyPair.from_seed(b"\x33" * 32))
    signed = []
    links = [(0, b"g", 1, b"a"), (1, b"a", 2, b"b"), (0, b"g", 2, b"c"), (1, b"a", 3, b"d"),
             (1, b"x", 3, b"e"), (0, b"g", 5, b"f"), (3, b"d", 4, b"h"), (5, b"f", 6, b"i")]
    for link in links:
        link = (link[0], link[1] * 32, link[2], link[3] * 32)
        if signer.may_vote(link):
            signer.vote(link, "ss-test")
            signed.append(link)
    assert len(signed) >= 4
    for i, first in enumerate(signed):
        for second in signed[i + 1:]:
            assert vote_offence(first, second) is None


def test_a_producer_that_lost_its_watermark_waits_before_voting(tmp_path):
    from chain.keys import KeyPair
    key = KeyPair.from_seed(b"\x34" * 32)
    votes = tmp_path / "votes"
    start_watermark(str(votes), key.pubkey)
    fresh = BlockSigner(key, watermark_path(str(votes), key.pubkey))
    assert not fresh.recovering and fresh.may_vote((0, bytes(32), 1, bytes(32)))
    fresh.vote((4, bytes(32), 5, b"\x05" * 32), "ss-test")
    assert BlockSigner(key, watermark_path(str(votes), key.pubkey)).last_target == 5
    # the watermark is gone with the card: no vote until the window has passed...
    (votes / f"{key.pubkey.hex()}.json").unlink()
    wiped = BlockSigner(key, watermark_path(str(votes), key.pubkey))
    assert wiped.recovering and not wiped.may_vote((5, bytes(32), 6, bytes(32)))
    wiped.check_recovery(head_height=100, window=20, current_round=7)
    wiped.check_recovery(head_height=119, window=20, current_round=8)
    assert wiped.recovering
    wiped.check_recovery(head_height=120, window=20, current_round=9)
    assert not wiped.recovering
    assert "evidence window" in wiped.recovery_end
    # ... or until it sees its own vote for the round it started in (an older one is not
    # enough: it may have voted for that round before the card was wiped)
    again = BlockSigner(KeyPair.from_seed(b"\x35" * 32), str(tmp_path / "none.json"))
    again.check_recovery(head_height=100, window=20, current_round=7)
    again.observe(FinalityVote(again.pubkey, 5, bytes(32), 6, bytes(32)), 101, window=20)
    assert again.recovering and again.last_target == 6
    again.observe(FinalityVote(again.pubkey, 6, bytes(32), 7, bytes(32)), 102, window=20)
    assert not again.recovering and again.last_target == 7
    assert "own vote for round 7" in again.recovery_end
    assert not again.may_vote((6, bytes(32), 7, b"\x01" * 32))
