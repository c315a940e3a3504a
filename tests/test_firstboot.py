"""First boot (edge/firstboot.py) and the system config (/etc/smartshare/edge.toml) on temp
folders: the documented template renders to a valid config that documents every setting, each
step creates only what is missing and never overwrites a key, secret or config, the state folder
is handed over without following links, and the CLI finds the node from the system config. The
whole first boot as root on a real root tree (twice) is in tests/test_image_tree.py."""

import hashlib
import os
import pwd
import shutil
import subprocess
import sys

import pytest

from edge import config as config_mod
from edge import firstboot
from tests.nodeproc import cli_env


def digest_tree(root):
    """``{relative path: (mode, sha256)}`` of every file under ``root``."""
    found = {}
    for top, _, files in os.walk(root):
        for name in files:
            path = os.path.join(top, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = (os.stat(path).st_mode & 0o7777,
                                                      hashlib.sha256(f.read()).hexdigest())
    return found


@pytest.fixture
def system(tmp_path):
    """A config path and state folder laid out as on the image, in tmp_path."""
    return {"config": str(tmp_path / "etc" / "smartshare" / "edge.toml"),
            "home": str(tmp_path / "var" / "lib" / "smartshare")}


def test_template_renders_a_valid_config_that_documents_every_setting(system):
    text = firstboot.render_config(system["home"])
    assert "${" not in text
    for (section, key) in config_mod.FIELDS:
        if section == "testing":
            continue  # never on a gateway
        assert f"[{section}]" in text and (f"\n{key} = " in text or f"# {key} = " in text), \
            f"[{section}] {key} is not in the template"
    assert firstboot.write_config(system["config"], system["home"], None) == firstboot.CREATED
    config = config_mod.load_file(system["config"])
    assert config.home == system["home"] and config.file == system["config"]
    assert config.units == ["smartshare-node.service", "smartshare-mosquitto.service"]
    assert config.mqtt_enabled and not config.mqtt_run_broker and config.advertise
    assert len(config.mqtt_bridge_password) >= 24 and config.mqtt_provision_password
    assert os.stat(system["config"]).st_mode & 0o777 == 0o600
    other = firstboot.render_config(system["home"])
    assert other != text, "every gateway gets its own passwords"


def test_steps_twice_change_nothing_and_never_overwrite(system):
    firstboot.write_config(system["config"], system["home"], None)
    config = config_mod.load_file(system["config"])
    firstboot.hand_over(config.home, None)
    first = firstboot.home_steps(config)
    assert {outcome for _, outcome in first["steps"]} == {firstboot.CREATED}
    names = [step.split()[0] for step, _ in first["steps"]]
    assert names == ["node", "wallet", "owner", "genesis", "api", "broker"]
    before = digest_tree(system["home"])
    config_before = open(system["config"]).read()
    second = firstboot.home_steps(config)
    assert {outcome for _, outcome in second["steps"]} == {firstboot.KEPT}
    assert second["node_address"] == first["node_address"]
    assert firstboot.write_config(system["config"], system["home"], None) == firstboot.KEPT
    assert digest_tree(system["home"]) == before
    assert open(system["config"]).read() == config_before
    for key in ("node_key.json", "wallets/default.json", "wallets/owner.json", "api_token",
                "mqtt/passwd"):
        assert before[key][0] == 0o600, key
    assert os.stat(os.path.join(system["home"], "wallets")).st_mode & 0o777 == 0o700


def test_an_existing_key_wins(system):
    """A key file that is there is kept as it is, even when the rest is missing."""
    firstboot.write_config(system["config"], system["home"], None)
    config = config_mod.load_file(system["config"])
    os.makedirs(system["home"])
    from chain.keys import KeyPair
    mine = KeyPair.generate()
    mine.save(config.path(config.key_file))
    result = firstboot.home_steps(config)
    assert result["node_address"] == mine.address_text
    assert result["steps"][0][1] == firstboot.KEPT and result["steps"][2][1] == firstboot.CREATED
    leftovers = [n for n in os.listdir(system["home"]) if n.endswith(".new")]
    assert not leftovers


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_hand_over_changes_links_never_their_targets(system, tmp_path):
    """A link planted in the state folder must not make root chown what it points to."""
    nobody = pwd.getpwnam("nobody")
    os.makedirs(os.path.join(system["home"], "data"))
    target = tmp_path / "precious"
    target.write_text("root's")
    os.symlink(target, os.path.join(system["home"], "data", "link"))
    (tmp_path / "var" / "lib" / "smartshare" / "data" / "file").write_text("x")
    outcome = firstboot.hand_over(system["home"], nobody)
    assert outcome.startswith("4 entries handed to nobody")
    assert os.stat(target).st_uid == 0
    assert os.lstat(os.path.join(system["home"], "data", "link")).st_uid == nobody.pw_uid
    assert firstboot.hand_over(system["home"], nobody) == firstboot.KEPT


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="sethostname in a private UTS namespace needs root and unshare")
def test_hostname_from_the_node_id(tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n")
    name = firstboot.hostname_for("ssp1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqabcdefghij")
    assert name == "smartshare-abcdefghij"
    code = ("import socket, sys; from edge import firstboot; "
            "a = firstboot.set_hostname(sys.argv[1], sys.argv[2]); "
            "b = firstboot.set_hostname(sys.argv[1], sys.argv[2]); "
            "print(a, b, socket.gethostname())")
    result = subprocess.run(["unshare", "--uts", sys.executable, "-c", code, name, str(etc)],
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["set", "kept", name], result.stderr
    assert (etc / "hostname").read_text() == name + "\n"
    assert (etc / "hosts").read_text() == f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n"


def run_cli_env(env, *args):
    return subprocess.run([sys.executable, "-m", "edge.cli", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_finds_the_node_from_the_system_config(system, tmp_path):
    """With $SMARTSHARE_CONFIG (as the units set it) and no --home, every command uses the
    system config and its state folder; a devnet home names no unit for `logs`."""
    firstboot.write_config(system["config"], system["home"], None)
    config = config_mod.load_file(system["config"])
    firstboot.hand_over(config.home, None)
    steps = firstboot.home_steps(config)["steps"]
    wallet_address = steps[1][0].split()[-1]
    env = {**cli_env(), "SMARTSHARE_CONFIG": system["config"], "HOME": str(tmp_path)}
    wallet = run_cli_env(env, "wallet", "address")
    assert wallet.returncode == 0 and wallet.stdout.strip() == wallet_address, wallet.stderr
    status = run_cli_env(env, "status")
    assert status.returncode == 1, status.stdout
    assert "no node is answering at http://127.0.0.1:8645" in status.stderr, status.stderr
    again = run_cli_env(env, "init", "--devnet")
    assert again.returncode == 1 and "already holds a node" in again.stderr, again.stderr
    assert run_cli_env(env, "--home", tmp_path / "dev", "init", "--devnet").returncode == 0
    logs = run_cli_env(env, "--home", tmp_path / "dev", "logs")
    assert logs.returncode == 1 and "runs no systemd unit" in logs.stderr, logs.stderr
