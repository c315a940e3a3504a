"""Block validation, atomic commit, restart and map growth on a real LMDB."""

import pytest
from hypothesis import given, settings, strategies as st

from chain.block import Block, receipts_root, tx_root
from chain.errors import BlockRejected
from chain.keys import KeyPair
from chain.ledger import LAYOUT, Ledger, LedgerError, RecentHashes
from chain.state.proof import verify_proof
from chain.state.records import account_key
from chain.state.smt import VersionPruned
from chain.tx import Stake, Transfer, Unstake
from chain.writer import PRUNE_BATCH, U64
from tests.chainkit import COIN, TOTAL, TestChain, make_genesis


@pytest.fixture
def chain(tmp_path):
    return TestChain(tmp_path)


def resign(chain, block, **changes):
    header = block.header._replace(**changes).signed_by(chain.producer, chain.genesis.chain_id)
    return Block(header, block.txs)


def assert_rejected(chain, block, match):
    head, root = chain.ledger.head, chain.ledger.head.state_root
    balances = [chain.account(k).balance for k in chain.keys]
    with pytest.raises(BlockRejected, match=match):
        chain.ledger.apply_block(block)
    assert chain.ledger.head == head and head.state_root == root
    assert [chain.account(k).balance for k in chain.keys] == balances
    assert chain.ledger.block_hash_at(head.height + 1) is None


def transfer_block(chain):
    a, b = chain.keys[:2]
    return chain.build([chain.tx(a, Transfer(b.address, COIN))])[0]


def test_header_rules(chain):
    block = transfer_block(chain)
    h = block.header
    assert_rejected(chain, resign(chain, block, height=h.height + 1), "does not follow")
    assert_rejected(chain, resign(chain, block, prev_hash=bytes(32)), "prev_hash")
    assert_rejected(chain, resign(chain, block, slot=0, timestamp_ms=chain.ledger.slot_time_ms(0)),
                    "not after")
    assert_rejected(chain, resign(chain, block, timestamp_ms=h.timestamp_ms + 1), "timestamp")
    assert_rejected(chain, resign(chain, block, tx_root=bytes(32)), "tx_root")
    assert_rejected(chain, resign(chain, block, state_root=bytes(32)), "state_root")
    assert_rejected(chain, resign(chain, block, receipts_root=bytes(32)), "receipts_root")
    assert_rejected(chain, Block(h._replace(signature=bytes(64)), block.txs), "signature")
    with pytest.raises(BlockRejected, match="future"):
        chain.ledger.apply_block(block, now_ms=h.timestamp_ms - 10 * chain.params.slot_ms)
    chain.ledger.apply_block(block)  # the untouched block is fine


def test_wrong_producer(chain):
    intruder = KeyPair.from_seed(b"\x55" * 32)
    block = transfer_block(chain)
    header = block.header._replace(producer=intruder.pubkey).signed_by(intruder, "ss-test")
    assert_rejected(chain, Block(header, block.txs), "another producer")


def with_txs(chain, template, txs):
    """``template`` re-signed around other transactions (tx_root updated to match)."""
    return resign(chain, Block(template.header, txs), tx_root=tx_root(txs))


def test_block_revalidates_transactions(chain):
    a, b = chain.keys[:2]
    good = chain.tx(a, Transfer(b.address, COIN))
    block = chain.build([good])[0]
    forged = good.__class__(good.chain_id, good.sender, good.nonce, good.fee, good.payload,
                            bytes(64))
    assert_rejected(chain, Block(block.header, [forged]), "bad signature")
    overspend = chain.tx(a, Transfer(b.address, 10**6 * COIN))
    assert_rejected(chain, with_txs(chain, block, [overspend]), "invalid transaction")
    assert_rejected(chain, with_txs(chain, block, [good, good]), "twice")


def test_receipts_and_indexes(chain):
    a, b = chain.keys[:2]
    txs = [chain.tx(a, Transfer(b.address, COIN)), chain.tx(b, Transfer(a.address, 2 * COIN))]
    block = chain.block(txs)
    receipts = chain.ledger.receipts(block.hash)
    assert [r.tx_id for r in receipts] == [t.id for t in txs]
    assert receipts_root(receipts) == block.header.receipts_root
    assert chain.ledger.tx_location(txs[1].id) == (block.height, 1)
    assert [tx_id for _, tx_id in chain.ledger.history(a.address)] == [txs[1].id, txs[0].id]
    assert chain.ledger.block(chain.ledger.block_hash_at(block.height)).encode() == block.encode()


def test_account_proof_verifies_against_header(chain):
    a, b = chain.keys[:2]
    chain.block([chain.tx(a, Transfer(b.address, COIN))])
    account, proof, header = chain.ledger.account_proof(b.address)
    assert verify_proof(header.state_root, account_key(b.address), account.encode(), proof)
    assert not verify_proof(header.state_root, account_key(b.address),
                            account._replace(balance=account.balance + 1).encode(), proof)
    stranger = KeyPair.from_seed(b"\x66" * 32)
    missing, proof, header = chain.ledger.account_proof(stranger.address)
    assert missing.is_empty()
    assert verify_proof(header.state_root, account_key(stranger.address), None, proof)


def test_restart_resumes_from_last_block(chain):
    a, b = chain.keys[:2]
    for i in range(5):
        chain.block([chain.tx(a, Transfer(b.address, COIN))])
    head, balance = chain.ledger.head, chain.account(b).balance
    chain.reopen()
    assert chain.ledger.head == head
    assert chain.account(b).balance == balance
    chain.block([chain.tx(a, Transfer(b.address, COIN))])
    assert chain.ledger.head.height == head.height + 1


def test_other_genesis_refused(chain, tmp_path):
    other = make_genesis(chain.keys, chain.producer, chain_id="ss-other")
    chain.store.close()
    from chain.store import Store
    with pytest.raises(LedgerError, match="another genesis"):
        Ledger(Store(chain.path), other)


def test_map_grows_on_demand(tmp_path):
    chain = TestChain(tmp_path, map_size=256 << 10, n_keys=20)
    start = chain.store.map_size
    for round_ in range(15):
        txs = [chain.tx(k, Transfer(chain.keys[(i + 1) % 20].address, COIN, b"m" * 64))
               for i, k in enumerate(chain.keys)]
        chain.block(txs)
    assert chain.store.map_size > start
    assert chain.ledger.head.height == 15
    assert chain.supply() == TOTAL


def test_pruning_keeps_recent_versions_and_drops_old_ones_in_batches(tmp_path):
    chain = TestChain(tmp_path, prune_depth=3)
    a, b = chain.keys[:2]
    seen = set()
    for height in range(1, PRUNE_BATCH + 10):
        chain.block([chain.tx(a, Transfer(b.address, COIN))] if height % 10 == 0 else [])
        with chain.store.read() as txn:
            oldest, newest = chain.ledger.smt.versions(txn)
            stored = {chain.ledger.smt.root_hash(txn, h) for h in range(oldest, newest + 1)}
        seen.add(oldest)
        assert newest == height and stored  # every version from the oldest kept on reads
        # Versions go in batches: never more than a batch beyond the depth kept.
        assert newest - 3 - PRUNE_BATCH <= oldest <= max(0, newest - 3)
        assert oldest <= chain.ledger.lib_height  # every block a reorganisation may take back
    assert len(seen) == 2  # one batch ran
    with chain.store.read() as txn:
        with pytest.raises(VersionPruned):
            chain.ledger.smt.root_hash(txn, oldest - 1)
    # A proof of a pruned height answers with the head; kept ones and every block stay readable.
    value, proof, header = chain.ledger.state_proof(account_key(b.address), 1)
    assert header == chain.ledger.head
    assert verify_proof(header.state_root, account_key(b.address), value, proof)
    for h in range(newest + 1):
        assert Block.decode(chain.ledger.block_bytes_at(h)).height == h
    chain.reopen()
    assert chain.ledger.head.height == newest and chain.supply() == TOTAL


@pytest.mark.parametrize("layout", [None, LAYOUT - 1])
def test_an_older_storage_layout_is_refused(chain, layout):
    meta = chain.store.db("meta")
    chain.store.write(lambda txn: txn.delete(b"layout", db=meta) if layout is None
                      else txn.put(b"layout", U64.pack(layout), db=meta))
    with pytest.raises(LedgerError, match="older version.*move that folder aside"):
        Ledger(chain.store, chain.genesis)


# -- taking blocks back: the flat state's prior values come from the state tree ----------------

def flat_items(chain):
    """The whole flat state (every 0xFE/0xFF record of the main database, §10.2)."""
    with chain.store.read() as txn:
        return {k: v for k, v in txn.cursor(db=chain.store.main) if k[:1] in (b"\xfe", b"\xff")}


def take_back(chain, count):
    """Take the ``count`` newest blocks back, as a reorganisation does."""
    chain.ledger._write(lambda writer: [writer.rollback_head() for _ in range(count)])


def fresh_address(n):
    return KeyPair.from_seed(bytes([200 + n % 50]) * 32).address


def random_txs(chain, ops):
    """Transactions for ``ops`` (kind, sender index, amount in coins): payments to known and
    fresh addresses (new keys), stake and unstake (unbonding entries, deleted at maturity)."""
    txs, nonces = [], {}
    for n, (kind, who, amount) in enumerate(ops):
        key = chain.keys[who]
        nonce = nonces.get(who, chain.account(key).nonce)
        nonces[who] = nonce + 1
        payload = {"pay": Transfer(chain.keys[(who + 1) % len(chain.keys)].address, amount * COIN),
                   "pay_new": Transfer(fresh_address(chain.ledger.head.height + n), amount),
                   "stake": Stake(amount * COIN), "unstake": Unstake(amount * COIN)}[kind]
        txs.append(chain.tx(key, payload, nonce=nonce))
    return txs


OPS = st.lists(st.tuples(st.sampled_from(["pay", "pay_new", "stake", "unstake"]),
                         st.integers(0, 3), st.integers(1, 5)), max_size=5)


@settings(max_examples=12, deadline=None)
@given(blocks=st.lists(OPS, min_size=1, max_size=7), depth=st.integers(1, 8))
def test_taking_blocks_back_restores_the_flat_state_exactly(tmp_path_factory, blocks, depth):
    chain = TestChain(tmp_path_factory.mktemp("back"))
    states = {0: flat_items(chain)}
    for ops in blocks:
        block, _ = chain.build(random_txs(chain, ops))  # some may be refused: fine
        chain.ledger.apply_block(block)
        height = block.height
        states[height] = flat_items(chain)
        take_back(chain, 1)
        assert flat_items(chain) == states[height - 1]
        chain.ledger.apply_block(block)  # back from the side blocks
        assert flat_items(chain) == states[height]
    depth = min(depth, chain.ledger.head.height - chain.ledger.lib_height)
    take_back(chain, depth)
    head = chain.ledger.head
    assert flat_items(chain) == states[head.height]
    with chain.store.read() as txn:
        assert chain.ledger.smt.root_hash(txn, head.height) == head.state_root
    assert chain.supply() == TOTAL


def test_taking_back_restores_created_and_deleted_keys(chain):
    """An unbonding entry matures (its key is deleted) in the block that also creates an
    account: taking that block back brings the one back and drops the other."""
    a = chain.keys[0]
    chain.block([chain.tx(a, Stake(5 * COIN))])
    chain.block([chain.tx(a, Unstake(2 * COIN))])
    for _ in range(chain.params.unbonding_blocks):
        before = flat_items(chain)
        chain.block([chain.tx(a, Transfer(fresh_address(chain.ledger.head.height), 1))])
    after = flat_items(chain)
    h = chain.ledger.head.height
    with chain.store.read() as txn:
        prior = chain.ledger.smt.diff(txn, h - 1, h).prior
    created = {key for key, value in prior.items() if value is None}
    deleted = {key for key, value in prior.items() if value is not None} - {k[1:] for k in after}
    assert created and deleted
    take_back(chain, 1)
    assert flat_items(chain) == before
    assert {k[1:] for k in before} & created == set() and deleted <= {k[1:] for k in before}
