"""The image's root tree, built the CI way: image-build/mkroot.sh --fast (Debian bookworm by
mmdebstrap for the host's architecture, then the same install.sh the arm64 image runs, with the
pure-Python build) into a temp folder, checked as files (units enabled, the node's user, modes,
no SSH host keys, the update keyring), in a chroot (``smartshare --help``, systemd-analyze
verify, the first boot twice), and booted under its own systemd with systemd-nspawn: first boot,
broker and node come up in their sandboxes, the node advertises over mDNS, a device is approved
(the node reloads the broker across the two sandboxes), ``smartshare status`` shows the units,
``smartshare logs`` the journal, and a hung node is killed by the watchdog and restarted.

The arm64 image itself is built by ``make image`` (image-build/build.sh), not here."""

import json
import re

import pytest

from tests import treekit

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(treekit.missing_requirements() is not None,
                                 reason=str(treekit.missing_requirements()))]

UNITS = ("smartshare-firstboot.service", "smartshare-mosquitto.service",
         "smartshare-node.service", "smartshare-health.service", "smartshare-ssh.service",
         "smartshare-grow-data.service")
BUILD = {}  # what the module fixture measured, for the report line


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("tree")
    keyring = treekit.make_keyring(base / "keys")
    root = base / "root"
    BUILD["seconds"] = treekit.build_tree(root, keyring, base / "mkroot.log")
    print(f"\nmkroot.sh --fast: {BUILD['seconds']:.0f} s")
    BUILD["keyring"] = keyring.read_text()
    return root


def lines_of(path):
    return path.read_text().splitlines()


def test_units_installed_and_enabled(tree):
    for unit in UNITS:
        path = tree / "usr/lib/systemd/system" / unit
        assert path.stat().st_mode & 0o777 == 0o644 and path.stat().st_uid == 0, unit
    wants = tree / "etc/systemd/system/multi-user.target.wants"
    for unit in UNITS:
        target = "local-fs" if unit == "smartshare-grow-data.service" else "multi-user"
        assert (tree / f"etc/systemd/system/{target}.target.wants" / unit).is_symlink(), \
            f"{unit} is not enabled"
    assert (tree / "etc/systemd/system/mosquitto.service").resolve() == tree / "dev/null" or \
        str((tree / "etc/systemd/system/mosquitto.service").readlink()) == "/dev/null"
    assert not (wants / "ssh.service").exists(), "SSH must be off by default"
    assert (wants / "systemd-networkd.service").is_symlink()


def test_the_nodes_user_and_file_modes(tree):
    passwd = [line for line in lines_of(tree / "etc/passwd") if line.startswith("smartshare:")]
    assert passwd == ["smartshare:x:850:850:SmartShare Edge node:/var/lib/smartshare:"
                      "/usr/sbin/nologin"]
    shadow = {line.split(":")[0]: line.split(":")[1] for line in lines_of(tree / "etc/shadow")}
    assert shadow["root"].startswith("!") or shadow["root"] in ("*", "!*"), "root login locked"
    state = (tree / "var/lib/smartshare").stat()
    assert (state.st_uid, state.st_mode & 0o777) == (850, 0o700)
    assert not list((tree / "etc/ssh").glob("ssh_host_*")), "no SSH host key in the image"
    assert (tree / "usr/lib/smartshare/ssh-switch").stat().st_mode & 0o777 == 0o755
    assert (tree / "etc/rauc/keyring.pem").read_text() == BUILD["keyring"]
    rauc = (tree / "etc/rauc/system.conf").read_text()
    assert "bootname=B" in rauc and "bootloader=custom" in rauc
    assert (tree / "usr/lib/smartshare/rauc-backend").stat().st_mode & 0o777 == 0o755
    assert (tree / "usr/lib/smartshare/version").read_text().startswith("0.")
    venv = tree / "opt/smartshare/venv"
    writable = [str(p) for p in venv.rglob("*") if not p.is_symlink() and
                (p.stat().st_mode & 0o002 or p.stat().st_uid != 0)]
    assert not writable, f"venv files others may change: {writable[:5]}"
    assert list(venv.glob("lib/python3*/site-packages/edge/edge.toml.template"))


def test_smartshare_runs_in_the_tree(tree):
    result = treekit.chroot(tree, "smartshare", "--help")
    assert result.returncode == 0 and "firstboot" in result.stdout, result.stderr
    status = treekit.chroot(tree, "smartshare", "status")
    assert status.returncode == 1 and "smartshare init" in status.stderr, status.stderr


def test_units_verify_in_the_tree(tree):
    units = [f"/usr/lib/systemd/system/{unit}" for unit in UNITS]
    result = treekit.chroot(tree, "systemd-analyze", "verify", "--man=no", *units)
    complaints = [line for line in (result.stdout + result.stderr).splitlines()
                  if "smartshare" in line]
    assert result.returncode == 0 and not complaints, result.stdout + result.stderr
    for unit, target in (("smartshare-node.service", 2.0), ("smartshare-mosquitto.service", 1.5)):
        security = treekit.chroot(tree, "systemd-analyze", "security", "--offline=yes",
                                  "--no-pager", f"/usr/lib/systemd/system/{unit}")
        score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)",
                                security.stdout).group(1))
        assert score <= target, security.stdout


def test_first_boot_twice_changes_nothing(tree):
    """As root in the tree: the first run creates config, keys, genesis, broker files and the
    hostname; the second (same hostname namespace) finds everything and changes nothing."""
    script = ("smartshare --json firstboot > /tmp/first.json && "
              "smartshare --json firstboot > /tmp/second.json")
    result = treekit.chroot(tree, "sh", "-c", script, uts=True)
    assert result.returncode == 0, result.stderr
    first = json.loads((tree / "tmp/first.json").read_text())["steps"]
    second = json.loads((tree / "tmp/second.json").read_text())["steps"]
    assert [s["outcome"] for s in second] == ["kept"] * len(second), second
    created = {s["step"].split()[0] for s in first if s["outcome"] != "kept"}
    assert {"config", "node", "wallet", "owner", "genesis", "api", "broker",
            "hostname"} <= created, first
    before = treekit.digest(tree, "/etc/smartshare", "/var/lib/smartshare")
    result = treekit.chroot(tree, "smartshare", "firstboot", uts=True)
    assert result.returncode == 0, result.stderr
    assert treekit.digest(tree, "/etc/smartshare", "/var/lib/smartshare") == before
    for path in ("etc/smartshare/edge.toml", "var/lib/smartshare/node_key.json",
                 "var/lib/smartshare/wallets/default.json", "var/lib/smartshare/api_token",
                 "var/lib/smartshare/mqtt/passwd"):
        uid, gid, mode, _ = before[path]
        assert (uid, gid, mode) == (850, 850, 0o600), path
    address = [s["step"] for s in first if s["step"].startswith("node key")][0].split()[-1]
    assert (tree / "etc/hostname").read_text() == f"smartshare-{address[-10:]}\n"


def test_boots_under_systemd(tree, tmp_path):
    """Booted as root slot A of an A/B gateway would be (U-Boot's rauc.slot=A on the kernel
    command line, a data folder for the update records): the health check marks slot A good."""
    treekit.fake_kernel_cmdline(tree, "console=ttyAMA0 root=PARTUUID=5ae5ede0-02 rw rauc.slot=A")
    (tree / "data/update").mkdir(parents=True, exist_ok=True)
    with treekit.BootedTree(tree, tmp_path / "nspawn.log") as box:
        box.wait_for("the node to be ready (READY=1)",
                     lambda: box.unit("smartshare-node.service").get("ActiveState") == "active")
        box.wait_for("the health check", lambda: box.unit(
            "smartshare-health.service", "ActiveState", "Result").get("Result") == "success"
            and box.unit("smartshare-health.service").get("ActiveState") == "active")
        state = (tree / "boot/firmware/smartshare-boot.env").read_text()
        assert state == "BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n", state
        update = box.run("smartshare", "update", "status")
        assert update.returncode == 0, update.stderr
        assert "running   slot A, version 0." in update.stdout, update.stdout
        assert "health    healthy: node ready, API answering" in update.stdout, update.stdout
        for unit in ("smartshare-firstboot.service", "smartshare-mosquitto.service"):
            assert box.unit(unit)["ActiveState"] == "active", unit
        status = box.wait_for("a block", lambda: (lambda r: r.returncode == 0 and
                              "height   0" not in r.stdout and r)(box.run("smartshare",
                                                                           "status")))
        assert "unit     smartshare-node.service        active (running)" in status.stdout
        assert re.search(r"smartshare-node.service .*: height \d+ \(LIB \d+\), 0 peer",
                         status.stdout), status.stdout
        box.wait_for("the mDNS announcement", lambda: "discovery: advertising" in
                     box.run("smartshare", "logs", "-n", "200").stdout)
        self_check(box)


def self_check(box):
    """A device approved through the sandboxed node (which reloads the sandboxed broker) sends
    frames over TLS (the gateway's CA, made at first boot); then a hung node is killed by the watchdog and comes back."""
    simulate = box.run("smartshare", "device", "simulate", "weather", "--approve", "--frames",
                       "3", "--broker", "127.0.0.1:8883", "--state-dir", "/tmp/sim",
                       timeout=120)
    assert simulate.returncode == 0 and "3 frame(s)" in simulate.stdout, \
        simulate.stdout + simulate.stderr
    box.run("sh", "-c", "mkdir -p /run/systemd/system/smartshare-node.service.d && printf "
            "'[Service]\\nWatchdogSec=3s\\n' > /run/systemd/system/smartshare-node.service.d/"
            "test.conf && systemctl daemon-reload && systemctl restart smartshare-node")
    node = box.unit("smartshare-node.service", "MainPID", "NRestarts")
    assert box.run("kill", "-STOP", node["MainPID"]).returncode == 0
    box.wait_for("the watchdog to restart the node", lambda: (lambda u: u.get("ActiveState") ==
                 "active" and u.get("NRestarts") != node["NRestarts"] and u)(
                 box.unit("smartshare-node.service", "ActiveState", "NRestarts")))
    journal = box.run("journalctl", "--no-pager", "-u", "smartshare-node").stdout
    assert "Watchdog timeout" in journal and "Failed with result 'watchdog'" in journal
