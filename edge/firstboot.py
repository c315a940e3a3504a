"""The gateway's first boot (``smartshare firstboot``, run by smartshare-firstboot.service on
every boot; DESIGN §9): the config from its documented template, the node's state folder handed
to the node's user, the node key, wallet and genesis, the broker's first files, and the hostname
from the node id. Every step creates only what is missing, so a second run changes nothing, and
no key, secret or config is ever overwritten. The steps inside the state folder run as the
node's user, so a file planted there can never make root write elsewhere.
"""

import json
import os
import pwd
import socket
import string
import subprocess
import sys
from importlib import resources

from edge import config as config_mod
from edge import node_home
from edge.api_tokens import TOKEN_FILE, ensure_cli_token

SERVICE_USER = "smartshare"
DEFAULT_HOME = "/var/lib/smartshare"
TEMPLATE = "edge.toml.template"
CREATED, KEPT = "created", "kept"


class FirstBootError(Exception):
    """A step failed; the message says which and why."""


def run(config_file=config_mod.SYSTEM_CONFIG, home=DEFAULT_HOME, etc="/etc",
        user=SERVICE_USER):
    """Every step, in order; returns ``[(step, outcome)]``."""
    owner = service_owner(user)
    steps = [("config " + config_file, write_config(config_file, home, owner))]
    config = config_mod.load_file(config_file)
    steps.append(("home " + config.home, hand_over(config.home, owner)))
    result = home_steps_as(owner, config_file)
    steps += [tuple(step) for step in result["steps"]]
    name = hostname_for(result["node_address"])
    steps.append(("hostname " + name, set_hostname(name, etc)))
    return steps


def service_owner(user):
    """The node user's passwd entry when we are root, else None (everything stays ours)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(user)
    except KeyError:
        raise FirstBootError(f"no user {user!r}: the image creates it "
                             "(image-build/install.sh, sysusers.d)") from None


# -- the config -----------------------------------------------------------------------------------

def render_config(home):
    """The documented template with ``home`` and fresh passwords filled in."""
    text = resources.files("edge").joinpath(TEMPLATE).read_text()
    values = {key.removeprefix("mqtt_"): value for key, value in node_home.new_secrets().items()}
    return string.Template(text).substitute(home=home, **values)


def write_config(path, home, owner):
    """Write ``path`` from the template unless it exists (mode 0600, the node user's)."""
    if os.path.lexists(path):
        return KEPT
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    aside = f"{path}.{os.getpid()}.new"
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(render_config(home))
        f.flush()
        os.fsync(f.fileno())
    if owner is not None:
        os.chown(aside, owner.pw_uid, owner.pw_gid)
    try:
        os.link(aside, path)
    finally:
        os.unlink(aside)
    return CREATED


# -- the state folder -----------------------------------------------------------------------------

def hand_over(home, owner):
    """Create the state folder (0700) and give everything in it to the node's user (after an
    update its uid may differ). Symbolic links are changed, never followed."""
    created = not os.path.isdir(home)
    os.makedirs(home, mode=0o700, exist_ok=True)
    if owner is None:
        return CREATED if created else KEPT
    changed = _own(home, owner)
    for top, dirs, files in os.walk(home):
        for name in dirs + files:
            changed += _own(os.path.join(top, name), owner)
    return CREATED if created else (f"{changed} entries handed to {owner.pw_name}"
                                    if changed else KEPT)


def _own(path, owner):
    st = os.lstat(path)
    if (st.st_uid, st.st_gid) == (owner.pw_uid, owner.pw_gid):
        return 0
    os.chown(path, owner.pw_uid, owner.pw_gid, follow_symlinks=False)
    return 1


def home_steps_as(owner, config_file):
    """``home_steps`` as the node's user (a child process) when we are root."""
    if owner is None:
        return home_steps(config_mod.load_file(config_file))
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
           "HOME": owner.pw_dir, "LANG": "C.UTF-8"}
    result = subprocess.run([sys.executable, "-m", "edge.firstboot", config_file],
                            user=owner.pw_uid, group=owner.pw_gid, extra_groups=[],
                            env=env, cwd="/", capture_output=True, text=True)
    if result.returncode != 0:
        raise FirstBootError(f"first boot steps as {owner.pw_name} failed: "
                             f"{(result.stderr or result.stdout).strip()}")
    return json.loads(result.stdout)


def home_steps(config):
    """Node (producer) key, owner and default wallets, genesis (a devnet when none is there),
    the CLI's API token and broker files: what ``smartshare init`` makes, by the same calls."""
    key, key_new = node_home.ensure_producer_key(config)
    owner, owner_new = node_home.ensure_wallet(config.home, node_home.OWNER_WALLET)
    wallet, wallet_new = node_home.ensure_wallet(config.home)
    genesis, genesis_new = node_home.ensure_devnet_genesis(config, key, owner, wallet)
    token_new = not os.path.lexists(config.path(TOKEN_FILE))
    ensure_cli_token(config.home)
    steps = [(f"node key {key.address_text}", CREATED if key_new else KEPT),
             (f"wallet {node_home.DEFAULT_WALLET} {wallet.address_text}",
              CREATED if wallet_new else KEPT),
             (f"owner {node_home.OWNER_WALLET} {owner.address_text}",
              CREATED if owner_new else KEPT),
             (f"genesis {genesis.chain_id}", CREATED if genesis_new else KEPT),
             ("api token " + config.path(TOKEN_FILE), CREATED if token_new else KEPT)]
    if config.mqtt_enabled:
        steps.append(("broker files " + config.path(config.mqtt_dir), broker_files(config)))
    return {"steps": steps, "node_address": key.address_text}


def broker_files(config):
    """Mosquitto's first config, ACL and passwords, so the broker can start before the node
    (which rewrites them at every start, with the approved devices)."""
    from edge.mqtt.service import broker_for   # makes the gateway's CA and certificate too
    broker = broker_for(config)
    if os.path.exists(broker.path("mosquitto.conf")):
        return KEPT
    broker.write_config({})
    return CREATED


# -- the hostname ---------------------------------------------------------------------------------

def hostname_for(address_text):
    """``smartshare-`` and the end of the node's address, as its mDNS name uses."""
    return f"smartshare-{address_text[-10:]}"


def set_hostname(name, etc="/etc"):
    """/etc/hostname, the 127.0.1.1 line of /etc/hosts and the kernel's hostname."""
    changed = _replace_text(os.path.join(etc, "hostname"), lambda _: name + "\n")
    changed |= _replace_text(os.path.join(etc, "hosts"), lambda text: _hosts_with(text, name))
    if socket.gethostname() != name:
        socket.sethostname(name)
        changed = True
    return "set" if changed else KEPT


def _hosts_with(text, name):
    lines = [line for line in text.splitlines() if not line.startswith("127.0.1.1")]
    return "\n".join(lines + [f"127.0.1.1\t{name}"]) + "\n"


def _replace_text(path, transform):
    """Rewrite ``path`` (whole, then renamed into place) when ``transform`` changes it."""
    try:
        with open(path) as f:
            old = f.read()
    except FileNotFoundError:
        old = ""
    new = transform(old)
    if new == old:
        return False
    aside = path + ".new"
    with open(aside, "w") as f:
        f.write(new)
    os.chmod(aside, 0o644)
    os.replace(aside, path)
    return True


if __name__ == "__main__":  # the steps of home_steps_as, run as the node's user
    print(json.dumps(home_steps(config_mod.load_file(sys.argv[1]))))
