"""A write-buffered view of the latest state, used to execute one block.

Reads fall through to the committed state; writes stay in ``changes`` until the block commits
them together with its SMT update (chain.ledger). Nothing here touches LMDB directly.
"""

from chain.state import records
from chain.state.consensus import Finality, Producer, RoundInfo, RoundVotes
from chain.state.records import Account, Agent, Schedule

EMPTY_ACCOUNT = Account()


class StateView:
    """Typed access to state records over ``read(key) -> bytes | None``."""

    def __init__(self, read, base=None, versions=None):
        self._read = read
        self.changes = {}
        # The state this view's block starts from (a heavy call reads only it), and the reader
        # of an older state version, ``versions(version) -> read`` (heavy-result evidence).
        self.base = base or read
        self.versions = versions

    def child(self):
        """A view on top of this one whose writes stay apart until ``merge`` (a contract call
        that may fail)."""
        return StateView(self.get, self.base, self.versions)

    def merge(self, child):
        """Take a child view's writes."""
        self.changes.update(child.changes)

    def get(self, key):
        if key in self.changes:
            return self.changes[key]
        return self._read(key)

    def put(self, key, value):
        self.changes[key] = value

    def account(self, address):
        raw = self.get(records.account_key(address))
        return Account.decode(raw) if raw is not None else EMPTY_ACCOUNT

    def set_account(self, address, account):
        self.put(records.account_key(address), None if account.is_empty() else account.encode())

    def agent(self, address):
        raw = self.get(records.agent_key(address))
        return Agent.decode(raw) if raw is not None else None

    def set_agent(self, address, agent):
        self.put(records.agent_key(address), agent.encode())

    def agent_addresses(self):
        raw = self.get(records.AGENTS_KEY)
        return records.decode_address_list(raw) if raw is not None else ()

    def set_agent_addresses(self, addresses):
        self.put(records.AGENTS_KEY, records.encode_address_list(addresses))

    def schedule(self):
        raw = self.get(records.SCHEDULE_KEY)
        if raw is None:
            raise LookupError("the state holds no producer schedule")
        return Schedule.decode(raw)

    def set_schedule(self, schedule):
        self.put(records.SCHEDULE_KEY, schedule.encode())

    def producer(self, pubkey):
        """The record of block-signing key ``pubkey``, or None."""
        raw = self.get(records.producer_key(pubkey))
        return Producer.decode(raw) if raw is not None else None

    def set_producer(self, pubkey, producer):
        self.put(records.producer_key(pubkey), producer.encode())

    def owner_of(self, pubkey):
        """The agent address a block-signing key belongs to, or None."""
        producer = self.producer(pubkey)
        return producer.owner if producer is not None else None

    def finality(self):
        return Finality.decode(self._required(records.FINALITY_KEY, "finality record"))

    def set_finality(self, finality):
        self.put(records.FINALITY_KEY, finality.encode())

    def round_info(self):
        return RoundInfo.decode(self._required(records.ROUND_KEY, "round record"))

    def set_round_info(self, info):
        self.put(records.ROUND_KEY, info.encode())

    def round_votes(self):
        return RoundVotes.decode(self._required(records.ROUND_VOTES_KEY, "round votes"))

    def set_round_votes(self, votes):
        self.put(records.ROUND_VOTES_KEY, votes.encode())

    def _required(self, key, what):
        raw = self.get(key)
        if raw is None:
            raise LookupError(f"the state holds no {what}")
        return raw

    def pool(self):
        raw = self.get(records.POOL_KEY)
        return records.decode_amount(raw) if raw is not None else 0

    def set_pool(self, amount):
        self.put(records.POOL_KEY, records.encode_amount(amount))

    def reward_checkpoint(self, voter, agent):
        """``agent``'s reward per vote when ``voter`` last settled with it (None: never)."""
        raw = self.get(records.voter_key(voter, agent))
        return records.decode_checkpoint(raw) if raw is not None else None

    def set_reward_checkpoint(self, voter, agent, value):
        self.put(records.voter_key(voter, agent),
                 None if value is None else records.encode_checkpoint(value))

    def participation(self):
        """The participation-reward record (None on a chain without one)."""
        raw = self.get(records.PARTICIPATION_KEY)
        return records.Participation.decode(raw) if raw is not None else None

    def set_participation(self, record):
        self.put(records.PARTICIPATION_KEY, record.encode())

    def participant(self, address):
        raw = self.get(records.participant_key(address))
        return records.Participant.decode(raw) if raw is not None else None

    def set_participant(self, address, record):
        self.put(records.participant_key(address), None if record is None else record.encode())

    def epoch_reward(self, epoch):
        """Reward per unit of weight (times 2^64) of a closed epoch, 0 when it paid nothing."""
        raw = self.get(records.epoch_reward_key(epoch))
        return records.decode_epoch_reward(raw) if raw is not None else 0

    def set_epoch_reward(self, epoch, value):
        self.put(records.epoch_reward_key(epoch), records.encode_epoch_reward(value))

    def load(self):
        """Gas limits of the contract transactions of the last block (network load, §9)."""
        raw = self.get(records.LOAD_KEY)
        return records.decode_amount(raw) if raw is not None else 0

    def set_load(self, gas):
        self.put(records.LOAD_KEY, records.encode_amount(gas))

    def heavy(self, tx_id):
        raw = self.get(records.heavy_key(tx_id))
        return records.HeavyRecord.decode(raw) if raw is not None else None

    def set_heavy(self, tx_id, record):
        self.put(records.heavy_key(tx_id), record.encode())

    def heavy_expiry(self, height):
        """Ids of the heavy records block ``height`` wrote."""
        raw = self.get(records.heavy_expiry_key(height))
        return records.decode_tx_ids(raw) if raw is not None else ()

    def set_heavy_expiry(self, height, ids):
        self.put(records.heavy_expiry_key(height), records.encode_tx_ids(ids) if ids else None)

    def unbond_queue(self, height):
        raw = self.get(records.unbond_key(height))
        return records.decode_address_list(raw) if raw is not None else ()

    def set_unbond_queue(self, height, addresses):
        key = records.unbond_key(height)
        self.put(key, records.encode_address_list(addresses) if addresses else None)
