"""The agent's worker (one thread): market messages, the bridge's commits and API calls queue to
it; it ticks every ``tick_ms`` and publishes what its Seller or Buyer queued to send.

Only this thread touches the role's state, so the role needs no locks; ``call`` runs a function
on it and waits for the result (the API and the CLI use it). The worker takes what is queued in
batches (group commit): it handles them, has the role write every session they changed in one
LMDB commit (``flush``), and only then publishes the replies and acknowledges the messages, so
nothing is ever sent or acknowledged before it is durable.
"""

import queue
import threading
import time
import traceback
from concurrent.futures import Future

from edge.agent.market_link import parse_buyer_topic, topic_of

BATCH = 500       # queued items handled per commit

class AgentRunner:
    """Drives one role (``Seller`` or ``Buyer``) with an optional ``MarketLink``."""

    def __init__(self, role, link=None, tick_ms=200, log=print):
        self.role, self.link, self.tick_s, self.log = role, link, tick_ms / 1000, log
        self._queue = queue.Queue()
        self._thread = None
        self._stopping = threading.Event()

    # -- from other threads --------------------------------------------------------------------

    def deliver(self, topic, payload, ack):
        """A message from the link (paho's thread)."""
        self._queue.put(("message", topic, payload, ack))

    def on_frames(self, committed, time_ns=None):
        """The bridge committed frames (its worker thread)."""
        self._queue.put(("frames", list(committed)))

    def call(self, fn, *args, timeout=30):
        """Run ``fn(*args)`` on the worker; its result (or exception)."""
        future = Future()
        self._queue.put(("call", fn, args, future))
        return future.result(timeout)

    # -- life cycle ----------------------------------------------------------------------------

    def start(self):
        self.role.start()
        self._thread = threading.Thread(target=self._run, name="agent", daemon=True)
        self._thread.start()
        if self.link is not None:
            self.link.start()

    def stop(self):
        self._stopping.set()
        self._queue.put(("wake",))
        if self._thread is not None:
            self._thread.join(15)
        if self.link is not None:
            self.link.stop()

    # -- the worker ----------------------------------------------------------------------------

    def _run(self):
        next_tick = 0.0
        while not self._stopping.is_set():
            try:
                items = [self._queue.get(timeout=max(0.0, next_tick - time.monotonic()))]
            except queue.Empty:
                items = []
            while items and len(items) < BATCH:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            acks = []
            for item in items:
                self._guarded(self._handle, item, acks)
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.tick_s
                self._guarded(self.role.tick)
            if not self._guarded(self.role.flush):
                continue       # nothing leaves before it is durable: retried next time round
            self._flush()
            for ack in acks:
                ack()

    def _handle(self, item, acks):
        kind = item[0]
        if kind == "message":
            _, topic, payload, ack = item
            acks.append(ack)
            self._message(topic, payload)
        elif kind == "frames":
            self.role.on_frames(item[1])
        elif kind == "call":
            _, fn, args, future = item
            try:
                result = fn(*args)
                self.role.flush()
                future.set_result(result)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)

    def _message(self, topic, payload):
        parsed = parse_buyer_topic(topic)
        if parsed is not None:
            self.role.handle(payload, parsed[0])     # a seller gets a buyer's message
        else:
            self.role.handle(payload)                # a buyer gets the seller's

    def _flush(self):
        if self.link is None:
            self.role.take_outgoing()
            return
        for destination, payload in self.role.take_outgoing():
            topic, retain = topic_of(destination)
            self.link.publish(topic, payload, retain)

    def _guarded(self, fn, *args):
        """Run ``fn``; False (logged) when it raised."""
        try:
            fn(*args)
            return True
        except Exception:  # noqa: BLE001 - one bad message or tick must not stop the agent
            self.log("agent: " + traceback.format_exc())
            return False
