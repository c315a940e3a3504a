-- The values codec on the Lua side (trusted host code; docs §14.1), byte for byte the same
-- encoding as contracts/values.py. Lua strings leave as bytes (tag 4); tags 4 and 5 both
-- arrive as Lua strings. A table whose keys are exactly 1..n is a list (the empty table is the
-- empty list), a table whose keys are all strings is a map; anything else is refused.
-- Loops that follow `next` order never exit early, so how many instructions they run (gas)
-- does not depend on the hash order, which Lua seeds at random in every runtime.
local M, P = ...
local type, next, rawlen, error = type, next, rawlen, error
local mtype, ult = math.type, math.ult
local char, byte, sub, concat, sort = string.char, string.byte, string.sub, table.concat, table.sort
local utf8len = utf8.len
local MAX_DEPTH, MAX_SIZE = P.max_depth, P.max_size
local NOT_STRING = {string = 0, number = 1, boolean = 1, table = 1, ["function"] = 1,
                    userdata = 1, thread = 1}
local C = {}

local function bad(msg) M.fail("bad_value: " .. msg, 0) end

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
  local i, nonstr = 0, 0
  for k in next, t do
    i = i + 1
    keys[i] = k
    nonstr = nonstr + NOT_STRING[type(k)]
  end
  if nonstr > 0 then bad("unsupported table shape (mixed or non-sequence keys)") end
  sort(keys)
  return keys
end
C.sorted_string_keys = sorted_string_keys

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

local decode

local function get_uvarint(s, pos)
  local z, shift = 0, 0
  repeat
    local b = byte(s, pos)
    if not b then bad("truncated value") end
    z = z | ((b & 0x7F) << shift)
    shift, pos = shift + 7, pos + 1
  until b < 0x80
  return z, pos
end

decode = function(s, pos)
  local tag = byte(s, pos)
  pos = pos + 1
  if tag == 0 then return nil, pos
  elseif tag == 1 then return false, pos
  elseif tag == 2 then return true, pos
  elseif tag == 3 then
    local z
    z, pos = get_uvarint(s, pos)
    return (z >> 1) ~ -(z & 1), pos
  elseif tag == 4 or tag == 5 then
    local n
    n, pos = get_uvarint(s, pos)
    return sub(s, pos, pos + n - 1), pos + n
  end
  local n, v
  n, pos = get_uvarint(s, pos)
  local t = {}
  if tag == 6 then
    for i = 1, n do
      v, pos = decode(s, pos)
      if v == nil then bad("nil inside a list has no Lua form") end
      t[i] = v
    end
  elseif tag == 7 then
    for _ = 1, n do
      local klen
      klen, pos = get_uvarint(s, pos)
      local k = sub(s, pos, pos + klen - 1)
      v, pos = decode(s, pos + klen)
      if v == nil then bad("nil inside a map has no Lua form") end
      t[k] = v
    end
  else
    bad("unknown value tag")
  end
  return t, pos
end

-- Lua value of canonical bytes produced by the host (already validated in Python).
function C.decode(s)
  local v = decode(s, 1)
  return v
end

-- The items of an encoded argument list and their count; nil items are allowed here (they
-- become nil parameters), not inside nested values.
function C.decode_args(s)
  local n, pos = get_uvarint(s, 2)
  local t, v = {}, nil
  for i = 1, n do
    v, pos = decode(s, pos)
    t[i] = v
  end
  return t, n
end

return C
