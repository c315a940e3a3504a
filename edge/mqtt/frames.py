"""Signed device frames (docs/protocol.md §11): building them (devices, simulators, tests) and
the message their signature covers (the bridge verifies in batches with ``edge._fast``)."""

import json
from typing import NamedTuple

from chain.crypto import TAG_FRAME, hash_of, signing_message
from edge import _fast
from edge._fast.codec_py import FRAME_DATA, FRAME_EVENT, FRAME_HELLO, FRAME_METER, FRAME_VERSION

KIND_CODES = {"hello": FRAME_HELLO, "meter": FRAME_METER, "event": FRAME_EVENT, "data": FRAME_DATA}
KIND_NAMES = {code: name for name, code in KIND_CODES.items()}


class Frame(NamedTuple):
    """A decoded frame; ``payload`` is its JSON text."""
    version: int
    kind: int
    device_id: bytes
    seq: int
    timestamp_ms: int
    payload: str
    signature: bytes

    @classmethod
    def decode(cls, raw):
        """Strictly decode (DecodeError naming the field)."""
        return cls(*_fast.decode_frame(raw))

    @property
    def kind_name(self):
        return KIND_NAMES[self.kind]


def frame_message(chain_id, raw_frame):
    """The 32-byte message a frame's signature signs: the frame hash on ``chain_id``."""
    return signing_message(chain_id, hash_of(TAG_FRAME, raw_frame[:-64]))


def sign_frame(signing_key, chain_id, device_id, kind, seq, timestamp_ms, payload):
    """An encoded, signed frame; ``payload`` is a JSON-ready dict or JSON text."""
    text = payload if isinstance(payload, str) else json.dumps(payload, sort_keys=True,
                                                               separators=(",", ":"))
    unsigned = _fast.encode_frame_unsigned((FRAME_VERSION, KIND_CODES[kind], device_id, seq,
                                            timestamp_ms, text))
    message = signing_message(chain_id, hash_of(TAG_FRAME, unsigned))
    return unsigned + signing_key.sign(message).signature
