"""Golden vectors: every encoded type decodes and re-encodes byte for byte, in both twins."""

import json
import os

import pytest

from chain import crypto
from chain.keys import KeyPair
from tests.impls import twins
from tests.vectors.catalogue import FUNCTIONS, TYPES, address_raw, address_text, from_json

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vectors")


def load(name):
    with open(os.path.join(HERE, f"{name}.json")) as f:
        return json.load(f)


def cases(type_name):
    return [pytest.param(v, id=v["name"]) for v in load(type_name)]


def test_every_type_has_vectors():
    for type_name in list(TYPES) + ["functions", "address"]:
        assert load(type_name), type_name


@pytest.mark.parametrize("type_name", sorted(TYPES))
def test_type_vectors(type_name):
    spec = TYPES[type_name]
    for vector in load(type_name):
        raw = bytes.fromhex(vector["hex"])
        obj = spec["build"](vector["fields"])
        assert spec["encode"](obj) == raw, vector["name"]
        if spec["decode"] is not None:
            decoded = spec["decode"](raw)
            assert spec["fields"](decoded) == vector["fields"], vector["name"]
            assert spec["encode"](decoded) == raw, vector["name"]


@pytest.mark.parametrize("codec", twins("codec"))
def test_hot_types_in_both_twins(codec):
    for vector in load("tx"):
        raw = bytes.fromhex(vector["hex"])
        assert codec.encode_tx(codec.decode_tx(raw)) == raw
    for vector in load("header"):
        raw = bytes.fromhex(vector["hex"])
        assert codec.encode_header(codec.decode_header(raw)) == raw
    for vector in load("block"):
        raw = bytes.fromhex(vector["hex"])
        header, header_raw, txs, tx_raws, votes = codec.decode_block(raw)
        assert codec.encode_block(codec.encode_header(header),
                                  [codec.encode_tx(t) for t in txs], votes) == raw


def test_vector_signatures_verify():
    for vector in load("tx"):
        tx = TYPES["tx"]["decode"](bytes.fromhex(vector["hex"]))
        assert crypto.verify(tx.sender, tx.chain_id, tx.id, tx.signature), vector["name"]
    gate = KeyPair.from_seed(b"\x07" * 32)
    for vector in load("frame"):
        raw = bytes.fromhex(vector["hex"])
        digest = crypto.hash_of(crypto.TAG_FRAME, raw[:-64])
        assert crypto.verify(gate.pubkey, "ss-vectors", digest, raw[-64:]), vector["name"]
    header = TYPES["header"]["decode"](bytes.fromhex(load("header")[0]["hex"]))
    assert header.signature_valid("ss-vectors")
    assert not header.signature_valid("ss-other")


@pytest.mark.parametrize("vector", cases("functions"))
def test_function_vectors(vector):
    fn, _ = FUNCTIONS[vector["function"]]
    assert fn(from_json(vector["fields"])).hex() == vector["hex"]


@pytest.mark.parametrize("vector", cases("address"))
def test_address_vectors(vector):
    raw = from_json(vector["fields"])["raw"]
    assert address_text(raw) == vector["text"]
    assert address_raw(vector["text"]) == raw
    assert address_raw(vector["text"].upper()) == raw
