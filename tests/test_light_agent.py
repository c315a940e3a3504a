"""A SmartAgent session whose buyer runs on a light node: the buyer's wallet and agent read the
chain only through the light node's API (balances and channel state proven at its last
irreversible block, transactions sent through its peers, receipts proven), and the trade ends
with the same exact balances as with a full node (docs/protocol.md §13.7, §17)."""

import json
import os
import subprocess
import sys

import pytest

from chain.keys import KeyPair
from edge.agent.services import SERVICE_TYPES, amount_for
from edge.config import load
from tests import nodeproc
from tests.agentkit import AgentGateway
from tests.mqttkit import wait_for
from tests.nodeproc import NodeHome, NodeProcess, free_port, run_cli

pytestmark = pytest.mark.slow


def light_home(path, gw):
    api_port = free_port()
    config = load(gw.home.path)
    # One full node: no peers to agree on a checkpoint; the chain is young, so from genesis.
    info = run_cli("--home", path, "init", "--role", "light", "--genesis", gw.home.genesis_file,
                   "--api-port", api_port, "--seed", f"127.0.0.1:{config.p2p_port}",
                   "--checkpoint", "genesis", "--json",
                   check=True).json()
    return NodeHome(path, api_port, info)


def test_a_buyer_on_a_light_node_buys_readings_and_pays_exactly_what_was_metered(
        node_factory, tmp_path):
    gw = AgentGateway(node_factory, tmp_path, interval_s=1, settlement_s=2,
                      kinds=("weather",), p2p=True)
    light = None
    try:
        home = light_home(tmp_path / "light", gw)
        light = NodeProcess(home, tmp_path / "light.log").start()
        api = home.client()
        wait_for("the light node's LIB", lambda: api.get("/v1/status")["lib_height"] > 0, 60)
        buyer = KeyPair.generate()
        os.makedirs(os.path.dirname(home.wallet_file("farmer")), exist_ok=True)
        buyer.save(home.wallet_file("farmer"))
        gw.home.cli("wallet", "transfer", buyer.address_text, "20", "--wait", check=True)
        start = gw.height()
        wait_for("the funds, proven on the light node", lambda: int(api.get(
            f"/v1/accounts/{buyer.address_text}")["balance"]) > 0, 60)
        before = gw.balance(buyer.address_text)
        out = tmp_path / "buyer.out"
        with open(out, "wb") as stdout, open(tmp_path / "buyer.log", "wb") as stderr:
            proc = subprocess.run(
                [sys.executable, "-m", "edge.cli", "--home", home.path, "market", "buy",
                 "weather.reading", "--max-price", "0.001", "--quantity", "50",
                 "--stop-after", "8", "--name", "farmer", "--json", "--timeout", "240",
                 "--broker", f"127.0.0.1:{gw.config.mqtt_port}",
                 f"--market-password={gw.config.market_password}"],
                env=nodeproc.cli_env(), stdin=subprocess.DEVNULL, stdout=stdout,
                stderr=stderr, timeout=300)
        log = (tmp_path / "buyer.log").read_text()
        assert proc.returncode == 0, log + out.read_text()

        (bought,) = json.loads(out.read_text())["sessions"]
        assert bought["state"] == "closed", (bought, log)
        session = gw.wait_settled(bought["session"])
        stype = SERVICE_TYPES["weather.reading"]
        due = amount_for(session["units"], session["price"], stype.per, stype.min_units)
        assert session["units"] == bought["units"] >= 8
        assert session["redeemed"] == bought["paid"] == due
        assert bought["refunded"] == session["deposit"] - due
        after = before - due - gw.fees_since(buyer.address_text, start)
        assert gw.balance(buyer.address_text) == after
        wait_for("the same balance, proven on the light node", lambda: int(api.get(
            f"/v1/accounts/{buyer.address_text}")["balance"]) == after, 60)
    finally:
        if light is not None:
            light.stop()
        gw.close()
