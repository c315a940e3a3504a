"""Shared services (DESIGN §7): each service type has a unit, a price policy and the device that
provides it (docs/protocol.md §17.1).

A price is in SSP base units per *price unit*; usage is metered in the service's *metered unit*
(the quantity a device frame counts) and ``per`` metered units make one price unit:

    amount(units) = max(units, min_units * per) * price // per     (integers, rounded down)

so the amount owed only grows with usage and never depends on how often it was metered.
"""

import re
from typing import NamedTuple


class ServiceType(NamedTuple):
    """A kind of service: how a device of ``device_kind`` meters it.

    ``open_event``/``close_event`` start and end a device session; ``quantity`` is the per-session
    counter (docs/protocol.md §15.6) that measures usage; ``frames`` (instead) counts the
    device's frames of that kind after the start (a weather station sells its readings)."""
    name: str
    device_kind: str
    unit: str              # what a device counts
    price_unit: str        # what a price is for
    per: int               # metered units in one price unit
    quantity: str | None
    open_event: str | None
    close_event: str | None
    frames: str | None = None
    min_units: int = 0     # charged from the start (a parking gate's first minute)
    concurrent: int = 1    # sessions one device serves at once, by default
    default_price: int = 0
    description: str = ""


SERVICE_TYPES = {t.name: t for t in (
    ServiceType("parking.time", "parking-gate", "minute", "minute", 1, "minutes",
                "vehicle_entry", "vehicle_exit", min_units=1, concurrent=8,
                default_price=1_000_000, description="a parking spot, per minute parked"),
    ServiceType("purifier.runtime", "purifier", "second", "hour", 3600, "running_s",
                "power_on", "power_off", default_price=5_000_000,
                description="an air purifier, per running hour"),
    ServiceType("router.bandwidth", "router", "byte", "MB", 1_000_000, "bytes",
                "client_joined", "client_left", concurrent=6, default_price=100_000,
                description="guest Wi-Fi, per MB forwarded"),
    ServiceType("weather.reading", "weather", "reading", "reading", 1, None, None, None,
                frames="data", concurrent=64, default_price=10_000,
                description="a weather station's signed readings, per reading"),
    ServiceType("storage.space", "storage", "MB·s", "MB-day", 86_400, "mb_s",
                "object_stored", "object_deleted", concurrent=16, default_price=100_000,
                description="spare storage, per MB-day held, with proofs of holding the data"),
    ServiceType("compute.job", "compute", "job", "job", 1, "jobs_done", "job_started",
                "job_finished", concurrent=2, default_price=1_000_000,
                description="computing jobs, per job confirmed done"),
)}

_SERVICE_ID = re.compile(r"^[a-z]+\.[a-z]+@[0-9a-f]{16}$")
MAX_PRICE = 10**15


class PricePolicy(NamedTuple):
    """Base price, utilisation-based adjustment and bounds, in base units per price unit.

    price = clamp(base + base * adjust_permille * busy_permille // 10^6, floor, ceiling), where
    busy_permille = 1000 * sessions running / capacity: at full utilisation the price is base
    raised by ``adjust_permille`` ‰ (negative values lower it)."""
    base: int
    floor: int
    ceiling: int
    adjust_permille: int = 0

    def price(self, busy, capacity):
        busy_permille = 1000 * min(busy, capacity) // max(capacity, 1)
        raw = self.base + self.base * self.adjust_permille * busy_permille // 1_000_000
        return max(self.floor, min(self.ceiling, raw))

    def problems(self):
        """Sentences saying what is wrong (empty when the policy is sound)."""
        out = []
        for name in ("base", "floor", "ceiling"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= MAX_PRICE:
                out.append(f"{name} must be an integer 0..{MAX_PRICE}")
        if type(self.adjust_permille) is not int or not -1000 <= self.adjust_permille <= 10_000:
            out.append("adjust_permille must be an integer -1000..10000")
        if not out and not self.floor <= self.base <= self.ceiling:
            out.append("the base price must lie within floor..ceiling")
        return out

    @classmethod
    def around(cls, base, adjust_permille=500):
        """The default policy of a base price: floor base/2, ceiling 2 base, +50 % when full."""
        return cls(base, base // 2, base * 2, adjust_permille)


def amount_for(units, price, per, min_units=0):
    """The cumulative amount owed for ``units`` metered units (docs/protocol.md §17.1)."""
    return max(units, min_units * per) * price // per


def service_id(type_name, device_id):
    """The id of a device's offer of a service type: ``parking.time@<device hex>``."""
    return f"{type_name}@{device_id.hex() if isinstance(device_id, bytes) else device_id}"


def parse_service_id(text):
    """``(type name, device id)``; ValueError saying what is wrong."""
    if not isinstance(text, str) or not _SERVICE_ID.match(text):
        raise ValueError(f"service id {text!r} must look like parking.time@<16 hex>")
    name, device = text.split("@")
    if name not in SERVICE_TYPES:
        raise ValueError(f"unknown service type {name!r}: one of {', '.join(SERVICE_TYPES)}")
    return name, bytes.fromhex(device)


def service_type(name):
    try:
        return SERVICE_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown service type {name!r}: one of "
                         f"{', '.join(SERVICE_TYPES)}") from None


def types_for_kind(kind):
    """The service types a device kind provides."""
    return [t for t in SERVICE_TYPES.values() if t.device_kind == kind]


def new_offer(type_name, device_id, policy=None, capacity=None, max_units=None):
    """An offer record (``agent_services``): a device selling a service under a policy."""
    stype = service_type(type_name)
    policy = policy or PricePolicy.around(stype.default_price)
    problems = policy.problems()
    if problems:
        raise ValueError("; ".join(problems))
    capacity = stype.concurrent if capacity is None else capacity
    if type(capacity) is not int or not 1 <= capacity <= 100_000:
        raise ValueError("capacity must be an integer 1..100000")
    return {"id": service_id(type_name, device_id), "type": type_name,
            "device": device_id.hex(), "policy": policy._asdict(), "capacity": capacity,
            "max_units": max_units or (1 << 62), "enabled": True}


def offer_policy(offer):
    return PricePolicy(**offer["policy"])
