"""The p2p transport (chain/p2p, docs/protocol.md §12): message codec, frame cipher, and the
handshake and encrypted links over real sockets on 127.0.0.1, including hostile peers."""

import asyncio
import logging
import os
import socket
import struct
import subprocess
import sys
import time
import tracemalloc

import pytest
from hypothesis import given, settings, strategies as st
from nacl import bindings

from chain import crypto
from chain.keys import KeyPair
from chain.p2p import (Txs, MESSAGE_CLASSES, BlockMsg, Blocks, ConnectionClosed, DecodeError,
                       FrameCipher, FrameError, GetBlocks, GetHeaders, GetProof, HandshakeError,
                       Headers, Hello, Peers, Ping, Pong, ProofMsg, TxMsg, accept, decode_message,
                       encode_message, error_reason, open_connection)
from chain.p2p import frames, messages
from chain.p2p.frames import (MAX_FRAME, MAX_FRAME_CEILING, MAX_PLAIN_FRAME, MAX_SEALED, plain_frame,
                              read_frame)
from chain.p2p.handshake import auth_digest, check_hello1, encode_auth, encode_hello1

CHAIN = "ss-test"
GENESIS = bytes(range(32))
SERVER_KEY = KeyPair.from_seed(b"\x01" * 32)
CLIENT_KEY = KeyPair.from_seed(b"\x02" * 32)
OTHER_KEY = KeyPair.from_seed(b"\x03" * 32)
SERVER_HELLO = Hello(12, b"\xaa" * 32, 10, 7000, "server")
MiB = 1024 * 1024


def run(coro, limit=20):
    return asyncio.run(asyncio.wait_for(coro, limit))


def test_layering():
    """chain.p2p carries bytes only: it never pulls in the ledger, the node or edge (but _fast)."""
    code = ("import sys, chain.p2p; print(' '.join(m for m in sys.modules "
            "if m.startswith(('chain.', 'edge.'))))")
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                            text=True).stdout.split()
    assert "chain.p2p.connection" in loaded
    allowed = ("chain.p2p", "chain.crypto", "chain.keys", "chain.address", "edge._fast")
    assert [m for m in loaded if not m.startswith(allowed)] == []


# -- messages: layout, round trips, strict decoding ------------------------------------------------

u64 = st.integers(0, 2**64 - 1)
blob = st.binary(max_size=48)
hash32 = st.binary(min_size=32, max_size=32)
MESSAGES = st.one_of(
    st.builds(lambda hl, h, port, agent: Hello(hl[1], h, hl[0], port, agent),
              st.lists(u64, min_size=2, max_size=2).map(sorted), hash32, st.integers(0, 65535),
              st.text(max_size=8)),
    st.builds(TxMsg, blob), st.builds(BlockMsg, blob),
    st.builds(GetBlocks, u64, st.integers(1, 500)),
    st.builds(Blocks, st.lists(blob, max_size=6).map(tuple)),
    st.builds(GetHeaders, u64, st.integers(1, 2000)),
    st.builds(Headers, st.lists(blob, max_size=6).map(tuple)),
    st.builds(GetProof, hash32, u64),
    st.builds(ProofMsg, u64, st.none() | blob, blob, blob),
    st.builds(Ping, u64), st.builds(Pong, u64),
    st.builds(Peers, st.lists(st.text(max_size=16), max_size=6).map(tuple)),
    st.builds(Txs, st.lists(blob, max_size=6).map(tuple)),
)

LAYOUTS = [
    (Hello(10, b"\xaa" * 32, 8, 7000, "pi"), "500a" + "aa" * 32 + "08d836027069"),
    (TxMsg(b"\x01\x02"), "51020102"),
    (BlockMsg(b""), "5200"),
    (GetBlocks(1, 500), "5301f403"),
    (Blocks((b"\x03", b"")), "5402010300"),
    (GetHeaders(0, 2000), "5500d00f"),
    (Headers(()), "5600"),
    (GetProof(b"\x44" * 32, 5), "57" + "44" * 32 + "05"),
    (ProofMsg(7, None, b"\x30", b""), "580700013000"),
    (ProofMsg(7, b"", b"\x30", b""), "58070100013000"),
    (Ping(300), "59ac02"),
    (Pong(0), "5a00"),
    (Peers(("a:1",)), "5b0103613a31"),
    (Txs((b"\x01", b"")), "5c02010100"),
]


def test_layouts_cover_every_type():
    core = set(range(0x50, 0x5D))  # the light client's 0x5D.. are in tests/test_light_messages.py
    assert {type(m).TYPE for m, _ in LAYOUTS} == core and core <= set(MESSAGE_CLASSES)


@pytest.mark.parametrize("message, encoded", LAYOUTS, ids=lambda v: type(v).__name__
                         if not isinstance(v, str) else "")
def test_message_layout(message, encoded):
    assert encode_message(message).hex() == encoded
    assert decode_message(bytes.fromhex(encoded)) == message


@settings(max_examples=400, deadline=None)
@given(message=MESSAGES)
def test_message_round_trip(message):
    raw = encode_message(message)
    decoded = decode_message(raw)
    assert decoded == message and type(decoded) is type(message)
    assert encode_message(decoded) == raw


@settings(max_examples=200, deadline=None)
@given(message=MESSAGES, extra=st.binary(min_size=1, max_size=4), data=st.data())
def test_message_trailing_or_truncated(message, extra, data):
    raw = encode_message(message)
    with pytest.raises(DecodeError, match="trailing"):
        decode_message(raw + extra)
    with pytest.raises(DecodeError):
        decode_message(raw[:data.draw(st.integers(0, len(raw) - 1))])


def _uv(n):
    return messages.encode_uvarint(n).hex()


@pytest.mark.parametrize("raw, field", [
    ("", "message.type"), ("00", "message.type"), ("4f", "message.type"), ("66", "message.type"),
    ("ff", "message.type"),
    ("598000", "ping.nonce"),                                    # non-minimal uvarint
    ("59ffffffffffffffffff02", "ping.nonce"),                    # over 64 bits
    ("54" + _uv(501), "blocks"),                                 # too many blocks
    ("56" + _uv(2001), "headers"),                               # too many headers
    ("5b" + _uv(65), "peers"),                                   # too many peers
    ("5b01" + _uv(65) + "61" * 65, "peers"),                     # address too long
    ("5b0102c328", "peers"),                                     # invalid UTF-8
    ("5300" + _uv(0), "get_blocks.count"), ("5300" + _uv(501), "get_blocks.count"),
    ("5500" + _uv(0), "get_headers.count"), ("5500" + _uv(2001), "get_headers.count"),
    ("580702", "proof.present"),
    ("5801" + "00" + "00" + _uv(1025), "proof.header"),
    ("51" + _uv(16 * 1024 + 1), "tx.raw"),
    ("5601" + _uv(1025), "headers"),
    ("5006" + "aa" * 32 + "05" + _uv(65536) + "00", "hello.listen_port"),
    ("5006" + "aa" * 32 + "05" + "01" + "21" + "61" * 33, "hello.agent"),
    ("5005" + "aa" * 32 + "07" + "01" + "00", "hello.lib_height"),  # lib above head
    ("57" + "44" * 31, "get_proof.key"),
])
def test_strict_decoding(raw, field):
    with pytest.raises(DecodeError) as info:
        decode_message(bytes.fromhex(raw))
    assert info.value.field.startswith(field)
    assert error_reason(info.value) == "malformed"


def test_size_limits():
    biggest = BlockMsg(b"\x00" * messages.MAX_BLOCK)
    assert len(biggest.encode()) <= MAX_FRAME_CEILING
    assert decode_message(biggest.encode(), MAX_FRAME_CEILING) == biggest
    with pytest.raises(DecodeError, match="exceeds the limit"):   # a link's frame limit first
        decode_message(biggest.encode(), MAX_FRAME)
    with pytest.raises(DecodeError, match="exceeds"):
        decode_message(b"\x52" + messages.encode_uvarint(messages.MAX_BLOCK + 1)
                       + bytes(messages.MAX_BLOCK + 1))
    with pytest.raises(DecodeError, match="exceeds the limit"):
        decode_message(b"\x54" + bytes(MAX_FRAME))              # a message larger than a frame
    for bad in (BlockMsg(bytes(messages.MAX_BLOCK + 1)), TxMsg(bytes(16 * 1024 + 1)),
                Blocks((b"",) * 501), Blocks((bytes(9 * MiB), bytes(9 * MiB))),
                Headers((b"",) * 2001),
                Headers((bytes(1025),)), Peers(("a:1",) * 65), GetBlocks(0, 0), GetHeaders(0, 2001),
                Hello(1, bytes(32), 2, 0), Hello(1, bytes(32), 0, 65536), Ping(2**64), Ping(-1),
                GetProof(bytes(31), 0), ProofMsg(0, bytes(64 * 1024 + 1), b"", b"")):
        with pytest.raises((ValueError, TypeError)):
            encode_message(bad)
    with pytest.raises(TypeError):
        encode_message((0x59, 1))


# -- frames ----------------------------------------------------------------------------------------

def _cipher_pair():
    a_pk, a_sk = bindings.crypto_kx_keypair()
    b_pk, b_sk = bindings.crypto_kx_keypair()
    a_rx, a_tx = bindings.crypto_kx_client_session_keys(a_pk, a_sk, b_pk)
    b_rx, b_tx = bindings.crypto_kx_server_session_keys(b_pk, b_sk, a_pk)
    return FrameCipher(a_tx, a_rx), FrameCipher(b_tx, b_rx)


def test_frame_known_answer():
    cipher = FrameCipher(bytes(range(32)), bytes(range(1, 33)))
    assert frames.counter_nonce(1).hex() == "01" + "00" * 11
    assert cipher.seal(Ping(1).encode()).hex() == "0000001241b99b2eed7a6a85d046f11514c3d8e7a018"
    assert cipher.seal(Ping(1).encode()).hex() == "00000012cd3ef6b39fe5354c2c58e86df79f38792c51"
    peer = FrameCipher(bytes(range(1, 33)), bytes(range(32)))
    assert peer.open(bytes.fromhex("41b99b2eed7a6a85d046f11514c3d8e7a018")) == b"\x59\x01"


def test_frame_cipher_counters_replay_reorder_tamper():
    a, b = _cipher_pair()
    sealed = [a.seal(bytes([0x59, i])) for i in range(4)]
    assert len({s[4:] for s in [a.seal(b"\x59\x05"), a.seal(b"\x59\x05")]}) == 2  # fresh nonces
    assert b.open(sealed[0][4:]) == b"\x59\x00"
    for bad in (sealed[0][4:], sealed[2][4:], sealed[1][4:-1] + bytes([sealed[1][-1] ^ 1]),
                sealed[1][4:20]):                # replayed, reordered, tampered, truncated
        with pytest.raises(FrameError) as info:
            b.open(bad)
        assert info.value.reason == "bad_mac"
    assert b.open(sealed[1][4:]) == b"\x59\x01"  # failures do not advance the counter
    assert b.seal(b"\x5a\x00")[4:] != a.seal(b"\x5a\x00")[4:]  # directions use different keys
    with pytest.raises(ValueError):
        a.seal(b"")
    with pytest.raises(ValueError):
        a.seal(bytes(MAX_FRAME + 1))


@pytest.mark.parametrize("length", [0, 5, MAX_SEALED + 1, 2**32 - 1])
def test_oversize_length_is_refused_before_the_body(length):
    async def scenario():
        reader = asyncio.StreamReader()
        reader.feed_data(struct.pack(">I", length))  # and never any body
        tracemalloc.start()
        try:
            with pytest.raises(FrameError) as info:
                await asyncio.wait_for(read_frame(reader, MAX_SEALED, frames.TAG_SIZE + 1), 2)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert info.value.reason == "oversize" and peak < 256 * 1024
    run(scenario())


def test_plain_frames_and_hello1_layout():
    hello = encode_hello1(CHAIN, b"\x11" * 32, b"\x22" * 32, b"\x33" * 32)
    assert hello.hex() == ("53535032" "02" "07" + CHAIN.encode().hex() + "11" * 32 + "22" * 32
                           + "33" * 32)
    assert plain_frame(hello)[:4] == struct.pack(">I", 109)
    assert check_hello1(hello, CHAIN, b"\x11" * 32) == (b"\x22" * 32, b"\x33" * 32)
    for data, chain, genesis, reason in (
            (b"SSP3" + hello[4:], CHAIN, b"\x11" * 32, "bad_magic"),
            (b"SS", CHAIN, b"", "bad_magic"),
            (hello[:4] + b"\x01" + hello[5:], CHAIN, b"\x11" * 32, "bad_version"),
            (hello, "ss-main", b"\x11" * 32, "wrong_chain"),
            (hello, CHAIN, bytes(32), "wrong_genesis"),
            (hello + b"\x00", CHAIN, b"\x11" * 32, "malformed"),
            (hello[:-1], CHAIN, b"", "malformed")):
        with pytest.raises(HandshakeError) as info:
            check_hello1(data, chain, genesis)
        assert info.value.reason == reason
    with pytest.raises(ValueError):
        plain_frame(bytes(MAX_PLAIN_FRAME + 1))


def test_auth_digest_known_answer():
    digest = auth_digest(b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, 0)
    assert digest.hex() == "f5986b9a7aace0b7e6fa85591a14709f59d6c39372fbe28fda9d0a943f445838"
    preimage = b"\x01" * 32 + b"\x02" * 32 + b"\x03" * 32 + b"\x00"
    assert digest == crypto.hash_of(b"ss/p2p-auth", preimage)
    key = KeyPair.from_seed(b"\x07" * 32)
    assert key.sign(CHAIN, digest).hex() == (
        "59c27a1e7e0c4bc401496615cbde3764cdd1558a433edd79aa37550f7df2ead9"
        "3ee2dfeb6cfbb0b7f1a5bc26e4ecdbb0c144ca25cf42a1aea9455561aae80304")


# -- real sockets ----------------------------------------------------------------------------------

class EchoServer:
    """A p2p server on 127.0.0.1: sends SERVER_HELLO, then answers Ping with Pong and echoes the
    rest. Handshake and link failures go to ``failures``; links it accepted to ``accepted``."""

    def __init__(self, timeout=5.0, chain_id=CHAIN, genesis=GENESIS, keypair=SERVER_KEY):
        self.timeout, self.chain_id, self.genesis = timeout, chain_id, genesis
        self.keypair = keypair
        self.failures = asyncio.Queue()
        self.accepted = []
        self._writers = []

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        for writer in self._writers:
            writer.transport.abort()
        await self.server.wait_closed()

    async def _handle(self, reader, writer):
        self._writers.append(writer)
        try:
            conn = await accept(reader, writer, self.keypair, self.chain_id, self.genesis,
                                self.timeout)
        except HandshakeError as exc:
            await self.failures.put(exc)
            return
        self.accepted.append(conn)
        try:
            await conn.send(SERVER_HELLO)
            while True:
                try:
                    message = await conn.recv()
                except DecodeError as exc:     # the link itself is still sound
                    await self.failures.put(exc)
                    continue
                await conn.send(Pong(message.nonce) if isinstance(message, Ping) else message)
        except ConnectionClosed:
            pass
        except FrameError as exc:
            await self.failures.put(exc)
        finally:
            await conn.close()

    async def failure(self, timeout=5.0):
        return await asyncio.wait_for(self.failures.get(), timeout)

    async def expect_good_client(self):
        """The server still completes a handshake and serves messages."""
        conn = await open_connection("127.0.0.1", self.port, CLIENT_KEY, CHAIN, GENESIS)
        try:
            assert conn.peer_pubkey == SERVER_KEY.pubkey and conn.initiator
            assert await conn.recv() == SERVER_HELLO
            await conn.send(Ping(42))
            assert await conn.recv() == Pong(42)
        finally:
            await conn.close()
        assert self.failures.empty()


class Relay:
    """A TCP relay in front of a server that passes each client→server frame through
    ``hook(index, frame) -> frames to forward`` and records the frames the client sent."""

    def __init__(self, target_port, hook=None):
        self.target_port = target_port
        self.hook = hook or (lambda index, frame: [frame])
        self.recorded = []

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        self._writers = []
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        for writer in self._writers:
            writer.transport.abort()
        await self.server.wait_closed()

    async def _handle(self, client_reader, client_writer):
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [client_writer, server_writer]

        async def upstream():
            index = 0
            try:
                while True:
                    prefix = await client_reader.readexactly(4)
                    frame = prefix + await client_reader.readexactly(struct.unpack(">I", prefix)[0])
                    self.recorded.append(frame)
                    for out in self.hook(index, frame):
                        server_writer.write(out)
                    await server_writer.drain()
                    index += 1
            except (asyncio.IncompleteReadError, ConnectionError):
                server_writer.close()

        async def downstream():
            try:
                while data := await server_reader.read(65536):
                    client_writer.write(data)
                    await client_writer.drain()
            except ConnectionError:
                pass
            client_writer.close()

        await asyncio.gather(upstream(), downstream())


async def _raw_client(port, data=b""):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def _manual_auth(port, claimed_pubkey, signer, role=0, kx=None):
    """A hand-driven initiator: real hello1, then an auth naming ``claimed_pubkey`` signed by
    ``signer`` with ``role``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    kx_pk, _ = bindings.crypto_kx_keypair()
    kx_pk = kx if kx is not None else kx_pk
    writer.write(plain_frame(encode_hello1(CHAIN, GENESIS, kx_pk, os.urandom(32))))
    peer_kx, peer_nonce = check_hello1(await read_frame(reader, MAX_PLAIN_FRAME), CHAIN, GENESIS)
    signature = signer.sign(CHAIN, auth_digest(kx_pk, peer_kx, peer_nonce, role))
    writer.write(plain_frame(encode_auth(claimed_pubkey, signature)))
    return reader, writer


def test_handshake_and_messages_both_ways():
    async def scenario():
        async with EchoServer() as server:
            conn = await open_connection("127.0.0.1", server.port, CLIENT_KEY, CHAIN, GENESIS)
            assert conn.peer_pubkey == SERVER_KEY.pubkey and conn.initiator
            assert conn.remote == ("127.0.0.1", server.port)
            assert await conn.recv() == SERVER_HELLO                   # server → client
            (link,) = server.accepted
            assert link.peer_pubkey == CLIENT_KEY.pubkey and not link.initiator
            for message, _ in LAYOUTS:                               # client → server → client
                await conn.send(message)
                expected = Pong(message.nonce) if isinstance(message, Ping) else message
                assert await conn.recv() == expected
            big = Blocks(tuple(bytes([i]) * MiB for i in range(3)))   # a 3 MiB message
            await conn.send(big)
            assert await conn.recv() == big
            pings = [Ping(n) for n in range(50)]                      # concurrent sends
            await asyncio.gather(*(conn.send(p) for p in pings), conn.send(big))
            received = [await conn.recv() for _ in range(51)]
            assert sorted(m.nonce for m in received if isinstance(m, Pong)) == list(range(50))
            assert big in received
            await conn.close()
            await conn.close()                                         # idempotent
            with pytest.raises(ConnectionClosed):
                await conn.send(Ping(1))
            await server.expect_good_client()
    run(scenario())


@pytest.mark.parametrize("chain_id, genesis, reason", [
    ("ss-other", GENESIS, "wrong_chain"), (CHAIN, b"\xee" * 32, "wrong_genesis"),
])
def test_wrong_network_is_refused_on_both_ends(chain_id, genesis, reason, caplog):
    caplog.set_level(logging.DEBUG, logger="chain.p2p")  # DEBUG only: floods must not flood logs

    async def scenario():
        async with EchoServer() as server:
            with pytest.raises(HandshakeError) as info:
                await open_connection("127.0.0.1", server.port, CLIENT_KEY, chain_id, genesis)
            assert info.value.reason == reason
            assert (await server.failure()).reason == reason
            await server.expect_good_client()
    run(scenario())
    assert sum(reason in r.getMessage() for r in caplog.records) >= 2


def test_bad_magic_and_bad_version():
    async def scenario():
        async with EchoServer() as server:
            hello = encode_hello1(CHAIN, GENESIS, bytes(range(32)), bytes(32))
            for data, reason in ((b"GET / HTTP/1.1\r\n\r\n", "oversize"),  # 'GET ' as a length
                                 (plain_frame(b"HTTP" + hello[4:]), "bad_magic"),
                                 (plain_frame(hello[:4] + b"\x07" + hello[5:]), "bad_version"),
                                 (struct.pack(">I", MAX_PLAIN_FRAME + 1), "oversize"),
                                 (plain_frame(hello[:50]), "malformed")):
                _, writer = await _raw_client(server.port, data)
                assert (await server.failure()).reason == reason
                writer.close()
            await server.expect_good_client()

        async def impostor(reader, writer):   # a server that is not a SmartShare node
            writer.write(plain_frame(b"SSH-2.0-OpenSSH_9.6"))
            await reader.read()
            writer.close()
        fake = await asyncio.start_server(impostor, "127.0.0.1", 0)
        async with fake:
            with pytest.raises(HandshakeError) as info:
                await open_connection("127.0.0.1", fake.sockets[0].getsockname()[1], CLIENT_KEY,
                                      CHAIN, GENESIS)
            assert info.value.reason == "bad_magic"
    run(scenario())


def test_forged_reflected_and_self_auth():
    async def scenario():
        async with EchoServer() as server:
            # claims CLIENT_KEY's identity but signs with OTHER_KEY
            _, w1 = await _manual_auth(server.port, CLIENT_KEY.pubkey, OTHER_KEY)
            assert (await server.failure()).reason == "bad_auth"
            # a valid signature but for the responder's role (a reflected auth)
            _, w2 = await _manual_auth(server.port, CLIENT_KEY.pubkey, CLIENT_KEY, role=1)
            assert (await server.failure()).reason == "bad_auth"
            # a low-order kx key (found when the responder derives keys, after the auth)
            _, w3 = await _manual_auth(server.port, CLIENT_KEY.pubkey, CLIENT_KEY, kx=bytes(32))
            assert (await server.failure()).reason == "bad_key"
            for w in (w1, w2, w3):
                w.close()
            # the server's own key: both ends notice
            with pytest.raises(HandshakeError) as info:
                await open_connection("127.0.0.1", server.port, SERVER_KEY, CHAIN, GENESIS)
            assert info.value.reason == "self_connection"
            assert (await server.failure()).reason == "self_connection"
            await server.expect_good_client()
    run(scenario())


async def _read_all(reader, limit=5.0):
    """Every byte the peer sends until it closes."""
    return await asyncio.wait_for(reader.read(), limit)


def test_responder_signs_nothing_before_the_initiator_proves_its_key():
    """The responder answers a valid hello1 with its own (no signature), signs only after the
    initiator's auth verified, and ``check_peer`` can refuse a proven key before that."""
    hello_frame_size = 4 + len(encode_hello1(CHAIN, GENESIS, bytes(32), bytes(32)))
    seen = []

    def check_peer(pubkey):
        seen.append(pubkey)
        return "banned" if pubkey == OTHER_KEY.pubkey else None

    async def scenario():
        failures = asyncio.Queue()

        async def handle(reader, writer):
            try:
                conn = await accept(reader, writer, SERVER_KEY, CHAIN, GENESIS, 2.0, check_peer)
            except HandshakeError as exc:
                await failures.put(exc.reason)
                return
            await conn.close()
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            # garbage, or a hello1 for another chain's framing: not one byte back
            reader, writer = await _raw_client(port, plain_frame(b"HTTP" + bytes(60)))
            assert await _read_all(reader) == b"" and await failures.get() == "bad_magic"
            # a valid hello1 and a forged auth: after the responder's hello1 (read by
            # _manual_auth), nothing more comes back
            reader, writer = await _manual_auth(port, CLIENT_KEY.pubkey, OTHER_KEY)
            assert await _read_all(reader) == b"" and await failures.get() == "bad_auth"
            # a proven key that check_peer refuses: no auth either
            reader, writer = await _manual_auth(port, OTHER_KEY.pubkey, OTHER_KEY)
            assert await _read_all(reader) == b"" and await failures.get() == "refused"
            # a hello1 alone gets exactly one hello1 frame back
            reader, writer = await _raw_client(port, plain_frame(encode_hello1(
                CHAIN, GENESIS, bindings.crypto_kx_keypair()[0], os.urandom(32))))
            assert len(await reader.readexactly(hello_frame_size)) == hello_frame_size
            writer.close()
            assert await failures.get() == "closed"
            assert seen == [OTHER_KEY.pubkey]
            with pytest.raises(HandshakeError) as info:   # a dialling node sees the link close
                await open_connection("127.0.0.1", port, OTHER_KEY, CHAIN, GENESIS, timeout=2)
            assert info.value.reason == "closed" and await failures.get() == "refused"
            conn = await open_connection("127.0.0.1", port, CLIENT_KEY, CHAIN, GENESIS)
            assert conn.peer_pubkey == SERVER_KEY.pubkey and seen[-1] == CLIENT_KEY.pubkey
            await conn.close()

        async def low_order(reader, writer):    # a responder offering a low-order kx key
            await read_frame(reader, MAX_PLAIN_FRAME)
            writer.write(plain_frame(encode_hello1(CHAIN, GENESIS, bytes(32), os.urandom(32))))
            received.append(await reader.read())
            writer.close()
        received = []
        fake = await asyncio.start_server(low_order, "127.0.0.1", 0)
        async with fake:
            with pytest.raises(HandshakeError) as info:
                await open_connection("127.0.0.1", fake.sockets[0].getsockname()[1], CLIENT_KEY,
                                      CHAIN, GENESIS)
            assert info.value.reason == "bad_key"
            while not received:
                await asyncio.sleep(0.01)
            assert received == [b""], "the initiator signed nothing for a broken kx key"
    run(scenario())


def test_replayed_handshake_is_refused():
    async def scenario():
        async with EchoServer() as server, Relay(server.port) as relay:
            conn = await open_connection("127.0.0.1", relay.port, CLIENT_KEY, CHAIN, GENESIS)
            assert await conn.recv() == SERVER_HELLO
            await conn.close()
            hello1, auth = relay.recorded[:2]
            assert auth[4:36] == CLIENT_KEY.pubkey
            # an eavesdropper replays the captured hello1 and auth in a new session
            _, writer = await _raw_client(server.port, hello1 + auth)
            failure = await server.failure()
            assert failure.reason == "bad_auth" and error_reason(failure) == "bad_auth"
            writer.close()
            await server.expect_good_client()
    run(scenario())


def _swap_frames(first, second):
    held = []

    def hook(index, frame):
        if index == first:
            held.append(frame)
            return []
        return [frame] + held if index == second else [frame]
    return hook


@pytest.mark.parametrize("name, hook", [
    ("garbage", lambda i, f: [f if i != 3 else f[:4] + os.urandom(len(f) - 4)]),
    ("replayed", lambda i, f: [f, f] if i == 2 else [f]),
    ("reordered", _swap_frames(2, 3)),
    ("dropped", lambda i, f: [] if i == 2 else [f]),
])
def test_tampered_frames_fail_authentication(name, hook):
    async def scenario():
        async with EchoServer() as server, Relay(server.port, hook) as relay:
            conn = await open_connection("127.0.0.1", relay.port, CLIENT_KEY, CHAIN, GENESIS)
            assert await conn.recv() == SERVER_HELLO
            await conn.send(Ping(1))                                  # frame 2
            await conn.send(Ping(2))                                  # frame 3
            failure = await server.failure()
            assert isinstance(failure, FrameError) and failure.reason == "bad_mac"
            (link,) = server.accepted
            assert link.closed
            with pytest.raises(ConnectionClosed):                     # the server hung up
                while True:
                    await conn.recv()
            await server.expect_good_client()
    run(scenario())


def test_garbage_and_oversize_after_handshake():
    async def scenario():
        async with EchoServer() as server:
            for data, reason in ((struct.pack(">I", 40) + os.urandom(40), "bad_mac"),
                                 (struct.pack(">I", MAX_SEALED + 1), "oversize"),
                                 (b"\xff\xff\xff\xff", "oversize")):
                conn = await open_connection("127.0.0.1", server.port, CLIENT_KEY, CHAIN, GENESIS)
                conn._writer.write(data)                              # bypass the cipher
                failure = await server.failure()                     # no body needed to decide
                assert isinstance(failure, FrameError) and failure.reason == reason
                await conn.close()
            # a well-sealed but non-canonical message is a DecodeError and the link stays up
            conn = await open_connection("127.0.0.1", server.port, CLIENT_KEY, CHAIN, GENESIS)
            assert await conn.recv() == SERVER_HELLO
            conn._writer.write(conn._cipher.seal(b"\x59\x80\x00"))
            assert isinstance(await server.failure(), DecodeError)
            await conn.send(Ping(7))
            assert await conn.recv() == Pong(7)
            await conn.close()
            await server.expect_good_client()
    run(scenario())


def test_silent_peers_time_out_without_blocking_others():
    async def scenario():
        async with EchoServer(timeout=0.3) as server:
            started = time.monotonic()
            _, silent = await _raw_client(server.port)               # says nothing at all
            await server.expect_good_client()                        # served meanwhile
            failure = await server.failure()
            assert failure.reason == "timeout" and time.monotonic() - started < 3
            _, half = await _raw_client(server.port, plain_frame(    # hello1, then nothing
                encode_hello1(CHAIN, GENESIS, bindings.crypto_kx_keypair()[0], os.urandom(32))))
            assert (await server.failure()).reason == "timeout"
            silent.close()
            half.close()
            await server.expect_good_client()

        async def mute(reader, writer):
            await reader.read()
            writer.close()
        quiet = await asyncio.start_server(mute, "127.0.0.1", 0)
        async with quiet:
            with pytest.raises(HandshakeError) as info:
                await open_connection("127.0.0.1", quiet.sockets[0].getsockname()[1], CLIENT_KEY,
                                      CHAIN, GENESIS, timeout=0.3)
            assert info.value.reason == "timeout"
        with socket.socket() as probe:                               # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        with pytest.raises(HandshakeError) as info:
            await open_connection("127.0.0.1", closed_port, CLIENT_KEY, CHAIN, GENESIS, timeout=0.3)
        assert info.value.reason == "unreachable"
    run(scenario())


def test_recv_is_cancellation_safe():
    async def scenario():
        links = asyncio.Queue()

        async def handle(reader, writer):
            await links.put(await accept(reader, writer, SERVER_KEY, CHAIN, GENESIS))
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with server:
            conn = await open_connection("127.0.0.1", server.sockets[0].getsockname()[1],
                                         CLIENT_KEY, CHAIN, GENESIS)
            link = await links.get()
            frame = link._cipher.seal(Ping(5).encode())
            for part in (frame[:2], frame[2:6], frame[6:-1]):  # inside the prefix, then the body
                link._writer.write(part)
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(conn.recv(), 0.05)
            link._writer.write(frame[-1:])
            assert await conn.recv() == Ping(5)
            await link.send(Pong(6))
            assert await conn.recv() == Pong(6)
            await conn.close()
            await link.close()
    run(scenario())
