"""A/B update pieces without the bootloader (that is tests/test_bootloader.py): the boot state
file both U-Boot and Linux write, RAUC's bootloader-backend contract, the update records on the
data partition, the health check against a real node, and signed bundles (image-build/keys.sh,
mkbundle.sh, then RAUC's own verification: a bundle from another key or with a changed byte is
refused)."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge import config as config_mod
from edge.update import health
from edge.update.bootstate import BootState, BootStateError, BootStateFile
from edge.update.records import KEEP, UpdateLog
from edge.update.slots import Layout, NOT_AB, Slots, UpdateError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def slots(tmp_path):
    layout = Layout(boot_state=str(tmp_path / "smartshare-boot.env"),
                    records=str(tmp_path / "update"), cmdline=str(tmp_path / "cmdline"),
                    boot_id=str(tmp_path / "boot_id"), version=str(tmp_path / "version"))
    (tmp_path / "cmdline").write_text("console=ttyAMA0 root=PARTUUID=5ae5ede0-02 rauc.slot=A\n")
    return Slots(layout)


def test_boot_state_reads_what_u_boot_writes():
    written = "BOOT_A_LEFT=2\nBOOT_B_LEFT=3\nBOOT_ORDER=B A\n\0"  # env export -t, sorted
    state = BootState.parse(written)
    assert state == BootState(["B", "A"], {"A": 2, "B": 3}) and state.primary == "B"
    assert BootState.parse(state.format()) == state
    assert BootState.parse("BOOT_A_LEFT=a\n").left["A"] == 10, "hex, as RAUC writes it"
    for bad in ("BOOT_ORDER=A C\n", "BOOT_ORDER=A A\n", "bootcmd=reset\n", "BOOT_A_LEFT=x\n",
                "junk\n"):
        with pytest.raises(BootStateError):
            BootState.parse(bad)


def test_missing_state_is_what_the_script_assumes(tmp_path):
    state = BootStateFile(str(tmp_path / "none.env")).read()
    assert state == BootState(["A", "B"], {"A": 3, "B": 3})


def test_rauc_backend_contract(slots):
    """RAUC's custom backend: get-primary prints the bootname, get-state good/bad, set-state
    and set-primary with the U-Boot backend's semantics."""
    assert slots.backend("get-primary") == "A"
    assert slots.backend("set-state", "B", "bad") == ""
    assert slots.backend("get-state", "B") == "bad"
    assert slots.boot.read() == BootState(["A"], {"A": 3, "B": 0})
    slots.backend("set-state", "B", "good")
    assert slots.boot.read() == BootState(["A", "B"], {"A": 3, "B": 3}), "good: bootable again"
    slots.backend("set-state", "B", "bad")
    slots.backend("set-primary", "B")
    assert slots.boot.read() == BootState(["B", "A"], {"A": 3, "B": 3})
    assert slots.backend("get-primary") == "B" and slots.backend("get-state", "B") == "good"
    assert slots.log.last("primary", slot="B") is not None and slots.on_trial("B")
    for bad in (("set-state", "C", "good"), ("set-state", "A", "maybe"), ("get-state", None)):
        with pytest.raises(UpdateError):
            slots.backend(*bad)
    slots.boot.write(BootState(["A", "B"], {"A": 0, "B": 0}))
    with pytest.raises(UpdateError):
        slots.backend("get-primary")


def test_cli_backend_prints_for_rauc(tmp_path):
    """What RAUC runs (/usr/lib/smartshare/rauc-backend): output and exit status only."""
    smartshare = str(Path(sys.executable).parent / "smartshare")
    result = subprocess.run(["sh", str(REPO / "image-build/files/rauc/rauc-backend"),
                             "get-primary"], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "SMARTSHARE": smartshare})
    # On this machine there is no /boot/firmware state: the script's default, slot A.
    assert (result.returncode, result.stdout) == (0, "A\n"), result.stderr


def test_not_an_ab_boot(slots, tmp_path):
    (tmp_path / "cmdline").write_text("console=ttyS0 root=/dev/sda1\n")
    assert slots.booted() is None
    assert slots.after_health(True, "fine")[0] == NOT_AB


def test_records_survive_a_torn_line_and_stay_bounded(tmp_path):
    log = UpdateLog(str(tmp_path))
    log.append("health", slot="A", ok=True, detail="fine")
    with open(log.path, "a") as f:
        f.write('{"event": "health", "slot": "B", "ok": fal')  # power cut mid-write
    log.append("rollback", **{"from": "B", "to": "A", "reason": "r"})
    assert [r["event"] for r in log.read()] == ["health", "rollback"]
    for i in range(KEEP + 5):
        log.append("health", slot="A", ok=True, detail=str(i))
    records = log.read()
    assert len(records) == KEEP and records[-1]["detail"] == str(KEEP + 4)


@pytest.mark.slow
def test_health_check_against_a_real_node(node_factory):
    home = node_factory.home()
    node = node_factory.node(home)
    config = config_mod.load(home.path)
    ok, detail = health.check(config, deadline_s=health.seconds_since_boot() + 30)
    assert ok and detail.startswith("node ready, API answering at height"), detail
    node.stop()
    started = time.monotonic()
    ok, detail = health.check(config, deadline_s=health.seconds_since_boot() + 1.5, poll_s=0.2)
    assert not ok and "the API does not answer" in detail, detail
    assert time.monotonic() - started < 10, "the deadline is kept"


@pytest.mark.skipif(shutil.which("rauc") is None or shutil.which("mksquashfs") is None,
                    reason="rauc and squashfs-tools missing (make test installs them)")
def test_signed_bundles(tmp_path):
    keys, other = tmp_path / "keys", tmp_path / "other"
    for directory in (keys, other):
        subprocess.run([str(REPO / "image-build/keys.sh"), str(directory)], check=True,
                       capture_output=True, timeout=60)
    assert oct(keys.stat().st_mode & 0o777) == "0o700"
    assert (keys / "signer.key.pem").stat().st_mode & 0o777 == 0o600
    rootfs = tmp_path / "rootfs.ext4"
    subprocess.run(["mkfs.ext4", "-q", "-d", str(REPO / "systemd"), str(rootfs), "8M"],
                   check=True, capture_output=True)
    bundle = tmp_path / "update.raucb"
    subprocess.run([str(REPO / "image-build/mkbundle.sh"), str(rootfs), "2.0", str(keys),
                    str(bundle)], check=True, capture_output=True, timeout=120)

    def rauc(*args, keyring=keys):
        return subprocess.run(["rauc", f"--keyring={keyring / 'ca.cert.pem'}", *args],
                              capture_output=True, text=True, timeout=120)

    info = rauc("info", "--output-format=json", str(bundle))
    assert info.returncode == 0, info.stderr
    doc = json.loads(info.stdout)
    assert (doc["compatible"], doc["version"]) == ("smartshare-edge-rpi-arm64", "2.0")
    assert rauc("info", str(bundle), keyring=other).returncode != 0, "another key's bundle"
    extracted = rauc("extract", str(bundle), str(tmp_path / "ok"))
    assert extracted.returncode == 0, extracted.stderr
    assert (tmp_path / "ok/rootfs.ext4").read_bytes() == rootfs.read_bytes()
    tampered = tmp_path / "tampered.raucb"
    data = bytearray(bundle.read_bytes())
    data[4096] ^= 0xFF  # inside the payload, which the signature covers through its hash tree
    tampered.write_bytes(data)
    result = rauc("extract", str(tampered), str(tmp_path / "bad"))
    assert result.returncode != 0 and "corrupt" in result.stderr, result.stderr
