"""Data market benchmark: export, encrypt and commit one 10,000-record purchase, beside the raw
libsodium sealed-box rate on the same bytes, in one run.

Over a real LMDB store (a temp folder) holding a weather station's 10,000 signed data frames:

- **pipeline** (what the gateway does for a purchase, ``edge.agent.data_desk``): read the
  purchased range from the dataset's records, pack it, seal it to the buyer's X25519 key
  (``crypto_box_seal``), hash the envelope (the delivery commitment), keep envelope and delivery
  in one LMDB commit (sync), and run ``deliver`` of ``data_market.lua`` in the real VM (the
  commitment on chain, which pays the owner): ``records_per_s`` and ``bytes_per_s`` (envelope
  bytes) for the whole of it;
- **raw**: ``crypto_box_seal`` alone over the same plaintext, ``raw_seal_bytes_per_s``;
- **buyer**: check the commitment, decrypt, and verify every record's device signature.

Each is the median of ``--rounds`` runs. Prints a table; the last line is one JSON object.

    .venv/bin/python bench/data.py [--records N] [--rounds N]
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

from nacl.public import PublicKey, SealedBox  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from chain.keys import KeyPair  # noqa: E402
from chain.store import Store  # noqa: E402
from contracts.system import system_contract  # noqa: E402
from contracts.testkit import Harness, addr  # noqa: E402
from edge.agent.data_desk import export, keep  # noqa: E402
from edge.agent.data_envelope import (buyer_box, commitment, open_delivery,  # noqa: E402
                                      pack_records, verified_frames)
from edge.agent.data_store import DataStore  # noqa: E402
from edge.agent.metering import DeviceFrame  # noqa: E402
from edge.mqtt.frames import sign_frame  # noqa: E402
from edge.mqtt.topics import device_id_of  # noqa: E402

CHAIN = "ss-bench"
START_MS = 1_700_000_000_000


def station_frames(count):
    """A weather station's signed data frames, one a second."""
    key = SigningKey(b"\x11" * 32)
    device = device_id_of(bytes(key.verify_key))
    frames = [sign_frame(key, CHAIN, device, "data", seq, START_MS + seq * 1000,
                         {"t_c": 12.5 + (seq % 70) / 10, "rh": 40 + seq % 50, "wind_ms": 3.2,
                          "wind_deg": seq % 360, "p_hpa": 1013.2, "reading": seq})
              for seq in range(1, count + 1)]
    return device, bytes(key.verify_key), frames


def market(count):
    """The data market in the VM with one paid purchase per round to deliver."""
    h = Harness()
    dm, owner, gateway, buyer = addr("dm"), addr("owner"), addr("gateway"), addr("buyer")
    assert h.deploy(dm, system_contract("data_market"), [addr("fees"), 20]).ok
    terms = {"device": b"\x00" * 8, "gateway": gateway, "price": 7, "unit": "record"}
    assert h.call(dm, "register", "ws", terms, caller=owner).ok
    assert h.call(dm, "consent", "ws", caller=owner).ok
    h.state.credit(buyer, 10**15)
    return h, dm, gateway, buyer


def stage_times(data, doc, pubkey, box_key, plain):
    """Where the pipeline's time goes: each step alone, on the same data."""
    out = {}
    t0 = time.perf_counter()
    frames = data.range(doc["id"], 0, 2**62, len(plain))
    out["read range"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    packed = pack_records(doc["id"].encode(), pubkey, frames)
    out["pack"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sealed = SealedBox(PublicKey(box_key)).encrypt(packed)
    out["seal"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    commitment(sealed)
    out["hash"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    keep(data, b"\xff" * 16, sealed, {"stage": "bench"})
    out["LMDB commit"] = time.perf_counter() - t0
    return out


def run(records, rounds, workdir):
    device, pubkey, frames = station_frames(records)
    store = Store(os.path.join(workdir, "data"))
    data = DataStore(store)
    doc = {"id": "ws-bench", "device": device.hex(), "owner": "00" * 20, "cursor": 0,
           "records": 0, "first_ms": 0, "last_ms": 0, "created_ms": 0}
    decoded = [DeviceFrame(f) for f in frames]
    store.write(lambda txn: data.add_records(txn, doc, decoded))
    buyer = KeyPair.from_seed(b"\x22" * 32)
    box_key, secret = buyer_box(buyer)
    h, dm, gateway, buyer_addr = market(records)
    pipeline, raw, opened, stages = [], [], [], []
    plain = pack_records(doc["id"].encode(), pubkey, frames)
    for n in range(rounds):
        pid = n.to_bytes(16, "big")
        assert h.call(dm, "purchase", pid, "ws", box_key, 0, 2**62, records, caller=buyer_addr,
                      value=7 * records).ok
        purchase = {"from_ms": 0, "to_ms": 2**62, "max_records": records, "box_key": box_key,
                    "buyer": buyer_addr}
        t0 = time.perf_counter()
        envelope, delivery = export(data, doc, pubkey, pid, purchase)
        keep(data, pid, envelope, delivery)
        result = h.call(dm, "deliver", pid, bytes.fromhex(delivery["hash"]),
                        delivery["records"], delivery["size"], caller=gateway)
        pipeline.append(time.perf_counter() - t0)
        assert result.ok and delivery["records"] == records, result.error
        t0 = time.perf_counter()
        SealedBox(PublicKey(box_key)).encrypt(plain)
        raw.append(time.perf_counter() - t0)
        stages.append(stage_times(data, doc, pubkey, box_key, plain))
        t0 = time.perf_counter()
        got = verified_frames(open_delivery(envelope, pid, bytes.fromhex(delivery["hash"]),
                                            secret), {"device": device}, CHAIN)
        opened.append(time.perf_counter() - t0)
        assert len(got) == records
    store.close()
    return {"pipeline_s": statistics.median(pipeline), "raw_s": statistics.median(raw),
            "stages": {k: statistics.median(s[k] for s in stages) for k in stages[0]},
            "buyer_s": statistics.median(opened), "envelope_bytes": len(envelope),
            "plain_bytes": len(plain), "gas": result.gas_used}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="ss-bench-data-")
    try:
        r = run(args.records, args.rounds, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    n, size = args.records, r["envelope_bytes"]
    rows = [
        (f"export+encrypt+commit, {n:,} records", f"{n / r['pipeline_s']:,.0f} records/s",
         f"{size / r['pipeline_s'] / 1e6:,.1f} MB/s, {r['pipeline_s'] * 1000:.1f} ms "
         f"(envelope {size:,} bytes; deliver used {r['gas']:,} gas)"),
        ("raw crypto_box_seal, same bytes", f"{r['plain_bytes'] / r['raw_s'] / 1e6:,.1f} MB/s",
         f"{r['raw_s'] * 1000:.1f} ms; pipeline at "
         f"{r['raw_s'] / r['pipeline_s'] * 100:.0f} % of the raw seal rate"),
        ("  its steps, each alone", "ms", ", ".join(f"{k} {v * 1000:.1f}"
                                                   for k, v in r["stages"].items())
         + "; the rest is the deliver call in the VM"),
        ("buyer: check, decrypt, verify each", f"{n / r['buyer_s']:,.0f} records/s",
         f"{r['buyer_s'] * 1000:.1f} ms (one Ed25519 verify per record)"),
    ]
    width = max(len(row[0]) for row in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>18}  {note}")
    print(json.dumps({"records": n, "records_per_s": round(n / r["pipeline_s"]),
                      "bytes_per_s": round(size / r["pipeline_s"]),
                      "raw_seal_bytes_per_s": round(r["plain_bytes"] / r["raw_s"]),
                      "pipeline_vs_raw_seal": round(r["raw_s"] / r["pipeline_s"], 3),
                      "buyer_records_per_s": round(n / r["buyer_s"]),
                      "envelope_bytes": size, "deliver_gas": r["gas"]}))


if __name__ == "__main__":
    main()
