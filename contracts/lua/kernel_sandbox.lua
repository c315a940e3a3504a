-- The contract environment, built from scratch for every contract frame (trusted host code;
-- docs §14.2). Only whitelisted functions are copied in; known-dangerous names raise
-- "forbidden". Contracts are integer-only, see no table addresses, no hash order and no
-- collector: `pairs` iterates in sorted key order, `table.sort` is a stable merge sort in Lua,
-- `tostring` of a table or function is its type name. No string is longer than max_string:
-- the `..` operator is refused at deploy, `string.concat` replaces it, and every function that
-- builds a string checks the size and bills its bytes. C functions whose work is not bounded by
-- one VM instruction bill it explicitly (spans, patterns, sorts).
local M, P = ...
local type, select, tostring, tonumber, next = type, select, tostring, tonumber, next
local assert, error, ipairs = assert, error, ipairs
local rawequal, rawlen, setmetatable, getmetatable = rawequal, rawlen, setmetatable, getmetatable
local mtype, sort, MAXI = math.type, table.sort, math.maxinteger
local S, T, U = string, table, utf8
local raw_find, raw_gsub, raw_sub, pack_args = S.find, S.gsub, S.sub, T.pack
local charge, fail = M.charge, M.fail
local MAX_STRING, BYTE_UNIT, ELEM_GAS = P.max_string, P.byte_unit, P.elem_gas
local PATTERN_UNIT, PATTERN_CAP = P.pattern_unit, 1 << 62
local X = {}

local function forbid(name, level)
  fail("forbidden: " .. name .. " is not available to contracts", level or 3)
end

local function guard(names, prefix)
  return {__index = function(_, k) if names[k] then forbid(prefix .. k) end end}
end

local function too_long(n)
  if n > MAX_STRING then
    M.die("out_of_memory", "out_of_memory: strings are limited to " .. MAX_STRING .. " bytes")
  end
end

-- Bill the bytes of every string among the results, and pass them through.
local function billed(...)
  local n = 0
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if type(v) == "string" then n = n + #v end
  end
  charge(n // BYTE_UNIT)
  return ...
end

local function bytes_of(s) if type(s) == "string" then charge(#s // BYTE_UNIT) end end

local function span_cost(i, j)
  if mtype(i) ~= "integer" or mtype(j) ~= "integer" or j < i then return 0 end
  local c = j - i
  if c < 0 or c > MAX_STRING * 64 then return MAXI // 2 end
  return (c + 1) * ELEM_GAS
end

-- string ------------------------------------------------------------------------------------
local function rep(s, n, sep)
  if type(s) == "string" and mtype(n) == "integer" and n > 0 then
    local unit = #s + (type(sep) == "string" and #sep or 0)
    if unit > 0 then too_long(n > MAX_STRING and n or #s * n + (unit - #s) * (n - 1)) end
  end
  return billed(S.rep(s, n, sep))
end

local function concat(...)
  local args = pack_args(...)
  local total = 0
  for i = 1, args.n do
    local v = args[i]
    if type(v) == "string" then total = total + #v
    elseif mtype(v) == "integer" then total = total + 20
    else fail("bad_value: string.concat takes strings and integers", 2) end
  end
  too_long(total)
  return billed(T.concat(args, "", 1, args.n))
end

-- Worst-case steps of Lua's backtracking matcher: (n+1)^(q+1) * (m+1), q = quantifiers.
local function pattern_cost(s, p, plain)
  if type(s) ~= "string" or type(p) ~= "string" then return 0 end
  local n, m = #s + 1, #p + 1
  if plain or not raw_find(p, "[%^%$%*%+%?%.%(%)%[%]%%%-]") then return n * m // PATTERN_UNIT end
  local q = select(2, raw_gsub(p, "[%*%+%-%?]", "")) + select(2, raw_gsub(p, "%%[b1-9]", ""))
  if raw_sub(p, 1, 1) ~= "^" then q = q + 1 end
  local w = m
  for _ = 1, q do
    if w > PATTERN_CAP // n then return PATTERN_CAP // PATTERN_UNIT end
    w = w * n
  end
  return w // PATTERN_UNIT
end

local function find(s, p, init, plain)
  charge(pattern_cost(s, p, plain))
  return billed(S.find(s, p, init, plain))
end
local function match(s, p, init) charge(pattern_cost(s, p)); return billed(S.match(s, p, init)) end
local function gmatch(s, p, init)
  charge(pattern_cost(s, p))
  local it = S.gmatch(s, p, init)
  return function() return billed(it()) end
end

local FORMAT_ARG = {string = true, number = true, boolean = true, ["nil"] = true}
local function format(fmt, ...)
  if type(fmt) ~= "string" then return S.format(fmt, ...) end
  local plain = raw_gsub(fmt, "%%%%", "")
  if raw_find(plain, "%%[-+ #0-9.]*p") then forbid("string.format('%p')", 2) end
  local widen = raw_find(plain, "%%[-+ #0-9.]*q") and 4 or 1
  local total = #fmt
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if not FORMAT_ARG[type(v)] then
      fail("bad_value: string.format takes only strings, numbers, booleans and nil", 2)
    end
    total = total + 100 + (type(v) == "string" and #v * widen or 24)
  end
  too_long(total)
  return billed(S.format(fmt, ...))
end

local function pack_format(f)
  if type(f) == "string" then
    if raw_find(f, "[fdn]") then forbid("float formats (f, d, n)", 4) end
    if #f > 64 then fail("bad_value: pack formats are limited to 64 bytes", 4) end
  end
end
local function pack(f, ...)
  pack_format(f)
  local total = 0
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if type(v) == "string" then total = total + #v end
  end
  too_long(total + 16 * #f)
  return billed(S.pack(f, ...))
end
local function unpack(f, s, pos) pack_format(f); return billed(S.unpack(f, s, pos)) end
local function packsize(f) pack_format(f); return S.packsize(f) end

local function byte(s, i, j)
  if type(s) == "string" then charge(span_cost(i or 1, j or i or 1)) end
  return S.byte(s, i, j)
end
local function char(...) return billed(S.char(...)) end
local function sub(s, i, j) return billed(S.sub(s, i, j)) end
local function lower(s) return billed(S.lower(s)) end
local function upper(s) return billed(S.upper(s)) end
local function reverse(s) return billed(S.reverse(s)) end

local STRING = {byte = byte, char = char, concat = concat, find = find, format = format,
  gmatch = gmatch, len = S.len, lower = lower, match = match, rep = rep, reverse = reverse,
  sub = sub, upper = upper, pack = pack, packsize = packsize, unpack = unpack}
local STRING_MT = guard({dump = true, gsub = true}, "string.")

-- table -------------------------------------------------------------------------------------
local function move(a1, f, e, t, a2) charge(span_cost(f, e)); return T.move(a1, f, e, t, a2) end
local function tunpack(t, i, j)
  if type(t) == "table" then charge(span_cost(i or 1, j or rawlen(t))) end
  return T.unpack(t, i, j)
end
local function tinsert(t, ...)
  if type(t) == "table" and select("#", ...) == 2 then charge(span_cost((...), rawlen(t))) end
  return T.insert(t, ...)
end
local function tremove(t, pos)
  if type(t) == "table" and pos ~= nil then charge(span_cost(pos, rawlen(t))) end
  return T.remove(t, pos)
end
local function tconcat(t, sep, i, j)
  if type(t) ~= "table" then return T.concat(t, sep, i, j) end
  i, j = i or 1, j or rawlen(t)
  local total = (type(sep) == "string" and #sep or 0) * (j > i and j - i or 0)
  too_long(total)
  for k = i, j do
    local v = t[k]
    total = total + (type(v) == "string" and #v or 20)
    too_long(total)
  end
  return billed(T.concat(t, sep, i, j))
end

local function less(a, b) return a < b end

-- Stable bottom-up merge sort: its work depends only on the input and the comparator.
local function merge_sort(t, comp)
  if type(t) ~= "table" then fail("bad_value: table.sort expects a table", 2) end
  comp = comp or less
  local n = rawlen(t)
  local src, dst = {}, {}
  for i = 1, n do src[i] = t[i] end
  local width = 1
  while width < n do
    local i = 1
    while i <= n do
      local mid, hi = i + width, i + 2 * width
      if mid > n + 1 then mid = n + 1 end
      if hi > n + 1 then hi = n + 1 end
      local l, r = i, mid
      for k = i, hi - 1 do
        if l < mid and (r >= hi or not comp(src[r], src[l])) then dst[k] = src[l]; l = l + 1
        else dst[k] = src[r]; r = r + 1 end
      end
      i = hi
    end
    src, dst = dst, src
    width = width * 2
  end
  for i = 1, n do t[i] = src[i] end
end

local TABLE = {concat = tconcat, insert = tinsert, move = move, pack = T.pack,
  remove = tremove, sort = merge_sort, unpack = tunpack}

-- math, utf8 --------------------------------------------------------------------------------
local MATH = {abs = math.abs, ceil = math.ceil, floor = math.floor, fmod = math.fmod,
  max = math.max, min = math.min, tointeger = math.tointeger, type = math.type, ult = math.ult,
  maxinteger = math.maxinteger, mininteger = math.mininteger}
local MATH_MT = guard({random = true, randomseed = true, huge = true, pi = true, sqrt = true,
  sin = true, cos = true, tan = true, asin = true, acos = true, atan = true, exp = true,
  log = true}, "math.")
local UTF8 = {charpattern = U.charpattern, codes = U.codes,
  char = function(...) return billed(U.char(...)) end,
  codepoint = function(s, i, j)
    if type(s) == "string" then charge(span_cost(i or 1, j or i or 1)) end
    return U.codepoint(s, i, j)
  end,
  len = function(s, i, j, lax) bytes_of(s); return U.len(s, i, j, lax) end,
  offset = function(s, n, i) bytes_of(s); return U.offset(s, n, i) end}

-- base functions ----------------------------------------------------------------------------
local function safe_tostring(v)
  local t = type(v)
  if t == "table" or t == "function" or t == "userdata" or t == "thread" then return t end
  return tostring(v)
end

local function safe_tonumber(v, base)
  bytes_of(v)
  local r = tonumber(v, base)
  if mtype(r) == "float" then return nil end
  return r
end

local function log2(n)
  local lg = 1
  while n > 1 do n = n >> 1; lg = lg + 1 end
  return lg
end

-- Deterministic pairs: integer keys ascending, then string keys in byte order; the key set is
-- taken when the loop starts. Keys of any other type are an error.
local function sorted_pairs(t)
  if type(t) ~= "table" then fail("bad_value: pairs expects a table", 2) end
  local n, ni, other = 0, 0, 0
  for k in next, t do
    n = n + 1
    local tk = type(k)
    if tk == "number" then ni = ni + 1 elseif tk ~= "string" then other = other + 1 end
  end
  if other > 0 then fail("bad_value: pairs needs integer or string keys", 2) end
  charge(n * log2(n))
  local keys, strs = {}, {}
  for i = 1, ni do keys[i] = 0 end
  for i = 1, n - ni do strs[i] = "" end
  local a, b = 0, 0
  for k in next, t do
    if type(k) == "number" then a = a + 1; keys[a] = k else b = b + 1; strs[b] = k end
  end
  sort(keys)
  sort(strs)
  for i = 1, n - ni do keys[ni + i] = strs[i] end
  local i = 0
  return function()
    i = i + 1
    local k = keys[i]
    if k ~= nil then return k, t[k] end
  end, t, nil
end
X.log2 = log2

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

-- A fresh global table for one contract frame, with `api` as its `chain` table.
function X.new_env(api)
  local B = {assert = assert, error = error, ipairs = ipairs, select = select,
    tonumber = safe_tonumber, tostring = safe_tostring, type = type, unpack = tunpack,
    pcall = M.pcall, xpcall = M.xpcall, rawequal = rawequal, rawlen = rawlen,
    pairs = sorted_pairs, string = copy(STRING, STRING_MT), table = copy(TABLE),
    math = copy(MATH, MATH_MT), utf8 = copy(UTF8), chain = api}
  setmetatable(B, BUILTINS_MT)
  return setmetatable({}, {__index = B})
end

-- String methods ("s:rep(3)") use a private copy no contract can reach or modify; the
-- string-to-number arithmetic metamethods are dropped (no implicit coercion).
local smt = getmetatable("")
for k in next, smt do smt[k] = nil end
smt.__index = copy(STRING, STRING_MT)

X.billed, X.too_long = billed, too_long
return X
