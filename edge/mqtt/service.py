"""The node's devices, end to end: the broker's files (and, in development, its process), the
zero-loss bridge, the optional Home Assistant link, and the owner's approve/revoke, which hands a
device its credentials sealed to its key and cuts a revoked one off at once (SIGHUP makes
Mosquitto drop it)."""

import os
import threading

from edge.mqtt import certs
from edge.mqtt.bridge import Bridge, BridgeMetrics
from edge.mqtt.broker import BRIDGE_USER, Broker, TlsListener
from edge.mqtt.devices import APPROVED, PENDING, DeviceError, DeviceRegistry
from edge.mqtt.homeassistant import HomeAssistantLink
from edge.mqtt.pinning import client_context, fingerprint
from edge.mqtt.provision import seal_credentials
from edge.mqtt.retention import Retention
from edge.mqtt.topics import CA_TOPIC, credentials_topic


def broker_for(config):
    """The node's Broker: the plaintext listener on loopback (``[mqtt]``, for the node's own
    clients) and the TLS listener devices use (``[mqtt_tls]``), its certificates made first
    when the home has none yet (certs.py)."""
    tls = None
    if config.mqtt_tls_port:
        certs.ensure(config.home)
        tls = TlsListener(config.mqtt_tls_host, config.mqtt_tls_port,
                          certs.tls_path(config.home, certs.SERVER_CERT),
                          certs.tls_path(config.home, certs.SERVER_KEY))
    return Broker(config.path(config.mqtt_dir), config.mqtt_host, config.mqtt_port,
                  config.mqtt_bridge_password, config.mqtt_provision_password,
                  home_assistant_password=config.ha_password if config.ha_enabled else "",
                  tls=tls, market_password=config.market_password)


class DeviceService:
    """Devices of one node: registry, broker, bridge and (``[homeassistant] enabled``) the
    Home Assistant link, fed by the bridge's commits."""

    def __init__(self, config, store, chain_id, node_id, log=print, metrics_registry=None):
        self.config, self.chain_id, self.log = config, chain_id, log
        self.registry = DeviceRegistry(store)
        self.broker = broker_for(config)
        self.ca_pem = certs.ca_pem(config.home) if config.mqtt_tls_port else None
        host, port = self.broker.local_address
        context = None if config.mqtt_port else client_context(self.ca_pem)
        self.commit_listeners = []   # more readers of the bridge's commits (the agent)
        self.home_assistant = None
        if config.ha_enabled:
            self.home_assistant = HomeAssistantLink(
                self.registry, host=host, port=port, tls_context=context,
                username=BRIDGE_USER, password=config.mqtt_bridge_password,
                node_id=node_id.hex()[:16], discovery_prefix=config.ha_discovery_prefix, log=log)
        self.bridge = Bridge(store, self.registry, host=host, port=port, tls_context=context,
                             username=BRIDGE_USER, password=config.mqtt_bridge_password,
                             client_id=f"smartshare-bridge-{node_id.hex()[:16]}",
                             chain_id=chain_id, log=log,
                             metrics=BridgeMetrics(metrics_registry)
                             if metrics_registry is not None else None,
                             on_commit=self._on_commit,
                             on_subscribed=self.broker.save,
                             retention=Retention(store.path, config.frame_retention_days,
                                                 config.frame_budget_mb, config.min_free_mb))

    def _on_commit(self, committed, time_ns):
        if self.home_assistant is not None:
            self.home_assistant.on_commit(committed, time_ns)
        for listener in self.commit_listeners:
            listener(committed, time_ns)

    def start(self):
        """Write the broker's files from the registry, start Mosquitto when the node runs its
        own, and connect the bridge."""
        self.broker.write_config(self._approved_users())
        if self.config.mqtt_run_broker:
            self.broker.start()
        self.bridge.start()
        if self.ca_pem is not None:   # what a joining device checks against its fingerprint
            self.bridge.publish(CA_TOPIC, self.ca_pem.encode(), qos=1, retain=True)
        if self.home_assistant is not None:
            self.home_assistant.start()
        self.log(f"devices: broker {self.listeners()}, "
                 f"{len(self.registry.approved())} approved device(s)")

    def ca_fingerprint(self):
        """The gateway CA's SHA-256 (hex), announced by mDNS; "" without TLS."""
        return fingerprint(self.ca_pem) if self.ca_pem else ""

    def listeners(self):
        config = self.config
        out = [f"{config.mqtt_host}:{config.mqtt_port} (plaintext)"] if config.mqtt_port else []
        if config.mqtt_tls_port:
            out.append(f"{config.mqtt_tls_host}:{config.mqtt_tls_port} (TLS, CA "
                       f"{fingerprint(self.ca_pem)[:16]})")
        return ", ".join(out)

    def stop(self):
        if self.home_assistant is not None:
            self.home_assistant.stop()
        self.bridge.stop()
        self.broker.stop()

    def approve(self, device_id):
        """Approve a device: its MQTT user, a broker reload, its sealed credentials."""
        return self.approve_many([device_id])[0]

    def approve_many(self, device_ids):
        """Approve devices (a fleet) with one broker reload; each gets its sealed credentials.
        Every id must be known and not approved yet, else nothing is done (DeviceError)."""
        device_ids = list(dict.fromkeys(bytes(d) for d in device_ids))
        for device_id in device_ids:
            record = self.registry.get(device_id)
            if record is None or record["status"] == APPROVED:
                raise DeviceError(f"device {device_id.hex()} is "
                                  f"{'unknown' if record is None else 'already approved'}: "
                                  "nothing was approved")
        approved = [(d, *self.registry.approve(d)) for d in device_ids]
        users = self._approved_users()
        users.update((d.hex(), password) for d, _, password in approved)
        self.broker.write_config(users)
        self.broker.reload()
        self.bridge.refresh_devices()
        self._refresh_home_assistant()
        sent, where = None, self._where()
        for device_id, record, password in approved:
            credentials = {"username": device_id.hex(), "password": password,
                           "chain_id": self.chain_id, **where}
            sent = self.bridge.publish(credentials_topic(device_id), seal_credentials(
                bytes.fromhex(record["pubkey"]), credentials), qos=1, retain=True)
            self.log(f"devices: approved {device_id.hex()} ({record['kind'] or 'device'})")
        if sent is not None:
            self._save_when_sent(sent)   # QoS 1 in order: the last one sent means all
        return [record for _, record, _ in approved]

    def pending(self):
        """Ids of the devices waiting for approval."""
        return [bytes.fromhex(r["id"]) for r in self.registry.all() if r["status"] == PENDING]

    def revoke(self, device_id):
        """Revoke a device: its user goes, the broker reloads (dropping it), frames stop."""
        record = self.registry.revoke(device_id)
        self.broker.write_config(self._approved_users())
        self.broker.reload()
        self.bridge.refresh_devices()
        self._refresh_home_assistant()
        self.bridge.publish(credentials_topic(device_id), b"", qos=1, retain=True)
        self.log(f"devices: revoked {device_id.hex()}")
        return record

    def _save_when_sent(self, info):
        """Once the broker has the retained credentials, have it save them (a crash before its
        next autosave would otherwise lose the only copy of the password)."""
        def wait_and_save():
            try:
                info.wait_for_publish(30)
                self.broker.save()
            except (RuntimeError, ValueError) as exc:
                self.log(f"devices: credentials not confirmed by the broker: {exc}")
        threading.Thread(target=wait_and_save, name="save-credentials", daemon=True).start()

    def _where(self):
        """Where an approved device connects: the TLS listener and the CA it pins (the
        plaintext one, on loopback, only when there is no TLS listener)."""
        config = self.config
        if not config.mqtt_tls_port:
            return {"host": config.mqtt_host, "port": config.mqtt_port, "tls": False}
        return {"host": config.mqtt_tls_host, "port": config.mqtt_tls_port, "tls": True,
                "ca_sha256": fingerprint(self.ca_pem), "ca_pem": self.ca_pem}

    def _refresh_home_assistant(self):
        """Show an approved device in HA / remove a revoked one's entities."""
        if self.home_assistant is not None:
            self.home_assistant.refresh()

    def _approved_users(self):
        """Approved devices keep their stored password hashes (``None``)."""
        return {r["id"]: None for r in self.registry.all() if r["status"] == APPROVED}

    def status(self):
        return {"broker": self.listeners(),
                "device_count": len(self.registry.all()), "bridge": self.bridge.stats(),
                "home_assistant": self.home_assistant.stats()
                if self.home_assistant is not None else None,
                "broker_files": os.path.abspath(self.config.path(self.config.mqtt_dir))}
