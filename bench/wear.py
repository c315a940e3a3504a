"""SD-card wear: bytes a gateway writes per day, idle and under 100 devices, and the card's life.

Runs a real ``smartshare node run`` (a devnet home: 1 s slots, its own Mosquitto) under ``strace
-f``, and counts every byte the node and its broker write to files of the node's home (LMDB's
``pwrite``s of the data file, the vote watermark, the broker's files) and every flush (``fsync``,
``fdatasync``) within a measured window: ``/proc/<pid>/io`` overstates on this kernel and the
block devices are shared with other work.

The node's chain is aged first (``--age``, 1,100 blocks: far past ``prune_depth`` (64) and its
pruning batch, so the chain database has its steady size and pruning runs, as on a gateway that
has run for a while; with ``[node] prune_depth = 1000`` it is one B-tree level deeper):
the devnet genesis is moved back in time and that many empty blocks are produced in-process by
the node's own key and code, catching up with the clock, before the node starts.

1. idle: empty blocks only (on an aged chain, whole pruning cycles: 64 blocks); bytes per
   block, flushes a second, the data file's growth.
2. ingest: ``--devices`` (100) approved devices, each publishing one signed 334-byte-class meter
   frame a second from a child process (not traced), as a fleet would; bytes per frame, flushes a
   second; then the same load on a node that is not traced, for the bridge's 99th percentile
   from a frame's arrival to its acknowledgement (the node's ``/v1/devices``): ptrace stops the
   node at every write and flush, which added 10-160 ms to that percentile and made it vary
   from run to run (its traced value is reported too, as is the week's, which is traced).

3. week (``--week``): disk use under that load once pruning runs, a week compressed. The frame
   budget (``[mqtt] frame_budget_mb``, 8192 by default: less than a week of this load) is scaled
   down to ``--week-budget-mb`` (8) and stands for a week of frames: one simulated week is the
   time the load takes to fill it, a simulated day a seventh of that. 8 MB is the smallest
   budget that prunes in the batches a gateway uses (512 kB; a budget under 8 MB prunes every
   sixteenth of itself, so a 1 MB one pruned 8 times as often as any real gateway). The load runs until the
   budget is full, then ``--weeks`` (3) more simulated weeks; the data file's size is sampled
   throughout, and the report gives its growth per simulated day over the last week, the bytes
   written per day while pruning runs, and frames pruned. What is simulated: the budget's size
   and so the length of a "day"; the load, the node, LMDB and the pruning are real. The chain's
   own growth (blocks are archived for good, about 0.5 kB each) is not compressed and shows as
   real time passes, not per simulated day.
4. round end at 50,000 voters (``bench/scale.py``'s measurement), unless ``--no-scale``.

SD life in years = 32 GB x 3,000 cycles / (write amplification 4 x bytes a day x 365). Frames on
disk stay within ``[mqtt] frame_budget_mb`` (docs/protocol.md §15.7); ``frames_gb_kept_30_days``
is what 30 days of the load would take without that budget (bytes of frame pages per frame,
measured). Prints a table; the last line is one JSON object with ``idle_gb_per_day``,
``ingest_gb_per_day``, ``p99_ack_ms``, ``round_end_ms_50k_voters``, ``idle_sd_years``,
``ingest_sd_years`` (and the week's figures with ``--week``).

    .venv/bin/python bench/wear.py [--seconds 30] [--devices 100] [--quick] [--week] [--no-scale]
"""

import argparse
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from nacl.signing import SigningKey  # noqa: E402

from chain.genesis import Genesis  # noqa: E402
from chain.keys import KeyPair  # noqa: E402
from chain.ledger import Ledger  # noqa: E402
from chain.producer import BlockSigner, watermark_path  # noqa: E402
from chain.store import Store  # noqa: E402
from chain.writer import PRUNE_BATCH  # noqa: E402
from edge.config import load  # noqa: E402
from edge.mqtt.devices import DeviceRegistry  # noqa: E402
from edge.mqtt.frames import sign_frame  # noqa: E402
from edge.mqtt.service import broker_for  # noqa: E402
from edge.mqtt.topics import device_id_of, device_topic  # noqa: E402
from edge.testnet import free_ports  # noqa: E402

CARD_BYTES, CYCLES, AMPLIFICATION = 32e9, 3000, 4
SMARTSHARE = os.path.join(os.path.dirname(sys.executable), "smartshare")
TRACED = "write,pwrite64,writev,pwritev,pwritev2,fsync,fdatasync,msync,sync_file_range"
FLUSHES = {"fsync", "fdatasync", "msync", "sync_file_range"}
CALL = re.compile(r"^(?:\d+\s+)?(\w+)\((\d+)<([^>]*)>(.*)$")
RESUMED = re.compile(r"^(?:(\d+)\s+)?<\.\.\. (\w+) resumed>.*=\s+(-?\d+)")
RETURN = re.compile(r"=\s+(-?\d+)(?:\s+\w+.*)?$")


# -- counting writes in an strace log ----------------------------------------------------------

class Trace:
    """Reads the strace log as it grows; counts bytes written and flushes to files under a home."""

    def __init__(self, path, home):
        self.path, self.home = path, os.path.realpath(home)
        self.offset = 0
        self.pending = {}   # pid -> (call, file) of an unfinished call

    def skip(self):
        """Forget what was traced so far (the measured window starts now)."""
        self.read()

    def read(self):
        """``(bytes written, flushes, {file: bytes})`` since the last read (``threads`` holds
        ``{thread id: [bytes, flushes]}`` of the same window)."""
        with open(self.path, errors="replace") as f:
            f.seek(self.offset)
            text = f.read()
        cut = text.rfind("\n") + 1
        self.offset += len(text[:cut].encode("utf-8", "surrogateescape"))
        written, flushes, files = 0, 0, {}
        self.threads = {}
        for line in text[:cut].splitlines():
            call, name, result = self._parse(line)
            if call is None or not name.startswith(self.home):
                continue
            thread = self.threads.setdefault(line.split(None, 1)[0], [0, 0])
            if call in FLUSHES:
                flushes += 1
                thread[1] += 1
            elif result > 0:
                written += result
                thread[0] += result
                files[name] = files.get(name, 0) + result
        return written, flushes, files

    def _parse(self, line):
        pid = line.split(None, 1)[0] if line[:1].isdigit() else ""
        resumed = RESUMED.match(line)
        if resumed:
            call, name = self.pending.pop(resumed.group(1) or "", (None, ""))
            return call, name, int(resumed.group(3))
        found = CALL.match(line)
        if found is None:
            return None, "", 0
        call, _, name, rest = found.groups()
        if rest.endswith("<unfinished ...>"):
            self.pending[pid] = (call, name)
            return None, "", 0
        result = RETURN.search(rest)
        return call, name, int(result.group(1)) if result else 0


# -- the node ---------------------------------------------------------------------------------

class TracedNode:
    """``smartshare node run`` of a devnet home under ``strace -f`` (``trace_path`` None: not
    traced, for latencies: ptrace stops the node at every traced call)."""

    def __init__(self, home, trace_path):
        self.home = home
        self.log = open(os.path.join(os.path.dirname(home), "node.log"), "w")  # not traced
        self.traced = trace_path is not None
        strace = ["strace", "-f", "-qq", "-y", "-s", "0", "-e", f"trace={TRACED}", "-o",
                  trace_path] if self.traced else []
        self.process = subprocess.Popen([*strace, SMARTSHARE, "--home", home, "node", "run"],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        self.api = load(home).api_url

    def get(self, path):
        with urllib.request.urlopen(self.api + path, timeout=10) as r:
            return json.load(r)

    def wait_height(self, height, timeout=90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the node exited: see {self.log.name}")
            try:
                status = self.get("/v1/status")
                if status["height"] >= height:
                    return status
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"the node did not reach height {height} in {timeout} s")

    def stop(self):
        node = _children(self.process.pid) if self.traced else [self.process.pid]
        for pid in node:
            os.kill(pid, signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def init_home(directory, mqtt_port=0, budget_mb=None):
    home = os.path.join(directory, "home")
    api_port = free_ports(1)[0]
    # devices on the plaintext loopback listener: TLS costs CPU, not writes
    mqtt = ["--mqtt-port", str(mqtt_port), "--mqtt-tls-port", "0"] if mqtt_port else []
    subprocess.run([SMARTSHARE, "--home", home, "init", "--devnet", "--api-port", str(api_port),
                    *mqtt], check=True, stdout=subprocess.DEVNULL)
    if budget_mb is not None:
        path = os.path.join(home, "config.toml")
        with open(path) as f:
            text, count = re.subn(r"(?m)^frame_budget_mb = \d+", f"frame_budget_mb = {budget_mb}",
                                  f.read())
        if count != 1:
            raise SystemExit(f"no frame_budget_mb line in {path}")
        with open(path, "w") as f:
            f.write(text)
    return home


def age_chain(home, blocks):
    """Move the home's devnet genesis ``blocks`` slots back and produce empty blocks (the node's
    key, the ledger's own path) until the chain reaches the current slot."""
    config = load(home)
    data = config.path(config.data_dir)
    if os.path.exists(os.path.join(data, "data.mdb")):
        raise SystemExit(f"{data} already holds a chain: age a fresh home only")
    path = config.path(config.genesis_file)
    genesis = Genesis.load(path)
    genesis = genesis._replace(genesis_time_ms=genesis.genesis_time_ms
                               - (blocks + 1) * genesis.params.slot_ms)
    genesis.save(path + ".aged")
    os.replace(path + ".aged", path)
    key = KeyPair.load(config.path(config.key_file))
    signer = BlockSigner(key, watermark_path(config.path(config.votes_dir), key.pubkey))
    store = Store(data)
    try:
        ledger = Ledger(store, genesis, prune_depth=config.prune_depth)
        while ledger.head.slot + 1 < ledger.slot_at(time.time_ns() // 1_000_000):
            ledger.produce_block(signer, ledger.head.slot + 1, [])
        return ledger.head.height
    finally:
        store.close()


def approve_fleet(home, n):
    """``n`` approved devices in the home's registry and broker files, before the node starts."""
    config = load(home)
    store = Store(config.path(config.data_dir))
    registry = DeviceRegistry(store)
    broker = broker_for(config)
    devices, users = [], {}
    for _ in range(n):
        key = SigningKey.generate()
        device_id = device_id_of(bytes(key.verify_key))
        registry.request(bytes(key.verify_key), {"kind": "router"})
        _, password = registry.approve(device_id)
        users[device_id.hex()] = password
        devices.append({"seed": bytes(key).hex(), "id": device_id.hex(), "password": password})
    broker.write_config(users)
    store.env.close()
    return devices


# -- the device fleet (child process) ---------------------------------------------------------

def fleet_main(spec_path):
    """Child: connect every device, then each second publish one fresh signed meter frame per
    device (spread over the second), until stdin closes."""
    import threading
    spec = json.load(open(spec_path))
    fleet = _bench("mqtt").Fleet(spec["port"], spec["devices"])
    keys = [SigningKey(bytes.fromhex(d["seed"])) for d in spec["devices"]]
    ids = [device_id_of(bytes(k.verify_key)) for k in keys]
    topics = [device_topic(i, "meter") for i in ids]
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print("ready", flush=True)
    seq, start = 0, time.monotonic()
    while not stop.is_set():
        seq += 1
        for index, key in enumerate(keys):
            due = start + seq - 1 + index / len(keys)
            while time.monotonic() < due:
                fleet.pump(max(0.0, min(0.01, due - time.monotonic())))
            frame = sign_frame(key, spec["chain_id"], ids[index], "meter", seq,
                               int(time.time() * 1000),
                               {"session": 1, "bytes": seq * 1500, "clients": seq % 7})
            fleet.clients[index].publish(topics[index], frame, qos=1)
            fleet.pump()
    fleet.close()


def _bench(name):
    """The module of ``bench/<name>.py``."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}",
                                                  os.path.join(ROOT, "bench", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the measurements -------------------------------------------------------------------------

def measure_idle(directory, seconds, age):
    home = init_home(directory)
    aged = age_chain(home, age) if age else 0
    trace = Trace(os.path.join(directory, "idle.trace"), home)
    node = TracedNode(home, trace.path)
    try:
        first = node.wait_height(aged + 3)
        trace.skip()
        size0, t0 = _data_size(home), time.monotonic()
        last = node.wait_height(first["height"] + idle_blocks(seconds, aged), timeout=300)
        written, flushes, files = trace.read()
        elapsed = time.monotonic() - t0
        growth = _data_size(home) - size0
    finally:
        node.stop()
    blocks = last["height"] - first["height"]
    return {"blocks": blocks, "seconds": elapsed, "bytes": written, "flushes": flushes,
            "files": files, "growth": growth, "height": first["height"]}


def idle_blocks(seconds, aged):
    """Blocks in the idle window: on an aged chain, whole pruning cycles (a batch every
    PRUNE_BATCH blocks, docs/protocol.md §10.2), so the window holds its share of them."""
    return -(-seconds // PRUNE_BATCH) * PRUNE_BATCH if aged else seconds


class Loaded:
    """A traced devnet node with ``n_devices`` approved devices publishing a frame a second
    each (``with Loaded(...) as run:``)."""

    def __init__(self, directory, n_devices, age, budget_mb=None, traced=True):
        self.directory, self.n_devices = directory, n_devices
        self.mqtt_port = free_ports(1)[0]
        self.home = init_home(directory, self.mqtt_port, budget_mb)
        self.aged = age_chain(self.home, age) if age else 0
        self.devices = approve_fleet(self.home, n_devices)
        self.trace = Trace(os.path.join(directory, "ingest.trace"), self.home) if traced else None
        self.node, self.fleet = None, None

    def __enter__(self):
        self.node = TracedNode(self.home, self.trace.path if self.trace else None)
        try:
            first = self.node.wait_height(self.aged + 2)
            spec = os.path.join(self.directory, "fleet.json")
            with open(spec, "w") as f:
                json.dump({"port": self.mqtt_port, "devices": self.devices,
                           "chain_id": first["chain_id"]}, f)
            self.fleet = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--fleet",
                                           spec], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          text=True)
            if self.fleet.stdout.readline().strip() != "ready":
                raise SystemExit("the device fleet did not start")
            _wait(lambda: self.bridge()["accepted"] >= 3 * self.n_devices,
                  "the first frames stored")
        except BaseException:
            self.__exit__()
            raise
        return self

    def bridge(self):
        return self.node.get("/v1/devices")["bridge"]

    def __exit__(self, *exc):
        if self.fleet is not None:
            self.fleet.stdin.close()
            self.fleet.wait(30)
        self.node.stop()


def measure_ack(directory, seconds, n_devices, age):
    """The bridge's 99th percentile and maximum from a frame's arrival to its acknowledgement,
    with the node not traced (under strace every write and flush stops it: 214-369 ms against
    204-205 ms in three pairs of runs)."""
    with Loaded(directory, n_devices, age, traced=False) as run:
        time.sleep(seconds)
        bridge = run.bridge()
    return bridge.get("ack_p99_ms"), bridge.get("ack_max_ms")


def measure_ingest(directory, seconds, n_devices, age):
    with Loaded(directory, n_devices, age) as run:
        run.trace.skip()
        bridge0, t0 = run.bridge(), time.monotonic()
        time.sleep(seconds)     # the measured window: the load runs meanwhile
        written, flushes, files = run.trace.read()
        elapsed = time.monotonic() - t0
        bridge = run.bridge()
        threads = sorted(run.trace.threads.values(), reverse=True)[:4]
    frames = bridge["accepted"] - bridge0["accepted"]
    return {"frames": frames, "seconds": elapsed, "bytes": written, "flushes": flushes,
            "files": files, "p99_ack_ms": bridge.get("ack_p99_ms"),
            "max_ack_ms": bridge.get("ack_max_ms"), "rejected": bridge["rejected"],
            "frames_bytes": bridge["frames_bytes"], "stored": bridge["accepted"],
            "threads": threads}


def measure_week(directory, n_devices, age, budget_mb, weeks):
    """The data file's size under the load while pruning keeps the frames within a budget that
    stands for a week (see the module's docstring)."""
    budget = budget_mb << 20
    with Loaded(directory, n_devices, age, budget_mb) as run:
        t0, samples = time.monotonic(), []
        while run.bridge()["pruned"] == 0:      # filling the budget: the first week
            samples.append((time.monotonic() - t0, _data_size(run.home)))
            _wait_s(0.5, run.node)
        week_s = time.monotonic() - t0
        run.trace.skip()
        t1, bridge1 = time.monotonic(), run.bridge()
        while time.monotonic() - t1 < weeks * week_s:
            samples.append((time.monotonic() - t0, _data_size(run.home)))
            _wait_s(1.0, run.node)
        written, flushes, _ = run.trace.read()
        elapsed, bridge = time.monotonic() - t1, run.bridge()
    day_s = week_s / 7
    last = [(t, size) for t, size in samples if t >= week_s * weeks]   # the last week
    growth_per_day = (last[-1][1] - last[0][1]) / max(day_s, (last[-1][0] - last[0][0])) * day_s
    return {"budget": budget, "week_s": week_s, "weeks": weeks, "samples": samples,
            "growth_per_sim_day": growth_per_day, "bytes": written, "seconds": elapsed,
            "flushes": flushes, "frames": bridge["accepted"] - bridge1["accepted"],
            "pruned": bridge["pruned"] - bridge1["pruned"], "frames_bytes": bridge["frames_bytes"],
            "p99_ack_ms": bridge.get("ack_p99_ms")}


def _wait_s(seconds, node):
    time.sleep(seconds)
    if node.process.poll() is not None:
        raise SystemExit(f"the node exited: see {node.log.name}")


def _wait(predicate, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def _data_size(home):
    config = load(home)
    return os.path.getsize(os.path.join(config.path(config.data_dir), "data.mdb"))


def sd_years(bytes_per_day):
    return CARD_BYTES * CYCLES / (AMPLIFICATION * bytes_per_day * 365)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="10 s windows")
    ap.add_argument("--age", type=int, default=1100, help="blocks produced before the node "
                    "starts (0: a fresh chain)")
    ap.add_argument("--week", action="store_true", help="also a compressed week under the load")
    ap.add_argument("--week-budget-mb", type=int, default=8)
    ap.add_argument("--weeks", type=int, default=3, help="simulated weeks after the first")
    ap.add_argument("--no-scale", action="store_true", help="skip the round end at 50k voters")
    ap.add_argument("--fleet", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fleet:
        return fleet_main(args.fleet)
    seconds = 10 if args.quick else args.seconds
    week, round_end_ms = None, None
    with tempfile.TemporaryDirectory(prefix="smartshare-wear-") as d:
        for name in ("idle", "ingest", "ack", "week", "scale"):
            os.makedirs(os.path.join(d, name))
        idle = measure_idle(os.path.join(d, "idle"), seconds, args.age)
        ingest = measure_ingest(os.path.join(d, "ingest"), seconds, args.devices, args.age)
        ingest["traced_p99_ack_ms"] = ingest["p99_ack_ms"]
        ingest["p99_ack_ms"], ingest["max_ack_ms"] = measure_ack(
            os.path.join(d, "ack"), seconds, args.devices, args.age)
        if args.week:
            week = measure_week(os.path.join(d, "week"), args.devices, args.age,
                                args.week_budget_mb, args.weeks)
        if not args.no_scale:
            round_end_ms = _bench("scale").round_end(os.path.join(d, "scale"), 50_000)[0]
    report(idle, ingest, args.devices, week, round_end_ms)


def report_week(week):
    """The week's rows and JSON fields."""
    per_day = week["bytes"] / week["seconds"] * 86400
    sizes = [size for t, size in week["samples"]]
    rows = [
        ("week: budget standing for a week (MB)", f"{week['budget'] / 2**20:.0f}"),
        ("week: one simulated week (s)", f"{week['week_s']:.1f}"),
        ("week: data file at fill / at end (MB)",
         f"{_size_at(week, week['week_s']) / 1e6:.2f} / {sizes[-1] / 1e6:.2f}"),
        (f"week: growth per simulated day, week {week['weeks'] + 1} (kB)",
         f"{week['growth_per_sim_day'] / 1e3:.1f}"),
        ("week: frames stored / pruned while pruning", f"{week['frames']} / {week['pruned']}"),
        ("week: frame pages kept at end (MB)", f"{week['frames_bytes'] / 1e6:.2f}"),
        ("week: GB written per day while pruning", f"{per_day / 1e9:.2f}"),
        ("week: p99 arrival -> ack (ms)", f"{week['p99_ack_ms']}"),
    ]
    fields = {"week_growth_kb_per_sim_day": round(week["growth_per_sim_day"] / 1e3, 1),
              "week_data_mb_end": round(sizes[-1] / 1e6, 2),
              "week_gb_per_day_pruning": round(per_day / 1e9, 2)}
    return rows, fields


def _size_at(week, t):
    return min(week["samples"], key=lambda s: abs(s[0] - t))[1]


def report(idle, ingest, n_devices, week=None, round_end_ms=None):
    idle_day = idle["bytes"] / idle["seconds"] * 86400
    ingest_day = ingest["bytes"] / ingest["seconds"] * 86400
    frame_rate = ingest["frames"] / ingest["seconds"]
    per_frame = (ingest["bytes"] - idle["bytes"] / idle["seconds"] * ingest["seconds"]) \
        / max(1, ingest["frames"])
    kept_per_frame = ingest["frames_bytes"] / max(1, ingest["stored"])
    rows = [
        ("idle: blocks in window", f"{idle['blocks']} in {idle['seconds']:.1f} s, from height "
                                   f"{idle['height']}"),
        ("idle: bytes written per block", f"{idle['bytes'] / max(1, idle['blocks']):,.0f}"),
        ("idle: flushes per second", f"{idle['flushes'] / idle['seconds']:.2f}"),
        ("idle: GB written per day", f"{idle_day / 1e9:.3f}"),
        ("idle: data file growth per day (MB)",
         f"{idle['growth'] / idle['seconds'] * 86400 / 1e6:.1f}"),
        ("idle: SD life (years)", f"{sd_years(idle_day):.1f}"),
        (f"ingest: {n_devices} devices, frames per second", f"{frame_rate:.1f}"),
        ("ingest: bytes written per frame (beyond idle)", f"{per_frame:,.0f}"),
        ("ingest: flushes per second", f"{ingest['flushes'] / ingest['seconds']:.2f}"),
        ("ingest: GB written per day", f"{ingest_day / 1e9:.2f}"),
        ("ingest: p99 / max arrival -> ack, not traced (ms)",
         f"{ingest['p99_ack_ms']} / {ingest['max_ack_ms']}"),
        ("ingest: p99 arrival -> ack under strace (ms)", f"{ingest['traced_p99_ack_ms']}"),
        ("ingest: SD life (years)", f"{sd_years(ingest_day):.1f}"),
        ("ingest: frame pages per stored frame (bytes)", f"{kept_per_frame:.0f}"),
        ("ingest: 30 days of frames without a budget (GB)",
         f"{kept_per_frame * frame_rate * 86400 * 30 / 1e9:.1f}"),
        ("ingest: frames refused", json.dumps(ingest["rejected"])),
    ]
    week_rows, week_fields = report_week(week) if week is not None else ([], {})
    rows += week_rows
    if round_end_ms is not None:
        rows.append(("round end at 50,000 voters (ms)", f"{round_end_ms:.2f}"))
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for what, run in (("idle", idle), ("ingest", ingest)):
        top = sorted(run["files"].items(), key=lambda kv: -kv[1])[:4]
        print(f"{what} writes by file: " + ", ".join(
            f"{os.path.basename(k)} {v:,}" for k, v in top))
    print("ingest writes by thread (bytes/s, flushes/s): " + ", ".join(
        f"{b / ingest['seconds']:,.0f} {f / ingest['seconds']:.2f}" for b, f in ingest["threads"]))
    print(json.dumps({
        "idle_gb_per_day": round(idle_day / 1e9, 3),
        "idle_bytes_per_block": round(idle["bytes"] / max(1, idle["blocks"])),
        "idle_flushes_per_s": round(idle["flushes"] / idle["seconds"], 2),
        "idle_sd_years": round(sd_years(idle_day), 1),
        "ingest_gb_per_day": round(ingest_day / 1e9, 2),
        "ingest_frames_per_s": round(frame_rate, 1),
        "ingest_bytes_per_frame": round(per_frame),
        "ingest_flushes_per_s": round(ingest["flushes"] / ingest["seconds"], 2),
        "ingest_sd_years": round(sd_years(ingest_day), 1),
        "p99_ack_ms": ingest["p99_ack_ms"],
        "traced_p99_ack_ms": ingest["traced_p99_ack_ms"],
        "frames_gb_kept_30_days": round(kept_per_frame * frame_rate * 86400 * 30 / 1e9, 1),
        "idle_growth_mb_per_day": round(idle["growth"] / idle["seconds"] * 86400 / 1e6, 1),
        "round_end_ms_50k_voters": round(round_end_ms, 2) if round_end_ms is not None else None,
        **week_fields,
    }))


if __name__ == "__main__":
    main()
