# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The canonical codec for the hot types in C: the compiled twin of codec_py.

Same functions, same tuples, same ``DecodeError`` fields and messages as ``codec_py`` (the spec,
docs/protocol.md §1-§5). Decoding walks the raw buffer with a C cursor; encoding writes into a
stack buffer. Only transactions, headers and blocks live here; the rest of the format stays in
the reference primitives.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_CheckExact, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, \
    PyBytes_GET_SIZE
from cpython.long cimport PyLong_AsUnsignedLongLong
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memcpy

from edge._fast.codec_py import (KIND_HEAVY_RESULT, KIND_ROTATE_PRODUCER, MAX_BLOCK_VOTES, MAX_VOTE_BYTES, KIND_UNJAIL, KIND_EVIDENCE, MAX_EVIDENCE_HEADER, KIND_DEPLOY,
                                 KIND_CALL, MAX_CODE, MAX_ARGS, MAX_METHOD,
                                 ADDRESS_SIZE, HASH_SIZE, HEADER_VERSION, KIND_REGISTER_AGENT,
                                 KIND_STAKE, KIND_TRANSFER, KIND_UNREGISTER_AGENT, KIND_UNSTAKE,
                                 KIND_VOTE, MAX_BLOCK_TXS, MAX_CHAIN_ID, MAX_ENDPOINT, MAX_MEMO,
                                 MAX_NAME, MAX_U64, MAX_VOTES, PUBKEY_SIZE, SIGNATURE_SIZE,
                                 TAG_ACCOUNT, TAG_BLOCK, TAG_HEADER, TAG_TX, MAX_UNBONDING,
                                 TAG_FRAME, FRAME_VERSION, FRAME_HELLO, FRAME_DATA,
                                 MAX_FRAME_PAYLOAD, DEVICE_ID_SIZE, DecodeError, encode_block)

DEF TX_BUF = 20480  # a deploy carries up to 12 KiB of code

# C copies of the sizes, so pointer arithmetic stays in C (checked against codec_py below).
cdef enum:
    C_ADDRESS_SIZE = 20

assert C_ADDRESS_SIZE == ADDRESS_SIZE


from edge._fast.cursor cimport (Cursor, as_bytes, fail, need, open_cursor, read_end,
                                read_fixed, read_length, read_tag, read_u8, read_uvarint_obj,
                                read_var_bytes)

# -- decoding ------------------------------------------------------------------------------------

cdef str _text(Cursor *c, Py_ssize_t limit, str field):
    cdef Py_ssize_t n = read_length(c, limit, field, ".length", "bytes")
    need(c, n, field)
    c.pos += n
    try:
        return PyUnicode_DecodeUTF8(<const char *>(c.data + c.pos - n), n, NULL)
    except UnicodeDecodeError:
        raise DecodeError(field, "not valid UTF-8") from None


cdef tuple _address_set(Cursor *c, Py_ssize_t limit, str field):
    cdef Py_ssize_t n = read_length(c, limit, field, ".count", "items"), i
    cdef list out = []
    cdef bytes address
    for i in range(n):
        need(c, C_ADDRESS_SIZE, field)
        if i > 0 and _compare20(c.data + c.pos, c.data + c.pos - C_ADDRESS_SIZE) <= 0:
            fail(field, "addresses must be sorted and unique")
        out.append(read_fixed(c, ADDRESS_SIZE, field))
    return tuple(out)


cdef inline int _compare20(const unsigned char *a, const unsigned char *b) noexcept:
    cdef int i
    for i in range(20):
        if a[i] != b[i]:
            return -1 if a[i] < b[i] else 1
    return 0


cdef tuple _producer_binding(Cursor *c, str what):
    return (read_fixed(c, PUBKEY_SIZE, what + ".producer"), read_uvarint_obj(c, what + ".epoch"),
            read_fixed(c, HASH_SIZE, what + ".commit"),
            read_fixed(c, SIGNATURE_SIZE, what + ".binding"))


cdef tuple _payload(Cursor *c, int kind):
    if kind == KIND_TRANSFER:
        return (read_fixed(c, ADDRESS_SIZE, "transfer.to"), read_uvarint_obj(c, "transfer.amount"),
                read_var_bytes(c, MAX_MEMO, "transfer.memo"))
    if kind == KIND_STAKE:
        return (read_uvarint_obj(c, "stake.amount"),)
    if kind == KIND_UNSTAKE:
        return (read_uvarint_obj(c, "unstake.amount"),)
    if kind == KIND_VOTE:
        return (_address_set(c, MAX_VOTES, "vote.candidates"),)
    if kind == KIND_REGISTER_AGENT:
        return (_text(c, MAX_NAME, "agent.name"), _text(c, MAX_ENDPOINT, "agent.endpoint"),
                *_producer_binding(c, "agent"))
    if kind == KIND_ROTATE_PRODUCER:
        return _producer_binding(c, "rotate")
    if kind == KIND_UNREGISTER_AGENT or kind == KIND_UNJAIL:
        return ()
    if kind == KIND_EVIDENCE:
        return (read_var_bytes(c, MAX_EVIDENCE_HEADER, "evidence.first"),
                read_var_bytes(c, MAX_EVIDENCE_HEADER, "evidence.second"))
    if kind == KIND_DEPLOY:
        return (read_var_bytes(c, MAX_CODE, "deploy.code"), read_var_bytes(c, MAX_ARGS, "deploy.args"),
                read_uvarint_obj(c, "deploy.gas_limit"))
    if kind == KIND_CALL:
        return (read_fixed(c, C_ADDRESS_SIZE, "call.contract"), _text(c, MAX_METHOD, "call.method"),
                read_var_bytes(c, MAX_ARGS, "call.args"), read_uvarint_obj(c, "call.value"),
                read_uvarint_obj(c, "call.gas_limit"))
    if kind == KIND_HEAVY_RESULT:
        return (read_fixed(c, HASH_SIZE, "heavy.call"), read_u8(c, "heavy.status"),
                read_uvarint_obj(c, "heavy.gas_used"), read_fixed(c, HASH_SIZE, "heavy.result"))
    fail("tx.kind", f"unknown transaction kind {kind}")


cdef tuple _read_tx(Cursor *c):
    read_tag(c, TAG_TX, "tx.tag")
    cdef int kind = read_u8(c, "tx.kind")
    if kind < KIND_TRANSFER or kind > KIND_HEAVY_RESULT:
        fail("tx.kind", f"unknown transaction kind {kind}")
    chain_id = _text(c, MAX_CHAIN_ID, "tx.chain_id")
    sender = read_fixed(c, PUBKEY_SIZE, "tx.sender")
    nonce = read_uvarint_obj(c, "tx.nonce")
    fee = read_uvarint_obj(c, "tx.fee")
    payload = _payload(c, kind)
    signature = read_fixed(c, SIGNATURE_SIZE, "tx.signature")
    return (kind, chain_id, sender, nonce, fee, payload, signature)


cdef tuple _read_header(Cursor *c):
    read_tag(c, TAG_HEADER, "header.tag")
    cdef int version = read_u8(c, "header.version")
    cdef int flag
    if version != HEADER_VERSION:
        fail("header.version", f"unsupported version {version}")
    height = read_uvarint_obj(c, "header.height")
    prev_hash = read_fixed(c, HASH_SIZE, "header.prev_hash")
    timestamp_ms = read_uvarint_obj(c, "header.timestamp_ms")
    slot = read_uvarint_obj(c, "header.slot")
    producer = read_fixed(c, PUBKEY_SIZE, "header.producer")
    reveal = read_fixed(c, HASH_SIZE, "header.reveal")
    flag = read_u8(c, "header.renewal")
    if flag > 1:
        fail("header.renewal", f"presence flag must be 0 or 1, got {flag}")
    renewal = read_fixed(c, HASH_SIZE, "header.renewal") if flag else None
    return (version, height, prev_hash, timestamp_ms, slot, producer, reveal, renewal,
            read_uvarint_obj(c, "header.justified_round"), read_uvarint_obj(c, "header.lib_height"),
            read_fixed(c, HASH_SIZE, "header.tx_root"), read_fixed(c, HASH_SIZE, "header.votes_root"),
            read_fixed(c, HASH_SIZE, "header.state_root"),
            read_fixed(c, HASH_SIZE, "header.receipts_root"),
            read_fixed(c, SIGNATURE_SIZE, "header.signature"))


def decode_tx(data):
    """Decode one transaction; the buffer must hold exactly one."""
    cdef bytes raw = as_bytes(data)
    cdef Cursor c
    open_cursor(&c, raw)
    tx = _read_tx(&c)
    read_end(&c, "tx")
    return tx


def decode_header(data):
    cdef bytes raw = as_bytes(data)
    cdef Cursor c
    open_cursor(&c, raw)
    header = _read_header(&c)
    read_end(&c, "header")
    return header


def decode_block(data):
    """Decode a block into ``(header, header_bytes, txs, tx_bytes_list, vote_bytes_list)``."""
    cdef bytes raw = as_bytes(data)
    cdef Cursor c
    cdef Py_ssize_t start, n, i
    open_cursor(&c, raw)
    read_tag(&c, TAG_BLOCK, "block.tag")
    start = c.pos
    header = _read_header(&c)
    header_bytes = raw[start:c.pos]
    n = read_length(&c, MAX_BLOCK_TXS, "block.txs", ".count", "items")
    cdef list txs = [], raws = []
    for i in range(n):
        start = c.pos
        txs.append(_read_tx(&c))
        raws.append(PyBytes_FromStringAndSize(<const char *>(c.data + start), c.pos - start))
    n = read_length(&c, MAX_BLOCK_VOTES, "block.votes", ".count", "items")
    cdef list votes = [read_var_bytes(&c, MAX_VOTE_BYTES, "block.vote") for i in range(n)]
    read_end(&c, "block")
    return header, header_bytes, txs, raws, votes


# -- encoding ------------------------------------------------------------------------------------

cdef struct Out:
    unsigned char *data
    Py_ssize_t size
    Py_ssize_t cap


cdef inline void _start(Out *o, unsigned char *buf, Py_ssize_t cap) noexcept:
    o.data = buf
    o.size = 0
    o.cap = cap


cdef int _room(Out *o, Py_ssize_t n) except -1:
    if o.size + n > o.cap:
        raise ValueError("encoding exceeds the maximum object size")
    return 0


cdef int _put_u8(Out *o, int value) except -1:
    _room(o, 1)
    o.data[o.size] = <unsigned char>value
    o.size += 1
    return 0


cdef int _put_uvarint(Out *o, object value) except -1:
    if type(value) is not int and (not isinstance(value, int) or isinstance(value, bool)):
        raise TypeError(f"integer expected, got {type(value).__name__}")
    if value < 0 or value > MAX_U64:
        raise ValueError(f"integer {value} is outside 0..2^64-1")
    cdef unsigned long long v = PyLong_AsUnsignedLongLong(value)
    _room(o, 10)
    while v >= 0x80:
        o.data[o.size] = <unsigned char>((v & 0x7F) | 0x80)
        o.size += 1
        v >>= 7
    o.data[o.size] = <unsigned char>v
    o.size += 1
    return 0


cdef int _put_raw(Out *o, object data, Py_ssize_t size, Py_ssize_t limit, str field,
                  bint prefixed) except -1:
    """Fixed-size (``size`` >= 0) or length-prefixed (``limit``) bytes."""
    cdef const char *p
    cdef Py_ssize_t n
    if PyBytes_CheckExact(data):
        p = PyBytes_AS_STRING(data)
        n = PyBytes_GET_SIZE(data)
    elif PyByteArray_CheckExact(data):
        p = PyByteArray_AS_STRING(data)
        n = PyByteArray_GET_SIZE(data)
    else:
        raise TypeError(f"{field}: bytes expected, got {type(data).__name__}")
    if prefixed:
        if n > limit:
            raise ValueError(f"{field}: {n} bytes exceeds the limit of {limit}")
        _put_uvarint(o, n)
    elif n != size:
        raise ValueError(f"{field}: must be {size} bytes, got {n}")
    _room(o, n)
    memcpy(o.data + o.size, p, n)
    o.size += n
    return 0


cdef int _put_text(Out *o, object text, Py_ssize_t limit, str field) except -1:
    if not isinstance(text, str):
        raise TypeError(f"{field}: str expected, got {type(text).__name__}")
    return _put_raw(o, (<str>text).encode("utf-8"), -1, limit, field, True)


cdef int _put_byte_field(Out *o, object value, str field) except -1:
    if not isinstance(value, int) or not 0 <= value <= 255:
        raise ValueError(f"{field}: {value!r} is not a byte value")
    return _put_u8(o, value)


cdef int _put_address_set(Out *o, object addresses, Py_ssize_t limit, str field) except -1:
    addresses = tuple(addresses)
    if len(addresses) > limit:
        raise ValueError(f"{field}: {len(addresses)} items exceeds the limit of {limit}")
    _put_uvarint(o, len(addresses))
    previous = None
    for address in addresses:
        _put_raw(o, address, ADDRESS_SIZE, 0, field, False)
        if previous is not None and address <= previous:
            raise ValueError(f"{field}: addresses must be sorted and unique")
        previous = address
    return 0


cdef int _put_producer_binding(Out *o, object producer, object epoch, object commit,
                               object binding, str what) except -1:
    _put_raw(o, producer, PUBKEY_SIZE, 0, what + ".producer", False)
    _put_uvarint(o, epoch)
    _put_raw(o, commit, HASH_SIZE, 0, what + ".commit", False)
    return _put_raw(o, binding, SIGNATURE_SIZE, 0, what + ".binding", False)


cdef int _put_payload(Out *o, object kind, object payload) except -1:
    if kind == KIND_TRANSFER:
        to, amount, memo = payload
        _put_raw(o, to, ADDRESS_SIZE, 0, "transfer.to", False)
        _put_uvarint(o, amount)
        return _put_raw(o, memo, -1, MAX_MEMO, "transfer.memo", True)
    if kind == KIND_STAKE or kind == KIND_UNSTAKE:
        (amount,) = payload
        return _put_uvarint(o, amount)
    if kind == KIND_VOTE:
        (candidates,) = payload
        return _put_address_set(o, candidates, MAX_VOTES, "vote.candidates")
    if kind == KIND_REGISTER_AGENT:
        name, endpoint, producer, epoch, commit, binding = payload
        _put_text(o, name, MAX_NAME, "agent.name")
        _put_text(o, endpoint, MAX_ENDPOINT, "agent.endpoint")
        return _put_producer_binding(o, producer, epoch, commit, binding, "agent")
    if kind == KIND_ROTATE_PRODUCER:
        producer, epoch, commit, binding = payload
        return _put_producer_binding(o, producer, epoch, commit, binding, "rotate")
    if kind == KIND_UNREGISTER_AGENT or kind == KIND_UNJAIL:
        if tuple(payload) != ():
            raise ValueError("this transaction kind has no payload")
        return 0
    if kind == KIND_EVIDENCE:
        first, second = payload
        _put_raw(o, first, -1, MAX_EVIDENCE_HEADER, "evidence.first", True)
        return _put_raw(o, second, -1, MAX_EVIDENCE_HEADER, "evidence.second", True)
    if kind == KIND_DEPLOY:
        code, args, gas_limit = payload
        _put_raw(o, code, -1, MAX_CODE, "deploy.code", True)
        _put_raw(o, args, -1, MAX_ARGS, "deploy.args", True)
        return _put_uvarint(o, gas_limit)
    if kind == KIND_CALL:
        contract, method, args, value, gas_limit = payload
        _put_raw(o, contract, C_ADDRESS_SIZE, 0, "call.contract", False)
        _put_text(o, method, MAX_METHOD, "call.method")
        _put_raw(o, args, -1, MAX_ARGS, "call.args", True)
        _put_uvarint(o, value)
        return _put_uvarint(o, gas_limit)
    if kind == KIND_HEAVY_RESULT:
        call, status, gas_used, result = payload
        _put_raw(o, call, HASH_SIZE, 0, "heavy.call", False)
        _put_byte_field(o, status, "heavy.status")
        _put_uvarint(o, gas_used)
        return _put_raw(o, result, HASH_SIZE, 0, "heavy.result", False)
    raise ValueError(f"unknown transaction kind {kind!r}")


cdef int _put_tx_unsigned(Out *o, object tx) except -1:
    kind, chain_id, sender, nonce, fee, payload = tx[:6]
    _put_u8(o, TAG_TX)
    _put_byte_field(o, kind, "tx.kind")
    _put_text(o, chain_id, MAX_CHAIN_ID, "tx.chain_id")
    _put_raw(o, sender, PUBKEY_SIZE, 0, "tx.sender", False)
    _put_uvarint(o, nonce)
    _put_uvarint(o, fee)
    return _put_payload(o, kind, payload)


ctypedef int (*Writer)(Out *o, object obj) except -1


cdef bytes _encode(Writer write, object obj, Py_ssize_t signature_at, str field):
    """``write`` the unsigned part of ``obj``, then its signature ``obj[signature_at]`` unless
    ``signature_at`` is negative."""
    cdef unsigned char buf[TX_BUF]
    cdef Out o
    _start(&o, buf, TX_BUF)
    write(&o, obj)
    if signature_at >= 0:
        _put_raw(&o, obj[signature_at], SIGNATURE_SIZE, 0, field, False)
    return PyBytes_FromStringAndSize(<char *>buf, o.size)


def encode_tx_unsigned(tx):
    """The signed part of a transaction: everything but the signature."""
    return _encode(_put_tx_unsigned, tx, -1, None)


def encode_tx(tx):
    """Encode ``(kind, chain_id, sender, nonce, fee, payload, signature)``."""
    return _encode(_put_tx_unsigned, tx, 6, "tx.signature")


cdef int _put_header_unsigned(Out *o, object h) except -1:
    (version, height, prev_hash, timestamp_ms, slot, producer, reveal, renewal, justified_round,
     lib_height, tx_root, votes_root, state_root, receipts_root) = h[:14]
    _put_u8(o, TAG_HEADER)
    _put_byte_field(o, version, "header.version")
    _put_uvarint(o, height)
    _put_raw(o, prev_hash, HASH_SIZE, 0, "header.prev_hash", False)
    _put_uvarint(o, timestamp_ms)
    _put_uvarint(o, slot)
    _put_raw(o, producer, PUBKEY_SIZE, 0, "header.producer", False)
    _put_raw(o, reveal, HASH_SIZE, 0, "header.reveal", False)
    if renewal is None:
        _put_u8(o, 0)
    else:
        _put_u8(o, 1)
        _put_raw(o, renewal, HASH_SIZE, 0, "header.renewal", False)
    _put_uvarint(o, justified_round)
    _put_uvarint(o, lib_height)
    _put_raw(o, tx_root, HASH_SIZE, 0, "header.tx_root", False)
    _put_raw(o, votes_root, HASH_SIZE, 0, "header.votes_root", False)
    _put_raw(o, state_root, HASH_SIZE, 0, "header.state_root", False)
    return _put_raw(o, receipts_root, HASH_SIZE, 0, "header.receipts_root", False)


def encode_header_unsigned(h):
    return _encode(_put_header_unsigned, h, -1, None)


def encode_header(h):
    """Encode ``(version, height, prev_hash, timestamp_ms, slot, producer, reveal, renewal,
    justified_round, lib_height, tx_root, votes_root, state_root, receipts_root, signature)``."""
    return _encode(_put_header_unsigned, h, 14, "header.signature")



# -- account records ------------------------------------------------------------------------------

def encode_account(account):
    """Encode ``(balance, nonce, stake, votes, unbonding)``; unbonding holds
    ``(amount, release_height)`` pairs in release order."""
    balance, nonce, stake, votes, unbonding = account
    if len(unbonding) > MAX_UNBONDING:
        raise ValueError(f"account.unbonding: {len(unbonding)} items exceeds the limit of "
                         f"{MAX_UNBONDING}")
    cdef unsigned char buf[TX_BUF]
    cdef Out o
    _start(&o, buf, TX_BUF)
    _put_u8(&o, TAG_ACCOUNT)
    _put_uvarint(&o, balance)
    _put_uvarint(&o, nonce)
    _put_uvarint(&o, stake)
    _put_address_set(&o, votes, MAX_VOTES, "account.votes")
    _put_uvarint(&o, len(unbonding))
    previous = 0
    for amount, release in unbonding:
        if release < previous:
            raise ValueError("account.unbonding: entries must be in release order")
        _put_uvarint(&o, amount)
        _put_uvarint(&o, release)
        previous = release
    return PyBytes_FromStringAndSize(<char *>buf, o.size)


def decode_account(data):
    """Decode an account record; the buffer must hold exactly one."""
    cdef bytes raw = as_bytes(data)
    cdef Cursor c
    cdef Py_ssize_t n, i
    open_cursor(&c, raw)
    read_tag(&c, TAG_ACCOUNT, "account.tag")
    balance = read_uvarint_obj(&c, "account.balance")
    nonce = read_uvarint_obj(&c, "account.nonce")
    stake = read_uvarint_obj(&c, "account.stake")
    votes = _address_set(&c, MAX_VOTES, "account.votes")
    n = read_length(&c, MAX_UNBONDING, "account.unbonding", ".count", "items")
    cdef list unbonding = []
    previous = 0
    for i in range(n):
        amount = read_uvarint_obj(&c, "account.unbonding.amount")
        release = read_uvarint_obj(&c, "account.unbonding.release")
        if release < previous:
            fail("account.unbonding", "entries must be in release order")
        unbonding.append((amount, release))
        previous = release
    read_end(&c, "account")
    return (balance, nonce, stake, votes, tuple(unbonding))



# -- device frames --------------------------------------------------------------------------------

cdef int _put_frame_unsigned(Out *o, object frame) except -1:
    version, kind, device_id, seq, timestamp_ms, payload = frame[:6]
    if version != FRAME_VERSION:
        raise ValueError(f"frame.version: unsupported version {version!r}")
    if not isinstance(kind, int) or not FRAME_HELLO <= kind <= FRAME_DATA:
        raise ValueError(f"frame.kind: unknown frame kind {kind!r}")
    _put_u8(o, TAG_FRAME)
    _put_u8(o, version)
    _put_u8(o, kind)
    _put_raw(o, device_id, DEVICE_ID_SIZE, 0, "frame.device_id", False)
    _put_uvarint(o, seq)
    _put_uvarint(o, timestamp_ms)
    return _put_text(o, payload, MAX_FRAME_PAYLOAD, "frame.payload")


def encode_frame_unsigned(frame):
    """The signed part of a device frame: everything but the signature."""
    return _encode(_put_frame_unsigned, frame, -1, None)


def encode_frame(frame):
    """Encode ``(version, kind, device_id, seq, timestamp_ms, payload, signature)``."""
    return _encode(_put_frame_unsigned, frame, 6, "frame.signature")


def decode_frame(data):
    """Decode one device frame; the buffer must hold exactly one."""
    cdef bytes raw = as_bytes(data)
    cdef Cursor c
    open_cursor(&c, raw)
    read_tag(&c, TAG_FRAME, "frame.tag")
    cdef int version = read_u8(&c, "frame.version")
    if version != FRAME_VERSION:
        fail("frame.version", f"unsupported version {version}")
    cdef int kind = read_u8(&c, "frame.kind")
    if kind < FRAME_HELLO or kind > FRAME_DATA:
        fail("frame.kind", f"unknown frame kind {kind}")
    device_id = read_fixed(&c, DEVICE_ID_SIZE, "frame.device_id")
    seq = read_uvarint_obj(&c, "frame.seq")
    timestamp_ms = read_uvarint_obj(&c, "frame.timestamp_ms")
    payload = _text(&c, MAX_FRAME_PAYLOAD, "frame.payload")
    signature = read_fixed(&c, SIGNATURE_SIZE, "frame.signature")
    read_end(&c, "frame")
    return (version, kind, device_id, seq, timestamp_ms, payload, signature)
