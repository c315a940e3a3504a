"""Frames on a p2p TCP stream: the length prefix, the size limits and the per-direction cipher.

Every frame is ``u32 big-endian length || body``. Before the handshake the body is plain and at
most ``MAX_PLAIN_FRAME`` bytes; after it the body is ChaCha20-Poly1305 (IETF) ciphertext of at most
``max_frame`` plaintext bytes, with a 12-byte nonce that counts the frames of its direction
(docs/protocol.md §12). ``max_frame`` belongs to the network: genesis sizes it from the largest
block (chain/block_limits.py), up to ``MAX_FRAME_CEILING``; ``MAX_FRAME`` is the default of links
made without one. A length out of bounds is refused before any of the body is read.
"""

import asyncio
import struct

from nacl import bindings
from nacl.exceptions import CryptoError

MAX_FRAME = 4 * 1024 * 1024      # default largest plaintext of an encrypted frame (one message)
MAX_FRAME_CEILING = 16 << 20     # no network uses larger frames
MAX_PLAIN_FRAME = 1024           # largest body of a pre-handshake frame
TAG_SIZE = bindings.crypto_aead_chacha20poly1305_ietf_ABYTES      # 16
NONCE_SIZE = bindings.crypto_aead_chacha20poly1305_ietf_NPUBBYTES  # 12
KEY_SIZE = bindings.crypto_aead_chacha20poly1305_ietf_KEYBYTES     # 32
MAX_SEALED = MAX_FRAME + TAG_SIZE
MAX_COUNTER = (1 << 64) - 1      # a direction that reaches this must reconnect (never in practice)
LENGTH_SIZE = 4
_LENGTH = struct.Struct(">I")


class P2PError(Exception):
    """A p2p link failed; ``reason`` is a stable code for peer scoring, ``detail`` a sentence."""

    def __init__(self, reason, detail=""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class FrameError(P2PError):
    """A frame broke the framing or failed authentication (``oversize``, ``bad_mac``,
    ``counter_exhausted``). The link is unusable afterwards and is closed."""


class ConnectionClosed(P2PError):
    """The peer went away: ``closed`` at a frame boundary, ``truncated`` inside a frame, ``reset``
    by the network. Not a protocol violation by itself."""


def plain_frame(body):
    """A pre-handshake frame: the length prefix and ``body`` (1..MAX_PLAIN_FRAME bytes)."""
    if not 0 < len(body) <= MAX_PLAIN_FRAME:
        raise ValueError(f"plain frame body of {len(body)} bytes is outside 1..{MAX_PLAIN_FRAME}")
    return _LENGTH.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader, max_length, min_length=1):
    """Read one frame body. The prefix is checked against ``min_length..max_length`` before the
    body is read, so a hostile length allocates nothing."""
    return await read_body(reader, await read_length(reader, max_length, min_length))


async def read_length(reader, max_length, min_length=1):
    """Read and check a frame's length prefix. Cancelling it consumes nothing."""
    (length,) = _LENGTH.unpack(await _read_exactly(reader, LENGTH_SIZE, at_boundary=True))
    if not min_length <= length <= max_length:
        raise FrameError("oversize", f"frame length {length} is outside {min_length}..{max_length}")
    return length


async def read_body(reader, length):
    """Read the ``length`` body bytes that follow a prefix. Cancelling it consumes nothing."""
    return await _read_exactly(reader, length, at_boundary=False)


async def _read_exactly(reader, n, at_boundary):
    try:
        return await reader.readexactly(n)
    except asyncio.IncompleteReadError as exc:
        if at_boundary and not exc.partial:
            raise ConnectionClosed("closed", "the peer closed the connection") from None
        raise ConnectionClosed("truncated", "the peer closed the connection mid-frame") from None
    except ConnectionError as exc:
        raise ConnectionClosed("reset", str(exc) or type(exc).__name__) from None


def counter_nonce(counter):
    """The 12-byte AEAD nonce of frame number ``counter``: the counter, little-endian."""
    return counter.to_bytes(NONCE_SIZE, "little")


class FrameCipher:
    """The two directions of an authenticated session: ``tx_key`` seals what we send, ``rx_key``
    opens what we receive, each with its own frame counter starting at 0. A counter is never
    reused; a replayed, reordered or altered frame fails to open."""

    __slots__ = ("_tx_key", "_rx_key", "tx_counter", "rx_counter", "max_frame")

    def __init__(self, tx_key, rx_key, max_frame=MAX_FRAME):
        if len(tx_key) != KEY_SIZE or len(rx_key) != KEY_SIZE:
            raise ValueError(f"session keys must be {KEY_SIZE} bytes")
        if tx_key == rx_key:
            raise ValueError("the two directions must use different keys")
        self._tx_key = bytes(tx_key)
        self._rx_key = bytes(rx_key)
        self.tx_counter = 0
        self.rx_counter = 0
        if not 0 < max_frame <= MAX_FRAME_CEILING:
            raise ValueError(f"max_frame must be 1..{MAX_FRAME_CEILING}")
        self.max_frame = max_frame

    def seal(self, plaintext):
        """The next outgoing frame (length prefix included) carrying ``plaintext``."""
        if not 0 < len(plaintext) <= self.max_frame:
            raise ValueError(f"frame plaintext of {len(plaintext)} bytes is outside "
                             f"1..{self.max_frame}")
        if self.tx_counter >= MAX_COUNTER:
            raise FrameError("counter_exhausted", "send counter exhausted; reconnect")
        nonce = counter_nonce(self.tx_counter)
        self.tx_counter += 1
        sealed = bindings.crypto_aead_chacha20poly1305_ietf_encrypt(
            bytes(plaintext), b"", nonce, self._tx_key)
        return _LENGTH.pack(len(sealed)) + sealed

    def open(self, sealed):
        """The plaintext of the next incoming frame body; ``FrameError("bad_mac")`` when it was not
        sealed by the peer under the expected counter."""
        if self.rx_counter >= MAX_COUNTER:
            raise FrameError("counter_exhausted", "receive counter exhausted; reconnect")
        try:
            plaintext = bindings.crypto_aead_chacha20poly1305_ietf_decrypt(
                bytes(sealed), b"", counter_nonce(self.rx_counter), self._rx_key)
        except CryptoError:
            raise FrameError("bad_mac", f"frame {self.rx_counter} failed authentication") from None
        self.rx_counter += 1
        return plaintext
