"""Contract values (docs/protocol.md §14) to and from JSON, for the API and the CLI.

JSON has no bytes: a bytes value is ``{"bytes": "<hex>"}`` and an account or contract address may
be written ``{"address": "ssp1..."}`` (it is 20 bytes). Integers, strings, booleans, null, lists
and objects map to themselves; a float is refused (amounts are integers).
"""

import json

from chain.address import decode_address


def to_value(doc):
    """A contract value from its JSON form; ValueError saying what is wrong."""
    if isinstance(doc, bool) or doc is None or isinstance(doc, str):
        return doc
    if isinstance(doc, int):
        return doc
    if isinstance(doc, float):
        raise ValueError(f"{doc!r}: contract values have no floats (amounts are integers)")
    if isinstance(doc, list):
        return [to_value(item) for item in doc]
    if isinstance(doc, dict):
        if set(doc) == {"bytes"} and isinstance(doc["bytes"], str):
            return bytes.fromhex(doc["bytes"])
        if set(doc) == {"address"} and isinstance(doc["address"], str):
            return decode_address(doc["address"])
        return {str(k): to_value(v) for k, v in doc.items()}
    raise ValueError(f"{doc!r} is not a contract value")


def from_value(value):
    """The JSON form of a contract value."""
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": bytes(value).hex()}
    if isinstance(value, list):
        return [from_value(item) for item in value]
    if isinstance(value, dict):
        return {k: from_value(v) for k, v in value.items()}
    return value


def parse_cli_arg(text):
    """One command-line argument: 12 → int, true/false/null, 0x.. → bytes, ssp1.. → address,
    [..] or {..} → JSON, anything else → text."""
    if text in ("true", "false", "null"):
        return {"true": True, "false": False, "null": None}[text]
    if text.lstrip("-").isdigit():
        return int(text)
    if text.startswith("0x"):
        return bytes.fromhex(text[2:])
    if text.lower().startswith("ssp1"):
        return decode_address(text)
    if text[:1] in "[{":
        return to_value(json.loads(text))
    return text
