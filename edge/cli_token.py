"""``smartshare api-token create|revoke|list``: a bearer token per client of the local API
(a dashboard, a script on another machine), like Syncthing's API keys. The node only keeps
their SHA-256 (``<home>/api_tokens.json``, mode 0600) and sees a change at once."""

from edge.api_tokens import CLIENTS_FILE, TokenError, TokenStore
from edge.cli_base import CliError, load_config


def add_parsers(sub, common):
    group = sub.add_parser("api-token", help="tokens for clients of the local API").add_subparsers(
        dest="token_command", required=True, metavar="TOKEN_COMMAND")
    p = group.add_parser("create", parents=[common], help="make a token (shown once)")
    p.add_argument("name", help="who will use it, e.g. dashboard")
    p.set_defaults(func=cmd_create)
    p = group.add_parser("revoke", parents=[common], help="stop a token working, at once")
    p.add_argument("name")
    p.set_defaults(func=cmd_revoke)
    p = group.add_parser("list", parents=[common], help="the names of the tokens")
    p.set_defaults(func=cmd_list)


def _store(args):
    return TokenStore(load_config(args).home)


def cmd_create(args):
    try:
        token = _store(args).create(args.name)
    except TokenError as exc:
        raise CliError(str(exc), "token") from None
    return ({"name": args.name, "token": token},
            f"token {args.name!r}: {token}\nIt is shown only now; send it as "
            "\"Authorization: Bearer <token>\". Revoke it with: smartshare api-token revoke "
            f"{args.name}")


def cmd_revoke(args):
    try:
        _store(args).revoke(args.name)
    except TokenError as exc:
        raise CliError(str(exc), "token") from None
    return {"name": args.name, "revoked": True}, f"revoked {args.name!r}: it no longer works"


def cmd_list(args):
    try:
        tokens = _store(args).list()
    except TokenError as exc:
        raise CliError(str(exc), "token") from None
    lines = [f"{len(tokens)} client token(s) in {CLIENTS_FILE} (the CLI uses api_token)"]
    lines += [f"  {t['name']}" for t in tokens]
    return {"tokens": tokens}, "\n".join(lines)
