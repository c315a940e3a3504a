"""A gateway that sells its devices' services, for end-to-end SmartAgent tests.

    gw = AgentGateway(node_factory, tmp_path, interval_s=1)   # node + Mosquitto + agent + devices
    gw.buyer("alice", ssp=50)                                  # a funded wallet of the home
    proc = gw.buy("alice", "parking.time", "0.02", 60, stop_after=5)
    result = gw.finish(proc)                                   # the buyer's JSON summary

Everything is real: the node process runs the seller's agent, its own Mosquitto and the chain;
the simulated devices are paho clients (threads of the test process, so they outlive a node
killed with -9); each buyer is a ``smartshare market buy`` process.
"""

import json
import os
import subprocess
import sys
import threading
import time

import lmdb

from chain.address import encode_address
from chain.keys import KeyPair
from chain.tx import Transfer
from edge.agent.metering import DeviceFrame
from edge.cli_wallet import sign_with_fee
from edge.client import ApiClient, ApiError
from edge.config import load
from edge.mqtt import sim_kinds
from edge.mqtt.sim_fleet import api_approver, device_plan, run_simulators
from edge.mqtt.certs import ca_pem
from edge.mqtt.devices import LINK
from edge.mqtt.simulators import Gateway, gateway_with_ca
from edge.testnet import free_ports
from tests import nodeproc
from tests.mqttkit import wait_for

DONE = ("closed", "refunded", "failed")


class AgentGateway:
    """A devnet node with devices and its selling agent, ready to trade."""

    def __init__(self, factory, base, name="gateway", interval_s=1, settlement_s=3600,
                 dispute_s=30, sim_interval=0.2, kinds=sim_kinds.KINDS, agent_ssp=1000,
                 p2p=False, **config_changes):
        self.base, self.kinds, self.sim_interval_s = base, kinds, sim_interval
        self.home = factory.home(name, mqtt_port=free_ports(1)[0])
        config = load(self.home.path)
        config.agent_interval_s, config.agent_settlement_s = interval_s, settlement_s
        config.agent_dispute_s = dispute_s
        if p2p:  # peers (light nodes) may join its chain
            config.p2p_port = free_ports(1)[0]
        for name_, value in config_changes.items():     # e.g. agent_data_fee_account="ssp1..."
            setattr(config, name_, value)
        config.save()
        self.config = config
        self.node = factory.node(self.home)
        self.client = self.home.client(timeout=5)
        self.seller = wait_for("the node's agent", lambda: self._get("/v1/agent").get(
            "address"), 30)
        self.home.cli("wallet", "transfer", self.seller, str(agent_ssp), "--wait", check=True)
        self.contract = wait_for("the channel contract", lambda: self._get(
            "/v1/agent")["contract"], 60)
        self._stop = threading.Event()
        self._devices = threading.Thread(target=self._run_devices, daemon=True)
        self._devices.start()
        wait_for("every device's offer", lambda: len(self._get("/v1/services")["services"])
                 >= len(kinds), 60)

    # -- plumbing ------------------------------------------------------------------------------

    def _get(self, path):
        try:
            return self.client.get(path)
        except ApiError:
            return {"services": [], "contract": None, "sessions": []}

    def _run_devices(self):
        gateway = gateway_with_ca(Gateway("127.0.0.1", self.config.mqtt_tls_port,
                                          self.config.mqtt_provision_password,
                                          self.home.chain_id), ca_pem(self.home.path))
        # The devices' state (keys, seq, outbox) lives beside the gateway's home, per test.
        state_dir = str(self.base / f"{os.path.basename(self.home.path)}-sims")
        run_simulators(device_plan(self.kinds, 1), state_dir,
                       gateway, stop=self._stop, interval=self.sim_interval_s,
                       approve=api_approver(ApiClient.for_home(self.home.path, self.home.api_url,
                                                               timeout=5)),
                       log=self._device_log, log_disconnects=False)

    def _device_log(self, line):
        """The simulated devices' log, kept beside the buyers' (``devices.log``) for failures."""
        with open(self.base / "devices.log", "a") as f:
            f.write(f"{time.time():.3f} {line}\n")

    def close(self):
        self._stop.set()
        self._devices.join(30)

    def device(self, kind):
        devices = self.client.get("/v1/devices")["devices"]
        return next(d["id"] for d in devices if d["kind"] == kind and d["status"] == "approved")

    # -- buyers --------------------------------------------------------------------------------

    def buyer(self, name, ssp=100):
        """A new wallet of the home holding ``ssp`` SSP; its address."""
        return self.buyers([name], ssp)[name]

    def buyers(self, names, ssp=100):
        """New wallets of the home, each holding ``ssp`` SSP (paid by the home's default wallet
        in one batch of transfers); ``{name: address}``."""
        faucet = KeyPair.load(self.home.wallet_file())
        status = self.client.get("/v1/status")
        nonce = self.client.get(f"/v1/accounts/{faucet.address_text}")["next_nonce"]
        amount = ssp * 10 ** status["decimals"]
        addresses, txs = {}, []
        for i, name in enumerate(names):
            pair = KeyPair.generate()
            pair.save(self.home.wallet_file(name))
            addresses[name] = pair.address_text
            txs.append(sign_with_fee(faucet, status, nonce + i, Transfer(pair.address, amount)).raw)
        results = self.client.submit(txs)
        assert all(r["accepted"] for r in results), results
        wait_for("the buyers' funds", lambda: all(
            self.balance(a) == amount for a in addresses.values()), 30, 0.1)
        return addresses

    def buy(self, name, service, max_price, quantity, stop_after=None, *extra):
        """A ``market buy`` process (stdout: its JSON summary; stderr: its log)."""
        args = ["market", "buy", service, "--max-price", max_price, "--quantity", quantity,
                "--name", name, "--json", "--timeout", 300, *extra]
        if stop_after is not None:
            args += ["--stop-after", stop_after]
        return self._buyer_process(name, args)

    def resume(self, name):
        return self._buyer_process(name, ["market", "resume", "--name", name, "--json",
                                          "--timeout", 300])

    def _buyer_process(self, name, args):
        self._runs = getattr(self, "_runs", 0) + 1
        tag = f"{name}-{self._runs}"
        out = open(self.base / f"buyer-{tag}.out", "wb")
        err = open(self.base / f"buyer-{tag}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "--home", self.home.path,
                                 *[str(a) for a in args]], env=nodeproc.cli_env(),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                preexec_fn=nodeproc._die_with_parent if nodeproc._prctl
                                else None)
        proc.tag = tag
        out.close()
        err.close()
        return proc

    def finish(self, proc, timeout=120):
        """Wait for a buyer process; its JSON summary (fails with its log otherwise)."""
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
            code = "timeout"
        out = (self.base / f"buyer-{proc.tag}.out").read_text()
        log = self.buyer_log(proc)
        assert code == 0, f"buyer {proc.tag} ended with {code}:\n{log}\n{out}\n" \
                          f"{self.node.log_tail(60)}"
        return json.loads(out)

    def buyer_log(self, proc):
        return (self.base / f"buyer-{proc.tag}.log").read_text()

    # -- the chain -----------------------------------------------------------------------------

    def height(self):
        return self.client.get("/v1/status")["height"]

    def balance(self, address):
        return int(self.client.get(f"/v1/accounts/{address}")["balance"])

    def seller_books(self):
        """``(seller's balance, participation pool)`` read at one height. The pool is what
        participation rewards have not paid out yet (pool + payable, ``/v1/supply``); the
        gateway's agent is the only participant its channels make (their seller and the
        contract's creator, docs/protocol.md §9), so what the pool loses between two readings
        the seller was paid, with its next contract transaction, on top of its sales."""
        def read():
            supply = self.client.get("/v1/supply")
            account = self.client.get(f"/v1/accounts/{self.seller}")
            again = self.client.get("/v1/supply")
            if supply["height"] == account["height"] == again["height"]:
                return int(account["balance"]), int(supply["participation_pool"])
            return None
        return wait_for("the seller's balance and the supply at one height", read, 30, 0.05)

    def check_seller_received(self, books_before, paid, since_height):
        """The seller's balance moved by exactly ``paid`` minus its fees since ``since_height``
        plus the participation rewards it took meanwhile; the channel contract holds nothing."""
        balance, pool = self.seller_books()
        rewards = books_before[1] - pool
        assert balance == books_before[0] + paid - self.fees_since(self.seller, since_height) \
            + rewards, (balance, books_before, paid, rewards)
        assert self.contract_balance() == 0

    def contract_balance(self):
        return int(self.client.get(f"/v1/contracts/{self.contract}")["balance"])

    def fees_since(self, address, height):
        """Fees ``address`` paid in blocks above ``height``."""
        txs = self.client.get(f"/v1/accounts/{address}/txs?limit=1000")["txs"]
        return sum(int(t["fee"]) for t in txs if t["height"] > height
                   and t["sender"] == address)

    def session(self, session_id):
        return self.client.get(f"/v1/market/sessions/{session_id}")

    def wait_settled(self, session_id, timeout=60):
        return wait_for(f"session {session_id} settled", lambda: (
            lambda s: s if s["state"] in ("settled", "expired") else None)(
                self.session(session_id)), timeout, 0.1)

    def frames(self, device_hex):
        """Every stored frame of a device, read from the node's LMDB (read-only)."""
        env = lmdb.open(self.home.data_dir, readonly=True, max_dbs=64, subdir=True)
        try:
            db = env.open_db(b"frames", create=False)
            with env.begin(db=db) as txn:     # one log in arrival order (§15.4)
                device = bytes.fromhex(device_hex)
                frames = (DeviceFrame(bytes(raw)[LINK.size:]) for key, raw in txn.cursor()
                          if len(key) == 8)      # not the journal records beside them
                return sorted((f for f in frames if bytes(f.device_id) == device),
                              key=lambda f: f.seq)
        finally:
            env.close()


def session_frames(frames, ref):
    """The frames of the device session an agent session (``ref``) commanded."""
    opening = next(f for f in frames if f.doc.get("ref") == ref)
    session = opening.doc["session"]
    return [f for f in frames if f.doc.get("session") == session and f.seq >= opening.seq]


def address_hex(text):
    from chain.address import decode_address
    return decode_address(text).hex()


def text_address(hex_address):
    return encode_address(bytes.fromhex(hex_address))


def wait_file_line(path, text, timeout=60):
    return wait_for(f"{text!r} in {os.path.basename(path)}",
                    lambda: os.path.exists(path) and text in open(path).read(), timeout, 0.1)


def now_ms():
    return time.time_ns() // 1_000_000
