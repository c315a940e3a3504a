"""sd_notify (edge/sdnotify.py) on a real datagram socket standing in for systemd's, and a real
node process: READY=1 once the API answers, STATUS= with height and peers, WATCHDOG=1 at half of
WatchdogSec, no pings while the event loop (or the process) hangs, STOPPING=1 at the end."""

import asyncio
import os
import signal
import socket
import threading
import time

import pytest

from edge import sdnotify
from tests import nodeproc

WAIT_S = 30.0


class NotifySocket:
    """A bound AF_UNIX datagram socket that records ``(arrival time, {KEY: value})``."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path if not self.path.startswith("@") else "\0" + self.path[1:])
        self.sock.settimeout(0.2)
        self.messages = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self):
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n"))
            with self._cond:
                self.messages.append((time.monotonic(), fields))
                self._cond.notify_all()

    def wait_for(self, predicate, what, timeout=WAIT_S):
        """Wait until ``predicate(messages)`` holds; returns the messages."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.messages), timeout):
                raise AssertionError(f"no {what} within {timeout}s; got {self.messages}")
            return list(self.messages)

    def with_key(self, key):
        with self._cond:
            return [(t, m) for t, m in self.messages if key in m]

    def close(self):
        self._stop = True
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path):
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


def status_height(message):
    """The height in ``STATUS=height N (LIB L), P peer(s)``; -1 without a STATUS."""
    words = message.get("STATUS", "").split()
    return int(words[1]) if len(words) > 1 and words[0] == "height" else -1


def count(key, n):
    return lambda messages: sum(key in m for _, m in messages) >= n


def test_no_op_outside_systemd():
    notifier = sdnotify.Notifier({})
    assert not notifier.enabled and notifier.ping_interval_s is None
    assert notifier.ready("x") is False and notifier.watchdog() is False


def test_messages_reach_path_and_abstract_sockets(tmp_path):
    for address in (str(tmp_path / "n.sock"), f"@smartshare-test-{os.getpid()}"):
        sock = NotifySocket(address)
        try:
            notifier = sdnotify.Notifier({"NOTIFY_SOCKET": address})
            assert notifier.ready("height 3\nand more")
            assert notifier.watchdog()
            got = sock.wait_for(count("WATCHDOG", 1), "WATCHDOG=1")
            assert got[0][1] == {"READY": "1", "STATUS": "height 3 and more"}
            assert got[1][1] == {"WATCHDOG": "1"}
        finally:
            sock.close()


def test_watchdog_interval_is_half_and_only_for_its_pid():
    env = {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "30000000"}
    assert sdnotify.Notifier(env).ping_interval_s == 15.0
    assert sdnotify.Notifier({**env, "WATCHDOG_PID": str(os.getpid())}).ping_interval_s == 15.0
    assert sdnotify.Notifier({**env, "WATCHDOG_PID": str(os.getpid() + 1)}).watchdog_s is None
    assert sdnotify.Notifier({**env, "WATCHDOG_USEC": "soon"}).watchdog_s is None


def test_reading_the_environment_unsets_it(monkeypatch, tmp_path):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "n.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    notifier = sdnotify.Notifier()
    assert notifier.enabled and notifier.watchdog_s == 1.0
    assert "NOTIFY_SOCKET" not in os.environ and "WATCHDOG_USEC" not in os.environ


def test_a_hung_event_loop_stops_the_pings(notify_socket):
    """The heartbeat pings every 50 ms; while a callback blocks the loop for 1 s, none comes
    (threads of the process keep running meanwhile); afterwards the pings resume."""
    notifier = sdnotify.Notifier({"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "100000"})
    hang = {}

    async def scenario():
        stopping = asyncio.Event()
        beat = asyncio.ensure_future(sdnotify.heartbeat(notifier, lambda: "ok", stopping))
        await asyncio.get_running_loop().run_in_executor(
            None, notify_socket.wait_for, count("WATCHDOG", 3), "3 pings")
        hang["start"] = time.monotonic()
        time.sleep(1.0)  # the event loop is stuck here
        hang["end"] = time.monotonic()
        before = len(notify_socket.with_key("WATCHDOG"))
        await asyncio.get_running_loop().run_in_executor(
            None, notify_socket.wait_for, count("WATCHDOG", before + 3), "pings after the hang")
        stopping.set()
        await beat

    asyncio.run(scenario())
    pings = [t for t, _ in notify_socket.with_key("WATCHDOG")]
    during = [t for t in pings if hang["start"] + 0.1 < t < hang["end"]]
    assert not during, f"pings while the loop hung: {during}"
    assert all(m["STATUS"] == "ok" for _, m in notify_socket.with_key("WATCHDOG"))


@pytest.mark.slow
def test_node_process_notifies(node_factory, notify_socket):
    """A real node: READY=1 only once its API answers, STATUS= with height and peers, pings at
    half of WatchdogSec; SIGSTOP (a hung process) stops them, SIGCONT resumes them; SIGTERM
    sends STOPPING=1."""
    home = node_factory.home()
    env = {"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "400000"}
    node = nodeproc.NodeProcess(home, home.path + "-notify.log", env=env)
    try:
        node.start(wait=False)
        ready_at = notify_socket.wait_for(count("READY", 1), "READY=1")
        status = node.client().get("/v1/status")  # answers at once: READY came after listening
        assert status["chain_id"] == home.chain_id
        ready = [m for _, m in ready_at if "READY" in m][0]
        assert ready["STATUS"].startswith("height ") and "peer" in ready["STATUS"]
        notify_socket.wait_for(count("WATCHDOG", 3), "3 pings")
        os.kill(node.pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        time.sleep(1.0)
        resumed_at = time.monotonic()
        os.kill(node.pid, signal.SIGCONT)
        pings = [t for t, _ in notify_socket.with_key("WATCHDOG")]
        assert not [t for t in pings if stopped_at + 0.1 < t < resumed_at], "pings while stopped"
        notify_socket.wait_for(count("WATCHDOG", len(pings) + 2), "pings after SIGCONT")
        node.wait_height(1)
        notify_socket.wait_for(lambda ms: any(status_height(m) >= 1 for _, m in ms),
                               "STATUS with the new height")
        assert node.stop() == 0
        notify_socket.wait_for(count("STOPPING", 1), "STOPPING=1")
    finally:
        node.stop()
