"""The full node's API gives what a client written from docs/api.md needs: raw encodings and
signatures, proofs at any kept height (an explicit error for the others), JSON errors for
unknown routes and methods. A real node in-process, its API on a real socket."""

import asyncio
import contextlib
import io

import aiohttp

from chain.block import Block, Header
from chain.keys import KeyPair
from chain.state.proof import Proof, verify_proof
from chain.state.records import account_key
from chain.tx import Transfer, Tx
from edge import cli
from edge.api import start_api
from edge.api_tokens import cli_token
from edge.config import load
from edge.node import Node
from tests.nodeproc import free_port


def make_node(tmp_path):
    path = str(tmp_path / "home")
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["--home", path, "init", "--devnet", "--api-port", "1"]) == 0
    return path, Node(load(path), log=lambda line: None)


def test_raw_encodings_proofs_at_a_height_and_json_errors(tmp_path):
    home, node = make_node(tmp_path)
    wallet = KeyPair.load(f"{home}/wallets/default.json")
    payee = KeyPair.from_seed(b"\x09" * 32).address
    chain_id, params = node.ledger.chain_id, node.ledger.params
    slot = node.ledger.slot_at(node.ledger.genesis.genesis_time_ms) + 1
    node.produce(slot)
    fee = params.min_fee_for(200)
    tx = Tx(chain_id, wallet.pubkey, 0, fee, Transfer(payee, 5 * 10**8)).signed_by(wallet)
    assert node.submit([tx.raw])[0]["accepted"]
    node.produce(slot + 1)
    node.produce(slot + 2)
    port = free_port()

    async def scenario():
        runner = await start_api(node, "127.0.0.1", port)
        base = f"http://127.0.0.1:{port}"
        try:
            token = cli_token(home)
            async with aiohttp.ClientSession() as http:
                async def get(path, method="GET"):
                    async with http.request(method, base + path, headers={
                            "Authorization": f"Bearer {token}"}) as answer:
                        return answer.status, await answer.json()
                return {name: await get(path, *rest) for name, path, *rest in [
                    ("block", "/v1/blocks/2"), ("tx", f"/v1/txs/{tx.id.hex()}"),
                    ("state", f"/v1/state/{account_key(payee).hex()}?height=2"),
                    ("state_before", f"/v1/state/{account_key(payee).hex()}?height=1"),
                    ("account_at", f"/v1/accounts/{_text(payee)}?height=2"),
                    ("too_high", f"/v1/state/{account_key(payee).hex()}?height=99"),
                    ("unknown", "/v1/nothing/here"), ("method", "/v1/status", "DELETE")]}
        finally:
            await runner.cleanup()
    try:
        got = asyncio.run(scenario())
    finally:
        node.store.close()
        node._lock.close()
    status, block = got["block"]
    assert status == 200 and Block.decode(bytes.fromhex(block["raw"])).hash.hex() == \
        block["header"]["hash"]
    assert Header.decode(bytes.fromhex(block["header"]["raw"])).hash.hex() == \
        block["header"]["hash"]
    shown = block["txs"][0]
    assert Tx.decode(bytes.fromhex(shown["raw"])).signature.hex() == shown["signature"]
    assert got["tx"][1]["tx"]["signature"] == tx.signature.hex()
    status, proven = got["state"]
    header = Header.decode(bytes.fromhex(block["header"]["raw"]))
    assert status == 200 and proven["height"] == 2 and proven["present"]
    assert verify_proof(header.state_root, account_key(payee), bytes.fromhex(proven["value"]),
                        Proof.decode(bytes.fromhex(proven["proof"])))
    assert got["state_before"][1]["present"] is False
    assert got["account_at"][1]["balance"] == str(5 * 10**8)
    assert got["too_high"][0] == 404 and got["too_high"][1]["code"] == "height_unavailable"
    assert got["unknown"] == (404, {"error": "no route GET /v1/nothing/here",
                                    "code": "not_found"})
    assert got["method"][0] == 405 and got["method"][1]["code"] == "method_not_allowed"


def _text(address):
    from chain.address import encode_address
    return encode_address(address)
