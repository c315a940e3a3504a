"""Fleet onboarding: how long a fleet of simulated devices, started at once from one host, takes
to be approved and to deliver its first frames.

A real devnet node (``smartshare node run``, its own Mosquitto, devices on the plaintext loopback
listener) and ``smartshare device simulate all --count N --approve``: 4 kinds x N devices, each
sending its join request at once from the same address (one source, docs/protocol.md §15.3)
and approved through the node's API as soon as it is listed. Prints a table; the last line is
one JSON object with ``devices``, ``all_approved_s``, ``all_sending_s`` and
``provision_rejected``.

    .venv/bin/python bench/onboarding.py [--count 25] [--timeout 180]
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from edge.config import load  # noqa: E402
from edge.testnet import free_ports  # noqa: E402

SMARTSHARE = os.path.join(os.path.dirname(sys.executable), "smartshare")
KINDS = 4


def get(api, path):
    with urllib.request.urlopen(api + path, timeout=10) as r:
        return json.load(r)


def wait_height(api, node, height, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.poll() is not None:
            raise SystemExit("the node exited")
        try:
            if get(api, "/v1/status")["height"] >= height:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the node did not reach height {height}")


def measure(directory, count, timeout):
    home, port = os.path.join(directory, "home"), free_ports(2)
    subprocess.run([SMARTSHARE, "--home", home, "init", "--devnet", "--api-port", str(port[0]),
                    "--mqtt-port", str(port[1]), "--mqtt-tls-port", "0"], check=True,
                   stdout=subprocess.DEVNULL)
    api = load(home).api_url
    with open(os.path.join(directory, "node.log"), "w") as log, \
            open(os.path.join(directory, "simulate.log"), "w") as sim_log:
        node = subprocess.Popen([SMARTSHARE, "--home", home, "node", "run"], stdout=log,
                                stderr=subprocess.STDOUT)
        simulate = None
        try:
            wait_height(api, node, 2)
            t0 = time.monotonic()
            simulate = subprocess.Popen(
                [SMARTSHARE, "--home", home, "device", "simulate", "all", "--count", str(count),
                 "--approve", "--broker", f"127.0.0.1:{port[1]}", "--no-tls"],
                stdout=sim_log, stderr=subprocess.STDOUT)
            return watch(api, simulate, KINDS * count, t0, timeout)
        finally:
            for process in (simulate, node):
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        process.wait(60)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait()


def watch(api, simulate, n, t0, timeout):
    """Seconds until the first and all ``n`` devices are approved, and until all sent frames."""
    first = approved_s = sending_s = None
    while time.monotonic() - t0 < timeout and sending_s is None:
        if simulate.poll() is not None:
            raise SystemExit("the simulators exited: see simulate.log")
        status = get(api, "/v1/devices")
        records = status["devices"]
        approved = [r for r in records if r["status"] == "approved"]
        now = time.monotonic() - t0
        if approved and first is None:
            first = now
        if len(approved) >= n and approved_s is None:
            approved_s = now
        if approved_s is not None and status["bridge"]["accepted"] >= n:
            sending_s = now   # every device's hello or first frame stored (seq 1 each)
        time.sleep(0.2)
    bridge = get(api, "/v1/devices")["bridge"]
    return {"devices": n, "first_approved_s": first, "all_approved_s": approved_s,
            "all_sending_s": sending_s, "approved": len(approved),
            "provision_rejected": bridge.get("provision_rejected")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=25, help="devices of each of the 4 kinds")
    ap.add_argument("--timeout", type=float, default=180)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="smartshare-onboarding-") as d:
        result = measure(d, args.count, args.timeout)
    rows = [("devices started at once (one source)", result["devices"]),
            ("approved within the timeout", result["approved"]),
            ("first approved (s)", _s(result["first_approved_s"])),
            ("all approved (s)", _s(result["all_approved_s"])),
            ("all approved and sending (s)", _s(result["all_sending_s"])),
            ("join requests refused by the limits", result["provision_rejected"])]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}))


def _s(value):
    return "not reached" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    main()
