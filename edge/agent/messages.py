"""Market messages between a buyer's and a seller's agent (docs/protocol.md §17.2).

Every message is a signed envelope, whatever carries it (MQTT or the HTTP API):

    {"body": "<the message as JSON text>", "signer": "<hex Ed25519 public key>", "sig": "<hex>"}
    sig = Ed25519(signer, H("ss/sig", text(chain_id) || H("ss/market", utf8(body))))

The body is signed as the exact text sent, then parsed strictly: one JSON object with a known
``type``, exactly that type's fields, each of its type (integers never floats, hex of the right
length, no duplicate keys, valid Unicode). ``open_envelope`` raises MessageError saying what is
wrong; nothing else in the agent reads a message.
"""

import json
import re

from chain.crypto import hash_of, verify

TAG_MARKET = b"ss/market"
MAX_MESSAGE = 60_000
U63 = (1 << 63) - 1


class MessageError(ValueError):
    """A market message that cannot be used; the message says why."""


# -- field types --------------------------------------------------------------------------------

def _hex(size):
    pattern = re.compile(rf"^[0-9a-f]{{{2 * size}}}$")

    def check(name, v):
        if not isinstance(v, str) or not pattern.match(v):
            raise MessageError(f"{name} must be {2 * size} lower-case hex characters")
    return check


def _int(low=0, high=U63):
    def check(name, v):
        if type(v) is not int or not low <= v <= high:
            raise MessageError(f"{name} must be an integer {low}..{high}")
    return check


def _text(max_len):
    def check(name, v):
        if not isinstance(v, str) or not 0 < len(v) <= max_len:
            raise MessageError(f"{name} must be text of 1..{max_len} characters")
    return check


def _bool(name, v):
    if type(v) is not bool:
        raise MessageError(f"{name} must be true or false")


def _optional(check):
    def optional(name, v):
        if v is not None:
            check(name, v)
    optional.optional = True
    return optional


def _frames(name, v):
    if not isinstance(v, list) or len(v) > 256 or not all(
            isinstance(f, str) and 0 < len(f) <= 4096 and re.fullmatch(r"[0-9a-f]+", f)
            for f in v):
        raise MessageError(f"{name} must be a list of at most 256 hex frames")


def _blob(name, v):
    if not isinstance(v, str) or not 0 < len(v) <= 2048 or len(v) % 2 or not re.fullmatch(
            r"[0-9a-f]+", v):
        raise MessageError(f"{name} must be lower-case hex of 1..1024 bytes")


def _offers(name, v):
    if not isinstance(v, list) or len(v) > 64:
        raise MessageError(f"{name} must be a list of at most 64 offers")
    fields = {"service_id": _text(64), "device": _hex(8), "price": _int(), "available": _int(),
              "capacity": _int()}
    for offer in v:
        if not isinstance(offer, dict) or set(offer) != set(fields):
            raise MessageError(f"{name} items must have exactly {sorted(fields)}")
        for key, check in fields.items():
            check(f"{name}.{key}", offer[key])


def _bounds(name, v):
    if not isinstance(v, list) or len(v) != 2:
        raise MessageError(f"{name} must be [floor, ceiling]")
    for x in v:
        _int()(name, x)


ID, HASH, ADDR, KEY, SIG = _hex(8), _hex(32), _hex(20), _hex(32), _hex(64)
PURCHASE = _hex(16)     # a data purchase id (§18)

BODIES = {
    # buyer -> seller
    "order": {"order": ID, "service": _text(32), "device": _optional(ID),
              "max_price": _int(), "quantity": _int(1)},
    "channel": {"session": ID, "tx": HASH, "task": _optional(_blob)},
    "voucher": {"session": ID, "channel": ID, "contract": ADDR, "payee": ADDR,
                "amount": _int(), "nonce": _int(1), "signature": SIG, "upto": _int(),
                "challenge": _optional(HASH)},
    "stop": {"session": ID},
    "data_fetch": {"purchase": PURCHASE},
    # seller -> buyer
    "trade": {"order": ID, "session": ID, "service": _text(32), "device": ID,
              "device_pubkey": KEY, "price": _int(), "per": _int(1), "quantity": _int(1),
              "min_units": _int(), "deposit": _int(1), "contract": ADDR, "payee": ADDR,
              "expiry_blocks": _int(1), "dispute_ms": _int(1), "interval_ms": _int(1),
              "start_after": _int()},
    "resting": {"order": ID, "best_ask": _optional(_int())},
    "statement": {"session": ID, "units": _int(), "amount": _int(), "final": _bool,
                  "frames": _frames},
    "ack": {"session": ID, "amount": _int(), "nonce": _int(), "accepted": _bool,
            "reason": _optional(_text(200))},
    "state": {"session": ID, "state": _text(16), "reason": _optional(_text(200))},
    "data_state": {"purchase": PURCHASE, "state": _text(16), "reason": _optional(_text(300)),
                   "hash": _optional(HASH), "records": _optional(_int()),
                   "size": _optional(_int())},
    "error": {"ref": _optional(ID), "code": _text(32), "message": _text(300)},
    "quote": {"service": _text(32), "unit": _text(16), "price_unit": _text(16), "per": _int(1),
              "min_units": _int(), "offers": _offers, "best_bid": _optional(_int()),
              "bounds": _bounds, "contract": _optional(ADDR), "payee": ADDR,
              "seller": KEY},
}


def check_body(body):
    """Raise MessageError unless ``body`` (a dict) is a well-formed message."""
    kind = body.get("type")
    fields = BODIES.get(kind)
    if fields is None:
        raise MessageError(f"unknown message type {str(kind)[:32]!r}")
    unknown = sorted(set(body) - set(fields) - {"type"})
    if unknown:
        raise MessageError(f"{kind}: unknown field {unknown[0][:32]!r}")
    for name, check in fields.items():
        if name not in body and not getattr(check, "optional", False):
            raise MessageError(f"{kind}: missing field {name!r}")
        check(f"{kind}.{name}", body.get(name))


def _pairs(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise MessageError("duplicate key")
    return dict(pairs)


def _no_float(text):
    raise MessageError(f"numbers must be integers, not {text[:20]}")


def strict_json(text):
    """One JSON object: no duplicate keys, no floats, NaN or Infinity, valid Unicode."""
    try:
        doc = json.loads(text, object_pairs_hook=_pairs, parse_float=_no_float,
                         parse_constant=_no_float)
    except MessageError:
        raise
    except (ValueError, RecursionError) as exc:
        raise MessageError(f"not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise MessageError("must be a JSON object")
    try:
        _walk_text(doc)
    except UnicodeEncodeError:
        raise MessageError("invalid Unicode (a lone surrogate)") from None
    return doc


def _walk_text(node):
    if isinstance(node, str):
        node.encode("utf-8")
    elif isinstance(node, dict):
        for k, v in node.items():
            k.encode("utf-8")
            _walk_text(v)
    elif isinstance(node, list):
        for v in node:
            _walk_text(v)


# -- envelopes ----------------------------------------------------------------------------------

def message_hash(body_text):
    return hash_of(TAG_MARKET, body_text.encode("utf-8"))


def seal(signer, chain_id, body):
    """The signed envelope (bytes) of a message ``body`` (a dict with its ``type``)."""
    check_body(body)
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return json.dumps({"body": text, "signer": signer.pubkey.hex(),
                       "sig": signer.sign(chain_id, message_hash(text)).hex()},
                      separators=(",", ":")).encode()


def open_envelope(raw, chain_id):
    """``(signer public key, body)`` of an envelope signed for ``chain_id``; MessageError."""
    if len(raw) > MAX_MESSAGE:
        raise MessageError(f"message over {MAX_MESSAGE} bytes")
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray)) else raw
    except UnicodeDecodeError:
        raise MessageError("message is not UTF-8") from None
    envelope = strict_json(text)
    if set(envelope) != {"body", "signer", "sig"} or not isinstance(envelope["body"], str):
        raise MessageError("an envelope is {\"body\": text, \"signer\": hex, \"sig\": hex}")
    KEY("signer", envelope["signer"])
    SIG("sig", envelope["sig"])
    pubkey, sig = bytes.fromhex(envelope["signer"]), bytes.fromhex(envelope["sig"])
    if not verify(pubkey, chain_id, message_hash(envelope["body"]), sig):
        raise MessageError(f"bad signature (not signed by its signer for chain {chain_id!r})")
    body = strict_json(envelope["body"])
    check_body(body)
    return pubkey, body
