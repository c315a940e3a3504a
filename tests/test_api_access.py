"""Who may use the local API (docs/api.md "Access"), against a real node process: a web page's
cross-origin request, a DNS-rebinding Host, a request without (or with a revoked) token, a huge
body and a query that would spin are all refused with a clear error, and nothing changes."""

import http.client
import json

import pytest

from edge.api import QUERY_MAX_GAS
from edge.api_tokens import TokenStore
from tests import nodeproc

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def node(module_node_factory):
    home = module_node_factory.home("access", mqtt_port=nodeproc.free_port())
    return module_node_factory.node(home)


def request(node, method, path, body=None, token=None, host=None, origin=None):
    """``(status, JSON answer)`` of a raw HTTP request with exactly these headers."""
    conn = http.client.HTTPConnection("127.0.0.1", node.home.api_port, timeout=30)
    headers = {"Host": host or f"127.0.0.1:{node.home.api_port}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if origin:
        headers["Origin"] = origin
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body else None)
    if data is not None:
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    raw = response.read()
    conn.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw


def join_request(node):
    """A pending device, recorded through the broker as a real device would."""
    from nacl.signing import SigningKey

    from edge.config import load
    from edge.mqtt.broker import PROVISION_USER
    from edge.mqtt.provision import join_request as make_request
    from edge.mqtt.topics import device_id_of, provision_topic
    from tests.mqttkit import connect, wait_for
    config = load(node.home.path)
    key = SigningKey.generate()
    device_id = device_id_of(bytes(key.verify_key))
    client = connect(config.mqtt_port, PROVISION_USER, config.mqtt_provision_password,
                     device_id.hex())
    client.publish(provision_topic(device_id), make_request(bytes(key.verify_key), "weather"),
                   qos=1).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()
    wait_for("the pending device", lambda: request(node, "GET", f"/v1/devices/{device_id.hex()}")
             [0] == 200)
    return device_id.hex()


def status_of(node, device_id):
    return request(node, "GET", f"/v1/devices/{device_id}")[1]["status"]


def test_state_changes_need_a_token_and_the_right_host_and_origin(node):
    device = join_request(node)
    token = node.client().token
    approve = f"/v1/devices/{device}/approve"
    port = node.home.api_port
    # A page on another site posting with the user's browser: no token, foreign Origin.
    status, doc = request(node, "POST", approve, {}, origin="https://evil.example")
    assert (status, doc["code"]) == (403, "forbidden_origin")
    status, doc = request(node, "POST", approve, {})
    assert (status, doc["code"]) == (401, "unauthorized") and "Bearer" in doc["error"]
    status, doc = request(node, "POST", approve, {}, token="sst_guessed")
    assert (status, doc["code"]) == (401, "unauthorized")
    # DNS rebinding: the page's own name now points at the gateway; reads and writes refused.
    for method, path in (("GET", "/v1/devices"), ("POST", approve)):
        status, doc = request(node, method, path, {} if method == "POST" else None, token=token,
                              host=f"evil.example:{port}")
        assert (status, doc["code"]) == (403, "forbidden_host")
    assert status_of(node, device) == "pending"
    # The node's own page (same origin) with the token may.
    status, doc = request(node, "POST", approve, {}, token=token,
                          origin=f"http://localhost:{port}")
    assert status == 200 and doc["status"] == "approved"


def test_client_tokens_work_until_revoked(node):
    store = TokenStore(node.home.path)
    token = store.create("dashboard")
    device = join_request(node)
    status, _ = request(node, "POST", f"/v1/devices/{device}/revoke", {}, token=token)
    assert status == 200 and status_of(node, device) == "revoked"
    store.revoke("dashboard")
    status, doc = request(node, "POST", f"/v1/devices/{device}/approve", {}, token=token)
    assert (status, doc["code"]) == (401, "unauthorized")
    assert status_of(node, device) == "revoked"
    listed = node.home.cli("api-token", "list", "--json", check=True).json()
    assert listed["tokens"] == []


def test_bodies_are_limited(node):
    token = node.client().token
    status, doc = request(node, "POST", "/v1/devices/0011223344556677/approve",
                          b"{" + b" " * (1 << 20) + b"}", token=token)
    assert (status, doc["code"]) == (413, "too_large")


def test_a_query_is_capped_far_below_a_transaction(node, tmp_path):
    source = tmp_path / "spin.lua"
    source.write_text("function init() end\nfunction spin() local i = 0\n"
                      "  while true do i = i + 1 end end\nfunction hello() return 42 end\n")
    deployed = node.home.cli("contract", "deploy", str(source), "--wait", "--json",
                             check=True).json()
    path = f"/v1/contracts/{deployed['contract']}/query"
    token = node.client().token
    status, doc = request(node, "POST", path, {"method": "spin", "args": []}, token=token)
    assert status == 200 and not doc["ok"] and "gas" in doc["error"]
    assert doc["gas_used"] <= QUERY_MAX_GAS < node.status()["params"]["max_gas_per_tx"] // 10
    status, doc = request(node, "POST", path, {"method": "hello", "args": []}, token=token)
    assert (status, doc["return"]) == (200, 42)


def test_an_api_bound_beyond_loopback_warns(module_node_factory):
    from edge.config import load
    home = module_node_factory.home("exposed")
    config = load(home.path)
    config.api_host = "0.0.0.0"
    config.save()
    exposed = module_node_factory.node(home)
    assert "WARNING: the local API listens on 0.0.0.0" in exposed.log_tail()
    status, doc = request(exposed, "GET", "/v1/status", host=f"evil.example:{home.api_port}")
    assert status == 403
