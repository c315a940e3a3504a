"""Contract work off the event loop: a thread of its own, bounded per peer and per sender.

Admission dry-runs every contract transaction before it enters the mempool (and the API may run
queries the same way). A job runs on the runner's own thread, where each contract call gets a
fresh Lua runtime and the wall-clock backstop is armed (``chain.calls.backstop``); lupa
releases the GIL while Lua runs, so the event loop keeps serving. At most ``per_key`` jobs of any
one key (a peer, a sender) and ``capacity`` in all are queued or running; beyond that ``run``
raises ``Busy`` at once rather than queueing (the node then admits a relayed transaction without
its dry run), so a flood from peers cannot grow the queue or starve others, or
(``wait=True``, the node's own API callers) waits for room.
"""

import asyncio
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from chain import calls


class Busy(Exception):
    """The runner, or a key's share of it, is full: try again later."""


class DryRunner:
    """A bounded single-thread executor for contract dry runs (see the module docstring)."""

    def __init__(self, capacity=32, per_key=4, wall_clock_s=0.25, name="dry-run"):
        self.capacity, self.per_key, self.wall_clock_s = capacity, per_key, wall_clock_s
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._running = Counter()     # key -> jobs queued or running
        self._total = 0
        self._released = None         # an asyncio.Event set whenever a job ends
        self.refused = 0              # jobs refused because a bound was reached

    def busy(self, keys):
        """Whether a job for ``keys`` would be refused now."""
        return (self._total >= self.capacity
                or any(self._running[k] >= self.per_key for k in keys if k is not None))

    async def run(self, keys, fn, *args, wait=False):
        """Run ``fn(*args)`` on the runner's thread with the backstop armed and return what it
        returned (or raise what it raised). When ``keys`` or the runner are at their bound it
        raises Busy without running it, unless ``wait``."""
        keys = [k for k in keys if k is not None]
        while self.busy(keys):
            if not wait:
                self.refused += 1
                raise Busy(f"{self._total} dry runs are queued or running")
            if self._released is None:
                self._released = asyncio.Event()
            self._released.clear()
            await self._released.wait()
        return await self._submit(keys, fn, args)

    def _submit(self, keys, fn, args):
        self._total += 1
        for k in keys:
            self._running[k] += 1
        future = asyncio.get_running_loop().run_in_executor(self._pool, self._armed, fn, args)
        future.add_done_callback(lambda _: self._release(keys))
        return future

    def _armed(self, fn, args):
        with calls.backstop(self.wall_clock_s):
            return fn(*args)

    def _release(self, keys):
        self._total -= 1
        for k in keys:
            self._running[k] -= 1
            if not self._running[k]:
                del self._running[k]
        if self._released is not None:
            self._released.set()

    def close(self):
        """Drop queued jobs and wait for the running one (the backstop bounds it), so that
        nothing reads the store after the node closes it."""
        self._pool.shutdown(wait=True, cancel_futures=True)
