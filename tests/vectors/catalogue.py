"""Every encoded type, with sample objects, for the golden vectors in tests/vectors/*.json.

A vector is ``{"name", "fields", "hex"}``: ``fields`` describe the object in JSON (bytes as
``"0x..."`` strings), ``hex`` is its canonical encoding (or, for hash and address vectors, the
output). ``generate.py`` writes them once; ``tests/test_vectors.py`` checks both directions.
"""

from enum import IntEnum

from chain import crypto
from chain.address import address_from_pubkey, decode_address, encode_address
from chain.block import Block, Header, Receipt, decode_receipts, encode_receipts
from chain.genesis import REWARDS, VESTING, Allocation, Genesis, GenesisAgent, Pool
from contracts.vm import VmPin
from chain.keys import KeyPair
from chain.params import Params
from chain.state import records
from chain.state.proof import Proof, ProofKind
from chain.votes import FinalityVote
from chain.light.finality import FinalityEntry, FinalityProof, make_proof
from chain.light.merkle import merkle_path
from chain.dpos.shuffle import Prng, round_order, shuffle as shuffled
from chain.calls import contract_address
from chain.dpos import reveal
from chain.state import consensus
from chain.tx import PAYLOADS, KIND_NAMES, Call, Deploy, Evidence, HeavyResult, RegisterAgent, RotateProducer, \
    Stake, Transfer, Tx, Unjail, UnregisterAgent, Unstake, Vote
from edge import _fast

CHAIN = "ss-vectors"
ALICE = KeyPair.from_seed(bytes(range(1, 33)))
BOB = KeyPair.from_seed(bytes(range(101, 133)))
AGENT = KeyPair.from_seed(b"\x42" * 32)


def to_json(value):
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, IntEnum):
        return int(value)
    if hasattr(value, "_asdict"):
        return {k: to_json(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def from_json(value):
    if isinstance(value, str) and value.startswith("0x"):
        return bytes.fromhex(value[2:])
    if isinstance(value, list):
        return tuple(from_json(v) for v in value)
    if isinstance(value, dict):
        return {k: from_json(v) for k, v in value.items()}
    return value


# -- per type: samples, fields <-> object, encode, decode ---------------------------------------------

KIND_BY_NAME = {name: kind for kind, name in KIND_NAMES.items()}


def tx_fields(tx):
    return {"kind": tx.kind_name, "chain_id": tx.chain_id, "sender": to_json(tx.sender),
            "nonce": tx.nonce, "fee": tx.fee, "payload": to_json(tx.payload),
            "signature": to_json(tx.signature)}


def tx_build(f):
    f = from_json(f)
    payload = PAYLOADS[KIND_BY_NAME[f["kind"]]](**f["payload"])
    return Tx(f["chain_id"], f["sender"], f["nonce"], f["fee"], payload, f["signature"])


def tx_samples():
    to = BOB.address
    payloads = [("transfer", Transfer(to, 125_000_000, b"parking 2h")),
                ("transfer_max", Transfer(to, 2**64 - 1, b"m" * 64)),
                ("stake", Stake(10**13)), ("unstake", Unstake(1)),
                ("vote", Vote(tuple(sorted((AGENT.address, BOB.address))))),
                ("vote_none", Vote(())),
                ("register_agent", RegisterAgent("café-gateway", "tcp://192.168.1.20:7000",
                                                 AGENT.pubkey, 0, b"\x61" * 32, b"\x62" * 64)),
                ("rotate_producer", RotateProducer(BOB.pubkey, 3, b"\x63" * 32, b"\x64" * 64)),
                ("unregister_agent", UnregisterAgent()),
                ("unjail", Unjail()),
                ("evidence", Evidence(header_sample().encode(),
                                      header_sample(tx_root=b"\x12" * 32).encode())),
                ("deploy", Deploy(b"function hello() return 1 end", b"\x06\x00", 200_000)),
                ("call", Call(b"\x0c" * 20, "transfer", b"\x06\x02\x04\x01\x0a\x03\x14",
                              5, 100_000)),
                ("heavy_result", HeavyResult(b"\x0d" * 32, 1, 654_321, b"\x0e" * 32))]
    out = []
    for nonce, (name, payload) in enumerate(payloads):
        unsigned = Tx(CHAIN, ALICE.pubkey, nonce * 300, 2_500 + nonce, payload)
        out.append((name, unsigned.signed_by(ALICE)))
    return out


def header_sample(height=7, tx_root=b"\x11" * 32, renewal=None, votes_root=b"\x12" * 32):
    h = Header(2, height, b"\x01" * 32, 1_795_600_007_000, 7, AGENT.pubkey, b"\x44" * 32,
               renewal, 2, height - 4, tx_root, votes_root, b"\x22" * 32, b"\x33" * 32)
    return h.signed_by(AGENT, CHAIN)


def vote_sample(producer=AGENT, target_hash=b"\x66" * 32):
    return FinalityVote(producer.pubkey, 2, b"\x55" * 32, 3, target_hash).signed_by(producer,
                                                                                    CHAIN)


def header_build(f):
    return Header(**from_json(f))


def block_samples():
    txs = [tx for _, tx in tx_samples()[:2]]
    from chain.block import tx_root
    from chain.block import votes_root
    votes = [vote_sample(), vote_sample(BOB)]
    return [("empty", Block(header_sample(tx_root=tx_root([]), votes_root=votes_root([])), [])),
            ("two_transfers", Block(header_sample(8, tx_root(txs), votes_root=votes_root([])),
                                    txs)),
            ("two_votes", Block(header_sample(9, tx_root([]), votes_root=votes_root(votes)), [],
                                votes))]


def block_fields(block):
    return {"header": to_json(block.header), "txs": [tx_fields(tx) for tx in block.txs],
            "votes": [to_json(vote) for vote in block.votes]}


def block_build(f):
    return Block(header_build(f["header"]), [tx_build(t) for t in f["txs"]],
                 [FinalityVote(**from_json(v)) for v in f["votes"]])


def genesis_sample():
    params = Params()
    team = 15 * 10**15
    pools = (Pool("private_placement", 2 * 10**16), Pool("foundation", 55 * 10**15),
             Pool("team", team, VESTING, 10_512_000, 0), Pool("ecological", 10**16, REWARDS))
    allocations = (Allocation(ALICE.address, 2 * 10**16, 0, 0),
                   Allocation(ALICE.address, 55 * 10**15 - params.agent_min_stake, 0, 1),
                   Allocation(AGENT.address, 0, params.agent_min_stake, 1),
                   Allocation(AGENT.address, team, 0, 2))
    return Genesis(CHAIN, 1_795_600_000_000, 8, 10**17, 6 * 10**15, params,
                   tuple(sorted(allocations)),
                   (GenesisAgent(AGENT.pubkey, "agent-1", AGENT.address, b"\x65" * 32),),
                   VmPin("5.4.8", "2.8", 2), pools, 4 * 10**15, b"\x5c" * 32)


def genesis_fields(g):
    return {"chain_id": g.chain_id, "genesis_time_ms": g.genesis_time_ms, "decimals": g.decimals,
            "total_supply": g.total_supply, "reward_pool": g.reward_pool,
            "participation_pool": g.participation_pool,
            "settlement_code_hash": to_json(g.settlement_code_hash),
            "params": to_json(g.params), "pools": to_json(g.pools),
            "allocations": to_json(g.allocations), "agents": to_json(g.agents), "vm": list(g.vm)}


def genesis_build(f):
    f = from_json(f)
    return Genesis(f["chain_id"], f["genesis_time_ms"], f["decimals"], f["total_supply"],
                   f["reward_pool"], Params(**f["params"]),
                   tuple(Allocation(**a) for a in f["allocations"]),
                   tuple(GenesisAgent(**a) for a in f["agents"]), VmPin(*f["vm"]),
                   tuple(Pool(**p) for p in f["pools"]), f["participation_pool"],
                   f["settlement_code_hash"])


def proof_samples():
    """Proofs from a real three-key tree: inclusion, empty and other-leaf terminals."""
    import tempfile
    import lmdb
    from chain.state.smt import SparseMerkleTree
    keys = [bytes([0x00]) + b"\x01" * 31, bytes([0x40]) + b"\x02" * 31, bytes([0x41]) + b"\x03" * 31]
    with tempfile.TemporaryDirectory() as path:
        env = lmdb.open(path, max_dbs=4, map_size=1 << 24)
        tree = SparseMerkleTree(env.open_db(b"chain"))
        with env.begin(write=True) as txn:
            tree.update(txn, None, 0, {k: b"value-%d" % i for i, k in enumerate(keys)})
            samples = [("inclusion", tree.prove(txn, 0, keys[1])[1]),
                       ("empty", tree.prove(txn, 0, bytes([0xC0]) + bytes(31))[1]),
                       ("other_leaf", tree.prove(txn, 0, bytes([0x01]) + bytes(31))[1])]
        env.close()
    return samples


def frame_samples():
    """Device frames signed like a gateway expects (docs/protocol.md §11)."""
    gate = KeyPair.from_seed(b"\x07" * 32)
    out = []
    for name, kind, payload in (("meter", 2, '{"kwh": 0.25, "session": 17}'),
                                ("event", 3, '{"event": "vehicle_entry", "plate": "B-SS 42"}'),
                                ("hello", 1, '{"model": "gate-1", "fw": "1.0.3"}'),
                                ("data", 4, '{"t_c": 21.5, "rh": 40}')):
        unsigned = (1, kind, b"gate0001", 41 + kind, 1_795_600_000_000 + kind, payload)
        digest = crypto.hash_of(crypto.TAG_FRAME, _fast.encode_frame_unsigned(unsigned))
        out.append((name, unsigned + (gate.sign(CHAIN, digest),)))
    return out


FRAME_FIELDS = ("version", "kind", "device_id", "seq", "timestamp_ms", "payload", "signature")


def named_tuple_type(cls, samples, decode=None):
    return {"samples": samples, "fields": to_json,
            "build": lambda f: cls(**from_json(f)),
            "encode": lambda obj: obj.encode(), "decode": decode or cls.decode}


TYPES = {
    "tx": {"samples": tx_samples, "fields": tx_fields, "build": tx_build,
           "encode": lambda tx: tx.raw, "decode": Tx.decode},
    "header": {"samples": lambda: [
                   ("signed", header_sample()),
                   ("renewal", header_sample(9, renewal=b"\x77" * 32))],
               "fields": to_json, "build": header_build, "encode": lambda h: h.encode(),
               "decode": Header.decode},
    "vote": named_tuple_type(FinalityVote, lambda: [("signed", vote_sample())]),
    "producer": named_tuple_type(consensus.Producer, lambda: [
        ("plain", consensus.Producer(AGENT.address, 0, b"\x71" * 32)),
        ("with_next", consensus.Producer(BOB.address, 4, b"\x72" * 32, 6, b"\x73" * 32, 19))]),
    "finality": {"samples": lambda: [
                     ("stable", consensus.Finality(consensus.Checkpoint(5, b"\x81" * 32, 40),
                                                   consensus.Checkpoint(4, b"\x82" * 32, 32),
                                                   tuple(sorted((AGENT.pubkey, BOB.pubkey))))),
                     ("joint", consensus.Finality(consensus.Checkpoint(9, b"\x83" * 32, 70),
                                                  consensus.Checkpoint(8, b"\x84" * 32, 63),
                                                  (AGENT.pubkey,), consensus.JOINT,
                                                  (BOB.pubkey,), 66))],
                 "fields": to_json, "build": lambda f: _finality_build(from_json(f)),
                 "encode": lambda x: x.encode(), "decode": consensus.Finality.decode},
    "round": {"samples": lambda: [
                  ("with_standby", consensus.RoundInfo(
                      12, consensus.Checkpoint(11, b"\x85" * 32, 88),
                      consensus.Checkpoint(12, b"\x86" * 32, 95), (AGENT.pubkey,),
                      (BOB.pubkey,), ((ALICE.pubkey, 10**13),)))],
              "fields": to_json, "build": lambda f: _round_build(from_json(f)),
              "encode": lambda x: x.encode(), "decode": consensus.RoundInfo.decode},
    "round_votes": named_tuple_type(consensus.RoundVotes, lambda: [
        ("two_voters", consensus.RoundVotes(b"\x91" * 32, tuple(sorted((AGENT.pubkey,
                                                                         BOB.pubkey)))))]),
    "block": {"samples": block_samples, "fields": block_fields, "build": block_build,
              "encode": lambda b: b.encode(), "decode": Block.decode},
    "receipt": named_tuple_type(Receipt, lambda: [
        ("ok", Receipt(b"\x07" * 32, 0, 2_440)),
        ("call", Receipt(b"\x09" * 32, 0, 90_000, 41_234, "",
                         ((b"\x05" * 20, "transfer", b"\x06\x02\x04\x01\x0a\x03\x14"),),
                         b"\x02")),
        ("failed", Receipt(b"\x08" * 32, 1, 10**9, 5_000_000, "out_of_gas: loop")),
        ("failed_before_vm", Receipt(b"\x0a" * 32, 1, 12_345, 0,
                                     "no_contract: no contract at that address")),
    ]),
    "receipts": {"samples": lambda: [("two", [Receipt(b"\x07" * 32, 0, 2_440),
                                              Receipt(b"\x08" * 32, 1, 300, 7, "bad_value")])],
                 "fields": to_json, "build": lambda f: [Receipt(**r) for r in from_json(f)],
                 "encode": encode_receipts, "decode": decode_receipts},
    "account": named_tuple_type(records.Account, lambda: [
        ("empty_but_nonce", records.Account(nonce=1)),
        ("full", records.Account(10**15, 42, 5 * 10**13, tuple(sorted((AGENT.address, BOB.address))),
                                 ((10**8, 120), (3 * 10**8, 121))))]),
    "agent": named_tuple_type(records.Agent, lambda: [
        ("active", records.Agent(AGENT.pubkey, "agent-1", "tcp://10.0.0.1:7000", True, 0, 10**14,
                                 0, 2, 17, 1234, 5 * 10**8)),
        ("jailed", records.Agent(BOB.pubkey, "bob", "", False, 99, 0, 250, 12, 40, 7, 0)),
        ("rewarding", records.Agent(AGENT.pubkey, "agent-2", "", True, 3, 10**13, 0, 0, 0, 99,
                                    4 * 10**8, 3 * 2**64 + 12345))]),
    "voter_checkpoint": {"samples": lambda: [("zero", 0), ("big", 2**200 + 7)],
                         "fields": to_json, "build": from_json,
                         "encode": records.encode_checkpoint,
                         "decode": records.decode_checkpoint},
    "schedule": named_tuple_type(records.Schedule, lambda: [
        ("two", records.Schedule(3, 31, (AGENT.pubkey, BOB.pubkey)))]),
    "params": named_tuple_type(Params, lambda: [("defaults", Params())],
                               decode=lambda raw: _read_params(raw)),
    "genesis": {"samples": lambda: [("devnet", genesis_sample())], "fields": genesis_fields,
                "build": genesis_build, "encode": lambda g: g.encode(), "decode": None},
    "address_list": {"samples": lambda: [("two", tuple(sorted((BOB.address, AGENT.address))))],
                     "fields": to_json, "build": lambda f: tuple(sorted(from_json(f))),
                     "encode": records.encode_address_list,
                     "decode": records.decode_address_list},
    "participation": named_tuple_type(records.Participation, lambda: [
        ("open", records.Participation(5 * 10**15, 12, 987_654_321, 3 * 10**11, b"\x5c" * 32))]),
    "participant": named_tuple_type(records.Participant, lambda: [
        ("weight", records.Participant(12, 250_000_000))]),
    "heavy_record": named_tuple_type(records.HeavyRecord, lambda: [
        ("failed", records.HeavyRecord(41, 1_795_600_041_000, AGENT.pubkey, 1, 123_456,
                                       b"\x0f" * 32, b"\x01\x0a" + b"\x02" * 40))]),
    "heavy_expiry": {"samples": lambda: [("two", (b"\x03" * 32, b"\x04" * 32))],
                     "fields": to_json, "build": from_json, "encode": records.encode_tx_ids,
                     "decode": records.decode_tx_ids},
    "epoch_reward": {"samples": lambda: [("zero", 0), ("big", 2**100 + 3)], "fields": to_json,
                     "build": from_json, "encode": records.encode_epoch_reward,
                     "decode": records.decode_epoch_reward},
    "amount": {"samples": lambda: [("pool", 10**16)], "fields": to_json, "build": from_json,
               "encode": records.encode_amount, "decode": records.decode_amount},
    "frame": {"samples": frame_samples,
              "fields": lambda f: {k: to_json(v) for k, v in zip(FRAME_FIELDS, f)},
              "build": lambda f: tuple(from_json(f)[k] for k in FRAME_FIELDS),
              "encode": _fast.encode_frame, "decode": _fast.decode_frame},
    "proof": {"samples": proof_samples, "fields": to_json,
              "build": lambda f: _proof_build(from_json(f)),
              "encode": lambda p: p.encode(), "decode": Proof.decode},
    "finality_proof": named_tuple_type(FinalityProof, lambda: [
        ("stable_all_three", finality_proof_sample()),
        ("joint", finality_proof_sample(joint=True))]),
    "finality_entry": {"samples": lambda: [("round_12", finality_entry_sample())],
                       "fields": to_json, "build": lambda f: _entry_build(from_json(f)),
                       "encode": lambda e: e.encode(), "decode": FinalityEntry.decode},
}

LINK = (11, b"\x85" * 32, 12, header_sample().hash)


def finality_proof_sample(joint=False):
    """Round 12's link (source round 11) signed by the members a verifier must see."""
    keys = [ALICE, BOB, AGENT]
    signatures = {k.pubkey: FinalityVote(k.pubkey, *LINK).signed_by(k, CHAIN).signature
                  for k in keys}
    sets = (tuple(sorted(k.pubkey for k in keys)),)
    if joint:
        sets = (tuple(sorted((ALICE.pubkey, BOB.pubkey))), (AGENT.pubkey,))
    return make_proof(LINK[0], LINK[2], sets, signatures)


def finality_entry_sample():
    record = consensus.Finality(consensus.Checkpoint(11, b"\x85" * 32, 88),
                                consensus.Checkpoint(10, b"\x84" * 32, 80),
                                tuple(sorted(k.pubkey for k in (ALICE, BOB, AGENT))))
    return FinalityEntry(header_sample().encode(), finality_proof_sample(), record.encode(),
                         proof_samples()[1][1].encode())


def _entry_build(f):
    return FinalityEntry(f["header"], FinalityProof(**f["proof"]), f["record"],
                         f["record_proof"])


def _read_params(raw):
    from edge._fast.codec_py import Reader
    r = Reader(raw)
    params = Params.read(r)
    r.end("params")
    return params


def _finality_build(f):
    return consensus.Finality(consensus.Checkpoint(**f["justified"]),
                              consensus.Checkpoint(**f["finalized"]), f["active"], f["phase"],
                              f["next"], f["mark"])


def _round_build(f):
    return consensus.RoundInfo(f["round"], consensus.Checkpoint(**f["source"]),
                               consensus.Checkpoint(**f["target"]), f["quorum_active"],
                               f["quorum_next"], f["standby"])


def _proof_build(f):
    return Proof(f["key"], ProofKind(f["kind"]), f["siblings"], f["other_key"],
                 f["other_value_hash"])


# Function vectors: inputs -> output bytes (hex), no decoder.
FUNCTIONS = {
    "tagged_hash": (lambda f: _fast.tagged_hash(f["tag"], f["data"]),
                    [("tx_tag", {"tag": b"ss/tx", "data": b"abc"}),
                     ("empty_data", {"tag": b"ss/header", "data": b""})]),
    "merkle_root": (lambda f: _fast.merkle_root(list(f["items"])),
                    [("empty", {"items": []}), ("one", {"items": [b"a"]}),
                     ("three", {"items": [b"a", b"b", b"c"]}),
                     ("five", {"items": [bytes([i]) * 32 for i in range(5)]})]),
    "signing_message": (lambda f: crypto.signing_message(f["chain_id"], f["object_hash"]),
                        [("tx", {"chain_id": CHAIN, "object_hash": b"\x09" * 32})]),
    "state_key": (lambda f: records.state_key(f["namespace"], f["id"]),
                  [("account", {"namespace": b"account", "id": BOB.address}),
                   ("pool", {"namespace": b"pool", "id": b""})]),
    "address_from_pubkey": (lambda f: address_from_pubkey(f["pubkey"]),
                            [("bob", {"pubkey": BOB.pubkey})]),
    "reveal_chain_commit": (lambda f: reveal.RevealChain(f["secret"]).commit,
                            [("secret_5a", {"secret": b"\x5a" * 32})]),
    "reveal_secret": (lambda f: KeyPair.from_seed(f["seed"]).reveal_secret(f["epoch"]),
                      [("alice_epoch_1", {"seed": bytes(range(1, 33)), "epoch": 1})]),
    "binding_hash": (lambda f: reveal.binding_hash(f["owner"], f["epoch"], f["commit"]),
                     [("alice", {"owner": b"\x0a" * 20, "epoch": 2, "commit": b"\x0b" * 32})]),
    "ed25519_sign": (lambda f: KeyPair.from_seed(f["seed"]).sign(f["chain_id"], f["object_hash"]),
                     [("alice", {"seed": bytes(range(1, 33)), "chain_id": CHAIN,
                                 "object_hash": b"\x05" * 32})]),
    # §9: a contract's address; the fee floor (u64 big-endian), gas included
    "contract_address": (lambda f: contract_address(f["sender"], f["nonce"]),
                         [("alice_nonce_7", {"sender": ALICE.address, "nonce": 7})]),
    "min_fee": (lambda f: Params().min_fee_for(f["size"], f["gas_limit"]).to_bytes(8, "big"),
                [("transfer_130_bytes", {"size": 130, "gas_limit": 0}),
                 ("deploy_4700_bytes", {"size": 4700, "gas_limit": 200_000})]),
    # §13.2-13.3: seeds, the PRNG's draws (u64 big-endian each), the shuffle and the order
    "round_seed_start": (lambda f: reveal.round_seed_start(f["seed"], f["round"]),
                         [("round_7", {"seed": b"\x21" * 32, "round": 7})]),
    "mix_seed": (lambda f: reveal.mix_seed(f["seed"], f["reveal"]),
                 [("one_reveal", {"seed": b"\x21" * 32, "reveal": b"\x22" * 32})]),
    "prng_below": (lambda f: b"".join(_draws(f["seed"], f["bounds"])),
                   [("mixed_bounds", {"seed": b"\x31" * 32,
                                      "bounds": [1, 2, 3, 7, 8, 255, 256, 257, 1000, 2**40 + 3]})]),
    "shuffle": (lambda f: b"".join(shuffled(list(f["items"]), f["seed"])),
                [("five_keys", {"items": [bytes([i]) * 32 for i in range(5)],
                                "seed": b"\x32" * 32})]),
    "round_order": (lambda f: b"".join(round_order(
                        list(f["producers"]), [tuple(c) for c in f["standby"]], f["seed"],
                        f["standby_slots"])),
                    [("four_and_one_standby", {
                        "producers": [bytes([i]) * 32 for i in range(1, 5)],
                        "standby": [[b"\x09" * 32, 700], [b"\x0a" * 32, 300], [b"\x0b" * 32, 0]],
                        "seed": b"\x33" * 32, "standby_slots": 1}),
                     ("two_standby_slots", {
                        "producers": [bytes([i]) * 32 for i in range(1, 4)],
                        "standby": [[b"\x09" * 32, 5], [b"\x0a" * 32, 5]],
                        "seed": b"\x34" * 32, "standby_slots": 2})]),
    # §5: what a finality vote's signature signs
    "vote_hash": (lambda f: FinalityVote(f["producer"], *f["link"]).hash,
                  [("round_12", {"producer": AGENT.pubkey, "link": list(LINK)})]),
    # §12.8: ordered-Merkle paths, bottom first
    "merkle_path": (lambda f: b"".join(merkle_path(list(f["items"]), f["index"])),
                    [("third_of_five", {"items": [bytes([i]) * 3 for i in range(5)],
                                        "index": 2}),
                     ("promoted_last", {"items": [bytes([i]) * 3 for i in range(5)],
                                        "index": 4})]),
}


def _draws(seed, bounds):
    prng = Prng(seed)
    return [prng.below(n).to_bytes(8, "big") for n in bounds]

# Printed addresses: raw 20 bytes -> bech32m text.
ADDRESSES = [("alice", ALICE.address), ("bob", BOB.address), ("zero", bytes(20)),
             ("ones", b"\xff" * 20)]
address_text = encode_address
address_raw = decode_address
