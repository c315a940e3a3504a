"""Simulated devices (edge/mqtt/sim_kinds.py, edge/mqtt/simulators.py, docs/protocol.md §16.3).

First the behaviours alone (fast): every payload has exactly the documented fields and passes the
bridge's rules. Then real ``smartshare device simulate`` processes against a real node with its
own Mosquitto (slow): onboarding with --approve, stored frames, a restart (also after kill -9)
going on above the stored seq, mDNS discovery, the error when no gateway answers, and
``node run --simulate all``.
"""

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys

import pytest
from nacl.signing import SigningKey

from edge.config import load
from edge.discovery import Advertiser
from edge.mqtt import ingest, sim_kinds
from edge.mqtt.certs import ca_fingerprint
from edge.mqtt.frames import Frame, sign_frame
from edge.testnet import free_ports
from tests import nodeproc
from tests.mqttkit import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELLO = {"kind", "model", "firmware", "services"}
# (device kind, frame kind, event) -> the payload fields documented in docs/protocol.md §16.3.
FIELDS = {
    ("parking-gate", "hello", None): HELLO | {"capacity"},
    ("parking-gate", "event", "vehicle_entry"): {"event", "session", "plate_hash", "spot",
                                                 "occupancy", "sessions"},
    ("parking-gate", "event", "vehicle_exit"): {"event", "session", "plate_hash", "spot",
                                                "minutes", "occupancy", "sessions"},
    ("parking-gate", "meter", None): {"session", "plate_hash", "minutes", "occupancy",
                                      "sessions"},
    ("purifier", "hello", None): HELLO,
    ("purifier", "event", "power_on"): {"event", "session", "fan"},
    ("purifier", "event", "power_off"): {"event", "session", "running_s", "total_running_s"},
    ("purifier", "meter", None): {"session", "running_s", "total_running_s", "fan"},
    ("purifier", "data", None): {"pm25", "pm10", "running"},
    ("router", "hello", None): HELLO,
    ("router", "event", "client_joined"): {"event", "client", "session", "clients"},
    ("router", "event", "client_left"): {"event", "client", "session", "bytes", "clients"},
    ("router", "meter", None): {"session", "client", "bytes", "client_bytes", "bytes_forwarded",
                                "clients"},
    ("weather", "hello", None): HELLO,
    ("weather", "data", None): {"t_c", "rh", "wind_ms", "wind_deg", "p_hpa", "reading"},
    ("storage", "hello", None): HELLO | {"capacity_mb"},
    ("storage", "data", None): {"used_mb", "free_mb", "objects"},
    ("compute", "hello", None): HELLO | {"cores"},
    ("compute", "data", None): {"load", "jobs_total"},
}
# Frames of the sessions the agent commands (docs/protocol.md §16.3).
COMMANDED = {
    ("parking-gate", "event", "vehicle_entry"): FIELDS[("parking-gate", "event", "vehicle_entry")]
    | {"ref"},
    ("parking-gate", "meter", None): FIELDS[("parking-gate", "meter", None)],
    ("parking-gate", "event", "vehicle_exit"): FIELDS[("parking-gate", "event", "vehicle_exit")],
    ("purifier", "event", "power_on"): {"event", "session", "fan", "ref"},
    ("purifier", "meter", None): FIELDS[("purifier", "meter", None)],
    ("purifier", "event", "power_off"): FIELDS[("purifier", "event", "power_off")],
    ("router", "event", "client_joined"): FIELDS[("router", "event", "client_joined")] | {"ref"},
    ("router", "meter", None): FIELDS[("router", "meter", None)],
    ("router", "event", "client_left"): FIELDS[("router", "event", "client_left")],
    ("storage", "event", "object_stored"): {"event", "session", "ref", "object", "mb",
                                            "used_mb"},
    ("storage", "meter", None): {"session", "mb", "held_s", "mb_s"},
    ("storage", "event", "proof"): {"event", "session", "challenge", "proof"},
    ("storage", "event", "object_deleted"): {"event", "session", "mb_s", "held_s", "used_mb"},
    ("compute", "event", "job_started"): {"event", "session", "ref", "jobs", "input"},
    ("compute", "meter", None): {"session", "jobs_done", "result"},
    ("compute", "event", "job_finished"): {"event", "session", "jobs_done", "result"},
}


def check_fields(kind, frame_kind, payload):
    key = (kind, frame_kind, payload.get("event") if frame_kind == "event" else None)
    assert key in FIELDS, f"undocumented frame {key}: {payload}"
    assert set(payload) == FIELDS[key], f"{key}: {sorted(payload)}"


# -- behaviours alone -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sim_kinds.KINDS)
def test_behaviour_payloads_are_documented_valid_and_plausible(kind):
    b = sim_kinds.behaviour(kind, random.Random(7), b"s" * 16)
    key = SigningKey(b"k" * 32)
    check_fields(kind, "hello", b.hello())
    seen = set()
    for seq in range(2, 3000):
        frame_kind, payload = b.tick(seq)
        check_fields(kind, frame_kind, payload)
        ingest.check_payload(json.dumps(payload))
        raw = sign_frame(key, "c", b"\0" * 8, frame_kind, seq, 1, payload)
        assert len(raw) <= ingest.MAX_MQTT_PAYLOAD
        seen.add((frame_kind, payload.get("event")))
        plausible(kind, b, payload)
    assert len(seen) == len([k for k in FIELDS if k[0] == kind and k[1] != "hello"])


def plausible(kind, b, p):
    if kind == "parking-gate":
        assert 0 <= p["occupancy"] <= b.capacity and p.get("minutes", 0) >= 0
    elif kind == "purifier" and "pm25" in p:
        assert 0 < p["pm25"] < 100
    elif kind == "router":
        assert 0 <= p["clients"] <= b.MAX_CLIENTS
    elif kind == "weather":
        assert -20 < p["t_c"] < 45 and 5 <= p["rh"] <= 100 and 0 <= p["wind_ms"] <= 25


@pytest.mark.parametrize("kind", sim_kinds.KINDS)
def test_behaviour_state_survives_a_restart(kind):
    first = sim_kinds.behaviour(kind, random.Random(1), b"s" * 16)
    for seq in range(2, 200):
        first.tick(seq)
    again = sim_kinds.behaviour(kind, random.Random(2), b"s" * 16)
    again.restore(json.loads(json.dumps(first.state())))
    assert again.state() == first.state()
    frame_kind, payload = again.tick(200)   # open sessions and counters carry on
    if kind == "parking-gate" and frame_kind == "meter":
        assert payload["session"] in first.active


def test_protocol_doc_lists_the_fields():
    with open(os.path.join(ROOT, "docs", "protocol.md"), encoding="utf-8") as f:
        doc = f.read()
    section = doc[doc.index("### 16.3 Simulated devices"):]
    for fields in list(FIELDS.values()) + list(COMMANDED.values()):
        for name in fields:
            assert f"`{name}`" in section, name


@pytest.mark.parametrize("kind", [k for k in sim_kinds.KINDS if k != "weather"])
def test_commanded_sessions_start_meter_and_stop(kind):
    """A start opens a session carrying the agent's ref (once), it is metered every simulated
    minute beside the device's own life, a stop closes it; every frame follows the schema."""
    b = sim_kinds.behaviour(kind, random.Random(3), b"s" * 16)
    ref, task = "0123456789abcdef", ("ab" * 64 if kind == "storage" else "cd" * 32)
    assert b.command({"cmd": "start", "ref": ref, "task": task, "quantity": 50})
    assert not b.command({"cmd": "start", "ref": ref, "task": task, "quantity": 50})
    assert not b.command({"cmd": "stop", "ref": "fedcba9876543210"})
    assert not b.command({"cmd": "start", "ref": "NOT-HEX", "task": task})
    seen, seq, metered = [], 1, []
    for minute in range(12):
        if minute == 5 and kind == "storage":
            assert b.command({"cmd": "challenge", "ref": ref, "challenge": "ee" * 32})
        if minute == 9:
            assert b.command({"cmd": "stop", "ref": ref})
        while (frame := b.serve(seq)) is not None:
            seen.append((seq, *frame))
            seq += 1
        seen.append((seq, *b.tick(seq)))
        seq += 1
    ours = [(s, k, p) for s, k, p in seen if p.get("session") == seen[0][0]]
    assert ours[0][2]["ref"] == ref and ours[0][2]["session"] == ours[0][0]
    for _, frame_kind, payload in ours:
        key = (kind, frame_kind, payload.get("event") if frame_kind == "event" else None)
        assert set(payload) == COMMANDED[key], key
    assert not b.held and ours[-1][1] == "event" and ref in b.refs
    assert not b.command({"cmd": "start", "ref": ref, "task": task, "quantity": 50})
    again = sim_kinds.behaviour(kind, random.Random(4), b"s" * 16)
    again.restore(json.loads(json.dumps(b.state())))
    assert again.state() == b.state()


def test_no_gateway_is_one_clear_error(tmp_path):
    result = nodeproc.run_cli("--home", tmp_path / "none", "device", "simulate", "weather",
                              "--mdns-interface", "127.0.0.1", "--mdns-timeout", "0.5",
                              "--chain-id", "ss-nowhere", "--state-dir", tmp_path / "sims")
    assert result.returncode == 1, result
    line, = result.stderr_lines()
    assert line.startswith("error: no SmartShare gateway found by mDNS for chain ss-nowhere")
    assert "[discovery] advertise" in line and "--broker HOST:PORT" in line


# -- against a node ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gateway(module_node_factory):
    """A node running its own Mosquitto: ``(home, the port devices use: TLS)``."""
    home = module_node_factory.home("gw", mqtt_port=free_ports(1)[0])
    module_node_factory.node(home)
    return home, load(home.path).mqtt_tls_port


def simulate(home, port, kind, state_dir, frames, *extra):
    args = ["device", "simulate", kind, "--approve", "--frames", frames, "--interval", "0.05",
            "--state-dir", state_dir, "--json", *extra]
    if port:
        args += ["--broker", f"127.0.0.1:{port}"]
    return home.cli(*args, check=True, timeout=60).json()


def stored(home, device_id, count):
    """The device's record once the node holds ``count`` frames; frames oldest first."""
    def ready():
        doc = home.client().get(f"/v1/devices/{device_id}")
        return doc if len(doc["frames"]) >= count else None
    doc = wait_for(f"{count} frames of {device_id}", ready, timeout=20)
    doc["frames"] = [Frame.decode(bytes.fromhex(f["frame"])) for f in reversed(doc["frames"])]
    return doc


def rejected(home):
    return home.client().get("/v1/devices")["bridge"]["rejected"]


@pytest.mark.slow
def test_all_kinds_onboard_and_their_frames_land(gateway, tmp_path):
    home, port = gateway
    out = simulate(home, port, "all", tmp_path, 8)
    assert [d["kind"] for d in out["devices"]] == list(sim_kinds.KINDS)
    for device in out["devices"]:
        assert (device["frames"], device["first_seq"], device["last_seq"]) == (8, 1, 8)
        assert device["receipted_seq"] == 8, "the node's receipt did not cover every frame"
        assert device["errors"] == [] and device["error"] is None
        doc = stored(home, device["id"], 8)
        assert doc["status"] == "approved" and doc["kind"] == device["kind"]
        assert [f.seq for f in doc["frames"]] == list(range(1, 9))
        assert doc["frames"][0].kind_name == "hello"
        for frame in doc["frames"]:
            check_fields(device["kind"], frame.kind_name, json.loads(frame.payload))
    assert rejected(home) == {}


@pytest.mark.slow
def test_restarted_simulator_goes_on_above_the_stored_seq(gateway, tmp_path):
    home, port = gateway
    first = simulate(home, port, "router", tmp_path, 4)["devices"][0]
    second = simulate(home, port, "router", tmp_path, 4)["devices"][0]
    assert (second["id"], second["first_seq"], second["last_seq"]) == (first["id"], 5, 8)
    last = stored(home, first["id"], 8)["frames"][-1].seq
    # Killed mid-run (kill -9), it still never reuses a seq the gateway may have stored.
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "--home", home.path, "device",
                             "simulate", "router", "--broker", f"127.0.0.1:{port}", "--interval",
                             "0.02", "--state-dir", tmp_path], env=nodeproc.cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for("frames of the run to kill", lambda: (
            home.client().get(f"/v1/devices/{first['id']}")["frames"][0]["seq"] >= last + 5))
    finally:
        proc.kill()
        proc.wait(10)
    third = simulate(home, port, "router", tmp_path, 3)["devices"][0]
    assert third["errors"] == [] and third["last_seq"] == third["first_seq"] + 2
    wait_for("the third run's frames", lambda: stored(home, first["id"], 1)["frames"][-1].seq
             == third["last_seq"])
    seqs = [f.seq for f in stored(home, first["id"], 1)["frames"]]
    assert seqs[-3:] == list(range(third["first_seq"], third["last_seq"] + 1))
    assert seqs[-4] < third["first_seq"]   # everything the killed run got stored lies below
    assert rejected(home) == {}


@pytest.mark.slow
def test_mdns_discovery_end_to_end(gateway, tmp_path):
    home, port = gateway
    config = load(home.path)
    advert = Advertiser(node_name=f"sim-test-{home.chain_id}", host_ip="127.0.0.1",
                        api_port=home.api_port, p2p_port=home.api_port, mqtt_port=port,
                        chain_id=home.chain_id, node_id=b"\1" * 32, role="agent", version="t",
                        provision_password=config.mqtt_provision_password,
                        interfaces=["127.0.0.1"], ca_sha256=ca_fingerprint(home.path))
    with advert:
        out = simulate(home, None, "weather", tmp_path, 3, "--mdns-interface", "127.0.0.1")
    assert out["gateway"]["port"] == port and out["gateway"]["chain_id"] == home.chain_id
    device = out["devices"][0]
    assert device["errors"] == [] and device["last_seq"] == 3
    assert [f.seq for f in stored(home, device["id"], 3)["frames"]] == [1, 2, 3]


@pytest.mark.slow
def test_node_run_simulate_all(node_factory, tmp_path):
    home = node_factory.home("sim", mqtt_port=free_ports(1)[0])
    log_path = tmp_path / "node.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "--home", home.path, "node",
                                 "run", "--simulate", "all", "--simulate-interval", "0.2"],
                                env=nodeproc.cli_env(), stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=nodeproc._die_with_parent if nodeproc._prctl else None)
    try:
        def busy():
            devices = home.client(2).get("/v1/devices")["devices"]
            ok = [d for d in devices if d["status"] == "approved" and len(
                home.client(2).get(f"/v1/devices/{d['id']}")["frames"]) >= 3]
            return sorted(d["kind"] for d in ok) == sorted(sim_kinds.KINDS)
        wait_for("every simulated device with frames", lambda: _alive(proc) and _quiet(busy))
        wait_for("a frame summary line", lambda: "frame(s) in" in log_path.read_text())
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    text = log_path.read_text()
    assert code == 0, text
    assert "node stopped" in text
    assert f"simulators: stopped {len(sim_kinds.KINDS)} device(s)\n" in text
    assert not re.search(r"Traceback|[Ee]rror|failed|refused", text), text
    config = load(home.path)
    assert not _listening(config.mqtt_port) and not _listening(config.mqtt_tls_port), \
        "the node's Mosquitto outlived it"


def _alive(proc):
    assert proc.poll() is None, f"node exited with {proc.returncode}"
    return True


def _quiet(check):
    try:
        return check()
    except nodeproc.ApiError:
        return False


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_a_device_folder_is_run_by_one_simulator_at_a_time(tmp_path):
    from edge.mqtt.simulators import DeviceState, SimulatorError
    state = DeviceState.open(str(tmp_path / "weather-1"), "weather")
    try:
        assert os.stat(state.path).st_mode & 0o777 == 0o600
        with pytest.raises(SimulatorError, match="another simulator runs"):
            DeviceState.open(str(tmp_path / "weather-1"), "weather")
    finally:
        state.close()
    again = DeviceState.open(str(tmp_path / "weather-1"), "weather")
    assert again.id == state.id
    again.close()


def test_outbox_keeps_frames_until_receipted_and_survives_a_torn_append(tmp_path):
    from edge.mqtt.outbox import Outbox
    key = SigningKey(b"o" * 32)
    frames = {seq: sign_frame(key, "c", b"\1" * 8, "meter", seq, 1, {"n": seq})
              for seq in range(1, 8)}
    path = str(tmp_path / "outbox.bin")
    box = Outbox(path)
    for seq, raw in frames.items():
        box.keep(seq, raw)
    box.close()
    with open(path, "ab") as f:          # killed halfway through appending frame 8
        f.write(b"\x00\x90" + frames[7][:20])
    box = Outbox(path)
    assert box.frames == frames and box.last_seq == 7
    assert box.settle(3, 1) == [] and sorted(box.frames) == [4, 5, 6, 7]
    assert [s for s, _ in box.since(6)] == [6, 7]
    assert box.settle(5, 7) == [4, 5]    # a new run began at 7: 4 and 5 will never be taken
    box.close()
    assert Outbox(path).frames == {6: frames[6], 7: frames[7]}
    box = Outbox(path)
    box.settle(7, 1)
    box.close()
    assert os.path.getsize(path) == 0 and Outbox(path).frames == {}


def test_a_device_moved_to_another_chain_drops_the_frames_signed_for_the_old_one(tmp_path):
    """Frames signed for the chain a device has left can never be taken by a gateway of its
    new chain: the device drops them when it joins again, rather than keeping them until its
    outbox is full and it stops producing (which once wedged a test gateway's parking gate)."""
    from edge.mqtt.simulators import Gateway, SimulatedDevice
    folder = str(tmp_path / "gate")
    old = SimulatedDevice("parking-gate", folder, Gateway("127.0.0.1", 1, "pw", "ss-old"))
    old.state.credentials = {"chain_id": "ss-old", "username": "u", "password": "p"}
    for seq in range(1, 6):
        old.state.outbox.keep(seq, sign_frame(old.state.key, "ss-old", old.state.id, "meter",
                                              seq, 1, {"n": seq}))
    old.state.seq = 5
    old.state.save()
    old.state.close()
    lines = []
    moved = SimulatedDevice("parking-gate", folder, Gateway("127.0.0.1", 1, "pw", "ss-new"),
                            log=lines.append)
    assert len(moved.state.outbox) == 5 and not moved._usable_credentials()
    assert len(moved.state.outbox) == 0 and moved.state.credentials is None
    assert moved.state.seq == 5                      # seqs go on: never reused
    assert any("dropped 5 unreceipted frame(s) signed for chain ss-old" in line
               for line in lines), lines
    moved.state.close()
    again = SimulatedDevice("parking-gate", folder, Gateway("127.0.0.1", 1, "pw", "ss-new"))
    assert len(again.state.outbox) == 0              # dropped on disk too
    again.state.close()
