"""Zero-config discovery (edge/discovery.py, docs/protocol.md §16.1) with real mDNS on loopback.

Every advertiser gets a fresh chain id and instance name, so runs in parallel (or other mDNS
traffic on the machine) cannot be mistaken for ours. Absence is checked with a bounded browse,
presence and goodbyes by waiting on events.
"""

import secrets
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from zeroconf import ServiceInfo

from edge import discovery
from edge.config import load
from edge.mqtt.certs import ca_fingerprint
from edge.discovery import (MQTT_SERVICE, SMARTSHARE_SERVICE, Advertiser, Browser, Watch,
                            find_gateway, find_peers)
from edge.testnet import free_ports
from tests.mqttkit import wait_for

LOOPBACK = ["127.0.0.1"]


def advertiser(chain_id, p2p_port=9100, mqtt_port=1900, **overrides):
    args = dict(node_name=f"gw-{secrets.token_hex(4)}", host_ip="127.0.0.1", api_port=8645,
                p2p_port=p2p_port, mqtt_port=mqtt_port, chain_id=chain_id,
                node_id=secrets.token_bytes(32), role="agent", version="0.1.0",
                provision_password=secrets.token_urlsafe(9), interfaces=LOOPBACK)
    args.update(overrides)
    return Advertiser(**args)


def start_all(*services):
    """Start advertisers (and raw zeroconf registrations) in parallel: each probes ~2 s."""
    errors = []

    def run(start):
        try:
            start()
        except Exception as exc:  # surfaced below
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(s,)) for s in services]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


@pytest.fixture(scope="module")
def lan():
    """Two gateways on different chains, plus a plain (non-SmartShare) broker."""
    chain_a, chain_b = f"chain-a-{secrets.token_hex(4)}", f"chain-b-{secrets.token_hex(4)}"
    a = advertiser(chain_a, p2p_port=9101, mqtt_port=1901)
    b = advertiser(chain_b, p2p_port=9102, mqtt_port=1902)
    plain_zc = discovery._zeroconf(LOOPBACK)
    plain = ServiceInfo(MQTT_SERVICE, f"plain-{secrets.token_hex(4)}.{MQTT_SERVICE}",
                        addresses=[socket.inet_aton("127.0.0.1")], port=1883,
                        properties={"chain": chain_a}, server="plain-broker.local.")
    try:
        start_all(a.start, b.start, lambda: plain_zc.register_service(plain))
        yield {"a": a, "b": b, "chain_a": chain_a, "chain_b": chain_b, "plain": plain}
    finally:
        a.stop()
        b.stop()
        plain_zc.close()


def test_advertiser_registers_both_services(lan):
    a = lan["a"]
    assert a.names == [f"{a.node_name}.{SMARTSHARE_SERVICE}", f"{a.node_name}.{MQTT_SERVICE}"]
    peers = find_peers(lan["chain_a"], timeout=10, interfaces=LOOPBACK, limit=1)
    assert [(p["name"], p["host"], p["port"]) for p in peers] == [(a.node_name, "127.0.0.1", 9101)]
    assert peers[0]["properties"] == {"txtvers": "1", "chain": lan["chain_a"],
                                      "node": a.smartshare_txt["node"], "role": "agent",
                                      "version": "0.1.0", "api": "8645"}
    gateway = find_gateway(lan["chain_a"], timeout=10, interfaces=LOOPBACK)
    assert (gateway["name"], gateway["host"], gateway["port"]) == (a.node_name, "127.0.0.1", 1901)
    assert gateway["properties"] == {"txtvers": "1", "chain": lan["chain_a"],
                                     "node": a.smartshare_txt["node"],
                                     "prov": a.mqtt_txt["prov"]}


def test_other_chains_and_plain_brokers_are_filtered_out(lan):
    a, b = lan["a"], lan["b"]
    # Chain b's gateway is on the air (found when asked for) ...
    assert find_gateway(lan["chain_b"], timeout=10, interfaces=LOOPBACK)["port"] == 1902
    # ... and so is a plain broker announcing chain a without node/prov; yet, over the same
    # two seconds, a browse for chain a sees only gateway a, in both service types.
    with ThreadPoolExecutor(3) as pool:
        everything = pool.submit(Browser(MQTT_SERVICE, LOOPBACK).find, timeout=2)
        peers = pool.submit(find_peers, lan["chain_a"], timeout=2, interfaces=LOOPBACK)
        gateways = pool.submit(Browser(MQTT_SERVICE, LOOPBACK).find, timeout=2,
                               chain_id=lan["chain_a"], require=("node", "prov", "chain"))
    assert {a.names[1], b.names[1], lan["plain"].name} <= \
        {e["fullname"] for e in everything.result()}
    assert [p["name"] for p in peers.result()] == [a.node_name]
    assert [g["name"] for g in gateways.result()] == [a.node_name]


def test_stop_sends_goodbyes_and_port_zero_is_left_out():
    chain = f"chain-c-{secrets.token_hex(4)}"
    c = advertiser(chain, p2p_port=0, mqtt_port=1903)
    with Watch(MQTT_SERVICE, LOOPBACK) as watch:
        c.start()
        try:
            assert c.names == [f"{c.node_name}.{MQTT_SERVICE}"]   # no p2p: no _smartshare._tcp
            assert watch.wait(c.names[0], "added", timeout=10)
        finally:
            c.stop()
        assert watch.wait(c.names[0], "removed", timeout=10), watch.seen
    assert find_gateway(chain, timeout=1.5, interfaces=LOOPBACK) is None
    c.stop()  # twice is fine


def test_nothing_to_advertise_is_an_error():
    with pytest.raises(discovery.DiscoveryError, match="nothing to advertise"):
        advertiser("x", p2p_port=0, mqtt_port=0).start()
    with pytest.raises(discovery.DiscoveryError, match="role"):
        advertiser("x", role="boss")


def test_advertised_addresses():
    assert discovery.advertised_addresses(["0.0.0.0"], "127.0.0.1") == ["127.0.0.1"]
    assert discovery.advertised_addresses(["0.0.0.0"], ["10.0.0.2", "10.0.0.3"]) == \
        ["10.0.0.2", "10.0.0.3"]
    assert discovery.advertised_addresses(["192.168.1.5", None]) == ["192.168.1.5"]
    lan_ips = discovery.advertised_addresses(["0.0.0.0"])
    assert lan_ips == discovery.local_addresses() and lan_ips
    assert all(not ip.startswith("127.") for ip in lan_ips) or lan_ips == ["127.0.0.1"]


@pytest.mark.slow
def test_node_advertises_its_broker_and_p2p_port(node_factory):
    mqtt_port, p2p_port = free_ports(2)
    home = node_factory.home("gateway", mqtt_port=mqtt_port)
    config = load(home.path)
    config.p2p_port, config.advertise, config.discovery_interfaces = p2p_port, True, LOOPBACK
    config.save()
    node = node_factory.node(home)
    pubkey = home.client().get("/v1/status")["node_pubkey"]

    gateway = find_gateway(home.chain_id, timeout=15, interfaces=LOOPBACK)
    assert gateway is not None, node.log_tail(20)
    # Devices are sent to the TLS listener, with the fingerprint of the CA to pin.
    assert (gateway["host"], gateway["port"]) == ("127.0.0.1", config.mqtt_tls_port)
    assert gateway["properties"] == {"txtvers": "1", "chain": home.chain_id, "node": pubkey,
                                     "prov": config.mqtt_provision_password,
                                     "ca": ca_fingerprint(home.path)}
    peers = find_peers(home.chain_id, timeout=10, interfaces=LOOPBACK, limit=1)
    assert [(p["port"], p["properties"]["api"], p["properties"]["node"]) for p in peers] == \
        [(p2p_port, str(home.api_port), pubkey)]

    with Watch(MQTT_SERVICE, LOOPBACK) as watch:
        assert watch.wait(gateway["fullname"], "added", timeout=10)
        node.stop()
        assert watch.wait(gateway["fullname"], "removed", timeout=10), watch.seen


@pytest.mark.slow
def test_nodes_find_each_other_by_mdns(tmp_path, node_factory):
    """Two testnet nodes with no seeds at all, advertising on loopback, find each other's
    ``_smartshare._tcp`` and connect."""
    from edge import testnet
    from tests import nodeproc
    manifest = testnet.create(str(tmp_path / "net"), 2, slot_ms=500)
    homes = []
    for entry in manifest["nodes"]:
        config = load(entry["home"])
        config.seeds, config.advertise, config.discovery_interfaces = [], True, LOOPBACK
        config.save()
        homes.append(nodeproc.NodeHome(entry["home"], config.api_port,
                                       {"chain_id": manifest["chain_id"]}))
    nodes = [node_factory.node(home) for home in homes]
    for home in homes:
        wait_for("a peer", lambda h=home: h.client().get("/v1/peers")["peers"])
    # At least one dialled the other after finding it (the other may have been dialled first).
    assert any("discovery: found peer 127.0.0.1:" in node.log_tail(50) for node in nodes), \
        [node.log_tail(10) for node in nodes]
