"""MQTT benchmark: the node's ingest of signed frames against the raw broker, in one run.

1. raw broker: Mosquitto's own C clients, ``mosquitto_pub`` publishing ``--raw`` messages of a
   frame's size to ``mosquitto_sub``, each in a process of its own, through the node's
   Mosquitto (the config the node writes: its queue and inflight limits), at QoS 0 and at
   QoS 1. The figure is what the subscriber actually **received** per second (from the first
   publish to the last message received); what the limits dropped is reported beside it.
2. ingest: 100 device clients (their own credentials and keys) publish pre-signed QoS 1 frames;
   the node's bridge (in this process, as in the node) checks them, verifies them in batches,
   commits them to LMDB and only then acknowledges them. Publishers run in a child process, as
   devices would.

``ingest_frames_per_s`` counts frames from the first publish to the last commit, with the
devices publishing as fast as they can (so ``p99_ack_ms``, publish -> commit-and-acknowledge,
is measured at saturation); ``ingest_ratio`` divides it by the raw QoS 1 figure (both carry
QoS 1 messages of the same size; the raw subscriber acknowledges on receipt, the bridge after
a synced commit). CPU per message is given for each process on each side. The publishers share
the machine's two cores with the broker and the bridge; ``backlog_frames_per_s`` measures the
bridge alone, draining frames the broker queued for its persistent session while it was down.
Prints a table; the last line is one JSON object of the figures.

    .venv/bin/python bench/mqtt.py [--quick] [--devices N] [--frames N] [--raw N]
"""

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time

# This file is named like a package it imports: keep bench/ off the import path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import paho.mqtt.client as mqtt  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

from chain.store import Store  # noqa: E402
from edge import _fast  # noqa: E402
from edge.mqtt.bridge import Bridge  # noqa: E402
from edge.mqtt.broker import BRIDGE_USER, Broker  # noqa: E402
from edge.mqtt.devices import DeviceRegistry  # noqa: E402
from edge.mqtt.frames import sign_frame  # noqa: E402
from edge.mqtt.topics import device_id_of, device_topic  # noqa: E402
from edge.testnet import free_ports  # noqa: E402

CHAIN_ID = "smartshare-bench-mqtt"
READY_TIMEOUT_S = 30


# -- the publisher child ---------------------------------------------------------------------------

class Fleet:
    """Many paho clients driven by ONE thread (a selector over their sockets), as a gateway's
    worth of devices: no thread per client, so the publishers' GIL contention does not cap the
    measurement. ``publish`` writes straight to the socket (paho does so without a loop thread)."""

    def __init__(self, port, devices, inflight=1000):
        import selectors
        self.selector = selectors.DefaultSelector()
        self.clients = []
        connected = []
        for d in devices:
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-" + d["id"])
            c.max_inflight_messages_set(inflight)
            c.username_pw_set(d["id"], d["password"])
            c.on_connect = lambda *a: connected.append(1)
            c.connect("127.0.0.1", port)
            self.selector.register(c.socket(), selectors.EVENT_READ, c)
            self.clients.append(c)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while len(connected) < len(devices):
            if time.monotonic() > deadline:
                raise SystemExit("the device clients could not connect")
            self.pump(0.1)

    def pump(self, timeout=0.0):
        """Read whatever arrived (CONNACKs, PUBACKs); send what paho has queued."""
        for key, _ in self.selector.select(timeout):
            key.data.loop_read()
        for c in self.clients:
            if c.want_write():
                c.loop_write()

    def close(self):
        for c in self.clients:
            c.disconnect()
            c.loop_write()
        self.selector.close()


def publisher_main(spec_path):
    """Child process: connect every device, pre-sign its frames, print ``ready``, wait for a
    line on stdin, publish everything round-robin, wait for every PUBACK, print the publish
    times (ns) as JSON."""
    with open(spec_path) as f:
        spec = json.load(f)
    port, n, first = spec["port"], spec["frames"], spec["first_seq"]
    topics, frames = [], []
    for d in spec["devices"]:
        key = SigningKey(bytes.fromhex(d["seed"]))
        device_id = device_id_of(bytes(key.verify_key))
        topics.append(device_topic(device_id, "meter"))
        frames.append([sign_frame(key, CHAIN_ID, device_id, "meter", seq, int(time.time() * 1000),
                                  {"session": 1, "bytes": seq * 1500,
                                   "clients": seq % 7})
                       for seq in range(first, first + n)])
    fleet = Fleet(port, spec["devices"])
    print("ready", flush=True)
    sys.stdin.readline()
    cpu = time.process_time()
    sent = [[0] * n for _ in topics]
    infos = []
    for seq in range(n):
        for index, c in enumerate(fleet.clients):
            sent[index][seq] = time.time_ns()
            infos.append(c.publish(topics[index], frames[index][seq], qos=1))
        fleet.pump()
    deadline = time.monotonic() + 300
    while not all(info.is_published() for info in infos[-len(topics):]):
        if time.monotonic() > deadline:
            raise SystemExit("PUBACKs missing after 300 s")
        fleet.pump(0.05)
    fleet.close()
    print(json.dumps({"sent": sent, "cpu_s": time.process_time() - cpu}), flush=True)


# -- the measurements ------------------------------------------------------------------------------

def client_options(directory, password):
    """An XDG_CONFIG_HOME whose option files log mosquitto_pub/sub in as the bridge: the
    password stays off their command lines."""
    folder = os.path.join(directory, "xdg")
    os.makedirs(folder, exist_ok=True)
    for tool in ("mosquitto_pub", "mosquitto_sub"):
        path = os.path.join(folder, tool)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"-u {BRIDGE_USER}\n-P {password}\n")
    return dict(os.environ, XDG_CONFIG_HOME=folder)


class Subscriber:
    """``mosquitto_sub`` in its own process; a thread counts the lines (messages) it prints."""

    def __init__(self, port, topic, qos, env):
        self.process = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-q", str(qos),
             "-i", f"bench-raw-sub-{qos}"], stdout=subprocess.PIPE, env=env)
        self.count, self.probes, self.last = 0, 0, None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.process.stdout:
            if line.startswith(b"probe"):
                self.probes += 1
            else:
                self.count += 1
                self.last = time.perf_counter()

    def stop(self):
        """SIGTERM; returns its CPU seconds."""
        self.process.terminate()
        self.thread.join(10)
        return reap_cpu_s(self.process)


def reap_cpu_s(process):
    """Wait for a child and return the CPU seconds (user + system) it used."""
    _, _, usage = os.wait4(process.pid, 0)
    process.returncode = 0
    return usage.ru_utime + usage.ru_stime


def measure_raw(port, password, qos, messages, size, directory, broker_pid):
    """Messages/s that mosquitto_sub received from mosquitto_pub through the broker, at ``qos``:
    ``{per_s, received, sent, cpu_us_per_msg{publisher, broker, subscriber}}``."""
    env = client_options(directory, password)
    topic = f"ss/v1/bench/raw{qos}"
    payload = os.path.join(directory, "payload")
    with open(payload, "w") as f:
        f.write(secrets.token_urlsafe(size)[:size])
    sub = Subscriber(port, topic, qos, env)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not sub.probes:          # wait until the subscription is in place
        if time.monotonic() > deadline:
            raise SystemExit("mosquitto_sub did not receive the probe")
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", topic,
                        "-q", "1", "-m", "probe"], env=env, check=True)
        time.sleep(0.1)
    broker_cpu = process_cpu_s(broker_pid)
    started = time.perf_counter()
    pub = subprocess.Popen(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", topic,
                            "-q", str(qos), "-f", payload, "--repeat", str(messages), "-M", "1000",
                            "-i", f"bench-raw-pub-{qos}"], env=env)
    pub_cpu = reap_cpu_s(pub)
    quiet = time.monotonic()
    while sub.count < messages:          # wait for stragglers until none came for 2 s
        before = sub.count
        time.sleep(0.2)
        if sub.count != before:
            quiet = time.monotonic()
        elif time.monotonic() - quiet > 2.0:
            break
    broker_cpu = process_cpu_s(broker_pid) - broker_cpu
    received, last = sub.count, sub.last
    sub_cpu = sub.stop()
    per = max(received, 1)
    return {"per_s": received / (last - started) if last else 0.0, "received": received,
            "sent": messages,
            "cpu_us_per_msg": {"publisher": round(pub_cpu / per * 1e6, 1),
                               "broker": round(broker_cpu / per * 1e6, 1),
                               "subscriber": round(sub_cpu / per * 1e6, 1)}}


def setup_devices(broker, registry, n):
    devices, users = [], {}
    for _ in range(n):
        key = SigningKey.generate()
        pubkey = bytes(key.verify_key)
        registry.request(pubkey, {"kind": "router"})
        _, password = registry.approve(device_id_of(pubkey))
        device_id = device_id_of(pubkey).hex()
        users[device_id] = password
        devices.append({"seed": bytes(key).hex(), "id": device_id, "password": password})
    broker.write_config(users)
    return devices


class Publishers:
    """The device fleet in a child process: ``publish`` sends ``frames`` frames per device from
    ``first_seq`` on and returns their publish times (ns), once every PUBACK is in."""

    def __init__(self, port, devices, frames, first_seq, directory):
        spec = os.path.join(directory, f"publishers-{first_seq}.json")
        with open(spec, "w") as f:
            json.dump({"port": port, "frames": frames, "devices": devices, "first_seq": first_seq},
                      f)
        self.child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--publisher",
                                       spec], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True)
        if self.child.stdout.readline().strip() != "ready":
            self.close()
            raise SystemExit("the publishers did not start")

    def publish(self):
        """Go; ``(publish times per device, CPU seconds the devices used)``."""
        self.child.stdin.write("go\n")
        self.child.stdin.flush()
        out = json.loads(self.child.stdout.readline())
        return out["sent"], out["cpu_s"]

    def close(self):
        self.child.kill()
        self.child.wait()


class Ingest:
    """The node's bridge in this process, recording when each (device, seq) was committed."""

    def __init__(self, store, registry, port, password):
        self.commits = {}
        self.bridge_args = dict(host="127.0.0.1", port=port, username=BRIDGE_USER,
                                password=password, client_id="bench-bridge", chain_id=CHAIN_ID,
                                log=lambda *_: None, rate_per_s=1e9, burst=1e9,
                                on_commit=self._on_commit)
        self.store, self.registry = store, registry
        self.bridge = None

    def _on_commit(self, items, t_ns):
        for item in items:
            self.commits[item] = t_ns

    def start(self):
        self.bridge = Bridge(self.store, self.registry, **self.bridge_args)
        self.bridge.start()
        if not self.bridge.wait_ready(READY_TIMEOUT_S):
            raise SystemExit("the bridge did not subscribe")

    def stop(self):
        stats = self.bridge.stats()
        self.bridge.stop()
        return stats

    def wait(self, total, idle_s=5.0):
        """Until ``total`` frames are committed, or none was for ``idle_s`` (what the broker's
        limits dropped never comes)."""
        seen, quiet = -1, time.monotonic()
        while len(self.commits) < total:
            if len(self.commits) != seen:
                seen, quiet = len(self.commits), time.monotonic()
            elif time.monotonic() - quiet > idle_s:
                break
            time.sleep(0.005)
        return len(self.commits)


def process_cpu_s(pid):
    """CPU seconds (user + system) a process has used so far, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_ingest(ingest, port, devices, frames, directory, broker_pid):
    """Live: the devices publish as fast as they can while the bridge ingests. Also the CPU
    each side used: devices (child process), broker, node (this process: the bridge)."""
    publishers = Publishers(port, devices, frames, 1, directory)
    try:
        ingest.start()
        node_cpu, broker_cpu = time.process_time(), process_cpu_s(broker_pid)
        sent, devices_cpu = publishers.publish()
        stored = ingest.wait(len(devices) * frames)
        node_cpu, broker_cpu = time.process_time() - node_cpu, \
            process_cpu_s(broker_pid) - broker_cpu
        stats = ingest.stop()
    finally:
        publishers.close()
    ids = [bytes.fromhex(d["id"]) for d in devices]
    commits = ingest.commits
    latencies = sorted((commits[(ids[i], seq + 1)] - t) / 1e6
                       for i, times in enumerate(sent) for seq, t in enumerate(times)
                       if (ids[i], seq + 1) in commits)
    elapsed = (max(commits.values()) - min(min(times) for times in sent)) / 1e9
    return {"stored": stored, "frames_per_s": stored / elapsed,
            "p50_ack_ms": latencies[len(latencies) // 2],
            "p99_ack_ms": latencies[int(len(latencies) * 0.99)],
            "batches": stats["batches"], "rejected": sum(stats["rejected"].values()),
            "cpu_us_per_frame": {name: round(seconds / stored * 1e6, 1) for name, seconds in
                                 (("devices", devices_cpu), ("broker", broker_cpu),
                                  ("node", node_cpu))}}


def measure_backlog(ingest, port, devices, frames, directory):
    """The bridge alone: frames queued in the broker for its persistent session while it was
    down, then drained (verified, committed, acknowledged) with no publisher running."""
    publishers = Publishers(port, devices, frames, frames + 1, directory)
    try:
        publishers.publish()
    finally:
        publishers.close()
    ingest.commits.clear()
    started = time.time_ns()
    ingest.start()
    stored = ingest.wait(len(devices) * frames)
    ingest.stop()
    return {"stored": stored,
            "frames_per_s": stored / ((max(ingest.commits.values()) - started) / 1e9)}


def run(args):
    with tempfile.TemporaryDirectory(prefix="smartshare-bench-mqtt-") as directory:
        port = free_ports(1)[0]
        password = secrets.token_urlsafe(16)
        store = Store(os.path.join(directory, "data"))
        registry = DeviceRegistry(store)
        broker = Broker(os.path.join(directory, "mqtt"), "127.0.0.1", port, password,
                        secrets.token_urlsafe(16))
        devices = setup_devices(broker, registry, args.devices)
        broker.start()
        try:
            frame_size = len(sign_frame(SigningKey.generate(), CHAIN_ID, b"\0" * 8, "meter", 10**6,
                                        int(time.time() * 1000), {"bytes": 10**9, "clients": 3}))
            raw = {qos: measure_raw(port, password, qos, args.raw, frame_size, directory,
                                    broker.process.pid) for qos in (0, 1)}
            ingest = Ingest(store, registry, port, password)
            live = measure_ingest(ingest, port, devices, args.frames, directory,
                                  broker.process.pid)
            backlog = measure_backlog(ingest, port, devices, args.frames, directory)
        finally:
            broker.stop()
            store.close()
    return {"implementation": _fast.IMPLEMENTATION, "devices": args.devices,
            "frame_bytes": frame_size, "raw_messages": args.raw,
            "raw_qos0_msgs_per_s": round(raw[0]["per_s"]), "raw_qos0_received": raw[0]["received"],
            "raw_qos1_msgs_per_s": round(raw[1]["per_s"]), "raw_qos1_received": raw[1]["received"],
            "raw_cpu_us_per_msg": raw[1]["cpu_us_per_msg"],
            "ingest_frames": live["stored"], "ingest_frames_sent": args.devices * args.frames,
            "ingest_frames_per_s": round(live["frames_per_s"]),
            "ingest_ratio": round(live["frames_per_s"] / raw[1]["per_s"], 3),
            "p50_ack_ms": round(live["p50_ack_ms"], 1),
            "p99_ack_ms": round(live["p99_ack_ms"], 1),
            "batches": live["batches"], "rejected": live["rejected"],
            "backlog_frames": backlog["stored"],
            "backlog_frames_per_s": round(backlog["frames_per_s"]),
            "cpu_us_per_frame": live["cpu_us_per_frame"]}


def print_table(f):
    rows = [
        ("raw broker, mosquitto_pub -> mosquitto_sub, QoS 0 (msgs/s received)",
         f"{f['raw_qos0_msgs_per_s']:,}  ({f['raw_qos0_received']:,} of {f['raw_messages']:,})"),
        ("raw broker, mosquitto_pub -> mosquitto_sub, QoS 1 (msgs/s received)",
         f"{f['raw_qos1_msgs_per_s']:,}  ({f['raw_qos1_received']:,} of {f['raw_messages']:,})"),
        ("raw QoS 1 CPU per message, publisher / broker / subscriber (us)",
         " / ".join(str(v) for v in f["raw_cpu_us_per_msg"].values())),
        (f"ingest, {f['devices']} devices publishing, signed QoS 1, ack after commit (frames/s)",
         f"{f['ingest_frames_per_s']:,}  ({f['ingest_frames']:,} of {f['ingest_frames_sent']:,})"),
        ("ingest / raw QoS 1", f"{f['ingest_ratio']:.3f}"),
        ("publish -> commit+ack p50 / p99 at saturation (ms)",
         f"{f['p50_ack_ms']} / {f['p99_ack_ms']}"),
        ("frames stored / batches / rejected",
         f"{f['ingest_frames']:,} / {f['batches']:,} / {f['rejected']}"),
        ("bridge alone: queued backlog drained (frames/s)",
         f"{f['backlog_frames_per_s']:,}  ({f['backlog_frames']:,} frames)"),
        ("ingest CPU per frame, devices / broker / node (us)",
         " / ".join(str(v) for v in f["cpu_us_per_frame"].values())),
        ("frame size (bytes), implementation", f"{f['frame_bytes']}, {f['implementation']}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer frames (a smoke run)")
    p.add_argument("--devices", type=int, default=100)
    p.add_argument("--frames", type=int, default=None, help="frames per device")
    p.add_argument("--raw", type=int, default=None, help="raw messages at each QoS")
    p.add_argument("--publisher", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.publisher:
        return publisher_main(args.publisher)
    args.frames = args.frames or (20 if args.quick else 400)
    args.raw = args.raw or (5_000 if args.quick else 100_000)
    figures = run(args)
    print_table(figures)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
