"""SSP economics on a real ledger: the genesis distribution plan, vesting (cliff, then at once or
linear), locked tokens that cannot move, and the supply report (docs/protocol.md §8)."""

import pytest

from chain.errors import Reason
from chain.keys import KeyPair
from chain.genesis import GenesisError, from_json
from chain.supply import supply_report
from chain.calls import contract_address
from chain.tx import Call, Deploy, Stake, Transfer
from chain.vesting import vesting_address
from contracts.system import system_contract
from contracts.values import decode_value, encode_value
from contracts.vouchers import Voucher, sign_voucher
from tests.chainkit import CHAIN_ID, COIN, TEST_PARAMS, TOTAL, TestChain, registration

GRANT = 1_000_000 * COIN
CLIFF = 6


def release(chain, key):
    """Send ``release()`` to the team pool's vesting contract in a block; its receipt."""
    tx = chain.tx(key, Call(vesting_address("team"), "release", encode_value([]), 0, 200_000))
    block = chain.block([tx])
    return tx, chain.ledger.receipts(block.hash)[0]


def report(chain):
    with chain.store.read() as txn:
        return supply_report(chain.ledger.view(txn), chain.genesis, chain.ledger.head.height)


HOLDER = KeyPair.from_seed(bytes([3]) * 32)     # TestChain's keys[2]


def make(tmp_path, linear=0):
    chain = TestChain(tmp_path, n_keys=3, grants=((HOLDER.address, GRANT),), cliff=CLIFF,
                      linear=linear)
    assert chain.keys[2].address == HOLDER.address
    return chain


def test_team_grant_is_locked_until_the_cliff_then_released_at_once(tmp_path):
    chain = make(tmp_path)
    holder, other = chain.keys[2], chain.keys[0]
    contract = vesting_address("team")
    assert chain.account(contract).balance == GRANT
    assert report(chain)["locked"] == GRANT
    # Locked tokens are not the holder's: a transfer of them is refused, release fails.
    spendable = chain.account(holder).balance
    too_much = chain.tx(holder, Transfer(other.address, spendable + GRANT // 2))
    _, rejected = chain.build([too_much])
    assert [exc.reason for _, exc in rejected] == [Reason.INSUFFICIENT_BALANCE]
    tx, receipt = release(chain, holder)
    assert receipt.status == 1 and f"locked until height {CLIFF}" in receipt.error
    tx2, receipt2 = release(chain, other)
    assert receipt2.status == 1 and "no grant" in receipt2.error
    assert chain.account(contract).balance == GRANT and chain.supply() == TOTAL
    while chain.ledger.head.height < CLIFF - 1:
        chain.block([])
    before = chain.account(holder).balance
    tx, receipt = release(chain, holder)          # the block at the cliff's height
    assert receipt.status == 0 and decode_value(receipt.return_value) == GRANT
    assert chain.account(holder).balance == before - tx.fee + GRANT
    assert chain.account(contract).balance == 0
    _, receipt = release(chain, holder)
    assert receipt.status == 1 and "nothing more" in receipt.error
    chain.block([chain.tx(holder, Transfer(other.address, GRANT))])   # now it moves
    doc = report(chain)
    assert doc["locked"] == 0
    assert doc["circulating"] == TOTAL - doc["reward_pool"] - doc["participation_pool"]
    assert chain.supply() == TOTAL


def test_linear_vesting_releases_exact_amounts(tmp_path):
    linear = 7
    chain = make(tmp_path, linear=linear)
    contract, released = vesting_address("team"), 0
    while chain.ledger.head.height < CLIFF + 1:
        chain.block([])
    for _ in range(2):                          # at heights cliff+3 and cliff+5
        chain.block([])
        tx, receipt = release(chain, HOLDER)
        height = chain.ledger.head.height
        due = GRANT * (height - CLIFF) // linear - released
        assert receipt.status == 0, receipt.error
        assert decode_value(receipt.return_value) == due
        released += due
        assert report(chain)["locked"] == GRANT - GRANT * (height - CLIFF) // linear
    while chain.ledger.head.height < CLIFF + linear:
        chain.block([])
    _, receipt = release(chain, HOLDER)
    assert decode_value(receipt.return_value) == GRANT - released
    assert chain.account(contract).balance == 0 and chain.supply() == TOTAL


def test_supply_report_adds_up(tmp_path):
    chain = make(tmp_path)
    doc = report(chain)
    assert doc["total"] == TOTAL and doc["locked"] == GRANT and doc["releasable"] == 0
    assert doc["circulating"] + doc["locked"] + doc["releasable"] + doc["reward_pool"] \
        + doc["participation_pool"] == TOTAL
    names = {p["name"]: p for p in doc["pools"]}
    assert names["team"]["held"] == GRANT and names["team"]["contract"] == vesting_address("team")
    assert names["ecological"]["held"] == doc["reward_pool"]
    assert sum(p["amount"] for p in doc["pools"]) == TOTAL
    while chain.ledger.head.height < CLIFF:
        chain.block([])
    doc = report(chain)          # vested, not yet released: no longer locked, not circulating
    assert doc["locked"] == 0 and doc["releasable"] == GRANT
    assert doc["circulating"] + doc["releasable"] + doc["reward_pool"] \
        + doc["participation_pool"] == TOTAL


# -- participation rewards ------------------------------------------------------------------------

EPOCH = 6
CAP = 40 * COIN
REWARDS = 100 * COIN            # two and a half epochs of the cap
PARAMS = TEST_PARAMS._replace(epoch_blocks=EPOCH, participation_cap=CAP,
                              participation_agent_permille=200)
CHANNEL_GAS = {"deploy": 900_000, "open": 80_000, "redeem": 80_000, "close": 100_000,
               "channel": 50_000}


class Market:
    """Payment channels of one ``payment_channel`` contract on a TestChain, driven by hand."""

    def __init__(self, chain, agent):
        self.chain = chain
        tx = chain.tx(agent, Deploy(system_contract("payment_channel").encode(),
                                    encode_value([]), CHANNEL_GAS["deploy"]))
        self.contract = contract_address(agent.address, tx.nonce)
        self.fees = {}
        self.send(agent, tx)

    def send(self, key, tx):
        """Include ``tx`` in the next block; its receipt must succeed."""
        block = self.chain.block([tx])
        receipt = self.chain.ledger.receipts(block.hash)[0]
        assert receipt.status == 0, receipt.error
        self.fees[key.address] = self.fees.get(key.address, 0) + tx.fee
        return receipt

    def call(self, key, method, args, value=0):
        return self.send(key, self.chain.tx(key, Call(self.contract, method, encode_value(args),
                                                      value, CHANNEL_GAS[method])))

    def open(self, buyer, seller, cid, deposit, voucher_key=None):
        voucher_key = voucher_key or buyer
        self.call(buyer, "open", [cid, seller.address, voucher_key.pubkey, 10_000, None, None,
                                  3_600_000], deposit)
        return voucher_key

    def redeem(self, seller, voucher_key, cid, amount, nonce, method="redeem"):
        voucher = Voucher(CHAIN_ID, self.contract, seller.address, cid, amount, nonce)
        signature = sign_voucher(voucher_key._signing_key, voucher)
        receipt = self.call(seller, method, [cid, amount, nonce, signature])
        return receipt


def until_height(chain, height):
    while chain.ledger.head.height < height:
        chain.block([])


def pool_state(chain):
    with chain.store.read() as txn:
        return chain.ledger.view(txn).participation()


def claim(market, key):
    """A contract transaction of ``key`` takes its rewards of closed epochs first (so does new
    weight in a later epoch): a call reading a channel that does not exist."""
    market.call(key, "channel", [b"none"])


def rewarded(market, keys, start, received):
    """What each key gained beyond its payments received and its fees."""
    return {k: market.chain.account(k).balance - start[k.address] - received.get(k, 0)
            + market.fees.get(k.address, 0) for k in keys}


def expected_rewards(epochs, pool, cap):
    """The spec's arithmetic: per epoch, pot = min(cap, pool left); each participant gets
    floor(weight × floor(pot × 2^64 / total) / 2^64)."""
    paid = {}
    for weights in epochs:
        total = sum(weights.values())
        pot = min(cap, pool) if total else 0
        pool -= pot
        per = (pot << 64) // total if total else 0
        for who, weight in weights.items():
            paid[who] = paid.get(who, 0) + (weight * per >> 64)
    return paid, pool


def split(paid):
    to_agent = paid * 200 // 1000
    return paid - to_agent, to_agent


def test_participation_rewards_over_epochs_with_exact_sums(tmp_path):
    chain = TestChain(tmp_path, n_keys=5, params=PARAMS, participation=REWARDS)
    keys = agent, s1, s2, b1, b2 = chain.keys
    start = {k.address: chain.account(k).balance for k in keys}
    market = Market(chain, agent)                                    # height 1
    market.open(b1, s1, b"one", 500 * COIN)                          # 2
    market.open(b2, s2, b"two", 500 * COIN)                          # 3
    market.redeem(s1, b1, b"one", 30 * COIN, 1)                      # 4: epoch 0
    until_height(chain, EPOCH)
    market.redeem(s1, b1, b"one", 40 * COIN, 2)                      # 7: epoch 1
    market.redeem(s2, b2, b"two", 50 * COIN, 1, method="close")      # 8
    market.open(b2, s2, b"three", 100 * COIN)                        # 9
    until_height(chain, 2 * EPOCH)
    market.redeem(s2, b2, b"three", 20 * COIN, 1)                    # 13: epoch 2
    until_height(chain, 4 * EPOCH)                                   # epochs 2 and 3 close
    e0, e1a, e1b, e2 = (split(amount * COIN) for amount in (30, 10, 50, 20))
    epochs = [{s1: e0[0], agent: e0[1]},
              {s1: e1a[0], s2: e1b[0], agent: e1a[1] + e1b[1]},
              {s2: e2[0], agent: e2[1]}]
    want, left = expected_rewards(epochs, REWARDS, CAP)
    record = pool_state(chain)
    assert record.pool == left == REWARDS - 2 * CAP - min(CAP, REWARDS - 2 * CAP) == 0
    assert record.weight == 0 and record.epoch == 4
    for key in keys:
        claim(market, key)
    refunds = {b2: 500 * COIN - 50 * COIN}
    got = rewarded(market, keys, start, {s1: 40 * COIN, s2: 70 * COIN, b1: -500 * COIN,
                                         b2: -600 * COIN + refunds[b2]})
    assert got[b1] == got[b2] == 0                       # buyers earn nothing
    assert {k: got[k] for k in (agent, s1, s2)} == want
    assert 0 < REWARDS - sum(got.values()) < 10          # floors leave a few units of dust
    record = pool_state(chain)
    assert record.pool + record.payable + sum(got.values()) == REWARDS   # exact to the unit
    before, fees = chain.account(s1).balance, market.fees[s1.address]
    claim(market, s1)                                    # paid once: now it only pays a fee
    assert chain.account(s1).balance == before - (market.fees[s1.address] - fees)
    assert chain.supply() == TOTAL


def test_self_dealing_pairs_earn_nothing_beyond_their_fees(tmp_path):
    chain = TestChain(tmp_path, n_keys=6, params=PARAMS, participation=REWARDS)
    keys = agent, seller, buyer, owner, keyed, producer = chain.keys
    market = Market(chain, agent)
    market.open(buyer, seller, b"fair", 100 * COIN)
    # One owner's wallets: (1) a buyer whose voucher key is the seller's own key; (2) an
    # agent's producer key selling to that agent's owner.
    market.open(keyed, seller, b"own-key", 100 * COIN, voucher_key=seller)
    market.send(owner, chain.tx(owner, Stake(PARAMS.agent_min_stake)))
    market.send(owner, chain.tx(owner, registration(owner, producer, "owned")))
    market.open(owner, producer, b"own-agent", 100 * COIN)
    until_height(chain, EPOCH)
    start = {k.address: chain.account(k).balance for k in keys}
    market.fees.clear()
    market.redeem(seller, buyer, b"fair", 10 * COIN, 1)
    market.redeem(seller, seller, b"own-key", 90 * COIN, 1, method="close")
    market.redeem(producer, owner, b"own-agent", 90 * COIN, 1, method="close")
    assert pool_state(chain).weight == 10 * COIN         # only the fair settlement counts
    until_height(chain, 2 * EPOCH)
    for key in keys:
        claim(market, key)
    fair = split(10 * COIN)
    want, _ = expected_rewards([{seller: fair[0], agent: fair[1]}], REWARDS, CAP)
    # The owner of an agent earns block rewards besides: count the sellers, buyers and the
    # one-wallet pair by balance, and the whole pool for everyone.
    plain = (agent, seller, buyer, keyed, producer)
    got = rewarded(market, plain, start, {seller: 100 * COIN, keyed: 10 * COIN,
                                          producer: 90 * COIN})
    assert got == {agent: want[agent], seller: want[seller], buyer: 0, keyed: 0, producer: 0}
    record = pool_state(chain)
    assert record.pool + record.payable + want[agent] + want[seller] == REWARDS
    # The one-wallet pair ends exactly where it began, less the fees it paid.
    assert chain.account(keyed).balance - start[keyed.address] + market.fees[keyed.address] \
        == 10 * COIN                                    # its refund: the deposit less the 90 paid
    assert chain.supply() == TOTAL
