"""One authenticated, encrypted link to a peer, and the two ways to get one (§12).

``open_connection`` dials a peer (we are the initiator); ``accept`` wraps the streams an
``asyncio.start_server`` callback receives (we are the responder). Both run the handshake and
return a ``Connection``, or raise ``HandshakeError`` after closing the stream. Failures are
logged at DEBUG only: a flood of them must not flood the log (the peer manager counts them and
writes a bounded summary).
"""

import asyncio
import logging

from chain.p2p.frames import (MAX_FRAME, TAG_SIZE, ConnectionClosed, FrameCipher,
                              FrameError, read_body, read_length)
from chain.p2p.handshake import TIMEOUT, UNREACHABLE, HandshakeError, handshake
from chain.p2p.messages import decode_message, encode_message

log = logging.getLogger(__name__)

CLOSE_TIMEOUT = 1.0  # how long close() waits for buffered data to flush before aborting


class Connection:
    """An authenticated, encrypted link: ``send`` and ``recv`` whole messages.

    ``peer_pubkey`` is the peer's proven node key, ``initiator`` whether we dialled, ``remote`` the
    peer's ``(host, port)``, ``max_frame`` the largest message either side may send. A ``FrameError`` or ``ConnectionClosed`` from ``recv`` closes the link
    (its frame counters can no longer be trusted); a ``DecodeError`` (a well-sealed but invalid
    message) leaves it open for the caller to judge.
    """

    def __init__(self, reader, writer, cipher: FrameCipher, peer_pubkey, initiator):
        self._reader = reader
        self._writer = writer
        self._cipher = cipher
        self._send_lock = asyncio.Lock()
        self._recv_lock = asyncio.Lock()
        self._closed = False
        self._pending_length = None  # a frame whose prefix was read by a cancelled recv()
        self.peer_pubkey = peer_pubkey
        self.initiator = initiator
        self.max_frame = cipher.max_frame
        peer = writer.get_extra_info("peername")
        self.remote = (peer[0], peer[1]) if peer else None

    def __repr__(self):
        return (f"Connection(peer={self.peer_pubkey.hex()[:16]}…, remote={self.remote}, "
                f"initiator={self.initiator}, closed={self._closed})")

    @property
    def closed(self):
        return self._closed

    async def send(self, message):
        """Encode, seal and write ``message``; concurrent sends never interleave their frames."""
        plaintext = encode_message(message)
        if len(plaintext) > self.max_frame:
            raise ValueError(f"message of {len(plaintext)} bytes exceeds the frame limit "
                             f"{self.max_frame}")
        async with self._send_lock:
            if self._closed:
                raise ConnectionClosed("closed", "the connection is closed")
            self._writer.write(self._cipher.seal(plaintext))
            try:
                await self._writer.drain()
            except ConnectionError as exc:
                await self.close()
                raise ConnectionClosed("reset", str(exc) or type(exc).__name__) from None

    async def recv(self):
        """Read, open and decode the next message. Cancelling it (e.g. an idle timeout with
        ``asyncio.wait_for``) is safe: the next call resumes the same frame."""
        async with self._recv_lock:
            if self._closed:
                raise ConnectionClosed("closed", "the connection is closed")
            try:
                if self._pending_length is None:
                    self._pending_length = await read_length(
                        self._reader, self.max_frame + TAG_SIZE, TAG_SIZE + 1)
                sealed = await read_body(self._reader, self._pending_length)
                self._pending_length = None
                plaintext = self._cipher.open(sealed)
            except (FrameError, ConnectionClosed) as exc:
                if isinstance(exc, FrameError):
                    log.info("p2p link %s dropped: %s", self.remote, exc)
                await self.close()
                raise
        return decode_message(plaintext, self.max_frame)

    async def close(self):
        """Close the link (idempotent); gives up flushing after CLOSE_TIMEOUT."""
        if self._closed:
            return
        self._closed = True
        await _close_writer(self._writer)


async def _close_writer(writer):
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)
    except (asyncio.TimeoutError, OSError):
        writer.transport.abort()
    except asyncio.CancelledError:
        writer.transport.abort()
        raise


async def _establish(reader, writer, keypair, chain_id, genesis_hash, initiator, timeout,
                     check_peer=None, max_frame=MAX_FRAME):
    peer = writer.get_extra_info("peername")
    try:
        result = await handshake(reader, writer, keypair, chain_id, genesis_hash, initiator,
                                 timeout, check_peer)
    except HandshakeError as exc:
        log.debug("p2p handshake with %s failed: %s", peer, exc)
        await _close_writer(writer)
        raise
    except BaseException:
        writer.transport.abort()
        raise
    cipher = FrameCipher(tx_key=result.tx_key, rx_key=result.rx_key, max_frame=max_frame)
    return Connection(reader, writer, cipher, result.peer_pubkey, initiator)


async def open_connection(host, port, keypair, chain_id, genesis_hash, timeout=5.0,
                          max_frame=MAX_FRAME):
    """Dial ``host:port`` and run the handshake as initiator; ``HandshakeError`` (reason
    ``unreachable`` when the TCP connect itself fails) on any failure. ``max_frame`` is the
    network's frame limit (both sides derive it from the same genesis)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except asyncio.TimeoutError:
        raise HandshakeError(TIMEOUT, f"connecting to {host}:{port} timed out") from None
    except OSError as exc:
        raise HandshakeError(UNREACHABLE, f"{host}:{port}: {exc}") from None
    return await _establish(reader, writer, keypair, chain_id, genesis_hash, True, timeout,
                            max_frame=max_frame)


async def accept(reader, writer, keypair, chain_id, genesis_hash, timeout=5.0, check_peer=None,
                 max_frame=MAX_FRAME):
    """Run the handshake as responder on streams from ``asyncio.start_server``. ``check_peer``
    (pubkey -> refusal reason or None) sees the initiator's proven key before we sign anything
    for it; a refusal is ``HandshakeError("refused")``."""
    return await _establish(reader, writer, keypair, chain_id, genesis_hash, False, timeout,
                            check_peer, max_frame)
