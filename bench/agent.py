"""SmartAgent benchmark: 100 concurrent sessions through metering and voucher signing and
checking, then a real gateway for the first voucher's latency, in one run.

1. In process, over real LMDB (no network): a seller's agent and a buyer's agent with 100 open
   purifier sessions (one per device, a running second per metered unit). Each round every
   device's frame is committed as the bridge commits it, metering applies it, the seller states
   each session, the buyer verifies the device's signed frames and signs a voucher, the seller
   checks it and acknowledges. ``units_per_s`` counts metered units applied per second of
   metering, ``vouchers_per_s`` vouchers signed, checked and acknowledged per second, both sides
   in this one process (Ed25519 verifies are the limit: the raw rate is measured beside).
   ``txs_per_10k_units`` is the on-chain transactions of those sessions per 10,000 units
   metered: each buyer's open, and what the seller's outbox holds once the owner closes every
   channel (installments at most daily, so one close each).
2. A real devnet node with its own Mosquitto, its agent and a simulated parking gate (1 s
   metering interval), and buyers in this process: ``first_voucher_s`` is the time from the
   trade to the seller's acceptance of the first voucher (it includes the channel's open
   transaction becoming irreversible), the worst of the sessions.

Prints a table; the last line is one JSON object with ``units_per_s``, ``vouchers_per_s``,
``txs_per_10k_units``, ``first_voucher_s``.

    .venv/bin/python bench/agent.py [--sessions N] [--rounds N] [--buyers N]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

from nacl.signing import SigningKey  # noqa: E402

from chain.keys import KeyPair  # noqa: E402
from chain.store import Store  # noqa: E402
from edge.agent.buyer import Buyer  # noqa: E402
from edge.agent.identity import Identity  # noqa: E402
from edge.agent.seller import Seller, SellerConfig  # noqa: E402
from edge.agent.services import SERVICE_TYPES, amount_for  # noqa: E402
from edge.agent.signer import KeyFileSigner  # noqa: E402
from edge.mqtt.devices import DeviceRegistry  # noqa: E402
from edge.mqtt.frames import sign_frame  # noqa: E402
from edge.mqtt.schemas import canonical_kind  # noqa: E402
from edge.mqtt.sequence import Position  # noqa: E402
from edge.mqtt.topics import device_id_of  # noqa: E402

CHAIN_ID = "smartshare-bench-agent"
PRICE = 5_000_000          # 0.05 SSP per running hour
CONTRACT = b"\x0c" * 20


class Devices:
    """The registry the node hands the agent, over the bench's own LMDB."""

    def __init__(self, registry):
        self.registry = registry

    def get(self, device_id):
        return self.registry.get(device_id)

    def approved(self):
        return self.registry.approved()


def in_process(sessions, rounds, workdir):
    store = Store(os.path.join(workdir, "seller"))
    registry = DeviceRegistry(store)
    seller_key, buyer_key = KeyPair.generate(), KeyPair.generate()
    keys = [SigningKey.generate() for _ in range(sessions)]
    for key in keys:
        registry.request(bytes(key.verify_key), {"kind": "purifier"})
        registry.approve(device_id_of(bytes(key.verify_key)))
    seller = Seller(store, KeyFileSigner.from_keypair(seller_key), None, CHAIN_ID,
                    Identity(seller_key, None, Devices(registry), canonical_kind), registry,
                    SellerConfig(interval_ms=1), log=lambda *_: None)
    buyer_store = Store(os.path.join(workdir, "buyer"))
    buyer = Buyer(buyer_store, KeyFileSigner.from_keypair(buyer_key), None, CHAIN_ID, "b",
                  log=lambda *_: None)
    pairs = [open_pair(seller, buyer, key, i) for i, key in enumerate(keys)]
    seqs = {id(key): 1 for key in keys}
    frames_out = []
    meter_s = voucher_s = 0.0
    units = vouchers = 0
    for r in range(1, rounds + 1):
        batch = []
        for key, (s, b) in zip(keys, pairs):
            device = device_id_of(bytes(key.verify_key))
            seqs[id(key)] += 1
            payload = {"session": s["dev_session"], "running_s": 60 * r}
            batch.append((device, seqs[id(key)], sign_frame(key, CHAIN_ID, device, "meter",
                                                            seqs[id(key)], 1000 + r, payload)))
        positions = {d: Position(q, 1) for d, q, _ in batch}
        store.write(lambda txn: registry.store_frames(txn, batch, positions))
        start = time.perf_counter()
        before = sum(s["units"] for s, _ in pairs)
        seller.on_frames([(d, q) for d, q, _ in batch])
        seller.meter()
        meter_s += time.perf_counter() - start
        units += sum(s["units"] for s, _ in pairs) - before
        start = time.perf_counter()
        for s, _ in pairs:
            s["statement_ms"] = 0
            seller._statement(s, 10**13 + r)
        seller.flush()                      # what the worker does before it sends
        for _, envelope in seller.take_outgoing():
            buyer.handle(envelope)
        buyer.flush()
        for _, envelope in buyer.take_outgoing():
            seller.handle(envelope, "b")
        seller.flush()
        accepted = [e for _, e in seller.take_outgoing()]
        for envelope in accepted:
            buyer.handle(envelope)
        buyer.flush()
        voucher_s += time.perf_counter() - start
        vouchers += len(accepted)
        frames_out.append(len(batch))
    ok = all(s["voucher"]["amount"] == amount_for(s["units"], PRICE, 3600) for s, _ in pairs)
    for s, _ in pairs:             # the owner closes every channel: what goes on chain
        seller.close_channel(s["id"])
    closes = [r for r in seller.wallet.records()
              if (r["key"] or "").startswith(("close:", "redeem:"))]
    txs = sessions + len(closes)    # each buyer's open, then what the seller queued
    store.close()
    buyer_store.close()
    return {"units_per_s": units / meter_s, "frames_per_s": sum(frames_out) / meter_s,
            "vouchers_per_s": vouchers / voucher_s, "units": units, "vouchers": vouchers,
            "txs_per_10k_units": 10_000 * txs / units, "paid_exactly": ok}


def open_pair(seller, buyer, key, i):
    """A seller's session and the buyer's, both active on an open channel (no chain here)."""
    device = device_id_of(bytes(key.verify_key)).hex()
    stype = SERVICE_TYPES["purifier.runtime"]
    session_id = f"{i + 1:016x}"
    s = {"id": session_id, "role": "seller", "service": stype.name, "device": device,
         "order": session_id, "buyer": buyer.signer.pubkey.hex(), "client": "b", "price": PRICE,
         "per": stype.per, "min_units": 0, "quantity": 10**9, "deposit": 10**15,
         "contract": CONTRACT.hex(), "payee": seller.payee, "expiry_blocks": 10**6,
         "dispute_ms": 3_600_000, "interval_ms": 1, "state": "active", "created_ms": 0,
         "open_tx": None, "start_after": 1, "dev_session": 1, "units": 0, "final": False,
         "evidence": [], "started_ms": 0, "ended_ms": None, "voucher": None, "vouchers": 0,
         "first_voucher_ms": None, "stated": None, "redeems": [], "unpaid_since_ms": None,
         "redeemed": 0, "last_redeem_ms": 0, "task": None, "challenges": [], "command_ms": 0,
         "reason": None, "settled": None, "statement_ms": 0, "watch_ms": 0}
    seller.sessions[session_id] = s
    terms = {"type": "trade", "order": session_id, "session": session_id,
             "service": stype.name, "device": device, "device_pubkey": bytes(
                 key.verify_key).hex(), "price": PRICE, "per": stype.per, "quantity": 10**9,
             "min_units": 0, "deposit": 10**15, "contract": CONTRACT.hex(),
             "payee": seller.payee, "expiry_blocks": 10**6, "dispute_ms": 3_600_000,
             "interval_ms": 1, "start_after": 0}
    b = {"role": "buyer", "order": session_id, "id": session_id, "service": stype.name,
         "device": device, "max_price": PRICE, "quantity": 10**9, "deposit_cap": None,
         "stop_units": None, "task": None, "state": "active", "created_ms": 0, "sent_ms": 0,
         "seller": seller.signer.pubkey.hex(), "terms": terms, "voucher": None, "acked": None,
         "units": 0, "upto": 0, "dev_session": 1, "result": None, "final": False,
         "statement_ms": 0, "heard_ms": 0, "challenges": [], "reason": None, "closed": None,
         "stop_sent": False, "final_ms": None}
    buyer.sessions[session_id] = b
    return s, b


def raw_verify_rate(n=3000):
    key = SigningKey.generate()
    signed = [key.sign(os.urandom(32)) for _ in range(n)]
    vk = key.verify_key
    start = time.perf_counter()
    for m in signed:
        vk.verify(m)
    return n / (time.perf_counter() - start)


# -- part 2: a real gateway -------------------------------------------------------------------

def real_gateway(buyers, workdir):
    from edge.agent.chain_port import ChainPort
    from edge.agent.market_link import MarketLink, buyer_subscriptions
    from edge.agent.runner import AgentRunner
    from edge.client import ApiClient
    from edge.config import load
    from edge.mqtt.sim_fleet import api_approver, device_plan, run_simulators
    from edge.mqtt.certs import ca_pem
    from edge.mqtt.simulators import Gateway, gateway_with_ca
    from edge.testnet import free_ports
    api_port, mqtt_port, tls_port = free_ports(3)
    home = os.path.join(workdir, "gateway")
    cli = [sys.executable, "-m", "edge.cli", "--home", home]
    subprocess.run(cli + ["init", "--devnet", "--api-port", str(api_port), "--mqtt-port",
                          str(mqtt_port), "--mqtt-tls-port", str(tls_port), "--json"],
                   check=True, capture_output=True)
    config = load(home)
    config.agent_interval_s = 1
    config.save()
    node = subprocess.Popen(cli + ["node", "run"], stdout=open(os.path.join(workdir, "node.log"),
                                                                 "wb"), stderr=subprocess.STDOUT)
    stop = threading.Event()
    runners = []
    try:
        client = ApiClient.for_home(home, config.api_url, timeout=5)
        agent = wait(lambda: _get(client, "/v1/agent"))
        transfer(cli, agent["address"], 1000)
        wait(lambda: _get(client, "/v1/agent")["contract"])
        gateway = gateway_with_ca(Gateway("127.0.0.1", tls_port, config.mqtt_provision_password,
                                          client.get("/v1/status")["chain_id"]), ca_pem(home))
        threading.Thread(target=run_simulators, args=(
            device_plan(["parking-gate"], 1), os.path.join(workdir, "sims"), gateway),
            kwargs=dict(stop=stop, interval=0.2, approve=api_approver(client),
                        log=lambda *_: None, log_disconnects=False), daemon=True).start()
        wait(lambda: _get(client, "/v1/services")["services"])
        for i in range(buyers):
            pair = KeyPair.generate()
            path = os.path.join(workdir, f"buyer{i}.json")
            pair.save(path)
            transfer(cli, pair.address_text, 50)
            signer = KeyFileSigner(path)
            client_id = f"buyer-bench-{i}"
            buyer = Buyer(Store(os.path.join(workdir, f"buyer{i}")), signer, ChainPort(client),
                          gateway.chain_id, client_id, log=lambda *_: None)
            runner = AgentRunner(buyer, log=lambda *_: None)
            runner.link = MarketLink("127.0.0.1", mqtt_port, "market", config.market_password,
                                     client_id, buyer_subscriptions(client_id), runner.deliver)
            runner.start()
            runner.link.wait_ready(10)
            runners.append(runner)
        for runner in runners:
            runner.call(runner.role.buy, "parking.time", 2_000_000, 600, None, None, 10)
        wait(lambda: len([s for s in client.get("/v1/market/sessions")["sessions"]
                          if s["state"] == "settled"]) >= buyers, 120)
        sessions = [client.get(f"/v1/market/sessions/{s['id']}")
                    for s in client.get("/v1/market/sessions")["sessions"]]
        return [(s["first_voucher_ms"] - s["created_ms"]) / 1000 for s in sessions]
    finally:
        stop.set()
        for runner in runners:
            runner.stop()
        node.terminate()
        node.wait(30)


def _get(client, path):
    try:
        return client.get(path)
    except Exception:  # noqa: BLE001 - not up yet
        return None


def wait(check, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit("bench: timed out waiting for the gateway")


def transfer(cli, address, ssp):
    subprocess.run(cli + ["wallet", "transfer", address, str(ssp), "--wait"], check=True,
                   capture_output=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--buyers", type=int, default=6)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="bench-agent-")
    try:
        local = in_process(args.sessions, args.rounds, workdir)
        raw = raw_verify_rate()
        first = real_gateway(args.buyers, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = [
        (f"metering, {args.sessions} sessions", f"{local['units_per_s']:,.0f} units/s",
         f"{local['frames_per_s']:,.0f} frames/s (60 units each)"),
        ("vouchers signed, checked, acked", f"{local['vouchers_per_s']:,.0f} /s",
         f"2 signatures and 3 verifies each; raw verify {raw:,.0f}/s"),
        ("on-chain txs per 10k units", f"{local['txs_per_10k_units']:.2f}",
         f"{local['units']:,} units, open + close per channel"),
        ("first voucher after the trade", f"{max(first):.2f} s worst",
         f"median {sorted(first)[len(first) // 2]:.2f} s of {len(first)} sessions "
         "(open tx irreversible first)"),
        ("vouchers paid exactly what was metered", str(local["paid_exactly"]), ""),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>18}  {note}")
    print(json.dumps({"units_per_s": round(local["units_per_s"]),
                      "vouchers_per_s": round(local["vouchers_per_s"]),
                      "txs_per_10k_units": round(local["txs_per_10k_units"], 2),
                      "first_voucher_s": round(max(first), 2),
                      "first_voucher_median_s": round(sorted(first)[len(first) // 2], 2),
                      "raw_verify_per_s": round(raw), "sessions": args.sessions}))


if __name__ == "__main__":
    main()
