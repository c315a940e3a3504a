"""DPoS on a real ledger: rounds, elections, jail, evidence, voter rewards, forks and finality."""

import pytest

from chain.address import address_from_pubkey
from chain.errors import BlockRejected, Reason
from chain.execute import pending_rewards
from chain.tx import Evidence, Stake, Transfer, Unjail, Vote
from chain.state.consensus import JOINT, PROPOSED, STABLE
from tests.chainkit import COIN, TEST_PARAMS, TOTAL, TestChain
from tests.test_rules import verdict

FOUR = TEST_PARAMS._replace(producers_per_round=4, standby_slots=0, max_missed_in_a_row=3,
                            jail_blocks=4, max_votes=5)


def four_agents(path, **changes):
    return TestChain(path, n_agents=4, params=FOUR._replace(**changes))


def producers_of_round(chain):
    with chain.store.read() as txn:
        return chain.ledger.view(txn).schedule()


def test_rounds_rotate_through_all_producers_and_lib_follows(tmp_path):
    chain = four_agents(tmp_path)
    seen = []
    for _ in range(12):
        block = chain.block()
        seen.append(block.header.producer)
        assert chain.supply() == TOTAL
    for start in (0, 4, 8):  # each round lets every agent produce once, in a shuffled order
        assert sorted(seen[start:start + 4]) == sorted(a.pubkey for a in chain.agents)
    assert seen[0:4] != seen[4:8] or seen[4:8] != seen[8:12]
    # Round r's votes justify the block before it and finalize the block before round r-1:
    # at the end of round 2 that is the last block of round 0.
    assert chain.ledger.lib_height == 4
    for _ in range(4):
        chain.block()
    assert chain.ledger.lib_height == chain.ledger.head.height - 8 == 8


def test_votes_move_the_producer_set_next_round(tmp_path):
    chain = TestChain(tmp_path, n_agents=5, params=FOUR)
    outsider = sorted(chain.agents, key=lambda a: a.address)[-1]  # ranks last on a tie
    assert outsider.pubkey not in producers_of_round(chain).producers + tuple(
        chain.block().header.producer for _ in range(4))
    voter = chain.keys[0]
    chain.block([chain.tx(voter, Stake(500 * COIN))])
    chain.block([chain.tx(voter, Vote((outsider.address,)))])
    assert chain.ledger.view_agent(outsider.address).votes == 500 * COIN
    # The election proposes the new set; once the proposal is final both sets must reach a
    # quorum (both produce), and once a block of that phase is final the new set is alone.
    phases = []
    for _ in range(12 * 5):
        chain.block()
        finality = chain.ledger.finality()
        phases.append(finality.phase)
        if outsider.pubkey in finality.active:
            break
    assert outsider.pubkey in chain.ledger.finality().active
    assert sorted(set(phases)) == [STABLE, PROPOSED, JOINT] or set(phases) >= {PROPOSED, JOINT}
    dropped = set(a.pubkey for a in chain.agents) - set(chain.ledger.finality().active)
    for _ in range(8):
        chain.block()
    assert outsider.pubkey in producers_of_round(chain).producers
    assert not dropped & set(producers_of_round(chain).producers)


def test_missed_slots_jail_then_unjail(tmp_path):
    chain = four_agents(tmp_path)
    lazy = chain.agents[1]
    misses = 0
    while misses < FOUR.max_missed_in_a_row:
        slot = chain.next_slot()
        if chain.ledger.producer_for(slot) == lazy.pubkey:
            misses += 1
            slot += 1  # lazy misses its slot; the next producer builds on the slot after
        chain.block(slot=slot)
    agent = chain.ledger.view_agent(lazy.address)
    assert agent.jailed and agent.missed_total == FOUR.max_missed_in_a_row
    assert verdict(chain, chain.tx(lazy, Unjail())) == Reason.STILL_JAILED
    for _ in range(12 * 5):  # once final, the jail takes the agent out of the producer set
        chain.block()
        if lazy.pubkey not in chain.ledger.finality().active + chain.ledger.finality().next:
            break
    for _ in range(8):
        chain.block()
    assert lazy.pubkey not in producers_of_round(chain).producers
    while chain.ledger.head.height < agent.jailed_until:
        chain.block()
    chain.block([chain.tx(lazy, Unjail())])
    assert not chain.ledger.view_agent(lazy.address).jailed
    assert verdict(chain, chain.tx(lazy, Unjail())) == Reason.NOT_JAILED


def double_production(chain):
    """Two different headers signed by one producer for one slot."""
    slot = chain.next_slot()
    first, _ = chain.build([], slot)
    second, _ = chain.build([chain.tx(chain.keys[0], Transfer(chain.keys[1].address, 1))], slot)
    return first, second


def test_evidence_slashes_jails_and_pays_the_reporter(tmp_path):
    chain = four_agents(tmp_path, slash_permille=200, reporter_permille=250)
    first, second = double_production(chain)
    offender = address_from_pubkey(first.header.producer)
    stake = chain.account(offender).stake
    pool_before = pool(chain)
    reporter = chain.keys[2]
    evidence = chain.tx(reporter, Evidence(first.header.encode(), second.header.encode()))
    balance = chain.account(reporter).balance
    chain.block([evidence])
    slashed = stake * 200 // 1000
    to_reporter = slashed * 250 // 1000
    assert chain.account(offender).stake == stake - slashed
    assert chain.account(reporter).balance == balance - evidence.fee + to_reporter
    assert chain.ledger.view_agent(offender).jailed
    assert pool(chain) >= pool_before + slashed - to_reporter - 2 * FOUR.block_reward
    assert chain.supply() == TOTAL
    again = chain.tx(chain.keys[3], Evidence(second.header.encode(), first.header.encode()))
    assert verdict(chain, again) == Reason.DUPLICATE_EVIDENCE


@pytest.mark.parametrize("make", [
    lambda f, s: (f.header.encode(), f.header.encode()),
    lambda f, s: (f.header.encode(), s.header._replace(slot=s.header.slot + 1).encode()),
    lambda f, s: (f.header.encode(), s.header._replace(signature=bytes(64)).encode()),
    lambda f, s: (f.header.encode(), b"\x02garbage"),
])
def test_bad_evidence_refused(tmp_path, make):
    chain = four_agents(tmp_path)
    first, second = double_production(chain)
    assert verdict(chain, chain.tx(chain.keys[2], Evidence(*make(first, second)))) == \
        Reason.INVALID_EVIDENCE


def pool(chain):
    with chain.store.read() as txn:
        return chain.ledger.view(txn).pool()


def test_voters_share_rewards_pro_rata_when_they_settle(tmp_path):
    chain = four_agents(tmp_path, voter_share_permille=400)
    agent = chain.agents[0]
    small, big = chain.keys[0], chain.keys[1]
    chain.block([chain.tx(small, Stake(100 * COIN)), chain.tx(big, Stake(300 * COIN))])
    chain.block([chain.tx(small, Vote((agent.address,))), chain.tx(big, Vote((agent.address,)))])
    before = {k.address: chain.account(k).balance for k in (small, big)}
    for _ in range(12):
        chain.block()
        assert chain.supply() == TOTAL
    with chain.store.read() as txn:
        pending = {k.address: pending_rewards(chain.ledger.view(txn), k.address)
                   for k in (small, big)}
    assert pending[small.address] > 0
    # any transaction of a voter settles what it earned into its balance (both in one block:
    # they have earned for the same blocks, whichever agent produces the next one)
    txs = [chain.tx(key, Transfer(chain.keys[2].address, 1)) for key in (small, big)]
    fees = {tx.sender_address: tx.fee + 1 for tx in txs}
    chain.block(txs)
    gained = {a: chain.account(a).balance - b + fees[a] for a, b in before.items()}
    assert gained[small.address] >= pending[small.address]
    # pro rata to stake, up to the floor of each accrual
    assert abs(gained[big.address] - 3 * gained[small.address]) <= 3 * 3 * 13
    with chain.store.read() as txn:
        assert pending_rewards(chain.ledger.view(txn), small.address) <= 2 * 5 * COIN
    assert chain.supply() == TOTAL


def test_a_block_costs_the_same_for_two_voters_or_two_thousand(tmp_path):
    """Voter rewards accrue per unit of vote (F1): paying an agent, a round start, touches the
    same records however many vote for it."""
    changed = {}
    for voters in (2, 2000):
        chain = TestChain(tmp_path / f"v{voters}", n_keys=voters, n_agents=4,
                          params=FOUR._replace(max_block_txs=5000))
        agent = chain.agents[0]
        chain.block([chain.tx(k, Stake(10 * COIN)) for k in chain.keys])
        chain.block([chain.tx(k, Vote((agent.address,))) for k in chain.keys])
        counts = []
        for _ in range(8):
            block, _ = chain.build([])
            captured = []
            chain.ledger._write(lambda w: captured.append(len(_executed(w, block))),
                                commit=False)
            counts.append(captured[0])
            chain.ledger.apply_block(block)
        changed[voters] = max(counts)
        assert chain.supply() == TOTAL
    assert changed[2000] == changed[2], changed


def _executed(writer, block):
    """The state keys a block changes."""
    from chain.execute import execute_block
    view = writer.view()
    execute_block(view, block, writer.head, writer.ledger.params, writer.ledger.chain_id)
    return view.changes


def test_reorganisation_to_a_longer_fork(tmp_path):
    a = four_agents(tmp_path / "a")
    b = four_agents(tmp_path / "b")
    shared = a.block()
    b.ledger.apply_block(shared)
    # a builds one block that b never sees; b builds two on a different slot and wins.
    lost_tx = a.tx(a.keys[0], Transfer(a.keys[1].address, 7 * COIN))
    a.block([lost_tx])
    b.block([b.tx(b.keys[2], Transfer(b.keys[3].address, 5 * COIN))], slot=b.next_slot() + 1)
    b.block()
    results = [a.ledger.add_block(b.ledger.block(b.ledger.block_hash_at(h)))
               for h in (2, 3)]
    # At equal height the block of the earlier slot wins: a's, so b's first block waits.
    assert [r.status for r in results] == ["stored", "reorganised"]
    assert [tx.id for r in results for tx in r.undone] == [lost_tx.id]
    assert a.ledger.head == b.ledger.head
    assert a.ledger.tx_location(lost_tx.id) is None
    for key in a.keys:
        assert a.account(key) == b.account(key)
    assert a.supply() == TOTAL
    assert a.ledger.add_block(b.ledger.block(b.ledger.head.hash)).status == "known"


def test_no_reorganisation_below_the_lib(tmp_path):
    a = four_agents(tmp_path / "a")
    b = four_agents(tmp_path / "b")
    b.block(slot=2)  # a fork of b's own from the first block on
    b.block()
    for _ in range(12):
        a.block()
    assert a.ledger.lib_height >= 4
    fork_block = b.ledger.block(b.ledger.block_hash_at(1))
    with pytest.raises(BlockRejected, match="below the last irreversible"):
        a.ledger.add_block(fork_block)


def test_invalid_fork_leaves_the_chain_untouched(tmp_path):
    a = four_agents(tmp_path / "a")
    b = four_agents(tmp_path / "b")
    b.block(slot=2)
    bad = b.build([], b.next_slot())[0]
    bad = type(bad)(bad.header._replace(state_root=bytes(32)).signed_by(
        b.signer(bad.header.slot), "ss-test"), bad.txs)
    a.block()
    # b's block ties with a's at height 1 but came in a later slot: it waits as a fork.
    assert a.ledger.add_block(b.ledger.block(b.ledger.head.hash)).status == "stored"
    head = a.ledger.head
    with pytest.raises(BlockRejected, match="state_root"):
        a.ledger.add_block(bad)
    assert a.ledger.head == head
    assert a.supply() == TOTAL
