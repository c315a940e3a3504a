"""Root trees for the image tests: build one with image-build/mkroot.sh --fast (the host's
architecture, the pure-Python build, the real install.sh), run commands in it with chroot, and
boot it under its own systemd with systemd-nspawn in a private network namespace (a veth pair,
so mDNS has real interfaces), reaching into it with nsenter. Everything is torn down after."""

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT_S = 900
BOOT_TIMEOUT_S = 120
TOOLS = ("mmdebstrap", "systemd-nspawn", "nsenter", "unshare", "ip", "openssl", "chroot")


def missing_requirements():
    """Why the tree tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "building and booting a root tree needs root"
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if absent:
        return f"missing {', '.join(absent)} (make test installs them with apt-get)"
    return None


def make_keyring(directory):
    """A throwaway update-signing CA (image-build/keys.sh, as make image uses it)."""
    subprocess.run([str(REPO / "image-build" / "keys.sh"), str(directory)], check=True,
                   capture_output=True, timeout=60)
    return Path(directory) / "ca.cert.pem"


def build_tree(directory, keyring, log):
    """``mkroot.sh --fast``; returns the seconds it took."""
    started = time.monotonic()
    with open(log, "wb") as out:
        result = subprocess.run([str(REPO / "image-build" / "mkroot.sh"), "--fast", "--keyring",
                                 str(keyring), str(directory)], stdout=out,
                                stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S)
    if result.returncode != 0:
        raise AssertionError(f"mkroot.sh failed ({result.returncode}):\n{tail(log)}")
    return time.monotonic() - started


def tail(path, lines=40):
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def chroot(tree, *command, uts=False, timeout=120):
    """Run ``command`` inside ``tree`` (with ``uts``: in a private UTS namespace, so a
    hostname set in there stays there)."""
    prefix = ["unshare", "--uts"] if uts else []
    return subprocess.run([*prefix, "chroot", str(tree), *command], capture_output=True,
                          text=True, timeout=timeout,
                          env={"PATH": "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                               "LANG": "C.UTF-8", "HOME": "/root"})


def digest(tree, *roots):
    """``{path: (uid, gid, mode, sha256)}`` of every file under ``roots`` of ``tree``."""
    found = {}
    for root in roots:
        for top, _, files in os.walk(Path(tree) / root.lstrip("/")):
            for name in files:
                path = os.path.join(top, name)
                st = os.lstat(path)
                with open(path, "rb") as f:
                    found[os.path.relpath(path, tree)] = (
                        st.st_uid, st.st_gid, st.st_mode & 0o7777,
                        hashlib.sha256(f.read()).hexdigest())
    return found


def fake_kernel_cmdline(tree, cmdline):
    """A container shares the host's kernel command line: a unit that starts before everything
    else binds ``cmdline`` over /proc/cmdline, as U-Boot would have passed it. The health
    check's ProtectKernelTunables and ProtectControlGroups give it a fresh /proc without that
    bind, so a drop-in turns those two off for this test boot."""
    (Path(tree) / "etc/test-cmdline").write_text(cmdline + "\n")
    unit = Path(tree) / "etc/systemd/system/test-cmdline.service"
    unit.write_text("[Unit]\nDefaultDependencies=no\nBefore=sysinit.target\n"
                    "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
                    "ExecStart=/bin/mount --bind /etc/test-cmdline /proc/cmdline\n")
    dropin = Path(tree) / "etc/systemd/system/smartshare-health.service.d"
    dropin.mkdir(exist_ok=True)
    (dropin / "test-cmdline.conf").write_text(
        "[Service]\nProtectKernelTunables=no\nProtectControlGroups=no\n")
    wants = Path(tree) / "etc/systemd/system/sysinit.target.wants"
    wants.mkdir(exist_ok=True)
    (wants / unit.name).unlink(missing_ok=True)
    (wants / unit.name).symlink_to(f"/etc/systemd/system/{unit.name}")


def _comm(pid):
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


class BootedTree:
    """``tree`` booted by systemd-nspawn (its own systemd as PID 1) in network namespace
    ``netns`` with a veth pair 10.15.X.1/.2; ``run`` executes inside it."""

    def __init__(self, tree, log):
        self.tree, self.log = Path(tree), Path(log)
        self.netns = f"smartshare-test-{os.getpid()}"
        self.process = None
        self.leader = None

    def __enter__(self):
        try:
            self._make_netns()
            with open(self.log, "wb") as out:
                self.process = subprocess.Popen(
                    ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--boot",
                     "--console=pipe", "--directory", str(self.tree),
                     f"--network-namespace-path=/run/netns/{self.netns}"],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
            self.leader = self._wait_leader()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _make_netns(self):
        ip = ["ip", "-n", self.netns]
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        subprocess.run([*ip, "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                       check=True)
        for dev, address in (("v0", "10.15.0.1/24"), ("v1", "10.15.0.2/24")):
            subprocess.run([*ip, "addr", "add", address, "dev", dev], check=True)
            subprocess.run([*ip, "link", "set", dev, "up"], check=True)
        subprocess.run([*ip, "link", "set", "lo", "up"], check=True)

    def _wait_leader(self):
        """The container's PID 1 once it runs systemd: a child of systemd-nspawn. Its first
        child is the short-lived "outer child" that sets up the container and hands PID 1 over
        (nspawn reaps it as a subreaper), so a child is the leader only once it runs systemd."""
        deadline = time.monotonic() + 30
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"systemd-nspawn exited:\n{tail(self.log)}")
            pids = children.read_text().split() if children.exists() else []
            for pid in pids:
                if _comm(pid) == "systemd":
                    return int(pid)
            time.sleep(0.05)
        raise AssertionError(f"systemd-nspawn started no container:\n{tail(self.log)}")

    def run(self, *command, timeout=60):
        return subprocess.run(["nsenter", "--target", str(self.leader), "--all", *command],
                              capture_output=True, text=True, timeout=timeout,
                              env={"PATH": "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                   "LANG": "C.UTF-8", "HOME": "/root"})

    def unit(self, name, *properties):
        result = self.run("systemctl", "show", name,
                          "--property=" + ",".join(properties or ("ActiveState",)))
        return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)

    def wait_for(self, what, check, timeout=BOOT_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the container stopped while waiting for {what}:\n"
                                     f"{tail(self.log)}")
            value = check()
            if value:
                return value
            time.sleep(0.2)
        journal = self.run("journalctl", "--no-pager", "-n", "60")
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; journal:\n"
                             f"{journal.stdout}{journal.stderr}\nconsole:\n{tail(self.log)}")

    def __exit__(self, *exc):
        try:
            if self.process is not None and self.process.poll() is None:
                if self.leader is not None:
                    self.run("systemctl", "poweroff", "--no-block")
                try:
                    self.process.wait(30)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(30)
        finally:
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
