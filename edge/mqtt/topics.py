"""The MQTT topic tree (DESIGN §6, docs/protocol.md §15).

    ss/v1/dev/<id>/hello|meter|event|data      a device's own signed frames (QoS 1)
    ss/v1/dev/<id>/reply/error|receipt|quote   the node's answers to that device
    ss/v1/provision/<id>                       an unapproved device announces itself
    ss/v1/provision/<id>/credentials           its credentials, sealed to its key (retained)
    ss/v1/ca                                   the gateway's CA certificate, PEM (retained)

``<id>`` is the device id: 16 lowercase hex characters, the first 8 bytes of
``H("ss/device", device public key)``.
"""

import re

from edge import _fast

ROOT = "ss/v1"
FRAME_KINDS = ("hello", "meter", "event", "data")
DEVICE_FRAMES = f"{ROOT}/dev/+/+"
PROVISIONING = f"{ROOT}/provision/+"
CA_TOPIC = f"{ROOT}/ca"
TAG_DEVICE = b"ss/device"
ID_RE = re.compile(r"^[0-9a-f]{16}$")
_DEVICE_TOPIC = re.compile(rf"^{ROOT}/dev/([0-9a-f]{{16}})/([a-z]+)$")
_PROVISION_TOPIC = re.compile(rf"^{ROOT}/provision/([0-9a-f]{{16}})$")


def device_id_of(pubkey):
    """The 8-byte device id of an Ed25519 public key."""
    return _fast.tagged_hash(TAG_DEVICE, bytes(pubkey))[:8]


def device_topic(device_id, kind):
    return f"{ROOT}/dev/{device_id.hex()}/{kind}"


def reply_topic(device_id, what):
    return f"{ROOT}/dev/{device_id.hex()}/reply/{what}"


def provision_topic(device_id):
    return f"{ROOT}/provision/{device_id.hex()}"


def credentials_topic(device_id):
    return f"{ROOT}/provision/{device_id.hex()}/credentials"


def parse_device_topic(topic):
    """``(device_id, kind)`` of a device frame topic, else None (replies are not frames)."""
    match = _DEVICE_TOPIC.match(topic)
    if match is None or match.group(2) not in FRAME_KINDS:
        return None
    return bytes.fromhex(match.group(1)), match.group(2)


def parse_provision_topic(topic):
    """The device id of a provisioning request topic, else None."""
    match = _PROVISION_TOPIC.match(topic)
    return bytes.fromhex(match.group(1)) if match else None


def parse_device_id(text):
    """A device id from its 16-hex-character form; ValueError saying what is wrong."""
    if not isinstance(text, str) or not ID_RE.match(text):
        raise ValueError(f"device id {text!r} must be 16 lowercase hex characters")
    return bytes.fromhex(text)
