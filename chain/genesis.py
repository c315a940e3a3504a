"""The genesis file: chain id, the fixed SSP supply and its distribution plan (named pools, the
allocations each pays, vesting), initial agents, parameters.

Stored as JSON with amounts as decimal strings of base units (integers only: no float ever
touches an amount). Its canonical encoding (docs/protocol.md §8) hashes to the genesis hash that
block 0 points back to.
"""

import json
import re
from typing import NamedTuple

from edge._fast.codec_py import (MAX_CHAIN_ID, MAX_NAME, PUBKEY_SIZE, encode_fixed, encode_text,
                                 encode_u8, encode_uvarint)
from chain.address import AddressError, address_from_pubkey, decode_address, encode_address
from chain.crypto import TAG_GENESIS, hash_of
from chain.dpos.election import elect
from chain.dpos.reveal import round_seed_start
from chain import vesting
from chain.params import SSP_SUPPLY, Params
from chain.state.consensus import (GENESIS_CHECKPOINT, Finality, Producer, RoundInfo,
                                   RoundVotes)
from chain.state.records import Account, Agent, Participation, Schedule
from contracts.system import system_contract
from contracts.vm import VmPin, running_pin

TAG_GENESIS_DOC = 0x20
MAX_VM_TEXT = 16
CHAIN_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
AMOUNT_RE = re.compile(r"^(0|[1-9][0-9]*)$")
VERSION_RE = re.compile(r"^[0-9A-Za-z.+-]{1,16}$")


# Payments through this contract count as settled service (chain/participation.py).
SETTLEMENT_CODE_HASH = hash_of(b"ss/code", system_contract("payment_channel").encode())


class GenesisError(ValueError):
    """The genesis document breaks a rule; the message says which and where."""


OPEN, REWARDS, VESTING = 0, 1, 2
POOL_KINDS = {"open": OPEN, "rewards": REWARDS, "vesting": VESTING}
MAX_POOLS = 16
MAX_VESTING_BLOCKS = 1 << 31   # keeps the vesting arithmetic inside 63 bits (chain/vesting.py)


class Pool(NamedTuple):
    """A named part of the supply (docs/protocol.md §8). An ``open`` pool pays its allocations
    outright; the ``rewards`` pool also holds the reward pool; a ``vesting`` pool's allocations
    are grants its vesting contract holds until ``cliff_blocks`` (then at once, or linearly
    over ``linear_blocks``)."""
    name: str
    amount: int
    kind: int = OPEN
    cliff_blocks: int = 0
    linear_blocks: int = 0

    @property
    def kind_name(self):
        return next(name for name, kind in POOL_KINDS.items() if kind == self.kind)


class Allocation(NamedTuple):
    """What ``address`` receives from pool number ``pool`` (a grant when that pool vests)."""
    address: bytes
    balance: int
    stake: int = 0
    pool: int = 0


class GenesisAgent(NamedTuple):
    """An agent from the start: its producer key, name, owner (who holds its stake and earns
    its rewards) and the commitment of the producer key's first reveal chain (epoch 0)."""
    pubkey: bytes
    name: str
    owner: bytes
    commit: bytes


class Genesis(NamedTuple):
    """A validated genesis document; ``vm`` pins what contracts run on (by default this
    process's VM)."""
    chain_id: str
    genesis_time_ms: int
    decimals: int
    total_supply: int
    reward_pool: int
    params: Params
    allocations: tuple
    agents: tuple
    vm: VmPin = running_pin()
    pools: tuple = ()
    participation_pool: int = 0
    settlement_code_hash: bytes = SETTLEMENT_CODE_HASH

    def encode(self):
        parts = [bytes((TAG_GENESIS_DOC,)), encode_text(self.chain_id, MAX_CHAIN_ID, "chain_id"),
                 encode_uvarint(self.genesis_time_ms), encode_u8(self.decimals, "decimals"),
                 encode_uvarint(self.total_supply), encode_uvarint(self.reward_pool),
                 encode_uvarint(self.participation_pool),
                 encode_fixed(self.settlement_code_hash, 32, "settlement_code_hash"),
                 self.params.encode(), encode_uvarint(len(self.pools))]
        for pool in self.pools:
            parts += [encode_text(pool.name, MAX_NAME, "pool.name"), encode_u8(pool.kind, "pool.kind"),
                      encode_uvarint(pool.amount), encode_uvarint(pool.cliff_blocks),
                      encode_uvarint(pool.linear_blocks)]
        parts.append(encode_uvarint(len(self.allocations)))
        for a in self.allocations:
            parts += [encode_fixed(a.address, 20, "allocation.address"),
                      encode_uvarint(a.balance), encode_uvarint(a.stake), encode_u8(a.pool, "allocation.pool")]
        parts.append(encode_uvarint(len(self.agents)))
        for agent in self.agents:
            parts += [encode_fixed(agent.pubkey, PUBKEY_SIZE, "agent.pubkey"),
                      encode_text(agent.name, MAX_NAME, "agent.name"),
                      encode_fixed(agent.owner, 20, "agent.owner"),
                      encode_fixed(agent.commit, 32, "agent.commit")]
        parts += [encode_text(self.vm.lua, MAX_VM_TEXT, "vm.lua"),
                  encode_text(self.vm.lupa, MAX_VM_TEXT, "vm.lupa"),
                  encode_uvarint(self.vm.gas_schedule)]
        return b"".join(parts)

    def vm_problem(self):
        """A sentence when this process's VM is not the one genesis pins (else None)."""
        running = running_pin()
        if running == self.vm:
            return None
        return (f"this chain's contracts run on {self.vm.text()}, this node has "
                f"{running.text()}: install lupa=={self.vm.lupa} (the project pins it) and the "
                "node release of that gas schedule")

    @property
    def hash(self):
        return hash_of(TAG_GENESIS, self.encode())

    def to_json(self):
        return {
            "chain_id": self.chain_id, "genesis_time_ms": self.genesis_time_ms,
            "decimals": self.decimals, "total_supply": str(self.total_supply),
            "reward_pool": str(self.reward_pool),
            "participation_pool": str(self.participation_pool),
            "settlement_code_hash": self.settlement_code_hash.hex(), "params": {
                k: (str(v) if k in _AMOUNT_PARAMS else v) for k, v in self.params._asdict().items()},
            "pools": [_pool_json(p) for p in self.pools],
            "allocations": [{"address": encode_address(a.address), "pool": self.pools[a.pool].name,
                             "balance": str(a.balance), "stake": str(a.stake)}
                            for a in self.allocations],
            "agents": [{"pubkey": a.pubkey.hex(), "name": a.name,
                        "owner": encode_address(a.owner), "commit": a.commit.hex()}
                       for a in self.agents],
            "vm": self.vm._asdict(),
        }

    def vesting_grants(self, index):
        """``(address, amount)`` of the grants vesting pool number ``index`` holds."""
        return [(a.address, a.balance) for a in self.allocations if a.pool == index]

    def save(self, path):
        with open(path, "w") as f:
            json.dump(self.to_json(), f, indent=2)
            f.write("\n")

    @classmethod
    def load(cls, path):
        try:
            with open(path) as f:
                doc = json.load(f)
        except FileNotFoundError:
            raise GenesisError(f"genesis file {path} does not exist") from None
        except json.JSONDecodeError as exc:
            raise GenesisError(f"genesis file {path} is not valid JSON ({exc})") from None
        return from_json(doc)


def _pool_json(pool):
    doc = {"name": pool.name, "kind": pool.kind_name, "amount": str(pool.amount)}
    if pool.kind == VESTING:
        doc["vesting"] = {"cliff_blocks": pool.cliff_blocks, "linear_blocks": pool.linear_blocks}
    return doc


_AMOUNT_PARAMS = {"min_fee", "fee_per_byte", "agent_min_stake", "block_reward", "gas_price",
                  "participation_cap"}


def from_json(doc):
    """Parse and validate a genesis document (a dict); raises GenesisError."""
    if not isinstance(doc, dict):
        raise GenesisError("genesis must be a JSON object")
    chain_id = _field(doc, "chain_id", str)
    if not CHAIN_ID_RE.match(chain_id):
        raise GenesisError("chain_id must be 1-32 characters of a-z, 0-9 and '-'")
    decimals = _field(doc, "decimals", int)
    if not 0 <= decimals <= 8:
        raise GenesisError("decimals must be 0..8 (10^9 SSP must fit in 64 bits)")
    params = _parse_params(doc.get("params", {}))
    pools = tuple(_parse_pool(p, i) for i, p in enumerate(_field(doc, "pools", list)))
    _check_pool_list(pools)
    index = {pool.name: i for i, pool in enumerate(pools)}
    genesis = Genesis(
        chain_id=chain_id, genesis_time_ms=_field(doc, "genesis_time_ms", int), decimals=decimals,
        total_supply=_amount(doc, "total_supply"), reward_pool=_amount(doc, "reward_pool"),
        participation_pool=_amount(doc, "participation_pool"),
        settlement_code_hash=_hash(doc, "settlement_code_hash"), params=params,
        allocations=tuple(sorted(_parse_allocation(a, i, index) for i, a in
                                 enumerate(_field(doc, "allocations", list)))),
        agents=tuple(_parse_agent(a, i) for i, a in enumerate(_field(doc, "agents", list))),
        vm=_parse_vm(doc.get("vm")), pools=pools)
    _check_totals(genesis)
    return genesis


def _parse_vm(raw):
    if not isinstance(raw, dict) or set(raw) != set(VmPin._fields):
        raise GenesisError("genesis field 'vm' must be {\"lua\": \"5.4.8\", \"lupa\": \"2.8\", "
                           "\"gas_schedule\": 2} (what its contracts run on)")
    lua, lupa, schedule = raw["lua"], raw["lupa"], raw["gas_schedule"]
    if not (isinstance(lua, str) and isinstance(lupa, str) and VERSION_RE.fullmatch(lua)
            and VERSION_RE.fullmatch(lupa) and type(schedule) is int and 0 < schedule < 1 << 32):
        raise GenesisError("genesis vm.lua and vm.lupa must be version texts (1..16 of "
                           "0-9 A-Z a-z . + -) and vm.gas_schedule a positive integer below 2^32")
    return VmPin(lua, lupa, schedule)


def _check_totals(g):
    expected = SSP_SUPPLY * 10**g.decimals
    if g.total_supply != expected:
        raise GenesisError(f"total_supply must be exactly 1,000,000,000 SSP = {expected} base units")
    allocated = sum(a.balance + a.stake for a in g.allocations) + g.reward_pool \
        + g.participation_pool
    if allocated != g.total_supply:
        raise GenesisError(f"allocations plus reward_pool and participation_pool come to "
                           f"{allocated} base units, not the total supply {g.total_supply}")
    _check_pools(g)
    addresses = [(a.address, a.pool) for a in g.allocations]
    if len(set(addresses)) != len(addresses):
        raise GenesisError("an address is allocated twice from one pool")
    if not g.agents:
        raise GenesisError("genesis needs at least one agent to produce blocks")
    if len({a.pubkey for a in g.agents}) != len(g.agents):
        raise GenesisError("an agent is listed twice")
    if len({a.owner for a in g.agents}) != len(g.agents):
        raise GenesisError("an owner has two agents")
    stakes = {}
    for a in g.allocations:
        stakes[a.address] = stakes.get(a.address, 0) + a.stake
    for agent in g.agents:
        if stakes.get(agent.owner, 0) < g.params.agent_min_stake:
            raise GenesisError(f"agent {agent.name!r} needs a stake of at least "
                               f"{g.params.agent_min_stake} base units in allocations")


def _check_pools(g):
    """The distribution plan: 1..16 pools with distinct names whose amounts add up to the total
    supply; each pays exactly its allocations (the rewards pool: also the reward pool)."""
    _check_pool_list(g.pools)
    if sum(p.amount for p in g.pools) != g.total_supply:
        raise GenesisError(f"the pools come to {sum(p.amount for p in g.pools)} base units, "
                           f"not the total supply {g.total_supply}")
    if [p.kind for p in g.pools].count(REWARDS) != 1:
        raise GenesisError("exactly one pool must be of kind 'rewards' (it holds reward_pool "
                           "and participation_pool)")
    for a in g.allocations:
        if a.pool >= len(g.pools):
            raise GenesisError(f"an allocation names pool number {a.pool}, there are {len(g.pools)}")
    for i, pool in enumerate(g.pools):
        paid = sum(a.balance + a.stake for a in g.allocations if a.pool == i)
        if pool.kind == REWARDS:
            paid += g.reward_pool + g.participation_pool
        if paid != pool.amount:
            raise GenesisError(f"pool {pool.name!r} holds {pool.amount} base units but pays "
                               f"{paid}")
        if pool.kind == VESTING:
            if any(a.stake for a in g.allocations if a.pool == i):
                raise GenesisError(f"pool {pool.name!r} vests: its grants cannot be staked")
            if not 0 < pool.cliff_blocks + pool.linear_blocks:
                raise GenesisError(f"pool {pool.name!r} vests: it needs cliff_blocks or "
                                   "linear_blocks")
        elif pool.cliff_blocks or pool.linear_blocks:
            raise GenesisError(f"pool {pool.name!r} does not vest: no cliff or linear blocks")


def _check_pool_list(pools):
    if not 0 < len(pools) <= MAX_POOLS:
        raise GenesisError(f"genesis needs 1..{MAX_POOLS} pools (the distribution plan)")
    if len({p.name for p in pools}) != len(pools):
        raise GenesisError("a pool name is used twice")


def _parse_pool(raw, i):
    where = f"pools[{i}]"
    if not isinstance(raw, dict):
        raise GenesisError(f"{where} must be an object")
    name = raw.get("name")
    if not isinstance(name, str) or not 0 < len(name.encode()) <= MAX_NAME \
            or not name.isprintable():
        raise GenesisError(f"{where}.name must be 1..{MAX_NAME} bytes of printable text")
    kind = raw.get("kind", "open")
    if kind not in POOL_KINDS:
        raise GenesisError(f"{where}.kind must be one of {', '.join(POOL_KINDS)}")
    vesting = raw.get("vesting")
    if (vesting is not None) != (kind == "vesting"):
        raise GenesisError(f"{where}: a pool of kind 'vesting' needs \"vesting\": "
                           "{\"cliff_blocks\": n, \"linear_blocks\": n}, and only it")
    cliff = linear = 0
    if vesting is not None:
        if not isinstance(vesting, dict) or set(vesting) != {"cliff_blocks", "linear_blocks"}:
            raise GenesisError(f"{where}.vesting must be {{\"cliff_blocks\": n, "
                               "\"linear_blocks\": n}")
        cliff, linear = vesting["cliff_blocks"], vesting["linear_blocks"]
        for value in (cliff, linear):
            if type(value) is not int or not 0 <= value < MAX_VESTING_BLOCKS:
                raise GenesisError(f"{where}.vesting blocks must be integers in "
                                   f"0..{MAX_VESTING_BLOCKS - 1}")
    return Pool(name, _amount(raw, "amount", where), POOL_KINDS[kind], cliff, linear)


def _hash(doc, name):
    try:
        value = bytes.fromhex(doc.get(name, ""))
    except (TypeError, ValueError):
        value = b""
    if len(value) != 32:
        raise GenesisError(f"genesis field {name!r} must be 64 hex characters")
    return value


def _field(doc, name, kind):
    value = doc.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise GenesisError(f"genesis field {name!r} must be a {kind.__name__}")
    return value


def _amount(doc, name, where="genesis field", default=None):
    value = doc.get(name, default)
    if not isinstance(value, str) or not AMOUNT_RE.match(value):
        raise GenesisError(f"{where} {name!r} must be a string of decimal digits (base units)")
    amount = int(value)
    if amount >= 1 << 64:
        raise GenesisError(f"{where} {name!r} does not fit in 64 bits")
    return amount


def _parse_params(raw):
    if not isinstance(raw, dict):
        raise GenesisError("genesis field 'params' must be an object")
    unknown = set(raw) - set(Params._fields)
    if unknown:
        raise GenesisError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
    values = {}
    for name, value in raw.items():
        if name in _AMOUNT_PARAMS:
            values[name] = _amount(raw, name, "parameter")
        elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 64:
            values[name] = value
        else:
            raise GenesisError(f"parameter {name!r} must be a non-negative integer")
    params = Params(**values)
    if params.problems():
        raise GenesisError("; ".join(params.problems()))
    return params


def _parse_allocation(raw, i, pools):
    where = f"allocations[{i}]"
    if not isinstance(raw, dict):
        raise GenesisError(f"{where} must be an object")
    try:
        address = decode_address(raw.get("address"))
    except AddressError as exc:
        raise GenesisError(f"{where}: {exc}") from None
    if raw.get("pool") not in pools:
        raise GenesisError(f"{where}.pool must name one of the pools "
                           f"({', '.join(pools) or 'none are listed'})")
    return Allocation(address, _amount(raw, "balance", where),
                      _amount(raw, "stake", where, default="0"), pools[raw["pool"]])


def _parse_agent(raw, i):
    where = f"agents[{i}]"
    if not isinstance(raw, dict):
        raise GenesisError(f"{where} must be an object")
    try:
        pubkey = bytes.fromhex(raw.get("pubkey", ""))
    except (TypeError, ValueError):
        pubkey = b""
    if len(pubkey) != PUBKEY_SIZE:
        raise GenesisError(f"{where}.pubkey must be 64 hex characters")
    name = raw.get("name")
    if not isinstance(name, str) or not 0 < len(name.encode()) <= MAX_NAME:
        raise GenesisError(f"{where}.name must be 1..{MAX_NAME} bytes of text")
    try:
        owner = decode_address(raw["owner"]) if "owner" in raw else address_from_pubkey(pubkey)
    except AddressError as exc:
        raise GenesisError(f"{where}.owner: {exc}") from None
    try:
        commit = bytes.fromhex(raw.get("commit", ""))
    except (TypeError, ValueError):
        commit = b""
    if len(commit) != 32:
        raise GenesisError(f"{where}.commit must be 64 hex characters: the first value of the "
                           "producer key's reveal chain (smartshare init writes it)")
    return GenesisAgent(pubkey, name, owner, commit)


def simple_plan(total, reward_pool, allocations, grants=(), cliff_blocks=0, linear_blocks=0,
                participation_pool=0):
    """``(pools, allocations)`` of a plain plan: ``ecological`` (rewards) holds the reward and
    participation pools,
    ``foundation`` pays ``allocations``, and ``team`` (when there are ``grants``, ``(address,
    amount)`` pairs) vests them; ``total`` must come out exactly."""
    pools = [Pool("ecological", reward_pool + participation_pool, REWARDS),
             Pool("foundation", sum(a.balance + a.stake for a in allocations))]
    out = [a._replace(pool=1) for a in allocations]
    if grants:
        pools.append(Pool("team", sum(amount for _, amount in grants), VESTING, cliff_blocks,
                          linear_blocks))
        out += [Allocation(address, amount, 0, 2) for address, amount in grants]
    if sum(p.amount for p in pools) != total:
        raise GenesisError("the plan does not add up to the total supply")
    return tuple(pools), tuple(sorted(out))


YEAR_MS = 365 * 86_400_000


def devnet(chain_id, genesis_time_ms, agent, faucet_address, params=None):
    """A single-producer devnet with the seed's four pools: ``ecological`` (the reward and
    participation pools),
    ``private_placement`` and ``foundation`` (to the faucet, and the agent's stake and fees),
    ``team`` (the agent's owner, locked for a year of slots)."""
    params = params or Params()
    decimals = 8
    coin = 10**decimals
    total = SSP_SUPPLY * coin
    reward_pool, participation = 100_000_000 * coin, 50_000_000 * coin
    placement, team = 200_000_000 * coin, 150_000_000 * coin
    agent_stake = params.agent_min_stake
    agent_balance = 1_000 * coin
    foundation = total - reward_pool - participation - placement - team
    pools = (Pool("private_placement", placement), Pool("foundation", foundation),
             Pool("team", team, VESTING, YEAR_MS // params.slot_ms, 0),
             Pool("ecological", reward_pool + participation, REWARDS))
    allocations = [Allocation(agent.owner, agent_balance, agent_stake, 1),
                   Allocation(faucet_address, foundation - agent_stake - agent_balance, 0, 1),
                   Allocation(faucet_address, placement, 0, 0),
                   Allocation(agent.owner, team, 0, 2)]
    genesis = Genesis(chain_id, genesis_time_ms, decimals, total, reward_pool, params,
                      tuple(sorted(allocations)), (agent,), pools=pools,
                      participation_pool=participation)
    _check_totals(genesis)
    return genesis


def apply_genesis(view, genesis):
    """Write the genesis allocations, agents and their producer keys, the reward pool, the
    first schedule and the finality rule into ``view``; each vesting pool's grants go to its
    vesting contract."""
    for a in genesis.allocations:
        if genesis.pools[a.pool].kind != VESTING:
            held = view.account(a.address)
            view.set_account(a.address, held._replace(balance=held.balance + a.balance,
                                                      stake=held.stake + a.stake))
    for index, pool in enumerate(genesis.pools):
        if pool.kind == VESTING:
            vesting.create(view, pool, genesis.vesting_grants(index))
    for agent in genesis.agents:
        view.set_agent(agent.owner, Agent(agent.pubkey, agent.name))
        view.set_producer(agent.pubkey, Producer(agent.owner, 0, agent.commit))
    view.set_agent_addresses(tuple(sorted(agent.owner for agent in genesis.agents)))
    view.set_pool(genesis.reward_pool)
    view.set_participation(Participation(genesis.participation_pool, 0, 0, 0,
                                         genesis.settlement_code_hash))
    # Round 0 follows the election rule with no votes yet: the agents ranked by owner address.
    elected, _ = elect([(agent.owner, 0) for agent in genesis.agents],
                       genesis.params.producers_per_round)
    keys = {agent.owner: agent.pubkey for agent in genesis.agents}
    order = tuple(keys[owner] for owner in elected)
    active = tuple(sorted(order))
    view.set_schedule(Schedule(0, 1, order))
    view.set_finality(Finality(GENESIS_CHECKPOINT, GENESIS_CHECKPOINT, active))
    view.set_round_info(RoundInfo(0, GENESIS_CHECKPOINT, GENESIS_CHECKPOINT, active))
    view.set_round_votes(RoundVotes(round_seed_start(genesis.hash, 0)))
