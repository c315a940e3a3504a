-- Contract frames (trusted host code; docs §14.4): the `chain` API of one frame and the run of
-- one method. Every value crossing to the host is checked here and crosses as a Lua string,
-- integer or boolean; structured values cross as canonical encodings (codec.lua).
local M, C, X, P, host = ...
local type, select, mtype, rawget, load = type, select, math.type, rawget, load
local raw_pcall, sub, unpack, utf8len = pcall, string.sub, table.unpack, utf8.len
local charge, fail, billed = M.charge, M.fail, X.billed
local G, BYTE_UNIT, MAX_STRING = P.gas, P.byte_unit, P.max_string
local OP_GET, OP_SET, OP_DELETE, OP_BALANCE, OP_TRANSFER = 1, 2, 3, 4, 5
local OP_EMIT, OP_CALL, OP_VERIFY, OP_HASH, OP_VOUCHER = 6, 7, 8, 9, 10
local K = {}

local function bad(msg) fail("bad_value: " .. msg) end

local function check_string(v, what, lo, hi)
  if type(v) ~= "string" then bad(what .. " must be a string") end
  if #v < lo or #v > hi then bad(what .. " must be " .. lo .. ".." .. hi .. " bytes") end
end

local function check_address(v, what)
  if type(v) ~= "string" or #v ~= 20 then bad(what .. " must be a 20-byte address") end
end

local function check_int(v, what, min)
  if mtype(v) ~= "integer" then bad(what .. " must be an integer") end
  if v < min then bad(what .. " must be at least " .. min) end
end

local function call_host(...)
  local ok, r = host(...)
  if not ok then fail(r) end
  return r
end

local function make_api(fid, ctx)
  local api, storage = {}, {}
  local function const(v) return function() charge(G.context); return v end end
  api.self, api.caller, api.origin = const(ctx[1]), const(ctx[2]), const(ctx[3])
  api.value, api.height, api.time = const(ctx[4]), const(ctx[5]), const(ctx[6])

  function storage.get(key)
    check_string(key, "storage key", 1, P.max_key)
    charge(G.storage_read)
    local v = call_host(OP_GET, fid, key)
    if v then charge(#v * G.storage_read_byte) end
    return v
  end
  function storage.set(key, value)
    check_string(key, "storage key", 1, P.max_key)
    check_string(value, "storage value", 0, P.max_value)
    charge(G.storage_write + (#key + #value) * G.storage_write_byte)
    call_host(OP_SET, fid, key, value)
  end
  function storage.delete(key)
    check_string(key, "storage key", 1, P.max_key)
    charge(G.storage_delete)
    call_host(OP_DELETE, fid, key)
  end
  api.storage = storage

  function api.balance(address)
    check_address(address, "address")
    charge(G.balance)
    return call_host(OP_BALANCE, fid, address)
  end
  function api.transfer(to, amount)
    check_address(to, "recipient")
    check_int(amount, "amount", 1)
    charge(G.transfer)
    call_host(OP_TRANSFER, fid, to, amount)
  end
  function api.emit(name, data)
    check_string(name, "event name", 1, P.max_name)
    if not utf8len(name) then bad("event name must be UTF-8") end
    local encoded = C.encode(data)
    charge(G.event + (#name + #encoded) * G.event_byte)
    call_host(OP_EMIT, fid, name, encoded)
  end
  function api.call(contract, method, args, value)
    check_address(contract, "contract")
    check_string(method, "method", 1, P.max_name)
    if args ~= nil and type(args) ~= "table" then bad("call arguments must be a list") end
    if value == nil then value = 0 end
    check_int(value, "value", 0)
    local encoded = C.encode(args or {})
    charge(G.call)
    return C.decode(call_host(OP_CALL, fid, contract, method, encoded, value))
  end
  function api.verify_ed25519(pubkey, message, signature)
    check_string(pubkey, "public key", 32, 32)
    check_string(message, "message", 0, MAX_STRING)
    check_string(signature, "signature", 64, 64)
    charge(G.verify + #message // BYTE_UNIT)
    return call_host(OP_VERIFY, fid, pubkey, message, signature)
  end
  function api.hash(data)
    check_string(data, "data", 0, MAX_STRING)
    charge(G.hash + #data // BYTE_UNIT)
    return call_host(OP_HASH, fid, data)
  end
  function api.voucher_message(channel_id, payee, amount, nonce)
    check_string(channel_id, "channel id", 1, P.max_key)
    check_address(payee, "payee")
    check_int(amount, "amount", 0)
    check_int(nonce, "nonce", 0)
    charge(G.hash * 2)
    return call_host(OP_VOUCHER, fid, channel_id, payee, amount, nonce)
  end
  function api.encode(v) return billed(C.encode(v)) end
  function api.decode(s)
    check_string(s, "encoding", 0, MAX_STRING)
    return C.decode(s)
  end
  return api
end

local function one_result(...)
  if select("#", ...) > 1 then bad("a method returns at most one value") end
  return C.encode((...))
end

local function run_frame(fid, code, method, args, deploy, extra, ctx)
  charge(extra)
  local env, globals, builtin = X.new_env(make_api(fid, ctx))
  local chunk = load(code, "=contract", "b", env)
  chunk()
  local f = rawget(globals, method)
  if f == builtin[method] then f = nil end
  if deploy and f == nil then return C.encode(nil) end
  if not deploy and (sub(method, 1, 1) == "_" or method == "init") then f = nil end
  if type(f) ~= "function" then fail("no_method: contract has no method '" .. method .. "'") end
  local argv, n = C.decode_args(args)
  return one_result(f(unpack(argv, 1, n)))
end

local function finish(ok, r)
  if ok then return true, r end
  local fatal, fatal_msg = M.absorb(r)
  if fatal then return false, fatal_msg end
  if type(r) ~= "string" then r = "runtime_error: error object of type " .. type(r) end
  if #r > 512 then r = sub(r, 1, 512) end
  return false, r
end

-- Run `method` of the contract whose bytecode is `code` in a new frame; returns
-- true, encoded result or false, message.
function K.run(fid, code, method, args, deploy, extra, ...)
  return finish(raw_pcall(run_frame, fid, code, method, args, deploy, extra, {...}))
end

-- A top-level call: start the meter, run, stop; returns ok, payload, gas used, fatal code.
local sethook = debug.sethook
function K.top(limit, deadline, ...)
  X.reset()
  M.start(limit, deadline)
  local ok, payload = K.run(...)
  sethook()
  return ok, payload, M.used(), (M.status())
end

K.used, K.status, K.unhook, K.peak, K.names = M.used, M.status, sethook, M.peak, X.names
return K
