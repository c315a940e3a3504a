-- Gas meter of one top-level call (trusted host code; docs §14.3).
--
-- A count hook on the main Lua thread bills `step` gas every `step` VM instructions; host
-- functions and the kernel's wrappers bill explicit charges. Nothing else counts: gas never
-- depends on the heap or the clock. At each tick the hook also enforces the Lua frame limit and
-- (every few ticks, when the host armed it) the wall-clock backstop.
-- Fatal states (out_of_gas, stack_overflow, and the backstops memory, timeout, internal) set a
-- flag that every later tick, protected call and host call re-raises: pcall cannot hide them.
local P, now = ...
local sethook, getinfo, gcinfo = debug.sethook, debug.getinfo, collectgarbage
-- Lua's C error messages name a library function by searching every loaded module (a few
-- microseconds per error): nothing is loaded for contracts, so forget them.
do
  local loaded = debug.getregistry()._LOADED
  for k in next, loaded do loaded[k] = nil end
end
local error, type = error, type
local raw_pcall, raw_xpcall, sub = pcall, xpcall, string.sub
local STEP, MAX_FRAMES, CLOCK_EVERY = P.step, P.max_frames, P.clock_every
local BYTE_UNIT, MAX_STRING, CATCH, PCALL = P.byte_unit, P.max_string, P.catch_gas, P.pcall_gas
local PROBE = P.probe
local MEMERR = "not enough memory"
local MSG = {
  out_of_gas = "out_of_gas: gas limit exceeded",
  memory = "memory: the VM's memory backstop fired",
  stack_overflow = "stack_overflow: too many nested Lua calls",
  timeout = "timeout: wall-clock backstop reached",
  internal = "internal: host failure",
}

local M = {}
local used, limit, deadline, ticks, peak = 0, 0, false, 0, 0
local fatal, fatal_msg = nil, nil

local function die(code, msg)
  if not fatal then fatal, fatal_msg = code, msg or MSG[code] end
  error(fatal_msg, 0)
end
M.die = die

local function tick()
  if fatal then error(fatal_msg, 0) end
  if STEP > limit - used then used = limit; die("out_of_gas") end
  used = used + STEP
  if getinfo(MAX_FRAMES, "l") then die("stack_overflow") end
  ticks = ticks + 1
  if PROBE then
    local kb = gcinfo("count")
    if kb > peak then peak = kb end
  end
  if deadline and ticks % CLOCK_EVERY == 0 and now() > deadline then die("timeout") end
end

-- Explicit charge (host calls, bytes, guarded C work): n >= 0; out_of_gas past the limit.
function M.charge(n)
  if fatal then error(fatal_msg, 0) end
  if n > limit - used then used = limit; die("out_of_gas") end
  used = used + n
end

-- deadline_at: a monotonic time, or false for no wall-clock backstop.
function M.start(gas_limit, deadline_at)
  limit, deadline, used, ticks, fatal, fatal_msg = gas_limit, deadline_at, 0, 0, nil, nil
  peak = PROBE and gcinfo("count") or 0
  sethook(tick, "", STEP)
end

function M.stop() sethook() end

function M.used() return used end
function M.status() return fatal, fatal_msg end
function M.peak() return peak end

-- What a protected call must not swallow: fatal state, memory errors, stack overflows.
local function overflowed(e) return type(e) == "string" and sub(e, -14) == "stack overflow" end
local function check_caught(e)
  if fatal then error(fatal_msg, 0) end
  if e == MEMERR then die("memory") end
  if overflowed(e) then die("stack_overflow") end
end
M.check_caught = check_caught

-- A caught error message was built in C (positions, names, constants): bill its bytes and keep
-- it within the string cap.
local function finish(ok, ...)
  if ok then return ok, ... end
  local e = ...
  check_caught(e)
  M.charge(CATCH)
  if type(e) == "string" then
    M.charge(#e // BYTE_UNIT)
    if #e > MAX_STRING then e = sub(e, 1, MAX_STRING) end
  end
  return false, e
end

function M.pcall(f, ...)
  M.charge(PCALL)
  return finish(raw_pcall(f, ...))
end

function M.xpcall(f, handler, ...)
  M.charge(PCALL)
  local function h(e)
    if fatal or e == MEMERR or overflowed(e) then return e end
    return handler(e)
  end
  return finish(raw_xpcall(f, h, ...))
end

-- Record a caught error that must end the call (memory, stack); returns the fatal state.
function M.absorb(e)
  if not fatal then
    if e == MEMERR then fatal, fatal_msg = "memory", MSG.memory
    elseif overflowed(e) then fatal, fatal_msg = "stack_overflow", MSG.stack_overflow end
  end
  return fatal, fatal_msg
end

-- Raise a host error message ("code: text", no position); a fatal state wins over it.
-- The host's own markers (integers, which no contract error can become): 1 = a nested run hit
-- the memory backstop, 2 = host failure.
function M.fail(msg)
  if fatal then error(fatal_msg, 0) end
  if msg == 1 then die("memory") end
  if msg == 2 then die("internal") end
  error(msg, 0)
end

return M
