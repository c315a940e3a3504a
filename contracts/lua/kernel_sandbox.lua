-- The contract environment, built from scratch for every contract frame (trusted host code;
-- docs §14.2, inventory in §14.3). Only whitelisted functions are reachable, every one of them
-- through a wrapper that
--   * takes integers where Lua would take numbers, and never a string in their place (Lua would
--     parse a 16 KiB numeric string for each such argument),
--   * bills the worst case of the C work up front (elements pushed, bytes scanned or built,
--     pattern-matcher steps), or refuses the arguments,
--   * keeps every string it builds within max_string.
-- Contracts are integer-only and see no table addresses, hash order or collector: `pairs`
-- iterates in sorted key order, `table.sort` is a merge sort in Lua, `tostring` of a table is
-- its type name. The `__ss_*` helpers are what contracts/syntax.py rewrites operators, table
-- stores and closures into; no contract can name them.
local M, P, C = ...
local type, select, tostring, tonumber, next = type, select, tostring, tonumber, next
local error, ipairs, assert = error, ipairs, assert
local rawequal, rawlen, rawget, rawset = rawequal, rawlen, rawget, rawset
local setmetatable, getmetatable = setmetatable, getmetatable
local mtype, mult, MAXI = math.type, math.ult, math.maxinteger
local S, T, U = string, table, utf8
local raw_find, raw_gsub, raw_sub, raw_byte, pack_args = S.find, S.gsub, S.sub, S.byte, T.pack
local charge, fail, csort, log2 = M.charge, M.fail, C.sort, C.log2
local MAX_STRING, BYTE_UNIT, ELEM_GAS = P.max_string, P.byte_unit, P.elem_gas
local PATTERN_UNIT, PATTERN_CAP, PATTERN_SCAN, SEARCH_UNIT = P.pattern_unit, 1 << 62, 64, 16
local CMP_UNIT, EQ_UNIT = P.cmp_unit, P.eq_unit
local INSERT_GAS, DELETE_UNIT, OBJECT_GAS = P.insert_gas, P.delete_unit, P.object_gas
local GLOBAL_GAS = P.global_gas
local SHORT = 40
local HUGE = MAXI // 64
local X = {}

local function forbid(name)
  fail("forbidden: " .. name .. " is not available to contracts")
end

local function guard(names, prefix)
  return {__index = function(_, k) if names[k] then forbid(prefix .. k) end end}
end

local function bad(msg) fail("bad_value: " .. msg) end

local function too_long(n)
  if n > MAX_STRING then
    M.die("out_of_memory", "out_of_memory: strings are limited to " .. MAX_STRING .. " bytes")
  end
end

local function int(v, what)
  if mtype(v) ~= "integer" then bad(what .. " must be an integer") end
  return v
end

local function optint(v, default, what)
  if v == nil then return default end
  if mtype(v) ~= "integer" then bad(what .. " must be an integer") end
  return v
end

local function str(v, what)
  if type(v) ~= "string" then bad(what .. " must be a string") end
  return v
end

local function optstr(v, what)
  if v ~= nil and type(v) ~= "string" then bad(what .. " must be a string") end
  return v
end

-- n list elements pushed, moved or shifted by C.
local function elems(n)
  if n > 0 then charge(n > HUGE and MAXI or n * ELEM_GAS) end
end

-- Bill every string among the results (an object, plus its bytes), and pass them through.
local function billed(...)
  local n = 0
  local r = pack_args(...)
  for i = 1, r.n do
    local v = r[i]
    if type(v) == "string" then n = n + OBJECT_GAS * BYTE_UNIT + #v end
  end
  charge(n // BYTE_UNIT)
  return ...
end

local function scanned(s) charge(#s // BYTE_UNIT) end

-- Lua's own index arithmetic (lstrlib.c posrelatI / getendpos).
local function posrelat(pos, len)
  if pos > 0 then return pos elseif pos == 0 or pos < -len then return 1 end
  return len + pos + 1
end

local function endpos(pos, len)
  if pos > len then return len elseif pos >= 0 then return pos elseif pos < -len then return 0 end
  return len + pos + 1
end

-- string ------------------------------------------------------------------------------------
local function byte(s, i, j)
  str(s, "string.byte: s")
  local pi = posrelat(optint(i, 1, "string.byte: i"), #s)
  local pe = endpos(optint(j, pi, "string.byte: j"), #s)
  if pi <= pe then elems(pe - pi + 1) end
  return S.byte(s, i, j)
end

local function char(...)
  local a = pack_args(...)
  too_long(a.n)
  for k = 1, a.n do int(a[k], "string.char: code") end
  return billed(S.char(...))
end

local function concat_parts(a, message)
  local total = 0
  for i = 1, a.n do
    local v = a[i]
    if type(v) == "string" then total = total + #v
    elseif mtype(v) == "integer" then total = total + 20
    else message(v) end
  end
  too_long(total)
  return billed(T.concat(a, "", 1, a.n))
end

local function concat(...)
  local s = concat_parts(pack_args(...), function()
    bad("string.concat takes strings and integers")
  end)
  return s
end

-- Worst-case steps of Lua's backtracking matcher: (n+1)^(q+1) * (m+1) for a subject of n bytes
-- and a pattern of m bytes with q quantifiers (* + - ?, %b, back references; counted wherever
-- they appear), one factor fewer when anchored. string.find of a pattern without special
-- characters (or plain) is a substring search instead: (n+1)(m+1) byte comparisons. The
-- pattern is scanned here first (three set searches over its bytes), billed per byte.
local function pattern_cost(s, p, plain, find_)
  local n, m = #s + 1, #p + 1
  if plain then return n * m // SEARCH_UNIT end
  charge(m * PATTERN_SCAN // SEARCH_UNIT)
  if not raw_find(p, "[%^%$%*%+%?%.%(%)%[%]%%%-]") then
    if find_ then return n * m // SEARCH_UNIT end
    return n * m // PATTERN_UNIT
  end
  local q = select(2, raw_gsub(p, "[%*%+%-%?]", "")) + select(2, raw_gsub(p, "%%[b1-9]", ""))
  if raw_sub(p, 1, 1) ~= "^" then q = q + 1 end
  local w = m
  for _ = 1, q do
    if w > PATTERN_CAP // n then return PATTERN_CAP // PATTERN_UNIT end
    w = w * n
  end
  return w // PATTERN_UNIT
end

local function pattern_args(name, s, p, init)
  str(s, name .. ": s")
  str(p, name .. ": pattern")
  optint(init, 1, name .. ": init")
end

local function find(s, p, init, plain)
  pattern_args("string.find", s, p, init)
  charge(pattern_cost(s, p, plain, true))
  return billed(S.find(s, p, init, plain))
end

local function match(s, p, init)
  pattern_args("string.match", s, p, init)
  charge(pattern_cost(s, p))
  return billed(S.match(s, p, init))
end

-- All the iterator's calls together scan the subject once (each resumes where the last
-- stopped), so one charge covers them.
local function gmatch(s, p, init)
  pattern_args("string.gmatch", s, p, init)
  charge(pattern_cost(s, p))
  local it = S.gmatch(s, p, init)
  return function() return billed(it()) end
end

-- string.format: walk the format, check each argument's type for its conversion and bound
-- the output before C builds it. Float conversions and %p are refused.
local FORMAT_INT = {d = 20, i = 20, o = 22, u = 20, x = 16, X = 16, c = 1}
local function format(fmt, ...)
  str(fmt, "string.format: format")
  local a = pack_args(...)
  local total, arg, i, n = 0, 0, 1, #fmt
  while i <= n do
    local at = raw_find(fmt, "%", i, true)
    if not at then total = total + n - i + 1; break end
    total = total + at - i
    local spec, conv = S.match(fmt, "^%%([-+ #0]*%d?%d?%.?%d?%d?)(.)", at)
    if spec == nil then
      if raw_sub(fmt, at + 1, at + 1) == "%" then spec, conv = "", "%"
      else bad("string.format: invalid conversion at byte " .. at) end
    end
    i = at + 2 + #spec
    if conv == "%" then
      total = total + 1
    else
      arg = arg + 1
      local v, width = a[arg], 99
      if FORMAT_INT[conv] then
        int(v, "string.format: argument " .. arg)
        total = total + width + FORMAT_INT[conv]
      elseif conv == "s" then
        local tv = type(v)
        if tv == "string" then total = total + width + #v
        elseif mtype(v) == "integer" or tv == "boolean" or v == nil then total = total + width + 20
        else bad("string.format: %s takes strings, integers, booleans and nil") end
      elseif conv == "q" then
        local tv = type(v)
        if tv == "string" then total = total + 2 + 4 * #v
        elseif mtype(v) == "integer" or tv == "boolean" or v == nil then total = total + 30
        else bad("string.format: %q takes strings, integers, booleans and nil") end
      elseif conv == "p" then
        forbid("string.format('%p')")
      elseif raw_find("aAeEfFgG", conv, 1, true) then
        forbid("string.format('%" .. conv .. "') (floats)")
      else
        bad("string.format: invalid conversion '%" .. conv .. "'")
      end
    end
  end
  too_long(total)
  return billed(S.format(fmt, ...))
end

-- string.pack / unpack / packsize: walk the format (at most 64 bytes) for the output size and
-- the argument types. Float options (f, d, n) are refused.
local PACK_FIXED = {b = 1, B = 1, h = 2, H = 2, l = 8, L = 8, j = 8, J = 8, T = 8,
                    x = 1, [" "] = 0, ["<"] = 0, [">"] = 0, ["="] = 0}
local function pack_walk(f, args)
  str(f, "pack format")
  if #f > 64 then bad("pack formats are limited to 64 bytes") end
  local size, i, n, arg = 0, 1, #f, 0
  while i <= n do
    local o = raw_sub(f, i, i)
    local num = S.match(f, "^%d+", i + 1)
    i = i + 1 + (num and #num or 0)
    num = num and (#num > 6 and MAX_STRING + 1 or tonumber(num))
    if o == "f" or o == "d" or o == "n" then forbid("float pack formats (f, d, n)") end
    local fixed = PACK_FIXED[o]
    if fixed then
      size = size + fixed
      if fixed > 0 and o ~= "x" then arg = arg + 1; if args then int(args[arg], "pack value") end end
    elseif o == "i" or o == "I" then
      size = size + (num or 4)
      arg = arg + 1
      if args then int(args[arg], "pack value") end
    elseif o == "!" then
      size = size + 16
    elseif o == "X" then            -- align to the next option's size; it takes no value
      local skip = S.match(f, "^.%d*", i)
      i = i + (skip and #skip or 0)
      size = size + 16
    elseif o == "c" or o == "s" or o == "z" then
      arg = arg + 1
      local v = args and str(args[arg], "pack value")
      size = size + (o == "c" and (num or 0) or o == "s" and (num or 8) + (v and #v or 0)
                     or (v and #v or 0) + 1)
    end
    size = size + 16        -- alignment padding
    if size > MAX_STRING then too_long(size) end
  end
  return size
end

local function pack(f, ...)
  too_long(pack_walk(f, pack_args(...)))
  return billed(S.pack(f, ...))
end

local function unpack(f, s, pos)
  pack_walk(f)
  str(s, "string.unpack: data")
  optint(pos, 1, "string.unpack: pos")
  scanned(s)
  return billed(S.unpack(f, s, pos))
end

local function packsize(f) pack_walk(f) return S.packsize(f) end

local function rep(s, n, sep)
  str(s, "string.rep: s")
  int(n, "string.rep: n")
  optstr(sep, "string.rep: sep")
  if n <= 0 or #s + (sep and #sep or 0) == 0 then return "" end    -- C would loop n times
  if n > MAX_STRING + 1 then too_long(n) end
  too_long(#s * n + (sep and #sep or 0) * (n - 1))
  return billed(S.rep(s, n, sep))
end

local function sub(s, i, j)
  str(s, "string.sub: s")
  optint(i, 1, "string.sub: i")
  optint(j, -1, "string.sub: j")
  return billed(S.sub(s, i, j))
end

local function unary(name, f)
  return function(s) str(s, "string." .. name .. ": s") return billed(f(s)) end
end

local STRING = {byte = byte, char = char, concat = concat, find = find, format = format,
  gmatch = gmatch, len = S.len, lower = unary("lower", S.lower), match = match, rep = rep,
  reverse = unary("reverse", S.reverse), sub = sub, upper = unary("upper", S.upper),
  pack = pack, packsize = packsize, unpack = unpack}
local STRING_MT = guard({dump = true, gsub = true}, "string.")

-- tables: dense lists and string-keyed maps, every store billed ---------------------------
-- Lua rebuilds a table's node array whenever a new key finds no free node. Deleting keys
-- leaves dead nodes, so deleting and inserting in turn can make every insert rebuild the
-- whole table. A rebuild that does not grow the table needs a deletion since the previous
-- one, so the first deletion after an insertion pays for one rebuild (the table's size);
-- growing rebuilds are paid by the inserts (amortised). Integer keys are list positions
-- 1..#t+1 (lists grow and shrink at the end): integer keys hash without a seed, so sparse ones
-- could be chosen to collide.
local count, dirty = {}, {}

function X.reset() count, dirty = {}, {} end

local function store(t, k, v)
  if type(t) ~= "table" then error("attempt to index a " .. type(t) .. " value", 3) end
  local n = count[t]
  if n == nil then
    n = 0
    for _ in next, t do n = n + 1 end
  end
  local old = rawget(t, k)
  if mtype(k) == "integer" then
    local len = rawlen(t)
    if v == nil then
      if old ~= nil and k < len then bad("a list cannot have holes (use table.remove)") end
    elseif k < 1 or k > len + 1 then
      bad("list positions are 1..#t+1 (use string keys for maps)")
    end
  elseif type(k) ~= "string" then
    bad("table keys are list positions or strings")
  end
  if old == nil then
    if v ~= nil then n = n + 1; charge(INSERT_GAS); dirty[t] = nil end
  elseif v == nil then
    if not dirty[t] then charge(n // DELETE_UNIT + 1); dirty[t] = true end
    n = n - 1
  end
  count[t] = n
  rawset(t, k, v)
end

local function st(t, k, v) store(t, k, v) end

-- Multiple assignment to fields: after evaluating everything (as Lua does), store from left to
-- right (Lua leaves the order unspecified), so `t[#t + 1], t[#t + 2] = a, b` grows a list.
local function stm(n, ...)
  local a = pack_args(...)
  for i = 1, n do store(a[2 * i - 1], a[2 * i], a[2 * n + i]) end
end

local function tablearg(t, name)
  if type(t) ~= "table" then bad(name .. " expects a table") end
  return t
end

local function tinsert(t, ...)
  tablearg(t, "table.insert")
  local n, e = select("#", ...), rawlen(t) + 1
  if n == 1 then store(t, e, (...)) return end
  if n ~= 2 then bad("wrong number of arguments to 'insert'") end
  local pos, v = ...
  int(pos, "table.insert: position")
  if pos < 1 or pos > e then bad("table.insert: position out of bounds") end
  for k = e, pos + 1, -1 do store(t, k, t[k - 1]) end
  store(t, pos, v)
end

local function tremove(t, pos)
  tablearg(t, "table.remove")
  local size = rawlen(t)
  if pos == nil then
    if size == 0 then return nil end
    pos = size
  end
  int(pos, "table.remove: position")
  if pos ~= size and (pos < 1 or pos > size + 1) then
    bad("table.remove: position out of bounds")
  end
  local v = t[pos]
  for k = pos, size - 1 do store(t, k, t[k + 1]) end
  if pos <= size then store(t, size, nil) end
  return v
end

local function move(a1, f, e, t, a2)
  tablearg(a1, "table.move")
  int(f, "table.move: f")
  int(e, "table.move: e")
  int(t, "table.move: t")
  a2 = a2 == nil and a1 or tablearg(a2, "table.move")
  if e >= f then
    if not (f > 0 or e < MAXI + f) then bad("table.move: too many elements to move") end
    local n = e - f
    if t > MAXI - n then bad("table.move: destination wrap around") end
    elems(n + 1)
    if t > e or t <= f or a1 ~= a2 then
      for i = 0, n do store(a2, t + i, a1[f + i]) end
    else
      for i = n, 0, -1 do store(a2, t + i, a1[f + i]) end
    end
  end
  return a2
end

local function tunpack(t, i, j)
  tablearg(t, "table.unpack")
  i = optint(i, 1, "table.unpack: i")
  j = optint(j, rawlen(t), "table.unpack: j")
  if i <= j then
    local n = j - i              -- as C does: unsigned, so a wrapped span is huge, not negative
    elems(mult(HUGE, n) and MAXI or n + 1)
  end
  return T.unpack(t, i, j)
end

local function tconcat(t, sep, i, j)
  tablearg(t, "table.concat")
  optstr(sep, "table.concat: sep")
  i = optint(i, 1, "table.concat: i")
  j = optint(j, rawlen(t), "table.concat: j")
  local total = (sep and #sep or 0) * (j > i and j - i or 0)
  too_long(total)
  for k = i, j do
    local v = t[k]
    if type(v) == "string" then total = total + #v
    elseif mtype(v) == "integer" then total = total + 20
    else bad("table.concat: invalid value (at index " .. k .. ")") end
    too_long(total)
  end
  return billed(T.concat(t, sep, i, j))
end

local function less(a, b) return a < b end

local function tsort(t, comp)
  tablearg(t, "table.sort")
  if comp ~= nil and type(comp) ~= "function" then bad("table.sort: comparator must be a function") end
  local n = rawlen(t)
  if comp == nil then
    local bytes = 0
    for i = 1, n do
      local v = t[i]
      if type(v) == "string" then bytes = bytes + #v end
    end
    charge((bytes // CMP_UNIT) * log2(n))
  end
  csort(t, comp or less)
end

local function tpack(...)
  local t = pack_args(...)
  charge(OBJECT_GAS + t.n * ELEM_GAS)
  return t
end

local TABLE = {concat = tconcat, insert = tinsert, move = move, pack = tpack,
  remove = tremove, sort = tsort, unpack = tunpack}

-- math, utf8 --------------------------------------------------------------------------------
local function ints(name, f)
  return function(...)
    charge(OBJECT_GAS)
    local a = pack_args(...)
    for k = 1, a.n do int(a[k], "math." .. name .. ": argument " .. k) end
    return f(...)
  end
end
local mabs, mfmod = math.abs, math.fmod
local MATH = {
  abs = function(x) return mabs(int(x, "math.abs: x")) end,
  ceil = function(x) return int(x, "math.ceil: x") end,
  floor = function(x) return int(x, "math.floor: x") end,
  fmod = function(a, b) return mfmod(int(a, "math.fmod: a"), int(b, "math.fmod: b")) end,
  max = ints("max", math.max), min = ints("min", math.min),
  tointeger = function(v) if mtype(v) == "integer" then return v end return nil end,
  type = math.type,
  ult = function(a, b) return mult(int(a, "math.ult: a"), int(b, "math.ult: b")) end,
  maxinteger = math.maxinteger, mininteger = math.mininteger}
local MATH_MT = guard({random = true, randomseed = true, huge = true, pi = true, sqrt = true,
  sin = true, cos = true, tan = true, asin = true, acos = true, atan = true, exp = true,
  log = true}, "math.")

local function u_posrelat(pos, len)
  if pos >= 0 then return pos elseif -pos > len then return 0 end
  return len + pos + 1
end

local function uchar(...)
  local a = pack_args(...)
  local total = 0
  for k = 1, a.n do
    local c = int(a[k], "utf8.char: code")
    total = total + (c < 0x80 and 1 or c < 0x800 and 2 or c < 0x10000 and 3 or
                     c < 0x200000 and 4 or c < 0x4000000 and 5 or 6)
  end
  too_long(total)
  return billed(U.char(...))
end

local function codepoint(s, i, j, lax)
  str(s, "utf8.codepoint: s")
  local pi = u_posrelat(optint(i, 1, "utf8.codepoint: i"), #s)
  local pe = u_posrelat(optint(j, pi, "utf8.codepoint: j"), #s)
  if pi >= 1 and pe <= #s and pi <= pe then elems(pe - pi + 1) end
  return U.codepoint(s, i, j, lax)
end

-- The C iterator skips continuation bytes from whatever position it is handed: iterate only
-- over the string checked here (valid UTF-8, so at most 5 bytes to skip).
local function codes(s, lax)
  str(s, "utf8.codes: s")
  scanned(s)
  if not U.len(s, 1, -1, lax) then error("invalid UTF-8 code", 2) end
  local it = U.codes(s, lax)
  return function(_, i) return it(s, int(i, "utf8.codes: position")) end, s, 0
end

local UTF8 = {charpattern = U.charpattern, codes = codes, char = uchar, codepoint = codepoint,
  len = function(s, i, j, lax)
    str(s, "utf8.len: s")
    optint(i, 1, "utf8.len: i")
    optint(j, -1, "utf8.len: j")
    scanned(s)
    return U.len(s, i, j, lax)
  end,
  offset = function(s, n, i)
    str(s, "utf8.offset: s")
    int(n, "utf8.offset: n")
    optint(i, 1, "utf8.offset: i")
    scanned(s)
    return U.offset(s, n, i)
  end}

-- base functions ----------------------------------------------------------------------------
local function safe_tostring(v)
  local t = type(v)
  if t == "table" or t == "function" or t == "userdata" or t == "thread" then return t end
  charge(OBJECT_GAS)
  return tostring(v)
end

local function safe_tonumber(v, base)
  if base ~= nil then
    int(base, "tonumber: base")
    str(v, "tonumber: value")
  end
  if type(v) == "string" then scanned(v) end
  local r = tonumber(v, base)
  if mtype(r) == "float" then return nil end
  return r
end

local function safe_error(m, level)
  level = optint(level, 1, "error: level")
  error(m, level > 0 and level + 1 or level)
end

local function safe_select(n, ...)
  if n ~= "#" then int(n, "select: n") end
  return select(n, ...)
end

local function inext(t, i)
  i = i + 1
  local v = t[i]
  if v ~= nil then return i, v end
end
local function safe_ipairs(t)
  if t == nil then bad("ipairs expects a table") end
  return inext, t, 0
end

local function safe_rawequal(a, b)
  if type(a) == "string" and type(b) == "string" and #a > SHORT and #a == #b then
    charge(#a // EQ_UNIT)
  end
  return rawequal(a, b)
end

-- Deterministic pairs: integer keys ascending, then string keys in byte order; the key set is
-- taken when the loop starts. Keys of any other type are an error.
local function sorted_pairs(t)
  if type(t) ~= "table" then bad("pairs expects a table") end
  local ints_, strs, ni, ns, other, bytes, dense = {}, {}, 0, 0, 0, 0, true
  for k in next, t do
    if mtype(k) == "integer" then
      ni = ni + 1
      ints_[ni] = k
      if k < 1 then dense = false end
    elseif type(k) == "string" then
      ns = ns + 1
      strs[ns] = k
      bytes = bytes + #k
    else
      other = other + 1
    end
  end
  if other > 0 then bad("pairs needs integer or string keys") end
  for i = 1, ni do          -- keys 1..n (in any order): place them, no sort needed
    if ints_[i] > ni then dense = false end
  end
  if dense then
    for i = 1, ni do ints_[i] = i end
  else
    C.sort_keys(ints_, 0)
  end
  C.sort_keys(strs, bytes)
  for i = 1, ns do ints_[ni + i] = strs[i] end
  local i = 0
  return function()
    i = i + 1
    local k = ints_[i]
    if k ~= nil then return k, t[k] end
  end, t, nil
end

-- Operator helpers (contracts/syntax.py) --------------------------------------------------
local function order_check(a, b)
  local ta, tb = type(a), type(b)
  if ta == "string" and tb == "string" then
    charge((#a < #b and #a or #b) // CMP_UNIT)
  elseif ta ~= "number" or tb ~= "number" then
    if ta == tb then error("attempt to compare two " .. ta .. " values", 3) end
    error("attempt to compare " .. ta .. " with " .. tb, 3)
  end
end
local function lt(a, b) order_check(a, b) return a < b end
local function le(a, b) order_check(a, b) return a <= b end
local function gt(a, b) order_check(a, b) return a > b end
local function ge(a, b) order_check(a, b) return a >= b end
local function eq(a, b)
  if type(a) == "string" and type(b) == "string" and #a > SHORT and #a == #b then
    charge(#a // EQ_UNIT)
  end
  return a == b
end
local function ne(a, b) return not eq(a, b) end
local function cat(...)
  local s = concat_parts(pack_args(...), function(v)
    error("attempt to concatenate a " .. type(v) .. " value", 4)
  end)
  return s
end
local function for_int(v)
  if mtype(v) ~= "integer" then error("'for' values must be integers", 2) end
  return v
end
local function fn(cost, f) charge(cost) return f end
local function tbl(n, t) charge(OBJECT_GAS + n * ELEM_GAS) return t end

local FORBIDDEN = {}
for name in S.gmatch("io os debug require package load loadstring dofile loadfile " ..
    "collectgarbage coroutine python _G next rawget rawset getmetatable setmetatable print " ..
    "warn module setfenv getfenv newproxy gcinfo jit ffi bit32", "%S+") do
  FORBIDDEN[name] = true
end
local BUILTINS_MT = guard(FORBIDDEN, "")

local function copy(src, mt)
  local t = {}
  for k, v in next, src do t[k] = v end
  if mt then setmetatable(t, mt) end
  return t
end

-- A fresh global table for one contract frame, with `api` as its `chain` table. Returns the
-- environment (always empty: every global store goes through `store`), the table the globals
-- live in, and a copy of its initial content (a builtin is never a method).
-- A global store runs as a metamethod called from C: billed like a host call on top.
function X.new_env(api)
  local G = {assert = assert, error = safe_error, ipairs = safe_ipairs, select = safe_select,
    tonumber = safe_tonumber, tostring = safe_tostring, type = type, unpack = tunpack,
    pcall = M.pcall, xpcall = M.xpcall, rawequal = safe_rawequal, rawlen = rawlen,
    pairs = sorted_pairs, string = copy(STRING, STRING_MT), table = copy(TABLE),
    math = copy(MATH, MATH_MT), utf8 = copy(UTF8), chain = api,
    __ss_lt = lt, __ss_le = le, __ss_gt = gt, __ss_ge = ge, __ss_eq = eq, __ss_ne = ne,
    __ss_cat = cat, __ss_int = for_int, __ss_st = st, __ss_stm = stm, __ss_fn = fn,
    __ss_tbl = tbl}
  local builtin = copy(G)
  setmetatable(G, BUILTINS_MT)
  return setmetatable({}, {__index = G, __newindex = function(_, k, v)
    charge(GLOBAL_GAS)
    store(G, k, v)
  end}), G, builtin
end

-- The names every environment offers, space-separated (for tests that enumerate them).
function X.names()
  local _, B = X.new_env({})
  local out = {}
  for k, v in next, B do
    if type(v) == "function" and raw_sub(k, 1, 4) ~= "__ss" then out[#out + 1] = k end
  end
  for _, lib in ipairs({"string", "table", "math", "utf8"}) do
    for k in next, B[lib] do out[#out + 1] = lib .. "." .. k end
  end
  return T.concat(out, " ")
end

-- String methods ("s:rep(3)") use a private copy no contract can reach or modify; the
-- string-to-number arithmetic metamethods are dropped (no implicit coercion).
local smt = getmetatable("")
for k in next, smt do smt[k] = nil end
smt.__index = copy(STRING, STRING_MT)

X.billed, X.too_long = billed, too_long
return X
