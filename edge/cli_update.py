"""``smartshare update status|install|health|backend``: A/B updates of the gateway's root
filesystem (edge/update/, image-build/README.md)."""

import subprocess
import sys

from edge.cli_base import CliError, load_config
from edge.update import health as health_mod
from edge.update.bootstate import BootStateError
from edge.update.slots import GOOD, NOT_AB, REBOOT, Slots, UpdateError, describe


def add_parsers(sub, common):
    update = sub.add_parser("update", help="A/B updates of the gateway (signed bundles)")
    group = update.add_subparsers(dest="update_command", required=True,
                                  metavar="UPDATE_COMMAND")
    p = group.add_parser("status", parents=[common],
                         help="which root slot runs, the next boot, the last rollback and why")
    p.set_defaults(func=cmd_status)
    p = group.add_parser("install", parents=[common],
                         help="install a signed bundle into the other slot (reboot to try it)")
    p.add_argument("bundle", help="a .raucb file signed for this gateway")
    p.set_defaults(func=cmd_install)
    p = group.add_parser("health", parents=[common],
                         help="after a boot: wait for the node, then mark this slot good "
                              "(run by smartshare-health.service)")
    p.add_argument("--deadline", type=float, default=health_mod.DEADLINE_S,
                   help="seconds after boot the node has to become healthy (default 300)")
    p.set_defaults(func=cmd_health)
    p = group.add_parser("backend", parents=[common],
                         help="RAUC's bootloader backend (called by RAUC, see "
                              "/etc/rauc/system.conf)")
    p.add_argument("backend_command",
                   choices=("get-primary", "set-primary", "get-state", "set-state"))
    p.add_argument("slot", nargs="?")
    p.add_argument("value", nargs="?")
    p.set_defaults(func=cmd_backend)


def _slots_call(call):
    try:
        return call()
    except (UpdateError, BootStateError) as exc:
        raise CliError(str(exc), "update") from None


def cmd_status(args):
    status = _slots_call(Slots().status)
    return status, describe(status)


def cmd_install(args):
    slot, version = _slots_call(lambda: Slots().install(args.bundle))
    return ({"slot": slot, "version": version},
            f"installed version {version} into slot {slot}; reboot to run it. It must pass the "
            f"health check within {health_mod.DEADLINE_S // 60} minutes of boot, or the gateway "
            "goes back to the slot it runs now (smartshare update status says why)")


def cmd_health(args):
    slots = Slots()
    if slots.booted() is None:
        return {"outcome": NOT_AB}, "not an A/B boot (no rauc.slot= on the kernel command line)"
    ok, detail = health_mod.check(load_config(args), deadline_s=args.deadline)
    outcome, text = _slots_call(lambda: slots.after_health(ok, detail))
    if outcome == REBOOT:
        print(text, flush=True)
        subprocess.run(["systemctl", "reboot"], check=False)
    elif outcome != GOOD:
        raise CliError(text, "unhealthy")
    return {"outcome": outcome, "detail": text}, text


def cmd_backend(args):
    output = _slots_call(lambda: Slots().backend(args.backend_command, args.slot, args.value))
    if output:
        sys.stdout.write(output + "\n")
    return None
