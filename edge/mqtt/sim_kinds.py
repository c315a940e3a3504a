"""What the simulated devices report (docs/protocol.md §16.3): one behaviour class per device
kind. Each makes a ``hello`` payload and, per tick, one ``(frame kind, payload)``. The MQTT side,
keys and onboarding are in ``edge/mqtt/simulators.py``.

Simulated time: every tick stands for ``SIM_STEP_S`` (one minute) of the device's life, whatever
the real interval between frames, so minutes parked, running seconds and bytes move at a
realistic pace per frame. Frame timestamps are always the real clock. Counters are integers;
physical readings are floats rounded to one decimal. A session id is the ``seq`` of the frame
that opened the session, so it is unique per device across restarts.

``state()`` / ``restore(doc)`` carry a behaviour (open sessions, counters, readings) across a
restart of the simulator as JSON; the random generator is not part of it (the simulator seeds a
fresh one per run).
"""

import hashlib
import math
import random

SIM_STEP_S = 60
KINDS = ("parking-gate", "purifier", "router", "weather")
FIRMWARE = "sim-1.0"


def _keyed(salt, text, size):
    return hashlib.blake2b(text.encode(), key=salt, digest_size=size).hexdigest()


class Behaviour:
    kind = model = ""
    services = ()

    def __init__(self, rng: random.Random, salt: bytes):
        self.rng, self.salt = rng, salt
        self.minute = 0

    def hello(self):
        return {"kind": self.kind, "model": self.model, "firmware": FIRMWARE,
                "services": [dict(s) for s in self.services]}

    def tick(self, seq):
        """The frame kind and payload of the frame with sequence number ``seq``."""
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


class ParkingGate(Behaviour):
    """Vehicles enter and leave; each stay is a session metered in minutes parked. Plates are
    never sent, only a keyed hash (BLAKE2b-128 keyed with the device's salt)."""
    kind, model = "parking-gate", "SimGate PG-100"
    services = ({"type": "parking", "unit": "minute"},)
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

    def step(self, seq):
        occupancy, r = len(self.active), self.rng.random()
        leave = min(0.9, occupancy * self.LEAVE_PER_CAR)
        if occupancy < self.capacity and (occupancy == 0 or r < self.ARRIVE):
            used = {v[2] for v in self.active.values()}
            spot = min(s for s in range(1, self.capacity + 1) if s not in used)
            plate_hash = _keyed(self.salt, self._plate(), 16)
            self.active[seq] = [plate_hash, self.minute, spot, self.minute]
            self.sessions += 1
            return "event", {"event": "vehicle_entry", "session": seq, "plate_hash": plate_hash,
                             "spot": spot, "occupancy": len(self.active), "sessions": self.sessions}
        if occupancy and self.ARRIVE <= r < self.ARRIVE + leave:
            session = self.rng.choice(sorted(self.active))
            plate_hash, entered, spot, _ = self.active.pop(session)
            return "event", {"event": "vehicle_exit", "session": session, "plate_hash": plate_hash,
                             "spot": spot, "minutes": self.minute - entered,
                             "occupancy": len(self.active), "sessions": self.sessions}
        # Meter the session metered longest ago: cumulative minutes parked so far.
        session = min(self.active, key=lambda s: self.active[s][3])
        entry = self.active[session]
        entry[3] = self.minute
        return "meter", {"session": session, "plate_hash": entry[0],
                         "minutes": self.minute - entry[1], "occupancy": len(self.active),
                         "sessions": self.sessions}


class Purifier(Behaviour):
    """Switched on and off in sessions; meters running seconds while on and reports air quality
    (PM2.5 and PM10 in µg/m³), which falls while it runs and rises while it is off."""
    kind, model = "purifier", "SimAir AP-20"
    services = ({"type": "air_purification", "unit": "second"},)

    def __init__(self, rng, salt):
        super().__init__(rng, salt)
        self.session = None
        self.running_s = 0
        self.total_running_s = rng.randint(0, 2000) * 3600   # hours it ran before we met it
        self.fan = 1
        self.pm25 = rng.uniform(15.0, 40.0)

    def step(self, seq):
        r = self.rng
        target = 4.0 + 3 * (3 - self.fan) if self.session is not None else 35.0
        self.pm25 = max(0.5, self.pm25 + (target - self.pm25) * 0.2 + r.gauss(0, 1.0))
        if self.session is not None:
            self.running_s += SIM_STEP_S
            self.total_running_s += SIM_STEP_S
        if self.session is None:
            if r.random() < 0.35:
                self.session, self.running_s, self.fan = seq, 0, r.randint(1, 3)
                return "event", {"event": "power_on", "session": seq, "fan": self.fan}
            return "data", self._air()
        if r.random() < 0.05:
            session, self.session = self.session, None
            return "event", {"event": "power_off", "session": session,
                             "running_s": self.running_s, "total_running_s": self.total_running_s}
        if self.minute % 2:
            return "data", self._air()
        return "meter", {"session": self.session, "running_s": self.running_s,
                         "total_running_s": self.total_running_s, "fan": self.fan}

    def _air(self):
        return {"pm25": round(self.pm25, 1), "pm10": round(self.pm25 * 1.6, 1),
                "running": self.session is not None}


class Router(Behaviour):
    """Clients join and leave; each connection is a session metered in bytes forwarded."""
    kind, model = "router", "SimNet R-300"
    services = ({"type": "bandwidth", "unit": "byte"},)
    MAX_CLIENTS = 6

    def __init__(self, rng, salt):
        super().__init__(rng, salt)
        macs = [":".join(f"{rng.randrange(256):02x}" for _ in range(6)) for _ in range(8)]
        self.pool = [_keyed(salt, mac, 4) for mac in macs]   # client ids: keyed hash of a MAC
        self.active = {}          # client -> [session, session bytes, last metered]
        self.client_bytes = {}    # client -> bytes forwarded to it since start
        self.bytes_forwarded = 0

    def step(self, seq):
        r = self.rng.random()
        idle = [c for c in self.pool if c not in self.active]
        if idle and (not self.active or (r < 0.15 and len(self.active) < self.MAX_CLIENTS)):
            client = self.rng.choice(idle)
            self.active[client] = [seq, 0, self.minute]
            return "event", {"event": "client_joined", "client": client, "session": seq,
                             "clients": len(self.active)}
        if self.active and r < 0.22:
            client = self.rng.choice(sorted(self.active))
            session, nbytes, _ = self.active.pop(client)
            return "event", {"event": "client_left", "client": client, "session": session,
                             "bytes": nbytes, "clients": len(self.active)}
        client = min(self.active, key=lambda c: self.active[c][2])
        entry = self.active[client]
        # A minute of traffic: 64 kB (idle) to ~40 MB (streaming).
        amount = int(math.exp(self.rng.uniform(math.log(64_000), math.log(40_000_000))))
        entry[1] += amount
        entry[2] = self.minute
        self.client_bytes[client] = self.client_bytes.get(client, 0) + amount
        self.bytes_forwarded += amount
        return "meter", {"session": entry[0], "client": client, "bytes": entry[1],
                         "client_bytes": self.client_bytes[client],
                         "bytes_forwarded": self.bytes_forwarded, "clients": len(self.active)}


class Weather(Behaviour):
    """A weather station selling its readings: temperature (°C) with a daily cycle, relative
    humidity (%), wind speed (m/s) and direction (degrees), pressure (hPa)."""
    kind, model = "weather", "SimSky WS-5"
    services = ({"type": "weather_data", "unit": "reading"},)

    def __init__(self, rng, salt):
        super().__init__(rng, salt)
        self.base_t = rng.uniform(4.0, 24.0)
        self.phase = rng.uniform(0, 1440)
        self.mean_wind = self.wind = rng.uniform(0.5, 6.0)
        self.wind_deg = rng.uniform(0, 360)
        self.mean_pressure = self.pressure = rng.uniform(995.0, 1030.0)
        self.readings = 0

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


BEHAVIOURS = {cls.kind: cls for cls in (ParkingGate, Purifier, Router, Weather)}


def behaviour(kind, rng, salt):
    try:
        return BEHAVIOURS[kind](rng, salt)
    except KeyError:
        raise ValueError(f"unknown device kind {kind!r}: one of {', '.join(KINDS)}") from None
