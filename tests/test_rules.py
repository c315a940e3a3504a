"""Transaction rules: every rejection reason, and the stake/vote/agent flows, on a real ledger."""

import pytest

from chain import crypto
from chain.errors import Reason, TxRejected
from chain.execute import check_static
from chain.keys import KeyPair
from chain.tx import RegisterAgent, Stake, Transfer, Tx, UnregisterAgent, Unstake, Vote
from tests.chainkit import CHAIN_ID, COIN, FUNDED, TOTAL, TestChain, registration, rotation


@pytest.fixture
def chain(tmp_path):
    return TestChain(tmp_path)


def verdict(chain, tx):
    """The reason the node would refuse ``tx`` now, or None when a block would take it."""
    try:
        check_static(tx, CHAIN_ID, chain.params)
    except TxRejected as exc:
        return exc.reason
    if not crypto.verify(tx.sender, tx.chain_id, tx.id, tx.signature):
        return Reason.BAD_SIGNATURE
    _, rejected = chain.build([tx])
    return rejected[0][1].reason if rejected else None


def test_valid_transfer_moves_exact_amounts(chain):
    a, b = chain.keys[:2]
    tx = chain.tx(a, Transfer(b.address, 12 * COIN, b"rent"))
    chain.block([tx])
    assert chain.account(a).balance == FUNDED - 12 * COIN - tx.fee
    assert chain.account(a).nonce == 1
    assert chain.account(b).balance == FUNDED + 12 * COIN
    assert chain.supply() == TOTAL


def test_bad_signature(chain):
    a, b = chain.keys[:2]
    tx = chain.tx(a, Transfer(b.address, 1))
    forged = Tx(tx.chain_id, tx.sender, tx.nonce, tx.fee, tx.payload,
                bytes([tx.signature[0] ^ 1]) + tx.signature[1:])
    assert verdict(chain, forged) == Reason.BAD_SIGNATURE


def test_signed_by_someone_else(chain):
    a, b = chain.keys[:2]
    tx = Tx(CHAIN_ID, a.pubkey, 0, 5000, Transfer(b.address, 1))
    stolen = Tx(CHAIN_ID, a.pubkey, 0, 5000, Transfer(b.address, 1), b.sign(CHAIN_ID, tx.id))
    assert verdict(chain, stolen) == Reason.BAD_SIGNATURE


def test_wrong_chain(chain):
    a, b = chain.keys[:2]
    assert verdict(chain, chain.tx(a, Transfer(b.address, 1), chain_id="ss-other")) == \
        Reason.WRONG_CHAIN


def test_signature_for_another_chain_does_not_verify_here(chain):
    """Domain separation: a signature made on chain X fails on chain Y even for equal bytes."""
    a, b = chain.keys[:2]
    other = chain.tx(a, Transfer(b.address, 1), chain_id="ss-other")
    assert crypto.verify(a.pubkey, "ss-other", other.id, other.signature)
    assert not crypto.verify(a.pubkey, CHAIN_ID, other.id, other.signature)
    transplanted = Tx(CHAIN_ID, a.pubkey, 0, other.fee, other.payload, other.signature)
    assert verdict(chain, transplanted) == Reason.BAD_SIGNATURE


def test_fee_too_low(chain):
    a, b = chain.keys[:2]
    assert verdict(chain, chain.tx(a, Transfer(b.address, 1), fee=chain.params.min_fee)) == \
        Reason.FEE_TOO_LOW


def test_oversize(tmp_path):
    from tests.chainkit import TEST_PARAMS
    chain = TestChain(tmp_path, params=TEST_PARAMS._replace(max_tx_bytes=180))
    a, b = chain.keys[:2]
    assert verdict(chain, chain.tx(a, Transfer(b.address, 1, b"x" * 10))) is None
    assert verdict(chain, chain.tx(a, Transfer(b.address, 1, b"x" * 64))) == Reason.OVERSIZE


@pytest.mark.parametrize("nonce", [1, 5])
def test_future_nonce(chain, nonce):
    a, b = chain.keys[:2]
    assert verdict(chain, chain.tx(a, Transfer(b.address, 1), nonce=nonce)) == Reason.BAD_NONCE


def test_replayed_nonce(chain):
    a, b = chain.keys[:2]
    first = chain.tx(a, Transfer(b.address, 1))
    chain.block([first])
    again = chain.tx(a, Transfer(b.address, 2), nonce=0)
    assert verdict(chain, again) == Reason.BAD_NONCE
    assert verdict(chain, first) == Reason.BAD_NONCE


def test_insufficient_balance(chain):
    a, b = chain.keys[:2]
    assert verdict(chain, chain.tx(a, Transfer(b.address, FUNDED))) == \
        Reason.INSUFFICIENT_BALANCE
    nobody = KeyPair.from_seed(b"\x77" * 32)
    assert verdict(chain, chain.tx(nobody, Transfer(b.address, 1))) == \
        Reason.INSUFFICIENT_BALANCE


@pytest.mark.parametrize("payload", [Transfer(bytes(20), 0), Stake(0), Unstake(0)])
def test_zero_amount(chain, payload):
    assert verdict(chain, chain.tx(chain.keys[0], payload)) == Reason.INVALID_AMOUNT


def test_stake_vote_unstake_release(tmp_path):
    from tests.chainkit import TEST_PARAMS
    chain = TestChain(tmp_path, params=TEST_PARAMS._replace(voter_share_permille=0))
    a = chain.keys[0]
    producer = chain.producer.address
    chain.block([chain.tx(a, Stake(300 * COIN))])
    chain.block([chain.tx(a, Vote((producer,)))])
    assert chain.ledger.view_agent(producer).votes == 300 * COIN
    chain.block([chain.tx(a, Unstake(100 * COIN))])
    released_at = chain.ledger.head.height + chain.params.unbonding_blocks
    account = chain.account(a)
    assert account.stake == 200 * COIN
    assert account.unbonding == ((100 * COIN, released_at),)
    assert chain.ledger.view_agent(producer).votes == 200 * COIN
    balance = account.balance
    while chain.ledger.head.height < released_at:
        chain.block()
        assert chain.supply() == TOTAL
    account = chain.account(a)
    assert account.unbonding == ()
    assert account.balance == balance + 100 * COIN


def test_unstake_more_than_stake(chain):
    assert verdict(chain, chain.tx(chain.keys[0], Unstake(1))) == Reason.INSUFFICIENT_STAKE


def test_too_many_unbonding_entries(chain):
    a = chain.keys[0]
    chain.block([chain.tx(a, Stake(10 * COIN))])
    chain.block([chain.tx(a, Unstake(COIN))])
    chain.block([chain.tx(a, Unstake(COIN))])
    assert verdict(chain, chain.tx(a, Unstake(COIN))) == Reason.TOO_MANY_UNBONDING


def test_vote_needs_stake(chain):
    assert verdict(chain, chain.tx(chain.keys[0], Vote((chain.producer.address,)))) == \
        Reason.INSUFFICIENT_STAKE


def test_too_many_votes(chain):
    a = chain.keys[0]
    candidates = tuple(sorted(k.address for k in chain.keys[:4]))
    assert verdict(chain, chain.tx(a, Vote(candidates))) == Reason.TOO_MANY_VOTES


def test_unknown_candidate(chain):
    a, b = chain.keys[:2]
    chain.block([chain.tx(a, Stake(COIN))])
    assert verdict(chain, chain.tx(a, Vote((b.address,)))) == Reason.UNKNOWN_CANDIDATE


def test_register_and_unregister_agent(chain):
    a, b, key_a = chain.keys[0], chain.keys[1], chain.keys[3]
    assert verdict(chain, chain.tx(a, registration(a, key_a, "gateway-a"))) == \
        Reason.INSUFFICIENT_STAKE
    chain.block([chain.tx(a, Stake(chain.params.agent_min_stake))])
    chain.block([chain.tx(a, registration(a, key_a, "gateway-a", "tcp://10.0.0.2:7000"))])
    agent = chain.ledger.view_agent(a.address)
    # the owner (a) holds the stake; key_a only signs blocks for it
    assert (agent.name, agent.active, agent.pubkey) == ("gateway-a", True, key_a.pubkey)
    with chain.store.read() as txn:
        assert chain.ledger.view(txn).owner_of(key_a.pubkey) == a.address
    assert verdict(chain, chain.tx(a, registration(a, key_a, "again"))) == Reason.ALREADY_AGENT
    chain.block([chain.tx(b, Stake(COIN))])
    chain.block([chain.tx(b, Vote((a.address,)))])
    assert chain.ledger.view_agent(a.address).votes == COIN
    chain.block([chain.tx(a, UnregisterAgent())])
    assert not chain.ledger.view_agent(a.address).active
    assert verdict(chain, chain.tx(a, UnregisterAgent())) == Reason.NOT_AN_AGENT
    assert verdict(chain, chain.tx(b, Vote((a.address,)))) == Reason.UNKNOWN_CANDIDATE


def test_unregister_when_not_agent(chain):
    assert verdict(chain, chain.tx(chain.keys[0], UnregisterAgent())) == Reason.NOT_AN_AGENT


@pytest.mark.parametrize("name", ["", "   ", "bad\nname"])
def test_invalid_agent_name(chain, name):
    a = chain.keys[0]
    assert verdict(chain, chain.tx(a, registration(a, chain.keys[3], name))) == \
        Reason.INVALID_NAME


def test_producer_key_must_agree_and_sign_for_one_owner_only(chain):
    a, b, key = chain.keys[0], chain.keys[1], chain.keys[3]
    for owner in (a, b):
        chain.block([chain.tx(owner, Stake(chain.params.agent_min_stake))])
    good = registration(a, key, "gateway-a")
    # a binding signed for another owner, or not by the key, is refused
    assert verdict(chain, chain.tx(b, good)) == Reason.BAD_BINDING
    forged = good._replace(binding=chain.keys[2].sign(CHAIN_ID, b"\x00" * 32))
    assert verdict(chain, chain.tx(a, forged)) == Reason.BAD_BINDING
    assert verdict(chain, chain.tx(a, good._replace(epoch=1))) == Reason.BAD_BINDING
    chain.block([chain.tx(a, good)])
    # the key now signs for a: b cannot take it, even with a valid binding of its own
    assert verdict(chain, chain.tx(b, registration(b, key, "thief"))) == Reason.PRODUCER_IN_USE
    # the genesis agent's key is taken too
    assert verdict(chain, chain.tx(b, registration(b, chain.producer, "thief"))) == \
        Reason.PRODUCER_IN_USE


def test_owner_rotates_its_producer_key(chain):
    owner, old, new = chain.keys[0], chain.keys[3], chain.keys[2]
    chain.block([chain.tx(owner, Stake(chain.params.agent_min_stake))])
    chain.block([chain.tx(owner, registration(owner, old, "gateway"))])
    assert verdict(chain, chain.tx(owner, rotation(chain.keys[1], new))) == Reason.BAD_BINDING
    assert verdict(chain, chain.tx(chain.keys[1], rotation(chain.keys[1], new))) == \
        Reason.NOT_AN_AGENT
    chain.block([chain.tx(owner, rotation(owner, new))])
    assert chain.ledger.view_agent(owner.address).pubkey == new.pubkey
    with chain.store.read() as txn:
        view = chain.ledger.view(txn)
        # both keys stay the owner's: the old one may still be scheduled until the new set is
        # final, and evidence against it must still reach the owner's stake
        assert view.owner_of(old.pubkey) == view.owner_of(new.pubkey) == owner.address
    # the same key with a new reveal chain takes it over only from the next round
    chain.block([chain.tx(owner, rotation(owner, new, epoch=2))])
    with chain.store.read() as txn:
        view = chain.ledger.view(txn)
        record = view.producer(new.pubkey)
        assert (record.epoch, record.next_epoch) == (0, 2)
        assert record.next_from_round == view.schedule().round + 1


def test_rejected_tx_changes_nothing(chain):
    a, b = chain.keys[:2]
    good = chain.tx(a, Transfer(b.address, COIN))
    bad = chain.tx(b, Transfer(a.address, 10 * FUNDED))
    block, rejected = chain.build([bad, good])
    assert [tx for tx, _ in rejected] == [bad]
    assert block.txs == [good]
    chain.ledger.apply_block(block)
    assert chain.account(b).nonce == 0
    assert chain.account(b).balance == FUNDED + COIN
