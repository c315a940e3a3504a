"""``smartshare cert show|rotate``: the gateway's CA and the broker's TLS certificate
(edge/mqtt/certs.py). ``rotate`` makes a new server certificate (with the machine's current
names and addresses) and has a running broker load it at once (SIGHUP: connected devices stay
connected); ``rotate --ca`` makes a new CA too, after which every device must onboard again."""

from edge.cli_base import CliError, load_config


def add_parsers(sub, common):
    group = sub.add_parser("cert", help="the gateway's TLS certificates").add_subparsers(
        dest="cert_command", required=True, metavar="CERT_COMMAND")
    p = group.add_parser("show", parents=[common], help="the CA fingerprint and the names "
                         "the broker's certificate carries")
    p.set_defaults(func=cmd_show)
    p = group.add_parser("rotate", parents=[common], help="a new server certificate, loaded "
                         "by a running broker at once")
    p.add_argument("--ca", action="store_true", help="a new CA too: every device must then "
                   "be approved again (its pinned CA no longer matches)")
    p.add_argument("--name", action="append", default=[], metavar="NAME_OR_IP",
                   help="another host name or address for the certificate (repeatable)")
    p.set_defaults(func=cmd_rotate)


def _tls_home(args):
    from edge.mqtt import certs   # cryptography only for these commands
    config = load_config(args)
    if not config.mqtt_tls_port:
        raise CliError(f"{config.file} has no [mqtt_tls] port: the broker has no TLS listener",
                       "no_tls")
    return config, certs


def cmd_show(args):
    config, certs = _tls_home(args)
    try:
        doc = {"ca_sha256": certs.ca_fingerprint(config.home),
               "names": certs.server_names(config.home),
               "ca_file": certs.tls_path(config.home, certs.CA_CERT)}
    except (certs.TlsError, OSError) as exc:
        raise CliError(str(exc), "tls") from None
    return doc, (f"CA SHA-256  {doc['ca_sha256']}\nCA file     {doc['ca_file']}\n"
                 f"names       {', '.join(doc['names'])}")


def cmd_rotate(args):
    config, certs = _tls_home(args)
    from edge.mqtt.broker import BrokerError
    from edge.mqtt.service import broker_for
    try:
        fingerprint = certs.rotate(config.home, new_ca=args.ca, names=args.name)
    except certs.TlsError as exc:
        raise CliError(str(exc), "tls") from None
    try:
        broker_for(config).reload()
        loaded = "the broker loaded it"
    except BrokerError:
        loaded = "no broker runs now: it loads it when it starts"
    text = f"new server certificate for {', '.join(certs.server_names(config.home))}; {loaded}"
    if args.ca:
        text += (f"\nNEW CA {fingerprint}: restart the node (it announces the new fingerprint), "
                 "then approve every device again (smartshare device approve ID): their "
                 "pinned CA no longer matches")
    return {"ca_sha256": fingerprint, "new_ca": args.ca, "broker": loaded}, text
