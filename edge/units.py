"""The node's systemd units as the CLI shows them: their health (``systemctl show``) for
``smartshare status``, and their journal for ``smartshare logs``. Only on a system that runs
systemd and a config that names units (``[system] units``, the image's edge.toml)."""

import os
import shutil
import subprocess

PROPERTIES = ("Id", "LoadState", "ActiveState", "SubState", "Result", "NRestarts", "StatusText",
              "ActiveEnterTimestamp", "ExecMainStatus")
# Units the image adds beside the node's own ([system] units), shown by `smartshare logs --all`.
SUPPORT_UNITS = ("smartshare-firstboot.service", "smartshare-health.service")


class UnitsError(Exception):
    """systemd is not there to ask; the message says what to do instead."""


def systemd_running():
    """True when systemd is the service manager (sd_booted(3))."""
    return os.path.isdir("/run/systemd/system")


def health(units):
    """``[{property: value}]`` of ``units`` from ``systemctl show``."""
    if not units or not systemd_running() or shutil.which("systemctl") is None:
        return []
    result = subprocess.run(["systemctl", "show", "--property=" + ",".join(PROPERTIES),
                             "--", *units], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise UnitsError(f"systemctl show failed: {result.stderr.strip()}")
    found = []
    for block in result.stdout.strip().split("\n\n"):
        found.append(dict(line.split("=", 1) for line in block.splitlines() if "=" in line))
    return found


def describe(unit):
    """One line: ``smartshare-node.service  active (running) since ..., 0 restarts: height 9``."""
    if unit.get("LoadState") != "loaded":
        return f"{unit.get('Id', '?'):<30} {unit.get('LoadState', 'unknown')}"
    text = f"{unit['Id']:<30} {unit['ActiveState']} ({unit['SubState']})"
    if unit.get("ActiveState") == "active" and unit.get("ActiveEnterTimestamp"):
        text += f" since {unit['ActiveEnterTimestamp']}"
    if unit.get("Result", "success") != "success":
        text += f", last result {unit['Result']} (exit status {unit.get('ExecMainStatus')})"
    restarts = unit.get("NRestarts", "0")
    if restarts not in ("", "0"):
        text += f", {restarts} restart(s)"
    if unit.get("StatusText"):
        text += f": {unit['StatusText']}"
    return text


def healthy(unit):
    return unit.get("LoadState") == "loaded" and unit.get("ActiveState") == "active"


def journal_command(units, lines=50, follow=False, since=None, json_output=False):
    """The ``journalctl`` command line showing ``units``."""
    if not units:
        raise UnitsError("this node runs no systemd unit ([system] units is empty in its "
                         "config): a node started by hand logs to the terminal that runs it")
    command = ["journalctl", "--no-pager", "--lines", str(lines)]
    command += [arg for unit in units for arg in ("--unit", unit)]
    if follow:
        command.append("--follow")
    if since:
        command += ["--since", since]
    if json_output:
        command += ["--output", "json"]
    return command
