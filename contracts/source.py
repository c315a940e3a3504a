"""Contract source checks and compilation to Lua bytecode (docs §14.2).

``contracts/syntax.py`` parses the source as Lua 5.4 does, refuses what the sandbox cannot make
deterministic or bounded, and rewrites operators, table stores and closures into metered kernel
helpers. Lua then compiles the rewritten text in a private runtime into ``string.dump`` bytecode
(with line info), which is what the chain stores and every call loads in binary mode: no call
ever compiles text, so calls cost the same whether or not anything is cached.
"""

import threading

from lupa import lua54

from .gas import MAX_CODE
from .syntax import SourceError, rewrite

__all__ = ["SourceError", "Compiler", "check_source"]


def check_source(src: str) -> str:
    """The rewritten source of ``src``; raises ``SourceError`` if the VM refuses it."""
    if len(src.encode("utf-8")) > MAX_CODE:
        raise SourceError("bad_value", f"contract source exceeds {MAX_CODE} bytes")
    return rewrite(src)


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
                if self._cache and len(self._cache) >= self._size:
                    self._cache.pop(next(iter(self._cache)))
                if self._size:
                    self._cache[src] = code
            return code

    def _build(self, src):
        code = self._compile(check_source(src).encode("utf-8"))
        if isinstance(code, tuple):
            err = code[1]
            message = err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err)
            raise SourceError("bad_value", f"syntax error: {message}")
        return code
