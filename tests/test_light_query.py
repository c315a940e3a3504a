"""Contract queries on a light node: the call runs in the light node's own VM on values proven
against its last irreversible block, and answers exactly what a full node answers at that block,
even when a peer lies about the state (docs/protocol.md §13.7). Real ledgers, links and Lua."""

import asyncio

from chain import calls
from chain.calls import contract_address
from chain.light.query import ProvenQueries
from chain.state.view import StateView
from chain.tx import Deploy
from contracts.values import decode_value, encode_value
from tests.chainkit import TestChain
from tests.lightkit import Clock, FullPeer, Light
from tests.test_light_faults import PARAMS, state_liar

# A linked list in storage: each value names the next key, so a walk reads one key it could not
# know before the last one was proven (one round of proofs per link).
LINKS = b"""
function init(n)
  for i = 1, n do chain.storage.set("k" .. i, chain.encode("k" .. (i + 1))) end
end
function walk()
  local key, steps = "k1", 0
  while true do
    local raw = chain.storage.get(key)
    if raw == nil then return steps end
    key, steps = chain.decode(raw), steps + 1
  end
end
function fail() error("refused", 0) end
"""
GAS = 50_000


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def full_answer(chain, height, timestamp_ms, contract, method):
    """What the full node's own VM answers at ``height`` (the state version kept there)."""
    ledger = chain.ledger
    with ledger.store.read() as txn:
        view = StateView(lambda key: ledger.smt.get(txn, height, key))
        return calls.query(view, chain.genesis.chain_id, contract, method, [], height,
                           timestamp_ms, GAS)


def test_a_query_on_proven_state_matches_the_full_node_even_beside_a_liar(tmp_path):
    async def scenario():
        chain = TestChain(tmp_path / "full", n_agents=4, params=PARAMS)
        clock = Clock(chain.genesis)
        honest = await FullPeer(chain, clock).start()
        liar = await state_liar(chain, clock)
        light = await Light(tmp_path / "light", chain.genesis, clock,
                            [liar.address, honest.address]).start()
        owner = chain.keys[0]
        nonce = chain.account(owner).nonce
        contract = contract_address(owner.address, nonce)
        honest.produce(1, [chain.tx(owner, Deploy(LINKS, encode_value([6]), 1_000_000))])
        honest.produce(4 * 4)
        asked = []

        def read(header, keys):
            asked.append(len(keys))
            return _values(light, header, keys)
        queries = ProvenQueries(read, chain.genesis.chain_id, GAS)
        try:
            await light.until("a LIB past the deploy",
                              lambda: light.chain.ready and light.chain.lib.height > 1)
            lib = light.chain.lib
            walked = await queries.call(lib, contract, "walk", [])
            assert walked.ok and decode_value(walked.return_value) == 6
            assert walked == full_answer(chain, lib.height, lib.timestamp_ms, contract, "walk")
            assert len(asked) == 1 + 7  # code up front, then one round per link and the end
            failed = await queries.call(lib, contract, "fail", [])
            assert not failed.ok and "refused" in failed.error
            assert liar.key.pubkey in light.sync.manager.bans  # its lies were caught, not used
            stranger = contract_address(chain.keys[1].address, 99)
            try:
                await queries.call(lib, stranger, "walk", [])
            except LookupError:
                pass
            else:
                raise AssertionError("a query of a contract proven absent must fail")
        finally:
            queries.close()
            await light.stop()
            await honest.stop()
            await liar.stop()
    run(scenario())


async def _values(light, header, keys):
    values, _, _ = await light.sync.read(keys, header)
    return values
