"""Finality entries on real ledgers, checked by a light client's tracker that trusts nothing
but the genesis: every round, a producer-set change through proposed and joint, forged
proofs, records and sets refused (docs/protocol.md §13.7)."""

import pytest

from chain.block import Header
from chain.keys import KeyPair
from chain.light import LightError
from chain.light.finality import FinalityEntry, FinalityProof, make_proof, members_of, verify_proof
from chain.light.entries import DB_FINALITY, finality_entries, keep_rounds
from chain.light.tracker import FinalityTracker
from chain.state.consensus import JOINT, PROPOSED, Checkpoint, Finality
from chain.state.records import FINALITY_KEY
from chain.tx import Stake, Vote
from chain.votes import FinalityVote
from tests.chainkit import COIN, TEST_PARAMS, TestChain

FOUR = TEST_PARAMS._replace(producers_per_round=4, standby_slots=0, max_missed_in_a_row=3,
                            jail_blocks=4, max_votes=5, unbonding_blocks=12, evidence_window=12)


def genesis_record(chain):
    with chain.store.read() as txn:
        return Finality.decode(chain.ledger.smt.get(txn, 0, FINALITY_KEY))


def entries(chain, from_round=0):
    return [FinalityEntry.decode(raw) for raw in finality_entries(chain.ledger, from_round, 500)]


def accept_all(tracker, found):
    """Accept every entry; returns the checkpoints finalized on the way."""
    finalized = []
    for entry in found:
        _, newly = tracker.accept(entry, Header.decode(entry.header))
        if newly is not None:
            finalized.append(newly)
    return finalized


def test_a_tracker_from_genesis_finalizes_what_the_chain_finalizes(tmp_path):
    chain = TestChain(tmp_path, n_agents=4, params=FOUR)
    for _ in range(4 * 8):
        chain.block()
    found = entries(chain)
    assert [e.proof.target_round for e in found] == list(range(1, 8))
    tracker = FinalityTracker(chain.ledger.chain_id, genesis_record(chain))
    finalized = accept_all(tracker, found)
    assert finalized and finalized[-1].height == chain.ledger.lib_height
    assert tracker.finalized.hash == chain.ledger.block_hash_at(chain.ledger.lib_height)
    # three of four sign: the proofs carry exactly a quorum
    assert all(len(e.proof.signatures) == 3 for e in found)
    # the same entries, again from the first one, change nothing new
    assert entries(chain, 5)[0] == found[4]


def test_the_tracker_follows_a_producer_set_change_through_joint(tmp_path):
    chain = TestChain(tmp_path, n_agents=5, params=FOUR)
    tracker = FinalityTracker(chain.ledger.chain_id, genesis_record(chain))
    outsider = sorted(chain.agents, key=lambda a: a.address)[-1]
    voter = chain.keys[0]
    chain.block([chain.tx(voter, Stake(500 * COIN))])
    chain.block([chain.tx(voter, Vote((outsider.address,)))])
    phases = set()
    for _ in range(5 * 16):
        chain.block()
        phases.add(chain.ledger.finality().phase)
        if outsider.pubkey in chain.ledger.finality().active:
            break
    for _ in range(12):
        chain.block()
    assert {PROPOSED, JOINT} <= phases
    found = entries(chain)
    joint = [e for e in found if Finality.decode(e.record).phase == JOINT]
    assert joint, "some rounds were counted by both sets"
    accept_all(tracker, found)
    assert tracker.finalized.height == chain.ledger.lib_height
    assert tracker.latest.record.active == chain.ledger.finality().active
    assert outsider.pubkey in tracker.latest.record.active


def test_forged_entries_are_refused_and_change_nothing(tmp_path):
    chain = TestChain(tmp_path, n_agents=4, params=FOUR)
    for _ in range(4 * 4):
        chain.block()
    found = entries(chain)
    tracker = FinalityTracker(chain.ledger.chain_id, genesis_record(chain))
    accept_all(tracker, found[:2])
    entry = found[2]
    header = Header.decode(entry.header)
    proof = entry.proof
    forged = [
        entry._replace(proof=proof._replace(signatures=(bytes(64),) + proof.signatures[1:])),
        entry._replace(proof=proof._replace(signers=proof.signers[:2],
                                            signatures=proof.signatures[:2])),
        entry._replace(proof=proof._replace(source_round=0)),
        entry._replace(record=found[1].record, record_proof=found[1].record_proof),
        entry._replace(record=entry.record[:-1] + bytes([entry.record[-1] ^ 1])),
    ]
    before = tracker.encode()
    for bad in forged:
        with pytest.raises(LightError) as caught:
            tracker.accept(bad, header)
        assert caught.value.reason in ("bad_finality", "unknown_source")
        assert tracker.encode() == before
    # another block of the right height is not the target the quorum signed
    other = Header.decode(found[1].header)
    with pytest.raises(LightError):
        tracker.accept(entry, other)
    # the tracker's state survives a round trip through its encoding
    again = FinalityTracker.decode(chain.ledger.chain_id, tracker.encode())
    accept_all(again, found[2:])
    assert again.finalized.height == chain.ledger.lib_height


def test_a_proof_at_21_producers_fits_in_one_kilobyte():
    keys = [KeyPair.from_seed(bytes([i + 1]) * 32) for i in range(21)]
    members = tuple(sorted(k.pubkey for k in keys))
    source = Checkpoint(123456, b"\x01" * 32, 2_700_000)
    target = Checkpoint(123457, b"\x02" * 32, 2_700_022)
    signatures = {k.pubkey: FinalityVote(k.pubkey, source.round, source.hash, target.round,
                                         target.hash).signed_by(k, "ss-size").signature
                  for k in keys}
    proof = make_proof(source.round, target.round, (members,), signatures)
    assert len(proof.signatures) == 15
    raw = proof.encode()
    assert len(raw) <= 1024, len(raw)
    assert FinalityProof.decode(raw) == proof
    assert len(verify_proof(proof, "ss-size", source, target, (members,))) == 15
    # joint: two overlapping sets, each needs its quorum; members in both are used first
    newcomers = [KeyPair.from_seed(bytes([99 + i]) * 32) for i in range(11)]
    sets = (members, tuple(sorted(members[11:] + tuple(k.pubkey for k in newcomers))))
    with pytest.raises(ValueError):
        make_proof(source.round, target.round, sets, signatures)
    with pytest.raises(LightError):
        verify_proof(proof._replace(members=32), "ss-size", source, target, sets)
    signatures.update({k.pubkey: FinalityVote(k.pubkey, source.round, source.hash, target.round,
                                              target.hash).signed_by(k, "ss-size").signature
                       for k in newcomers})
    joint = make_proof(source.round, target.round, sets, signatures)
    assert joint.members == len(members_of(sets)) == 32
    assert len(joint.signatures) == 20  # the 10 shared count twice, 5 more in each set
    assert len(verify_proof(joint, "ss-size", source, target, sets)) == 20


def test_the_finality_vectors_verify_as_the_spec_says():
    """tests/vectors/finality_proof.json and finality_entry.json: the signers' votes for the
    link (round 11 -> 12) verify under the sets the sample names (docs/protocol.md §13.7)."""
    import json
    import os
    from tests.vectors.catalogue import ALICE, AGENT, BOB, CHAIN, LINK
    here = os.path.join(os.path.dirname(__file__), "vectors")
    with open(os.path.join(here, "finality_proof.json")) as f:
        vectors = {v["name"]: FinalityProof.decode(bytes.fromhex(v["hex"])) for v in json.load(f)}
    source = Checkpoint(LINK[0], LINK[1], 88)
    target = Checkpoint(LINK[2], LINK[3], 95)
    keys = tuple(sorted(k.pubkey for k in (ALICE, BOB, AGENT)))
    assert len(verify_proof(vectors["stable_all_three"], CHAIN, source, target, (keys,))) == 3
    joint = (tuple(sorted((ALICE.pubkey, BOB.pubkey))), (AGENT.pubkey,))
    assert len(verify_proof(vectors["joint"], CHAIN, source, target, joint)) == 3
    with pytest.raises(LightError):
        verify_proof(vectors["joint"], "ss-other", source, target, joint)
    with open(os.path.join(here, "finality_entry.json")) as f:
        entry = FinalityEntry.decode(bytes.fromhex(json.load(f)[0]["hex"]))
    assert Header.decode(entry.header).hash == LINK[3] and entry.proof == vectors[
        "stable_all_three"]


def test_entries_outlive_the_pruned_state_they_were_made_from(tmp_path):
    """A node that prunes state versions early serves the same entries as one that keeps them
    all: a pruning batch writes the entries whose checkpoint state it drops; nothing else is
    written for light clients, block by block."""
    params = FOUR._replace(heavy_window=4)
    keeper = TestChain(tmp_path / "keeper", n_agents=4, params=params)
    pruner = TestChain(tmp_path / "pruner", n_agents=4, params=params, prune_depth=5)
    for _ in range(4 * 40):
        pruner.ledger.apply_block(keeper.block())
    with pruner.store.read() as txn:
        oldest_state = pruner.ledger.smt.versions(txn)[0]
        stored = txn.stat(pruner.store.db(DB_FINALITY))["entries"]
    newest = keeper.ledger.head.justified_round
    served = [Header.decode(e.header).height for e in entries(pruner)]
    assert oldest_state > 4 * 20 and stored > 0
    assert min(served) < oldest_state  # some could only come from what was written
    assert entries(pruner) == entries(keeper)
    assert len(served) == keep_rounds(params) == newest - entries(keeper)[0].proof.target_round + 1
    tracker = FinalityTracker(keeper.ledger.chain_id, genesis_record(keeper))
    with pytest.raises(LightError):  # a tracker from genesis cannot bridge the rounds dropped
        accept_all(tracker, entries(pruner))
