"""A simulated A/B gateway whose bootloader is real: U-Boot (Debian's qemu_arm64 build) in QEMU's
virt board runs the image's own boot script (image-build/files/boot/boot.cmd) from the FAT boot
partition of a disk image, reading and writing the boot state file there, exactly as U-Boot
rpi_arm64 does on the Raspberry Pi. The root slots hold no kernel, so every boot ends after
U-Boot's choice (the script resets; QEMU exits): ``power_on`` returns the slot and the kernel
command line U-Boot built. "Linux" is then edge.update.slots.Slots on a Layout in a temp folder,
whose boot state file is the FAT file itself, copied out and back with mtools."""

import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

from edge.update.slots import Layout, Slots

REPO = Path(__file__).resolve().parent.parent
UBOOT = Path("/usr/lib/u-boot/qemu_arm64/u-boot.bin")
STATE_FILE = "smartshare-boot.env"
FAT_OFFSET = 1 << 20  # partition 1 starts at 1 MiB
TOOLS = ("qemu-system-aarch64", "mkimage", "mkfs.vfat", "mcopy", "sfdisk", "mkfs.ext4")
BOOT_TIMEOUT_S = 120


def missing_requirements():
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not UBOOT.exists():
        absent.append("u-boot-qemu")
    return f"missing {', '.join(absent)} (make test installs them)" if absent else None


class Gateway:
    """The disk, the U-Boot runs, and the Linux side's view (``slots``)."""

    def __init__(self, directory):
        self.dir = Path(directory)
        self.disk = self.dir / "disk.img"
        self.boots = []  # (slot or None, console output) of every power-on
        self.versions = {"A": "1.0", "B": "1.0"}  # what each slot's root holds
        self._make_disk()
        data = self.dir / "data"
        data.mkdir()
        self.layout = Layout(boot_state=str(self.dir / STATE_FILE),
                             records=str(data / "update"), cmdline=str(self.dir / "cmdline"),
                             boot_id=str(self.dir / "boot_id"),
                             version=str(self.dir / "version"))
        self.slots = Slots(self.layout)

    def _make_disk(self):
        run = lambda *cmd: subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        script = self.dir / "boot.scr"
        run("mkimage", "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none", "-n",
            "SmartShare Edge A/B boot", "-d", str(REPO / "image-build/files/boot/boot.cmd"),
            str(script))
        with open(self.disk, "wb") as f:
            f.truncate(64 << 20)
        layout = ("label: dos\nlabel-id: 0x5ae5ede0\n"
                  "start=2048, size=32768, type=c, bootable\n"
                  "size=16384, type=83\nsize=16384, type=83\ntype=83\n")
        subprocess.run(["sfdisk", "--quiet", str(self.disk)], input=layout.encode(),
                       check=True, capture_output=True)
        boot = self.dir / "boot.part"
        run("mkfs.vfat", "-n", "BOOT", "-C", str(boot), "16384")
        run("mcopy", "-i", str(boot), str(script), "::/boot.scr")
        slot = self.dir / "slot.part"
        run("mkfs.ext4", "-q", "-F", str(slot), "8M")
        for start, image in ((2048, boot), (34816, slot), (51200, slot)):
            run("dd", f"if={image}", f"of={self.disk}", "bs=512", f"seek={start}",
                "conv=notrunc,sparse", "status=none")

    # -- the bootloader --------------------------------------------------------------------------

    def power_on(self):
        """One boot: U-Boot picks a slot, spends a try and writes the state; returns the slot
        (None when no slot had a try left and the script reset)."""
        console = self._run_uboot()
        match = re.search(r"SmartShare: bootargs (.*rauc\.slot=([AB]).*)", console)
        slot = match.group(2) if match else None
        self.boots.append((slot, console))
        if slot is not None:
            (self.dir / "cmdline").write_text(match.group(1).strip() + "\n")
            (self.dir / "boot_id").write_text(f"boot-{len(self.boots)}\n")
            (self.dir / "version").write_text(self.versions[slot] + "\n")
        elif "no root slot has a try left" not in console:
            raise AssertionError(f"U-Boot did not run the boot script:\n{console[-3000:]}")
        return slot

    def _run_uboot(self):
        """QEMU until the script resets the board. The 2 s autoboot countdown is cut short the
        way a person would: a key at "Hit any key", then at the prompt the command the countdown
        would have run, bootcmd (distro boot: find boot.scr on the disk and run it)."""
        qemu = subprocess.Popen(
            ["qemu-system-aarch64", "-machine", "virt", "-cpu", "cortex-a53", "-m", "256",
             "-nographic", "-no-reboot", "-nic", "none", "-bios", str(UBOOT),
             "-drive", f"if=none,id=disk,format=raw,file={self.disk}",
             "-device", "virtio-blk-device,drive=disk"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = b""
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        replies = [(b"Hit any key to stop autoboot", b"\n"), (b"=> ", b"run bootcmd\n")]
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([qemu.stdout], [], [], 0.5)
                chunk = os.read(qemu.stdout.fileno(), 65536) if ready else b""
                if ready and not chunk:
                    return output.decode(errors="replace")  # QEMU exited (-no-reboot)
                output += chunk
                if replies and replies[0][0] in output:
                    qemu.stdin.write(replies.pop(0)[1])
                    qemu.stdin.flush()
            raise AssertionError(f"U-Boot still running after {BOOT_TIMEOUT_S}s:\n"
                                 f"{output.decode(errors='replace')[-3000:]}")
        finally:
            if qemu.poll() is None:
                qemu.kill()
            qemu.wait(10)

    # -- Linux's side of the boot state ---------------------------------------------------------

    def _fat(self, *args):
        subprocess.run(["mcopy", "-i", f"{self.disk}@@{FAT_OFFSET}", *args], check=True,
                       capture_output=True, timeout=60)

    def linux(self, action):
        """Run ``action(slots)`` as Linux would: the boot partition's state file in place."""
        state = Path(self.layout.boot_state)
        state.unlink(missing_ok=True)
        self._fat("-n", f"::/{STATE_FILE}", str(state))
        try:
            return action(self.slots)
        finally:
            self._fat("-o", str(state), f"::/{STATE_FILE}")

    def boot_and_check(self, ok, detail="node ready, API answering at height 7"):
        """Power on, then the health check of the slot that came up reports ``ok``."""
        slot = self.power_on()
        assert slot is not None, self.boots[-1][1][-2000:]
        outcome, text = self.linux(lambda slots: slots.after_health(ok, detail))
        return slot, outcome, text

    def install(self, version):
        """What `rauc install` does to the boot state through our backend (the target slot
        marked bad while it is written, then made primary), and the version record."""
        def rauc(slots):
            target = "B" if slots.booted() == "A" else "A"
            slots.backend("set-state", target, "bad")
            slots.backend("set-primary", target)
            slots.log.append("install", slot=target, version=version, bundle="test.raucb")
            self.versions[target] = version
            return target
        return self.linux(rauc)

    def state(self):
        return self.linux(lambda slots: slots.boot.read())
