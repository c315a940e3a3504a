"""What the bridge keeps of device frames, and the free-space floor it never writes below
(docs/protocol.md §15.7).

Frames are kept for ``retention_days`` and within ``budget_mb`` of pages, whichever is less: once
the frames stored since the last pruning reach ``prune_batch`` bytes (512 kB, or a sixteenth of
the budget when that is less), the commit of new frames also deletes the oldest ones beyond that
(at most twice as many as were stored meanwhile, plus 100, so a backlog is worked off in small
steps and every deletion rides on a commit that syncs anyway: pruning adds no flush). Pruning in
such batches empties whole pages at the log's old end, which are freed without being written,
instead of rewriting its first pages on every commit. Before each commit the bridge checks the free space of the
data folder's file system: under ``min_free_mb`` it commits nothing (``DiskLow``, a storage
failure: the batch stays unacknowledged and is retried every second, so nothing is lost; devices
keep their frames meanwhile).
"""

import os

from chain.store import StorageError

MB = 1 << 20
DAY_MS = 86_400_000
RETENTION_DAYS = 30
BUDGET_MB = 8192
MIN_FREE_MB = 1024
PRUNE_BATCH = 512 << 10


class DiskLow(StorageError):
    """The data folder's file system is below the free-space watermark (``free`` bytes)."""

    def __init__(self, message, free):
        super().__init__(message)
        self.free = free


class Retention:
    """The frame retention policy and the free-space watermark of one data folder."""

    def __init__(self, path, retention_days=RETENTION_DAYS, budget_mb=BUDGET_MB,
                 min_free_mb=MIN_FREE_MB):
        if retention_days <= 0 or budget_mb <= 0 or min_free_mb < 0:
            raise ValueError("retention_days and budget_mb must be > 0, min_free_mb >= 0")
        self.path = path
        self.retention_ms = int(retention_days * DAY_MS)
        self.budget_bytes = int(budget_mb * MB)
        self.min_free_bytes = int(min_free_mb * MB)
        self.prune_batch = min(PRUNE_BATCH, self.budget_bytes // 16)
        self._stored = self._stored_bytes = 0     # since the last pruning

    def free_bytes(self):
        """Bytes free for an unprivileged writer on the data folder's file system."""
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def check_space(self):
        """Raise DiskLow when the free space is under the watermark; else the free bytes."""
        free = self.free_bytes()
        if free < self.min_free_bytes:
            raise DiskLow(f"only {free // MB} MB free on {self.path}, below the watermark of "
                          f"{self.min_free_bytes // MB} MB ([node] min_free_mb): device frames "
                          "wait unacknowledged until space is freed", free)
        return free

    def prune(self, registry, txn, added, added_bytes, now_ms):
        """Delete the frames beyond the policy, oldest first, once ``prune_batch`` bytes of
        frames were stored since the last time (``added`` frames of ``added_bytes`` now);
        returns how many."""
        self._stored += added
        self._stored_bytes += added_bytes
        if self._stored_bytes < self.prune_batch:
            return 0
        limit, self._stored, self._stored_bytes = 2 * self._stored + 100, 0, 0
        return registry.prune_frames(txn, now_ms - self.retention_ms, self.budget_bytes, limit)
