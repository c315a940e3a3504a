"""``smartshare firstboot`` and ``smartshare logs``: the gateway under systemd (the SD image,
image-build/); ``smartshare status`` adds the units' health through ``unit_lines``."""

import os
import shutil

from edge import config as config_mod
from edge import units as units_mod
from edge.cli_base import CliError, load_config


def add_parsers(sub, common):
    p = sub.add_parser("firstboot", parents=[common],
                       help="prepare the gateway: config, keys, credentials, hostname "
                            "(idempotent; run at every boot by systemd)")
    p.set_defaults(func=cmd_firstboot)
    p = sub.add_parser("logs", parents=[common], help="the node's journal (journalctl)")
    p.add_argument("-n", "--lines", type=int, default=50, help="lines to show (default 50)")
    p.add_argument("-f", "--follow", action="store_true", help="keep showing new lines")
    p.add_argument("--since", help="e.g. '1 hour ago', 'today', '2026-05-01 12:00'")
    p.add_argument("--all", action="store_true",
                   help="also the first boot and the update health check")
    p.set_defaults(func=cmd_logs)


def cmd_firstboot(args):
    from edge import firstboot
    if args.home:
        raise CliError("firstboot prepares the gateway's system config "
                       f"({config_mod.SYSTEM_CONFIG}, or $SMARTSHARE_CONFIG), not a --home; "
                       "for a development node use: smartshare init --devnet", "bad_usage")
    path = os.environ.get("SMARTSHARE_CONFIG") or config_mod.SYSTEM_CONFIG
    try:
        steps = firstboot.run(path)
    except firstboot.FirstBootError as exc:
        raise CliError(str(exc), "firstboot") from None
    changed = [step for step, outcome in steps if outcome != firstboot.KEPT]
    text = "\n".join(f"{outcome:<8} {step}" for step, outcome in steps)
    text += f"\nfirst boot: {len(changed)} change(s)" if changed else "\nfirst boot: nothing to do"
    return {"steps": [{"step": s, "outcome": o} for s, o in steps]}, text


def cmd_logs(args):
    config = load_config(args)
    units = list(config.units) + (list(units_mod.SUPPORT_UNITS) if args.all else [])
    try:
        command = units_mod.journal_command(units, args.lines, args.follow, args.since,
                                            args.json)
    except units_mod.UnitsError as exc:
        raise CliError(str(exc), "no_units") from None
    if shutil.which(command[0]) is None:
        raise CliError("journalctl is missing: this system does not run systemd", "no_units")
    os.execvp(command[0], command)


def unit_health(config):
    """The health of the config's units when systemd runs them, else []."""
    try:
        return units_mod.health(config.units)
    except units_mod.UnitsError as exc:
        raise CliError(str(exc), "systemd") from None


def unit_lines(health):
    return [f"unit     {units_mod.describe(unit)}" for unit in health]
