"""What the bridge checks in a device frame besides its layout and signature: the error codes it
answers with, the strict JSON payload rules, and the error reply (docs §15)."""

import json
import math
import re

# Error codes of ``ss/v1/dev/<id>/reply/error`` (the order is the order of the checks).
OVERSIZE = "oversize"              # MQTT payload over MAX_MQTT_PAYLOAD bytes
UNKNOWN_DEVICE = "unknown_device"  # not approved, or revoked
RATE_LIMITED = "rate_limited"      # the device's token bucket is empty
MALFORMED = "malformed"            # the binary frame does not decode (the message names the field)
WRONG_TOPIC = "wrong_topic"        # the frame's device id or kind differs from its topic's
FUTURE = "future"                  # timestamp_ms beyond now + future_ms
BAD_PAYLOAD = "bad_payload"        # the payload is not a strict, finite, shallow JSON object
BAD_SIGNATURE = "bad_signature"    # not signed by the approved key on this chain
REPLAYED = "replayed"              # seq at or below the stored ones (the mark), other bytes
OUT_OF_ORDER = "out_of_order"      # not the next seq: the frames below it are missing
CODES = (OVERSIZE, UNKNOWN_DEVICE, RATE_LIMITED, MALFORMED, WRONG_TOPIC, FUTURE, BAD_PAYLOAD,
         BAD_SIGNATURE, REPLAYED, OUT_OF_ORDER)

MAX_MQTT_PAYLOAD = 2048
MAX_DEPTH = 8
INT_MIN, INT_MAX = -(1 << 63), (1 << 63) - 1
_SURROGATE = re.compile("[\ud800-\udfff]")   # what a lone "\\ud800".."\\udfff" escape decodes to


class PayloadError(ValueError):
    """A frame payload that is not acceptable JSON; the message says why."""


def _unique_keys(pairs):
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise PayloadError(f"duplicate key {key[:32]!r}")
            seen.add(key)
    return doc


def check_payload(text):
    """The payload of a frame as a dict, or PayloadError: it must be one JSON object, with no
    NaN/Infinity, finite floats, integers within 64 bits, no duplicate keys, nesting <= 8, and
    valid Unicode only (a lone surrogate escape such as ``"\\ud800"`` is refused; a raw one is
    already invalid UTF-8, which the frame decoder refuses).

    The C parser reads the text; the rules are then checked on the (small) result in one walk,
    which is several times faster than per-number parser hooks."""
    try:
        doc = json.loads(text, object_pairs_hook=_unique_keys)
    except PayloadError:
        raise
    except RecursionError:
        raise PayloadError(f"nested deeper than {MAX_DEPTH}") from None
    except ValueError as exc:
        raise PayloadError(f"not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise PayloadError(f"must be a JSON object, not {type(doc).__name__}")
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise PayloadError(f"nested deeper than {MAX_DEPTH}")
        if isinstance(node, dict):
            _check_text(node)
        for child in (node.values() if isinstance(node, dict) else node):
            kind = type(child)
            if kind is str:
                if _SURROGATE.search(child):
                    raise PayloadError("text holds a lone surrogate (invalid Unicode)")
            elif kind is dict or kind is list:
                stack.append((child, depth + 1))
            elif kind is float and not math.isfinite(child):
                raise PayloadError(f"number {child} is not finite (NaN, Infinity or too large)")
            elif kind is int and not INT_MIN <= child <= INT_MAX:
                raise PayloadError("integer outside -2^63..2^63-1")
    return doc


def _check_text(node):
    for key in node:
        if _SURROGATE.search(key):
            raise PayloadError("a key holds a lone surrogate (invalid Unicode)")


def error_reply(code, message, seq=None, expected=None):
    """The JSON body of an error reply (``expected``: the seq an ``out_of_order`` frame
    waits for)."""
    doc = {"code": code, "message": message, "seq": seq}
    if expected is not None:
        doc["expected"] = expected
    return json.dumps(doc, separators=(",", ":")).encode()


def receipt_reply(position):
    """The JSON body of a receipt: every frame of the device from ``position.start`` up to
    ``position.mark`` is stored (``sequence.Position``)."""
    return json.dumps(position.receipt(), separators=(",", ":")).encode()
