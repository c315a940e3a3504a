"""``smartshare data list|offer|consent|revoke|buy|fetch|refund``: the data asset platform
(docs/protocol.md §18) from the command line, through the home's node and a wallet of the home.

The owner offers a device's data (``offer``: the gateway keeps its data frames, and the dataset
is registered on chain naming this gateway) and consents (``consent``, to every buyer or one;
``revoke`` ends it). A buyer lists what is offered to it, buys a time range into escrow, fetches
the delivery (checked against the hash on chain, decrypted with its wallet key, every record's
device signature verified) and, if nothing was delivered before the deadline, takes the escrow
back with ``refund``. ``fetch --envelope FILE`` opens a delivery received as a file.
"""

import json
import time

from chain.address import decode_address
from edge.amounts import format_amount, parse_amount
from edge.cli_base import CliError, node_status
from edge.cli_wallet import load_wallet
from edge.data_client import DataClient, DataRefused
from edge.node_home import DEFAULT_WALLET


def add_parsers(sub, common):
    data = sub.add_parser("data", help="sell and buy device data (the data asset platform)") \
        .add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")

    def command(name, func, help_text, wallet_help="wallet (default: default)"):
        p = data.add_parser(name, parents=[common], help=help_text)
        p.add_argument("--name", default=DEFAULT_WALLET, help=wallet_help)
        p.set_defaults(func=func)
        return p

    p = command("list", cmd_list, "datasets offered to this wallet")
    p.add_argument("--all", action="store_true", help="every dataset the gateway keeps (owner)")
    p = command("offer", cmd_offer, "offer a device's data as a dataset", "the owner's wallet")
    p.add_argument("dataset", help="dataset id: 1-32 of A-Z a-z 0-9 . _ -")
    p.add_argument("--device", required=True, help="device id, 16 hex (smartshare device list)")
    p.add_argument("--price", required=True, help="SSP per record (or per period), e.g. 0.0001")
    p.add_argument("--period-s", type=int, help="price per period of this many seconds "
                                                "instead of per record")
    p.add_argument("--token", help="be paid in this iot_coin (price in its base units)")
    p.add_argument("--delivery-s", type=int, default=3600,
                   help="time the gateway has to deliver a purchase (default 3600)")
    p.add_argument("--description", default="")
    p.add_argument("--schema", default="")
    p.add_argument("--licence", default="")
    for name, func, text in (("consent", cmd_consent, "consent to sales of a dataset"),
                             ("revoke", cmd_revoke, "revoke consent (paid sales are honoured)")):
        p = command(name, func, text, "the owner's wallet")
        p.add_argument("dataset")
        p.add_argument("--buyer", help="one buyer's address (default: every buyer)")
    p = command("buy", cmd_buy, "buy a time range of a dataset into escrow")
    p.add_argument("dataset")
    p.add_argument("--records", type=int, required=True, help="at most this many records")
    p.add_argument("--from-ms", type=int, default=0, help="range start, ms since the epoch")
    p.add_argument("--to-ms", type=int, help="range end (exclusive; default: now)")
    p = command("fetch", cmd_fetch, "fetch, verify and decrypt a purchase")
    p.add_argument("purchase", help="purchase id, 32 hex (from data buy)")
    p.add_argument("--out", help="write the records here as JSON lines")
    p.add_argument("--envelope", help="open a delivery received as this file instead")
    p.add_argument("--save-envelope", help="also keep the sealed delivery in this file")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for delivery")
    p = command("refund", cmd_refund, "take back a purchase not delivered by its deadline")
    p.add_argument("purchase")


def _client(args, timeout=60.0):
    client, _ = node_status(args)
    return DataClient(client, load_wallet(args), timeout)


def _run(fn, *a, **kw):
    try:
        return fn(*a, **kw)
    except DataRefused as exc:
        raise CliError(str(exc), exc.code) from None


def cmd_list(args):
    found = _run(_client(args).datasets, args.all)
    lines = [f"{len(found)} dataset(s)" + ("" if args.all else " offered to this wallet")]
    for d in found:
        terms = d["terms"] or {}
        price = (f"{terms['price']} base units per "
                 + (f"{terms['period_ms'] // 1000} s" if terms.get("unit") == "period"
                    else "record")) if terms else "not registered"
        lines.append(f"  {d['id']:<20} device {d['device']}  {d['records']} records  {price}  "
                     f"consent: {d['consent']}")
    return {"datasets": found}, "\n".join(lines)


def cmd_offer(args):
    _, status = node_status(args)
    if args.token:
        try:
            price = int(args.price)
        except ValueError:
            raise CliError("with --token the price is an integer of the token's base units",
                           "bad_price") from None
    else:
        price = parse_amount(args.price, status["decimals"])
    if price <= 0:
        raise CliError("the price must be more than 0", "bad_price")
    if args.period_s is not None and args.period_s <= 0:
        raise CliError("--period-s must be at least 1", "bad_period")
    try:
        device = bytes.fromhex(args.device)
    except ValueError:
        device = b""
    if len(device) != 8:
        raise CliError("--device must be a device id of 16 hex characters (smartshare device "
                       "list)", "bad_device")
    terms = _run(_client(args).offer, args.dataset, args.device, price,
                 "period" if args.period_s else "record",
                 args.period_s * 1000 if args.period_s else None,
                 decode_address(args.token) if args.token else None, args.delivery_s * 1000,
                 args.description, args.schema, args.licence)
    data = {"dataset": args.dataset, "device": args.device, "price": price,
            "unit": terms["unit"].decode(), "registered_height": terms["height"],
            "consent": False}
    return data, (f"dataset {args.dataset} offered (device {args.device}, {price} base units "
                  f"per {data['unit']}); no buyer may buy it until you run: smartshare data "
                  f"consent {args.dataset}")


def cmd_consent(args):
    data = _run(_client(args).consent, args.dataset, args.buyer)
    who = args.buyer or "every buyer"
    return data, f"consent given: {args.dataset} may be sold to {who} (block {data['height']})"


def cmd_revoke(args):
    data = _run(_client(args).consent, args.dataset, args.buyer, True)
    who = args.buyer or "every buyer"
    return data, (f"consent revoked: {args.dataset} is no longer sold to {who}; purchases "
                  f"already paid are still delivered (block {data['height']})")


def cmd_buy(args):
    if args.records < 1:
        raise CliError("--records must be at least 1", "bad_records")
    to_ms = args.to_ms if args.to_ms is not None else time.time_ns() // 1_000_000
    data = _run(_client(args).buy, args.dataset, args.from_ms, to_ms, args.records)
    _, status = node_status(args)
    return data, (f"purchase {data['purchase']}: {args.records} records of {args.dataset} for "
                  f"{format_amount(data['cost'], status['decimals'])} SSP in escrow\n"
                  f"  fetch it with: smartshare data fetch {data['purchase']}")


def cmd_fetch(args):
    if len(args.purchase) != 32:
        raise CliError("a purchase id is 32 hex characters (from smartshare data buy)",
                       "bad_purchase")
    client = _client(args, args.timeout)
    if args.envelope:
        try:
            with open(args.envelope, "rb") as f:
                envelope = f.read()
        except OSError as exc:
            raise CliError(f"cannot read {args.envelope}: {exc.strerror}", "no_file") from None
        got = _run(client.open, args.purchase, envelope)
    else:
        got = _run(client.fetch, args.purchase)
        if args.save_envelope:
            _, envelope = _run(client.request, args.purchase)
            with open(args.save_envelope, "wb") as f:
                f.write(envelope)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            for record in got["records"]:
                f.write(json.dumps(record, sort_keys=True) + "\n")
    text = (f"purchase {args.purchase}: {len(got['records'])} records of {got['dataset']}, "
            f"hash {got['hash'][:16]}… verified, every record signed by the device"
            + (f"\n  written to {args.out}" if args.out else ""))
    return got, text


def cmd_refund(args):
    data = _run(_client(args).refund, args.purchase)
    return data, f"purchase {args.purchase}: {data['refunded']} base units of escrow refunded"
