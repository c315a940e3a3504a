"""Fleets of simulated devices (``edge/mqtt/simulators.py``): several at once, each in its
own thread, approved through a node's API when asked; and ``NodeSimulators``, one device per
kind inside ``smartshare node run --simulate``."""

import os
import threading
import time

from edge.client import ApiClient, ApiError
from edge.mqtt.simulators import Gateway, SimulatedDevice, SimulatorError, gateway_with_ca

APPROVE_HINT_S = 30.0          # --approve: say what may be wrong when the request is not listed
DEVICES_TIMEOUT_S = 60.0       # node run --simulate: wait this long for the node's devices
NODE_STATE_DIR = "simulators/node"   # node run --simulate's devices, under the home


def api_approver(client, log=None, hint_after=APPROVE_HINT_S):
    """An ``approve`` callback that approves a device through the node's API as soon as its join
    request is listed (it waits as long as the device runs: a gateway over its join rate takes
    the repeated request later). A device the owner revoked is left alone."""

    def approve(device_id, stopping):
        hint_at = time.monotonic() + hint_after
        while not stopping.is_set():
            try:
                record = client.get(f"/v1/devices/{device_id}")
            except ApiError as exc:
                if exc.code != "not_found":
                    raise SimulatorError(f"cannot approve {device_id}: {exc}") from None
                record = None
            if record is not None and record["status"] == "pending":
                _approve(client, device_id)
                if log is not None:
                    log(f"approved {device_id} through {client.base_url}")
                return
            if record is not None:   # approved already, or revoked by the owner
                if record["status"] == "revoked" and log is not None:
                    log(f"{device_id} was revoked by the owner: not approving it again "
                        f"(smartshare device approve {device_id} lets it back)")
                return
            if hint_at is not None and time.monotonic() > hint_at:
                hint_at = None
                if log is not None:
                    log(f"the node has not listed the join request of {device_id} for "
                        f"{hint_after:g} s (still waiting; is the gateway the node at "
                        f"{client.base_url}?)")
            stopping.wait(0.25)

    return approve


def _approve(client, device_id):
    try:
        client.post(f"/v1/devices/{device_id}/approve", {})
    except ApiError as exc:   # someone else may have approved it meanwhile: that is fine
        if client.get(f"/v1/devices/{device_id}")["status"] != "approved":
            raise SimulatorError(f"cannot approve {device_id}: {exc}") from None


def device_plan(kinds, count):
    """``[(kind, name)]``: ``count`` devices of each kind, named ``<kind>-<n>``."""
    return [(kind, f"{kind}-{n}") for kind in kinds for n in range(1, count + 1)]


def run_simulators(plan, state_dir, gateway, *, stop=None, **options):
    """Run the devices of ``plan`` (see ``device_plan``), each in its own thread, until ``stop``
    (an Event) is set, Ctrl-C is pressed, or each has sent its ``frames``; returns their
    summaries. ``options`` go to every ``SimulatedDevice`` (interval, frames, approve, log...)."""
    stop = stop or threading.Event()
    devices = []
    try:
        for kind, name in plan:
            devices.append(SimulatedDevice(kind, os.path.join(state_dir, name), gateway,
                                           name=name, **options))
    except BaseException:
        for device in devices:
            device.state.close()
        raise
    results = [None] * len(devices)

    def body(i):
        results[i] = devices[i].run()

    threads = [threading.Thread(target=body, args=(i,), name=f"sim-{d.name}", daemon=True)
               for i, d in enumerate(devices)]
    for thread in threads:
        thread.start()
    try:
        while any(t.is_alive() for t in threads):
            if stop.wait(0.2):
                break
    except KeyboardInterrupt:
        pass
    finally:
        for device in devices:
            device.stop()
        for thread in threads:
            thread.join()
    return results


class NodeSimulators:
    """``smartshare node run --simulate``: the node's own broker gets one simulated device per
    kind (state in ``<home>/simulators/node``, apart from ``device simulate``'s), approved
    through the node's API, started in a background thread once the node's devices are up. The
    log gets one line per batch of frames (every ``summary_s``; by default five intervals, kept
    within 1..30 s)."""

    def __init__(self, config, kinds, interval=2.0, log=print, summary_s=None):
        self.config, self.kinds, self.interval = config, list(kinds), interval
        self._log = log
        self.summary_s = summary_s or min(30.0, max(1.0, 5 * interval))
        self.stopping = threading.Event()
        self._thread = None
        self._lock = threading.Lock()
        self._batch = {}

    def log(self, text):
        self._log(f"simulators: {text}")

    def start(self):
        self._thread = threading.Thread(target=self._run, name="simulators", daemon=True)
        self._thread.start()

    def stop(self, timeout=20.0):
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self):
        try:
            chain_id = self._wait_for_devices(ApiClient(self.config.api_url, timeout=5.0))
            if chain_id is None:
                return
            # The node made the home's API token (if there was none) before it answered.
            client = ApiClient.for_home(self.config.home, self.config.api_url, timeout=5.0)
            gateway = self._gateway(chain_id)
            reporter = threading.Thread(target=self._report, name="simulators-log", daemon=True)
            reporter.start()
            results = run_simulators(device_plan(self.kinds, 1),
                                     self.config.path(NODE_STATE_DIR), gateway,
                                     interval=self.interval,
                                     approve=api_approver(client, self.log), log=self.log,
                                     on_frame=self._on_frame, log_disconnects=False,
                                     stop=self.stopping)
            failed = [r for r in results if r["error"]]
            self.log(f"stopped {len(results)} device(s)"
                     + (f", {len(failed)} failed: {failed[0]['error']}" if failed else ""))
        except Exception as exc:  # noqa: BLE001 - never take the node down
            self.log(f"stopped: {type(exc).__name__}: {exc}")

    def _gateway(self, chain_id):
        """The node's own broker: its TLS listener with the home's CA, like a device on the
        LAN would use (else its plaintext one on loopback)."""
        config = self.config
        if not config.mqtt_tls_port:
            return Gateway(config.mqtt_host, config.mqtt_port, config.mqtt_provision_password,
                           chain_id, "this node", tls=False)
        from edge.mqtt.certs import ca_pem
        host = config.mqtt_tls_host
        gateway = Gateway("127.0.0.1" if host in ("", "0.0.0.0", "::") else host,
                          config.mqtt_tls_port, config.mqtt_provision_password, chain_id,
                          "this node")
        return gateway_with_ca(gateway, ca_pem(config.home))

    def _wait_for_devices(self, client, timeout=DEVICES_TIMEOUT_S):
        """The chain id once the node's API answers with its devices (the API comes up before
        the broker); None when stopping or on time."""
        deadline = time.monotonic() + timeout
        while not self.stopping.is_set():
            try:
                client.get("/v1/devices")
                return client.get("/v1/status")["chain_id"]
            except ApiError:
                if time.monotonic() > deadline:
                    self.log(f"off: the node's devices did not come up within {timeout:g} s")
                    return None
            self.stopping.wait(0.2)
        return None

    def _on_frame(self, device, seq, kind, payload, raw):
        with self._lock:
            count, _ = self._batch.get(device.name, (0, None))
            what = payload.get("event") if kind == "event" else kind
            self._batch[device.name] = (count + 1, f"seq {seq} {what}")

    def _report(self):
        while not self.stopping.wait(self.summary_s):
            with self._lock:
                batch, self._batch = self._batch, {}
            if batch:
                total = sum(count for count, _ in batch.values())
                self.log(f"{total} frame(s) in {self.summary_s:g} s: " + ", ".join(
                    f"{name} {last}" for name, (_, last) in sorted(batch.items())))
