"""Addresses, key files and the genesis document: formats and their error messages."""

import json
import os
import stat

import pytest

from tests.chainkit import genesis_agent

from chain.address import AddressError, decode_address, encode_address
from chain.genesis import Genesis, GenesisError, devnet, from_json
from chain.keys import KeyFileError, KeyPair
from chain.params import Params

ADDRESS = encode_address(bytes(range(20)))


@pytest.mark.parametrize("text, message", [
    (ADDRESS[:-1] + ("q" if ADDRESS[-1] != "q" else "p"), "checksum"),
    (ADDRESS[:8] + ADDRESS[9] + ADDRESS[8] + ADDRESS[10:], "checksum"),
    ("btc1" + ADDRESS[4:], "must start with"),
    (ADDRESS + "q", "expected 38"),
    (ADDRESS[:10] + "b" + ADDRESS[11:], "not used in addresses"),
    (ADDRESS[:5] + ADDRESS[5:].upper(), "mixes upper and lower"),
])
def test_mistyped_addresses(text, message):
    if text == ADDRESS:
        pytest.skip("mutation produced the same text")
    with pytest.raises(AddressError, match=message):
        decode_address(text)


def test_every_single_character_typo_is_caught():
    alphabet = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
    for i in range(4, len(ADDRESS)):
        for c in alphabet:
            if c != ADDRESS[i]:
                with pytest.raises(AddressError):
                    decode_address(ADDRESS[:i] + c + ADDRESS[i + 1:])


def test_key_file_mode_and_secrecy(tmp_path):
    pair = KeyPair.generate()
    path = tmp_path / "key.json"
    pair.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert KeyPair.load(path).pubkey == pair.pubkey
    seed = json.loads(path.read_text())["seed"]
    assert seed not in repr(pair) and seed not in str(pair)
    with pytest.raises(FileExistsError):
        pair.save(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        KeyPair.load(path)


def test_key_file_errors(tmp_path):
    with pytest.raises(KeyFileError, match="does not exist"):
        KeyPair.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{\"type\": \"ed25519\", \"seed\": \"zz\"}")
    os.chmod(bad, 0o600)
    with pytest.raises(KeyFileError, match="not a valid"):
        KeyPair.load(bad)


def devnet_doc():
    agent, faucet = KeyPair.from_seed(b"\x01" * 32), KeyPair.from_seed(b"\x02" * 32)
    owner = KeyPair.from_seed(b"\x03" * 32)
    return devnet("ss-dev", 1_795_600_000_000, genesis_agent(agent, "devnet-agent", owner.address),
                  faucet.address).to_json()


def test_genesis_round_trip(tmp_path):
    doc = devnet_doc()
    genesis = from_json(doc)
    path = tmp_path / "genesis.json"
    genesis.save(path)
    loaded = Genesis.load(path)
    assert loaded == genesis and loaded.hash == genesis.hash
    assert genesis.total_supply == 10**17
    assert sum(a.balance + a.stake for a in genesis.allocations) + genesis.reward_pool \
        + genesis.participation_pool == 10**17
    assert sum(p.amount for p in genesis.pools) == 10**17
    assert [p.name for p in genesis.pools] == ["private_placement", "foundation", "team",
                                               "ecological"]


def test_pool_must_pay_exactly_its_allocations():
    doc = devnet_doc()
    team = next(a for a in doc["allocations"] if a["pool"] == "team")
    team["pool"] = "foundation"      # same total, the wrong pools
    with pytest.raises(GenesisError, match="pool 'foundation' holds"):
        from_json(doc)
    team["pool"], team["stake"], team["balance"] = "team", team["balance"], "0"
    with pytest.raises(GenesisError, match="its grants cannot be staked"):
        from_json(doc)


def mutated(**changes):
    doc = devnet_doc()
    for path, value in changes.items():
        target = doc
        *parents, leaf = path.split("__")
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        target[leaf] = value
    return doc


@pytest.mark.parametrize("doc, message", [
    (mutated(total_supply="100000000000000001"), "exactly 1,000,000,000 SSP"),
    (mutated(reward_pool="1"), "not the total supply"),
    (mutated(chain_id="Bad Chain"), "chain_id"),
    (mutated(reward_pool=10**16), "string of decimal digits"),
    (mutated(reward_pool="1e16"), "string of decimal digits"),
    (mutated(params__slot_ms=0), "slot_ms must be positive"),
    (mutated(params__warp_drive=1), "unknown parameter"),
    (mutated(params__block_reward=5), "string of decimal digits"),
    (mutated(allocations__0__address="ssp1nope"), "allocations\\[0\\]"),
    (mutated(agents__0__pubkey="00"), "64 hex"),
    (mutated(agents__0__commit="ab"), "commit must be 64 hex"),
    (mutated(agents__0__owner="ssp1nope"), "agents\\[0\\].owner"),
    (mutated(params__evidence_window=50), "unbonding_blocks must be at least"),
    (mutated(agents=[]), "at least one agent"),
    (mutated(decimals=9), "decimals"),
    (mutated(vm=None), "genesis field 'vm'"),
    (mutated(vm={"lua": "5.4.8", "lupa": "2.8"}), "genesis field 'vm'"),
    (mutated(vm__lua="é" * 9), "version texts"),
    (mutated(vm__lupa="2.8\n"), "version texts"),
    (mutated(vm__gas_schedule=True), "gas_schedule"),
    (mutated(vm__gas_schedule=1 << 32), "gas_schedule"),
    (mutated(params__max_block_bytes=1000), "max_block_bytes"),
    (mutated(params__max_block_gas=10), "max_gas_per_tx must be positive and at most"),
    (mutated(params__max_gas_per_tx=2 * 10**9, params__max_block_gas=2 * 10**9),
     "quarter slot"),
    (mutated(pools=[]), "1..16 pools"),
    (mutated(pools__0__amount="1"), "the pools come to"),
    (mutated(pools__0__name="foundation"), "pool name is used twice"),
    (mutated(pools__0__kind="rewards"), "exactly one pool must be of kind 'rewards'"),
    (mutated(pools__0__kind="gift"), "kind must be one of"),
    (mutated(pools__2__vesting=None), "needs \"vesting\""),
    (mutated(pools__2__vesting={"cliff_blocks": -1, "linear_blocks": 0}), "vesting blocks"),
    (mutated(pools__2__vesting={"cliff_blocks": 0, "linear_blocks": 0}), "needs cliff_blocks"),
    (mutated(pools__0__vesting={"cliff_blocks": 5, "linear_blocks": 0}), "only it"),
    (mutated(allocations__0__pool="nowhere"), "must name one of the pools"),
])
def test_genesis_errors(doc, message):
    with pytest.raises(GenesisError, match=message):
        from_json(doc)


def test_agent_needs_genesis_stake():
    doc = devnet_doc()
    staked = next(a for a in doc["allocations"] if a["stake"] != "0")
    staked["balance"] = str(int(staked["balance"]) + int(staked["stake"]))
    staked["stake"] = "0"
    with pytest.raises(GenesisError, match="needs a stake"):
        from_json(doc)


def test_params_problems():
    assert Params().problems() == []
    assert Params(max_votes=65).problems()


def test_production_genesis_template_parameters_are_valid():
    """docs/genesis-production.json: the documented production numbers pass every rule."""
    import json
    from pathlib import Path
    from chain.genesis import _parse_params, _parse_pool
    doc = json.loads(Path(__file__).resolve().parents[1].joinpath(
        "docs", "genesis-production.json").read_text())
    params = _parse_params(doc["params"])
    assert params.producers_per_round == 21 and params.standby_slots == 1
    pools = [_parse_pool(p, i) for i, p in enumerate(doc["pools"])]
    assert sum(p.amount for p in pools) == int(doc["total_supply"]) == 10**17
    team = next(p for p in pools if p.name == "team")
    assert team.cliff_blocks * params.slot_ms == 365 * 86_400_000     # a 12-month cliff
    assert params.unbonding_blocks >= params.evidence_window >= 24 * 3600 * 1000 // params.slot_ms
