"""Heavy contract calls and adaptive verification on real ledgers (docs/protocol.md §9): every
node runs them under the load threshold, only the producer above it; a validator takes the
producer's result without running it, re-runs it lazily, and a wrong result is proved and
slashed."""

import asyncio

import pytest

from chain import heavy
from chain.block import Block, tx_root
from chain.calls import contract_address
from chain.errors import BlockRejected, Reason, TxRejected
from chain.execute import check_static
from chain.tx import Call, Deploy, Evidence, HeavyResult, Tx
from contracts.values import decode_value, encode_value
from tests.chainkit import CHAIN_ID, TEST_PARAMS, TOTAL, TestChain
from tests.lightkit import Clock, FullPeer, Light

HEAVY_GAS = 300_000
PARAMS = TEST_PARAMS._replace(heavy_gas=HEAVY_GAS, heavy_load_gas=2 * HEAVY_GAS,
                              heavy_window=3)
CODE = b"""
function init() chain.storage.set("n", chain.encode(0)) end
function crunch(n)
  local acc = 0
  for i = 1, n do acc = (acc * 31 + i) % 1000003 end
  chain.storage.set("n", chain.encode(acc))       -- a heavy call keeps nothing
  chain.emit("crunched", {n = n, acc = acc})
  return acc
end
function stored() return chain.decode(chain.storage.get("n")) end
"""


class Pair:
    """A producer's ledger and a validator's, on one genesis: blocks the producer builds are
    applied to both."""

    def __init__(self, tmp_path, params=PARAMS):
        self.producer = TestChain(tmp_path / "producer", params=params)
        self.validator = TestChain(tmp_path / "validator", params=params)
        self.user = self.producer.keys[0]

    def block(self, txs=()):
        block = self.producer.block(txs)
        before = heavy.stats["executed"]
        self.validator.ledger.apply_block(block)
        ran = heavy.stats["executed"] - before
        return block, self.validator.ledger.receipts(block.hash), ran

    def call(self, method, args, gas, key=None):
        return self.producer.tx(key or self.user, Call(self.contract, method, encode_value(args),
                                                       0, gas))

    def load(self):
        """A block whose contract gas limits reach heavy_load_gas: the next is agent-verified."""
        return self.block([self.call("crunch", [10], HEAVY_GAS),
                           self.call("crunch", [11], HEAVY_GAS, self.producer.keys[2])])

    def mode(self):
        with self.validator.store.read() as txn:
            return heavy.mode(self.validator.ledger.view(txn), PARAMS)


@pytest.fixture
def pair(tmp_path):
    p = Pair(tmp_path)
    deploy = p.producer.tx(p.user, Deploy(CODE, encode_value([]), 200_000))
    p.contract = contract_address(p.user.address, deploy.nonce)
    p.block([deploy])
    return p


def expected_hash(pair, tx):
    """The result hash of ``tx`` run honestly on the validator's state before its block."""
    with pair.validator.store.read() as txn:
        view = pair.validator.ledger.view(txn)
        found = view.heavy(tx.id)
        return heavy.rerun(view.versions, found, PARAMS).result if found else None


def test_every_node_runs_heavy_calls_below_the_load_threshold(pair):
    assert pair.mode() == heavy.ALL
    tx = pair.call("crunch", [2000], HEAVY_GAS)
    block, receipts, ran = pair.block([tx])
    assert ran == 1                                   # the validator ran it too
    receipt = receipts[0]
    assert receipt.status == 0 and receipt.gas_used > 0 and receipt.events == ()
    assert len(decode_value(receipt.return_value)) == 32   # the result hash, nothing else
    assert not any(isinstance(t.payload, HeavyResult) for t in block.txs)
    # It kept nothing: the contract's storage is as before.
    query = pair.call("stored", [], 100_000)
    _, receipts, _ = pair.block([query])
    assert decode_value(receipts[0].return_value) == 0
    # No value rides on a heavy call, and a heavy result is never sent on its own.
    with pytest.raises(TxRejected) as refused:
        check_static(pair.producer.tx(pair.user, Call(pair.contract, "crunch",
                                                      encode_value([1]), 5, HEAVY_GAS)),
                     CHAIN_ID, PARAMS)
    assert refused.value.reason == Reason.INVALID_AMOUNT
    lone = Tx(CHAIN_ID, pair.user.pubkey, 0, 0, HeavyResult(tx.id, 0, 1, bytes(32)))
    with pytest.raises(TxRejected, match="never sent"):
        check_static(lone.signed_by(pair.user), CHAIN_ID, PARAMS)


def test_the_switch_and_agent_verified_blocks(pair):
    # A block whose contract gas limits reach heavy_load_gas switches the next block.
    _, _, ran = pair.load()
    assert ran == 2 and pair.mode() == heavy.AGENT
    tx = pair.call("crunch", [3000], HEAVY_GAS)
    block, receipts, ran = pair.block([tx])
    assert ran == 0                                   # the validator took the producer's result
    assert [type(t.payload) for t in block.txs] == [Call, HeavyResult]
    result = block.txs[1]
    assert result.sender == block.header.producer and result.fee == 0
    assert decode_value(receipts[0].return_value) == result.payload.result \
        == expected_hash(pair, tx)
    assert pair.validator.ledger.head.state_root == pair.producer.ledger.head.state_root
    assert pair.mode() == heavy.ALL                   # that block's load was under the threshold
    assert heavy.audit(pair.validator.ledger, block.height) == []   # the lazy check agrees
    _, _, ran = pair.block([pair.call("crunch", [7], HEAVY_GAS)])
    assert ran == 1                                   # every node again
    assert pair.validator.supply() == TOTAL


def test_a_wrong_heavy_result_is_caught_and_slashed(pair):
    pair.load()
    honest = pair.producer.ledger.heavy_runner

    def lying(base, tx, header_info, params):
        return honest(base, tx, header_info, params)._replace(result=b"\x66" * 32)
    pair.producer.ledger.heavy_runner = lying         # this producer vouches for a wrong result
    tx = pair.call("crunch", [500], HEAVY_GAS)
    block, receipts, ran = pair.block([tx])
    pair.producer.ledger.heavy_runner = honest
    assert ran == 0 and decode_value(receipts[0].return_value) == b"\x66" * 32   # not checked yet
    assert heavy.audit(pair.validator.ledger, block.height) == [(tx.id, HEAVY_GAS)]
    owner = pair.producer.producer.address
    stake = pair.validator.account(owner).stake
    reporter = pair.producer.keys[1]
    cheap = pair.producer.tx(reporter, heavy.evidence_for(tx.id))   # does not pay the re-run
    _, rejected = pair.producer.build([cheap])
    assert [exc.reason for _, exc in rejected] == [Reason.FEE_TOO_LOW]
    evidence = evidence_tx(pair, reporter, tx.id)
    before = pair.validator.account(reporter).balance
    _, receipts, ran = pair.block([evidence])
    assert receipts[0].status == 0 and ran >= 1       # the evidence re-ran the call
    slashed = stake * PARAMS.slash_permille // 1000
    assert pair.validator.account(owner).stake == stake - slashed
    assert pair.validator.account(reporter).balance == \
        before - evidence.fee + slashed * PARAMS.reporter_permille // 1000
    assert pair.validator.ledger.view_agent(owner).jailed
    # Punished once; and a right result cannot be reported.
    _, rejected = pair.producer.build([evidence_tx(pair, reporter, tx.id)])
    assert [exc.reason for _, exc in rejected] == [Reason.DUPLICATE_EVIDENCE]
    assert pair.validator.supply() == TOTAL


def evidence_tx(pair, reporter, tx_id):
    """Heavy-result evidence paying for the re-run (the call's gas limit)."""
    payload = heavy.evidence_for(tx_id)
    probe = pair.producer.tx(reporter, payload)
    return pair.producer.tx(reporter, payload,
                            fee=PARAMS.min_fee_for(len(probe.raw) + 4, HEAVY_GAS))


def test_evidence_against_a_right_result_pays_and_changes_nothing_else(pair):
    pair.load()
    tx = pair.call("crunch", [400], HEAVY_GAS)
    height = pair.block([tx])[0].height
    reporter = pair.producer.keys[1]
    owner = pair.producer.producer.address
    stake, before = pair.validator.account(owner).stake, pair.validator.account(reporter).balance
    evidence = evidence_tx(pair, reporter, tx.id)
    _, receipts, _ = pair.block([evidence])
    assert receipts[0].status == 1 and "is right" in receipts[0].error
    assert pair.validator.account(reporter).balance == before - evidence.fee
    assert pair.validator.account(owner).stake == stake
    for payload, needle in ((heavy.evidence_for(b"\x01" * 32), "no agent-verified"),
                            (Evidence(bytes((heavy.TAG_EVIDENCE,)) + tx.id, b"x"), "nothing else")):
        _, rejected = pair.producer.build([pair.producer.tx(reporter, payload)])
        assert len(rejected) == 1 and needle in str(rejected[0][1])
    # Past heavy_window the claim is final: its record is gone and no evidence reaches it.
    with pair.validator.store.read() as txn:
        assert pair.validator.ledger.view(txn).heavy(tx.id).height == height
    while pair.validator.ledger.head.height <= height + PARAMS.heavy_window:
        pair.block([])
    with pair.validator.store.read() as txn:
        view = pair.validator.ledger.view(txn)
        assert view.heavy(tx.id) is None and view.heavy_expiry(height) == ()
    _, rejected = pair.producer.build([evidence_tx(pair, reporter, tx.id)])
    assert "no agent-verified" in str(rejected[0][1])


def tampered(pair, block, txs):
    header = block.header._replace(tx_root=tx_root(txs)).signed_by(pair.producer.producer,
                                                                   CHAIN_ID)
    return Block(header, txs, block.votes)


def test_a_validator_refuses_agent_blocks_without_the_producers_result(pair):
    # In an all-verified block a heavy result has no place.
    tx = pair.call("crunch", [100], HEAVY_GAS)
    block, _ = pair.producer.build([tx])
    producer = pair.producer.producer
    extra = Tx(CHAIN_ID, producer.pubkey, 0, 0, HeavyResult(tx.id, 0, 1, bytes(32)))
    with pytest.raises(BlockRejected, match="a heavy result must follow its heavy call"):
        pair.validator.ledger.apply_block(tampered(pair, block, [tx, extra.signed_by(producer)]))
    pair.load()
    tx = pair.call("crunch", [100], HEAVY_GAS)
    block, _ = pair.producer.build([tx])
    call, result = block.txs
    stranger = pair.producer.keys[3]
    forged = Tx(CHAIN_ID, stranger.pubkey, 0, 0, result.payload).signed_by(stranger)
    for txs, needle in (([call], "followed by the producer's result"),
                        ([call, forged], "from the block's producer key"),
                        ([call, result, result], "appears twice")):
        with pytest.raises(BlockRejected, match=needle):
            pair.validator.ledger.apply_block(tampered(pair, block, txs))
    pair.validator.ledger.apply_block(block)          # the real one is fine


def test_a_light_node_takes_a_heavy_receipt_once_irreversible_without_running_it(tmp_path):
    async def scenario():
        # a light node starts from a genesis younger than the evidence window
        p = Pair(tmp_path, PARAMS._replace(evidence_window=20, unbonding_blocks=20))
        deploy = p.producer.tx(p.user, Deploy(CODE, encode_value([]), 200_000))
        p.contract = contract_address(p.user.address, deploy.nonce)
        clock = Clock(p.producer.genesis)
        full = await FullPeer(p.producer, clock).start()
        light = await Light(tmp_path / "light", p.producer.genesis, clock,
                            [full.address]).start()
        try:
            async def produce(txs=()):
                made = full.produce(1, txs)[0]
                await light.until("each block", lambda: light.at(p.producer))
                return made
            await produce([deploy])
            await produce([p.call("crunch", [10], HEAVY_GAS),
                           p.call("crunch", [11], HEAVY_GAS, p.producer.keys[2])])
            tx = p.call("crunch", [900], HEAVY_GAS)
            block = await produce([tx])
            assert isinstance(block.txs[1].payload, HeavyResult)      # agent-verified
            ledger = p.producer.ledger
            while ledger.lib_height < block.height:
                await produce()
            await light.until("the LIB", lambda: light.chain.lib.height >= block.height)
            before = heavy.stats["executed"]
            found = await light.sync.tx_status(tx.id)
            assert heavy.stats["executed"] == before               # the light node ran nothing
            _, receipt, header = found
            assert header.hash == block.hash and header.height <= light.chain.lib.height
            assert receipt == ledger.receipts(block.hash)[0]
            assert decode_value(receipt.return_value) == block.txs[1].payload.result
        finally:
            await light.stop()
            await full.stop()
    asyncio.run(asyncio.wait_for(scenario(), 60))
