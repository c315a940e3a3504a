-- Gas meter of one top-level call (trusted host code; docs §14.3).
--
-- A count hook on the main Lua thread bills `step` gas every `step` VM instructions; host
-- functions bill explicit charges. Nothing else counts: gas never depends on the heap, whose
-- exact size varies with Lua's per-runtime hash seed. At each tick the hook also enforces the
-- Lua frame limit and (every few ticks) the wall-clock backstop.
-- Fatal errors (out_of_gas, out_of_memory, stack_overflow, timeout, internal) set a flag that
-- every later tick, protected call and host call re-raises: pcall cannot hide them.
local P, now = ...
local sethook, getinfo = debug.sethook, debug.getinfo
local error, type = error, type
local raw_pcall, raw_xpcall, sub = pcall, xpcall, string.sub
local STEP, MAX_FRAMES, CLOCK_EVERY = P.step, P.max_frames, P.clock_every
local MEMERR = "not enough memory"
local MSG = {
  out_of_gas = "out_of_gas: gas limit exceeded",
  out_of_memory = "out_of_memory: memory limit reached",
  stack_overflow = "stack_overflow: too many nested Lua calls",
  timeout = "timeout: wall-clock limit reached",
  internal = "internal: host failure",
}

local M = {}
local used, limit, deadline, ticks = 0, 0, 0, 0
local fatal, fatal_msg = nil, nil

local function die(code, msg)
  if not fatal then fatal, fatal_msg = code, msg or MSG[code] end
  error(fatal_msg, 0)
end
M.die = die

local function tick()
  if fatal then error(fatal_msg, 0) end
  used = used + STEP
  if used > limit then die("out_of_gas") end
  if getinfo(MAX_FRAMES, "l") then die("stack_overflow") end
  ticks = ticks + 1
  if ticks % CLOCK_EVERY == 0 and now() > deadline then die("timeout") end
end

-- Explicit charge (host calls, string bytes, guarded C work); out_of_gas past the limit.
function M.charge(n)
  if fatal then error(fatal_msg, 0) end
  used = used + n
  if used > limit then die("out_of_gas") end
end

function M.start(gas_limit, deadline_at)
  limit, deadline, used, ticks, fatal, fatal_msg = gas_limit, deadline_at, 0, 0, nil, nil
  sethook(tick, "", STEP)
end

function M.stop() sethook() end
function M.used() return used end
function M.status() return fatal, fatal_msg end

-- What a protected call must not swallow: fatal state, memory errors, stack overflows.
local function overflowed(e) return type(e) == "string" and sub(e, -14) == "stack overflow" end
local function check_caught(e)
  if fatal then error(fatal_msg, 0) end
  if e == MEMERR then die("out_of_memory") end
  if overflowed(e) then die("stack_overflow") end
end
M.check_caught = check_caught

local function finish(ok, ...)
  if not ok then check_caught((...)) end
  return ok, ...
end

function M.pcall(f, ...) return finish(raw_pcall(f, ...)) end

function M.xpcall(f, handler, ...)
  local function h(e)
    if fatal or e == MEMERR or overflowed(e) then return e end
    return handler(e)
  end
  return finish(raw_xpcall(f, h, ...))
end

-- Record a caught error that must end the call (memory, stack); returns the fatal state.
function M.absorb(e)
  if not fatal then
    if e == MEMERR then fatal, fatal_msg = "out_of_memory", MSG.out_of_memory
    elseif overflowed(e) then fatal, fatal_msg = "stack_overflow", MSG.stack_overflow end
  end
  return fatal, fatal_msg
end

-- Raise a host error message ("code: text", no position); a fatal state wins over it.
-- The host's own markers (integers, which no contract error can become): 1 = a nested run hit
-- the memory cap, 2 = host failure.
function M.fail(msg)
  if fatal then error(fatal_msg, 0) end
  if msg == 1 then die("out_of_memory") end
  if msg == 2 then die("internal") end
  error(msg, 0)
end

return M
