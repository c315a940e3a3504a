"""Staking, voting and agent commands: ``wallet stake|unstake``, ``vote``, ``agent ...``,
``tx submit``.

Wallet commands sign with a wallet of the home (``--name``). Agent commands are signed by the
agent's owner key (it holds the stake and earns the rewards), which belongs off the gateway:
``--owner-key FILE`` reads it from anywhere, ``--offline`` prints the signed transaction for
``smartshare tx submit`` on a machine that reaches the node. The node's own key is only the
producer key that signs blocks; registration and rotation have it sign its binding to the owner.
"""

import os

from chain.address import decode_address, encode_address
from chain.dpos.reveal import binding_hash
from chain.genesis import Genesis
from chain.keys import KeyFileError, KeyPair
from chain.producer import BlockSigner, start_watermark
from chain.tx import (RegisterAgent, RotateProducer, Stake, Tx, Unjail, UnregisterAgent,
                      Unstake, Vote)
from edge._fast import DecodeError
from edge.amounts import format_amount, parse_amount
from edge.cli_base import CliError, load_config, node_status
from edge.cli_wallet import DEFAULT_WALLET, load_wallet, sign_with_fee, wait_committed, wallet_path
from edge.node_home import OWNER_WALLET


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
    p = agent.add_parser("register", parents=[common],
                         help="become a candidate: this node's key produces, the owner stakes")
    p.add_argument("agent_name")
    p.add_argument("--endpoint", default="")
    _owner_options(p)
    p.set_defaults(func=cmd_register)
    for name, func, text in (
            ("rotate-key", cmd_rotate, "move the agent to a new producer key on this node"),
            ("unregister", cmd_unregister, "stop being a candidate"),
            ("unjail", cmd_unjail, "return after a jail term")):
        p = agent.add_parser(name, parents=[common], help=text)
        _owner_options(p)
        p.set_defaults(func=func)
    tx = sub.add_parser("tx", help="signed transactions").add_subparsers(
        dest="tx_command", required=True, metavar="TX_COMMAND")
    p = tx.add_parser("submit", parents=[common], help="submit transactions signed elsewhere")
    p.add_argument("hex", nargs="+", help="signed transactions in hex (agent ... --offline)")
    p.add_argument("--wait", action="store_true")
    p.set_defaults(func=cmd_submit)


def _owner_options(p):
    p.add_argument("--owner", default=OWNER_WALLET,
                   help="owner wallet in this home (default: owner)")
    p.add_argument("--owner-key", metavar="FILE", help="owner key file kept elsewhere")
    p.add_argument("--offline", action="store_true",
                   help="print the signed transaction instead of sending it (needs --nonce)")
    p.add_argument("--nonce", type=int, help="the owner's next nonce (with --offline)")
    p.add_argument("--wait", action="store_true")


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


def owner_key(args):
    """The owner key: ``--owner-key FILE``, else the home's wallet ``--owner``."""
    path = args.owner_key or wallet_path(load_config(args).home, args.owner)
    if not os.path.exists(path):
        raise CliError(f"no owner key at {path}; pass --owner-key FILE (the key that holds the "
                       "agent's stake), or --owner NAME for a wallet of this home", "no_owner")
    try:
        return KeyPair.load(path)
    except KeyFileError as exc:
        raise CliError(str(exc), "bad_key") from None


def send_as_owner(args, payload, what):
    """Sign ``payload`` with the owner key; submit it, or print it with ``--offline``."""
    owner = owner_key(args)
    if not args.offline:
        return send(args, owner, payload, what)
    if args.nonce is None:
        raise CliError("--offline needs --nonce N: the owner's next nonce (see `smartshare "
                       "wallet balance` on a machine that reaches the node)", "no_nonce")
    config = load_config(args)
    genesis = Genesis.load(config.path(config.genesis_file))
    params = genesis.params
    status = {"chain_id": genesis.chain_id,
              "params": {"min_fee": params.min_fee, "fee_per_byte": params.fee_per_byte}}
    tx = sign_with_fee(owner, status, args.nonce, payload)
    data = {"id": tx.id.hex(), "from": owner.address_text, "kind": tx.kind_name,
            "fee": str(tx.fee), "nonce": args.nonce, "hex": tx.raw.hex()}
    return data, (f"{what}: signed offline; submit it with\n  smartshare tx submit "
                  f"{tx.raw.hex()}")


def producer_binding(args, producer, owner_address, epoch):
    """``(commit, binding)``: the first value of ``producer``'s reveal chain ``epoch`` and its
    signature binding it to the owner."""
    config = load_config(args)
    chain_id = Genesis.load(config.path(config.genesis_file)).chain_id
    commit = BlockSigner(producer).commitment(epoch)
    return commit, producer.sign(chain_id, binding_hash(owner_address, epoch, commit))


def cmd_register(args):
    producer, owner = node_key(args), owner_key(args)
    epoch = _next_epoch(args, producer.pubkey)
    commit, binding = producer_binding(args, producer, owner.address, epoch)
    payload = RegisterAgent(args.agent_name, args.endpoint, producer.pubkey, epoch, commit,
                            binding)
    return send_as_owner(args, payload, f"register agent {args.agent_name!r}")


def _next_epoch(args, pubkey):
    """A reveal chain this key has not used: 0 for a new key; past its current chain (and
    the one a renewal would take) for a key already registered."""
    if args.offline:
        return 0
    client, _ = node_status(args)
    account = client.get(f"/v1/accounts/{encode_address(owner_key(args).address)}")
    agent = account.get("agent")
    if agent and agent.get("producer") == pubkey.hex():
        return int(agent["producer_epoch"]) + 2
    return 0


def cmd_rotate(args):
    """A new producer key beside the node key (``<key_file>.next``): the node signs with it
    once the new key is in the schedule; then it replaces the old key."""
    config = load_config(args)
    path = config.path(config.key_file) + ".next"
    if os.path.exists(path):
        new = KeyPair.load(path)
    else:
        new = KeyPair.generate()
        new.save(path)
        start_watermark(config.path(config.votes_dir), new.pubkey)
    owner = owner_key(args)
    commit, binding = producer_binding(args, new, owner.address, 0)
    data, text = send_as_owner(args, RotateProducer(new.pubkey, 0, commit, binding),
                               "rotate producer key")
    data["producer"] = new.pubkey.hex()
    return data, text + f"\n  new producer key {path} (the node uses it once it is scheduled)"


def cmd_unregister(args):
    return send_as_owner(args, UnregisterAgent(), "unregister agent")


def cmd_unjail(args):
    return send_as_owner(args, Unjail(), "unjail agent")


def cmd_submit(args):
    try:
        txs = [Tx.decode(bytes.fromhex(item)) for item in args.hex]
    except (ValueError, DecodeError) as exc:
        raise CliError(f"not a signed transaction in hex: {exc}", "malformed") from None
    client, _ = node_status(args)
    results = client.submit([tx.raw for tx in txs])
    out = []
    for tx, result in zip(txs, results):
        if not result["accepted"]:
            raise CliError(f"transaction {tx.id.hex()} refused ({result['reason']}): "
                           f"{result['detail']}", result["reason"])
        entry = {"id": tx.id.hex(), "kind": tx.kind_name, "status": "pending"}
        if args.wait:
            entry.update(wait_committed(client, tx.id.hex()))
        out.append(entry)
    return {"txs": out}, "\n".join(f"{e['kind']} {e['id']}: {e['status']}" for e in out)
