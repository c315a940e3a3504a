"""``smartshare wallet ...``: keys in the home folder, balances, transfers and history."""

import os
import re
import time

from chain.address import decode_address, encode_address
from chain.keys import KeyPair
from chain.tx import Transfer, Tx
from edge.amounts import format_amount, parse_amount
from edge.cli_base import CliError, home_of, node_status
from edge.node_home import DEFAULT_WALLET, WALLET_DIR
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
WAIT_SECONDS = 30


def wallet_path(home, name):
    if not NAME_RE.match(name):
        raise ValueError(f"wallet name {name!r} must be 1-32 letters, digits, '-' or '_'")
    return os.path.join(home, WALLET_DIR, f"{name}.json")


def add_parsers(sub, common):
    wallet = sub.add_parser("wallet", help="keys, balances and transfers").add_subparsers(
        dest="wallet_command", required=True, metavar="WALLET_COMMAND")

    def named(name, func, help_text):
        p = wallet.add_parser(name, parents=[common], help=help_text)
        p.add_argument("--name", default=DEFAULT_WALLET, help="wallet name (default: default)")
        p.set_defaults(func=func)
        return p

    named("new", cmd_new, "create a new wallet key")
    named("address", cmd_address, "print a wallet's address")
    p = named("balance", cmd_balance, "show an account's balance, stake and nonce")
    p.add_argument("address", nargs="?", help="any address (default: the wallet's)")
    p = named("transfer", cmd_transfer, "send SSP")
    p.add_argument("to", help="recipient address (ssp1...)")
    p.add_argument("amount", help="amount in SSP, e.g. 12.5")
    p.add_argument("--fee", type=int, help="fee in base units (default: the minimum)")
    p.add_argument("--memo", default="", help="a short note (at most 64 bytes)")
    p.add_argument("--wait", action="store_true", help="wait until it is in a block")
    p = named("history", cmd_history, "list an account's committed transactions")
    p.add_argument("address", nargs="?", help="any address (default: the wallet's)")
    p.add_argument("--limit", type=int, default=20)
    return wallet


def load_wallet(args):
    path = wallet_path(home_of(args), args.name)
    if not os.path.exists(path):
        raise CliError(f"no wallet named {args.name!r} in {home_of(args)}; create it with: "
                       f"smartshare wallet new --name {args.name}", "no_wallet")
    return KeyPair.load(path)


def cmd_new(args):
    home = home_of(args)
    path = wallet_path(home, args.name)
    if os.path.exists(path):
        raise CliError(f"wallet {args.name!r} already exists in {home}", "exists")
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    pair = KeyPair.generate()
    pair.save(path)
    return ({"name": args.name, "address": pair.address_text, "key_file": path},
            f"new wallet {args.name!r}: {pair.address_text}\nkey file {path} (mode 0600; back it up)")


def cmd_address(args):
    pair = load_wallet(args)
    return {"name": args.name, "address": pair.address_text}, pair.address_text


def _target(args):
    if args.address:
        return encode_address(decode_address(args.address))
    return load_wallet(args).address_text


def cmd_balance(args):
    client, status = node_status(args)
    decimals = status["decimals"]
    a = client.get(f"/v1/accounts/{_target(args)}")
    fmt = lambda v: format_amount(int(v), decimals)  # noqa: E731
    unbonding = sum(int(u["amount"]) for u in a["unbonding"])
    text = (f"{a['address']}\n"
            f"  balance    {fmt(a['balance'])} SSP\n"
            f"  stake      {fmt(a['stake'])} SSP\n"
            f"  unbonding  {fmt(unbonding)} SSP\n"
            f"  nonce      {a['nonce']}  (next {a['next_nonce']})\n"
            f"  at height  {a['height']}")
    part = a.get("participation")
    if part:
        text += (f"\n  service    weight {fmt(part['weight'])} in epoch {part['epoch']}, "
                 f"{fmt(part['due'])} SSP of participation rewards due (taken with the next "
                 "contract transaction)")
    return a, text


def cmd_transfer(args):
    pair = load_wallet(args)
    client, status = node_status(args)
    to = decode_address(args.to)
    amount = parse_amount(args.amount, status["decimals"])
    if amount == 0:
        raise CliError("amount must be more than 0", "bad_amount")
    memo = args.memo.encode()
    if len(memo) > 64:
        raise CliError("memo must be at most 64 bytes", "bad_memo")
    nonce = client.get(f"/v1/accounts/{pair.address_text}")["next_nonce"]
    tx = sign_with_fee(pair, status, nonce, Transfer(to, amount, memo), args.fee)
    result = client.submit([tx.raw])[0]
    if not result["accepted"]:
        raise CliError(f"transfer refused ({result['reason']}): {result['detail']}",
                       result["reason"])
    data = {"id": tx.id.hex(), "from": pair.address_text, "to": encode_address(to),
            "amount": str(amount), "fee": str(tx.fee), "nonce": nonce, "status": "pending"}
    if args.wait:
        data.update(wait_committed(client, tx.id.hex()))
    where = f" in block {data['height']}" if "height" in data else " (pending)"
    text = (f"sent {format_amount(amount, status['decimals'])} SSP to {encode_address(to)}"
            f"{where}\n  tx {tx.id.hex()}  fee {tx.fee} base units")
    return data, text


def sign_with_fee(pair, status, nonce, payload, fee=None):
    """Sign ``payload``; with no explicit fee, pay the minimum for the transaction's size."""
    chain_id, params = status["chain_id"], status["params"]
    base, per_byte = int(params["min_fee"]), int(params["fee_per_byte"])
    base += int(params.get("gas_price", "0")) * getattr(payload, "gas_limit", 0)
    chosen = fee if fee is not None else base
    while True:
        tx = Tx(chain_id, pair.pubkey, nonce, chosen, payload).signed_by(pair)
        floor = base + per_byte * len(tx.raw)
        if fee is not None or chosen >= floor:
            return tx
        chosen = floor


def wait_committed(client, tx_id):
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        found = client.get(f"/v1/txs/{tx_id}")
        if found["status"] == "committed":
            return {"status": "committed", "height": found["height"]}
        time.sleep(0.2)
    raise CliError(f"transaction {tx_id} still pending after {WAIT_SECONDS}s", "timeout")


def cmd_history(args):
    client, status = node_status(args)
    decimals = status["decimals"]
    doc = client.get(f"/v1/accounts/{_target(args)}/txs?limit={max(1, min(args.limit, 1000))}")
    lines = [f"{doc['address']}: {len(doc['txs'])} transaction(s), newest first"]
    for t in doc["txs"]:
        p = t["payload"]
        what = (f"{format_amount(int(p['amount']), decimals)} SSP {t['sender']} -> {p['to']}"
                if t["kind"] == "transfer" else t["kind"])
        lines.append(f"  #{t['height']:<7} {t['id'][:16]}  {what}")
    return doc, "\n".join(lines)
