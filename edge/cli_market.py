"""``smartshare service list|add|price``, ``market quotes|orders|buy|resume``,
``session list|show`` and ``channel list|open|close``: the SmartAgent from the command line.

The node's selling agent is reached through the API (docs/api.md "Market"). ``market buy`` runs
a buyer's agent in the foreground: it orders over the gateway's MQTT market, opens the channel,
pays each statement with a voucher and ends when the channel is settled (Ctrl-C ends the session
early: the seller closes with the final voucher). Its state lives in ``<home>/buyers/<wallet>``
(LMDB), so ``market resume`` carries on after a crash.
"""

import fcntl
import os
import signal
import sys
import threading
import time

from chain.address import decode_address, encode_address
from chain.store import Store
from contracts.values import encode_value
from edge.amounts import format_amount, parse_amount
from edge.cli_base import CliError, client_for_home, home_of, load_config, node_status
from edge.cli_contract import call_method
from edge.cli_wallet import DEFAULT_WALLET, load_wallet, wallet_path

BUYERS_DIR = "buyers"


def add_parsers(sub, common):
    _service_parsers(sub, common)
    _market_parsers(sub, common)
    session = _group(sub, "session", "the agent's sessions (metering and vouchers)")
    p = session.add_parser("list", parents=[common], help="sessions, newest first")
    p.set_defaults(func=cmd_session_list)
    p = session.add_parser("show", parents=[common], help="one session in full")
    p.add_argument("session_id")
    p.set_defaults(func=cmd_session_show)
    _channel_parsers(sub, common)


def _group(sub, name, text):
    return sub.add_parser(name, help=text).add_subparsers(dest=f"{name}_command", required=True,
                                                           metavar=f"{name.upper()}_COMMAND")


def _service_parsers(sub, common):
    service = _group(sub, "service", "the services this gateway's devices sell")
    p = service.add_parser("list", parents=[common], help="offers, prices and utilisation")
    p.set_defaults(func=cmd_service_list)
    p = service.add_parser("add", parents=[common], help="offer a device's service")
    p.add_argument("type", help="service type, e.g. parking.time")
    p.add_argument("device_id", help="16 hex characters (smartshare device list)")
    _price_options(p, required=False)
    p.add_argument("--capacity", type=int, help="sessions the device serves at once")
    p.set_defaults(func=cmd_service_add)
    p = service.add_parser("price", parents=[common], help="change a service's price policy")
    p.add_argument("service_id", help="e.g. parking.time@0123456789abcdef")
    _price_options(p, required=False)
    p.set_defaults(func=cmd_service_price)


def _price_options(p, required):
    p.add_argument("--price", required=required, help="base price in SSP per price unit")
    p.add_argument("--floor", help="lowest price in SSP (default: half the base)")
    p.add_argument("--ceiling", help="highest price in SSP (default: twice the base)")
    p.add_argument("--adjust", type=int, help="‰ added to the base at full utilisation")


def _market_parsers(sub, common):
    market = _group(sub, "market", "quotes, orders, and buying a service")
    p = market.add_parser("quotes", parents=[common], help="supply quotes of this gateway")
    p.set_defaults(func=cmd_quotes)
    p = market.add_parser("orders", parents=[common], help="the order books")
    p.set_defaults(func=cmd_orders)
    p = market.add_parser("buy", parents=[common], help="buy a service and pay as it is used "
                          "(runs until settled; Ctrl-C ends it early)")
    p.add_argument("service", help="service type, e.g. parking.time")
    p.add_argument("--max-price", required=True, help="highest price in SSP per price unit")
    p.add_argument("--quantity", type=int, required=True,
                   help="most metered units to buy (minutes, seconds, bytes, readings...)")
    p.add_argument("--device", help="only this device (16 hex)")
    p.add_argument("--stop-after", type=int, help="end the session after this many units")
    p.add_argument("--deposit-cap", help="refuse a trade whose deposit is above this (SSP)")
    _buyer_options(p)
    p.set_defaults(func=cmd_buy)
    p = market.add_parser("resume", parents=[common], help="carry on a buyer's live sessions")
    _buyer_options(p)
    p.set_defaults(func=cmd_resume)


def _buyer_options(p):
    p.add_argument("--name", default=DEFAULT_WALLET, help="wallet that pays (default: default)")
    p.add_argument("--broker", metavar="HOST:PORT", help="the gateway's broker (default: the "
                   "home's [mqtt] host and port)")
    p.add_argument("--market-password", help="the broker's market password (default: the "
                   "home's)")
    p.add_argument("--timeout", type=float, default=3600, help="give up waiting after this long")


def _channel_parsers(sub, common):
    channel = _group(sub, "channel", "payment channels")
    p = channel.add_parser("list", parents=[common], help="the agent's channels")
    p.set_defaults(func=cmd_channel_list)
    p = channel.add_parser("open", parents=[common], help="open a channel with a deposit")
    p.add_argument("seller", help="the payee's address (ssp1...)")
    p.add_argument("deposit", help="in SSP")
    p.add_argument("--contract", help="the payment_channel deployment (default: this node's)")
    p.add_argument("--id", help="channel id (hex; default: derived by the contract)")
    p.add_argument("--expiry-blocks", type=int, default=604_800)
    p.add_argument("--dispute-s", type=int, default=3600)
    p.add_argument("--gas", type=int, default=80_000)
    p.add_argument("--name", default=DEFAULT_WALLET)
    p.add_argument("--wait", action="store_true")
    p.set_defaults(func=cmd_channel_open)
    p = channel.add_parser("close", parents=[common], help="close a channel now with the best "
                           "voucher (the node's agent, as seller)")
    p.add_argument("session_id")
    p.set_defaults(func=cmd_channel_close)


# -- services ---------------------------------------------------------------------------------

def _ssp(args, text):
    if text is None:
        return None
    _, status = node_status(args)
    return parse_amount(text, status["decimals"])


def _fmt(args, value):
    return format_amount(value, 8)


def _policy_body(args):
    body = {}
    for name, text in (("price", args.price), ("floor", args.floor), ("ceiling", args.ceiling)):
        if text is not None:
            body[name] = _ssp(args, text)
    if args.adjust is not None:
        body["adjust_permille"] = args.adjust
    return body


def cmd_service_list(args):
    doc = client_for_home(args).get("/v1/services")
    lines = [f"{len(doc['services'])} service(s)"]
    for o in doc["services"]:
        lines.append(f"  {o['id']:<36} {_fmt(args, o['price']):>12} SSP  busy {o['busy']}/"
                     f"{o['capacity']}  range {_fmt(args, o['policy']['floor'])}.."
                     f"{_fmt(args, o['policy']['ceiling'])}")
    return doc, "\n".join(lines)


def cmd_service_add(args):
    body = dict(_policy_body(args), type=args.type, device=args.device_id)
    if args.capacity is not None:
        body["capacity"] = args.capacity
    offer = client_for_home(args).post("/v1/services", body)
    return offer, f"offering {offer['id']} at {_fmt(args, offer['policy']['base'])} SSP"


def cmd_service_price(args):
    body = _policy_body(args)
    if not body:
        raise CliError("give at least one of --price, --floor, --ceiling, --adjust", "bad_usage")
    offer = client_for_home(args).post(f"/v1/services/{args.service_id}/price", body)
    p = offer["policy"]
    return offer, (f"{offer['id']}: base {_fmt(args, p['base'])} SSP, range "
                   f"{_fmt(args, p['floor'])}..{_fmt(args, p['ceiling'])}, "
                   f"+{p['adjust_permille']}‰ when full")


# -- market -----------------------------------------------------------------------------------

def cmd_quotes(args):
    doc = client_for_home(args).get("/v1/market/quotes")
    lines = [f"seller {doc['seller']}"]
    for name, q in doc["quotes"].items():
        for o in q["offers"]:
            lines.append(f"  {name:<18} {_fmt(args, o['price']):>12} SSP per {q['price_unit']:<8}"
                         f" device {o['device']}  {o['available']}/{o['capacity']} free")
        if q["best_bid"] is not None:
            lines.append(f"  {name:<18} best bid {_fmt(args, q['best_bid'])} SSP")
    return doc, "\n".join(lines)


def cmd_orders(args):
    doc = client_for_home(args).get("/v1/market/orders")
    lines = []
    for name, book in doc["books"].items():
        lines.append(f"{name}: {len(book['bids'])} bid(s), {len(book['asks'])} ask(s), "
                     f"{book['trades']} trade(s)")
        for side in ("asks", "bids"):
            for o in book[side]:
                lines.append(f"  {side[:-1]:<4} {_fmt(args, o['price']):>12} SSP  qty "
                             f"{o['quantity']}  {o['device'] or 'any device'}")
    return doc, "\n".join(lines) or "no order books"


def cmd_buy(args):
    if args.quantity < 1 or (args.stop_after is not None and args.stop_after < 1):
        raise CliError("--quantity and --stop-after must be at least 1", "bad_usage")
    max_price, cap = _ssp(args, args.max_price), _ssp(args, args.deposit_cap)
    with _BuyerProcess(args) as buyer:
        order = buyer.call("buy", args.service, max_price, args.quantity, args.device, cap,
                           args.stop_after)
        buyer.log(f"order {order} for {args.quantity} units of {args.service} at most "
                  f"{args.max_price} SSP per unit")
        return buyer.run_until_done()


def cmd_resume(args):
    with _BuyerProcess(args) as buyer:
        live = buyer.call("live")
        if not live:
            raise CliError(f"wallet {args.name!r} has no live session to resume", "nothing")
        buyer.log(f"resuming {len(live)} session(s): {', '.join(live)}")
        return buyer.run_until_done()


class _BuyerProcess:
    """A buyer's agent of one wallet of the home, in this process, until its sessions end."""

    def __init__(self, args):
        from edge.agent.buyer import Buyer
        from edge.agent.chain_port import ChainPort
        from edge.agent.market_link import MarketLink, buyer_subscriptions
        from edge.agent.runner import AgentRunner
        from edge.agent.signer import KeyFileSigner
        self.args, self.out = args, sys.stderr if args.json else sys.stdout
        config = load_config(args)
        client, status = node_status(args)
        load_wallet(args)     # a clear error when the wallet does not exist
        self.signer = KeyFileSigner(wallet_path(home_of(args), args.name))
        folder = os.path.join(home_of(args), BUYERS_DIR, args.name)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        self._lock = open(os.path.join(folder, "lock"), "a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CliError(f"another buyer runs wallet {args.name!r}", "busy") from None
        self.store = Store(os.path.join(folder, "data"))
        client_id = f"buyer-{self.signer.address.hex()[:16]}"
        self.buyer = Buyer(self.store, self.signer, ChainPort(client), status["chain_id"],
                           client_id, log=self.log)
        self.live = [d["order"] for d in self.buyer.all_sessions() if d["state"] in _LIVE]
        self.runner = AgentRunner(self.buyer, log=self.log)
        host, port = _broker(args, config)
        password = args.market_password or config.market_password
        self.runner.link = MarketLink(host, port, "market", password, client_id,
                                      buyer_subscriptions(client_id), self.runner.deliver,
                                      self.log)
        self.orders = []

    def log(self, line):
        print(line, file=self.out, flush=True)

    def __enter__(self):
        self.runner.start()
        if not self.runner.link.wait_ready(15):
            self.runner.stop()
            raise CliError(f"the broker at {self.runner.link.host}:{self.runner.link.port} did "
                           "not let the buyer in; check --broker and --market-password",
                           "no_broker")
        return self

    def __exit__(self, *exc):
        self.runner.stop()
        self.store.close()
        self._lock.close()

    def call(self, what, *a):
        if what == "buy":
            order = self.runner.call(self.buyer.buy, *a)
            self.orders.append(order)
            return order
        self.orders.extend(self.live)    # read before the agent started: it may end them at once
        return self.live

    def run_until_done(self):
        stop = threading.Event()
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
        deadline = time.monotonic() + self.args.timeout
        asked = False
        try:
            while True:
                docs = [self.runner.call(self.buyer.session, o) for o in self.orders]
                if all(d["state"] not in _LIVE for d in docs):
                    break
                if stop.is_set() and not asked:
                    asked = True
                    self.log("ending the session(s): the seller closes with the final voucher")
                    for d in docs:
                        if d["state"] in _LIVE:
                            self.runner.call(self.buyer.stop, d["order"])
                if time.monotonic() > deadline:
                    raise CliError(f"sessions still live after {self.args.timeout:g} s: "
                                   f"{', '.join(d['state'] for d in docs)}", "timeout")
                time.sleep(0.2)
        finally:
            signal.signal(signal.SIGINT, previous)
        return _summary(docs)


_LIVE = ("ordered", "resting", "matched", "opening", "open", "active", "ending", "refunding")


def _summary(docs):
    out, lines = [], []
    for d in docs:
        closed = d.get("closed") or {}
        # What the channel paid on chain once it closed (a voucher signed after the seller's
        # close was never redeemed); before that, the best voucher signed.
        paid = closed["paid"] if "paid" in closed else (d["voucher"] or {"amount": 0})["amount"]
        item = {"order": d["order"], "session": d["id"], "service": d["service"],
                "state": d["state"], "units": d["units"], "paid": paid,
                "refunded": closed.get("refunded"), "reason": d["reason"]}
        out.append(item)
        lines.append(f"{d['service']} session {d['id']}: {d['state']}, {d['units']} units, "
                     f"paid {format_amount(item['paid'], 8)} SSP"
                     + (f", refunded {format_amount(item['refunded'], 8)} SSP"
                        if item["refunded"] is not None else "")
                     + (f" ({d['reason']})" if d["reason"] else ""))
    return {"sessions": out}, "\n".join(lines)


def _broker(args, config):
    if args.broker:
        host, _, port = args.broker.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise CliError(f"--broker must be HOST:PORT, not {args.broker!r}", "bad_usage")
        return host, int(port)
    if not config.mqtt_enabled:
        raise CliError(f"{config.home} runs no broker; pass --broker HOST:PORT", "bad_usage")
    host = config.mqtt_host if config.mqtt_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    return host, config.mqtt_port


# -- sessions and channels --------------------------------------------------------------------

def cmd_session_list(args):
    doc = client_for_home(args).get("/v1/market/sessions")
    doc["sessions"].sort(key=lambda s: -s["created_ms"])
    lines = [f"{len(doc['sessions'])} session(s)"]
    for s in doc["sessions"]:
        lines.append(f"  {s['id']}  {s['service']:<18} {s['state']:<9} {s['units']:>12} units  "
                     f"due {_fmt(args, s['due']):>10}  paid {_fmt(args, s['paid']):>10} SSP")
    return doc, "\n".join(lines)


def cmd_session_show(args):
    s = client_for_home(args).get(f"/v1/market/sessions/{args.session_id}")
    lines = [f"session {s['id']}: {s['service']} on device {s['device']}, {s['state']}"
             + (f" ({s['reason']})" if s["reason"] else ""),
             f"  price     {_fmt(args, s['price'])} SSP per {s['per']} units",
             f"  metered   {s['units']} units, due {_fmt(args, s['due'])} SSP",
             f"  vouchers  {s['vouchers']}, best {_fmt(args, (s['voucher'] or {}).get('amount', 0))}"
             f" SSP, redeemed {_fmt(args, s['redeemed'])} SSP",
             f"  deposit   {_fmt(args, s['deposit'])} SSP, buyer {s['buyer'][:16]}…"]
    if s["settled"]:
        lines.append(f"  settled   {s['settled']}")
    return s, "\n".join(lines)


def cmd_channel_list(args):
    doc = client_for_home(args).get("/v1/market/channels")
    lines = [f"contract {doc['contract']}: {len(doc['channels'])} channel(s)"]
    for c in doc["channels"]:
        lines.append(f"  {c['channel']}  {c['state']:<9} deposit {_fmt(args, c['deposit']):>10}"
                     f"  paid {_fmt(args, c['paid']):>10}  redeemed {_fmt(args, c['redeemed'])}")
    return doc, "\n".join(lines)


def cmd_channel_open(args):
    client, status = node_status(args)
    contract = args.contract
    if contract is None:
        contract = client.get("/v1/agent")["contract"]
        if contract is None:
            raise CliError("this node's agent has no channel contract yet; pass --contract",
                           "no_contract")
    pair = load_wallet(args)
    expiry = status["height"] + args.expiry_blocks
    channel_id = bytes.fromhex(args.id) if args.id else None
    arg_bytes = encode_value([channel_id, decode_address(args.seller), pair.pubkey, expiry,
                              None, None, args.dispute_s * 1000])
    data, text = call_method(args, contract, "open", arg_bytes, args.deposit)
    data.update(contract=contract, expiry=expiry, seller=encode_address(decode_address(
        args.seller)))
    return data, text


def cmd_channel_close(args):
    doc = client_for_home(args).post(f"/v1/market/channels/{args.session_id}/close", {})
    return doc, f"channel {doc['id']}: {doc['state']} ({doc['reason']})"
