"""Who may use the local API, and how much (docs/api.md "Access").

Every request must name an allowed host in ``Host`` (so a web page that rebinds its own DNS name
to the gateway's address is refused), and an ``Origin``, when the browser sends one, must be an
allowed host on the API's port (so another site's page cannot drive it). Everything but ``GET``
needs ``Authorization: Bearer <token>`` (``api_tokens.py``). Bodies are limited per route.
"""

import socket

SMALL_BODY = 64 << 10            # every route but the one that takes transactions in bulk
TXS_BODY = 8 << 20               # POST /v1/txs: up to 10,000 transactions in hex
SAFE_METHODS = ("GET", "HEAD")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def exposed_warning(host, port):
    return [f"WARNING: the local API listens on {host}:{port}, beyond this machine, WITHOUT TLS:",
            "WARNING: bearer tokens and everything the API answers cross the network in clear;",
            "WARNING: set [api] host = \"127.0.0.1\" and reach it over SSH, or put it behind TLS."]


def allowed_hosts(bind_host, extra=(), machine_addresses=None):
    """The names a request's ``Host`` may carry: loopback, the address the API is bound to, and,
    bound to every address, the machine's own addresses and names; plus ``extra``."""
    hosts = set(LOOPBACK_NAMES) | {h.lower() for h in extra}
    if bind_host in ("0.0.0.0", "::", ""):
        hosts.update(machine_addresses if machine_addresses is not None else _machine_names())
    else:
        hosts.add(bind_host.lower())
    return hosts


def _machine_names():
    from edge.discovery import local_addresses   # ifaddr comes with zeroconf
    name = socket.gethostname().lower()
    return set(local_addresses()) | {name, f"{name}.local"}


def host_of(value):
    """The host part of a ``Host`` header or an origin's authority, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else None
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def port_of(value, default):
    value = value.strip()
    tail = value.rsplit("]", 1)[-1] if value.startswith("[") else value
    if tail.count(":") != 1:
        return default
    port = tail.rsplit(":", 1)[1]
    return int(port) if port.isdigit() else None


class Access:
    """The API's guard: ``check(request)`` is None, or ``(status, code, message)``."""

    def __init__(self, tokens, hosts, port, origins=()):
        self.tokens, self.hosts, self.port = tokens, hosts, port
        self.origins = {o.rstrip("/").lower() for o in origins}

    def check(self, request):
        host = request.headers.get("Host")
        if host is None or host_of(host) not in self.hosts:
            return 403, "forbidden_host", (
                f"Host {host!r} is not one of this node's names; add it to [api_access] hosts "
                "in config.toml if you reach the node by that name")
        origin = request.headers.get("Origin")
        if origin is not None and not self._origin_ok(origin):
            return 403, "forbidden_origin", (
                f"requests from pages of {origin!r} are refused; add it to [api_access] origins "
                "in config.toml to allow them")
        limit = TXS_BODY if request.path == "/v1/txs" else SMALL_BODY
        if request.content_length is not None and request.content_length > limit:
            return 413, "too_large", f"request body over {limit} bytes"
        if request.method not in SAFE_METHODS:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token or self.tokens.accepts(token) is None:
                return 401, "unauthorized", (
                    "this request changes the node: send Authorization: Bearer <token> (the "
                    "CLI reads <home>/api_token; `smartshare api-token create NAME` makes one "
                    "per client)")
        return None

    def _origin_ok(self, origin):
        origin = origin.strip().rstrip("/").lower()
        if origin in self.origins:
            return True
        scheme, sep, authority = origin.partition("://")
        if not sep or scheme not in ("http", "https"):
            return False
        default = 443 if scheme == "https" else 80
        return host_of(authority) in self.hosts and port_of(authority, default) == self.port

    def middleware(self):
        from aiohttp import web  # here: a light node uses check() without aiohttp (RSS)

        @web.middleware
        async def guard(request, handler):
            refused = self.check(request)
            if refused is not None:
                status, code, message = refused
                headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
                return web.json_response({"error": message, "code": code}, status=status,
                                         headers=headers)
            limit = TXS_BODY if request.path == "/v1/txs" else SMALL_BODY
            return await handler(request.clone(client_max_size=limit))
        return guard
