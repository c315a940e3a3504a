"""Is the node healthy? Asked after every boot of an A/B gateway (smartshare-health.service):
its unit is active (systemd got READY=1: the store opened and the API listens) and its API
answers for the chain in its genesis. ``check`` keeps asking until that holds or the deadline,
counted from boot, passes; a failure says what was wrong and shows the node's last log lines."""

import shutil
import subprocess
import time

from chain.genesis import Genesis, GenesisError
from edge import units
from edge.client import ApiClient, ApiError

DEADLINE_S = 300  # a new slot must prove itself within 5 minutes of boot
POLL_S = 2.0


def seconds_since_boot():
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def check(config, deadline_s=DEADLINE_S, poll_s=POLL_S, clock=seconds_since_boot):
    """``(ok, detail)`` once the node is healthy, or once ``clock()`` reaches ``deadline_s``."""
    while True:
        problem = find_problem(config)
        if problem is None:
            return True, healthy_text(config)
        remaining = deadline_s - clock()
        if remaining <= 0:
            return False, (f"not healthy {deadline_s} s after boot: {problem}"
                           + last_log_lines(config))
        time.sleep(min(poll_s, remaining))


def find_problem(config):
    """What keeps the node from being healthy, or None."""
    node_unit = config.units[0] if config.units and units.systemd_running() else None
    if node_unit is not None:
        unit = units.health([node_unit])[0]
        if not units.healthy(unit):
            return f"{node_unit} is {unit.get('ActiveState')} ({unit.get('SubState')})"
    try:
        expected = Genesis.load(config.path(config.genesis_file)).chain_id
    except GenesisError as exc:
        return f"no genesis: {exc}"
    try:
        status = ApiClient(config.api_url, timeout=5).get("/v1/status")
    except ApiError as exc:
        return f"the API does not answer ({exc})"
    if status.get("chain_id") != expected or not isinstance(status.get("height"), int):
        return f"the API at {config.api_url} answers for chain {status.get('chain_id')!r}"
    return None


def healthy_text(config):
    try:
        status = ApiClient(config.api_url, timeout=5).get("/v1/status")
        return f"node ready, API answering at height {status['height']}"
    except (ApiError, KeyError):
        return "node ready, API answering"


def last_log_lines(config, lines=5):
    """The node's last journal lines (under systemd), to keep with a failed check."""
    if not (config.units and units.systemd_running() and shutil.which("journalctl")):
        return ""
    result = subprocess.run(["journalctl", "--no-pager", "--output", "cat", "--lines",
                             str(lines), "--unit", config.units[0]],
                            capture_output=True, text=True, timeout=30)
    text = " | ".join(line.strip() for line in result.stdout.splitlines() if line.strip())
    return f"; last log: {text}" if text else ""
