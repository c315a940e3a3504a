"""Canonical binary codec: primitives and the hot consensus types, the readable reference.

The format is specified in docs/protocol.md §3-§5. Objects are plain tuples here (this layer imports
nothing of ours); ``chain`` wraps them in named types. Decoding is strict: every failure raises
``DecodeError`` naming the field, and a buffer must be consumed exactly.
"""

MAX_U64 = (1 << 64) - 1
MAX_VARINT_BYTES = 10

# Object tags (first byte of every top-level encoding).
TAG_TX = 0x01
TAG_HEADER = 0x02
TAG_BLOCK = 0x03
TAG_ACCOUNT = 0x10
TAG_FRAME = 0x40

# Transaction kinds and their payload layouts.
KIND_TRANSFER = 1
KIND_STAKE = 2
KIND_UNSTAKE = 3
KIND_VOTE = 4
KIND_REGISTER_AGENT = 5
KIND_UNREGISTER_AGENT = 6
KIND_UNJAIL = 7
KIND_EVIDENCE = 8
KIND_DEPLOY = 9
KIND_CALL = 10
KIND_ROTATE_PRODUCER = 11
KIND_HEAVY_RESULT = 12
TX_KINDS = (KIND_TRANSFER, KIND_STAKE, KIND_UNSTAKE, KIND_VOTE, KIND_REGISTER_AGENT,
            KIND_UNREGISTER_AGENT, KIND_UNJAIL, KIND_EVIDENCE, KIND_DEPLOY, KIND_CALL,
            KIND_ROTATE_PRODUCER, KIND_HEAVY_RESULT)

HEADER_VERSION = 2
PUBKEY_SIZE = 32
ADDRESS_SIZE = 20
HASH_SIZE = 32
SIGNATURE_SIZE = 64

# Wire limits: the decoder's hard bounds. Consensus parameters may be tighter, never looser.
MAX_CHAIN_ID = 32
MAX_MEMO = 64
MAX_NAME = 32
MAX_ENDPOINT = 128
MAX_VOTES = 64
MAX_BLOCK_TXS = 65535
MAX_EVIDENCE_HEADER = 512
MAX_BLOCK_VOTES = 255
MAX_VOTE_BYTES = 192
MAX_CODE = 12288
MAX_ARGS = 4096
MAX_METHOD = 64
MAX_UNBONDING = 64
MAX_FRAME_PAYLOAD = 1024

# Device frames (docs/protocol.md §11).
FRAME_VERSION = 1
FRAME_HELLO, FRAME_METER, FRAME_EVENT, FRAME_DATA = 1, 2, 3, 4
FRAME_KINDS = (FRAME_HELLO, FRAME_METER, FRAME_EVENT, FRAME_DATA)
DEVICE_ID_SIZE = 8


class DecodeError(ValueError):
    """A buffer is not a canonical encoding; ``field`` names where it went wrong."""

    def __init__(self, field, message):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


# -- primitives ---------------------------------------------------------------------------------

def encode_uvarint(value):
    """Unsigned LEB128, minimal, at most 64 bits."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"integer expected, got {type(value).__name__}")
    if value < 0 or value > MAX_U64:
        raise ValueError(f"integer {value} is outside 0..2^64-1")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_bytes(data, limit, field):
    """Length-prefixed bytes, refusing more than ``limit``."""
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"{field}: bytes expected, got {type(data).__name__}")
    if len(data) > limit:
        raise ValueError(f"{field}: {len(data)} bytes exceeds the limit of {limit}")
    return encode_uvarint(len(data)) + bytes(data)


def encode_text(text, limit, field):
    """Length-prefixed UTF-8 text."""
    if not isinstance(text, str):
        raise TypeError(f"{field}: str expected, got {type(text).__name__}")
    return encode_bytes(text.encode("utf-8"), limit, field)


def encode_fixed(data, size, field):
    """Exactly ``size`` raw bytes."""
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"{field}: bytes expected, got {type(data).__name__}")
    if len(data) != size:
        raise ValueError(f"{field}: must be {size} bytes, got {len(data)}")
    return bytes(data)


def encode_u8(value, field):
    if not isinstance(value, int) or not 0 <= value <= 255:
        raise ValueError(f"{field}: {value!r} is not a byte value")
    return bytes((value,))


class Reader:
    """Strict cursor over a buffer; every read names its field for the error."""

    __slots__ = ("data", "pos")

    def __init__(self, data, pos=0):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"bytes expected, got {type(data).__name__}")
        self.data = bytes(data)
        self.pos = pos

    def u8(self, field):
        if self.pos >= len(self.data):
            raise DecodeError(field, "unexpected end of data")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def uvarint(self, field):
        data, pos = self.data, self.pos
        value = 0
        for i in range(MAX_VARINT_BYTES):
            if pos + i >= len(data):
                raise DecodeError(field, "unexpected end of data")
            byte = data[pos + i]
            value |= (byte & 0x7F) << (7 * i)
            if byte < 0x80:
                if byte == 0 and i > 0:
                    raise DecodeError(field, "non-minimal integer encoding")
                if value > MAX_U64:
                    raise DecodeError(field, "integer exceeds 64 bits")
                self.pos = pos + i + 1
                return value
        raise DecodeError(field, "integer exceeds 64 bits")

    def fixed(self, size, field):
        end = self.pos + size
        if end > len(self.data):
            raise DecodeError(field, f"needs {size} bytes, {len(self.data) - self.pos} left")
        out = self.data[self.pos:end]
        self.pos = end
        return out

    def var_bytes(self, limit, field):
        length = self.uvarint(field + ".length")
        if length > limit:
            raise DecodeError(field, f"{length} bytes exceeds the limit of {limit}")
        return self.fixed(length, field)

    def text(self, limit, field):
        raw = self.var_bytes(limit, field)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError(field, "not valid UTF-8") from None

    def count(self, limit, field):
        n = self.uvarint(field + ".count")
        if n > limit:
            raise DecodeError(field, f"{n} items exceeds the limit of {limit}")
        return n

    def tag(self, expected, field):
        got = self.u8(field)
        if got != expected:
            raise DecodeError(field, f"unknown type tag 0x{got:02x} (expected 0x{expected:02x})")

    def end(self, what):
        if self.pos != len(self.data):
            raise DecodeError(what, f"{len(self.data) - self.pos} trailing bytes")


# -- transactions ---------------------------------------------------------------------------------

def _encode_payload(kind, payload):
    if kind == KIND_TRANSFER:
        to, amount, memo = payload
        return (encode_fixed(to, ADDRESS_SIZE, "transfer.to") + encode_uvarint(amount)
                + encode_bytes(memo, MAX_MEMO, "transfer.memo"))
    if kind in (KIND_STAKE, KIND_UNSTAKE):
        (amount,) = payload
        return encode_uvarint(amount)
    if kind == KIND_VOTE:
        (candidates,) = payload
        return encode_address_set(candidates, MAX_VOTES, "vote.candidates")
    if kind == KIND_REGISTER_AGENT:
        name, endpoint, producer, epoch, commit, binding = payload
        return b"".join((encode_text(name, MAX_NAME, "agent.name"),
                         encode_text(endpoint, MAX_ENDPOINT, "agent.endpoint"),
                         _encode_producer_binding(producer, epoch, commit, binding, "agent")))
    if kind == KIND_ROTATE_PRODUCER:
        producer, epoch, commit, binding = payload
        return _encode_producer_binding(producer, epoch, commit, binding, "rotate")
    if kind in (KIND_UNREGISTER_AGENT, KIND_UNJAIL):
        if tuple(payload) != ():
            raise ValueError("this transaction kind has no payload")
        return b""
    if kind == KIND_EVIDENCE:
        first, second = payload
        return (encode_bytes(first, MAX_EVIDENCE_HEADER, "evidence.first")
                + encode_bytes(second, MAX_EVIDENCE_HEADER, "evidence.second"))
    if kind == KIND_DEPLOY:
        code, args, gas_limit = payload
        return (encode_bytes(code, MAX_CODE, "deploy.code") + encode_bytes(args, MAX_ARGS,
                                                                            "deploy.args")
                + encode_uvarint(gas_limit))
    if kind == KIND_CALL:
        contract, method, args, value, gas_limit = payload
        return b"".join((encode_fixed(contract, ADDRESS_SIZE, "call.contract"),
                         encode_text(method, MAX_METHOD, "call.method"),
                         encode_bytes(args, MAX_ARGS, "call.args"), encode_uvarint(value),
                         encode_uvarint(gas_limit)))
    if kind == KIND_HEAVY_RESULT:
        call, status, gas_used, result = payload
        return b"".join((encode_fixed(call, HASH_SIZE, "heavy.call"), encode_u8(status, "heavy.status"),
                         encode_uvarint(gas_used), encode_fixed(result, HASH_SIZE, "heavy.result")))
    raise ValueError(f"unknown transaction kind {kind!r}")


def _decode_payload(r, kind):
    if kind == KIND_TRANSFER:
        return (r.fixed(ADDRESS_SIZE, "transfer.to"), r.uvarint("transfer.amount"),
                r.var_bytes(MAX_MEMO, "transfer.memo"))
    if kind == KIND_STAKE:
        return (r.uvarint("stake.amount"),)
    if kind == KIND_UNSTAKE:
        return (r.uvarint("unstake.amount"),)
    if kind == KIND_VOTE:
        return (read_address_set(r, MAX_VOTES, "vote.candidates"),)
    if kind == KIND_REGISTER_AGENT:
        return (r.text(MAX_NAME, "agent.name"), r.text(MAX_ENDPOINT, "agent.endpoint"),
                *_read_producer_binding(r, "agent"))
    if kind == KIND_ROTATE_PRODUCER:
        return _read_producer_binding(r, "rotate")
    if kind in (KIND_UNREGISTER_AGENT, KIND_UNJAIL):
        return ()
    if kind == KIND_EVIDENCE:
        return (r.var_bytes(MAX_EVIDENCE_HEADER, "evidence.first"),
                r.var_bytes(MAX_EVIDENCE_HEADER, "evidence.second"))
    if kind == KIND_DEPLOY:
        return (r.var_bytes(MAX_CODE, "deploy.code"), r.var_bytes(MAX_ARGS, "deploy.args"),
                r.uvarint("deploy.gas_limit"))
    if kind == KIND_CALL:
        return (r.fixed(ADDRESS_SIZE, "call.contract"), r.text(MAX_METHOD, "call.method"),
                r.var_bytes(MAX_ARGS, "call.args"), r.uvarint("call.value"),
                r.uvarint("call.gas_limit"))
    if kind == KIND_HEAVY_RESULT:
        return (r.fixed(HASH_SIZE, "heavy.call"), r.u8("heavy.status"), r.uvarint("heavy.gas_used"),
                r.fixed(HASH_SIZE, "heavy.result"))
    raise DecodeError("tx.kind", f"unknown transaction kind {kind}")


def _encode_producer_binding(producer, epoch, commit, binding, what):
    """A producer key, its reveal chain (epoch and commitment) and the key's signature that
    binds them to the sending owner (docs/protocol.md §4)."""
    return b"".join((encode_fixed(producer, PUBKEY_SIZE, f"{what}.producer"),
                     encode_uvarint(epoch), encode_fixed(commit, HASH_SIZE, f"{what}.commit"),
                     encode_fixed(binding, SIGNATURE_SIZE, f"{what}.binding")))


def _read_producer_binding(r, what):
    return (r.fixed(PUBKEY_SIZE, f"{what}.producer"), r.uvarint(f"{what}.epoch"),
            r.fixed(HASH_SIZE, f"{what}.commit"), r.fixed(SIGNATURE_SIZE, f"{what}.binding"))


def encode_address_set(addresses, limit, field):
    """Count-prefixed 20-byte addresses in strictly increasing order (a canonical set)."""
    addresses = tuple(addresses)
    if len(addresses) > limit:
        raise ValueError(f"{field}: {len(addresses)} items exceeds the limit of {limit}")
    out = [encode_uvarint(len(addresses))]
    previous = None
    for address in addresses:
        out.append(encode_fixed(address, ADDRESS_SIZE, field))
        if previous is not None and address <= previous:
            raise ValueError(f"{field}: addresses must be sorted and unique")
        previous = address
    return b"".join(out)


def read_address_set(r, limit, field):
    n = r.count(limit, field)
    out = []
    for _ in range(n):
        address = r.fixed(ADDRESS_SIZE, field)
        if out and address <= out[-1]:
            raise DecodeError(field, "addresses must be sorted and unique")
        out.append(address)
    return tuple(out)


def encode_tx_unsigned(tx):
    """The signed part of a transaction: everything but the signature."""
    kind, chain_id, sender, nonce, fee, payload = tx[:6]
    return b"".join((
        bytes((TAG_TX,)), encode_u8(kind, "tx.kind"),
        encode_text(chain_id, MAX_CHAIN_ID, "tx.chain_id"),
        encode_fixed(sender, PUBKEY_SIZE, "tx.sender"),
        encode_uvarint(nonce), encode_uvarint(fee),
        _encode_payload(kind, payload),
    ))


def encode_tx(tx):
    """Encode ``(kind, chain_id, sender, nonce, fee, payload, signature)``."""
    return encode_tx_unsigned(tx) + encode_fixed(tx[6], SIGNATURE_SIZE, "tx.signature")


def read_tx(r):
    r.tag(TAG_TX, "tx.tag")
    kind = r.u8("tx.kind")
    if kind not in TX_KINDS:
        raise DecodeError("tx.kind", f"unknown transaction kind {kind}")
    chain_id = r.text(MAX_CHAIN_ID, "tx.chain_id")
    sender = r.fixed(PUBKEY_SIZE, "tx.sender")
    nonce = r.uvarint("tx.nonce")
    fee = r.uvarint("tx.fee")
    payload = _decode_payload(r, kind)
    signature = r.fixed(SIGNATURE_SIZE, "tx.signature")
    return (kind, chain_id, sender, nonce, fee, payload, signature)


def decode_tx(data):
    """Decode one transaction; the buffer must hold exactly one."""
    r = Reader(data)
    tx = read_tx(r)
    r.end("tx")
    return tx


# -- headers and blocks ---------------------------------------------------------------------------

def encode_header_unsigned(h):
    (version, height, prev_hash, timestamp_ms, slot, producer, reveal, renewal, justified_round,
     lib_height, tx_root, votes_root, state_root, receipts_root) = h[:14]
    return b"".join((
        bytes((TAG_HEADER,)), encode_u8(version, "header.version"),
        encode_uvarint(height), encode_fixed(prev_hash, HASH_SIZE, "header.prev_hash"),
        encode_uvarint(timestamp_ms), encode_uvarint(slot),
        encode_fixed(producer, PUBKEY_SIZE, "header.producer"),
        encode_fixed(reveal, HASH_SIZE, "header.reveal"), _encode_renewal(renewal),
        encode_uvarint(justified_round), encode_uvarint(lib_height),
        encode_fixed(tx_root, HASH_SIZE, "header.tx_root"),
        encode_fixed(votes_root, HASH_SIZE, "header.votes_root"),
        encode_fixed(state_root, HASH_SIZE, "header.state_root"),
        encode_fixed(receipts_root, HASH_SIZE, "header.receipts_root"),
    ))


def _encode_renewal(renewal):
    """``u8(0)``, or ``u8(1) || fixed(commit, 32)``: a new reveal chain from the next block."""
    if renewal is None:
        return b"\x00"
    return b"\x01" + encode_fixed(renewal, HASH_SIZE, "header.renewal")


def encode_header(h):
    """Encode ``(version, height, prev_hash, timestamp_ms, slot, producer, reveal, renewal,
    justified_round, lib_height, tx_root, votes_root, state_root, receipts_root, signature)``;
    ``renewal`` is None or 32 bytes."""
    return encode_header_unsigned(h) + encode_fixed(h[14], SIGNATURE_SIZE, "header.signature")


def read_header(r):
    r.tag(TAG_HEADER, "header.tag")
    version = r.u8("header.version")
    if version != HEADER_VERSION:
        raise DecodeError("header.version", f"unsupported version {version}")
    height, prev_hash = r.uvarint("header.height"), r.fixed(HASH_SIZE, "header.prev_hash")
    timestamp_ms, slot = r.uvarint("header.timestamp_ms"), r.uvarint("header.slot")
    producer, reveal = r.fixed(PUBKEY_SIZE, "header.producer"), r.fixed(HASH_SIZE, "header.reveal")
    flag = r.u8("header.renewal")
    if flag > 1:
        raise DecodeError("header.renewal", f"presence flag must be 0 or 1, got {flag}")
    renewal = r.fixed(HASH_SIZE, "header.renewal") if flag else None
    return (version, height, prev_hash, timestamp_ms, slot, producer, reveal, renewal,
            r.uvarint("header.justified_round"), r.uvarint("header.lib_height"),
            r.fixed(HASH_SIZE, "header.tx_root"), r.fixed(HASH_SIZE, "header.votes_root"),
            r.fixed(HASH_SIZE, "header.state_root"), r.fixed(HASH_SIZE, "header.receipts_root"),
            r.fixed(SIGNATURE_SIZE, "header.signature"))


def decode_header(data):
    r = Reader(data)
    header = read_header(r)
    r.end("header")
    return header


def encode_block(header_bytes, tx_bytes_list, vote_bytes_list=()):
    """A block from an encoded header, encoded transactions and encoded finality votes."""
    if len(tx_bytes_list) > MAX_BLOCK_TXS:
        raise ValueError(f"block.txs: {len(tx_bytes_list)} exceeds the limit of {MAX_BLOCK_TXS}")
    if len(vote_bytes_list) > MAX_BLOCK_VOTES:
        raise ValueError(f"block.votes: {len(vote_bytes_list)} exceeds the limit of "
                         f"{MAX_BLOCK_VOTES}")
    return b"".join((bytes((TAG_BLOCK,)), header_bytes, encode_uvarint(len(tx_bytes_list)),
                     *tx_bytes_list, encode_uvarint(len(vote_bytes_list)),
                     *(encode_bytes(v, MAX_VOTE_BYTES, "block.vote") for v in vote_bytes_list)))


def decode_block(data):
    """Decode a block into ``(header, header_bytes, txs, tx_bytes_list, vote_bytes_list)``
    (the votes stay encoded: ``chain.votes`` reads them)."""
    r = Reader(data)
    r.tag(TAG_BLOCK, "block.tag")
    start = r.pos
    header = read_header(r)
    header_bytes = r.data[start:r.pos]
    n = r.count(MAX_BLOCK_TXS, "block.txs")
    txs, raws = [], []
    for _ in range(n):
        start = r.pos
        txs.append(read_tx(r))
        raws.append(r.data[start:r.pos])
    votes = [r.var_bytes(MAX_VOTE_BYTES, "block.vote")
             for _ in range(r.count(MAX_BLOCK_VOTES, "block.votes"))]
    r.end("block")
    return header, header_bytes, txs, raws, votes


# -- account records (read and written by every transfer) ----------------------------------------

def encode_account(account):
    """Encode ``(balance, nonce, stake, votes, unbonding)``; unbonding holds
    ``(amount, release_height)`` pairs in release order."""
    balance, nonce, stake, votes, unbonding = account
    if len(unbonding) > MAX_UNBONDING:
        raise ValueError(f"account.unbonding: {len(unbonding)} items exceeds the limit of "
                         f"{MAX_UNBONDING}")
    parts = [bytes((TAG_ACCOUNT,)), encode_uvarint(balance), encode_uvarint(nonce),
             encode_uvarint(stake), encode_address_set(votes, MAX_VOTES, "account.votes"),
             encode_uvarint(len(unbonding))]
    previous = 0
    for amount, release in unbonding:
        if release < previous:
            raise ValueError("account.unbonding: entries must be in release order")
        parts += [encode_uvarint(amount), encode_uvarint(release)]
        previous = release
    return b"".join(parts)


def decode_account(data):
    """Decode an account record; the buffer must hold exactly one."""
    r = Reader(data)
    r.tag(TAG_ACCOUNT, "account.tag")
    balance, nonce, stake = (r.uvarint("account.balance"), r.uvarint("account.nonce"),
                             r.uvarint("account.stake"))
    votes = read_address_set(r, MAX_VOTES, "account.votes")
    unbonding = []
    for _ in range(r.count(MAX_UNBONDING, "account.unbonding")):
        entry = (r.uvarint("account.unbonding.amount"), r.uvarint("account.unbonding.release"))
        if unbonding and entry[1] < unbonding[-1][1]:
            raise DecodeError("account.unbonding", "entries must be in release order")
        unbonding.append(entry)
    r.end("account")
    return (balance, nonce, stake, votes, tuple(unbonding))


# -- device frames (signed by devices, sent over MQTT) ---------------------------------------------

def encode_frame_unsigned(frame):
    """The signed part of a device frame: everything but the signature."""
    version, kind, device_id, seq, timestamp_ms, payload = frame[:6]
    if version != FRAME_VERSION:
        raise ValueError(f"frame.version: unsupported version {version!r}")
    if kind not in FRAME_KINDS:
        raise ValueError(f"frame.kind: unknown frame kind {kind!r}")
    return b"".join((bytes((TAG_FRAME, version, kind)),
                     encode_fixed(device_id, DEVICE_ID_SIZE, "frame.device_id"),
                     encode_uvarint(seq), encode_uvarint(timestamp_ms),
                     encode_text(payload, MAX_FRAME_PAYLOAD, "frame.payload")))


def encode_frame(frame):
    """Encode ``(version, kind, device_id, seq, timestamp_ms, payload, signature)``."""
    return encode_frame_unsigned(frame) + encode_fixed(frame[6], SIGNATURE_SIZE, "frame.signature")


def decode_frame(data):
    """Decode one device frame; the buffer must hold exactly one."""
    r = Reader(data)
    r.tag(TAG_FRAME, "frame.tag")
    version = r.u8("frame.version")
    if version != FRAME_VERSION:
        raise DecodeError("frame.version", f"unsupported version {version}")
    kind = r.u8("frame.kind")
    if kind not in FRAME_KINDS:
        raise DecodeError("frame.kind", f"unknown frame kind {kind}")
    frame = (version, kind, r.fixed(DEVICE_ID_SIZE, "frame.device_id"), r.uvarint("frame.seq"),
             r.uvarint("frame.timestamp_ms"), r.text(MAX_FRAME_PAYLOAD, "frame.payload"),
             r.fixed(SIGNATURE_SIZE, "frame.signature"))
    r.end("frame")
    return frame
