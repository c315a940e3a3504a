"""The light node's small HTTP server (edge/httpserver.py) behind the API's access guard: JSON
errors for unknown routes and methods, bad requests, limits, tokens, Host checks — over a real
socket on 127.0.0.1."""

import asyncio
import json

import pytest

from edge.api_access import Access, allowed_hosts
from edge.api_tokens import TokenStore, ensure_cli_token, cli_token
from edge.httpserver import HttpServer, Router, json_response


async def echo(request):
    return json_response({"params": request.params, "query": request.query,
                          "body": request.json()})


async def serve(tmp_path):
    ensure_cli_token(str(tmp_path))
    router = Router()
    router.add("GET", "/v1/things/{name}", echo)
    router.add("POST", "/v1/txs", echo)
    access = Access(TokenStore(str(tmp_path)), allowed_hosts("127.0.0.1"), 0)
    server = await HttpServer(router, body_limit=lambda path: 1024 if path == "/v1/txs" else 16,
                              check=access.check, log=lambda line: None).start("127.0.0.1", 0)
    access.port = server.port
    return server


async def exchange(port, raw):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, json.loads(body), head.decode()


def request(method, path, body=b"", headers=None, host="127.0.0.1"):
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.mark.parametrize("raw, status, code", [
    (request("GET", "/v1/nothing"), 404, "not_found"),
    (request("DELETE", "/v1/things/x"), 405, "method_not_allowed"),
    (request("POST", "/v1/txs", b"{}"), 401, "unauthorized"),
    (request("GET", "/v1/things/x", host="evil.example"), 403, "forbidden_host"),
    (b"GARBAGE\r\n\r\n", 400, "bad_request"),
    (b"GET /v1/things/x HTTP/2\r\nHost: 127.0.0.1\r\n\r\n", 400, "bad_request"),
    (request("GET", "/v1/things/x", b"0123456789abcdefXYZ"), 413, "too_large"),
    (b"GET /v1/things/x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: x\r\n\r\n", 400,
     "bad_request"),
    (b"GET /v1/things/x HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon here\r\n\r\n", 400,
     "bad_request"),
])
def test_every_refusal_is_a_json_error(tmp_path, raw, status, code):
    async def scenario():
        server = await serve(tmp_path)
        try:
            return await exchange(server.port, raw)
        finally:
            await server.close()
    got, doc, head = asyncio.run(scenario())
    assert (got, doc["code"]) == (status, code) and doc["error"]
    assert "Content-Type: application/json" in head
    if status == 401:
        assert "WWW-Authenticate: Bearer" in head


def test_a_token_opens_the_changing_routes_and_params_are_decoded(tmp_path):
    async def scenario():
        server = await serve(tmp_path)
        try:
            token = cli_token(str(tmp_path))
            posted = await exchange(server.port, request(
                "POST", "/v1/txs", b'{"txs": []}', {"Authorization": f"Bearer {token}"}))
            got = await exchange(server.port, request("GET", "/v1/things/a%20b?height=7"))
            return posted, got
        finally:
            await server.close()
    (status, doc, _), (status2, doc2, _) = asyncio.run(scenario())
    assert status == 200 and doc["body"] == {"txs": []}
    assert status2 == 200 and doc2["params"] == {"name": "a b"} and doc2["query"] == {"height": "7"}
