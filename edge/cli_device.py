"""``smartshare device list|approve|revoke|simulate``: the gateway's devices."""

from edge.cli_base import CliError, client_for_home
from edge.mqtt.topics import parse_device_id


def add_parsers(sub, common):
    device = sub.add_parser("device", help="devices on the gateway's MQTT broker").add_subparsers(
        dest="device_command", required=True, metavar="DEVICE_COMMAND")
    p = device.add_parser("list", parents=[common], help="pending, approved and revoked devices")
    p.set_defaults(func=cmd_list)
    for name, func, text in (("approve", cmd_approve, "let a pending device in"),
                             ("revoke", cmd_revoke, "cut a device off at once")):
        p = device.add_parser(name, parents=[common], help=text)
        p.add_argument("device_id", help="16 hex characters, from `smartshare device list`")
        p.set_defaults(func=func)


def cmd_list(args):
    doc = client_for_home(args).get("/v1/devices")
    lines = [f"{len(doc['devices'])} device(s) on broker {doc['broker']}"]
    for d in sorted(doc["devices"], key=lambda d: (d["status"], d["id"])):
        lines.append(f"  {d['id']}  {d['status']:<8}  {d['kind'] or '-':<12}  {d['model'] or ''}")
    return doc, "\n".join(lines)


def _id(args):
    try:
        return parse_device_id(args.device_id).hex()
    except ValueError as exc:
        raise CliError(str(exc), "bad_device") from None


def cmd_approve(args):
    record = client_for_home(args).post(f"/v1/devices/{_id(args)}/approve", {})
    return record, f"approved {record['id']} ({record['kind'] or 'device'}); its credentials " \
                   "are on their way, sealed to its key"


def cmd_revoke(args):
    record = client_for_home(args).post(f"/v1/devices/{_id(args)}/revoke", {})
    return record, f"revoked {record['id']}: it is disconnected and its frames are refused"
