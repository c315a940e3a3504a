"""Onboarding: a device asks to join; once the owner approves it, the node hands it MQTT
credentials sealed to the device's own key (libsodium sealed box over its Ed25519 key turned
into X25519), published retained where only that device can read them."""

import json

from nacl.bindings import crypto_sign_ed25519_pk_to_curve25519, crypto_sign_ed25519_sk_to_curve25519
from nacl.public import PrivateKey, PublicKey, SealedBox

MAX_REQUEST = 1024


class ProvisionError(ValueError):
    """A join request or a credentials blob that cannot be used."""


def join_request(pubkey, kind, model="", firmware=""):
    """The JSON a device publishes on ``ss/v1/provision/<id>``."""
    return json.dumps({"pubkey": bytes(pubkey).hex(), "kind": kind, "model": model,
                       "firmware": firmware}, sort_keys=True).encode()


def read_join_request(payload):
    """``(pubkey, info)`` from a join request; ProvisionError saying what is wrong."""
    if len(payload) > MAX_REQUEST:
        raise ProvisionError(f"join request over {MAX_REQUEST} bytes")
    try:
        doc = json.loads(payload)
        pubkey = bytes.fromhex(doc["pubkey"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ProvisionError(f"join request is not {{\"pubkey\": hex, ...}} JSON ({exc})") from None
    if len(pubkey) != 32:
        raise ProvisionError("pubkey must be 32 bytes")
    info = {k: doc.get(k) for k in ("kind", "model", "firmware") if isinstance(doc.get(k), str)}
    return pubkey, info


def seal_credentials(device_pubkey, credentials):
    """Encrypt ``credentials`` (a dict) so that only the holder of the device key can read it."""
    curve = crypto_sign_ed25519_pk_to_curve25519(bytes(device_pubkey))
    return SealedBox(PublicKey(curve)).encrypt(json.dumps(credentials, sort_keys=True).encode())


def open_credentials(signing_key, blob):
    """The device side: decrypt sealed credentials with its Ed25519 signing key."""
    secret = crypto_sign_ed25519_sk_to_curve25519(bytes(signing_key) + bytes(signing_key.verify_key))
    try:
        return json.loads(SealedBox(PrivateKey(secret)).decrypt(blob))
    except Exception as exc:  # nacl raises CryptoError; JSON may be damaged
        raise ProvisionError(f"credentials cannot be opened ({type(exc).__name__})") from None
