"""One signature-verification worker for the bridge's whole life (docs/protocol.md §15.4).

The bridge's worker checks frames while their signatures are verified: it hands each checked
chunk to this thread, which verifies it with ``edge._fast.verify_batch`` (the compiled twin runs
on all cores with the GIL released), and picks the results up when it commits. One thread,
started with the bridge and stopped with it, instead of a thread per batch.
"""

import queue
import threading

from edge import _fast

_STOP = object()


class VerifyJob:
    """The results of one submitted batch, once the worker has verified it."""

    __slots__ = ("_done", "_results", "_error")

    def __init__(self):
        self._done = threading.Event()
        self._results = self._error = None

    def result(self):
        """The list of bools, in submission order (waits for the worker)."""
        self._done.wait()
        if self._error is not None:
            raise self._error
        return list(self._results)


class Verifier:
    """A worker thread verifying batches of (pubkey, message, signature) in submission order."""

    def __init__(self, name="frame-verifier"):
        self.name = name
        self._queue = queue.SimpleQueue()
        self._thread = None
        self.batches = 0

    def start(self):
        if self._thread is not None:
            raise RuntimeError("the verifier is already running")
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self):
        """Finish the batches submitted so far, then end the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    def submit(self, pubkeys, messages, signatures):
        """Queue a batch; returns its VerifyJob."""
        if self._thread is None:
            raise RuntimeError("the verifier is not running")
        job = VerifyJob()
        self._queue.put((job, pubkeys, messages, signatures))
        return job

    def _run(self):
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            job, pubkeys, messages, signatures = item
            try:
                job._results = _fast.verify_batch(pubkeys, messages, signatures)
            except Exception as exc:  # a malformed batch is the caller's bug: hand it back
                job._error = exc
            self.batches += 1
            job._done.set()
