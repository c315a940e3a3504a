"""``smartshare node run --simulate all --demo`` (what ``make run`` does): the seed's scenarios
played by a demo buyer against the node's own agent, with a live view in the node's log.

The demo funds the agent's wallet and a ``demo`` wallet from the home's ``default`` wallet (the
devnet's faucet) when they run low, then keeps one session of each service going — a car parks,
a flat rents the purifier, a guest uses the Wi-Fi, a farmer buys weather readings, an archive
rents storage with proofs, a lab runs compute jobs — each ending by itself after a while and
starting again; and the weather station's readings are offered as a dataset that the demo
buyer buys every half minute (edge/demo_data.py). Every few seconds it prints the sessions (state, metered units, what is due, the
best voucher, the installments redeemed) and the balances of buyer, seller and the channels.
"""

import os
import threading
import time

from chain.address import decode_address, encode_address
from chain.keys import KeyPair
from chain.store import Store
from chain.tx import Transfer
from edge.agent.buyer import LIVE, Buyer
from edge.agent.chain_port import ChainPort, ChainRefused, ChainUnavailable
from edge.agent.market_link import MarketLink, buyer_subscriptions
from edge.agent.runner import AgentRunner
from edge.agent.services import SERVICE_TYPES
from edge.agent.signer import KeyFileSigner
from edge.amounts import format_amount
from edge.client import ApiClient, ApiError
from edge.demo_data import DemoData
from edge.cli_wallet import sign_with_fee

DEMO_WALLET = "demo"
DATA_WALLET = "demo-data"      # the demo buyer's purchases of data (edge/demo_data.py)
# service -> (max price in base units per price unit, quantity, stop after) of the demo's orders
SCENARIOS = {
    "parking.time": (3_000_000, 600, 20),
    "purifier.runtime": (20_000_000, 36_000, 1_800),
    "router.bandwidth": (400_000, 5_000_000_000, 300_000_000),
    "weather.reading": (40_000, 500, 20),
    "storage.space": (400_000, 10_000_000, 76_800),
    "compute.job": (4_000_000, 10, None),
}
LOW_SSP, TOP_UP_SSP = 50, 1000


class DemoMarket:
    """The demo buyer and the live view, in a background thread of the node's process."""

    def __init__(self, config, log=print, view_s=5.0):
        self.config, self._log, self.view_s = config, log, view_s
        self.stopping = threading.Event()
        self._thread = None
        self.runner = None
        self.data = None

    def log(self, text):
        self._log(f"demo: {text}")

    def start(self):
        self._thread = threading.Thread(target=self._run, name="demo", daemon=True)
        self._thread.start()

    def stop(self, timeout=20.0):
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the demo ------------------------------------------------------------------------------

    def _run(self):
        try:
            client = ApiClient.for_home(self.config.home, self.config.api_url, timeout=5.0)
            agent = self._wait_agent(client)
            if agent is None:
                return
            buyer = self._buyer(client)
            data_wallet = self._wallet(DATA_WALLET)
            self._fund(client, [agent["address"], encode_address(buyer.signer.address),
                                KeyPair.load(data_wallet).address_text])
            if not self._wait_contract(client):
                return
            self.data = threading.Thread(target=DemoData(self.config, data_wallet, self.stopping,
                                                         self._log).run, name="demo-data",
                                         daemon=True)
            self.data.start()
            next_view = 0.0
            while not self.stopping.wait(1.0):
                self._keep_buying(buyer)
                if time.monotonic() >= next_view:
                    next_view = time.monotonic() + self.view_s
                    self._view(client, buyer)
        except Exception as exc:  # noqa: BLE001 - the demo never takes the node down
            self.log(f"stopped: {type(exc).__name__}: {exc}")
        finally:
            if self.runner is not None:
                self.runner.stop()
            if self.data is not None:
                self.data.join(10)

    def _wait_agent(self, client):
        while not self.stopping.is_set():
            try:
                return client.get("/v1/agent")
            except ApiError as exc:
                if exc.code == "no_agent":
                    self.log("off: this node runs no agent ([mqtt] port and [agent] enabled)")
                    return None
            self.stopping.wait(0.5)
        return None

    def _wait_contract(self, client):
        while not self.stopping.wait(0.5):
            if client.get("/v1/agent")["contract"]:
                return True
        return False

    def _wallet(self, name):
        path = os.path.join(self.config.home, "wallets", f"{name}.json")
        if not os.path.exists(path):
            KeyPair.generate().save(path)
        return path

    def _buyer(self, client):
        signer = KeyFileSigner(self._wallet(DEMO_WALLET))
        folder = os.path.join(self.config.home, "buyers", DEMO_WALLET)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        client_id = f"buyer-{signer.address.hex()[:16]}"
        buyer = Buyer(Store(os.path.join(folder, "data")), signer, ChainPort(client),
                      client.get("/v1/status")["chain_id"], client_id, log=self._log)
        host = self.config.mqtt_host if self.config.mqtt_host not in ("", "0.0.0.0", "::") \
            else "127.0.0.1"
        self.runner = AgentRunner(buyer, log=self._log)
        self.runner.link = MarketLink(host, self.config.mqtt_port, "market",
                                      self.config.market_password, client_id,
                                      buyer_subscriptions(client_id), self.runner.deliver,
                                      self._log)
        self.runner.start()
        return buyer

    def _fund(self, client, addresses):
        """Top up from the faucet wallet what runs low (one transfer each, waited for)."""
        faucet = KeyPair.load(os.path.join(self.config.home, "wallets", "default.json"))
        for address in addresses:
            balance = int(client.get(f"/v1/accounts/{address}")["balance"])
            if balance >= LOW_SSP * 10**8:
                continue
            status = client.get("/v1/status")
            nonce = client.get(f"/v1/accounts/{faucet.address_text}")["next_nonce"]
            tx = sign_with_fee(faucet, status, nonce, Transfer(decode_address(address),
                                                               TOP_UP_SSP * 10**8))
            result = client.submit([tx.raw])[0]
            if not result["accepted"]:
                raise RuntimeError(f"funding {address} refused: {result['detail']}")
            while client.get(f"/v1/txs/{tx.id.hex()}")["status"] != "committed":
                self.stopping.wait(0.2)
            self.log(f"funded {address} with {TOP_UP_SSP} SSP from the default wallet")

    def _keep_buying(self, buyer):
        live = {s["service"] for s in self.runner.call(lambda: list(buyer.sessions.values()))
                if s["state"] in LIVE}
        for service, (price, quantity, stop_after) in SCENARIOS.items():
            if service not in live:
                self.runner.call(buyer.buy, service, price, quantity, None, None, stop_after)

    # -- the live view -------------------------------------------------------------------------

    def _view(self, client, buyer):
        try:
            sessions = client.get("/v1/market/sessions")["sessions"]
            agent = client.get("/v1/agent")
            seller = int(client.get(f"/v1/accounts/{agent['address']}")["balance"])
            bought = int(client.get(f"/v1/accounts/{encode_address(buyer.signer.address)}")
                         ["balance"])
            held = int(client.get(f"/v1/contracts/{agent['contract']}")["balance"])
            height = client.get("/v1/status")["height"]
        except (ApiError, ChainUnavailable, ChainRefused):
            return
        live = sorted((s for s in sessions if s["state"] not in ("settled", "expired")),
                      key=lambda s: s["service"])
        settled = [s for s in sessions if s["state"] == "settled"]
        lines = [f"market at block {height}: seller {_ssp(seller)} SSP, demo buyer "
                 f"{_ssp(bought)} SSP, in channels {_ssp(held)} SSP; {len(settled)} settled, "
                 f"{agent['stats']['vouchers']} vouchers"]
        for s in live:
            unit = SERVICE_TYPES[s["service"]].unit
            lines.append(f"  {s['service']:<17} {s['id'][:8]} {s['state']:<9} {s['units']:>11} "
                         f"{unit:<7} due {_ssp(s['due']):>9}  voucher {_ssp(s['paid']):>9}  "
                         f"redeemed {_ssp(s['redeemed']):>9}  ({s['vouchers']} vouchers)")
        for line in lines:
            self._log(line)


def _ssp(base_units):
    return format_amount(base_units, 8)
