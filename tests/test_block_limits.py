"""Blocks always fit: the byte and gas limits of genesis, the budget a producer fills, the frame
sizes derived from them, and the genesis rules that tie gas to the slot (docs/protocol.md §8,
§9, §12.1). Real ledger on LMDB in a temp folder."""

import pytest

from chain.block import Block
from chain.block_limits import FRAME_OVERHEAD, MIN_FRAME, check_block, frame_limit, tx_gas
from chain.calls import backstop, contract_address
from chain.errors import BlockRejected
from chain.p2p import MAX_FRAME_CEILING, Blocks, BlockMsg, decode_message, encode_message
from chain.params import GAS_PER_SLOT_MS_BLOCK, GAS_PER_SLOT_MS_TX, Params
from chain.tx import HEAVY_EVIDENCE, Call, Deploy, Evidence, Transfer
from contracts.values import encode_value
from tests.chainkit import TEST_PARAMS, TestChain

MiB = 1 << 20
CODE = "function f(n) local s = 0 for i = 1, n do s = s + i end return s end\n"
# Small blocks (a deploy of max_code_bytes fills about a fifth) with room for gas.
SMALL = TEST_PARAMS._replace(max_block_bytes=48 * 1024, max_code_bytes=8192, slot_ms=4000,
                             max_block_gas=8_000_000, max_gas_per_tx=1_000_000)


def big_deploy(chain, key, nonce, size=8192):
    """A deploy of exactly ``size`` bytes of valid source (a long comment pads it)."""
    pad = size - len(CODE) - 4
    code = (CODE + "--" + "x" * pad + "\n").encode()
    assert len(code) == size - 1
    return chain.tx(key, Deploy(code, b"", 900_000), nonce=nonce)


def test_params_tie_blocks_to_the_wire_and_the_slot():
    assert Params().problems() == []
    assert frame_limit(Params()) == Params().max_block_bytes + FRAME_OVERHEAD
    assert frame_limit(SMALL) == MIN_FRAME + FRAME_OVERHEAD
    p = Params()
    for bad, fragment in [
        (p._replace(max_block_bytes=p.max_tx_bytes + p.max_code_bytes), "max_block_bytes"),
        (p._replace(max_block_bytes=MAX_FRAME_CEILING), "max_block_bytes"),
        (p._replace(max_gas_per_tx=p.max_block_gas + 1), "max_gas_per_tx"),
        (p._replace(max_gas_per_tx=0), "max_gas_per_tx"),
        (p._replace(max_tx_bytes=16384 - p.max_code_bytes + 1), "largest transaction"),
        (p._replace(slot_ms=400), "quarter slot"),
        (p._replace(max_block_gas=p.slot_ms * GAS_PER_SLOT_MS_BLOCK + 1), "half a slot"),
    ]:
        assert any(fragment in problem for problem in bad.problems()), (bad, bad.problems())
    assert p._replace(slot_ms=2000, max_block_gas=4_000_000).problems() == []
    assert SMALL.block_problems() == []
    assert p.max_gas_per_tx <= p.slot_ms * GAS_PER_SLOT_MS_TX


def test_producer_fills_a_block_to_its_byte_limit_and_keeps_the_rest(tmp_path):
    chain = TestChain(tmp_path, n_keys=12, params=SMALL)
    deploys = [big_deploy(chain, key, 0) for key in chain.keys]
    follow = [chain.tx(key, Transfer(key.address, 1), nonce=1) for key in chain.keys]
    block, rejected = chain.build(deploys + follow)
    assert not rejected
    size = len(block.encode())
    assert SMALL.max_block_bytes - 8500 < size <= SMALL.max_block_bytes
    included = {tx.id for tx in block.txs}
    assert 1 < len([tx for tx in deploys if tx.id in included]) < len(deploys)
    # a sender whose deploy did not fit waits: its transfer is not in the block either
    for deploy, transfer in zip(deploys, follow):
        assert (deploy.id in included) or (transfer.id not in included)
    chain.ledger.apply_block(block)
    assert chain.ledger.head.hash == block.hash


def test_producer_respects_the_block_gas_limit(tmp_path):
    params = SMALL._replace(max_block_gas=2_000_000)
    chain = TestChain(tmp_path, n_keys=6, params=params)
    calls = [chain.tx(key, Deploy(CODE.encode(), b"", 900_000), nonce=0) for key in chain.keys]
    block, rejected = chain.build(calls)
    assert not rejected and len(block.txs) == 2
    assert sum(tx_gas(tx, params) for tx in block.txs) <= params.max_block_gas


def test_blocks_over_the_limits_are_rejected(tmp_path):
    chain = TestChain(tmp_path, n_keys=12, params=SMALL)
    block, _ = chain.build([big_deploy(chain, key, 0) for key in chain.keys[:4]])
    check_block(block, SMALL)
    with pytest.raises(BlockRejected, match="bytes"):
        check_block(block, SMALL._replace(max_block_bytes=len(block.encode()) - 1))
    with pytest.raises(BlockRejected, match="gas"):
        check_block(block, SMALL._replace(max_block_gas=3 * 900_000))
    # a validator refuses a block over the limit whole (a producer that ignored it made it)
    chain.ledger.params = SMALL._replace(max_block_bytes=4 * SMALL.max_block_bytes)
    fat, _ = chain.build([big_deploy(chain, key, 0) for key in chain.keys])
    chain.ledger.params = SMALL
    assert len(fat.encode()) > SMALL.max_block_bytes
    with pytest.raises(BlockRejected, match="bytes"):
        chain.ledger.apply_block(Block.decode(fat.encode()))
    assert chain.ledger.head.height == 0


def test_any_valid_block_fits_the_networks_frame(tmp_path):
    chain = TestChain(tmp_path, n_keys=12, params=SMALL)
    block, _ = chain.build([big_deploy(chain, key, 0) for key in chain.keys])
    limit = frame_limit(SMALL)
    for message in (BlockMsg(block.encode()), Blocks((block.encode(),))):
        raw = encode_message(message)
        assert len(raw) <= limit
        assert decode_message(raw, limit) == message


def test_contract_calls_count_their_gas_limit(tmp_path):
    chain = TestChain(tmp_path, params=SMALL)
    key = chain.keys[0]
    deploy = chain.tx(key, Deploy(CODE.encode(), b"", 900_000))
    chain.block([deploy])
    address = contract_address(key.address, 0)
    call = chain.tx(key, Call(address, "f", encode_value([10]), 0, 123_456))
    assert tx_gas(call, SMALL) == 123_456
    assert tx_gas(chain.tx(key, Transfer(key.address, 1)), SMALL) == 0
    heavy_evidence = chain.tx(key, Evidence(bytes((HEAVY_EVIDENCE,)) + call.id, b""))
    assert tx_gas(heavy_evidence, SMALL) == SMALL.max_gas_per_tx   # it re-runs a call
    receipt_block = chain.block([call])
    assert receipt_block.txs == [call]


def test_a_backstop_while_building_leaves_the_transaction_out(tmp_path):
    chain = TestChain(tmp_path, params=SMALL)
    key, other = chain.keys[0], chain.keys[1]
    spin = b"function spin() while true do local t = {} end end"
    chain.block([chain.tx(key, Deploy(spin, b"", 300_000))])
    address = contract_address(key.address, 0)
    stuck = chain.tx(key, Call(address, "spin", encode_value([]), 0, 1_000_000))
    paid = chain.tx(other, Transfer(key.address, 1))
    with backstop(0.001):          # far below what a million gas of this loop takes
        block, rejected = chain.build([stuck, paid])
    assert block.txs == [paid]
    assert [(tx, exc.reason.value) for tx, exc in rejected] == [(stuck, "vm_limit")]
    chain.ledger.apply_block(block)
    assert chain.ledger.head.hash == block.hash
    # without the wall clock the same call gets its receipt: out of gas, fee paid
    assert chain.block([stuck]).txs == [stuck]
    assert chain.account(key).nonce == 2
