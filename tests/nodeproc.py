"""Run ``smartshare`` as real processes for tests: init a devnet home, start, wait, stop, kill -9.

Every command runs as ``[sys.executable, "-m", "edge.cli", ...]`` with ``SMARTSHARE_HOME``
removed from the environment, so only ``--home`` chooses the folder. Readiness is never a fixed
sleep: helpers poll the node's API until a deadline and fail with the tail of the node's log.

Every node started here is registered until it has exited; ``stop_all()`` (called by the
conftest fixtures and, as a last resort, at interpreter exit) kills whatever is left, so a
failing test never leaves a node behind. On Linux a node also gets SIGKILL when the thread that
started it dies (PR_SET_PDEATHSIG), so even a SIGKILLed pytest leaves none: start nodes from
the main thread.
"""

import atexit
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from edge import config as config_mod
from edge.client import ApiClient, ApiError

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
CLI_TIMEOUT = 90.0
POLL = 0.05

_RUNNING = set()
_PR_SET_PDEATHSIG = 1
try:  # resolved here, in the parent: the child only calls it (no dlopen after fork)
    _prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
except (OSError, AttributeError):
    _prctl = None


def _die_with_parent():
    """In the child before exec: ask Linux to SIGKILL it when the parent goes away."""
    _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def free_port():
    """A TCP port that is free on 127.0.0.1 right now (picked by the kernel)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_env():
    env = dict(os.environ)
    env.pop("SMARTSHARE_HOME", None)
    for name in ("SMARTSHARE_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(name, None)  # a test runner under systemd must not lend its manager's socket
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("PYTHONFAULTHANDLER", "1")  # a crash of compiled code leaves a stack in the log
    return env


@dataclass
class CliResult:
    args: list
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self):
        return self.stdout + self.stderr

    def json(self):
        """stdout parsed as JSON (fails the test with the whole output when it is not)."""
        try:
            return json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(f"stdout of {self.args} is not JSON ({exc}):\n{self}") from None

    def stderr_lines(self):
        return self.stderr.splitlines()

    def __str__(self):
        return (f"$ smartshare {' '.join(self.args)}\n[exit {self.returncode}]\n"
                f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}")


def run_cli(*args, timeout=CLI_TIMEOUT, check=False, cwd=None):
    """Run ``smartshare ARGS`` to completion; with ``check`` assert it exited 0."""
    args = [str(a) for a in args]
    proc = subprocess.run([sys.executable, "-m", "edge.cli", *args], env=cli_env(), cwd=cwd,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)
    result = CliResult(args, proc.returncode, proc.stdout, proc.stderr)
    if check:
        assert result.returncode == 0, f"command failed:\n{result}"
    return result


class NodeHome:
    """A devnet home folder made by ``smartshare init --devnet``."""

    def __init__(self, path, api_port, info):
        self.path = str(path)
        self.api_port = api_port
        self.info = info  # the JSON printed by init

    @classmethod
    def init(cls, path, api_port=None, mqtt_port=0):
        """With ``mqtt_port``, the broker's TLS listener gets a free port too."""
        api_port = api_port or free_port()
        result = run_cli("--home", path, "init", "--devnet", "--api-port", api_port,
                         "--mqtt-port", mqtt_port, "--mqtt-tls-port",
                         free_port() if mqtt_port else 0, "--json", check=True)
        return cls(path, api_port, result.json())

    @property
    def api_url(self):
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def chain_id(self):
        return self.info["chain_id"]

    @property
    def wallet_address(self):
        return self.info["wallet_address"]

    def set_api_port(self, port):
        """Move the node's API to ``port`` (rewrites config.toml)."""
        config = config_mod.load(self.path)
        config.api_port = port
        config.save()
        self.api_port = port
        self.info["api"] = self.api_url

    def wallet_file(self, name="default"):
        return os.path.join(self.path, "wallets", f"{name}.json")

    @property
    def genesis_file(self):
        return os.path.join(self.path, "genesis.json")

    @property
    def data_dir(self):
        return os.path.join(self.path, "data")

    def client(self, timeout=10.0):
        return ApiClient.for_home(self.path, self.api_url, timeout=timeout)

    def cli(self, *args, **kwargs):
        """``smartshare --home HOME ARGS``."""
        return run_cli("--home", self.path, *args, **kwargs)


class NodeProcess:
    """One ``smartshare --home H node run`` process, its output going to ``log_path``."""

    def __init__(self, home, log_path=None, env=None, own_group=False, args=()):
        self.home = home
        self.log_path = str(log_path or os.path.join(home.path, "node.log"))
        self.env = env or {}  # extra environment (NOTIFY_SOCKET, ...)
        self.own_group = own_group   # its own process group (with its Mosquitto): kill_group
        self.args = list(args)       # after ``node run``
        self.proc = None
        self.starts = 0

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, wait=True, timeout=READY_TIMEOUT):
        assert not self.alive, "node already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"=== start #{self.starts} at {time.time():.3f} ===\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "--home", self.home.path, "node", "run",
                 *self.args],
                env={**cli_env(), **self.env}, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent if _prctl else None,
                process_group=0 if self.own_group else None)
        _RUNNING.add(self)
        if wait:
            self.wait_ready(timeout)
        return self

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM, wait up to ``timeout``, then SIGKILL (the group, if it has its own);
        returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        _RUNNING.discard(self)
        return self.proc.returncode

    def kill9(self):
        """``kill -9`` the node and reap it; returns the exit status (-9)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT)
        _RUNNING.discard(self)
        return self.proc.returncode

    def kill_group(self):
        """SIGKILL the node's whole process group (the node and its Mosquitto) and reap it."""
        assert self.own_group, "the node was not started in a process group of its own"
        if self.proc is None:
            return None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(STOP_TIMEOUT)
        _RUNNING.discard(self)
        return self.proc.returncode

    def restart(self, timeout=READY_TIMEOUT):
        self.stop()
        return self.start(timeout=timeout)

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- waiting --------------------------------------------------------------------------------

    def client(self, timeout=10.0):
        return self.home.client(timeout)

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"

    def _fail(self, message):
        raise AssertionError(f"{message}\nnode pid {self.pid}, exit status "
                             f"{self.proc.poll() if self.proc else None}, log {self.log_path}:\n"
                             f"{self.log_tail()}")

    def wait_ready(self, timeout=READY_TIMEOUT):
        """Poll ``GET /v1/status`` until this node answers for its chain; returns the status."""
        client = self.client(timeout=2.0)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._fail(f"node exited with status {self.proc.returncode} before it was ready")
            try:
                status = client.get("/v1/status")
            except ApiError as exc:
                last = exc
            else:
                if status.get("chain_id") != self.home.chain_id:
                    self._fail(f"another service answers on {self.home.api_url}: {status}")
                return status
            time.sleep(POLL)
        self._fail(f"node not ready after {timeout}s (last error: {last})")

    def get(self, path):
        """``GET path`` on this node; a failure names the node's state and shows its log."""
        try:
            return self.client().get(path)
        except ApiError as exc:
            self._fail(f"GET {path} failed: {exc}")

    def status(self):
        return self.get("/v1/status")

    def wait_until(self, predicate, what, timeout=READY_TIMEOUT, poll=POLL):
        """Poll status until ``predicate(status)`` holds; returns that status."""
        client = self.client(timeout=2.0)
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._fail(f"node exited with status {self.proc.returncode} while waiting "
                           f"for {what}")
            try:
                status = client.get("/v1/status")
            except ApiError:
                status = None
            if status is not None and predicate(status):
                return status
            time.sleep(poll)
        self._fail(f"timed out after {timeout}s waiting for {what} (last status: {status})")

    def wait_height(self, height, timeout=READY_TIMEOUT, poll=POLL):
        return self.wait_until(lambda s: s["height"] >= height, f"height >= {height}", timeout,
                               poll)

    def wait_mempool_empty(self, timeout=READY_TIMEOUT):
        return self.wait_until(lambda s: s["mempool"] == 0, "an empty mempool", timeout)


def stop_all():
    """Kill every node process still registered (the safety net behind the fixtures)."""
    for node in list(_RUNNING):
        try:
            node.kill9()
        except Exception:  # noqa: BLE001 - best effort during cleanup
            pass
    _RUNNING.clear()


atexit.register(stop_all)
