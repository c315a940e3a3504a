"""The gateway's two root slots: which one runs and why.

U-Boot picks the slot and counts its tries (bootstate.py); RAUC writes an update into the other
slot and makes it primary through ``backend`` (its custom bootloader backend). After each boot
the health check (health.py) reports to ``after_health``, which

- marks the running slot good (3 tries again) when the node is healthy;
- asks for a reboot when a slot fresh from an update fails (U-Boot spends its tries: after 3
  failed boots the other slot comes back) — a slot that already proved itself is not rebooted
  over a failed check, so a broken node never turns into a reboot loop;
- notices a rollback (the primary slot has no tries left and the other one runs), records why it
  happened from what the failed slot left in the records (records.py), and takes the failed
  slot out of the boot order.

``status`` says which slot runs, what the next boot will do, and the last rollback's reason.
"""

import json
import os
import subprocess
import time
from dataclasses import dataclass

from edge.update.bootstate import MAX_TRIES, SLOTS, BootStateError, BootStateFile
from edge.update.records import UpdateLog

REBOOT, GOOD, FAILED, NOT_AB = "reboot", "good", "failed", "not-ab"


class UpdateError(Exception):
    """An update operation failed; the message says what to do."""


@dataclass
class Layout:
    """Where an A/B gateway keeps things (tests lay out the same in a temp folder)."""
    boot_state: str = "/boot/firmware/smartshare-boot.env"
    records: str = "/data/update"
    cmdline: str = "/proc/cmdline"
    boot_id: str = "/proc/sys/kernel/random/boot_id"
    version: str = "/usr/lib/smartshare/version"


def _read(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


class Slots:
    """The root slots of the gateway laid out as ``layout`` says."""

    def __init__(self, layout=None):
        self.layout = layout or Layout()
        self.boot = BootStateFile(self.layout.boot_state)
        self.log = UpdateLog(self.layout.records)

    def booted(self):
        """The slot U-Boot booted (``rauc.slot=`` on the kernel command line), else None."""
        for word in _read(self.layout.cmdline).split():
            if word.startswith("rauc.slot=") and word[len("rauc.slot="):] in SLOTS:
                return word[len("rauc.slot="):]
        return None

    def version(self):
        return _read(self.layout.version, "unknown")

    # -- RAUC's custom bootloader backend ---------------------------------------------------------

    def backend(self, command, slot=None, value=None):
        """One call of RAUC's custom bootloader backend; returns what to print."""
        if command == "get-primary":
            primary = self.boot.read().primary
            if primary is None:
                raise UpdateError("no slot has a boot try left")
            return primary
        if slot not in SLOTS:
            raise UpdateError(f"{command} needs a slot: one of {', '.join(SLOTS)}")
        if command == "get-state":
            return "good" if self.boot.read().is_good(slot) else "bad"
        if command == "set-primary":
            self.boot.update(lambda state: state.set_primary(slot))
            self.log.append("primary", slot=slot)
            return ""
        if command == "set-state" and value in ("good", "bad"):
            self.boot.update(lambda state: state.set_state(slot, value == "good"))
            return ""
        raise UpdateError(f"unknown backend command {command} {slot or ''} {value or ''}")

    # -- after a boot ------------------------------------------------------------------------------

    def on_trial(self, slot):
        """True while ``slot`` was made primary (an update) and has not passed a check since."""
        primary = self.log.last("primary", slot=slot)
        if primary is None:
            return False
        return not any(r["event"] == "health" and r["slot"] == slot and r["ok"]
                       for r in self.log.since(primary))

    def after_health(self, ok, detail):
        """Record this boot's health check and act on it; returns ``(outcome, text)``."""
        booted = self.booted()
        if booted is None:
            return NOT_AB, "not an A/B boot (no rauc.slot= on the kernel command line)"
        state = self.boot.read()
        trial = self.on_trial(booted)
        self.log.append("health", slot=booted, ok=ok, detail=detail, version=self.version(),
                        boot=_read(self.layout.boot_id))
        rollback = self._rollback(state, booted)
        if ok:
            state.set_state(booted, True)
            self.boot.write(state)
            return GOOD, f"slot {booted} is good: {detail}" + (f"; {rollback}" if rollback else "")
        self.boot.write(state)
        if trial and not rollback:
            return REBOOT, (f"slot {booted} failed its health check ({detail}); rebooting: it "
                            f"has {state.left[booted]} tries left before slot "
                            f"{self._other(booted)} comes back")
        return FAILED, f"slot {booted} is not healthy: {detail}"

    def _other(self, slot):
        return next(other for other in SLOTS if other != slot)

    def _rollback(self, state, booted):
        """When U-Boot passed over the primary slot (no tries left), record why and take that
        slot out of the order; returns a line about it, or None."""
        failed = state.order[0] if state.order else None
        if failed is None or failed == booted or state.left.get(failed, 0) > 0:
            return None
        reason = self.rollback_reason(failed)
        self.log.append("rollback", **{"from": failed, "to": booted, "reason": reason})
        state.set_state(failed, False)
        return f"rolled back from slot {failed}: {reason}"

    def rollback_reason(self, failed):
        """Why ``failed`` lost its tries, from what its boots recorded since it became primary."""
        since = self.log.since(self.log.last("primary", slot=failed))
        installed = [r for r in since if r["event"] == "install" and r["slot"] == failed]
        checks = [r for r in since if r["event"] == "health" and r["slot"] == failed]
        failures = [r for r in checks if not r["ok"]]
        version = next((r.get("version") for r in reversed(checks + installed)
                        if r.get("version")), None)
        name = f"slot {failed}" + (f" (version {version})" if version else "")
        if failures:
            return (f"{name} failed its health check on {len(failures)} boot(s) of "
                    f"{MAX_TRIES} tries; last: {failures[-1]['detail']}")
        return (f"{name} used its {MAX_TRIES} tries without reaching the health check: it did "
                "not boot (kernel, root file system, or a hang before the node started); "
                "journalctl --list-boots shows its boots")

    # -- status and install ------------------------------------------------------------------------

    def status(self):
        """Which slot runs, what the next boot does, the pending update, the last rollback."""
        booted = self.booted()
        try:
            state = self.boot.read()
        except BootStateError as exc:
            raise UpdateError(str(exc)) from None
        health = self.log.last("health", slot=booted) if booted else None
        return {"booted": booted, "version": self.version(), "next_boot": state.primary,
                "order": state.order, "tries_left": state.left,
                "trial": booted is not None and self.on_trial(booted),
                "pending": state.primary if booted and state.primary != booted else None,
                "last_health": health, "last_rollback": self.log.last("rollback")}

    def install(self, bundle, run=subprocess.run):
        """``rauc install BUNDLE`` (RAUC checks the signature, writes the other slot and makes it
        primary through ``backend``); records the bundle's version. Returns the slot."""
        if not os.path.isfile(bundle):
            raise UpdateError(f"no bundle at {bundle}")
        info = run(["rauc", "info", "--output-format=json", bundle], capture_output=True,
                   text=True)
        if info.returncode != 0:
            raise UpdateError(f"rauc refused {bundle}: {info.stderr.strip()}")
        version = json.loads(info.stdout).get("version", "unknown")
        target = self._other(self.booted() or "B")
        result = run(["rauc", "install", bundle], capture_output=True, text=True)
        if result.returncode != 0:
            raise UpdateError(f"rauc install failed: {result.stderr.strip()}")
        self.log.append("install", slot=target, version=version, bundle=os.path.basename(bundle))
        return target, version


def describe(status):
    """``smartshare update status`` as text."""
    if status["booted"] is None:
        lines = ["running   not an A/B boot (no rauc.slot= on the kernel command line)"]
    else:
        health = status["last_health"]
        verdict = ("not checked yet" if health is None else
                   ("healthy" if health["ok"] else "NOT healthy") + f": {health['detail']}")
        lines = [f"running   slot {status['booted']}, version {status['version']}"
                 + (" (on trial: fresh from an update)" if status["trial"] else ""),
                 f"health    {verdict}"]
    left = " ".join(f"{slot}={n}" for slot, n in sorted(status["tries_left"].items()))
    lines.append(f"next boot slot {status['next_boot'] or '-'} (order "
                 f"{' '.join(status['order']) or '-'}; tries left {left})")
    if status["pending"]:
        lines.append(f"pending   slot {status['pending']} boots next: an installed update")
    rollback = status["last_rollback"]
    lines.append("rollback  none" if rollback is None else
                 f"rollback  {_when(rollback['at'])} from slot {rollback['from']} to slot "
                 f"{rollback['to']}: {rollback['reason']}")
    return "\n".join(lines)


def _when(at_ms):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at_ms / 1000))
