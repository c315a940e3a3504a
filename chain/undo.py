"""What it takes to take a block back: the prior values it overwrote in the flat state.

Blocks above the last irreversible block may be reverted by a reorganisation. For each one the
ledger stores an undo record: the previous value (or absence) of every key it changed in the flat
state. The SMT keeps its own versions (``rollback``).

    undo record = list< fixed(key, 32) || u8(present) || [bytes(value)] >
"""

from edge._fast.codec_py import Reader, encode_uvarint, encode_bytes

KEY_SIZE = 32
MAX_VALUE = 1 << 16
MAX_ENTRIES = 1 << 24


def encode_undo(entries):
    """``entries``: ``(key, previous value or None)`` in the order they were recorded."""
    out = [encode_uvarint(len(entries))]
    for key, value in entries:
        out.append(key)
        out.append(b"\x00" if value is None else b"\x01" + encode_bytes(value, MAX_VALUE,
                                                                         "undo.value"))
    return b"".join(out)


def decode_undo(data):
    r = Reader(data)
    entries = []
    for _ in range(r.count(MAX_ENTRIES, "undo")):
        key = r.fixed(KEY_SIZE, "undo.key")
        present = r.u8("undo.present")
        entries.append((key, r.var_bytes(MAX_VALUE, "undo.value") if present else None))
    r.end("undo")
    return entries
