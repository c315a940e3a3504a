"""Zero-config discovery on the LAN with mDNS/DNS-SD (python-zeroconf; DESIGN §5, §6,
docs/protocol.md §16.1).

The node advertises two services (each only when its port is set):

    _smartshare._tcp   port = p2p port; TXT txtvers=1, chain, node, role, version, api
    _mqtt._tcp         port = Mosquitto port (TLS); TXT txtvers=1, chain, node, prov, ca

``Browser`` finds them once; ``Watch`` follows them (added / removed) while it is open;
``PeerFinder`` keeps browsing ``_smartshare._tcp`` and hands the node each same-chain peer;
``find_gateway`` is what a device (or the simulators) calls to find a SmartShare broker and its
onboarding password. ``_mqtt._tcp`` is a generic service type (any
broker on the LAN may announce it), so only entries carrying both ``node`` and ``prov`` count
as SmartShare gateways.
"""

import asyncio
import ipaddress
import queue
import re
import socket
import threading
import time

from zeroconf import (InterfaceChoice, IPVersion, ServiceBrowser, ServiceInfo,
                      ServiceStateChange, Zeroconf)

SMARTSHARE_SERVICE = "_smartshare._tcp.local."
MQTT_SERVICE = "_mqtt._tcp.local."
TXT_VERSION = "1"
ROLES = ("agent", "light")
REGISTER_TIMEOUT_S = 10.0
_LABEL_BAD = re.compile(r"[^a-z0-9-]+")


class DiscoveryError(Exception):
    """Advertising failed (bad arguments, or the mDNS socket could not be used)."""


def service_type(name):
    """``_x._tcp`` / ``_x._tcp.local`` / ``_x._tcp.local.`` -> ``_x._tcp.local.``"""
    name = name.rstrip(".")
    if not name.endswith(".local"):
        name += ".local"
    return name + "."


def _zeroconf(interfaces):
    """A Zeroconf instance on ``interfaces`` (None = every interface). A list of IPv4 addresses
    keeps it IPv4-only (e.g. ``["127.0.0.1"]`` in tests)."""
    interfaces = _interface_list(interfaces)
    if interfaces is None:
        return Zeroconf(interfaces=InterfaceChoice.All)
    v4 = all(isinstance(i, str) and ipaddress.ip_address(i).version == 4 for i in interfaces)
    return Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only if v4 else None)


def _interface_list(interfaces):
    """``None``/``[]``/``""`` -> None (every interface); ``"a, b"`` or a list -> ``["a", "b"]``."""
    if not interfaces:
        return None
    if isinstance(interfaces, str):
        interfaces = interfaces.replace(",", " ").split()
    return [str(i) for i in interfaces]


def local_addresses():
    """The machine's IPv4 addresses other than loopback (``["127.0.0.1"]`` if it has none)."""
    import ifaddr  # a dependency of zeroconf
    found = [ip.ip for adapter in ifaddr.get_adapters() for ip in adapter.ips
             if isinstance(ip.ip, str) and not ip.ip.startswith("127.")]
    return sorted(set(found)) or ["127.0.0.1"]


def advertised_addresses(bind_hosts, interfaces=None):
    """The addresses to put in our A records: the ``interfaces`` when they are given, else the
    specific hosts the services are bound to, else (bound to 0.0.0.0) the LAN addresses."""
    chosen = _interface_list(interfaces)
    if chosen:
        return chosen
    hosts = [h for h in bind_hosts if h]
    if any(h in ("0.0.0.0", "::") for h in hosts) or not hosts:
        return local_addresses()
    return sorted(set(hosts))


def _hostname_label(node_name):
    """A valid DNS host label (the SRV target) from a free-form node name."""
    label = _LABEL_BAD.sub("-", node_name.lower()).strip("-")[:50] or "node"
    return f"smartshare-{label}" if not label.startswith("smartshare") else label


def _hex(value):
    return value.hex() if isinstance(value, (bytes, bytearray)) else str(value)


class Advertiser:
    """The node's services on the LAN. ``start`` registers them (probing for name conflicts:
    another instance with the same name makes ours ``"<name> (2)"``); ``stop`` sends goodbyes.
    A port of 0 leaves its service out (no p2p network: no ``_smartshare._tcp``). ``interfaces``
    are IP addresses to answer on (None: every interface); ``host_ip`` one or more addresses
    for the A/AAAA records."""

    def __init__(self, *, node_name, host_ip, api_port, p2p_port, mqtt_port, chain_id, node_id,
                 role, version, provision_password, interfaces=None, ca_sha256=""):
        if role not in ROLES:
            raise DiscoveryError(f"role must be one of {ROLES}, not {role!r}")
        self.node_name = str(node_name)
        self.host_ips = [host_ip] if isinstance(host_ip, str) else list(host_ip)
        for ip in self.host_ips:
            ipaddress.ip_address(ip)  # ValueError on a bad address
        self.interfaces = interfaces
        node = _hex(node_id)
        self.smartshare_txt = {"txtvers": TXT_VERSION, "chain": chain_id, "node": node,
                               "role": role, "version": str(version), "api": str(int(api_port))}
        self.mqtt_txt = {"txtvers": TXT_VERSION, "chain": chain_id, "node": node,
                         "prov": provision_password}
        if ca_sha256:    # the broker speaks TLS with a certificate of this CA (SHA-256, hex)
            self.mqtt_txt["ca"] = ca_sha256
        self.p2p_port, self.mqtt_port = int(p2p_port), int(mqtt_port)
        self._zc = None
        self._infos = []
        self._lock = threading.Lock()

    def _info(self, type_, port, txt):
        server = _hostname_label(self.node_name) + ".local."
        return ServiceInfo(type_, f"{self.node_name}.{type_}",
                           addresses=[socket.inet_pton(socket.AF_INET6 if ":" in ip
                                                       else socket.AF_INET, ip)
                                      for ip in self.host_ips],
                           port=port, properties=txt, server=server)

    @property
    def names(self):
        """The registered full service names (after any conflict renaming)."""
        return [info.name for info in self._infos]

    def start(self):
        with self._lock:
            if self._zc is not None:
                return
            infos = [self._info(type_, port, txt) for type_, port, txt in (
                (SMARTSHARE_SERVICE, self.p2p_port, self.smartshare_txt),
                (MQTT_SERVICE, self.mqtt_port, self.mqtt_txt)) if port]
            if not infos:
                raise DiscoveryError("nothing to advertise: neither a p2p nor an MQTT port")
            try:
                zc = _zeroconf(self.interfaces)
            except OSError as exc:
                raise DiscoveryError(f"cannot open the mDNS socket: {exc}") from None
            try:
                # Register the services concurrently: each takes ~1.5 s of probing/announcing.
                asyncio.run_coroutine_threadsafe(_register_all(zc, infos),
                                                 zc.loop).result(REGISTER_TIMEOUT_S)
            except Exception as exc:
                zc.close()
                raise DiscoveryError(f"mDNS registration failed: {exc!r}") from None
            self._zc, self._infos = zc, infos

    def stop(self):
        """Unregister (goodbye packets, TTL 0) and close the socket. Safe to call twice."""
        with self._lock:
            zc, self._zc = self._zc, None
            if zc is None:
                return
            try:
                zc.unregister_all_services()
            finally:
                zc.close()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


async def _register_all(zc, infos):
    tasks = [await zc.async_register_service(info, allow_name_change=True) for info in infos]
    await asyncio.gather(*tasks)


def _entry(info):
    addresses = info.parsed_addresses()
    v4 = [a for a in addresses if ":" not in a]
    props = {k: (v if v is not None else "") for k, v in info.decoded_properties.items()}
    return {"name": info.name[:-len(info.type) - 1] if info.name.endswith(info.type) else info.name,
            "fullname": info.name, "type": info.type,
            "host": (v4 or addresses or [info.server])[0], "addresses": addresses,
            "server": info.server, "port": info.port, "properties": props}


class Browser:
    """Finds the instances of one service type, e.g. ``Browser("_smartshare._tcp")`` for peers
    or ``Browser("_mqtt._tcp")`` for brokers."""

    def __init__(self, service_type_, interfaces=None):
        self.service_type = service_type(service_type_)
        self.interfaces = interfaces

    def find(self, timeout=5.0, chain_id=None, limit=None, require=()):
        """Browse for ``timeout`` seconds and return the resolved instances
        ``[{name, host, port, properties, fullname, type, addresses, server}]`` (properties: TXT
        as str -> str). ``chain_id`` keeps only TXT ``chain == chain_id``; ``require`` keeps only
        those carrying all these TXT keys; ``limit`` returns as soon as that many matched."""
        found = queue.Queue()

        def on_change(zeroconf, service_type, name, state_change):
            found.put((name, state_change))

        deadline = time.monotonic() + timeout
        results = {}
        zc = _zeroconf(self.interfaces)
        browser = None
        try:
            browser = ServiceBrowser(zc, self.service_type, handlers=[on_change])
            while limit is None or len(results) < limit:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    name, change = found.get(timeout=left)
                except queue.Empty:
                    break
                if change is ServiceStateChange.Removed:
                    results.pop(name, None)
                    continue
                left_ms = int(max(deadline - time.monotonic(), 0.2) * 1000)
                info = zc.get_service_info(self.service_type, name, timeout=min(left_ms, 3000))
                if info is None:
                    continue
                entry = _entry(info)
                if chain_id is not None and entry["properties"].get("chain") != chain_id:
                    continue
                if any(key not in entry["properties"] for key in require):
                    continue
                results[name] = entry
        finally:
            if browser is not None:
                browser.cancel()
            zc.close()
        return sorted(results.values(), key=lambda e: e["fullname"])


class Watch:
    """Follows one service type while open. Events are ``(full instance name, state)``, state
    ``"added"``, ``"updated"`` or ``"removed"`` (a goodbye, or a record expiring)::

        with Watch("_mqtt._tcp") as watch:
            watch.wait("gw._mqtt._tcp.local.", "added", timeout=10)
    """

    def __init__(self, service_type_, interfaces=None):
        self.service_type = service_type(service_type_)
        self.interfaces = interfaces
        self.seen = []
        self._events = queue.Queue()
        self._zc = self._browser = None

    def start(self):
        self._zc = _zeroconf(self.interfaces)
        self._browser = ServiceBrowser(self._zc, self.service_type, handlers=[self._on_change])
        return self

    def _on_change(self, zeroconf, service_type, name, state_change):
        self._events.put((name, state_change.name.lower()))

    def wait(self, name, state, timeout=10.0):
        """True once ``name`` has been seen in ``state`` (since the watch started), else False
        after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (name, state) not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                self.seen.append(self._events.get(timeout=left))
            except queue.Empty:
                return False
        return True

    def close(self):
        if self._zc is not None:
            self._browser.cancel()
            self._zc.close()
            self._zc = self._browser = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


def find_gateway(chain_id=None, timeout=5.0, interfaces=None):
    """The first SmartShare broker found (``_mqtt._tcp`` with TXT ``node`` and ``prov``, and
    ``chain == chain_id`` when given): ``{name, host, port, properties, ...}``, else None.
    ``properties["prov"]`` is the onboarding password, ``properties["chain"]`` the chain id."""
    found = Browser(MQTT_SERVICE, interfaces).find(timeout, chain_id=chain_id, limit=1,
                                                   require=("node", "prov", "chain"))
    return found[0] if found else None


def find_peers(chain_id=None, timeout=5.0, interfaces=None, limit=None):
    """SmartShare nodes on the LAN (``_smartshare._tcp``): ``[{name, host, port (p2p), properties
    (chain, node, role, version, api)}]``, browsing ``timeout`` seconds (or until ``limit``
    matched)."""
    return Browser(SMARTSHARE_SERVICE, interfaces).find(timeout, chain_id=chain_id, limit=limit,
                                                        require=("node", "chain"))


class PeerFinder:
    """Browses ``_smartshare._tcp`` for as long as it runs and calls ``on_peer(entry)`` (the
    ``Browser`` entry: host, port = p2p port, properties) for each node of ``chain_id`` other
    than ``own_node`` (hex), from a thread of its own, once per instance and address."""

    def __init__(self, chain_id, own_node, on_peer, interfaces=None, log=print):
        self.chain_id, self.own_node, self.on_peer = chain_id, own_node, on_peer
        self.interfaces, self.log = interfaces, log
        self._names = queue.Queue()
        self._known = set()
        self._zc = self._browser = self._thread = None

    def start(self):
        self._zc = _zeroconf(self.interfaces)
        self._thread = threading.Thread(target=self._resolve_forever, name="mdns-peers",
                                        daemon=True)
        self._thread.start()
        self._browser = ServiceBrowser(self._zc, SMARTSHARE_SERVICE, handlers=[self._on_change])
        return self

    def _on_change(self, zeroconf, service_type, name, state_change):
        if state_change is not ServiceStateChange.Removed:
            self._names.put(name)

    def _resolve_forever(self):
        while True:
            name = self._names.get()
            if name is None:
                return
            try:
                info = self._zc.get_service_info(SMARTSHARE_SERVICE, name, timeout=3000)
            except Exception as exc:  # the socket closed under us, a malformed record...
                self.log(f"discovery: cannot resolve {name}: {exc}")
                continue
            if info is not None:
                self._found(_entry(info))

    def _found(self, entry):
        props = entry["properties"]
        key = (entry["fullname"], entry["host"], entry["port"])
        if (props.get("chain") != self.chain_id or props.get("node") == self.own_node
                or not entry["port"] or key in self._known):
            return
        self._known.add(key)
        self.on_peer(entry)

    def stop(self):
        if self._zc is None:
            return
        self._names.put(None)
        self._browser.cancel()
        self._zc.close()
        self._thread.join(5)
        self._zc = self._browser = self._thread = None
