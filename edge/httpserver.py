"""A small HTTP/1.1 JSON server on asyncio streams, for the light node's local API.

Why not aiohttp (which the full node uses): importing it costs the process about 14 MB, half of
a light node's whole budget (30 MB). The API is local, JSON, one request per connection, so
this is all it takes: a strict request parser with limits (request line, headers, body), a
route table with ``{name}`` segments, JSON errors for everything that goes wrong (an unknown
route is ``404 not_found``, a known route with another method ``405 method_not_allowed``).
"""

import asyncio
import json
from urllib.parse import parse_qsl, unquote, urlsplit

MAX_HEAD = 16 * 1024
MAX_HEADERS = 64
READ_TIMEOUT_S = 10.0
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
           413: "Payload Too Large", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable"}


class HttpError(Exception):
    """An error answer: ``status``, a machine ``code`` and a sentence."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code = status, code


class Headers(dict):
    """Header fields by lower-case name; ``get`` takes any case."""

    def get(self, name, default=None):
        return super().get(name.lower(), default)


class Request:
    """One parsed request: ``method``, ``path``, ``query`` (dict), ``headers``, ``body``
    (bytes), ``content_length`` and the route's ``params``."""

    __slots__ = ("method", "path", "query", "headers", "body", "params", "content_length")

    def __init__(self, method, path, query, headers, body):
        self.method, self.path, self.query = method, path, query
        self.headers, self.body, self.params = headers, body, {}
        self.content_length = len(body)

    def json(self):
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise HttpError(400, "bad_request", "the body is not JSON") from None


class Response:
    """A JSON (or text) answer."""

    __slots__ = ("status", "body", "content_type", "headers")

    def __init__(self, status, body, content_type="application/json", headers=()):
        self.status, self.body, self.content_type, self.headers = status, body, content_type, \
            tuple(headers)


def json_response(doc, status=200):
    return Response(status, json.dumps(doc).encode())


def error_response(status, code, message):
    return json_response({"error": message, "code": code}, status)


class Router:
    """Routes ``(method, pattern)`` to ``async handler(request) -> Response``; a pattern's
    ``{name}`` segments become ``request.params``."""

    def __init__(self):
        self.routes = []

    def add(self, method, pattern, handler):
        self.routes.append((method, pattern.strip("/").split("/"), handler))

    def find(self, method, path):
        parts = path.strip("/").split("/")
        allowed = False
        for route_method, pattern, handler in self.routes:
            params = _match(pattern, parts)
            if params is None:
                continue
            if route_method == method:
                return handler, params
            allowed = True
        if allowed:
            raise HttpError(405, "method_not_allowed", f"{method} is not allowed on {path}")
        raise HttpError(404, "not_found", f"no route {path}")


def _match(pattern, parts):
    if len(pattern) != len(parts):
        return None
    params = {}
    for want, got in zip(pattern, parts):
        if want.startswith("{") and want.endswith("}"):
            if not got:
                return None
            params[want[1:-1]] = unquote(got)
        elif want != got:
            return None
    return params


class HttpServer:
    """Serves a Router on ``host:port``; ``body_limit(path)`` caps request bodies and
    ``check(request)`` runs before every handler (access control: None to go on, else
    ``(status, code, message)``; a 401 answer asks for a bearer token)."""

    def __init__(self, router, body_limit=lambda path: 64 * 1024, check=None, log=print):
        self.router, self.body_limit, self.check, self.log = router, body_limit, check, log
        self.server = None

    async def start(self, host, port):
        self.server = await asyncio.start_server(self._serve, host, port, limit=MAX_HEAD)
        return self

    @property
    def port(self):
        return self.server.sockets[0].getsockname()[1]

    async def close(self):
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader, writer):
        try:
            response = await self._answer(reader)
        except (ConnectionError, asyncio.IncompleteReadError):
            writer.close()
            return
        try:
            writer.write(_encode(response))
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _answer(self, reader):
        try:
            request = await asyncio.wait_for(self._read(reader), READ_TIMEOUT_S)
            handler, request.params = self.router.find(request.method, request.path)
            refused = self.check(request) if self.check is not None else None
            if refused is not None:
                status, code, message = refused
                extra = (("WWW-Authenticate", "Bearer"),) if status == 401 else ()
                response = error_response(status, code, message)
                response.headers = extra
                return response
            return await handler(request)
        except HttpError as exc:
            return error_response(exc.status, exc.code, str(exc))
        except asyncio.TimeoutError:
            return error_response(408, "timeout", "the request was not sent in time")
        except Exception as exc:  # noqa: BLE001 - the answer says so; the server goes on
            self.log(f"api: {type(exc).__name__}: {exc}")
            return error_response(500, "internal", f"{type(exc).__name__}: {exc}")

    async def _read(self, reader):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise HttpError(413, "too_large", "the request head is too large") from None
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise
            raise HttpError(400, "bad_request", "the request ended early") from None
        lines = head[:-4].decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ")
        except ValueError:
            raise HttpError(400, "bad_request", "a malformed request line") from None
        if not version.startswith("HTTP/1."):
            raise HttpError(400, "bad_request", f"unsupported protocol {version}")
        if len(lines) - 1 > MAX_HEADERS:
            raise HttpError(413, "too_large", "too many headers")
        headers = Headers()
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name.strip():
                raise HttpError(400, "bad_request", "a malformed header line")
            headers[name.strip().lower()] = value.strip()
        split = urlsplit(target)
        body = await self._body(reader, headers, split.path)
        return Request(method.upper(), split.path, dict(parse_qsl(split.query)), headers, body)

    async def _body(self, reader, headers, path):
        if "transfer-encoding" in headers:
            raise HttpError(400, "bad_request", "send the body with a Content-Length")
        raw = headers.get("content-length", "0")
        if not raw.isdigit():
            raise HttpError(400, "bad_request", "Content-Length must be a number")
        length = int(raw)
        if length > self.body_limit(path):
            raise HttpError(413, "too_large", f"a body of {length} bytes is over the limit of "
                            f"{self.body_limit(path)}")
        return await reader.readexactly(length) if length else b""


def _encode(response):
    reason = REASONS.get(response.status, "Status")
    head = [f"HTTP/1.1 {response.status} {reason}", f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}", "Connection: close"]
    head += [f"{name}: {value}" for name, value in response.headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body
