"""Staking, voting and agent commands: ``wallet stake|unstake``, ``vote``, ``agent ...``.

Wallet commands sign with a wallet of the home (``--name``); agent commands sign with the node's
own key, since the node is the agent that produces blocks.
"""

from chain.address import decode_address, encode_address
from chain.keys import KeyPair
from chain.tx import RegisterAgent, Stake, Unjail, UnregisterAgent, Unstake, Vote
from edge.amounts import format_amount, parse_amount
from edge.cli_base import CliError, load_config, node_status
from edge.cli_wallet import DEFAULT_WALLET, load_wallet, sign_with_fee, wait_committed


def add_parsers(sub, wallet, common):
    for name, func, text in (("stake", cmd_stake, "lock SSP as stake (votes, agent)"),
                             ("unstake", cmd_unstake, "start unbonding staked SSP")):
        p = wallet.add_parser(name, parents=[common], help=text)
        p.add_argument("amount", help="amount in SSP")
        _signing_options(p)
        p.set_defaults(func=func)
    p = sub.add_parser("vote", parents=[common], help="vote for agents with your stake")
    p.add_argument("candidates", nargs="*", help="agent addresses (none: withdraw your votes)")
    _signing_options(p)
    p.set_defaults(func=cmd_vote)
    agent = sub.add_parser("agent", help="this node as a block producer").add_subparsers(
        dest="agent_command", required=True, metavar="AGENT_COMMAND")
    p = agent.add_parser("register", parents=[common], help="become a candidate")
    p.add_argument("agent_name")
    p.add_argument("--endpoint", default="")
    p.add_argument("--wait", action="store_true")
    p.set_defaults(func=cmd_register)
    for name, func, text in (("unregister", cmd_unregister, "stop being a candidate"),
                             ("unjail", cmd_unjail, "return after a jail term")):
        p = agent.add_parser(name, parents=[common], help=text)
        p.add_argument("--wait", action="store_true")
        p.set_defaults(func=func)


def _signing_options(p):
    p.add_argument("--name", default=DEFAULT_WALLET, help="wallet name (default: default)")
    p.add_argument("--wait", action="store_true", help="wait until it is in a block")


def send(args, pair, payload, what):
    """Sign ``payload`` from ``pair``, submit it, optionally wait; returns (data, text)."""
    client, status = node_status(args)
    nonce = client.get(f"/v1/accounts/{pair.address_text}")["next_nonce"]
    tx = sign_with_fee(pair, status, nonce, payload)
    result = client.submit([tx.raw])[0]
    if not result["accepted"]:
        raise CliError(f"{what} refused ({result['reason']}): {result['detail']}",
                       result["reason"])
    data = {"id": tx.id.hex(), "from": pair.address_text, "kind": tx.kind_name,
            "fee": str(tx.fee), "nonce": nonce, "status": "pending"}
    if getattr(args, "wait", False):
        data.update(wait_committed(client, tx.id.hex()))
    where = f"in block {data['height']}" if "height" in data else "pending"
    return data, f"{what}: {where}\n  tx {tx.id.hex()}  fee {tx.fee} base units"


def _amount(args):
    _, status = node_status(args)
    amount = parse_amount(args.amount, status["decimals"])
    if amount == 0:
        raise CliError("amount must be more than 0", "bad_amount")
    return amount, format_amount(amount, status["decimals"])


def cmd_stake(args):
    amount, shown = _amount(args)
    return send(args, load_wallet(args), Stake(amount), f"stake {shown} SSP")


def cmd_unstake(args):
    amount, shown = _amount(args)
    return send(args, load_wallet(args), Unstake(amount), f"unstake {shown} SSP")


def cmd_vote(args):
    candidates = tuple(sorted({decode_address(c) for c in args.candidates}))
    names = ", ".join(encode_address(c) for c in candidates) or "nobody"
    return send(args, load_wallet(args), Vote(candidates), f"vote for {names}")


def node_key(args):
    config = load_config(args)
    return KeyPair.load(config.path(config.key_file))


def cmd_register(args):
    return send(args, node_key(args), RegisterAgent(args.agent_name, args.endpoint),
                f"register agent {args.agent_name!r}")


def cmd_unregister(args):
    return send(args, node_key(args), UnregisterAgent(), "unregister agent")


def cmd_unjail(args):
    return send(args, node_key(args), Unjail(), "unjail agent")
