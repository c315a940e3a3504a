"""Prometheus metrics of one node (served at /metrics on the local API)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


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

    def render(self):
        return generate_latest(self.registry)
