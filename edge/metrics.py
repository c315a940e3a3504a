"""Prometheus metrics of one node (served at /metrics on the local API)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


class NodeMetrics:
    """The node's gauges and counters, in a registry of its own."""

    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.height = Gauge("smartshare_height", "Height of the head block", registry=r)
        self.lib_height = Gauge("smartshare_lib_height", "Height of the last irreversible block",
                                registry=r)
        self.txs_applied = Counter("smartshare_txs_applied", "Transactions applied in blocks",
                                   registry=r)
        self.blocks_applied = Counter("smartshare_blocks_applied", "Blocks applied", registry=r)
        self.mempool_size = Gauge("smartshare_mempool_size", "Pending transactions", registry=r)
        self.txs_rejected = Counter("smartshare_txs_rejected", "Transactions refused, by reason",
                                    ["reason"], registry=r)
        self.txs_dropped = Counter("smartshare_txs_dropped",
                                   "Accepted transactions the mempool let go: evicted or invalid",
                                   ["status", "reason"], registry=r)
        self.apply_seconds = Histogram(
            "smartshare_block_apply_seconds", "Time to validate and commit a block", registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))

    def watch_peers(self, manager):
        """Export the p2p counters of ``manager`` (a chain.p2p.peers.PeerManager)."""
        self.registry.register(PeerCollector(manager))

    def render(self):
        return generate_latest(self.registry)


class PeerCollector:
    """Reads a PeerManager's counters at scrape time (the p2p layer keeps plain counts)."""

    def __init__(self, manager):
        self.manager = manager

    def collect(self):
        stats = self.manager.stats()
        refused = CounterMetricFamily(
            "smartshare_p2p_refused", "Connections refused by admission limits, slots and bans, "
            "by reason", labels=["reason"])
        for reason, n in sorted(stats["refused"].items()):
            refused.add_metric([reason], n)
        failed = CounterMetricFamily(
            "smartshare_p2p_handshakes_failed", "Handshakes that failed, by direction and reason",
            labels=["direction", "reason"])
        for (direction, reason), n in sorted(stats["failed"].items()):
            failed.add_metric([direction, reason], n)
        penalties = CounterMetricFamily(
            "smartshare_p2p_penalties", "Score penalties given to peers, by reason",
            labels=["reason"])
        for reason, n in sorted(stats["penalties"].items()):
            penalties.add_metric([reason], n)
        peers = GaugeMetricFamily("smartshare_p2p_peers", "Connected peers, by direction",
                                  labels=["direction"])
        peers.add_metric(["inbound"], stats["inbound"])
        peers.add_metric(["outbound"], stats["outbound"])
        yield from (refused, failed, penalties, peers)
        yield GaugeMetricFamily("smartshare_p2p_bans", "Node keys and addresses banned now",
                                value=stats["bans"])
        yield GaugeMetricFamily("smartshare_p2p_handshakes", "Inbound handshakes in progress",
                                value=stats["handshakes"])
        book = GaugeMetricFamily("smartshare_p2p_address_book",
                                 "Addresses in the address book, new (heard of) or tried (proven)",
                                 labels=["kind"])
        for kind, n in sorted(stats["book"].items()):
            book.add_metric([kind], n)
        yield book

    def describe(self):
        return []
