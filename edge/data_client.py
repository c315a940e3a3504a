"""The owner's and the buyer's side of the data market (docs/protocol.md §18), through a node's
API and a wallet key: what ``smartshare data ...``, the demo and the tests use.

- owner: ``offer`` (the gateway starts keeping the device's data frames, then the dataset is
  registered on chain naming that gateway), ``consent``, ``revoke``;
- buyer: ``datasets``, ``buy`` (a purchase into escrow), ``fetch`` (a signed request; the
  envelope is checked against the commitment on chain, decrypted with the wallet's X25519 key
  and every record's device signature verified), ``refund`` (after the deadline).

Every refusal raises DataRefused with a sentence and a code; a refused transaction or request
leaves every token where it was.
"""

import json
import os
import time

from chain.address import address_from_pubkey, decode_address, encode_address
from edge.agent import data_calls, messages
from edge.agent.chain_port import from_json_value, to_json_value
from edge.agent.data_envelope import DataError, buyer_box, open_delivery, verified_frames
from edge.agent.signer import KeyFileSigner
from edge.cli_wallet import sign_with_fee


class DataRefused(Exception):
    """A data-market operation that did not happen; ``code`` says why in one word."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


class DataClient:
    """One wallet's data-market operations against one node (and its gateway agent)."""

    def __init__(self, client, pair, wait_s=60.0):
        self.client, self.pair, self.wait_s = client, pair, wait_s
        self.status = client.get("/v1/status")
        self.chain_id = self.status["chain_id"]

    # -- plumbing ------------------------------------------------------------------------------

    def agent(self):
        try:
            return self.client.get("/v1/agent")
        except Exception as exc:  # the client's ApiError
            raise DataRefused(f"the node runs no agent: {exc}", "no_agent") from None

    def contract(self):
        found = self.agent().get("data_contract")
        if not found:
            raise DataRefused("the gateway's data market contract is not deployed yet; try "
                              "again in a few seconds", "no_contract")
        return decode_address(found)

    def query(self, method, *args):
        """A read-only call of the data market; its value (bytes as bytes)."""
        result = self.client.post(f"/v1/contracts/{encode_address(self.contract())}/query", {
            "method": method, "args": [to_json_value(a) for a in args]})
        if not result["ok"]:
            raise DataRefused(f"{method} failed: {result['error']}", "query_failed")
        return from_json_value(result["return"])

    def send(self, doc, what):
        """Sign, submit and wait for one transaction; its receipt. A refusal by the node or a
        failed call raises DataRefused with the reason."""
        nonce = self.client.get(f"/v1/accounts/{self.pair.address_text}")["next_nonce"]
        tx = sign_with_fee(self.pair, self.status, nonce, data_calls.tx_payload(doc))
        result = self.client.submit([tx.raw])[0]
        if not result["accepted"]:
            raise DataRefused(f"{what} refused ({result['reason']}): {result['detail']}",
                              result["reason"])
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline:
            found = self.client.get(f"/v1/txs/{tx.id.hex()}")
            if found["status"] == "committed":
                receipt = found["receipt"]
                if receipt["status"] != 0:
                    raise DataRefused(f"{what} failed: {receipt.get('error')}", "call_failed")
                return dict(receipt, height=found["height"], id=tx.id.hex())
            if found["status"] in ("evicted", "invalid"):
                raise DataRefused(f"{what} dropped ({found['reason']}): {found['detail']}",
                                  found["reason"])
            time.sleep(0.1)
        raise DataRefused(f"{what}: transaction {tx.id.hex()} still pending after "
                          f"{self.wait_s:.0f} s", "timeout")

    # -- the owner -----------------------------------------------------------------------------

    def offer(self, dataset_id, device_hex, price, unit="record", period_ms=None, token=None,
              delivery_ms=None, description="", schema="", licence=""):
        """Have the gateway keep the device's data as ``dataset_id`` for this owner, then
        register the dataset on chain (no consent yet); the dataset's record."""
        contract, gateway = self.contract(), decode_address(self.agent()["address"])
        self.client.post("/v1/data/datasets", {"id": dataset_id, "device": device_hex,
                                               "owner": self.pair.address_text})
        terms = {"device": bytes.fromhex(device_hex), "gateway": gateway, "price": price,
                 "unit": unit, "description": description, "schema": schema,
                 "licence": licence}
        for name, value in (("period_ms", period_ms), ("token", token),
                            ("delivery_ms", delivery_ms)):
            if value is not None:
                terms[name] = value
        self.send(data_calls.register_payload(contract, dataset_id, terms),
                  f"register {dataset_id}")
        return self.query("dataset", dataset_id)

    def consent(self, dataset_id, buyer=None, revoke=False):
        """Consent to (or with ``revoke`` end) sales of a dataset to every buyer or one."""
        buyer_bytes = decode_address(buyer) if buyer else None
        what = f"{'revoke' if revoke else 'consent'} {dataset_id}"
        receipt = self.send(data_calls.consent_payload(self.contract(), dataset_id, buyer_bytes,
                                                       revoke), what)
        return {"dataset": dataset_id, "buyer": buyer, "consent": not revoke,
                "height": receipt["height"], "tx": receipt["id"]}

    # -- the buyer -----------------------------------------------------------------------------

    def datasets(self, everything=False):
        query = f"?buyer={self.pair.address_text}" + ("&all=1" if everything else "")
        return self.client.get(f"/v1/data/datasets{query}")["datasets"]

    def buy(self, dataset_id, from_ms, to_ms, max_records):
        """Purchase a range into escrow; ``{purchase, cost, deadline, ...}``."""
        contract = self.contract()
        dataset = self.query("dataset", dataset_id)
        if dataset is None:
            raise DataRefused(f"no dataset {dataset_id!r} on chain; `smartshare data list` "
                              "shows what is offered", "unknown_dataset")
        if not self.query("consented", dataset_id, self.pair.address):
            raise DataRefused(f"the owner has not consented to selling {dataset_id!r} to this "
                              "wallet (or revoked it); nothing was sent", "no_consent")
        try:
            cost = data_calls.cost_of(dataset, from_ms, to_ms, max_records)
        except ValueError as exc:
            raise DataRefused(str(exc), "bad_range") from None
        token = dataset.get("token")
        if token:
            self.send(data_calls.call_payload(token, "approve", [contract, cost]),
                      "approve the token payment")
        elif int(self.client.get(f"/v1/accounts/{self.pair.address_text}")["balance"]) < cost:
            raise DataRefused(f"not enough SSP: the purchase costs {cost} base units (plus the "
                              "fee); top up the wallet first", "insufficient_balance")
        purchase_id = os.urandom(16)
        box_key, _ = buyer_box(self.pair)
        receipt = self.send(data_calls.purchase_payload(
            contract, purchase_id, dataset_id, box_key, from_ms, to_ms, max_records, cost,
            token), f"purchase of {dataset_id}")
        record = self.query("purchase_of", purchase_id)
        return {"purchase": purchase_id.hex(), "dataset": dataset_id, "cost": cost,
                "deadline": record["deadline"], "height": receipt["height"],
                "tx": receipt["id"]}

    def request(self, purchase_id):
        """One signed fetch through the API: ``(data_state body, envelope bytes or None)``."""
        signer = KeyFileSigner.from_keypair(self.pair)
        envelope = messages.seal(signer, self.chain_id, {"type": "data_fetch",
                                                         "purchase": purchase_id})
        answer = self.client.post("/v1/data/fetch", {"envelope": envelope.decode()})
        gateway_key, body = messages.open_envelope(answer["state"].encode(), self.chain_id)
        if encode_address(address_from_pubkey(gateway_key)) != self.agent()["address"]:
            raise DataRefused("the answer is not signed by the gateway's agent", "bad_gateway")
        payload = bytes.fromhex(answer["payload"]) if answer["payload"] else None
        return body, payload

    def fetch(self, purchase_id, wait=True):
        """The purchase's records, after every check (§18.3); waits while the gateway works."""
        deadline = time.monotonic() + (self.wait_s if wait else 0)
        while True:
            body, payload = self.request(purchase_id)
            if body["type"] == "error":
                raise DataRefused(body["message"], body["code"])
            if body["state"] == "refused" or body["state"] == "failed":
                raise DataRefused(f"the gateway refused: {body['reason']}", body["state"])
            if payload is not None:
                return self.open(purchase_id, payload)
            if time.monotonic() >= deadline:
                raise DataRefused(f"not delivered yet ({body['state']}: {body.get('reason')}); "
                                  "fetch again later", "not_ready")
            time.sleep(0.2)

    def open(self, purchase_id, envelope):
        """Check a delivered envelope against the chain and decrypt it: ``{records: [...]}``."""
        record = self.query("purchase_of", bytes.fromhex(purchase_id))
        if record is None:
            raise DataRefused(f"no purchase {purchase_id} on chain", "unknown_purchase")
        if record["buyer"] != self.pair.address:
            raise DataRefused(f"purchase {purchase_id} is not this wallet's", "not_yours")
        dataset = self.query("dataset", record["dataset"])
        _, secret = buyer_box(self.pair)
        try:
            plain = open_delivery(envelope, bytes.fromhex(purchase_id), record.get("hash"),
                                  secret)
            frames = verified_frames(plain, dataset, self.chain_id)
        except DataError as exc:
            raise DataRefused(str(exc), "bad_delivery") from None
        return {"purchase": purchase_id, "dataset": record["dataset"].decode(),
                "records": [{"seq": seq, "timestamp_ms": ts, "data": json.loads(text)}
                            for seq, ts, text in frames],
                "hash": record["hash"].hex(), "size": len(envelope),
                "owner_paid": record["owner_paid"], "fee": record["fee"],
                "refunded": record["refunded"]}

    def refund(self, purchase_id):
        receipt = self.send(data_calls.refund_payload(self.contract(),
                                                      bytes.fromhex(purchase_id)),
                            f"refund of {purchase_id}")
        return {"purchase": purchase_id, "refunded": receipt["return"], "tx": receipt["id"]}

