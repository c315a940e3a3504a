"""``smartshare testnet up|status|down``: a local multi-node network of real node processes."""

from edge import testnet
from edge.cli_base import CliError

DEFAULT_DIR = "testnet"


def add_parsers(sub, common):
    group = sub.add_parser("testnet", help="a local multi-node network").add_subparsers(
        dest="testnet_command", required=True, metavar="TESTNET_COMMAND")
    p = group.add_parser("up", parents=[common], help="create (once) and start a testnet")
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--dir", default=DEFAULT_DIR)
    p.add_argument("--slot-ms", type=int, default=1000)
    p.add_argument("--producers", type=int, help="producers per round (default: every node)")
    p.set_defaults(func=cmd_up)
    p = group.add_parser("status", parents=[common], help="heights, LIB, peers and schedule")
    p.add_argument("--dir", default=DEFAULT_DIR)
    p.set_defaults(func=cmd_status)
    p = group.add_parser("down", parents=[common], help="stop every node of the testnet")
    p.add_argument("--dir", default=DEFAULT_DIR)
    p.set_defaults(func=cmd_down)


def cmd_up(args):
    try:
        try:
            testnet.load_manifest(args.dir)
        except testnet.TestnetError:
            testnet.create(args.dir, args.nodes, slot_ms=args.slot_ms, producers=args.producers)
        manifest = testnet.start(args.dir)
    except testnet.TestnetError as exc:
        raise CliError(str(exc), "testnet") from None
    lines = [f"testnet {manifest['chain_id']} up in {args.dir}:"]
    lines += [f"  {n['name']}  API {n['api']}  p2p 127.0.0.1:{n['p2p_port']}  {n['address']}"
              for n in manifest["nodes"]]
    lines.append(f"faucet wallet: {manifest['faucet']} (in {manifest['nodes'][0]['home']})")
    return manifest, "\n".join(lines)


def cmd_status(args):
    try:
        doc = testnet.status(args.dir)
    except testnet.TestnetError as exc:
        raise CliError(str(exc), "testnet") from None
    lines = [f"testnet {doc['chain_id']}"]
    for row in doc["nodes"]:
        if "error" in row:
            lines.append(f"  {row['name']:<7} {'running' if row['pid'] else 'stopped':<8} "
                         f"{row['error']}")
            continue
        lines.append(f"  {row['name']:<7} height {row['height']:<6} lib {row['lib_height']:<6} "
                     f"peers {row['peers']:<2} round {row['round']:<5} "
                     f"{row['head_hash'][:12]}  producers {','.join(row['producers'])}")
    return doc, "\n".join(lines)


def cmd_down(args):
    try:
        stopped = testnet.stop(args.dir)
    except testnet.TestnetError as exc:
        raise CliError(str(exc), "testnet") from None
    return {"stopped": stopped}, f"stopped {stopped} node(s)"
