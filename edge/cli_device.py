"""``smartshare device list|approve|revoke|simulate``: the gateway's devices, and simulated
ones (``edge/mqtt/simulators.py``) that find it, onboard and publish signed frames."""

import argparse
import os
import signal
import sys
import threading

from chain.secretfile import SecretFileError, read_secret
from edge.cli_base import CliError, client_for_home, home_of, load_config, node_status
from edge.mqtt.sim_kinds import KINDS
from edge.mqtt.topics import parse_device_id


def add_parsers(sub, common):
    device = sub.add_parser("device", help="devices on the gateway's MQTT broker").add_subparsers(
        dest="device_command", required=True, metavar="DEVICE_COMMAND")
    p = device.add_parser("list", parents=[common], help="pending, approved and revoked devices")
    p.set_defaults(func=cmd_list)
    p = device.add_parser("approve", parents=[common],
                          help="let pending devices in (one broker reload for all)")
    p.add_argument("device_ids", nargs="*", metavar="device_id",
                   help="16 hex characters, from `smartshare device list`")
    p.add_argument("--pending", action="store_true", help="every device waiting for approval")
    p.set_defaults(func=cmd_approve)
    p = device.add_parser("revoke", parents=[common], help="cut a device off at once")
    p.add_argument("device_id", help="16 hex characters, from `smartshare device list`")
    p.set_defaults(func=cmd_revoke)
    _add_simulate(device, common)


def _add_simulate(device, common):
    p = device.add_parser("simulate", parents=[common], help="run simulated devices that find "
                          "the gateway, onboard and publish signed frames (Ctrl-C stops)")
    p.add_argument("kind", choices=KINDS + ("all",), help="device kind, or all of them")
    p.add_argument("--count", type=int, default=1, help="devices of each kind (default 1)")
    p.add_argument("--interval", type=float, default=1.0,
                   help="seconds between a device's frames (default 1)")
    p.add_argument("--frames", type=int, help="stop after this many frames per device "
                   "(the hello counts)")
    p.add_argument("--state-dir", help="the devices' keys, credentials and seq "
                   "(default: <home>/simulators)")
    p.add_argument("--broker", metavar="HOST:PORT",
                   help="connect to this broker instead of finding the gateway by mDNS")
    p.add_argument("--provision-password-file", metavar="FILE",
                   help="a file holding the onboarding password, with --broker (default: the "
                   "home's [mqtt] provision_password); never pass a password itself")
    p.add_argument("--ca-file", metavar="FILE", help="the gateway's CA certificate, with "
                   "--broker (default: the home's tls/ca.crt)")
    p.add_argument("--no-tls", action="store_true", help="connect without TLS (only a "
                   "broker's plaintext listener on loopback accepts it)")
    p.add_argument("--chain-id", help="only a gateway of this chain")
    p.add_argument("--approve", action="store_true",
                   help="approve the devices' join requests through the home's node")
    p.add_argument("--mdns-timeout", type=float, default=5.0,
                   help="seconds to look for the gateway by mDNS (default 5)")
    p.add_argument("--mdns-interface", action="append", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_simulate)


def cmd_list(args):
    doc = client_for_home(args).get("/v1/devices")
    lines = [f"{len(doc['devices'])} device(s) on broker {doc['broker']}"]
    for d in sorted(doc["devices"], key=lambda d: (d["status"], d["id"])):
        lines.append(f"  {d['id']}  {d['status']:<8}  {d['kind'] or '-':<12}  {d['model'] or ''}")
    return doc, "\n".join(lines)


def _id(text):
    try:
        return parse_device_id(text).hex()
    except ValueError as exc:
        raise CliError(str(exc), "bad_device") from None


def cmd_approve(args):
    if bool(args.device_ids) == args.pending:
        raise CliError("name the devices to approve, or give --pending for all that wait "
                       "(smartshare device list shows them)", "bad_device")
    client = client_for_home(args)
    if len(args.device_ids) == 1:
        record = client.post(f"/v1/devices/{_id(args.device_ids[0])}/approve", {})
        return record, f"approved {record['id']} ({record['kind'] or 'device'}); its " \
                       "credentials are on their way, sealed to its key"
    body = {"pending": True} if args.pending else {"ids": [_id(d) for d in args.device_ids]}
    doc = client.post("/v1/devices/approve", body)
    lines = [f"approved {len(doc['approved'])} device(s); their credentials are on their way, "
             "each sealed to its key"]
    lines += [f"  {r['id']}  {r['kind'] or '-'}" for r in doc["approved"]]
    return doc, "\n".join(lines)


def cmd_revoke(args):
    record = client_for_home(args).post(f"/v1/devices/{_id(args.device_id)}/revoke", {})
    return record, f"revoked {record['id']}: it is disconnected and its frames are refused"


def cmd_simulate(args):
    from edge.mqtt import sim_fleet, simulators  # paho and zeroconf only for this command
    if args.count < 1 or args.interval <= 0 or (args.frames is not None and args.frames < 1):
        raise CliError("--count and --frames must be at least 1, --interval above 0", "bad_usage")
    log = _printer(sys.stderr if args.json else sys.stdout)
    client, chain_id = _approving_node(args)
    try:
        gateway = _gateway(args, chain_id, simulators)
    except simulators.SimulatorError as exc:
        raise CliError(str(exc), "no_gateway") from None
    log(f"gateway {gateway}")
    kinds = KINDS if args.kind == "all" else (args.kind,)
    state_dir = args.state_dir or os.path.join(home_of(args), "simulators")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())   # like Ctrl-C: stop, then report
    try:
        results = sim_fleet.run_simulators(
            sim_fleet.device_plan(kinds, args.count), state_dir, gateway, stop=stop,
            interval=args.interval, frames=args.frames, log=log,
            approve=sim_fleet.api_approver(client, log) if client else None)
    except simulators.SimulatorError as exc:
        raise CliError(str(exc), "simulator") from None
    failed = [r for r in results if r["error"]]
    if failed:
        raise CliError(f"{failed[0]['name']}: {failed[0]['error']}", "simulator")
    lines = [f"{r['name']} {r['id']}: " + (f"{r['frames']} frame(s), seq {r['first_seq']}.."
                                           f"{r['last_seq']}" if r["frames"] else "no frames")
             + f", {len(r['errors'])} error reply(ies)" for r in results]
    public = {k: v for k, v in gateway._asdict().items() if k != "provision_password"}
    return {"gateway": public, "state_dir": state_dir, "devices": results}, "\n".join(lines)


def _approving_node(args):
    """``(API client, chain id)`` of the home's node with --approve, else ``(None, --chain-id)``.
    The chain id then also picks the gateway found by mDNS."""
    if not args.approve:
        return None, args.chain_id
    client, status = node_status(args)   # the home's node, checked to run the home's chain
    if args.chain_id and args.chain_id != status["chain_id"]:
        raise CliError(f"--chain-id {args.chain_id}, but the home's node runs "
                       f"{status['chain_id']}", "wrong_chain")
    return client, status["chain_id"]


def _printer(out):
    """A thread-safe ``log(line)`` printing to ``out``."""
    lock = threading.Lock()

    def log(line):
        with lock:
            print(line, file=out, flush=True)
    return log


def _gateway(args, chain_id, simulators):
    if not args.broker:
        return simulators.discover(chain_id, args.mdns_timeout, args.mdns_interface)
    host, _, port = args.broker.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"--broker must be HOST:PORT, not {args.broker!r}", "bad_usage")
    config = load_config(args) if not (args.provision_password_file and
                                       (args.ca_file or args.no_tls)) else None
    try:
        password = (read_secret(args.provision_password_file) if args.provision_password_file
                    else config.mqtt_provision_password)
    except SecretFileError as exc:
        raise CliError(str(exc), "bad_usage") from None
    if not password:
        raise CliError("the home's node has no [mqtt] provision_password; pass "
                       "--provision-password-file", "bad_usage")
    gateway = simulators.Gateway(host, int(port), password, chain_id, tls=not args.no_tls)
    if args.no_tls:
        return gateway
    ca_file = args.ca_file or os.path.join(config.home, "tls", "ca.crt")
    try:
        with open(ca_file) as f:
            return simulators.gateway_with_ca(gateway, f.read())
    except OSError as exc:
        raise CliError(f"cannot read the gateway's CA {ca_file} ({exc.strerror}); pass "
                       "--ca-file (the gateway's <home>/tls/ca.crt) or --no-tls", "bad_usage") \
            from None
