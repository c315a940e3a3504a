"""P2P messages: ``u8 type || body``, one per encrypted frame (docs/protocol.md §12.4).

Each message type is a NamedTuple with ``encode()``; ``decode_message`` decodes any of them
strictly with the canonical codec primitives: an unknown type, truncated data, trailing bytes, a
non-minimal integer or a length, count or value over its limit raise ``DecodeError``. Blocks,
transactions, headers and proofs travel as opaque bytes; this layer never parses them. Encoding a
value the decoder would refuse raises ``ValueError``/``TypeError`` instead.
"""

from typing import NamedTuple, Optional, Tuple

from edge._fast import DecodeError
from edge._fast.codec_py import (HASH_SIZE, MAX_U64, Reader, encode_bytes, encode_fixed,
                                 encode_text, encode_uvarint)

from chain.p2p.frames import MAX_FRAME, MAX_FRAME_CEILING

# Message types (0x50..0x5C; outside the object tags of §1).
HELLO, TX, BLOCK, GET_BLOCKS, BLOCKS, GET_HEADERS, HEADERS, GET_PROOF, PROOF, PING, PONG, PEERS, \
    TXS = range(0x50, 0x5D)

# Wire limits (bytes unless said otherwise).
MAX_AGENT = 32               # Hello.agent, UTF-8 bytes
MAX_PORT = 65535
MAX_TX = 16 * 1024           # one raw transaction
MAX_BLOCK = MAX_FRAME_CEILING - 64   # one raw block (the link's frame limit bounds it first)
MAX_BLOCKS = 500             # blocks per GetBlocks / Blocks
MAX_HEADER = 1024            # one raw header
MAX_HEADERS = 2000           # headers per GetHeaders / Headers
MAX_PROOF_VALUE = 64 * 1024  # ProofMsg.value
MAX_PROOF = 16 * 1024        # ProofMsg.proof (a §10.3 proof is at most 8,324 bytes)
MAX_PEERS = 64               # addresses per Peers
MAX_PEER_ADDRESS = 64        # one "host:port", UTF-8 bytes
MAX_TXS = 1000               # transactions per Txs


def _u64(value, field):
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_U64:
        raise ValueError(f"{field}: {value!r} is not a u64")
    return encode_uvarint(value)


def _count(value, limit, field, minimum=0):
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= limit:
        raise ValueError(f"{field}: {value!r} is outside {minimum}..{limit}")
    return encode_uvarint(value)


def _read_count(r, limit, field, minimum=0):
    value = r.uvarint(field)
    if not minimum <= value <= limit:
        raise DecodeError(field, f"{value} is outside {minimum}..{limit}")
    return value


def _encode_list(items, item_limit, count_limit, field):
    items = tuple(items)
    if len(items) > count_limit:
        raise ValueError(f"{field}: {len(items)} items exceeds the limit of {count_limit}")
    return encode_uvarint(len(items)) + b"".join(encode_bytes(i, item_limit, field) for i in items)


def _read_list(r, item_limit, count_limit, field):
    return tuple(r.var_bytes(item_limit, field) for _ in range(r.count(count_limit, field)))


def _fits(data, field):
    if len(data) > MAX_FRAME_CEILING:
        raise ValueError(f"{field}: {len(data)} bytes does not fit a frame ({MAX_FRAME_CEILING})")
    return data


class Hello(NamedTuple):
    """0x50: our chain position and listening port, sent first on every link."""
    head_height: int
    head_hash: bytes
    lib_height: int
    listen_port: int
    agent: str = ""
    TYPE = HELLO

    def encode(self):
        if self.lib_height > self.head_height:
            raise ValueError("hello.lib_height: above head_height")
        return b"".join((bytes((HELLO,)), _u64(self.head_height, "hello.head_height"),
                         encode_fixed(self.head_hash, HASH_SIZE, "hello.head_hash"),
                         _u64(self.lib_height, "hello.lib_height"),
                         _count(self.listen_port, MAX_PORT, "hello.listen_port"),
                         encode_text(self.agent, MAX_AGENT, "hello.agent")))

    @classmethod
    def read(cls, r):
        head_height = r.uvarint("hello.head_height")
        head_hash = r.fixed(HASH_SIZE, "hello.head_hash")
        lib_height = r.uvarint("hello.lib_height")
        if lib_height > head_height:
            raise DecodeError("hello.lib_height", "above head_height")
        return cls(head_height, head_hash, lib_height,
                   _read_count(r, MAX_PORT, "hello.listen_port"), r.text(MAX_AGENT, "hello.agent"))


class TxMsg(NamedTuple):
    """0x51: one encoded transaction (opaque here)."""
    raw: bytes
    TYPE = TX

    def encode(self):
        return bytes((TX,)) + encode_bytes(self.raw, MAX_TX, "tx.raw")

    @classmethod
    def read(cls, r):
        return cls(r.var_bytes(MAX_TX, "tx.raw"))


class Txs(NamedTuple):
    """0x5C: a batch of encoded transactions (gossip sends what gathered in a few ms)."""
    raws: Tuple[bytes, ...]
    TYPE = TXS

    def encode(self):
        return _fits(bytes((TXS,)) + _encode_list(self.raws, MAX_TX, MAX_TXS, "txs"), "txs")

    @classmethod
    def read(cls, r):
        return cls(_read_list(r, MAX_TX, MAX_TXS, "txs"))


class BlockMsg(NamedTuple):
    """0x52: one encoded block, announced or relayed (opaque here)."""
    raw: bytes
    TYPE = BLOCK

    def encode(self):
        return bytes((BLOCK,)) + encode_bytes(self.raw, MAX_BLOCK, "block.raw")

    @classmethod
    def read(cls, r):
        return cls(r.var_bytes(MAX_BLOCK, "block.raw"))


class GetBlocks(NamedTuple):
    """0x53: ask for ``count`` (1..500) blocks from ``from_height`` up."""
    from_height: int
    count: int
    TYPE = GET_BLOCKS

    def encode(self):
        return (bytes((GET_BLOCKS,)) + _u64(self.from_height, "get_blocks.from_height")
                + _count(self.count, MAX_BLOCKS, "get_blocks.count", 1))

    @classmethod
    def read(cls, r):
        return cls(r.uvarint("get_blocks.from_height"),
                   _read_count(r, MAX_BLOCKS, "get_blocks.count", 1))


class Blocks(NamedTuple):
    """0x54: consecutive encoded blocks answering GetBlocks (0..500; the message must fit a
    frame)."""
    blocks: Tuple[bytes, ...]
    TYPE = BLOCKS

    def encode(self):
        return _fits(bytes((BLOCKS,)) + _encode_list(self.blocks, MAX_BLOCK, MAX_BLOCKS, "blocks"),
                     "blocks")

    @classmethod
    def read(cls, r):
        return cls(_read_list(r, MAX_BLOCK, MAX_BLOCKS, "blocks"))


class GetHeaders(NamedTuple):
    """0x55: ask for ``count`` (1..2000) headers from ``from_height`` up."""
    from_height: int
    count: int
    TYPE = GET_HEADERS

    def encode(self):
        return (bytes((GET_HEADERS,)) + _u64(self.from_height, "get_headers.from_height")
                + _count(self.count, MAX_HEADERS, "get_headers.count", 1))

    @classmethod
    def read(cls, r):
        return cls(r.uvarint("get_headers.from_height"),
                   _read_count(r, MAX_HEADERS, "get_headers.count", 1))


class Headers(NamedTuple):
    """0x56: consecutive encoded headers answering GetHeaders (0..2000)."""
    headers: Tuple[bytes, ...]
    TYPE = HEADERS

    def encode(self):
        return bytes((HEADERS,)) + _encode_list(self.headers, MAX_HEADER, MAX_HEADERS, "headers")

    @classmethod
    def read(cls, r):
        return cls(_read_list(r, MAX_HEADER, MAX_HEADERS, "headers"))


class GetProof(NamedTuple):
    """0x57: ask for the value of state key ``key`` at ``height``, with its proof."""
    key: bytes
    height: int
    TYPE = GET_PROOF

    def encode(self):
        return (bytes((GET_PROOF,)) + encode_fixed(self.key, HASH_SIZE, "get_proof.key")
                + _u64(self.height, "get_proof.height"))

    @classmethod
    def read(cls, r):
        return cls(r.fixed(HASH_SIZE, "get_proof.key"), r.uvarint("get_proof.height"))


class ProofMsg(NamedTuple):
    """0x58: a state proof (§10.3) and the header whose state root it is checked against;
    ``value`` is None when the proof shows the key is absent."""
    height: int
    value: Optional[bytes]
    proof: bytes
    header: bytes
    TYPE = PROOF

    def encode(self):
        value = (b"\x00" if self.value is None else
                 b"\x01" + encode_bytes(self.value, MAX_PROOF_VALUE, "proof.value"))
        return b"".join((bytes((PROOF,)), _u64(self.height, "proof.height"), value,
                         encode_bytes(self.proof, MAX_PROOF, "proof.proof"),
                         encode_bytes(self.header, MAX_HEADER, "proof.header")))

    @classmethod
    def read(cls, r):
        height = r.uvarint("proof.height")
        present = r.u8("proof.present")
        if present > 1:
            raise DecodeError("proof.present", f"flag must be 0 or 1, got {present}")
        value = r.var_bytes(MAX_PROOF_VALUE, "proof.value") if present else None
        return cls(height, value, r.var_bytes(MAX_PROOF, "proof.proof"),
                   r.var_bytes(MAX_HEADER, "proof.header"))


class Ping(NamedTuple):
    """0x59: liveness probe; the peer answers Pong with the same nonce."""
    nonce: int
    TYPE = PING

    def encode(self):
        return bytes((PING,)) + _u64(self.nonce, "ping.nonce")

    @classmethod
    def read(cls, r):
        return cls(r.uvarint("ping.nonce"))


class Pong(NamedTuple):
    """0x5A: the answer to Ping."""
    nonce: int
    TYPE = PONG

    def encode(self):
        return bytes((PONG,)) + _u64(self.nonce, "pong.nonce")

    @classmethod
    def read(cls, r):
        return cls(r.uvarint("pong.nonce"))


class Peers(NamedTuple):
    """0x5B: up to 64 peer addresses ``"host:port"`` (text, checked by the peer manager)."""
    addresses: Tuple[str, ...]
    TYPE = PEERS

    def encode(self):
        addresses = tuple(self.addresses)
        if len(addresses) > MAX_PEERS:
            raise ValueError(f"peers: {len(addresses)} items exceeds the limit of {MAX_PEERS}")
        return b"".join((bytes((PEERS,)), encode_uvarint(len(addresses)),
                         *(encode_text(a, MAX_PEER_ADDRESS, "peers") for a in addresses)))

    @classmethod
    def read(cls, r):
        n = r.count(MAX_PEERS, "peers")
        return cls(tuple(r.text(MAX_PEER_ADDRESS, "peers") for _ in range(n)))


MESSAGE_CLASSES = {cls.TYPE: cls for cls in (Hello, TxMsg, BlockMsg, GetBlocks, Blocks, GetHeaders,
                                             Headers, GetProof, ProofMsg, Ping, Pong, Peers, Txs)}


# The light client's messages (0x5D..0x65) live beside these; see chain/p2p/light.py.
from chain.p2p.light import LIGHT_MESSAGES  # noqa: E402  (it uses the helpers above)

MESSAGE_CLASSES.update(LIGHT_MESSAGES)


def encode_message(message):
    """The canonical bytes of ``message`` (any class of MESSAGE_CLASSES)."""
    if type(message) not in MESSAGE_CLASSES.values():
        raise TypeError(f"not a p2p message: {type(message).__name__}")
    return message.encode()


def decode_message(data, max_frame=MAX_FRAME):
    """Decode exactly one message from ``data`` (at most ``max_frame`` bytes, the link's frame
    limit); ``DecodeError`` if it is not canonical."""
    if len(data) > max_frame:
        raise DecodeError("message", f"{len(data)} bytes exceeds the limit of {max_frame}")
    r = Reader(data)
    kind = r.u8("message.type")
    cls = MESSAGE_CLASSES.get(kind)
    if cls is None:
        raise DecodeError("message.type", f"unknown message type 0x{kind:02x}")
    message = cls.read(r)
    r.end(cls.__name__)
    return message
