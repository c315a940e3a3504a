"""The peer-to-peer transport: handshake, encrypted frames and messages (docs/protocol.md §12).

This package moves opaque block, header, transaction and proof bytes between authenticated nodes;
it knows nothing of the ledger. It may import ``edge._fast``, ``chain.crypto``, ``chain.keys`` and
PyNaCl only. Failures are typed with stable reason codes for peer scoring: ``HandshakeError``,
``FrameError``, ``ConnectionClosed`` (all ``P2PError``) and the codec's ``DecodeError``;
``error_reason`` maps any of them to one code.
"""

from edge._fast import DecodeError

from chain.p2p.connection import Connection, accept, open_connection
from chain.p2p.frames import (MAX_FRAME, MAX_FRAME_CEILING, MAX_PLAIN_FRAME, ConnectionClosed,
                              FrameCipher, FrameError, P2PError)
from chain.p2p.handshake import TAG_P2P_AUTH, HandshakeError
from chain.p2p.messages import (MESSAGE_CLASSES, BlockMsg, Blocks, GetBlocks, GetHeaders, GetProof,
                                Headers, Hello, Peers, Ping, Pong, ProofMsg, TxMsg, Txs, decode_message,
                                encode_message)

MALFORMED = "malformed"


def error_reason(exc):
    """The stable reason code of a p2p failure: the ``reason`` of a P2PError, ``malformed`` for a
    DecodeError (a sealed message that is not canonical)."""
    if isinstance(exc, P2PError):
        return exc.reason
    if isinstance(exc, DecodeError):
        return MALFORMED
    raise TypeError(f"not a p2p error: {type(exc).__name__}")


__all__ = [
    "Connection", "accept", "open_connection",
    "P2PError", "HandshakeError", "FrameError", "ConnectionClosed", "DecodeError", "error_reason",
    "FrameCipher", "MAX_FRAME", "MAX_FRAME_CEILING", "MAX_PLAIN_FRAME", "TAG_P2P_AUTH",
    "MESSAGE_CLASSES", "decode_message", "encode_message",
    "Hello", "TxMsg", "BlockMsg", "GetBlocks", "Blocks", "GetHeaders", "Headers", "GetProof",
    "ProofMsg", "Ping", "Pong", "Peers", "Txs",
]
