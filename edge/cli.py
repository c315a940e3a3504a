"""The ``smartshare`` command line: set up a node, run it, and talk to it through its API.

Every command takes ``--json`` and ``--home``. Errors are one line on stderr and exit status 1;
usage errors exit 2. Nothing prints a traceback or a secret.
"""

import argparse
import json
import os
import sys
import time

from chain import genesis as genesis_mod
from chain.address import AddressError
from chain.genesis import GenesisError
from chain.keys import KeyFileError
from edge import config as config_mod
from edge.api_tokens import ensure_cli_token
from edge.client import ApiError
from edge.cli_base import CliError, load_config, node_status
from edge.config import DEFAULT_MQTT_TLS_PORT, Config, ConfigError
from edge.mqtt.sim_kinds import KINDS
from edge import (cli_cert, cli_contract, cli_data, cli_device, cli_market, cli_stake,
                  cli_system, cli_testnet, cli_token, cli_update, cli_wallet)
from edge import node_home


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    # --home/--json may come before or after the subcommand; both spellings share one action.
    args.home = getattr(args, "home", None)
    args.json = getattr(args, "json", False)
    try:
        result = args.func(args)
    except (CliError, ApiError) as exc:
        return _fail(args, str(exc), exc.code)
    except (ConfigError, KeyFileError, GenesisError, AddressError, ValueError, OSError) as exc:
        return _fail(args, str(exc), type(exc).__name__)
    except KeyboardInterrupt:
        return 130
    if result is not None:
        try:
            emit(args, *result)
        except BrokenPipeError:  # e.g. piped into `head`
            sys.stderr.close()
    return 0


def _fail(args, message, code):
    if getattr(args, "json", False):
        print(json.dumps({"error": message, "code": code}), file=sys.stderr)
    else:
        print(f"error: {message}", file=sys.stderr)
    return 1


def emit(args, data, text):
    """Print ``data`` as JSON with --json, else the human ``text``."""
    print(json.dumps(data, indent=2) if args.json else text)


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", default=argparse.SUPPRESS,
                        help="node folder (default: $SMARTSHARE_HOME, else ~/.smartshare, else "
                             "the gateway's /etc/smartshare/edge.toml)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print machine-readable JSON")
    parser = argparse.ArgumentParser(prog="smartshare", parents=[common],
                                     description="SmartShare Edge node and wallet")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", parents=[common], help="create a node home folder")
    kind = p.add_mutually_exclusive_group(required=True)
    kind.add_argument("--devnet", action="store_true",
                      help="a single-node development network (this node produces)")
    kind.add_argument("--genesis", metavar="FILE",
                      help="join the network of this genesis file (with --seed or mDNS)")
    p.add_argument("--role", choices=("agent", "light"), default="agent",
                   help="agent: keeps the full state and produces once elected; light: keeps "
                        "headers only and checks everything with proofs (default agent)")
    p.add_argument("--seed", action="append", default=[], metavar="HOST:PORT",
                   help="a peer to dial (repeat it); without one, peers come from mDNS")
    p.add_argument("--checkpoint", default="",
                   help="light: where to start: HEIGHT:HASH of an irreversible block you "
                        "trust, 'genesis', or nothing to learn it from several peers")
    p.add_argument("--p2p-port", type=int, default=None,
                   help="agent: the p2p port to listen on (default: a free one)")
    p.add_argument("--chain-id", help="chain id (default: ss-devnet-<random>)")
    p.add_argument("--api-port", type=int, default=config_mod.DEFAULT_API_PORT)
    p.add_argument("--mqtt-port", type=int, default=0,
                   help="run a Mosquitto broker for devices: its plaintext listener, on "
                        "127.0.0.1 only, for the node's own clients (default: no devices)")
    p.add_argument("--mqtt-tls-port", type=int, default=None,
                   help="the broker's TLS listener, where devices and Home Assistant connect "
                        "(default 8883 with --mqtt-port; 0: none)")
    p.set_defaults(func=cmd_init)

    node = sub.add_parser("node", help="run the node").add_subparsers(dest="node_command",
                                                                      required=True)
    p = node.add_parser("run", parents=[common], help="run the node in the foreground")
    p.add_argument("--simulate", choices=KINDS + ("all",),
                   help="also run simulated devices of this kind (or all of them) on the node's "
                        "own broker, approved automatically (needs [mqtt] port)")
    p.add_argument("--simulate-interval", type=float, default=2.0,
                   help="seconds between a simulated device's frames (default 2)")
    p.add_argument("--demo", action="store_true",
                   help="also run a demo buyer of every service and print a live view of the "
                        "market (make run; needs --simulate and [mqtt] port)")
    p.set_defaults(func=cmd_node_run)

    p = node.add_parser("promote", parents=[common],
                        help="make this (stopped) light node an agent node: the state at its "
                             "last irreversible block from a peer, checked against its root")
    p.set_defaults(func=cmd_node_promote)

    p = sub.add_parser("status", parents=[common], help="show the running node's head")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("sync", parents=[common], help="follow the node until it has caught up "
                                                      "with its peers (progress bar)")
    p.add_argument("--timeout", type=float, default=600, help="give up after this many seconds")
    p.set_defaults(func=cmd_sync)

    wallet = cli_wallet.add_parsers(sub, common)
    cli_stake.add_parsers(sub, wallet, common)
    cli_testnet.add_parsers(sub, common)
    cli_contract.add_parsers(sub, common)
    cli_device.add_parsers(sub, common)
    cli_token.add_parsers(sub, common)
    cli_cert.add_parsers(sub, common)
    cli_system.add_parsers(sub, common)
    cli_update.add_parsers(sub, common)
    cli_market.add_parsers(sub, common)
    cli_data.add_parsers(sub, common)
    return parser


# A devnet's agent settles fast enough to watch: statements every 5 s, installments every
# minute, a two-minute dispute window (the defaults suit a real network: 10 s, a day, an hour).
DEVNET_AGENT = {"agent_interval_s": 5, "agent_settlement_s": 60, "agent_dispute_s": 120}


def cmd_init(args):
    if args.genesis:
        return cmd_join(args)
    if args.role != "agent":
        raise CliError("a devnet is one producing node; a light node joins a network: "
                       "smartshare init --role light --genesis FILE --seed HOST:PORT", "bad_usage")
    path = config_mod.config_path(args.home)
    if os.path.exists(path):
        raise CliError(f"{os.path.dirname(path)} already holds a node ({path}); use another "
                       "--home, or delete the folder to start over", "exists")
    home = os.path.dirname(path)
    tls_port = args.mqtt_tls_port if args.mqtt_tls_port is not None else \
        (DEFAULT_MQTT_TLS_PORT if args.mqtt_port else 0)
    config = Config(home=home, api_port=args.api_port, mqtt_port=args.mqtt_port,
                    mqtt_tls_port=tls_port, **node_home.new_secrets(), **DEVNET_AGENT)
    if os.path.exists(config.path(config.key_file)):
        raise CliError(f"{home} holds keys from an interrupted init; delete the folder and run "
                       "init again", "partial")
    chain_id = args.chain_id or node_home.new_devnet_chain_id()
    if not genesis_mod.CHAIN_ID_RE.match(chain_id):
        raise CliError("chain id must be 1-32 characters of a-z, 0-9 and '-'", "bad_chain_id")
    if not 0 < args.api_port < 65536 or not 0 <= args.mqtt_port < 65536 or \
            not 0 <= tls_port < 65536:
        raise CliError("--api-port must be 1..65535, --mqtt-port and --mqtt-tls-port 0..65535",
                       "bad_port")
    os.makedirs(home, exist_ok=True)
    node_key, _ = node_home.ensure_producer_key(config)
    owner, _ = node_home.ensure_wallet(home, node_home.OWNER_WALLET)
    wallet, _ = node_home.ensure_wallet(home)
    genesis, _ = node_home.ensure_devnet_genesis(config, node_key, owner, wallet, chain_id)
    ensure_cli_token(home)
    if tls_port:
        from edge.mqtt import certs   # cryptography only when there are devices
        certs.ensure(home)
    config.save()
    data = {"home": home, "chain_id": chain_id, "genesis_hash": genesis.hash.hex(),
            "node_address": node_key.address_text, "agent_address": owner.address_text,
            "wallet": cli_wallet.DEFAULT_WALLET, "wallet_address": wallet.address_text,
            "api": config.api_url}
    text = (f"Initialised devnet {chain_id} in {home}\n"
            f"  node (producer)  {node_key.address_text}\n"
            f"  agent (owner)    {owner.address_text} (wallet 'owner': stake and rewards; on a "
            "real network keep this key off the gateway)\n"
            f"  wallet 'default' {wallet.address_text} (holds the devnet's SSP)\n"
            f"  API              {config.api_url}\n"
            f"Run it with: smartshare --home {home} node run")
    return data, text


def cmd_join(args):
    """``init --genesis FILE``: a home that joins an existing network as an agent or light
    node."""
    from edge.node_join import init_member
    return init_member(args)


def cmd_node_run(args):
    config = load_config(args)
    if config.role == "light":  # a fresh, small process (edge/light_main.py), same pid
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-m", "edge.light_main", config.file])
    from edge.node import NodeError, run_node  # heavy imports only for the node itself
    simulators = _start_simulators(config, args) if args.simulate else None
    demo = _start_demo(config) if args.demo and simulators is not None else None
    try:
        run_node(config)
    except NodeError as exc:
        raise CliError(str(exc), "node") from None
    finally:
        if demo is not None:
            demo.stop()
        if simulators is not None:
            simulators.stop()
    return None


def cmd_node_promote(args):
    from edge.light_promote import Promotion
    from edge.runtime import NodeError
    config = load_config(args)
    progress = Progress(sys.stderr if not args.json else None)
    try:
        done = Promotion(config, log=lambda line: None,
                         progress=lambda n, label: progress.show(0, 1, label)).run()
    except NodeError as exc:
        progress.done()
        raise CliError(str(exc), "promote") from None
    progress.done()
    text = (f"promoted to an agent node at block {done['height']} "
            f"({done['entries']} state entries checked against {done['state_root'][:16]})\n"
            f"Run it with: smartshare --home {config.home} node run; it produces once its "
            "key is an elected agent (smartshare agent register ...)")
    return done, text


def _start_demo(config):
    """``node run --demo``: a demo buyer and the market's live view (edge/demo.py)."""
    from edge.demo import DemoMarket
    from edge.node import print_line
    demo = DemoMarket(config, log=print_line)
    demo.start()
    return demo


def _start_simulators(config, args):
    """``node run --simulate``: simulated devices in a background thread of this process."""
    if args.simulate_interval <= 0:
        raise CliError("--simulate-interval must be above 0", "bad_usage")
    if not config.mqtt_enabled:
        print(f"simulators: off: {config.home} runs no MQTT broker; set [mqtt] port in "
              "config.toml (smartshare init --devnet --mqtt-port PORT does it)", flush=True)
        return None
    from edge.mqtt.sim_fleet import NodeSimulators
    from edge.node import print_line
    kinds = KINDS if args.simulate == "all" else (args.simulate,)
    simulators = NodeSimulators(config, kinds, args.simulate_interval,
                                log=print_line)
    simulators.start()
    return simulators


def cmd_status(args):
    """The node's head, and under systemd the health of its units (shown even when the node
    does not answer)."""
    health = cli_system.unit_health(load_config(args))
    try:
        _, s = node_status(args)
    except ApiError as exc:
        if not health:
            raise
        lines = "\n".join(cli_system.unit_lines(health))
        raise ApiError(f"{exc}\n{lines}\n(see: smartshare logs)", exc.code) from None
    if s.get("role") == "light":
        text = _light_status_text(s)
    else:
        text = (f"chain    {s['chain_id']}\n"
                f"height   {s['height']}  (slot {s['slot']})\n"
                f"head     {s['head_hash']}\n"
                f"state    {s['state_root']}\n"
                f"mempool  {s['mempool']} pending\n"
                f"node     {s['node_address']} ({s['role']}, {s['implementation']} build)")
    if health:
        text += "\n" + "\n".join(cli_system.unit_lines(health))
        s = {**s, "units": health}
    return s, text


def _light_status_text(s):
    if s.get("head_hash") is None:
        return (f"chain    {s['chain_id']}\n"
                f"light    looking for a checkpoint ({s['peers']} peer(s))\n"
                f"node     {s['node_address']} (light, {s['implementation']} build)")
    return (f"chain    {s['chain_id']}\n"
            f"height   {s['height']}  (slot {s['slot']}, {s['lag']} behind the best peer)\n"
            f"head     {s['head_hash']}\n"
            f"lib      {s['lib_height']}  {s['lib_hash']}\n"
            f"peers    {s['peers']}\n"
            f"sent     {s['mempool']} transaction(s) not yet irreversible\n"
            f"node     {s['node_address']} (light, {s['implementation']} build)")


def cmd_sync(args):
    client, status = node_status(args)
    start = status["height"]
    deadline = time.monotonic() + args.timeout
    progress = Progress(sys.stderr if not args.json else None)
    while True:
        status = client.get("/v1/status")
        peers = client.get("/v1/peers")["peers"]
        target = max([status["height"]] + [p["head_height"] for p in peers])
        progress.show(status["height"] - start, max(target - start, 1),
                      f"height {status['height']}/{target}  peers {len(peers)}")
        if peers and status["height"] >= target:
            break
        if time.monotonic() > deadline:
            progress.done()
            raise CliError(f"still behind after {args.timeout:.0f}s: height {status['height']} "
                           f"of {target} ({len(peers)} peers)", "timeout")
        time.sleep(0.5)
    progress.done()
    data = {"height": status["height"], "lib_height": status["lib_height"],
            "lag": max(0, target - status["height"]), "peers": len(peers),
            "role": status.get("role", "agent"), "synced_blocks": status["height"] - start}
    return data, (f"in sync at height {status['height']} (LIB {status['lib_height']}, "
                  f"{len(peers)} peers, {status.get('role', 'agent')} node)")


class Progress:
    """A one-line progress bar on a terminal; plain lines elsewhere; nothing when ``out`` is
    None."""

    WIDTH = 30

    def __init__(self, out):
        self.out = out
        self.tty = out is not None and out.isatty()
        self.last = None

    def show(self, done, total, label):
        if self.out is None:
            return
        filled = min(self.WIDTH, self.WIDTH * done // total)
        line = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {label}"
        if self.tty:
            print("\r" + line, end="", file=self.out, flush=True)
        elif line != self.last:
            print(line, file=self.out, flush=True)
        self.last = line

    def done(self):
        if self.tty:
            print(file=self.out)


if __name__ == "__main__":
    sys.exit(main())
