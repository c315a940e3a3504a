"""The gateway's data desk (docs/protocol.md §18): it keeps the data frames of the devices its
owner offers as datasets, and delivers purchased ranges sealed to the buyer's key, committing
each delivery's hash on chain through ``data_market.lua`` (which pays the owner).

Privacy: nothing leaves the gateway without a recorded consent covering that dataset and buyer.
A delivery is made only for a purchase on chain, irreversible, that the contract accepted under
the owner's consent, to the very buyer who made it (its signed request), of a dataset this
gateway's owner offered here (``offer``, through the authenticated local API) and whose record
on chain names this gateway, this device and this owner. A dataset with no consent on chain is
never listed to buyers.

Runs on the agent's worker with the seller's wallet (one nonce sequence per key): ``on_frames``
and ``tick`` copy frames, ``fetch`` answers buyers, ``on_final`` follows the deliver
transactions.
"""

import re
import time

from chain.address import address_from_pubkey, encode_address
from chain.calls import contract_address
from edge.agent import data_calls, messages
from edge.agent.chain_port import ChainRefused, ChainUnavailable
from edge.agent.data_envelope import commitment, pack_records, seal
from edge.agent.data_store import DataStore
from edge.agent.metering import FrameReader
from edge.agent.records import Meta

DEPLOY_KEY = "deploy:data_market"
DELIVER = "data-deliver"
COPY_BATCH = 1000
DATASET_ID = re.compile(r"^[A-Za-z0-9._-]{1,32}$")


def now_ms():
    return time.time_ns() // 1_000_000


class DataConfig:
    """``[agent] data_contract``, ``data_fee_account``, ``data_fee_permille``."""

    def __init__(self, contract=None, fee_account=None, fee_permille=20,
                 retention_ms=365 * 86_400_000):
        self.contract, self.fee_account, self.fee_permille = contract, fee_account, fee_permille
        self.retention_ms = retention_ms     # records older than this are deleted hourly


class DataDesk:
    """Datasets, their records and deliveries of one gateway agent. Not thread-safe."""

    def __init__(self, store, signer, chain, chain_id, identity, frames, wallet, config=None,
                 log=print):
        self.store, self.signer, self.chain, self.chain_id = store, signer, chain, chain_id
        self.identity, self.wallet, self.log = identity, wallet, log
        self.config = config or DataConfig()
        self.data = DataStore(store)
        self.frames = FrameReader(frames)
        self.meta = Meta(store)
        self.outgoing = []
        self._dirty_devices = set()
        self._prune_at = 0
        self.stats = {"records": 0, "deliveries": 0, "refused": 0, "pruned": 0}

    # -- the contract --------------------------------------------------------------------------

    def start(self):
        """Make sure a data_market contract is known or being deployed; catch up on frames."""
        self._dirty_devices.update(bytes.fromhex(d["device"]) for d in self.data.datasets())
        if self.contract is not None:
            return
        if self.config.contract is not None:
            self.meta.set("data_contract", self.config.contract.hex())
            return
        record = self.wallet.outbox.by_key(DEPLOY_KEY)
        if record is None or record["status"] == "failed" or (
                record["status"] == "final" and record["receipt"]["status"] != 0):
            fee_to = self.config.fee_account or self.signer.address
            self.wallet.send(data_calls.deploy_payload(fee_to, self.config.fee_permille),
                             "deploy data_market", key=DEPLOY_KEY)

    @property
    def contract(self):
        found = self.meta.get("data_contract")
        return bytes.fromhex(found) if found else None

    def on_final(self, txn, record):
        """A wallet record of the desk became final or failed (in the wallet's write)."""
        key = record["key"] or ""
        ok = record["status"] == "final" and record["receipt"]["status"] == 0
        if key == DEPLOY_KEY:
            if ok:
                address = contract_address(self.signer.address, record["tx"]["nonce"])
                self.meta.set("data_contract", address.hex(), txn)
                self.log(f"agent: data market contract at {encode_address(address)}")
            else:
                self.log("agent: deploying the data market failed: "
                         f"{record['error'] or record['receipt'].get('error')}")
            return
        kind, _, pid = key.partition(":")
        if kind != DELIVER:
            return
        delivery = self.data.delivery(bytes.fromhex(pid), txn)
        if ok:
            delivery.update(state="delivered", paid=(record["receipt"].get("return") or {}))
            self.stats["deliveries"] += 1
        else:
            delivery.update(state="failed", reason=record["error"] or record["receipt"].get(
                "error") or "the deliver transaction failed")
        self.data.put_delivery(bytes.fromhex(pid), delivery, txn)
        self.log(f"agent: data purchase {pid}: {delivery['state']}"
                 + (f" ({delivery.get('reason')})" if delivery["state"] == "failed" else ""))

    def owns(self, record):
        key = record["key"] or ""
        return key == DEPLOY_KEY or key.startswith(DELIVER + ":")

    # -- datasets ------------------------------------------------------------------------------

    def offer(self, dataset_id, device_id, owner):
        """Start keeping the data frames of an approved device as ``dataset_id`` for ``owner``
        (20-byte address: the only account whose dataset record this gateway will serve)."""
        if not isinstance(dataset_id, str) or not DATASET_ID.match(dataset_id):
            raise ValueError("a dataset id is 1..32 characters of A-Z a-z 0-9 . _ -")
        if self.identity.device(device_id) is None:
            raise ValueError(f"device {device_id.hex()} is not an approved device; approve it "
                             "with `smartshare device approve`")
        if len(owner) != 20:
            raise ValueError("bad owner address")
        found = self.data.dataset(dataset_id)
        if found is not None:
            if found["device"] != device_id.hex() or found["owner"] != owner.hex():
                raise ValueError(f"dataset {dataset_id} is already offered for another device "
                                 "or owner")
            return found
        doc = {"id": dataset_id, "device": device_id.hex(), "owner": owner.hex(), "cursor": 0,
               "records": 0, "first_ms": 0, "last_ms": 0, "created_ms": now_ms()}
        self.data.put_dataset(doc)
        self._dirty_devices.add(device_id)
        return doc

    def listing(self, buyer=None, everything=False):
        """The datasets with their state on chain. Buyers (``everything`` False) see only the
        datasets whose owner consented on chain (to every buyer, or to ``buyer``)."""
        out = []
        for doc in self.data.datasets():
            entry = dict(doc, gateway=encode_address(self.signer.address),
                         contract=encode_address(self.contract) if self.contract else None)
            terms = self._chain_dataset(doc)
            entry["terms"] = _terms_view(terms) if terms else None
            entry["consent"] = self._consent(doc, terms, buyer)
            if everything or entry["consent"] in ("every buyer", "this buyer"):
                out.append(entry)
        return out

    def _chain_dataset(self, doc):
        """The dataset's record on chain if it is the one offered here, else None."""
        if self.contract is None:
            return None
        try:
            terms = self.chain.query(self.contract, "dataset", doc["id"])
        except (ChainUnavailable, ChainRefused):
            return None
        if terms is None or terms["gateway"] != self.signer.address or \
                terms["device"].hex() != doc["device"] or terms["owner"].hex() != doc["owner"]:
            return None
        return terms

    def _consent(self, doc, terms, buyer):
        if terms is None:
            return "not registered"
        if terms["all"]:
            return "every buyer"
        if buyer is not None and self.chain.query(self.contract, "consented", doc["id"], buyer):
            return "this buyer"
        return "none"

    # -- records -------------------------------------------------------------------------------

    def on_frames(self, committed):
        self._dirty_devices.update(bytes(d) for d, _ in committed)

    def copy(self):
        """Copy newly committed data frames of offered, approved devices into their datasets
        (cursor and records in one LMDB write)."""
        devices, self._dirty_devices = self._dirty_devices, set()
        if not devices:
            return
        for doc in self.data.datasets():
            device = bytes.fromhex(doc["device"])
            if device not in devices or self.identity.device(device) is None:
                continue
            while True:
                frames = self.frames.after(device, doc["cursor"], limit=COPY_BATCH)
                if not frames:
                    break
                self.store.write(lambda txn: self.data.add_records(txn, doc, frames))
                self.stats["records"] += sum(f.kind == "data" for f in frames)
                if len(frames) < COPY_BATCH:
                    break

    def tick(self, now=None):
        now = now_ms() if now is None else now
        self.copy()
        if now >= self._prune_at:
            self._prune_at = now + 3_600_000
            self.prune(now)

    def prune(self, now):
        """Delete records older than the retention window (an hour's worth at most per pass),
        so a dataset's storage stays flat however long it is offered."""
        for doc in self.data.datasets():
            self.stats["pruned"] += self.data.prune(doc["id"], now - self.config.retention_ms)

    # -- deliveries ----------------------------------------------------------------------------

    def handle(self, pubkey, body, client):
        """A buyer's ``data_fetch`` (already opened and checked by the seller); returns the
        reply envelopes, and queues them (and the payload) for MQTT when ``client`` is known."""
        state, payload = self.fetch(pubkey, bytes.fromhex(body["purchase"]))
        envelope = messages.seal(self.signer, self.chain_id, state)
        if client is not None:
            self.outgoing.append((("data", client, "state"), envelope))
            if payload is not None:
                self.outgoing.append((("data", client, f"payload/{body['purchase']}"), payload))
        return [envelope]

    def fetch_envelope(self, raw):
        """The API's fetch: ``(signed data_state envelope, payload or None)`` for a signed
        ``data_fetch`` message (a bad message is answered with an ``error`` envelope)."""
        try:
            pubkey, body = messages.open_envelope(raw, self.chain_id)
            if body["type"] != "data_fetch":
                raise messages.MessageError(f"expected a data_fetch message, not {body['type']}")
        except messages.MessageError as exc:
            return messages.seal(self.signer, self.chain_id, {
                "type": "error", "ref": None, "code": "bad_message",
                "message": str(exc)[:300]}), None
        state, payload = self.fetch(pubkey, bytes.fromhex(body["purchase"]))
        return messages.seal(self.signer, self.chain_id, state), payload

    def fetch(self, buyer_pubkey, purchase_id):
        """``(data_state body, envelope or None)`` for a buyer's request of its purchase: the
        first request of an irreversible purchase exports, seals and commits it; the envelope is
        released once the commitment is irreversible."""
        delivery = self.data.delivery(purchase_id)
        if delivery is not None:
            if delivery["buyer"] != address_from_pubkey(buyer_pubkey).hex():
                return self._refused(purchase_id, "this purchase is not yours"), None
            payload = self.data.payload(purchase_id) if delivery["state"] == "delivered" else None
            return _state(purchase_id, delivery), payload
        try:
            refusal, wait, purchase, doc = self._check(buyer_pubkey, purchase_id)
        except ChainUnavailable as exc:
            return _state(purchase_id, {"state": "waiting",
                                        "reason": f"the chain does not answer: {exc}"}), None
        if refusal is not None:
            return self._refused(purchase_id, refusal), None
        if wait is not None:
            return _state(purchase_id, {"state": "waiting", "reason": wait}), None
        delivery = self._export(purchase_id, purchase, doc)
        return _state(purchase_id, delivery), None

    def _refused(self, purchase_id, reason):
        self.stats["refused"] += 1
        return _state(purchase_id, {"state": "refused", "reason": reason})

    def _check(self, buyer_pubkey, purchase_id):
        """``(refusal, wait, purchase, dataset)``: why the purchase is not served (for good, or
        not yet), else the purchase and the local dataset."""
        if self.contract is None:
            return None, "the data market contract is not deployed yet", None, None
        purchase = self.chain.query(self.contract, "purchase_of", purchase_id)
        if purchase is None:
            return f"no purchase {purchase_id.hex()} on chain", None, None, None
        if purchase["buyer"] != address_from_pubkey(buyer_pubkey):
            return "this purchase is not yours", None, None, None
        doc = self.data.dataset(purchase["dataset"].decode("utf-8", "replace"))
        if doc is None or self._chain_dataset(doc) is None:
            return "this gateway does not offer that dataset", None, None, None
        if purchase["state"] != b"paid":
            return f"the purchase is {purchase['state'].decode()}", None, None, None
        if purchase["height"] > self.wallet.status()["lib_height"]:
            return None, "the purchase is not irreversible yet", None, None
        return None, None, purchase, doc

    def _export(self, purchase_id, purchase, doc):
        """Export the purchased range sealed to the buyer's key, keep it and queue its
        commitment on chain, in one LMDB write."""
        pubkey = self.identity.device_pubkey(bytes.fromhex(doc["device"]))
        envelope, delivery = export(self.data, doc, pubkey, purchase_id, purchase)

        def queue_commitment(txn):
            self.wallet.send(data_calls.deliver_payload(
                self.contract, purchase_id, bytes.fromhex(delivery["hash"]),
                delivery["records"], delivery["size"]), f"deliver data {purchase_id.hex()[:8]}",
                key=f"{DELIVER}:{purchase_id.hex()}", txn=txn)
        keep(self.data, purchase_id, envelope, delivery, queue_commitment)
        self.log(f"agent: data purchase {purchase_id.hex()}: {delivery['records']} records of "
                 f"{doc['id']} sealed ({delivery['size']} bytes), committing "
                 f"{delivery['hash'][:16]}…")
        return delivery

    def deliveries(self):
        return self.data.deliveries.values()

    def take_outgoing(self):
        out, self.outgoing = self.outgoing, []
        return out


def export(data, doc, device_pubkey, purchase_id, purchase):
    """``(envelope, delivery record)``: the purchased range of dataset ``doc`` read from
    ``data`` (a DataStore), packed, sealed to the purchase's box key, and its commitment."""
    frames = data.range(doc["id"], purchase["from_ms"], purchase["to_ms"],
                        purchase["max_records"])
    envelope = seal(purchase_id, purchase["box_key"],
                    pack_records(doc["id"].encode(), device_pubkey, frames))
    return envelope, {"purchase": purchase_id.hex(), "dataset": doc["id"],
                      "buyer": purchase["buyer"].hex(), "hash": commitment(envelope).hex(),
                      "records": len(frames), "size": len(envelope), "state": "committing",
                      "reason": None, "created_ms": now_ms()}


def keep(data, purchase_id, envelope, delivery, also=None):
    """Keep a delivery and its envelope (and whatever ``also(txn)`` writes) in one commit."""
    def work(txn):
        data.put_payload(purchase_id, envelope, txn)
        data.put_delivery(purchase_id, delivery, txn)
        if also is not None:
            also(txn)
    data.store.write(work)


def _state(purchase_id, delivery):
    body = {"type": "data_state", "purchase": purchase_id.hex(), "state": delivery["state"],
            "reason": (delivery.get("reason") or None) and delivery["reason"][:300]}
    for name in ("hash", "records", "size"):
        if delivery.get(name) is not None:
            body[name] = delivery[name]
    return body


def _terms_view(terms):
    view = {k: (v.decode() if isinstance(v, bytes) and k in ("unit", "description", "schema",
                                                             "licence") else v)
            for k, v in terms.items()}
    for k in ("owner", "gateway", "token"):
        if k in view:
            view[k] = encode_address(view[k])
    view["device"] = terms["device"].hex()
    return view
