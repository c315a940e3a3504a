# cython: language_level=3
"""A strict C cursor over a bytes buffer, shared by the compiled twins (cimport only).

Errors are ``codec_py.DecodeError`` with the same fields and messages as ``codec_py.Reader``.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.long cimport PyLong_FromUnsignedLongLong


cdef struct Cursor:
    const unsigned char *data
    Py_ssize_t size
    Py_ssize_t pos


cdef inline int fail(str field, str message, str suffix=None) except -1:
    """Raise DecodeError for ``field + suffix`` (joined only now: hot paths pass them apart)."""
    from edge._fast.codec_py import DecodeError
    raise DecodeError(field if suffix is None else field + suffix, message)


cdef inline void open_cursor(Cursor *c, bytes data) noexcept:
    c.data = <const unsigned char *>PyBytes_AS_STRING(data)
    c.size = PyBytes_GET_SIZE(data)
    c.pos = 0


cdef inline int read_u8(Cursor *c, str field, str suffix=None) except -1:
    if c.pos >= c.size:
        fail(field, "unexpected end of data", suffix)
    c.pos += 1
    return c.data[c.pos - 1]


cdef inline int read_uvarint(Cursor *c, str field, unsigned long long *out,
                             str suffix=None) except -1:
    """Minimal LEB128 of at most 64 bits into ``out``."""
    cdef unsigned long long value = 0
    cdef unsigned char byte
    cdef int i
    for i in range(10):
        if c.pos + i >= c.size:
            fail(field, "unexpected end of data", suffix)
        byte = c.data[c.pos + i]
        if byte < 0x80:
            if byte == 0 and i > 0:
                fail(field, "non-minimal integer encoding", suffix)
            if i == 9 and byte > 1:
                fail(field, "integer exceeds 64 bits", suffix)
            out[0] = value | ((<unsigned long long>byte) << (7 * i))
            c.pos += i + 1
            return 0
        value |= (<unsigned long long>(byte & 0x7F)) << (7 * i)
    return fail(field, "integer exceeds 64 bits", suffix)


cdef inline object read_uvarint_obj(Cursor *c, str field):
    cdef unsigned long long value
    read_uvarint(c, field, &value)
    return PyLong_FromUnsignedLongLong(value)


cdef inline int need(Cursor *c, Py_ssize_t size, str field, str suffix=None) except -1:
    if c.pos + size > c.size:
        fail(field, f"needs {size} bytes, {c.size - c.pos} left", suffix)
    return 0


cdef inline bytes read_fixed(Cursor *c, Py_ssize_t size, str field, str suffix=None):
    need(c, size, field, suffix)
    c.pos += size
    return PyBytes_FromStringAndSize(<const char *>(c.data + c.pos - size), size)


cdef inline Py_ssize_t read_length(Cursor *c, Py_ssize_t limit, str field, str suffix,
                                   str unit) except -1:
    cdef unsigned long long n
    read_uvarint(c, field, &n, suffix)
    if n > <unsigned long long>limit:
        fail(field, f"{n} {unit} exceeds the limit of {limit}")
    return <Py_ssize_t>n


cdef inline bytes read_var_bytes(Cursor *c, Py_ssize_t limit, str field):
    return read_fixed(c, read_length(c, limit, field, ".length", "bytes"), field)


cdef inline int read_tag(Cursor *c, int expected, str field) except -1:
    cdef int got = read_u8(c, field)
    if got != expected:
        fail(field, f"unknown type tag 0x{got:02x} (expected 0x{expected:02x})")
    return 0


cdef inline int read_end(Cursor *c, str what) except -1:
    if c.pos != c.size:
        fail(what, f"{c.size - c.pos} trailing bytes")
    return 0


cdef inline bytes as_bytes(object data):
    """``data`` as bytes, accepting what ``codec_py.Reader`` accepts."""
    if type(data) is bytes:
        return <bytes>data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"bytes expected, got {type(data).__name__}")
