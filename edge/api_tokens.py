"""Bearer tokens of the local API (docs/api.md "Access"), kept in the node's home:

    api_token        the token this home's CLI sends (mode 0600; made by init or the node's
                     first start)
    api_tokens.json  one token per client, by name, only their SHA-256 kept (mode 0600):
                     ``smartshare api-token create|revoke|list``

The node re-reads both when they change, so a revoked token stops working at once.
"""

import hashlib
import hmac
import json
import os
import re
import secrets
import time

from chain.secretfile import SecretFileError, check_private, read_secret, write_secret

TOKEN_FILE = "api_token"
CLIENTS_FILE = "api_tokens.json"
CLI_NAME = "cli"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")


class TokenError(Exception):
    """A token operation that cannot be done; the message says why."""


def new_token():
    return "sst_" + secrets.token_urlsafe(32)


def ensure_cli_token(home):
    """The home's CLI token, made (mode 0600) when there is none yet."""
    path = os.path.join(home, TOKEN_FILE)
    if not os.path.lexists(path):
        write_secret(path, new_token() + "\n")
    return read_secret(path)


def cli_token(home):
    """The home's CLI token, or None when the home has none (or it cannot be read)."""
    try:
        return read_secret(os.path.join(home, TOKEN_FILE))
    except SecretFileError:
        return None


def _digest(token):
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """The tokens a node accepts: the home's CLI token and the named client tokens."""

    def __init__(self, home):
        self.home = home
        self._seen = {}          # path -> (mtime_ns, size, inode) when last read
        self._digests = {}       # sha256 hex -> client name

    # -- the owner's side (CLI) -----------------------------------------------------------------

    def create(self, name):
        """A new token for client ``name``; only its digest is kept, so show it now."""
        if not NAME_RE.match(name or "") or name == CLI_NAME:
            raise TokenError(f"token name {name!r}: use 1-40 of a-z, 0-9, '_', '.', '-' (not "
                             f"{CLI_NAME!r}, the CLI's own)")
        doc = self._clients()
        if name in doc:
            raise TokenError(f"a token named {name!r} exists; revoke it first or pick another "
                             "name")
        token = new_token()
        doc[name] = {"sha256": _digest(token), "created_ms": time.time_ns() // 1_000_000}
        self._save(doc)
        return token

    def revoke(self, name):
        doc = self._clients()
        if name not in doc:
            raise TokenError(f"no token named {name!r}; `smartshare api-token list` shows them")
        del doc[name]
        self._save(doc)

    def list(self):
        return [{"name": name, "created_ms": entry.get("created_ms")}
                for name, entry in sorted(self._clients().items())]

    # -- the node's side ------------------------------------------------------------------------

    def accepts(self, token):
        """The client name ``token`` belongs to, or None."""
        self._refresh()
        digest = _digest(token)
        for known, name in self._digests.items():
            if hmac.compare_digest(known, digest):
                return name
        return None

    def _refresh(self):
        paths = [os.path.join(self.home, TOKEN_FILE), os.path.join(self.home, CLIENTS_FILE)]
        stamps = {}
        for path in paths:
            try:
                st = os.stat(path)
                stamps[path] = (st.st_mtime_ns, st.st_size, st.st_ino)
            except FileNotFoundError:
                stamps[path] = None
        if stamps == self._seen:
            return
        digests = {}
        token = cli_token(self.home)
        if token:
            digests[_digest(token)] = CLI_NAME
        try:
            for name, entry in self._clients().items():
                digests[entry["sha256"]] = name
        except (TokenError, KeyError, TypeError):
            pass   # a damaged file accepts no client token (the CLI's still works)
        self._seen, self._digests = stamps, digests

    # -- the file -------------------------------------------------------------------------------

    def _clients(self):
        path = os.path.join(self.home, CLIENTS_FILE)
        if not os.path.exists(path):
            return {}
        try:
            check_private(path)
            with open(path) as f:
                doc = json.load(f)
        except (SecretFileError, OSError, ValueError) as exc:
            raise TokenError(f"{path} cannot be used ({exc})") from None
        if not isinstance(doc, dict):
            raise TokenError(f"{path} is not a JSON object")
        return doc

    def _save(self, doc):
        write_secret(os.path.join(self.home, CLIENTS_FILE), json.dumps(doc, indent=2) + "\n")
