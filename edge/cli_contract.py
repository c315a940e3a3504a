"""``smartshare contract deploy|call|query|receipt`` and ``smartshare token issue|transfer|balance``."""

import json
import os

from chain.address import decode_address, encode_address
from chain.calls import contract_address
from chain.tx import Call, Deploy
from contracts.system import system_contract
from contracts.values import encode_value
from edge import cli_supply
from edge.amounts import parse_amount
from edge.cli_base import CliError, node_status
from edge.cli_stake import send
from edge.cli_wallet import DEFAULT_WALLET, load_wallet
from edge.values_json import from_value, parse_cli_arg

DEFAULT_GAS = 1_000_000


def add_parsers(sub, common):
    contract = sub.add_parser("contract", help="Lua smart contracts").add_subparsers(
        dest="contract_command", required=True, metavar="CONTRACT_COMMAND")
    p = contract.add_parser("deploy", parents=[common], help="deploy a Lua contract")
    p.add_argument("file")
    p.add_argument("args", nargs="*", help="init arguments (12, true, 0xbeef, ssp1..., text, JSON)")
    _tx_options(p)
    p.set_defaults(func=cmd_deploy)
    p = contract.add_parser("call", parents=[common], help="call a contract method (a tx)")
    p.add_argument("contract")
    p.add_argument("method")
    p.add_argument("args", nargs="*")
    p.add_argument("--value", default="0", help="SSP sent with the call")
    _tx_options(p)
    p.set_defaults(func=cmd_call)
    p = contract.add_parser("query", parents=[common], help="read-only call (no tx)")
    p.add_argument("contract")
    p.add_argument("method")
    p.add_argument("args", nargs="*")
    p.set_defaults(func=cmd_query)
    p = contract.add_parser("receipt", parents=[common], help="a transaction's receipt")
    p.add_argument("tx_id")
    p.set_defaults(func=cmd_receipt)
    add_token_parsers(sub, common)


def _tx_options(p):
    p.add_argument("--gas", type=int, default=DEFAULT_GAS, help="gas limit")
    p.add_argument("--name", default=DEFAULT_WALLET, help="wallet name (default: default)")
    p.add_argument("--wait", action="store_true", help="wait until it is in a block")


def _args(texts):
    try:
        return encode_value([parse_cli_arg(t) for t in texts])
    except (ValueError, TypeError) as exc:
        raise CliError(f"bad contract argument: {exc}", "bad_args") from None


def deploy_code(args, code, init_args, what):
    pair = load_wallet(args)
    client, _ = node_status(args)
    nonce = client.get(f"/v1/accounts/{pair.address_text}")["next_nonce"]
    address = encode_address(contract_address(pair.address, nonce))
    data, text = send(args, pair, Deploy(code, init_args, args.gas), what)
    data["contract"] = address
    if data.get("status") == "committed":
        data["receipt"] = client.get(f"/v1/txs/{data['id']}")["receipt"]
        _raise_failed(data["receipt"])
    return data, f"{text}\n  contract {address}"


def _raise_failed(receipt):
    if receipt["status"] != 0:
        raise CliError(f"the contract call failed: {receipt['error']}", "call_failed")


def cmd_deploy(args):
    try:
        with open(args.file, "rb") as f:
            code = f.read()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc.strerror}", "no_file") from None
    return deploy_code(args, code, _args(args.args), f"deploy {os.path.basename(args.file)}")


def call_method(args, contract, method, arg_bytes, value_ssp):
    _, status = node_status(args)
    value = parse_amount(value_ssp, status["decimals"])
    payload = Call(decode_address(contract), method, arg_bytes, value, args.gas)
    data, text = send(args, load_wallet(args), payload, f"call {method}")
    if data.get("status") == "committed":
        client, _ = node_status(args)
        data["receipt"] = client.get(f"/v1/txs/{data['id']}")["receipt"]
        _raise_failed(data["receipt"])
        text += f"\n  returned {json.dumps(data['receipt'].get('return'))}"
    return data, text


def cmd_call(args):
    return call_method(args, args.contract, args.method, _args(args.args), args.value)


def query(args, contract, method, values):
    client, _ = node_status(args)
    encode_address(decode_address(contract))
    result = client.post(f"/v1/contracts/{contract}/query",
                         {"method": method, "args": [from_value(v) for v in values]})
    if not result["ok"]:
        raise CliError(f"the query failed: {result['error']}", "query_failed")
    return result


def cmd_query(args):
    try:
        values = [parse_cli_arg(t) for t in args.args]
    except ValueError as exc:
        raise CliError(f"bad contract argument: {exc}", "bad_args") from None
    result = query(args, args.contract, args.method, values)
    return result, json.dumps(result["return"])


def cmd_receipt(args):
    client, _ = node_status(args)
    found = client.get(f"/v1/txs/{args.tx_id}")
    if found["status"] != "committed":
        return found, f"{args.tx_id}: pending"
    r = found["receipt"]
    lines = [f"{args.tx_id}: {'ok' if r['status'] == 0 else 'FAILED'} in block {found['height']}",
             f"  fee {r['fee']} base units, gas used {r.get('gas_used', 0)}"]
    if r.get("error"):
        lines.append(f"  error: {r['error']}")
    for event in r.get("events", []):
        lines.append(f"  event {event['name']} {json.dumps(event['data'])}")
    if r.get("return") is not None:
        lines.append(f"  returned {json.dumps(r['return'])}")
    return found, "\n".join(lines)


# -- iot_coin tokens --------------------------------------------------------------------------

def add_token_parsers(sub, common):
    token = sub.add_parser("token", help="iot_coin tokens, and the SSP supply").add_subparsers(
        dest="token_command", required=True, metavar="TOKEN_COMMAND")
    p = token.add_parser("issue", parents=[common], help="issue a new iot_coin token")
    p.add_argument("token_name")
    p.add_argument("symbol")
    p.add_argument("decimals", type=int)
    p.add_argument("supply", type=int, help="in the token's smallest units")
    p.add_argument("--mintable", action="store_true")
    _tx_options(p)
    p.set_defaults(func=cmd_token_issue)
    p = token.add_parser("transfer", parents=[common], help="send tokens")
    p.add_argument("token")
    p.add_argument("to")
    p.add_argument("amount", type=int, help="in the token's smallest units")
    _tx_options(p)
    p.set_defaults(func=cmd_token_transfer)
    p = token.add_parser("balance", parents=[common], help="a token balance")
    p.add_argument("token")
    p.add_argument("address", nargs="?", help="default: the wallet's")
    p.add_argument("--name", default=DEFAULT_WALLET)
    p.set_defaults(func=cmd_token_balance)
    cli_supply.add_parser(token, common)


def cmd_token_issue(args):
    code = system_contract("iot_coin").encode()
    init = encode_value([args.token_name, args.symbol, args.decimals, args.supply, None,
                         bool(args.mintable)])  # the issuer (None): the deploying wallet
    return deploy_code(args, code, init, f"issue {args.symbol}")


def cmd_token_transfer(args):
    arg_bytes = encode_value([decode_address(args.to), args.amount])
    return call_method(args, args.token, "transfer", arg_bytes, "0")


def cmd_token_balance(args):
    address = decode_address(args.address) if args.address else load_wallet(args).address
    result = query(args, args.token, "balance_of", [address])
    return ({"token": args.token, "address": encode_address(address),
             "balance": result["return"]}, str(result["return"]))

