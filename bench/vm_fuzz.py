"""A fuzzer over the contract environment: the slowest and the hungriest work per gas.

Every candidate is a contract method that sets up arguments and then repeats one operation
until it runs out of gas: a call to a function of the environment (``pcall`` around it, so that
refusals repeat too), an operator, a table store pattern, a closure, a host call, or a whole
deploy. The fuzzer samples candidates from typed pools of adversarial arguments (empty units and
separators, 16 KiB strings of zeros, digits or continuation bytes, huge counts, negative
indices, long formats and patterns), keeps the worst, and mutates them (other arguments, other
sizes) while time remains. Figures are wall-clock nanoseconds per gas and peak bytes of Lua heap
per gas, each with the call that produced it.

Used by bench/contracts.py; runnable alone: ``python bench/vm_fuzz.py [seconds]``.
"""

import os
import random
import sys
import time

# bench/contracts.py is named like the package measured here: keep bench/ off the import path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from contracts.source import Compiler  # noqa: E402
from contracts.testkit import Harness, addr  # noqa: E402
from contracts.vm import VM, Backstop  # noqa: E402

C = addr("fuzz")
K16 = 16384

STRINGS = {
    "empty": "''", "a": "'a'", "ab": "'ab'",
    "a16k": "string.rep('a', 16384)", "a16k_b": "string.concat(string.rep('a', 16383), 'b')",
    "nul16k": "string.rep('\\0', 16384)", "nul16k_b": "string.concat(string.rep('\\0', 16383), 'b')",
    "digits16k": "string.rep('9', 16384)", "zeros16k": "string.concat(string.rep('0', 16383), '1')",
    "cont16k": "string.rep('\\128', 16384)", "utf16k": "string.rep('\\u{10FFFF}', 4096)",
    "spaces16k": "string.rep(' ', 16384)", "pct8k": "string.rep('%a', 8192)",
    "pat_star": "string.rep('a*', 40)", "pat_set": "string.concat('[', string.rep('a', 16000), ']')",
    "fmt_d": "string.rep('%99d', 100)", "fmt_s": "string.rep('%s', 100)",
    "fmt_q": "'%q'", "pack_c": "'c16000'", "pack_z": "string.rep('z', 64)",
    "pack_i": "string.rep('i16', 20)", "key64": "string.rep('k', 64)",
}
INTS = {"0": "0", "1": "1", "-1": "-1", "2": "2", "100": "100", "16384": "16384",
        "16385": "16385", "huge": "1 << 40", "-huge": "-(1 << 40)", "max": "math.maxinteger",
        "min": "math.mininteger", "255": "255", "0x10FFFF": "0x10FFFF"}
TABLES = {
    "empty": "{}",
    "ints1k": "(function() local t = {} for i = 1, 1000 do t[i] = i end return t end)()",
    "strs1k": "(function() local t = {} for i = 1, 1000 do t[i] = string.concat('k', i) end "
              "return t end)()",
    "map1k": "(function() local t = {} for i = 1, 1000 do t[string.concat('k', i)] = i end "
             "return t end)()",
    "nulmap": "(function() local t = {} for i = 1, 8 do t[string.concat(string.rep('\\0', "
              "2000), i)] = i end return t end)()",
    "big16k": "(function() local t = {} for i = 1, 8 do t[i] = string.rep('\\0', 16000) end "
              "return t end)()",
}
POOLS = {"s": STRINGS, "i": INTS, "t": TABLES}
# Argument kinds per function (s string, i integer, t table, f function, * any).
SIGNATURES = {
    "string.byte": "sii", "string.char": "iiiiiiii", "string.concat": "ssss",
    "string.find": "ssi*", "string.format": "s******", "string.gmatch": "ssi",
    "string.len": "s", "string.lower": "s", "string.match": "ssi", "string.rep": "sis",
    "string.reverse": "s", "string.sub": "sii", "string.upper": "s", "string.pack": "s****",
    "string.packsize": "s", "string.unpack": "ssi", "table.concat": "tsii",
    "table.insert": "tii", "table.move": "tiiit", "table.pack": "****", "table.remove": "ti",
    "table.sort": "t", "table.unpack": "tii", "math.abs": "i", "math.ceil": "i",
    "math.floor": "i", "math.fmod": "ii", "math.max": "iii", "math.min": "iii",
    "math.tointeger": "*", "math.type": "*", "math.ult": "ii", "utf8.char": "iiii",
    "utf8.codepoint": "sii*", "utf8.len": "sii*", "utf8.offset": "sii", "utf8.codes": "s*",
    "tonumber": "si", "tostring": "*", "select": "i***", "assert": "***", "error": "si",
    "type": "*", "rawequal": "ss", "rawlen": "t", "ipairs": "t", "pairs": "t",
    "unpack": "tii", "pcall": "f", "xpcall": "ff",
}
OPERATIONS = {
    "lt": "local x = a < b", "le": "local x = a <= b", "eq": "local x = a == b",
    "ne": "local x = a ~= b", "cat": "local x = a .. b", "len": "local x = #a",
}
PATTERNS = [
    # (name, setup, loop body)
    ("thrash 2^k keys", "local t = {} for i = 1, {n} do t[string.concat('k', i)] = i end "
     "local j = 0", "t[string.concat('k', j)] = nil j = j + 1 t[string.concat('z', j)] = j"),
    ("push/pop", "local t = {} for i = 1, {n} do t[i] = i end", "t[#t + 1] = 1 t[#t] = nil"),
    ("append list", "local t = {}", "t[#t + 1] = 1"),
    ("new map keys", "local t = {} local j = 0", "j = j + 1 t[string.concat('k', j)] = j"),
    ("closures {n} upvalues", "{locals}", "local f = function() return {ups} end"),
    ("fresh locals + closure", "", "{locals} local f = function() return {ups} end"),
    ("constructor {n} items", "", "local t = {{items}}"),
    ("record {n} fields", "", "local t = {{fields}}"),
    ("recursion", "local function r(n) if n == 0 then return 0 end return 1 + r(n - 1) end",
     "r(150)"),
    ("pcall long error", "local s = string.rep('x', 16000) local function e() error(s) end",
     "pcall(e)"),
    ("pcall error position", "local s = string.rep('x', 16000) "
     "local function e() error(s, 1) end", "pcall(e)"),
    ("global writes", "local j = 0", "j = j + 1 g1 = nil g2 = j g3 = nil g4 = j"),
    ("new tables", "", "local t = {}"),
    ("new short strings", "local j = 0", "j = j + 1 local s = tostring(j)"),
    ("short substrings", "local s = string.rep('ab', 64) local j = 0",
     "j = j + 1 local x = s:sub(j % 64, j % 64 + 30)"),
    ("pcall tiny error", "", "pcall(error, 'x')"),
    ("nested pcall", "local function z() return pcall(pcall, pcall, error) end", "z()"),
    ("tostring int", "", "local x = tostring(math.maxinteger)"),
    ("storage get 4000", "chain.storage.set('k', string.rep('v', 4000))",
     "local x = chain.storage.get('k')"),
    ("storage set 4000", "local v = string.rep('v', 4000)", "chain.storage.set('k', v)"),
    ("emit", "local d = string.rep('v', 16000)", "pcall(chain.emit, 'e', 1)"),
    ("hash 16k", "local d = string.rep('v', 16384)", "local x = chain.hash(d)"),
    ("hash empty", "", "local x = chain.hash('')"),
    ("verify", "local k, m, s = string.rep('k', 32), 'm', string.rep('s', 64)",
     "local x = chain.verify_ed25519(k, m, s)"),
    ("voucher", "local p = string.rep('p', 20)",
     "local x = chain.voucher_message('c', p, 1, 2)"),
    ("balance", "local a = string.rep('a', 20)", "local x = chain.balance(a)"),
    ("self", "", "local x = chain.self()"),
    ("encode list", "local t = {} for i = 1, 2000 do t[i] = false end",
     "local x = chain.encode(t)"),
    ("encode map", "local t = {} for i = 1, 1000 do t[string.concat('k', i)] = true end",
     "local x = chain.encode(t)"),
    ("decode list", "local t = {} for i = 1, 5000 do t[i] = false end "
     "local s = chain.encode(t)", "local x = chain.decode(s)"),
    ("decode nul keys", "local t = {} for i = 1, 4 do t[string.concat(string.rep('\\0', "
     "3000), i)] = 1 end local s = chain.encode(t)", "local x = chain.decode(s)"),
    ("pairs map", "local t = {} for i = 1, {n} do t[string.concat('k', i)] = i end",
     "for k in pairs(t) do end"),
    ("pairs nul keys", "local t = {} for i = 1, 8 do t[string.concat(string.rep('\\0', 2000), "
     "i)] = i end", "for k in pairs(t) do end"),
    ("sort strings", "local t = {} for i = 1, 64 do t[i] = string.concat(string.rep('\\0', "
     "200), 64 - i) end", "table.sort(t)"),
    ("nested call", "", "pcall(chain.call, chain.self(), 'g', {})"),
]


class Candidate:
    """One generated method and what measuring it gave."""

    def __init__(self, family, name, setup, loop):
        self.family, self.name, self.setup, self.loop = family, name, setup, loop
        self.ns_per_gas = self.bytes_per_gas = 0.0
        self.gas = 0
        self.code = ""

    def source(self):
        return (f"function g() return 1 end\n"
                f"function f()\n{self.setup}\nwhile true do {self.loop} end\nend\n")

    def describe(self):
        return f"{self.family}: {self.name}"


def _arg(kind, rng):
    if kind == "*":
        kind = rng.choice("sitn")
    if kind == "n":
        return "nil", "nil"
    if kind == "f":
        return "fn", "function(x, y) return false end"
    pool = POOLS[kind]
    key = rng.choice(sorted(pool))
    return key, pool[key]


def library_candidate(rng, name=None):
    name = name or rng.choice(sorted(SIGNATURES))
    sig = SIGNATURES[name]
    nargs = rng.randint(max(1, len(sig) // 2), len(sig))
    labels, setup = [], []
    for i, kind in enumerate(sig[:nargs]):
        label, expr = _arg(kind, rng)
        labels.append(label)
        setup.append(f"local a{i} = {expr}")
    args = ", ".join(f"a{i}" for i in range(nargs))
    call = f"{name}({args})"
    return Candidate("library", call.replace(args, ", ".join(labels)) if nargs else call,
                     "\n".join(setup), f"pcall({name}{', ' if nargs else ''}{args})")


def operator_candidate(rng, op=None):
    op = op or rng.choice(sorted(OPERATIONS))
    la, a = _arg("s", rng)
    lb, b = _arg("s", rng)
    if op == "len":
        la, a = _arg(rng.choice("st"), rng)
    return Candidate("operator", f"{op}({la}, {lb})", f"local a = {a} local b = {b}",
                     f"pcall(function() {OPERATIONS[op]} end)" if op == "cat"
                     else OPERATIONS[op])


def pattern_candidate(rng, index=None):
    name, setup, loop = PATTERNS[rng.randrange(len(PATTERNS)) if index is None else index]
    n = rng.choice([8, 16, 32, 64, 128, 150, 200, 256, 1024, 4096, 16384])
    k = min(n, 150)
    fill = {"n": n, "locals": "local " + ", ".join(f"v{i}" for i in range(k)) + " = 1",
            "ups": ", ".join(f"v{i}" for i in reversed(range(k))),
            "items": ", ".join("false" for _ in range(min(n, 3000))),
            "fields": ", ".join(f"f{i} = false" for i in range(min(n, 3000)))}
    if "{items}" in setup + loop or "{fields}" in setup + loop:
        n = min(n, 3000)
    def fmt(text):
        for key, value in fill.items():
            text = text.replace("{" + key + "}", str(value))
        return text
    return Candidate("pattern", fmt(name), fmt(setup), fmt(loop))


# Deploys: sources of MAX_SOURCE bytes built from one statement shape; the chunk only defines.
MAX_SOURCE = 12288
SOURCE_SHAPES = {
    "assignments": "x = 1 ",
    "comparisons": "function f{i}(a, b) return a < b and a <= b and a > b and a >= b end ",
    "concat chains": "function f{i}(a) return a .. a .. a .. a .. a .. a .. a .. a end ",
    "table stores": "function f{i}(t) t.a = 1 t[1] = 2 t.b.c = 3 end ",
    "constructors": "function f{i}() return {{1, 2, {{3}}, {{a = 4}}}} end ",
    "closures": "local a{i} = 1 function f{i}() return function() return a{i} end end ",
    "nesting": "function f{i}() return ((((((((((1)))))))))) end ",
    "long names": "local " + "n" * 200 + "{i} = 1 ",
    "comments": "-- " + "c" * 200 + "\n",
    "strings": "s{i} = '" + "q" * 500 + "' ",
    "numeric for": "function f{i}(n) for i = n, n, n do end end ",
}


def deploy_candidate(rng, shape=None):
    shape = shape or rng.choice(sorted(SOURCE_SHAPES))
    pieces, size, i = [], 0, 0
    while True:
        piece = SOURCE_SHAPES[shape].replace("{i}", str(i)).replace("{{", "{").replace("}}", "}")
        if size + len(piece) > MAX_SOURCE:
            break
        pieces.append(piece)
        size += len(piece)
        i += 1
    cand = Candidate("deploy", f"{shape} ({size} bytes)", "", "")
    cand.deploy_source = "".join(pieces)
    return cand


GENERATORS = (library_candidate, operator_candidate, pattern_candidate)


class Fuzzer:
    """Measures candidates on one VM (probing the Lua heap) and keeps the worst ones."""

    def __init__(self, gas=300_000, seed=12):
        self.vm = VM(probe=True)
        self.gas = gas
        self.rng = random.Random(seed)
        self.measured = []
        self.base_kb = None
        self.verbose = False

    def measure_deploy(self, cand, repeat=1):
        best, result = float("inf"), None
        for _ in range(repeat):
            self.vm.compiler = Compiler(cache_size=0)      # every deploy compiles
            h = Harness(vm=self.vm)
            start = time.perf_counter()
            result = h.deploy(C, cand.deploy_source, gas=10**9)
            best = min(best, time.perf_counter() - start)
        cand.gas = max(result.gas_used, 1)
        cand.ns_per_gas = best * 1e9 / cand.gas
        cand.code = result.error_code or "ok"
        self.measured.append(cand)
        return cand

    def measure(self, cand, repeat=1):
        if cand.family == "deploy":
            return self.measure_deploy(cand, repeat)
        if self.verbose:
            print(f"? {cand.describe()}", file=sys.stderr, flush=True)
        h = Harness(vm=self.vm)
        if not h.deploy(C, cand.source(), gas=10**9).ok:
            return None
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            try:
                result = h.call(C, "f", gas=self.gas)
            except Backstop:
                return None
            best = min(best, time.perf_counter() - start)
        if self.base_kb is None:
            h.call(C, "g")
            self.base_kb = self.vm.last_peak_kb
        cand.gas = max(result.gas_used, 1)
        cand.ns_per_gas = best * 1e9 / cand.gas
        cand.bytes_per_gas = max(0.0, (self.vm.last_peak_kb - self.base_kb) * 1024 / cand.gas)
        cand.code = result.error_code
        self.measured.append(cand)
        if self.verbose:
            print(f"  {best * 1e3:8.1f} ms {cand.ns_per_gas:8.1f} ns/gas {cand.describe()}",
                  file=sys.stderr, flush=True)
        return cand

    def run(self, seconds):
        """Sample every pattern and library function once, then random candidates and
        mutations of the worst until ``seconds`` have passed; returns (slowest, hungriest)."""
        deadline = time.monotonic() + seconds
        for i in range(len(PATTERNS)):
            self.measure(pattern_candidate(self.rng, i))
        for name in sorted(SIGNATURES):
            self.measure(library_candidate(self.rng, name))
        for op in sorted(OPERATIONS):
            self.measure(operator_candidate(self.rng, op))
        for shape in sorted(SOURCE_SHAPES):
            self.measure(deploy_candidate(self.rng, shape))
        while time.monotonic() < deadline:
            if self.rng.random() < 0.5 and self.measured:
                worst = sorted(self.measured, key=lambda c: -c.ns_per_gas)[:8]
                family = self.rng.choice(worst).family
                gen = {"library": library_candidate, "operator": operator_candidate,
                       "pattern": pattern_candidate, "deploy": deploy_candidate}[family]
            else:
                gen = self.rng.choice(GENERATORS)
            self.measure(gen(self.rng))
        return self.confirm()

    def worst(self, key, top):
        """The ``top`` distinct candidates with the highest ``key``."""
        out, seen = [], set()
        for cand in sorted(self.measured, key=lambda c: -key(c)):
            if cand.describe() not in seen:
                seen.add(cand.describe())
                out.append(cand)
            if len(out) == top:
                break
        return out

    def confirm(self, top=24):
        """Re-measure the worst few (best of five runs: the search keeps maxima, which noise
        inflates) and return the slowest and the hungriest per gas."""
        slow = self.worst(lambda c: c.ns_per_gas, top)
        for cand in slow:
            self.measure(cand, repeat=5)
        self.measured = [c for c in self.measured if c not in slow] + slow
        slowest = max(slow, key=lambda c: c.ns_per_gas)
        hungriest = max(self.measured, key=lambda c: c.bytes_per_gas)
        return slowest, hungriest

    def honest_ns_per_gas(self):
        cand = Candidate("honest", "integer loop", "local s = 0", "s = s + 1")
        self.measure(cand, repeat=3)
        self.measured.remove(cand)
        return cand.ns_per_gas


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    seconds = float(args[0]) if args else 30
    fuzzer = Fuzzer()
    fuzzer.verbose = "-v" in sys.argv
    honest = fuzzer.honest_ns_per_gas()
    slowest, hungriest = fuzzer.run(seconds)
    for cand in fuzzer.worst(lambda c: c.ns_per_gas, 25):
        print(f"{cand.ns_per_gas:8.1f} ns/gas {cand.bytes_per_gas:8.1f} B/gas  "
              f"{cand.code:14} {cand.describe()}")
    print(f"honest {honest:.1f} ns/gas; slowest {slowest.describe()}: "
          f"{slowest.ns_per_gas:.1f}; hungriest {hungriest.describe()}: "
          f"{hungriest.bytes_per_gas:.1f} B/gas; {len(fuzzer.measured)} candidates")


if __name__ == "__main__":
    main()
