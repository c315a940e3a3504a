"""The data asset platform in ``make run`` (``node run --demo``): the home's owner (the
``default`` wallet) offers the simulated weather station's readings as a dataset and consents;
the demo buyer (its data wallet ``demo-data``, apart from the ``demo`` wallet whose nonces the
service buyer uses) buys the last minute of readings every ``every_s`` seconds, fetches the
sealed delivery, checks it against the hash on chain and decrypts it; the log shows what the
owner earned and the platform fee (docs/protocol.md §18).
"""

import time

from chain.keys import KeyPair
from edge.client import ApiClient, ApiError
from edge.data_client import DataClient, DataRefused
from edge.node_home import DEFAULT_WALLET

DATASET = "weather-demo"
PRICE = 10_000                 # base units per reading (0.0001 SSP)


class DemoData:
    """A weather dataset sold to the demo buyer; ``run`` is the body of a demo thread that
    ends when ``stopping`` is set."""

    def __init__(self, config, wallet_file, stopping, log=print, every_s=30.0):
        self.config, self.wallet_file, self.every_s = config, wallet_file, every_s
        self.stopping, self._log = stopping, log

    def log(self, text):
        self._log(f"demo data: {text}")

    def run(self):
        try:
            client = ApiClient.for_home(self.config.home, self.config.api_url, timeout=5.0)
            owner = DataClient(client, KeyPair.load(self.config.path(
                f"wallets/{DEFAULT_WALLET}.json")), wait_s=30.0)
            if self._offer(client, owner) is None:
                return
            buyer = DataClient(client, KeyPair.load(self.wallet_file), wait_s=30.0)
            pause = 0.0
            while not self.stopping.wait(pause):
                self._buy(buyer)
                pause = self.every_s
        except Exception as exc:  # noqa: BLE001 - the demo never takes the node down
            self.log(f"stopped: {type(exc).__name__}: {exc}")

    def _offer(self, client, owner):
        """Offer and consent once the data contract and a weather station are there."""
        while not self.stopping.wait(1.0):
            try:
                if not client.get("/v1/agent").get("data_contract"):
                    continue
                device = next((d["id"] for d in client.get("/v1/devices")["devices"]
                               if d["kind"] == "weather" and d["status"] == "approved"), None)
                if device is None:
                    continue
                if owner.query("dataset", DATASET) is None:
                    owner.offer(DATASET, device, PRICE, description="simulated weather station",
                                schema="weather/data v1: t_c rh wind_ms wind_deg p_hpa",
                                licence="CC-BY-4.0")
                    owner.consent(DATASET)
                    self.log(f"offered {DATASET} (device {device}) to every buyer at "
                             f"{PRICE} base units a reading")
                return device
            except (ApiError, DataRefused) as exc:
                self.log(f"waiting: {exc}")
        return None

    def _buy(self, buyer):
        now = time.time_ns() // 1_000_000
        try:
            bought = buyer.buy(DATASET, now - 60_000, now, 100)
            got = buyer.fetch(bought["purchase"])
        except (ApiError, DataRefused) as exc:
            self.log(f"purchase failed: {exc}")
            return
        last = got["records"][-1]["data"] if got["records"] else {}
        self.log(f"bought {len(got['records'])} readings of the last minute "
                 f"(purchase {bought['purchase'][:8]}…, {got['size']:,} bytes sealed, hash "
                 f"verified); owner paid {got['owner_paid']}, fee {got['fee']}, refunded "
                 f"{got['refunded']} base units; latest t_c={last.get('t_c')}")
