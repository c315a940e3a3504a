"""Canonical encoding of the values that cross the contract boundary (docs §14.1).

A value is None, bool, int (-2^63..2^63-1), bytes, str (UTF-8), list, or dict with str keys.
Floats are never values. The encoding is one type tag byte, then the payload:

    0 nil | 1 false | 2 true | 3 int: uvarint(zigzag(v)) | 4 bytes: uvarint(len) || bytes
    5 str: uvarint(len) || UTF-8 | 6 list: uvarint(count) || items
    7 map: uvarint(count) || (uvarint(len) || UTF-8 key, value)*, keys strictly increasing bytewise

Containers nest at most ``MAX_DEPTH`` deep and a whole encoding is at most ``MAX_SIZE`` bytes.
Decoding is strict (whole buffer, minimal varints, sorted unique keys) and raises ``DecodeError``
naming the field, so ``encode_value(decode_value(b)) == b`` for every accepted ``b``.
"""

from edge._fast.codec_py import DecodeError, Reader, encode_uvarint

MAX_DEPTH = 16
MAX_SIZE = 16 * 1024
INT_MIN = -(1 << 63)
INT_MAX = (1 << 63) - 1

T_NIL, T_FALSE, T_TRUE, T_INT, T_BYTES, T_STR, T_LIST, T_MAP = range(8)


class BadValue(ValueError):
    """A Python object that is not a contract value; ``field`` names where."""

    def __init__(self, field, message):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


def zigzag(v):
    """Signed 64-bit integer → unsigned (0, -1, 1, -2 ... → 0, 1, 2, 3 ...)."""
    return (v << 1) ^ (v >> 63)


def unzigzag(z):
    """Inverse of ``zigzag``."""
    return (z >> 1) ^ -(z & 1)


def encode_value(value):
    """The canonical bytes of ``value``; raises ``BadValue`` for anything outside the model."""
    out = bytearray()
    _encode(value, out, 0, "value")
    if len(out) > MAX_SIZE:
        raise BadValue("value", f"encoding of {len(out)} bytes exceeds {MAX_SIZE}")
    return bytes(out)


def _encode(v, out, depth, field):
    if len(out) > MAX_SIZE:
        raise BadValue(field, f"encoding exceeds {MAX_SIZE} bytes")
    if v is None:
        out.append(T_NIL)
    elif v is True or v is False:
        out.append(T_TRUE if v else T_FALSE)
    elif type(v) is int:
        if not INT_MIN <= v <= INT_MAX:
            raise BadValue(field, f"integer {v} is outside the signed 64-bit range")
        out.append(T_INT)
        out += encode_uvarint(zigzag(v))
    elif isinstance(v, (bytes, bytearray)):
        out.append(T_BYTES)
        out += encode_uvarint(len(v)) + bytes(v)
    elif isinstance(v, str):
        raw = _utf8(v, field)
        out.append(T_STR)
        out += encode_uvarint(len(raw)) + raw
    elif isinstance(v, (list, tuple)):
        _check_depth(depth, field)
        out.append(T_LIST)
        out += encode_uvarint(len(v))
        for i, item in enumerate(v):
            _encode(item, out, depth + 1, f"{field}[{i}]")
    elif isinstance(v, dict):
        _encode_map(v, out, depth, field)
    elif isinstance(v, float):
        raise BadValue(field, "floats are not values (use integer base units)")
    else:
        raise BadValue(field, f"unsupported type {type(v).__name__}")


def _encode_map(v, out, depth, field):
    _check_depth(depth, field)
    keys = []
    for k in v:
        if not isinstance(k, str):
            raise BadValue(field, f"map key {k!r} is not a str")
        keys.append((_utf8(k, field), k))
    keys.sort()
    out.append(T_MAP)
    out += encode_uvarint(len(keys))
    for raw, k in keys:
        out += encode_uvarint(len(raw)) + raw
        _encode(v[k], out, depth + 1, f"{field}.{k}")


def _check_depth(depth, field):
    if depth >= MAX_DEPTH:
        raise BadValue(field, f"containers nest deeper than {MAX_DEPTH}")


def _utf8(text, field):
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadValue(field, "str is not encodable as UTF-8") from None


def decode_value(data):
    """The value encoded by ``data`` (the whole buffer); strict, raises ``DecodeError``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"bytes expected, got {type(data).__name__}")
    if len(data) > MAX_SIZE:
        raise DecodeError("value", f"{len(data)} bytes exceeds the limit of {MAX_SIZE}")
    r = Reader(data)
    v = _decode(r, 0, "value")
    r.end("value")
    return v


def _decode(r, depth, field):
    tag = r.u8(field + ".tag")
    if tag == T_NIL:
        return None
    if tag in (T_FALSE, T_TRUE):
        return tag == T_TRUE
    if tag == T_INT:
        return unzigzag(r.uvarint(field))
    if tag == T_BYTES:
        return r.var_bytes(MAX_SIZE, field)
    if tag == T_STR:
        return r.text(MAX_SIZE, field)
    if tag in (T_LIST, T_MAP):
        if depth >= MAX_DEPTH:
            raise DecodeError(field, f"containers nest deeper than {MAX_DEPTH}")
        n = r.count(MAX_SIZE, field)
        if tag == T_LIST:
            return [_decode(r, depth + 1, f"{field}[{i}]") for i in range(n)]
        return _decode_map(r, n, depth, field)
    raise DecodeError(field, f"unknown value tag 0x{tag:02x}")


def _decode_map(r, n, depth, field):
    out, prev = {}, None
    for i in range(n):
        raw = r.var_bytes(MAX_SIZE, f"{field}.key[{i}]")
        if prev is not None and raw <= prev:
            raise DecodeError(f"{field}.key[{i}]", "map keys must be strictly increasing")
        prev = raw
        try:
            key = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError(f"{field}.key[{i}]", "not valid UTF-8") from None
        out[key] = _decode(r, depth + 1, f"{field}.{key}")
    return out


def lua_compatible(value, field="value"):
    """Raise ``BadValue`` if ``value`` has no Lua form (None inside a list or a map)."""
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            if item is None:
                raise BadValue(f"{field}[{i}]", "nil inside a list has no Lua form")
            lua_compatible(item, f"{field}[{i}]")
    elif isinstance(value, dict):
        for k, item in value.items():
            if item is None:
                raise BadValue(f"{field}.{k}", "nil inside a map has no Lua form")
            lua_compatible(item, f"{field}.{k}")
