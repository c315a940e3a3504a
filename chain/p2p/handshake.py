"""The p2p handshake: check the network, prove node keys, agree on session keys (§12.2).

Each side sends ``hello1`` (magic, version, chain id, genesis hash, a fresh crypto_kx public key
and a fresh 32-byte nonce) and ``auth`` (its node public key and an Ed25519 signature binding both
kx keys, the peer's nonce and its role). The initiator goes first at every step and the responder
answers only what checked out: it sends its hello1 after a valid hello1, and signs its auth only
after the initiator's auth has verified (and ``check_peer`` accepted the proven key), so a peer
that has proved nothing costs the responder a kx key pair and at most one signature check, never
a signature. Session keys come from libsodium ``crypto_kx``: the initiator is the kx client. Every
read is under a timeout, and every failure is a ``HandshakeError`` with a stable reason code.
"""

import asyncio
import logging
import os
from typing import NamedTuple

from nacl import bindings
from nacl.exceptions import CryptoError

from chain import crypto
from edge._fast import DecodeError
from edge._fast.codec_py import (HASH_SIZE, MAX_CHAIN_ID, PUBKEY_SIZE, SIGNATURE_SIZE, Reader,
                                 encode_fixed, encode_text, encode_u8)

from chain.p2p.frames import (MAX_PLAIN_FRAME, ConnectionClosed, FrameError, P2PError, plain_frame,
                              read_frame)

log = logging.getLogger(__name__)

MAGIC = b"SSP2"
VERSION = 2
TAG_P2P_AUTH = b"ss/p2p-auth"
KX_KEY_SIZE = bindings.crypto_kx_PUBLIC_KEY_BYTES  # 32
NONCE_SIZE = 32
ROLE_INITIATOR, ROLE_RESPONDER = 0, 1

# Reason codes of HandshakeError.
BAD_MAGIC = "bad_magic"            # not a SmartShare p2p peer
BAD_VERSION = "bad_version"        # another protocol version
WRONG_CHAIN = "wrong_chain"        # another chain id
WRONG_GENESIS = "wrong_genesis"    # same chain id, another genesis
MALFORMED = "malformed"            # hello1 or auth is not canonical
BAD_KEY = "bad_key"                # the peer's kx key is unusable (low order) or mirrors ours
BAD_AUTH = "bad_auth"              # the peer's signature does not verify
SELF_CONNECTION = "self_connection"  # the peer proved our own node key
TIMEOUT = "timeout"                # the peer was silent or slow
CLOSED = "closed"                  # the peer went away mid-handshake
OVERSIZE = "oversize"              # a handshake frame length is out of bounds
UNREACHABLE = "unreachable"        # open_connection could not connect
REFUSED = "refused"                # check_peer turned the proven key away (the responder's side)


class HandshakeError(P2PError):
    """The handshake failed; ``reason`` is one of the codes above, ``detail`` says more."""


class HandshakeResult(NamedTuple):
    """An authenticated session: the peer's node key and our two directional AEAD keys."""
    peer_pubkey: bytes
    rx_key: bytes
    tx_key: bytes


def encode_hello1(chain_id, genesis_hash, kx_pubkey, nonce):
    """``"SSP2" || u8(2) || text(chain_id, 32) || fixed(genesis, 32) || fixed(kx, 32) ||
    fixed(nonce, 32)``."""
    return b"".join((MAGIC, encode_u8(VERSION, "hello1.version"),
                     encode_text(chain_id, MAX_CHAIN_ID, "hello1.chain_id"),
                     encode_fixed(genesis_hash, HASH_SIZE, "hello1.genesis_hash"),
                     encode_fixed(kx_pubkey, KX_KEY_SIZE, "hello1.kx_pubkey"),
                     encode_fixed(nonce, NONCE_SIZE, "hello1.nonce")))


def check_hello1(data, chain_id, genesis_hash):
    """The peer's ``(kx_pubkey, nonce)`` from its hello1, once magic, version, chain id and
    genesis hash match ours."""
    if data[:len(MAGIC)] != MAGIC:
        raise HandshakeError(BAD_MAGIC, f"peer sent {bytes(data[:len(MAGIC)])!r}, not {MAGIC!r}")
    r = Reader(data, len(MAGIC))
    try:
        version = r.u8("hello1.version")
        if version != VERSION:
            raise HandshakeError(BAD_VERSION, f"peer speaks version {version}, we speak {VERSION}")
        peer_chain = r.text(MAX_CHAIN_ID, "hello1.chain_id")
        peer_genesis = r.fixed(HASH_SIZE, "hello1.genesis_hash")
        kx_pubkey = r.fixed(KX_KEY_SIZE, "hello1.kx_pubkey")
        nonce = r.fixed(NONCE_SIZE, "hello1.nonce")
        r.end("hello1")
    except DecodeError as exc:
        raise HandshakeError(MALFORMED, str(exc)) from None
    if peer_chain != chain_id:
        raise HandshakeError(WRONG_CHAIN,
                             f"peer is on chain {peer_chain!r}, we are on {chain_id!r}")
    if peer_genesis != genesis_hash:
        raise HandshakeError(WRONG_GENESIS, f"peer has genesis {peer_genesis.hex()}, "
                                            f"we have {bytes(genesis_hash).hex()}")
    return kx_pubkey, nonce


def auth_digest(signer_kx, other_kx, other_nonce, signer_role):
    """``H("ss/p2p-auth", signer_kx || other_kx || other_nonce || u8(signer_role))``: what a side
    signs (through ``signing_message(chain_id, ·)``) to prove its node key for this session."""
    return crypto.hash_of(TAG_P2P_AUTH, b"".join((
        encode_fixed(signer_kx, KX_KEY_SIZE, "auth.signer_kx"),
        encode_fixed(other_kx, KX_KEY_SIZE, "auth.other_kx"),
        encode_fixed(other_nonce, NONCE_SIZE, "auth.other_nonce"),
        encode_u8(signer_role, "auth.role"))))


def encode_auth(node_pubkey, signature):
    """``fixed(node_pubkey, 32) || fixed(signature, 64)``."""
    return (encode_fixed(node_pubkey, PUBKEY_SIZE, "auth.pubkey")
            + encode_fixed(signature, SIGNATURE_SIZE, "auth.signature"))


def decode_auth(data):
    """``(node_pubkey, signature)`` from an auth body."""
    r = Reader(data)
    try:
        pubkey = r.fixed(PUBKEY_SIZE, "auth.pubkey")
        signature = r.fixed(SIGNATURE_SIZE, "auth.signature")
        r.end("auth")
    except DecodeError as exc:
        raise HandshakeError(MALFORMED, str(exc)) from None
    return pubkey, signature


def session_keys(initiator, kx_pubkey, kx_secret, peer_kx_pubkey):
    """``(rx_key, tx_key)`` from crypto_kx; the initiator is the client."""
    derive = (bindings.crypto_kx_client_session_keys if initiator
              else bindings.crypto_kx_server_session_keys)
    try:
        return derive(kx_pubkey, kx_secret, peer_kx_pubkey)
    except CryptoError:
        raise HandshakeError(BAD_KEY, "the peer's kx public key is unusable") from None


async def _send(writer, body, timeout):
    writer.write(plain_frame(body))
    try:
        await asyncio.wait_for(writer.drain(), timeout)
    except asyncio.TimeoutError:
        raise HandshakeError(TIMEOUT, "the peer did not read our handshake") from None
    except ConnectionError as exc:
        raise HandshakeError(CLOSED, str(exc) or type(exc).__name__) from None


async def _receive(reader, timeout, what):
    try:
        return await asyncio.wait_for(read_frame(reader, MAX_PLAIN_FRAME), timeout)
    except asyncio.TimeoutError:
        raise HandshakeError(TIMEOUT, f"no {what} from the peer within {timeout} s") from None
    except ConnectionClosed as exc:
        raise HandshakeError(CLOSED, f"while waiting for {what}: {exc.detail}") from None
    except FrameError as exc:
        raise HandshakeError(exc.reason, f"{what}: {exc.detail}") from None


async def handshake(reader, writer, keypair, chain_id, genesis_hash, initiator, timeout=5.0,
                    check_peer=None):
    """Run the handshake on a fresh stream; returns a HandshakeResult or raises HandshakeError.
    On the responder, ``check_peer(pubkey)`` may refuse the initiator's proven key with a reason
    (``HandshakeError(REFUSED)``) before anything is signed for it. The caller closes the stream
    on failure."""
    kx_pubkey, kx_secret = bindings.crypto_kx_keypair()
    nonce = os.urandom(NONCE_SIZE)
    hello = encode_hello1(chain_id, genesis_hash, kx_pubkey, nonce)
    role = ROLE_INITIATOR if initiator else ROLE_RESPONDER
    if initiator:
        await _send(writer, hello, timeout)
    peer_hello = await _receive(reader, timeout, "hello1")
    try:
        peer_kx, peer_nonce = check_hello1(peer_hello, chain_id, genesis_hash)
    except HandshakeError as exc:
        if not initiator and exc.reason in (BAD_VERSION, WRONG_CHAIN, WRONG_GENESIS):
            await _send(writer, hello, timeout)  # so the initiator sees the mismatch too
        raise
    if peer_kx == kx_pubkey or peer_nonce == nonce:
        raise HandshakeError(BAD_KEY, "the peer reflected our hello1")
    if initiator:
        rx_key, tx_key = session_keys(initiator, kx_pubkey, kx_secret, peer_kx)
        await _send_auth(writer, keypair, chain_id, kx_pubkey, peer_kx, peer_nonce, role, timeout)
        peer_pubkey = await _receive_auth(reader, chain_id, kx_pubkey, peer_kx, nonce, role,
                                          timeout)
    else:  # the initiator proves its key before we compute or sign anything for it
        await _send(writer, hello, timeout)
        peer_pubkey = await _receive_auth(reader, chain_id, kx_pubkey, peer_kx, nonce, role,
                                          timeout)
        rx_key, tx_key = session_keys(initiator, kx_pubkey, kx_secret, peer_kx)
        refusal = None if peer_pubkey == keypair.pubkey else check_peer and check_peer(peer_pubkey)
        if refusal:
            raise HandshakeError(REFUSED, f"{refusal}: node key {peer_pubkey.hex()[:16]}…")
        await _send_auth(writer, keypair, chain_id, kx_pubkey, peer_kx, peer_nonce, role, timeout)
    if peer_pubkey == keypair.pubkey:  # our own key: both ends see it (we answered above)
        raise HandshakeError(SELF_CONNECTION, "the peer is this node")
    return HandshakeResult(peer_pubkey, rx_key, tx_key)


async def _send_auth(writer, keypair, chain_id, kx_pubkey, peer_kx, peer_nonce, role, timeout):
    signature = keypair.sign(chain_id, auth_digest(kx_pubkey, peer_kx, peer_nonce, role))
    await _send(writer, encode_auth(keypair.pubkey, signature), timeout)


async def _receive_auth(reader, chain_id, kx_pubkey, peer_kx, nonce, role, timeout):
    """The peer's node key, once its auth proves it for this session."""
    peer_pubkey, peer_signature = decode_auth(await _receive(reader, timeout, "auth"))
    expected = auth_digest(peer_kx, kx_pubkey, nonce, 1 - role)
    if not crypto.verify(peer_pubkey, chain_id, expected, peer_signature):
        raise HandshakeError(BAD_AUTH, f"the signature does not prove node key {peer_pubkey.hex()}")
    return peer_pubkey
