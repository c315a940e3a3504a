"""The market over MQTT (docs/protocol.md §17.2): topics, and one paho client per agent.

    ss/v1/market/<service>/quote               the seller's supply quote (retained, signed)
    ss/v1/market/buyer/<client>/order|channel|voucher|stop     a buyer's messages
    ss/v1/market/buyer/<client>/reply/<type>   the seller's answers to that buyer
    ss/v1/dev/<device>/reply/command           the seller's commands to its device
    ss/v1/market/data/<client>/fetch           a buyer's request of its data purchase
    ss/v1/market/data/<client>/state|payload/<purchase>   the gateway's answer and the payload

``<client>`` is the buyer's MQTT client id: the broker's ACL lets a client write and read only
under its own id (user ``market``), and only the node (``smartshare-bridge``) writes quotes,
replies and commands. Every market message is a signed envelope besides (``messages``).

The client keeps a persistent session with QoS 1 and acknowledges a message only after the
agent's worker has handled it (and committed what it changed), so a crash loses nothing sent.
"""

import re
import threading

import paho.mqtt.client as mqtt

ROOT = "ss/v1/market"
BUYER_MESSAGES = ("order", "channel", "voucher", "stop")
DATA_ROOT = f"{ROOT}/data"
SELLER_SUBSCRIPTIONS = [f"{ROOT}/buyer/+/{what}" for what in BUYER_MESSAGES] + [
    f"{DATA_ROOT}/+/fetch"]
_BUYER_TOPIC = re.compile(rf"^{ROOT}/(buyer|data)/([A-Za-z0-9_-]{{1,64}})/([a-z]+)$")
CLIENT_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def quote_topic(service):
    return f"{ROOT}/{service}/quote"


def buyer_topic(client, what):
    return f"{ROOT}/buyer/{client}/{what}"


def reply_topic(client, what):
    return f"{ROOT}/buyer/{client}/reply/{what}"


def command_topic(device_hex):
    return f"ss/v1/dev/{device_hex}/reply/command"


def data_topic(client, what):
    """``ss/v1/market/data/<client>/fetch|state|payload/<purchase>`` (§18.4)."""
    return f"{DATA_ROOT}/{client}/{what}"


def buyer_subscriptions(client):
    return [f"{ROOT}/buyer/{client}/reply/#", f"{ROOT}/+/quote"]


def data_subscriptions(client):
    """What a data buyer reads: the gateway's answers and payloads for its client id."""
    return [data_topic(client, "state"), data_topic(client, "payload/+")]


def parse_buyer_topic(topic):
    """``(client id, message kind)`` of a buyer's message topic, else None."""
    match = _BUYER_TOPIC.match(topic or "")
    if match is None:
        return None
    area, client, what = match.groups()
    if what not in (BUYER_MESSAGES if area == "buyer" else ("fetch",)):
        return None
    return client, what


def topic_of(destination):
    """The topic (and retain flag) of an outgoing destination tuple of a Seller or Buyer."""
    kind = destination[0]
    if kind == "reply":
        return reply_topic(destination[1], destination[2]), False
    if kind == "command":
        return command_topic(destination[1]), False
    if kind == "quote":
        return quote_topic(destination[1]), True
    if kind == "buyer":
        return buyer_topic(destination[1], destination[2]), False
    if kind == "data":
        return data_topic(destination[1], destination[2]), False
    raise ValueError(f"unknown destination {destination!r}")


class MarketLink:
    """A persistent paho session: messages go to ``deliver(topic, payload, ack)``, where
    ``ack()`` must be called once the message is handled."""

    def __init__(self, host, port, username, password, client_id, subscriptions, deliver,
                 log=print, tls_context=None):
        self.subscriptions, self.deliver, self.log = subscriptions, deliver, log
        self.host, self.port = host, port
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._generation = 0
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             clean_session=False, protocol=mqtt.MQTTv311, manual_ack=True)
        client.username_pw_set(username, password)
        if tls_context is not None:     # a broker without a plaintext listener (§15.3)
            client.tls_set_context(tls_context)
        client.reconnect_delay_set(1, 10)
        client.max_queued_messages_set(100_000)
        client.on_connect, client.on_disconnect = self._on_connect, self._on_disconnect
        client.on_subscribe, client.on_message = self._on_subscribe, self._on_message
        self.client = client

    def start(self):
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()

    def wait_ready(self, timeout=None):
        return self._ready.wait(timeout)

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic, payload, retain=False):
        self.client.publish(topic, payload, qos=1, retain=retain)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.log(f"market: the broker refused the agent ({reason_code})")
            return
        with self._lock:
            self._generation += 1
        client.subscribe([(topic, 1) for topic in self.subscriptions])

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self._lock:
            self._generation += 1
        self._ready.clear()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        if any(code.is_failure for code in reason_codes):
            self.log(f"market: subscription refused ({reason_codes}); check the broker's ACL")
            return
        self._ready.set()

    def _on_message(self, client, userdata, msg):
        generation, mid, qos = self._generation, msg.mid, msg.qos

        def ack():
            with self._lock:
                if qos and generation == self._generation:
                    client.ack(mid, qos)
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            ack()
            return
        self.deliver(topic, msg.payload, ack)
