"""What the simulated devices report (docs/protocol.md §16.3): one behaviour class per device
kind. Each makes a ``hello`` payload and, per tick, one ``(frame kind, payload)`` of its own
(ambient) life. The MQTT side, keys and onboarding are in ``edge/mqtt/simulators.py``.

Simulated time: every tick stands for ``SIM_STEP_S`` (one minute) of the device's life, whatever
the real interval between frames, so minutes parked, running seconds and bytes move at a
realistic pace per frame. Frame timestamps are always the real clock. Counters are integers;
physical readings are floats rounded to one decimal. A session id is the ``seq`` of the frame
that opened the session, so it is unique per device across restarts.

**Commanded sessions.** The gateway's agent sells a device's service and commands it on
``ss/v1/dev/<id>/reply/command`` (§17.4): ``{"cmd": "start", "ref", "task"?, "quantity"?}``,
``{"cmd": "stop", "ref"}``, ``{"cmd": "challenge", "ref", "challenge"}``. ``command(doc)`` takes
one; ``serve(seq)`` returns the next frame a commanded session needs (its opening event, carrying
``ref``; a meter frame per simulated minute; a storage proof; its closing event), or None. Such a
session is apart from the ambient ones: random arrivals and departures never end it, only a stop.
A ``ref`` is served once: a repeated or late start is ignored.

``state()`` / ``restore(doc)`` carry a behaviour (open sessions, counters, readings, pending
commands) across a restart of the simulator as JSON; the random generator is not part of it (the
simulator seeds a fresh one per run).
"""

import hashlib
import math
import random
import re

from edge import _fast

SIM_STEP_S = 60
KINDS = ("parking-gate", "purifier", "router", "weather", "storage", "compute")
FIRMWARE = "sim-1.0"
MAX_REFS = 256                  # refs remembered (served or refused) per device
TAG_OBJECT, TAG_PROOF, TAG_JOB = b"ss/object", b"ss/proof", b"ss/job"
_REF = re.compile(r"^[0-9a-f]{16}$")
_HEX = re.compile(r"^(?:[0-9a-f]{2}){1,1024}$")


def _keyed(salt, text, size):
    return hashlib.blake2b(text.encode(), key=salt, digest_size=size).hexdigest()


class Behaviour:
    kind = model = ""
    services = ()
    proves = False            # answers storage challenges

    def __init__(self, rng: random.Random, salt: bytes):
        self.rng, self.salt = rng, salt
        self.minute = 0
        self.held = {}            # ref -> a commanded session's state
        self.refs = []            # refs ever started (a late start of one is ignored)

    def hello(self):
        return {"kind": self.kind, "model": self.model, "firmware": FIRMWARE,
                "services": [dict(s) for s in self.services]}

    def tick(self, seq):
        """The frame kind and payload of the (ambient) frame with sequence number ``seq``."""
        self.minute += 1
        return self.step(seq)

    def state(self):
        """What a restarted simulator needs to go on: JSON-ready attributes."""
        return {k: v for k, v in vars(self).items() if k not in ("rng", "salt")}

    def restore(self, doc):
        """Take back a ``state()``; keys this behaviour does not have are ignored."""
        for key, value in doc.items():
            if key in vars(self) and key not in ("rng", "salt"):
                setattr(self, key, value)

    def step(self, seq):
        raise NotImplementedError

    # -- commanded sessions -----------------------------------------------------------------------

    def command(self, doc):
        """Take one command of the agent; False when it is ignored (unknown, repeated, bad)."""
        ref = doc.get("ref") if isinstance(doc, dict) else None
        if not isinstance(ref, str) or not _REF.match(ref):
            return False
        cmd = doc.get("cmd")
        if cmd == "start" and ref not in self.refs and self.accepts(doc):
            self.refs = (self.refs + [ref])[-MAX_REFS:]
            self.held[ref] = {"phase": "opening", "task": doc.get("task"),
                              "quantity": doc.get("quantity")}
            return True
        held = self.held.get(ref)
        if held is None:
            return False
        if cmd == "stop":
            if held["phase"] == "opening":
                del self.held[ref]
            else:
                held["phase"] = "closing"
            return True
        if cmd == "challenge" and self.proves and isinstance(doc.get("challenge"), str) and \
                re.fullmatch(r"[0-9a-f]{64}", doc["challenge"]):
            held.setdefault("challenges", []).append(doc["challenge"])
            return True
        return False

    def accepts(self, doc):
        """Whether a start command is one this device can serve."""
        return True

    def serve(self, seq):
        """The next frame a commanded session needs, as frame ``seq``, or None."""
        for ref, held in list(self.held.items()):
            if held["phase"] == "opening":
                held.update(phase="open", session=seq, since=self.minute, metered=self.minute)
                return "event", self.opened(ref, held, seq)
            if held["phase"] == "closing":
                del self.held[ref]
                return "event", self.closed(ref, held)
            if held.get("challenges"):
                return "event", self.proved(held, held["challenges"].pop(0))
            if held["metered"] < self.minute:
                held["metered"] = self.minute
                return self.metered(ref, held)
        return None

    def opened(self, ref, held, seq):
        raise NotImplementedError

    def metered(self, ref, held):
        raise NotImplementedError

    def closed(self, ref, held):
        raise NotImplementedError

    def proved(self, held, challenge):
        raise NotImplementedError


class ParkingGate(Behaviour):
    """Vehicles enter and leave; each stay is a session metered in minutes parked. Plates are
    never sent, only a keyed hash (BLAKE2b-128 keyed with the device's salt). A commanded stay
    is a paying car: the gate opens for it on the agent's start (the first valid voucher)."""
    kind, model = "parking-gate", "SimGate PG-100"
    services = ({"type": "parking.time", "unit": "minute"},)
    ARRIVE = 0.25           # a vehicle arrives in a simulated minute
    LEAVE_PER_CAR = 0.035   # each parked vehicle leaves in a simulated minute (stay ~30 min)

    def __init__(self, rng, salt):
        super().__init__(rng, salt)
        self.capacity = rng.randint(8, 24)
        self.active = {}          # session -> [plate_hash, entered minute, spot, last metered]
        self.sessions = 0         # sessions opened since start

    def hello(self):
        return dict(super().hello(), capacity=self.capacity)

    def restore(self, doc):
        super().restore(doc)
        self.active = {int(k): v for k, v in self.active.items()}   # JSON keys are strings

    def _plate(self):
        r = self.rng
        letters = "ABCDEFGHJKLMNPRSTVWXYZ"
        return (f"{r.choice(letters)}{r.choice(letters)}-{r.randint(100, 999)}-"
                f"{r.choice(letters)}{r.choice(letters)}")

    def _occupancy(self):
        return len(self.active) + sum(1 for h in self.held.values() if h["phase"] != "opening")

    def _spot(self):
        used = {v[2] for v in self.active.values()} | {h.get("spot") for h in self.held.values()}
        return min(s for s in range(1, self.capacity + len(self.held) + 2) if s not in used)

    def step(self, seq):
        occupancy, r = self._occupancy(), self.rng.random()
        leave = min(0.9, len(self.active) * self.LEAVE_PER_CAR)
        paying = next(((ref, h) for ref, h in self.held.items() if h["phase"] == "open"), None)
        if not self.active and paying is not None and occupancy >= self.capacity:
            return self.metered(*paying)     # full of paying cars: report one of them again
        if not self.active or (occupancy < self.capacity and r < self.ARRIVE):
            spot = self._spot()
            plate_hash = _keyed(self.salt, self._plate(), 16)
            self.active[seq] = [plate_hash, self.minute, spot, self.minute]
            self.sessions += 1
            return "event", {"event": "vehicle_entry", "session": seq, "plate_hash": plate_hash,
                             "spot": spot, "occupancy": self._occupancy(),
                             "sessions": self.sessions}
        if self.active and self.ARRIVE <= r < self.ARRIVE + leave:
            session = self.rng.choice(sorted(self.active))
            plate_hash, entered, spot, _ = self.active.pop(session)
            return "event", {"event": "vehicle_exit", "session": session, "plate_hash": plate_hash,
                             "spot": spot, "minutes": self.minute - entered,
                             "occupancy": self._occupancy(), "sessions": self.sessions}
        # Meter the session metered longest ago: cumulative minutes parked so far.
        session = min(self.active, key=lambda s: self.active[s][3])
        entry = self.active[session]
        entry[3] = self.minute
        return "meter", {"session": session, "plate_hash": entry[0],
                         "minutes": self.minute - entry[1], "occupancy": self._occupancy(),
                         "sessions": self.sessions}

    def opened(self, ref, held, seq):
        self.sessions += 1
        held.update(plate=_keyed(self.salt, ref, 16), spot=self._spot())
        return {"event": "vehicle_entry", "session": seq, "ref": ref, "plate_hash": held["plate"],
                "spot": held["spot"], "occupancy": self._occupancy(), "sessions": self.sessions}

    def metered(self, ref, held):
        return "meter", {"session": held["session"], "plate_hash": held["plate"],
                         "minutes": self.minute - held["since"], "occupancy": self._occupancy(),
                         "sessions": self.sessions}

    def closed(self, ref, held):
        return {"event": "vehicle_exit", "session": held["session"], "plate_hash": held["plate"],
                "spot": held["spot"], "minutes": self.minute - held["since"],
                "occupancy": self._occupancy(), "sessions": self.sessions}


class Purifier(Behaviour):
    """Switched on and off in sessions; meters running seconds while on and reports air quality
    (PM2.5 and PM10 in µg/m³), which falls while it runs and rises while it is off. A rented
    session (commanded) ends its own ambient one first and runs until the agent stops it."""
    kind, model = "purifier", "SimAir AP-20"
    services = ({"type": "purifier.runtime", "unit": "second"},)

    def __init__(self, rng, salt):
        super().__init__(rng, salt)
        self.session = None
        self.running_s = 0
        self.total_running_s = rng.randint(0, 2000) * 3600   # hours it ran before we met it
        self.fan = 1
        self.pm25 = rng.uniform(15.0, 40.0)

    def _running(self):
        return self.session is not None or any(h["phase"] == "open" for h in self.held.values())

    def step(self, seq):
        r = self.rng
        target = 4.0 + 3 * (3 - self.fan) if self._running() else 35.0
        self.pm25 = max(0.5, self.pm25 + (target - self.pm25) * 0.2 + r.gauss(0, 1.0))
        if self.session is not None:
            self.running_s += SIM_STEP_S
            self.total_running_s += SIM_STEP_S
        if self.held:
            return "data", self._air()
        if self.session is None:
            if r.random() < 0.35:
                self.session, self.running_s, self.fan = seq, 0, r.randint(1, 3)
                return "event", {"event": "power_on", "session": seq, "fan": self.fan}
            return "data", self._air()
        if r.random() < 0.05:
            return "event", self._power_off()
        if self.minute % 2:
            return "data", self._air()
        return "meter", {"session": self.session, "running_s": self.running_s,
                         "total_running_s": self.total_running_s, "fan": self.fan}

    def _power_off(self):
        session, self.session = self.session, None
        return {"event": "power_off", "session": session, "running_s": self.running_s,
                "total_running_s": self.total_running_s}

    def _air(self):
        return {"pm25": round(self.pm25, 1), "pm10": round(self.pm25 * 1.6, 1),
                "running": self._running()}

    def accepts(self, doc):
        return not any(h["phase"] != "closing" for h in self.held.values())   # one at a time

    def serve(self, seq):
        if self.session is not None and any(h["phase"] == "opening" for h in self.held.values()):
            return "event", self._power_off()
        return super().serve(seq)

    def opened(self, ref, held, seq):
        self.fan = 2
        return {"event": "power_on", "session": seq, "ref": ref, "fan": self.fan}

    def metered(self, ref, held):
        self.total_running_s += SIM_STEP_S
        return "meter", {"session": held["session"], "running_s": self._held_s(held),
                         "total_running_s": self.total_running_s, "fan": self.fan}

    def closed(self, ref, held):
        return {"event": "power_off", "session": held["session"], "running_s": self._held_s(held),
                "total_running_s": self.total_running_s}

    def _held_s(self, held):
        return (self.minute - held["since"]) * SIM_STEP_S


class Router(Behaviour):
    """Clients join and leave; each connection is a session metered in bytes forwarded. A
    commanded session is a paying guest device, admitted until the agent stops it."""
    kind, model = "router", "SimNet R-300"
    services = ({"type": "router.bandwidth", "unit": "byte"},)
    MAX_CLIENTS = 6

    def __init__(self, rng, salt):
        super().__init__(rng, salt)
        macs = [":".join(f"{rng.randrange(256):02x}" for _ in range(6)) for _ in range(8)]
        self.pool = [_keyed(salt, mac, 4) for mac in macs]   # client ids: keyed hash of a MAC
        self.active = {}          # client -> [session, session bytes, last metered]
        self.client_bytes = {}    # client -> bytes forwarded to it since start
        self.bytes_forwarded = 0

    def _clients(self):
        return len(self.active) + sum(1 for h in self.held.values() if h["phase"] != "opening")

    def _traffic(self, client):
        """A minute of traffic to ``client``: 64 kB (idle) to ~40 MB (streaming)."""
        amount = int(math.exp(self.rng.uniform(math.log(64_000), math.log(40_000_000))))
        self.client_bytes[client] = self.client_bytes.get(client, 0) + amount
        self.bytes_forwarded += amount
        return amount

    def step(self, seq):
        r = self.rng.random()
        idle = [c for c in self.pool if c not in self.active]
        if idle and (not self.active or (r < 0.15 and len(self.active) < self.MAX_CLIENTS)):
            client = self.rng.choice(idle)
            self.active[client] = [seq, 0, self.minute]
            return "event", {"event": "client_joined", "client": client, "session": seq,
                             "clients": self._clients()}
        if self.active and r < 0.22:
            client = self.rng.choice(sorted(self.active))
            session, nbytes, _ = self.active.pop(client)
            return "event", {"event": "client_left", "client": client, "session": session,
                             "bytes": nbytes, "clients": self._clients()}
        client = min(self.active, key=lambda c: self.active[c][2])
        entry = self.active[client]
        entry[1] += self._traffic(client)
        entry[2] = self.minute
        return "meter", {"session": entry[0], "client": client, "bytes": entry[1],
                         "client_bytes": self.client_bytes[client],
                         "bytes_forwarded": self.bytes_forwarded, "clients": self._clients()}

    def opened(self, ref, held, seq):
        held.update(client=_keyed(self.salt, ref, 4), bytes=0)
        return {"event": "client_joined", "client": held["client"], "session": seq, "ref": ref,
                "clients": self._clients()}

    def metered(self, ref, held):
        held["bytes"] += self._traffic(held["client"])
        return "meter", {"session": held["session"], "client": held["client"],
                         "bytes": held["bytes"], "client_bytes": self.client_bytes[held["client"]],
                         "bytes_forwarded": self.bytes_forwarded, "clients": self._clients()}

    def closed(self, ref, held):
        return {"event": "client_left", "client": held["client"], "session": held["session"],
                "bytes": held["bytes"], "clients": self._clients()}


class Weather(Behaviour):
    """A weather station selling its readings: temperature (°C) with a daily cycle, relative
    humidity (%), wind speed (m/s) and direction (degrees), pressure (hPa). Its readings are
    sold as they are (the agent forwards them): it takes no commands."""
    kind, model = "weather", "SimSky WS-5"
    services = ({"type": "weather.reading", "unit": "reading"},)

    def __init__(self, rng, salt):
        super().__init__(rng, salt)
        self.base_t = rng.uniform(4.0, 24.0)
        self.phase = rng.uniform(0, 1440)
        self.mean_wind = self.wind = rng.uniform(0.5, 6.0)
        self.wind_deg = rng.uniform(0, 360)
        self.mean_pressure = self.pressure = rng.uniform(995.0, 1030.0)
        self.readings = 0

    def accepts(self, doc):
        return False

    def step(self, seq):
        r = self.rng
        day = math.sin(2 * math.pi * (self.minute + self.phase) / 1440)
        t = self.base_t + 6 * day + r.gauss(0, 0.2)
        rh = min(100.0, max(5.0, 60 - 25 * day + r.gauss(0, 1.5)))
        self.wind = min(40.0, max(0.0, self.wind + (self.mean_wind - self.wind) * 0.1
                                  + r.gauss(0, 0.6)))
        self.wind_deg = (self.wind_deg + r.gauss(0, 10)) % 360
        self.pressure += (self.mean_pressure - self.pressure) * 0.01 + r.gauss(0, 0.1)
        self.readings += 1
        return "data", {"t_c": round(t, 1), "rh": round(rh, 1), "wind_ms": round(self.wind, 1),
                        "wind_deg": int(self.wind_deg), "p_hpa": round(self.pressure, 1),
                        "reading": self.readings}


class Storage(Behaviour):
    """Spare storage rented out: a stored object (the command's ``task``: each byte stands for
    one MB) is held and metered in MB·s each minute, and every challenge is answered with a
    proof that the data is still there: ``proof = H("ss/proof", challenge || data)``."""
    kind, model = "storage", "SimVault NAS-1"
    services = ({"type": "storage.space", "unit": "MB·s"},)
    proves = True

    def __init__(self, rng, salt):
        super().__init__(rng, salt)
        self.capacity_mb = rng.randint(100, 4000) * 1000
        self.objects = 0

    def hello(self):
        return dict(super().hello(), capacity_mb=self.capacity_mb)

    def _used(self):
        return sum(len(h["task"]) // 2 for h in self.held.values() if h["phase"] != "opening")

    def step(self, seq):
        return "data", {"used_mb": self._used(), "free_mb": self.capacity_mb - self._used(),
                        "objects": self.objects}

    def accepts(self, doc):
        task = doc.get("task")
        return isinstance(task, str) and bool(_HEX.match(task))

    def opened(self, ref, held, seq):
        self.objects += 1
        data = bytes.fromhex(held["task"])
        held.update(mb=len(data), held_s=0)
        return {"event": "object_stored", "session": seq, "ref": ref,
                "object": _fast.tagged_hash(TAG_OBJECT, data).hex(), "mb": held["mb"],
                "used_mb": self._used()}

    def metered(self, ref, held):
        held["held_s"] = (self.minute - held["since"]) * SIM_STEP_S
        return "meter", {"session": held["session"], "mb": held["mb"], "held_s": held["held_s"],
                         "mb_s": held["mb"] * held["held_s"]}

    def proved(self, held, challenge):
        data = bytes.fromhex(held["task"])
        return {"event": "proof", "session": held["session"], "challenge": challenge,
                "proof": _fast.tagged_hash(TAG_PROOF, bytes.fromhex(challenge) + data).hex()}

    def closed(self, ref, held):
        self.objects -= 1
        held_s = (self.minute - held["since"]) * SIM_STEP_S
        return {"event": "object_deleted", "session": held["session"], "mb_s": held["mb"] * held_s,
                "held_s": held_s, "used_mb": self._used()}


class Compute(Behaviour):
    """Computing jobs: a commanded session runs ``quantity`` jobs on the ``task`` input, one a
    minute, each confirmed with a result chained from the last:
    ``result_0 = input``, ``result_i = H("ss/job", result_(i-1) || input)``."""
    kind, model = "compute", "SimCore CX-2"
    services = ({"type": "compute.job", "unit": "job"},)

    def __init__(self, rng, salt):
        super().__init__(rng, salt)
        self.cores = rng.choice((2, 4, 8))
        self.jobs_total = 0

    def hello(self):
        return dict(super().hello(), cores=self.cores)

    def step(self, seq):
        busy = sum(1 for h in self.held.values() if h["phase"] == "open")
        load = min(100.0, busy * 100 / self.cores + self.rng.uniform(0, 5))
        return "data", {"load": round(load, 1), "jobs_total": self.jobs_total}

    def accepts(self, doc):
        task, quantity = doc.get("task"), doc.get("quantity")
        return isinstance(task, str) and bool(re.fullmatch(r"[0-9a-f]{64}", task)) and \
            type(quantity) is int and quantity >= 1

    def opened(self, ref, held, seq):
        held.update(done=0, result=held["task"])
        return {"event": "job_started", "session": seq, "ref": ref, "jobs": held["quantity"],
                "input": held["task"]}

    def metered(self, ref, held):
        task = bytes.fromhex(held["task"])
        held["result"] = _fast.tagged_hash(TAG_JOB, bytes.fromhex(held["result"]) + task).hex()
        held["done"] += 1
        self.jobs_total += 1
        if held["done"] >= held["quantity"]:
            held["phase"] = "closing"
        return "meter", {"session": held["session"], "jobs_done": held["done"],
                         "result": held["result"]}

    def closed(self, ref, held):
        return {"event": "job_finished", "session": held["session"], "jobs_done": held["done"],
                "result": held["result"]}


BEHAVIOURS = {cls.kind: cls for cls in (ParkingGate, Purifier, Router, Weather, Storage,
                                        Compute)}


def behaviour(kind, rng, salt):
    try:
        return BEHAVIOURS[kind](rng, salt)
    except KeyError:
        raise ValueError(f"unknown device kind {kind!r}: one of {', '.join(KINDS)}") from None
