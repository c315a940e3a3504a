"""The contract front end: Lua 5.4's lexer and parser, refusals and metering rewrites (§14.2).

``rewrite(src)`` returns the source Lua compiles. It follows ``llex.c`` and ``lparser.c`` (same
tokens, same grammar, same operator priorities) and changes only what the VM must see to bound
its work, without moving any text to another line (so Lua's line numbers stay right):

- ``a < b``, ``<=``, ``>``, ``>=`` between values that may be strings become ``__ss_lt(a, b)``...
  (Lua compares strings with ``strcoll`` per zero-separated segment: one instruction could do
  16 K calls); ``==``/``~=`` between values that may be long strings become ``__ss_eq``/``__ss_ne``
  (``memcmp``); ``a .. b .. c`` becomes ``__ss_cat(a, b, c)`` (size-checked, billed per byte);
- numeric ``for`` bounds that may be strings are checked by ``__ss_int`` (a string bound would
  make a float loop);
- every store into a table field (``t[k] = v``, ``t.k = v``, ``function t.f()``) becomes
  ``__ss_st(t, k, v)``: the kernel enforces dense lists and bills Lua's rehashes (deleting and
  inserting keys can make every insert rebuild the whole table);
- every function literal becomes ``__ss_fn(cost, function ... end)``: creating a closure links
  each upvalue by walking the open-upvalue list, so the cost is billed from the scope analysis;
- every table constructor becomes ``__ss_tbl(fields, {...})``: a new table (and its presized
  parts) is an allocation the instruction count does not show.

Refused (``forbidden`` with the line): float literals, decimal integers above 2^63-1, ``/`` and
``^``, ``...``, the name ``_ENV`` and names starting ``__ss``, a ``nil`` list item or a
``[key] =`` field other than a string literal in a table constructor, multiple assignment
mixing variables and table fields, string literals over ``MAX_STRING`` bytes.
"""

import re

from .gas import MAX_STRING

INT_MAX = (1 << 63) - 1
SHORT_STRING = 40           # Lua interns strings up to this length (equality is a pointer test)
KEYWORDS = frozenset("and break do else elseif end false for function goto if in local nil not "
                     "or repeat return then true until while".split())
RESERVED_PREFIX = "__ss"

MAX_NESTING = 80            # nested blocks, functions and expressions (Lua's own limit is 200)

# Closure cost (gas), billed by __ss_fn: a base, per upvalue, per open-upvalue list step.
CLOSURE_BASE, CLOSURE_UPVALUE, CLOSURE_WALK_PER = 4, 2, 4

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_TOKEN = re.compile(r"""[ \t\r\n\f\v]*(?:
    (?P<comment>--(?:\[(?P<cl>=*)\[)?)
  | (?P<name>""" + _NAME + r""")
  | (?P<num>0[xX](?:[0-9a-fA-F.]|[pP][+-]?)*|\.?[0-9](?:[0-9a-zA-Z.]|(?<=[eE])[+-])*)
  | (?P<str>"(?:\\z\s*|\\\r\n|\\\n\r|\\[\s\S]|[^"\\\r\n])*"|'(?:\\z\s*|\\\r\n|\\\n\r|\\[\s\S]|[^'\\\r\n])*')
  | (?P<long>\[(?P<ll>=*)\[)
  | (?P<op>\.\.\.|\.\.|::|<<|>>|//|==|~=|<=|>=|[-+*/%^#&~|<>=(){}\[\];:,.])
)""", re.VERBOSE)
_HEX_BODY = re.compile(r"[0-9a-fA-F]+")
_DEC_INT = re.compile(r"[0-9]+")

# Binary operator priorities (left, right) of lparser.c; UNARY 12.
_BINARY = {"+": (10, 10), "-": (10, 10), "*": (11, 11), "%": (11, 11), "^": (14, 13),
           "/": (11, 11), "//": (11, 11), "&": (6, 6), "|": (4, 4), "~": (5, 5),
           "<<": (7, 7), ">>": (7, 7), "..": (9, 8), "==": (3, 3), "<": (3, 3), "<=": (3, 3),
           "~=": (3, 3), ">": (3, 3), ">=": (3, 3), "and": (2, 2), "or": (1, 1)}
_UNARY = frozenset(("not", "-", "#", "~"))
_UNARY_PRIORITY = 12
_ORDER = {"<": "__ss_lt", "<=": "__ss_le", ">": "__ss_gt", ">=": "__ss_ge"}
_EQUAL = {"==": "__ss_eq", "~=": "__ss_ne"}
_BLOCK_END = frozenset(("else", "elseif", "end", "until", "<eof>"))

# Expression flags: may evaluate to a string / to a long (not interned) string. ``Expr.const`` is
# "nil", "false" or "true" when Lua folds the expression to that constant (a run of nil
# constants compiles to a single LOADNIL).
STR, LONG = 1, 2


class SourceError(ValueError):
    """A contract source the VM refuses; ``code`` is "forbidden" or "bad_value"."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class Token:
    __slots__ = ("kind", "text", "start", "end", "flags")

    def __init__(self, kind, text, start, end, flags=0):
        self.kind, self.text, self.start, self.end, self.flags = kind, text, start, end, flags


def tokenize(src):
    """Lua tokens of ``src`` (comments and blanks dropped), ending with an ``<eof>`` token."""
    tokens, pos, n = [], 0, len(src)
    match, append, keywords = _TOKEN.match, tokens.append, KEYWORDS
    while pos < n:
        m = match(src, pos)
        if m is None:
            pos = len(src) - len(src[pos:].lstrip(" \t\r\n\f\v"))
            if pos < n:
                what = "unfinished string" if src[pos] in "\"'" else \
                    f"unexpected symbol {src[pos]!r}"
                _refuse(src, pos, what, "bad_value")
            break
        kind, end = m.lastgroup, m.end()
        start = m.start(kind)
        if kind == "op":
            text = m.group(kind)
            if text == "/" or text == "^" or text == "...":
                _refuse_operator(src, start, text)
            append(Token(text, text, start, end))
        elif kind == "name":
            text = m.group(kind)
            if text in keywords:
                append(Token(text, text, start, end))
            else:
                if text[0] == "_":
                    _check_name(src, start, text)
                append(Token("name", text, start, end))
        elif kind == "num":
            append(Token("number", _numeral(src, start, m.group(kind)), start, end))
        elif kind == "str":
            body = m.group(kind)[1:-1]
            append(Token("string", body, start, end, _string_flags(src, start, body)))
        elif kind == "comment":
            end = _skip_comment(src, m)
        else:
            end, body = _long_bracket(src, m, "string")
            append(Token("string", body, start, end, _string_flags(src, start, body)))
        pos = end
    tokens.append(Token("<eof>", "<eof>", n, n))
    return tokens


def _refuse_operator(src, pos, text):
    if text == "...":
        _refuse(src, pos, "'...' (variable arguments)")
    _refuse(src, pos, f"the '{text}' operator makes floats" + (" (use '//')" if text == "/"
                                                               else ""))


def _skip_comment(src, m):
    if m.group("cl") is not None:
        return _long_bracket(src, m, "comment", limit=False)[0]
    end = src.find("\n", m.end())
    return len(src) if end < 0 else end


def _long_bracket(src, m, what, limit=True):
    level = m.group("cl") if what == "comment" else m.group("ll")
    close = "]" + level + "]"
    end = src.find(close, m.end())
    if end < 0:
        _refuse(src, m.start(what if what == "comment" else "long"),
                f"unfinished long {what}", "bad_value")
    body = src[m.end():end]
    if limit and len(body.encode("utf-8")) > MAX_STRING:
        _refuse(src, m.start("long"), f"a string literal longer than {MAX_STRING} bytes")
    return end + len(close), body


def _string_flags(src, pos, body):
    if len(body) > MAX_STRING and len(body.encode("utf-8")) > MAX_STRING:
        _refuse(src, pos, f"a string literal longer than {MAX_STRING} bytes")
    # An escape never makes a literal longer than its text, so this is an upper bound.
    return STR | (LONG if len(body.encode("utf-8")) > SHORT_STRING else 0)


def _check_name(src, pos, name):
    if name == "_ENV":
        _refuse(src, pos, "the name '_ENV' (globals are reached by their names only)")
    if name.startswith(RESERVED_PREFIX):
        _refuse(src, pos, f"names starting with '{RESERVED_PREFIX}' (reserved for the VM)")


def _numeral(src, pos, text):
    hexa = text[:2] in ("0x", "0X")
    body, expo = (text[2:], "pP") if hexa else (text, "eE")
    if (_HEX_BODY if hexa else _DEC_INT).fullmatch(body):
        if not hexa and int(body) > INT_MAX:
            _refuse(src, pos, f"integer literal {text} exceeds 2^63-1 (Lua makes it a float)")
        return text
    if _looks_float(body, expo):
        _refuse(src, pos, f"float literal {text}")
    _refuse(src, pos, f"malformed number {text}", "bad_value")


def _looks_float(body, expo):
    return "." in body or any(e in body for e in expo)


def line_of(src, pos):
    return src.count("\n", 0, pos) + 1


def _refuse(src, pos, what, code="forbidden"):
    if code == "forbidden":
        raise SourceError(code, f"line {line_of(src, pos)}: {what} is not allowed in "
                                "contracts (docs/protocol.md §14.2)")
    raise SourceError(code, f"line {line_of(src, pos)}: {what}")


# -- parser ------------------------------------------------------------------------------------

CLOSE, REPLACE, OPEN = 0, 1, 2


class Edit:
    """Text for ``start..end`` (an insertion when empty); ``text`` may be a callable. At one
    offset closings come first (inner ones first), then replacements, then openings (outer
    ones first); ``rank`` grows as the parser finishes nodes, inner before outer."""
    __slots__ = ("start", "end", "kind", "rank", "text")

    def __init__(self, start, end, kind, rank, text):
        self.start, self.end, self.kind, self.rank, self.text = start, end, kind, rank, text

    def key(self):
        return (self.start, self.kind, -self.rank if self.kind == OPEN else self.rank)


class Var:
    __slots__ = ("name", "fs")

    def __init__(self, name, fs):
        self.name, self.fs = name, fs


class FuncState:
    """Scopes of one Lua function, for its upvalue count and the locals inner ones capture."""
    __slots__ = ("parent", "blocks", "upvalues", "captured")

    def __init__(self, parent):
        self.parent = parent
        self.blocks = [{}]
        self.upvalues = set()     # Var objects (or "_ENV") this function captures
        self.captured = set()     # its own locals captured by inner functions

    def find(self, name):
        for block in reversed(self.blocks):
            var = block.get(name)
            if var is not None:
                return var
        return None


class Expr:
    __slots__ = ("start", "end", "flags", "concat", "const")

    def __init__(self, start, end, flags=0, concat=None, const=None):
        self.start, self.end, self.flags, self.concat = start, end, flags, concat
        self.const = const


class Parser:
    """Recursive descent over the tokens, collecting edits (``lparser.c`` structure)."""

    def __init__(self, src):
        self.src = src
        self.tokens = tokenize(src)
        self.i = 0
        self.tok = self.tokens[0]
        self.kind = self.tok.kind
        self.edits = []
        self.rank = 0
        self.fs = None
        self.depth = 0

    # -- helpers -----------------------------------------------------------------------------

    def next(self):
        i = self.i = self.i + 1
        tok = self.tok = self.tokens[i]
        self.kind = tok.kind

    def peek(self):
        return self.tokens[self.i + 1]

    def check(self, kind):
        if self.kind != kind:
            self.error(f"'{kind}' expected near '{self.tok.text}'")

    def expect(self, kind):
        self.check(kind)
        tok = self.tok
        self.next()
        return tok

    def error(self, what):
        _refuse(self.src, self.tok.start, f"syntax error: {what}", "bad_value")

    def refuse(self, pos, what):
        _refuse(self.src, pos, what)

    def edit(self, start, end, text, kind=REPLACE):
        self.rank += 1
        e = Edit(start, end, kind, self.rank, text)
        self.edits.append(e)
        return e

    def wrap(self, start, end, opening, closing=")"):
        """Edits that put ``opening`` before ``start`` and ``closing`` at ``end``."""
        return self.edit(start, start, opening, OPEN), self.edit(end, end, closing, CLOSE)

    # -- scopes ------------------------------------------------------------------------------

    def open_function(self):
        self.fs = FuncState(self.fs)
        return self.fs

    def close_function(self):
        fs = self.fs
        self.fs = fs.parent
        return fs

    def declare(self, name):
        self.fs.blocks[-1][name] = Var(name, self.fs)

    def resolve(self, name):
        fs = self.fs
        if fs.find(name) is not None:
            return
        owner, var = fs.parent, None
        while owner is not None:
            var = owner.find(name)
            if var is not None:
                break
            owner = owner.parent
        f = fs
        while f is not owner:
            f.upvalues.add(var if var is not None else "_ENV")
            f = f.parent
        if var is not None:
            owner.captured.add(var)

    def enter(self):
        self.depth += 1
        if self.depth > MAX_NESTING:
            _refuse(self.src, self.tok.start, f"more than {MAX_NESTING} nested levels of "
                                              "blocks and expressions", "bad_value")

    def block(self):
        self.enter()
        self.fs.blocks.append({})
        self.statements()
        self.fs.blocks.pop()
        self.depth -= 1

    # -- statements --------------------------------------------------------------------------

    def chunk(self):
        self.open_function()
        self.statements()
        self.check("<eof>")
        self.close_function()

    def statements(self):
        while self.kind not in _BLOCK_END:
            if self.kind == "return":
                self.retstat()
                return
            self.statement()

    def statement(self):
        kind = self.kind
        if kind == ";":
            self.next()
        elif kind == "if":
            self.ifstat()
        elif kind == "while":
            self.next()
            self.expr()
            self.expect("do")
            self.block()
            self.expect("end")
        elif kind == "do":
            self.next()
            self.block()
            self.expect("end")
        elif kind == "for":
            self.forstat()
        elif kind == "repeat":
            self.next()
            self.fs.blocks.append({})
            self.statements()
            self.expect("until")
            self.expr()
            self.fs.blocks.pop()
        elif kind == "function":
            self.funcstat()
        elif kind == "local":
            self.next()
            if self.kind == "function":
                self.localfunc()
            else:
                self.localstat()
        elif kind == "::":
            self.next()
            self.expect("name")
            self.expect("::")
        elif kind == "break":
            self.next()
        elif kind == "goto":
            self.next()
            self.expect("name")
        else:
            self.exprstat()

    def retstat(self):
        self.next()
        if self.kind not in _BLOCK_END and self.kind != ";":
            self.explist()
        if self.kind == ";":
            self.next()

    def ifstat(self):
        self.next()
        self.expr()
        self.expect("then")
        self.block()
        while self.kind == "elseif":
            self.next()
            self.expr()
            self.expect("then")
            self.block()
        if self.kind == "else":
            self.next()
            self.block()
        self.expect("end")

    def forstat(self):
        self.next()
        names = [self.expect("name").text]
        if self.kind == "=":
            self.next()
            self.for_bound()
            self.expect(",")
            self.for_bound()
            if self.kind == ",":
                self.next()
                self.for_bound()
        else:
            while self.kind == ",":
                self.next()
                names.append(self.expect("name").text)
            self.expect("in")
            self.explist()
        self.expect("do")
        self.fs.blocks.append({})
        for name in names:
            self.declare(name)
        self.block()
        self.fs.blocks.pop()
        self.expect("end")

    def for_bound(self):
        e = self.expr()
        if e.flags & STR:
            self.wrap(e.start, e.end, " (__ss_int(", "))")

    def funcstat(self):
        start = self.tok.start
        self.next()
        first = self.expect("name")
        self.resolve(first.text)
        keys, method = [], False
        while self.kind in (".", ":"):
            method = self.kind == ":"
            sep = self.tok
            self.next()
            keys.append((sep, self.expect("name")))
            if method:
                break
        if keys:
            sep, name = keys[-1]
            head = f' __ss_st({self.src[first.start:sep.start]},"{name.text}", __ss_fn('
            closing, head_end = "))", name.end
        else:
            head, closing, head_end = f" {first.text}= __ss_fn(", ")", first.end
        fs = self.body(method)
        self.edit(start, head_end, self._closure_text(head, fs, "function"))
        end = self.tokens[self.i - 1].end
        self.edit(end, end, closing, CLOSE)

    def localfunc(self):
        start = self.tokens[self.i - 1].start   # 'local'
        self.next()
        name = self.expect("name")
        self.declare(name.text)
        fs = self.body(False)
        head = f"local {name.text}; {name.text}= __ss_fn("
        self.edit(start, name.end, self._closure_text(head, fs, "function"))
        end = self.tokens[self.i - 1].end
        self.edit(end, end, ")", CLOSE)

    def localstat(self):
        names = []
        while True:
            names.append(self.expect("name").text)
            if self.kind == "<":
                self.next()
                self.expect("name")
                self.expect(">")
            if self.kind != ",":
                break
            self.next()
        if self.kind == "=":
            self.next()
            self.explist()
        for name in names:
            self.declare(name)

    def exprstat(self):
        target = self.suffixedexp()
        if self.kind not in ("=", ","):
            if target[0] != "call":
                self.error("syntax error (a statement must be a call or an assignment)")
            return
        targets = [target]
        while self.kind == ",":
            self.next()
            targets.append(self.suffixedexp())
        for t in targets:
            if t[0] not in ("name", "index"):
                self.error("cannot assign to this expression")
        eq = self.expect("=")
        values = self.explist()
        indexed = [t for t in targets if t[0] == "index"]
        if not indexed:
            return
        if len(indexed) != len(targets):
            self.refuse(targets[0][1].start, "multiple assignment mixing variables and table "
                                             "fields (assign them in separate statements)")
        head = " __ss_st(" if len(targets) == 1 else f" __ss_stm({len(targets)},"
        for t in targets:
            self._key_edits(t)
        self.edit(eq.start, eq.end, ",")
        self.wrap(targets[0][1].start, values.end, head)

    def _key_edits(self, target):
        _, _, key = target
        if key[0] == ".":                 # ('.', dot token, name token)
            self.edit(key[1].start, key[2].end, f',"{key[2].text}"')
        else:                             # ('[', open token, close token)
            self.edit(key[1].start, key[1].end, ",")
            self.edit(key[2].start, key[2].end, "")

    # -- functions ---------------------------------------------------------------------------

    def body(self, method):
        fs = self.open_function()
        lparen = self.expect("(")
        if method:
            self.declare("self")
            self.edit(lparen.end, lparen.end, "self" if self.kind == ")" else "self,",
                      OPEN)
        if self.kind != ")":
            while True:
                self.declare(self.expect("name").text)
                if self.kind != ",":
                    break
                self.next()
        self.expect(")")
        self.statements()
        self.expect("end")
        return self.close_function()

    def _closure_text(self, head, fs, tail):
        parent = fs.parent

        def text():
            nups = len(fs.upvalues | {"_ENV"})     # the rewrite's helpers are globals
            instack = sum(1 for v in fs.upvalues if v != "_ENV" and v.fs is parent)
            cost = (CLOSURE_BASE + nups * CLOSURE_UPVALUE
                    + instack * len(parent.captured) // CLOSURE_WALK_PER)
            return f"{head}{cost},{tail}"
        return text

    def funcexpr(self):
        start = self.tok.start
        self.next()
        fs = self.body(False)
        end = self.tokens[self.i - 1].end
        self.wrap(start, end, self._closure_text(" __ss_fn(", fs, ""))
        return Expr(start, end)

    # -- expressions -------------------------------------------------------------------------

    def explist(self):
        e = self.expr()
        first = e.start
        while self.kind == ",":
            self.next()
            e = self.expr()
        return Expr(first, e.end)

    def expr(self, limit=0):
        self.depth += 1
        if self.depth > MAX_NESTING:
            self.enter()
        tok = self.tok
        if tok.kind in _UNARY:
            self.next()
            operand = self.expr(_UNARY_PRIORITY)
            left = Expr(tok.start, operand.end)
        else:
            left = self.simpleexp()
        while True:
            op = self.kind
            prio = _BINARY.get(op)
            if prio is None or prio[0] <= limit:
                self.depth -= 1
                return left
            op_tok = self.tok
            self.next()
            right = self.expr(prio[1])
            left = self.binary(op, op_tok, left, right)

    def binary(self, op, op_tok, left, right):
        start, end = left.start, right.end
        if op == "..":
            self.edit(op_tok.start, op_tok.end, ",")
            if right.concat is not None:          # a .. (b .. c): one call for the chain
                right.concat[0].text = right.concat[1].text = ""
            return Expr(start, end, STR | LONG, self.wrap(start, end, " (__ss_cat(", "))"))
        if op in _ORDER:
            if left.flags & STR and right.flags & STR:
                self.edit(op_tok.start, op_tok.end, ",")
                self.wrap(start, end, f" ({_ORDER[op]}(", "))")
            return Expr(start, end)
        if op in _EQUAL:
            if left.flags & LONG and right.flags & LONG:
                self.edit(op_tok.start, op_tok.end, ",")
                self.wrap(start, end, f" ({_EQUAL[op]}(", "))")
            return Expr(start, end)
        if op in ("and", "or"):
            const = None
            if left.const is not None:
                falsy = left.const != "true"
                const = left.const if falsy == (op == "and") else right.const
            return Expr(start, end, left.flags | right.flags, const=const)
        return Expr(start, end)                    # arithmetic and bitwise: never a string

    def simpleexp(self):
        tok = self.tok
        kind = tok.kind
        if kind in ("number", "nil", "true", "false"):
            self.next()
            return Expr(tok.start, tok.end, const=None if kind == "number" else kind)
        if kind == "string":
            self.next()
            return Expr(tok.start, tok.end, tok.flags)
        if kind == "{":
            return self.constructor()
        if kind == "function":
            return self.funcexpr()
        kind, e, _ = self.suffixedexp()
        return e if kind == "paren" else Expr(e.start, e.end, STR | LONG)

    def primaryexp(self):
        tok = self.tok
        if tok.kind == "name":
            self.resolve(tok.text)
            self.next()
            return Expr(tok.start, tok.end, STR | LONG), "name"
        if tok.kind == "(":
            self.next()
            inner = self.expr()
            close = self.expect(")")
            return Expr(tok.start, close.end, inner.flags, const=inner.const), "paren"
        self.error(f"unexpected symbol near '{tok.text}'")

    def suffixedexp(self):
        """('name'|'paren'|'index'|'call', Expr of the whole, last key) ."""
        e, kind = self.primaryexp()
        key = None
        while True:
            tok = self.tok
            if tok.kind == ".":
                self.next()
                name = self.expect("name")
                e, kind, key = Expr(e.start, name.end), "index", (".", tok, name)
            elif tok.kind == "[":
                self.next()
                self.expr()
                close = self.expect("]")
                e, kind, key = Expr(e.start, close.end), "index", ("[", tok, close)
            elif tok.kind == ":":
                self.next()
                self.expect("name")
                end = self.funcargs()
                e, kind = Expr(e.start, end), "call"
            elif tok.kind in ("(", "string", "{"):
                end = self.funcargs()
                e, kind = Expr(e.start, end), "call"
            else:
                return kind, e, key

    def funcargs(self):
        tok = self.tok
        if tok.kind == "string":
            self.next()
            return tok.end
        if tok.kind == "{":
            return self.constructor(call=True).end
        if tok.kind != "(":
            self.error("function arguments expected")
        self.next()
        if self.kind != ")":
            self.explist()
        return self.expect(")").end

    def constructor(self, call=False):
        """A table constructor, billed by ``__ss_tbl(fields, {...})`` (``f{...}`` becomes
        ``f(__ss_tbl(fields, {...}))``)."""
        start = self.expect("{").start
        fields = 0
        while self.kind != "}":
            fields += 1
            tok = self.tok
            if tok.kind == "name" and self.peek().kind == "=":
                self.next()
                self.next()
                self.expr()
            elif tok.kind == "[":
                self.next()
                key = self.tok
                if key.kind != "string" or self.peek().kind != "]":
                    self.refuse(tok.start, "a '[key] =' field other than a string literal "
                                           "(tables hold lists and string-keyed maps)")
                self.next()
                self.expect("]")
                self.expect("=")
                self.expr()
            elif self.expr().const == "nil":
                self.refuse(tok.start, "nil as a list item (a list cannot have holes)")
            if self.kind not in (",", ";"):
                break
            self.next()
        end = self.expect("}").end
        if call:
            self.wrap(start, end, f"( __ss_tbl({fields},", "))")
        else:
            self.wrap(start, end, f" __ss_tbl({fields},")
        return Expr(start, end)


def rewrite(src: str) -> str:
    """The metered form of contract source ``src`` (same lines); raises ``SourceError``."""
    parser = Parser(src)
    parser.chunk()
    edits = parser.edits
    if not edits:
        return src
    edits.sort(key=Edit.key)
    out, pos = [], 0
    for e in edits:
        out.append(src[pos:e.start])
        text = e.text() if callable(e.text) else e.text
        out.append(text)
        pos = max(pos, e.end)
    out.append(src[pos:])
    return "".join(out)
