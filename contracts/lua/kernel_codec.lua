-- The values codec on the Lua side (trusted host code; docs §14.1), byte for byte the same
-- encoding as contracts/values.py. Lua strings leave as bytes (tag 4); tags 4 and 5 both
-- arrive as Lua strings. A table whose keys are exactly 1..n is a list (the empty table is the
-- empty list), a table whose keys are all strings is a map; anything else is refused.
-- Loops that follow `next` order never exit early, so how many instructions they run (gas)
-- does not depend on the hash order, which Lua seeds at random in every runtime.
-- Keys gathered with `next` arrive in hash order, which Lua seeds at random per runtime: a sort
-- written in Lua would run a number of instructions (gas) that depends on it. They are sorted by
-- Lua's C quicksort (no instructions) and billed up front: n log2 n comparisons, plus the bytes
-- of string keys (strcoll runs once per zero-separated segment) times log2 n. Neither the input
-- order nor the pivots (randomised) can be chosen by a contract. Lists a contract sorts itself
-- (table.sort) use the merge sort below: their order is the contract's, so its gas is too.
local M, P = ...
local type, next, rawlen, error = type, next, rawlen, error
local mtype, ult = math.type, math.ult
local char, byte, sub, concat, csort = string.char, string.byte, string.sub, table.concat,
  table.sort
local utf8len = utf8.len
local charge = M.charge
local MAX_DEPTH, MAX_SIZE, CMP_UNIT, SORT_GAS = P.max_depth, P.max_size, P.cmp_unit, P.sort_gas
local NOT_STRING = {string = 0, number = 1, boolean = 1, table = 1, ["function"] = 1,
                    userdata = 1, thread = 1}
local C = {}

local function bad(msg) M.fail("bad_value: " .. msg) end

local function less(a, b) return a < b end

local function log2(n)
  local lg = 1
  while n > 1 do n = n >> 1; lg = lg + 1 end
  return lg
end
C.log2 = log2

-- Stable bottom-up merge sort of t[1..n] (n = rawlen(t)); its work depends only on the input
-- and the comparator: at most n * log2(n) comparisons.
function C.sort(t, comp)
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

-- Sort keys gathered in hash order (all integers or all strings of `bytes` bytes in all).
function C.sort_keys(t, bytes)
  local n = rawlen(t)
  charge((bytes // CMP_UNIT + n * SORT_GAS) * log2(n))
  csort(t)
end

local function count_keys(t)
  local n = 0
  for _ in next, t do
    n = n + 1
    if n > MAX_SIZE then break end
  end
  return n
end

local function is_list(t, n, len)
  if n ~= len then return false end
  for i = 1, len do
    if t[i] == nil then return false end
  end
  return true
end

local function sorted_string_keys(t, n)
  local keys = {}
  for i = 1, n do keys[i] = false end
  local i, nonstr, bytes = 0, 0, 0
  for k in next, t do
    i = i + 1
    keys[i] = k
    local nk = NOT_STRING[type(k)]
    nonstr = nonstr + nk
    if nk == 0 then bytes = bytes + #k end
  end
  if nonstr > 0 then bad("unsupported table shape (mixed or non-sequence keys)") end
  if bytes > MAX_SIZE then bad("encoding exceeds " .. MAX_SIZE .. " bytes") end
  C.sort_keys(keys, bytes)
  return keys
end

local encode

local function put_uvarint(out, z)
  while ult(127, z) do
    out[#out + 1] = char((z & 0x7F) | 0x80)
    z = z >> 7
  end
  out[#out + 1] = char(z)
end

local function put_string(out, tag, s, size)
  out[#out + 1] = tag
  put_uvarint(out, #s)
  out[#out + 1] = s
  return size + 1 + #s
end

encode = function(v, out, depth, size)
  if size > MAX_SIZE then bad("encoding exceeds " .. MAX_SIZE .. " bytes") end
  local tv = type(v)
  if v == nil then out[#out + 1] = "\0"; return size + 1
  elseif v == false then out[#out + 1] = "\1"; return size + 1
  elseif v == true then out[#out + 1] = "\2"; return size + 1
  elseif tv == "number" then
    if mtype(v) ~= "integer" then bad("floats are not values") end
    out[#out + 1] = "\3"
    put_uvarint(out, (v << 1) ~ (v < 0 and -1 or 0))
    return size + 2
  elseif tv == "string" then
    if #v > MAX_SIZE then bad("encoding exceeds " .. MAX_SIZE .. " bytes") end
    return put_string(out, "\4", v, size)
  elseif tv ~= "table" then
    bad("cannot encode a " .. tv)
  end
  if depth >= MAX_DEPTH then bad("containers nest deeper than " .. MAX_DEPTH) end
  local n = count_keys(v)
  if n > MAX_SIZE then bad("encoding exceeds " .. MAX_SIZE .. " bytes") end
  local len = rawlen(v)
  if is_list(v, n, len) then
    out[#out + 1] = "\6"
    put_uvarint(out, n)
    size = size + 2
    for i = 1, n do size = encode(v[i], out, depth + 1, size) end
    return size
  end
  local keys = sorted_string_keys(v, n)
  out[#out + 1] = "\7"
  put_uvarint(out, n)
  size = size + 2
  for i = 1, n do
    local k = keys[i]
    if not utf8len(k) then bad("map key is not valid UTF-8") end
    put_uvarint(out, #k)
    out[#out + 1] = k
    size = encode(v[k], out, depth + 1, size + 1 + #k)
  end
  return size
end

-- Canonical bytes of a Lua value (bad_value error if it is not a value).
function C.encode(v)
  local out = {}
  encode(v, out, 0, 0)
  local s = concat(out)
  if #s > MAX_SIZE then bad("encoding exceeds " .. MAX_SIZE .. " bytes") end
  return s
end

-- Decoding. `strict` checks everything contracts/values.py checks (for chain.decode of bytes a
-- contract holds); the host's own encodings (arguments, nested results) take the same path.
local decode

local function get_uvarint(s, pos, field)
  local z, shift, start = 0, 0, pos
  while true do
    local b = byte(s, pos)
    if not b then bad(field .. ": unexpected end of data") end
    z = z | ((b & 0x7F) << shift)
    pos = pos + 1
    if b < 0x80 then
      if b == 0 and pos - start > 1 then bad(field .. ": non-minimal integer encoding") end
      if pos - start == 10 and b > 1 then bad(field .. ": integer exceeds 64 bits") end
      return z, pos
    end
    shift = shift + 7
    if pos - start >= 10 then bad(field .. ": integer exceeds 64 bits") end
  end
end

local function get_count(s, pos, field)
  local n
  n, pos = get_uvarint(s, pos, field)
  if n < 0 or n > MAX_SIZE then bad(field .. ": " .. n .. " exceeds the limit of " .. MAX_SIZE) end
  return n, pos
end

local function get_bytes(s, pos, field)
  local n
  n, pos = get_count(s, pos, field)
  if pos + n - 1 > #s then bad(field .. ": unexpected end of data") end
  return sub(s, pos, pos + n - 1), pos + n
end

decode = function(s, pos, depth)
  local tag = byte(s, pos)
  if not tag then bad("value: unexpected end of data") end
  pos = pos + 1
  if tag == 0 then return nil, pos
  elseif tag == 1 then return false, pos
  elseif tag == 2 then return true, pos
  elseif tag == 3 then
    local z
    z, pos = get_uvarint(s, pos, "value")
    return (z >> 1) ~ -(z & 1), pos
  elseif tag == 4 or tag == 5 then
    local v
    v, pos = get_bytes(s, pos, "value")
    if tag == 5 and not utf8len(v) then bad("value: not valid UTF-8") end
    return v, pos
  elseif tag ~= 6 and tag ~= 7 then
    bad("value: unknown value tag")
  end
  if depth >= MAX_DEPTH then bad("value: containers nest deeper than " .. MAX_DEPTH) end
  local n, v
  n, pos = get_count(s, pos, "value")
  local t = {}
  if tag == 6 then
    for i = 1, n do
      v, pos = decode(s, pos, depth + 1)
      if v == nil then bad("nil inside a list has no Lua form") end
      t[i] = v
    end
    return t, pos
  end
  local prev = nil
  for _ = 1, n do
    local k
    k, pos = get_bytes(s, pos, "value.key")
    if not utf8len(k) then bad("value.key: not valid UTF-8") end
    if prev ~= nil then
      charge((#k < #prev and #k or #prev) // CMP_UNIT)
      if not (prev < k) then bad("value.key: map keys must be strictly increasing") end
    end
    prev = k
    v, pos = decode(s, pos, depth + 1)
    if v == nil then bad("nil inside a map has no Lua form") end
    t[k] = v
  end
  return t, pos
end

-- Lua value of canonical bytes; bad_value error unless `s` is exactly one valid value.
function C.decode(s)
  if #s > MAX_SIZE then bad("value: " .. #s .. " bytes exceeds the limit of " .. MAX_SIZE) end
  local v, pos = decode(s, 1, 0)
  if pos <= #s then bad("value: " .. (#s - pos + 1) .. " trailing bytes") end
  return v
end

-- The items of an encoded argument list and their count; nil items are allowed here (they
-- become nil parameters), not inside nested values.
function C.decode_args(s)
  local n, pos = get_count(s, 2, "args")
  local t, v = {}, nil
  for i = 1, n do
    v, pos = decode(s, pos, 1)
    t[i] = v
  end
  return t, n
end

return C
