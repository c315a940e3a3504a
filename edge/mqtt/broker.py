"""Mosquitto, configured by the node (DESIGN §6): no anonymous access, one credential per approved
device, an ACL that lets a device write only under its own topic subtree, raised queue limits,
persistence on. ``reload`` (SIGHUP) applies approvals and revocations without dropping anyone.

On the SD image Mosquitto runs under systemd with the files written here; in development and
tests ``Broker.start`` runs it as a child process on its own port.
"""

import ctypes
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from typing import NamedTuple

BRIDGE_USER = "smartshare-bridge"
PROVISION_USER = "provision"
HOME_ASSISTANT_USER = "homeassistant"
MARKET_USER = "market"        # buyers' agents (docs/protocol.md §17.2)
READY_TIMEOUT_S = 10
# A reload is confirmed by the line Mosquitto logs as it starts one; without it by then, SIGHUP
# is sent again (Mosquitto drops a SIGHUP that arrives while it is reloading).
RELOAD_LINE = b"Reloading config."
RELOAD_RESEND_S = 0.5
# Persistence, sized for an SD card: the broker writes its database every AUTOSAVE_S seconds (and
# when it stops, and when the node asks: after the bridge's first subscription and after an
# approval). What a crash loses in between, devices send again: they keep every frame until the
# node's receipt covers it (docs/protocol.md §15.4).
AUTOSAVE_S = 600
# Per client (the bridge's backlog while it is away; a device or Home Assistant that stops
# reading): beyond these the broker drops, the devices resend. MAX_INFLIGHT keeps two of the
# bridge's batches on the wire; MAX_INFLIGHT_BYTES keeps a client that stops reading from holding
# MAX_INFLIGHT messages of up to 64 KiB each (measured: a stalled reader costs the broker about
# 30 MiB with these limits, 120 MiB without this one; tests/test_mqtt_bridge.py).
MAX_QUEUED_MESSAGES = 50_000
MAX_QUEUED_BYTES = 16 << 20
MAX_INFLIGHT = 1000
MAX_INFLIGHT_BYTES = 1 << 20


class BrokerError(Exception):
    """Mosquitto is missing, would not start, or refused its configuration."""


def mosquitto_binary():
    path = shutil.which("mosquitto") or ("/usr/sbin/mosquitto"
                                          if os.path.exists("/usr/sbin/mosquitto") else None)
    if path is None:
        raise BrokerError("mosquitto is not installed: apt-get install mosquitto")
    return path


class TlsListener(NamedTuple):
    """Where devices and Home Assistant connect: TLS with the gateway's server certificate."""
    host: str
    port: int
    certfile: str
    keyfile: str


class Broker:
    """The files of one Mosquitto instance in ``directory``, and optionally its process: a
    plaintext listener on ``host:port`` (loopback only: the node's own clients; port 0 = none)
    and, with ``tls``, the TLS listener devices use."""

    def __init__(self, directory, host, port, bridge_password, provision_password,
                 run_as=None, home_assistant_password="", tls=None,
                 market_password=""):
        if port and not _loopback(host):
            raise BrokerError(f"a plaintext listener may only be on loopback, not {host}: "
                              "devices connect with TLS ([mqtt_tls] in config.toml)")
        if not port and tls is None:
            raise BrokerError("the broker needs a listener: [mqtt] port or [mqtt_tls] port")
        self.directory, self.host, self.port, self.tls = directory, host, port, tls
        # Mosquitto started as root drops to this user; by default the node's own, which owns
        # these files (on the image: "mosquitto", with the files group-readable).
        self.run_as = run_as or pwd.getpwuid(os.geteuid()).pw_name
        self.bridge_password, self.provision_password = bridge_password, provision_password
        self.home_assistant_password = home_assistant_password  # "" = no HA account
        self.market_password = market_password                  # "" = no market account
        self.process = None
        os.makedirs(directory, mode=0o700, exist_ok=True)

    def path(self, name):
        return os.path.join(self.directory, name)

    # -- configuration --------------------------------------------------------------------------

    def write_config(self, devices):
        """Write mosquitto.conf, the ACL and the password file for ``devices``
        (``{device id hex: password}`` of approved devices whose password is being set) and
        keep the other approved ones (``devices`` value None keeps the stored hash)."""
        self._replace("mosquitto.conf", self.config_text())
        self._replace("acl", ACL)
        self._write_passwords(devices)

    def _replace(self, name, text):
        """Write a file whole, then rename it into place: a reload never reads half a file."""
        fresh = self.path(name + ".new")
        with open(fresh, "w") as f:
            f.write(text)
        os.replace(fresh, self.path(name))

    def config_text(self):
        return f"""# Written by the SmartShare node; edits are overwritten.
user {self.run_as}
per_listener_settings false
allow_anonymous false
password_file {self.path("passwd")}
acl_file {self.path("acl")}
persistence true
persistence_location {self.directory}/
autosave_interval {AUTOSAVE_S}
autosave_on_changes false
persistent_client_expiration 30d
max_queued_messages {MAX_QUEUED_MESSAGES}
max_queued_bytes {MAX_QUEUED_BYTES}
max_inflight_messages {MAX_INFLIGHT}
max_inflight_bytes {MAX_INFLIGHT_BYTES}
max_packet_size 65536
pid_file {self.path("mosquitto.pid")}
log_dest file {self.path("mosquitto.log")}
log_dest topic
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
""" + self._listeners_text()

    def _listeners_text(self):
        text = f"listener {self.port} {self.host}\n" if self.port else ""
        if self.tls is not None:
            text += (f"listener {self.tls.port} {self.tls.host}\ncertfile {self.tls.certfile}\n"
                     f"keyfile {self.tls.keyfile}\ntls_version tlsv1.2\n")
        return text

    def _write_passwords(self, devices):
        """Rebuild the password file: the bridge, the provisioning account, each device. New
        passwords go to a 0600 file that ``mosquitto_passwd -U`` hashes in place: a password
        never appears on a command line (where the process list would show it)."""
        entries = {BRIDGE_USER: self.bridge_password, PROVISION_USER: self.provision_password}
        if self.home_assistant_password:
            entries[HOME_ASSISTANT_USER] = self.home_assistant_password
        if self.market_password:
            entries[MARKET_USER] = self.market_password
        entries.update((user, pw) for user, pw in sorted(devices.items()) if pw is not None)
        for user, password in entries.items():
            if not user or ":" in user or "\n" in user + password or not password:
                raise BrokerError(f"cannot store a password for user {user!r}")
        kept = self._stored_hashes()
        fresh = self.path("passwd.new")
        fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.writelines(f"{user}:{password}\n" for user, password in entries.items())
        result = subprocess.run(["mosquitto_passwd", "-U", fresh], capture_output=True,
                                text=True)
        if result.returncode != 0:
            os.unlink(fresh)
            raise BrokerError(f"mosquitto_passwd failed: {result.stderr.strip()}")
        with open(fresh, "a") as f:
            f.writelines(kept[user] for user, pw in sorted(devices.items())
                         if pw is None and user in kept)
        os.replace(fresh, self.path("passwd"))

    def _stored_hashes(self):
        try:
            with open(self.path("passwd")) as f:
                return {line.split(":", 1)[0]: line if line.endswith("\n") else line + "\n"
                        for line in f if ":" in line}
        except FileNotFoundError:
            return {}

    # -- the process ----------------------------------------------------------------------------

    def start(self):
        """Run Mosquitto on the configured port and wait until it accepts connections. It dies
        with this process (even on kill -9); one left by an earlier run is stopped first."""
        self._stop_stale()
        log = open(self.path("stdout.log"), "ab")
        self.process = subprocess.Popen([mosquitto_binary(), "-c", self.path("mosquitto.conf")],
                                        stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"mosquitto exited ({self.process.returncode}); see "
                                  f"{self.path('mosquitto.log')}")
            try:
                socket.create_connection(self.local_address, timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on {self.local_address} in time")

    @property
    def local_address(self):
        """``(host, port)`` where clients on this machine reach the broker: the plaintext
        listener, else the TLS one."""
        if self.port:
            return self.host, self.port
        host = self.tls.host
        return ("127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host,
                self.tls.port)

    def _stop_stale(self):
        """Stop a broker an earlier run of this node left behind (its pid file is ours)."""
        pid = self.running_pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            return
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.05)

    def running_pid(self):
        """The pid of a Mosquitto running on our config (from its pid file), else None."""
        try:
            with open(self.path("mosquitto.pid")) as f:
                pid = int(f.read().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                ours = self.path("mosquitto.conf").encode() in f.read()
        except (OSError, ValueError):
            return None
        return pid if ours else None

    def _pid(self):
        """The pid of our broker: the child we started, else one systemd runs on our config."""
        if self.process is not None and self.process.poll() is None:
            return self.process.pid
        return self.running_pid()

    def save(self):
        """Ask Mosquitto to write its database now (SIGUSR1): the bridge's session and its
        subscriptions, retained credentials. Ignored when no broker of ours runs."""
        pid = self._pid()
        if pid is not None:
            os.kill(pid, signal.SIGUSR1)

    def reload(self):
        """SIGHUP: re-read passwords, ACL and TLS files; connected clients stay connected. Works
        for the broker we started and for one systemd runs on our config (as the node's user).

        Returns once Mosquitto has begun a reload after the files were written: it logs
        ``Reloading config.`` before reading them, and it is single-threaded, so every
        connection it handles after that line sees the new files. A SIGHUP that arrives while
        Mosquitto is already reloading is dropped (it clears its flag when done), so one that
        brings no new line in RELOAD_RESEND_S is sent again."""
        pid = self._pid()
        if pid is None:
            raise BrokerError(f"no Mosquitto runs on {self.path('mosquitto.conf')}; start it "
                              "(systemctl start smartshare-mosquitto) or set [mqtt] run_broker")
        log = self.path("mosquitto.log")
        offset = _size(log)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                os.kill(pid, signal.SIGHUP)
            except ProcessLookupError:
                raise BrokerError(f"mosquitto (pid {pid}) exited; see {log}") from None
            resend = min(time.monotonic() + RELOAD_RESEND_S, deadline)
            while time.monotonic() < resend:
                if _logged_since(log, offset, RELOAD_LINE):
                    return
                time.sleep(0.01)
        raise BrokerError(f"mosquitto (pid {pid}) did not reload in {READY_TIMEOUT_S} s; "
                          f"see {log}")

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def _size(path):
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _logged_since(path, offset, line):
    """Whether ``line`` was written to the log ``path`` beyond ``offset`` (all of it when the
    file was cut shorter since: rotated)."""
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size >= offset:
                f.seek(offset)
            return line in f.read()
    except FileNotFoundError:
        return False


def _loopback(host):
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _die_with_parent():
    """In the child: ask Linux to SIGTERM it when the node's process dies."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


PR_SET_PDEATHSIG = 1

# The bridge reads and writes the whole tree (and the broker's notices: who connected from
# where); the provisioning account may only announce the device its client id names and read
# sealed credentials; Home Assistant reads its discovery configs and states and says
# when it comes online; a device (user name = its id) writes only its own frames and reads
# only its own replies (and the agent's commands); a buyer's agent (user market) reads the
# quotes, writes its messages and reads its replies only under its own client id.
ACL = """# Written by the SmartShare node; edits are overwritten.
user smartshare-bridge
topic readwrite ss/v1/#
topic readwrite homeassistant/#
topic read $SYS/broker/log/#

user provision
topic read ss/v1/provision/+/credentials
topic read ss/v1/ca

user homeassistant
topic read homeassistant/#
topic write homeassistant/status
topic read ss/v1/ha/#

pattern write ss/v1/dev/%u/hello
pattern write ss/v1/dev/%u/meter
pattern write ss/v1/dev/%u/event
pattern write ss/v1/dev/%u/data
pattern read ss/v1/dev/%u/reply/#
pattern read ss/v1/ca
pattern write ss/v1/provision/%c

user market
topic read ss/v1/market/+/quote

pattern write ss/v1/market/buyer/%c/order
pattern write ss/v1/market/buyer/%c/channel
pattern write ss/v1/market/buyer/%c/voucher
pattern write ss/v1/market/buyer/%c/stop
pattern read ss/v1/market/buyer/%c/reply/#
pattern write ss/v1/market/data/%c/fetch
pattern read ss/v1/market/data/%c/state
pattern read ss/v1/market/data/%c/payload/+
"""
