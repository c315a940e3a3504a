"""Retention (edge/agent/seller.py ``retain``, edge/mqtt/devices.py ``prune_device_frames``): device
frames that metering has read and no unsettled session needs, older than the retention window,
are pruned with settled sessions and final outbox records, so storage stays flat over months of
service — over real LMDB, with the metering cursor and frames as the bridge stores them. Also
the seller's grace for a final voucher when metering sees a device's end late."""


from nacl.signing import SigningKey

from chain.keys import KeyPair
from chain.store import Store
from edge.agent import messages
from edge.agent.identity import Identity
from edge.agent.matching import Trade
from edge.agent.seller import Seller, SellerConfig
from edge.agent.signer import KeyFileSigner
from edge.mqtt.devices import DeviceRegistry
from edge.mqtt.frames import sign_frame
from edge.mqtt.sequence import Position
from edge.mqtt.topics import device_id_of

CHAIN = "ss-retention-test"
DAY_MS = 86_400_000


class World:
    """A registry with devices whose frames are stored as the bridge stores them, and a seller
    whose metering reads them (no chain: retention needs none)."""

    def __init__(self, path, devices=2, retention_days=7):
        self.store = Store(path)
        self.registry = DeviceRegistry(self.store)
        self.keys = [SigningKey(bytes([i + 1]) * 32) for i in range(devices)]
        self.ids = [device_id_of(bytes(k.verify_key)) for k in self.keys]
        self.seq = {d: 0 for d in self.ids}
        signer = KeyFileSigner.from_keypair(KeyPair.from_seed(b"s" * 32))
        self.seller = Seller(self.store, signer, None, CHAIN, Identity(signer, None),
                             self.registry, SellerConfig(retention_ms=retention_days * DAY_MS),
                             log=lambda *_: None)

    def frames(self, index, count, ts):
        device, key = self.ids[index], self.keys[index]
        batch = []
        for _ in range(count):
            self.seq[device] += 1
            batch.append((device, self.seq[device], sign_frame(
                key, CHAIN, device, "data", self.seq[device], ts, {"t_c": 1.0})))
        positions = {device: Position(self.seq[device], 1)}
        self.store.write(lambda txn: self.registry.store_frames(txn, batch, positions))
        self.seller.on_frames([(d, s) for d, s, _ in batch])
        self.seller.meter()

    def stored(self, index):
        return sorted(seq for seq, _ in self.registry.frames_of(self.ids[index], 10**6))

    def entries(self):
        """Frames (the log's journal records are the bridge's, pruned by its own retention,
        docs §15.7), settled sessions and outbox records."""
        with self.store.read() as txn:
            return {"frames": self.registry.count_frames(txn),
                    **{name: txn.stat(self.store.db(name))["entries"]
                       for name in ("agent_sessions", "agent_txs")}}


def test_prune_frames_stops_at_the_first_young_or_needed_frame(tmp_path):
    w = World(str(tmp_path / "data"))
    w.frames(0, 10, ts=1_000)
    w.frames(0, 10, ts=5_000)
    assert w.registry.prune_device_frames(w.ids[0], below_seq=15, before_ms=2_000) == 10
    assert w.stored(0) == list(range(11, 21))
    assert w.registry.prune_device_frames(w.ids[0], below_seq=15, before_ms=9_000) == 4
    assert w.stored(0) == list(range(15, 21))
    assert w.registry.prune_device_frames(w.ids[1], below_seq=99, before_ms=9_000) == 0


def test_retain_keeps_what_an_open_session_needs(tmp_path):
    w = World(str(tmp_path / "data"))
    w.frames(0, 30, ts=1 * DAY_MS)
    w.frames(1, 30, ts=1 * DAY_MS)
    w.seller.sessions["aa" * 8] = {"id": "aa" * 8, "device": w.ids[0].hex(), "state": "active",
                                   "start_after": 20}
    w.seller.retain(now=30 * DAY_MS)
    assert w.stored(0) == list(range(21, 31))       # the session's frames stay
    assert w.stored(1) == []                        # read, settled, old: gone
    w.frames(1, 5, ts=29 * DAY_MS)
    w.seller.retain(now=30 * DAY_MS)
    assert w.stored(1) == list(range(31, 36))       # younger than the window


def test_storage_stays_flat_over_months(tmp_path):
    """Four months of daily frames and settled sessions with a 7-day window: the databases hold
    at most about a window's worth, whatever the age of the gateway."""
    w = World(str(tmp_path / "data"))
    sizes = []
    for day in range(120):
        now = day * DAY_MS
        w.frames(day % 2, 20, ts=now)
        session_id = f"{day + 1:016x}"
        w.seller.sessions_db.put(bytes.fromhex(session_id), {
            "id": session_id, "state": "settled", "created_ms": now, "device": w.ids[0].hex()})
        w.seller.wallet.outbox.put({"id": day + 1, "key": None, "label": "close",
                                    "status": "final", "created_ms": now, "payload": {}})
        w.seller.retain(now)
        sizes.append(w.entries())
    late = sizes[30:]
    assert max(s["frames"] for s in late) <= 8 * 20 + 20
    assert max(s["agent_sessions"] for s in late) <= 8
    assert max(s["agent_txs"] for s in late) <= 8


def test_a_failed_channel_deploy_is_sent_again_then_left_to_a_restart(tmp_path):
    from edge.agent.records import U64
    from edge.agent.seller import DEPLOY_KEY, MAX_DEPLOYS
    w = World(str(tmp_path / "data"))
    outbox = w.seller.wallet.outbox
    w.seller.start()
    assert outbox.by_key(DEPLOY_KEY)["status"] == "queued"

    def deploys():
        return [r for r in outbox.records.values() if r["key"] == DEPLOY_KEY]

    def fail_newest():
        record = dict(outbox.by_key(DEPLOY_KEY), status="failed", error="out of gas")

        def work(txn):
            outbox.records.put(U64.pack(record["id"]), record, txn)
            w.seller._on_final(txn, record)
        w.store.write(work)

    for tried in range(1, MAX_DEPLOYS + 1):
        fail_newest()
        assert len(deploys()) == min(tried + 1, MAX_DEPLOYS)
    assert outbox.by_key(DEPLOY_KEY)["status"] == "failed" and w.seller.contract is None
    w.seller.start()                       # a restart tries once more
    assert outbox.by_key(DEPLOY_KEY)["status"] == "queued"
    assert len(deploys()) == MAX_DEPLOYS + 1


def test_a_device_end_metered_late_still_leaves_the_buyer_its_grace(tmp_path):
    """The device's last frame reaches metering long after the device signed it (a backlog, a
    reconnect): the seller states the final amount then, and waits two intervals from that
    statement for the final voucher before it closes with what it holds — the buyer could not
    have paid earlier."""
    w = World(str(tmp_path / "data"))
    seller, device, key = w.seller, w.ids[0], w.keys[0]
    seller.meta.set("channel_contract", "cc" * 20)
    trade = Trade("0" * 16, "1" * 16, 1_000_000, 60, 1, device.hex())
    s = seller._new_session(trade, "parking.time", ("bb" * 32, "buyer-1"))
    s.update(state="stopping", voucher={"amount": 3_000_000, "nonce": 3, "signature": "00" * 64})
    now = 5 * DAY_MS
    signed_at = now - 60_000                                       # a minute before metering
    docs = [("event", {"event": "vehicle_entry", "session": 1, "ref": s["id"]}),
            ("meter", {"session": 1, "minutes": 3}),
            ("event", {"event": "vehicle_exit", "session": 1, "minutes": 5})]
    batch = [(device, seq, sign_frame(key, CHAIN, device, kind, seq, signed_at, doc))
             for seq, (kind, doc) in enumerate(docs, 1)]
    w.store.write(lambda txn: w.registry.store_frames(txn, batch, {device: Position(3, 1)}))
    seller.on_frames([(device, seq) for device, seq, _ in batch])
    seller.meter()
    assert (s["state"], s["units"], s["ended_ms"]) == ("ended", 5, signed_at)
    grace = 2 * seller.config.interval_ms
    seller._tick_session(s, now)
    (statement,) = [body for body in _sent(seller) if body["type"] == "statement"]
    assert (statement["final"], statement["amount"]) == (True, 5_000_000)
    seller._tick_session(s, now + grace - 1)
    assert s["state"] == "ended"                          # still waiting for the final voucher
    seller._tick_session(s, now + grace)
    assert (s["state"], s["reason"]) == ("closing", "the final voucher did not come")


def _sent(seller):
    """The bodies of the replies the seller queued for buyers."""
    return [messages.open_envelope(raw, CHAIN)[1] for topic, raw in seller.take_outgoing()
            if topic[0] == "reply"]
