"""A real ledger on a temp LMDB with funded test keys, for rule and ledger tests."""

from functools import lru_cache

from chain import flat_state, participation
from chain.address import address_from_pubkey
from chain.dpos.reveal import RevealChain, binding_hash
from chain.genesis import Allocation, Genesis, GenesisAgent, simple_plan
from chain.keys import KeyPair
from chain.ledger import Ledger
from chain.params import SSP_SUPPLY, Params
from chain.producer import BlockSigner
from chain.state.records import Account, Agent
from chain.store import Store
from chain.tx import RegisterAgent, RotateProducer, Tx

CHAIN_ID = "ss-test"
COIN = 10**8
TOTAL = SSP_SUPPLY * COIN
POOL = 1_000_000 * COIN
FUNDED = 1_000 * COIN
TEST_PARAMS = Params(agent_min_stake=100 * COIN, unbonding_blocks=3, max_votes=3, heavy_window=2,
                     max_unbonding_entries=2, block_reward=5 * COIN, evidence_window=3)


@lru_cache(maxsize=None)
def _reveal_chain(seed, epoch):
    """Reveal chains of the fixed test keys, computed once per test session."""
    return RevealChain(KeyPair.from_seed(seed).reveal_secret(epoch))


def signer_for(key):
    """A BlockSigner of a test key (fresh watermark, reveal chains from the session cache)."""
    seed = key._signing_key.encode()
    return BlockSigner(key, chains=lambda epoch: _reveal_chain(seed, epoch))


def genesis_agent(key, name, owner=None):
    """A genesis agent whose producer is ``key`` (owned by ``owner``, default the key's own
    address)."""
    owner = key.address if owner is None else owner
    return GenesisAgent(key.pubkey, name, owner, signer_for(key).commitment(0))


def make_genesis(keys, producers, params=TEST_PARAMS, chain_id=CHAIN_ID, grants=(), cliff=0,
                 linear=0, participation=0):
    """``keys`` funded with FUNDED each; ``producers`` (a key or a list) are staked agents
    that own themselves; ``grants`` (``(address, amount)``) vest in a ``team`` pool;
    ``participation`` base units fund participation rewards."""
    producers = producers if isinstance(producers, list) else [producers]
    allocations = [Allocation(k.address, FUNDED) for k in keys]
    allocations += [Allocation(p.address, FUNDED, params.agent_min_stake) for p in producers]
    rest = TOTAL - POOL - sum(a.balance + a.stake for a in allocations) \
        - sum(amount for _, amount in grants) - participation
    allocations.append(Allocation(address_from_pubkey(bytes(32)), rest))
    pools, allocations = simple_plan(TOTAL, POOL, allocations, grants, cliff, linear,
                                     participation)
    return Genesis(chain_id, 1_700_000_000_000, 8, TOTAL, POOL, params, allocations,
                   tuple(genesis_agent(p, f"agent-{i}") for i, p in enumerate(producers)),
                   pools=pools, participation_pool=participation)


class TestChain:
    """A ledger on ``path`` whose ``keys`` hold FUNDED each and whose ``agents`` (``n_agents``
    staked producers; the first is ``producer``) are the genesis producers."""

    __test__ = False

    def __init__(self, path, n_keys=4, params=TEST_PARAMS, map_size=64 << 20, prune_depth=1000,
                 n_agents=1, **plan):
        # Seeds of one repeated byte below 150 (the agents' start at 0xAA), then numbered ones.
        self.keys = [KeyPair.from_seed(bytes([i + 1]) * 32 if i < 150
                                       else b"\x01" + i.to_bytes(31, "big"))
                     for i in range(n_keys)]
        self.agents = [KeyPair.from_seed(bytes([0xAA + i]) * 32) for i in range(n_agents)]
        self.producer = self.agents[0]
        self.signers = {k.pubkey: signer_for(k) for k in self.keys + self.agents}
        self.genesis = make_genesis(self.keys, self.agents, params, **plan)
        self.params = params
        self.path = str(path)
        self.store = Store(self.path, map_size=map_size)
        self.ledger = Ledger(self.store, self.genesis, prune_depth=prune_depth)

    def reopen(self):
        self.store.close()
        self.store = Store(self.path)
        self.ledger = Ledger(self.store, self.genesis, prune_depth=self.ledger.prune_depth)

    def tx(self, key, payload, nonce=None, fee=None, chain_id=CHAIN_ID):
        """A signed transaction paying the minimum fee unless told otherwise."""
        if nonce is None:
            nonce = self.ledger.account(key.address).nonce
        chosen = fee if fee is not None else self.params.min_fee_for(0, getattr(payload,
                                                                                "gas_limit", 0))
        while True:
            tx = Tx(chain_id, key.pubkey, nonce, chosen, payload).signed_by(key)
            floor = self.params.min_fee_for(len(tx.raw), getattr(payload, "gas_limit", 0))
            if fee is not None or chosen >= floor:
                return tx
            chosen = floor

    def next_slot(self):
        return self.ledger.head.slot + 1

    def signer(self, slot):
        """The BlockSigner of the test key scheduled for ``slot`` (agents elected later are
        test keys too)."""
        return self.signers[self.ledger.producer_for(slot)]

    def build(self, txs, slot=None):
        slot = slot or self.next_slot()
        return self.ledger.build_block(self.signer(slot), slot, txs)

    def block(self, txs=(), slot=None):
        """Build and apply a block holding ``txs``; every one must be valid."""
        block, rejected = self.build(list(txs), slot)
        assert not rejected, [str(exc) for _, exc in rejected]
        self.ledger.apply_block(block)
        return block

    def account(self, key_or_address):
        address = getattr(key_or_address, "address", key_or_address)
        return self.ledger.account(address)

    def supply(self):
        """Sum of every balance (the vesting contracts' among them), stake and unbonding amount,
        the agents' voter pools, the reward pool and the participation pool: always the genesis
        total supply."""
        return supply_in(self.store, self.ledger)


def supply_in(store, ledger):
    total = 0
    with store.read() as txn:
        for value in flat_state.values(txn, store.main):
            if value[0] == 0x10:
                a = Account.decode(value)
                total += a.balance + a.stake + a.unbonding_total
            elif value[0] == 0x11:
                total += Agent.decode(value).voter_pool
        total += ledger.view(txn).pool() + participation.held(ledger.view(txn))
    return total


def registration(owner, producer, name, endpoint="", epoch=0, chain_id=CHAIN_ID):
    """A RegisterAgent payload: ``owner`` (the sender) registers ``producer`` as its block
    key, with the key's binding signature over its reveal chain ``epoch``."""
    commit = signer_for(producer).commitment(epoch)
    binding = producer.sign(chain_id, binding_hash(owner.address, epoch, commit))
    return RegisterAgent(name, endpoint, producer.pubkey, epoch, commit, binding)


def rotation(owner, producer, epoch=0, chain_id=CHAIN_ID):
    """A RotateProducer payload moving ``owner``'s agent to ``producer``."""
    commit = signer_for(producer).commitment(epoch)
    binding = producer.sign(chain_id, binding_hash(owner.address, epoch, commit))
    return RotateProducer(producer.pubkey, epoch, commit, binding)
