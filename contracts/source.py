"""Contract source checks and compilation to Lua bytecode (docs §14.2).

Before Lua compiles a contract, a tokenizer that follows Lua 5.4's lexer refuses what the
sandbox cannot make deterministic or bounded:

- float literals (``1.5``, ``1e3``, ``0x1p4``, ``.5``) and decimal integers above 2^63-1 (Lua
  would turn them into floats), the ``/`` and ``^`` operators (they always produce floats; use
  ``//``): contracts are integer-only, so no NaN, rounding or libm result can differ between
  x86_64 and arm64 nodes;
- the ``..`` operator, the one way to build a string without the size check and per-byte gas
  (use ``string.concat(a, b, ...)``);
- string literals longer than ``MAX_STRING``.

Compilation runs in a private runtime and returns ``string.dump`` bytecode (with line info), which
every call then loads in binary mode: the VM never compiles text inside a metered call, so gas
and memory don't depend on whether the bytecode was cached.
"""

import re
import threading

from lupa import lua54

from .gas import MAX_CODE, MAX_STRING

INT_MAX = (1 << 63) - 1
_LONG_OPEN = re.compile(r"\[(=*)\[")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DIGITS = "0123456789"
_XDIGITS = set("0123456789abcdefABCDEF.")


class SourceError(ValueError):
    """A contract source the VM refuses; ``code`` is "forbidden" or "bad_value"."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def check_source(src: str) -> None:
    """Raise ``SourceError`` if ``src`` uses floats, ``/``, ``^``, ``..`` or huge literals."""
    if len(src.encode("utf-8")) > MAX_CODE:
        raise SourceError("bad_value", f"contract source exceeds {MAX_CODE} bytes")
    i, n, line = 0, len(src), 1
    while i < n:
        c = src[i]
        if c == "\n":
            line += 1
            i += 1
        elif c in " \t\r\f\v":
            i += 1
        elif src.startswith("--", i):
            i, line = _skip_comment(src, i + 2, line)
        elif c in "\"'":
            i, line = _short_string(src, i, line)
        elif c == "[" and _LONG_OPEN.match(src, i):
            i, line = _long_bracket(src, i, line, "long string")
        elif c in _DIGITS or (c == "." and i + 1 < n and src[i + 1] in _DIGITS):
            i = _numeral(src, i, line)
        elif c == ".":
            i = _dots(src, i, line)
        elif c == "/":
            if not src.startswith("//", i):
                _refuse(line, "the '/' operator makes floats (use '//')")
            i += 2
        elif c == "^":
            _refuse(line, "the '^' operator makes floats")
        elif _NAME.match(src, i):
            i = _NAME.match(src, i).end()
        else:
            i += 1


def _refuse(line, what):
    raise SourceError("forbidden", f"line {line}: {what}; contracts are integer-only and "
                                   "build strings with string.concat")


def _skip_comment(src, i, line):
    if src.startswith("[", i) and _LONG_OPEN.match(src, i):
        return _long_bracket(src, i, line, "long comment", limit=False)
    end = src.find("\n", i)
    return (len(src) if end < 0 else end), line


def _long_bracket(src, i, line, what, limit=True):
    level = _LONG_OPEN.match(src, i).group(1)
    close = "]" + level + "]"
    end = src.find(close, i)
    if end < 0:
        raise SourceError("bad_value", f"line {line}: unfinished {what}")
    body = src[i:end]
    if limit and len(body.encode("utf-8")) > MAX_STRING:
        _refuse(line, f"a string literal longer than {MAX_STRING} bytes")
    return end + len(close), line + body.count("\n")


def _short_string(src, i, line):
    quote, j, n = src[i], i + 1, len(src)
    while j < n and src[j] != quote:
        if src[j] == "\\":
            if j + 1 < n and src[j + 1] == "\n":
                line += 1
            j += 2
        elif src[j] == "\n":
            raise SourceError("bad_value", f"line {line}: unfinished string")
        else:
            j += 1
    if j >= n:
        raise SourceError("bad_value", f"line {line}: unfinished string")
    if len(src[i + 1:j].encode("utf-8")) > MAX_STRING:
        _refuse(line, f"a string literal longer than {MAX_STRING} bytes")
    return j + 1, line


def _numeral(src, i, line):
    """Lua's read_numeral: hex digits and dots, exponent markers with an optional sign."""
    n, start = len(src), i
    hexa = src.startswith(("0x", "0X"), i)
    expo = "Pp" if hexa else "Ee"
    i += 2 if hexa else 0
    while i < n:
        if src[i] in expo:
            i += 1
            if i < n and src[i] in "+-":
                i += 1
        elif src[i] in _XDIGITS:
            i += 1
        else:
            break
    text = src[start:i]
    body = text[2:] if hexa else text
    if "." in body or any(e in body for e in expo):
        _refuse(line, f"float literal {text}")
    if not hexa and text.isdigit() and int(text) > INT_MAX:
        _refuse(line, f"integer literal {text} exceeds 2^63-1 (Lua makes it a float)")
    return i


def _dots(src, i, line):
    if src.startswith("...", i):
        return i + 3
    if src.startswith("..", i):
        _refuse(line, "the '..' operator")
    return i + 1


class Compiler:
    """Checks and compiles contract sources; caches bytecode by source (thread-safe)."""

    def __init__(self, cache_size=256):
        self._rt = lua54.LuaRuntime(register_eval=False, register_builtins=False, encoding=None)
        self._compile = self._rt.eval(
            "function(src) local f, err = load(src, '=contract', 't', {}) "
            "if not f then return nil, err end return string.dump(f) end")
        self._cache = {}
        self._size = cache_size
        self._lock = threading.Lock()

    def bytecode(self, src: str) -> bytes:
        """Bytecode of ``src``; raises ``SourceError`` (forbidden syntax, Lua syntax error)."""
        if not isinstance(src, str):
            raise SourceError("bad_value", "contract source must be a str")
        with self._lock:
            code = self._cache.get(src)
            if code is None:
                code = self._build(src)
                if len(self._cache) >= self._size:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[src] = code
            return code

    def _build(self, src):
        check_source(src)
        code = self._compile(src.encode("utf-8"))
        if isinstance(code, tuple):
            err = code[1]
            message = err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err)
            raise SourceError("bad_value", f"syntax error: {message}")
        return code
