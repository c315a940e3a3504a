"""The boot state: which root slot U-Boot boots and how many tries each slot has left.

It is the text file ``smartshare-boot.env`` on the boot partition, read and written by U-Boot's
boot script (image-build/files/boot/boot.cmd, with ``env import -t`` / ``env export -t``) and by
Linux here, in the same format: ``BOOT_ORDER=A B``, ``BOOT_A_LEFT=3``, ``BOOT_B_LEFT=3``, one per
line. The operations are those of RAUC's bootloader backends (the U-Boot one's semantics):
``set_primary`` puts a slot first with 3 tries, ``set_state`` good gives it 3 tries again (and
a place at the end of the order if it had none) and bad takes it out of the order with none
left, ``primary`` is the first slot in the order that has a try left.
"""

import os
from dataclasses import dataclass, field

SLOTS = ("A", "B")
MAX_TRIES = 3
KEYS = ("BOOT_ORDER",) + tuple(f"BOOT_{slot}_LEFT" for slot in SLOTS)


class BootStateError(Exception):
    """The boot state file is unreadable or holds something the boot script would not accept."""


@dataclass
class BootState:
    """BOOT_ORDER and the tries left of each slot (what the boot script assumes when the file
    is missing: "A B", 3 and 3)."""
    order: list = field(default_factory=lambda: list(SLOTS))
    left: dict = field(default_factory=lambda: {slot: MAX_TRIES for slot in SLOTS})

    @classmethod
    def parse(cls, text):
        values = {}
        for line in text.replace("\0", "").splitlines():
            if line.strip():
                key, sep, value = line.partition("=")
                if not sep or key not in KEYS:
                    raise BootStateError(f"unexpected line {line!r} in the boot state")
                values[key] = value.strip()
        state = cls()
        if "BOOT_ORDER" in values:
            state.order = values["BOOT_ORDER"].split()
        for slot in SLOTS:
            raw = values.get(f"BOOT_{slot}_LEFT")
            if raw is not None:
                try:
                    state.left[slot] = int(raw, 16)  # U-Boot's numbers, and RAUC's, are hex
                except ValueError:
                    raise BootStateError(f"BOOT_{slot}_LEFT={raw!r} is not a number") from None
        if any(slot not in SLOTS for slot in state.order) or len(set(state.order)) != len(
                state.order):
            raise BootStateError(f"BOOT_ORDER={' '.join(state.order)!r} must name A and/or B once")
        return state

    def format(self):
        lines = [f"BOOT_ORDER={' '.join(self.order)}"]
        lines += [f"BOOT_{slot}_LEFT={self.left[slot]:x}" for slot in SLOTS]
        return "\n".join(lines) + "\n"

    @property
    def primary(self):
        """The slot the next boot starts (None: no slot has a try left; the script then gives
        both 3 again and boots the first in the order)."""
        return next((slot for slot in self.order if self.left.get(slot, 0) > 0), None)

    def is_good(self, slot):
        return slot in self.order and self.left[slot] > 0

    def set_primary(self, slot):
        self.order = [slot] + [other for other in self.order if other != slot]
        self.left[slot] = MAX_TRIES

    def set_state(self, slot, good):
        if good:
            self.left[slot] = MAX_TRIES
            if slot not in self.order:  # a good slot is one the bootloader may fall back to
                self.order.append(slot)
        else:
            self.order = [other for other in self.order if other != slot]
            self.left[slot] = 0


class BootStateFile:
    """The boot state in ``path`` (on the gateway: /boot/firmware/smartshare-boot.env)."""

    def __init__(self, path):
        self.path = path

    def read(self):
        try:
            with open(self.path, "rb") as f:
                text = f.read().decode("ascii")
        except FileNotFoundError:
            return BootState()
        except (OSError, UnicodeDecodeError) as exc:
            raise BootStateError(f"cannot read the boot state {self.path}: {exc}") from None
        return BootState.parse(text)

    def write(self, state):
        """Whole file aside, synced, then renamed over the old one."""
        aside = self.path + ".new"
        with open(aside, "w") as f:
            f.write(state.format())
            f.flush()
            os.fsync(f.fileno())
        os.replace(aside, self.path)
        fd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
        try:
            os.fsync(fd)
        except OSError:  # some file systems cannot sync a directory; the rename is issued
            pass
        finally:
            os.close(fd)

    def update(self, change):
        """Read, ``change(state)``, write; returns the new state."""
        state = self.read()
        change(state)
        self.write(state)
        return state
