-- vesting: holds one genesis pool's grants until they vest (docs §8, §14.7).
--
-- Genesis creates it, funds it with the pool and writes its storage; nobody deploys it.
--   "s"            -> {cliff = height, linear = blocks}
--   "g"..address   -> {total = base units, released = base units}
-- A grant vests nothing before height `cliff`; then all of it (linear = 0), or
-- floor(total * (height - cliff) / linear) until height cliff + linear. Its holder takes what
-- has vested with release(); nothing else moves the contract's balance.

local get, set = chain.storage.get, chain.storage.set
local enc, dec, cat = chain.encode, chain.decode, string.concat

local function need(cond, msg) if not cond then error(msg, 0) end end

local function vested(g, s, height)
  if height < s.cliff then return 0 end
  local elapsed = height - s.cliff
  if elapsed >= s.linear then return g.total end
  -- total * elapsed / linear without overflow: linear < 2^31 (genesis rule)
  local q, r = g.total // s.linear, g.total % s.linear
  return q * elapsed + r * elapsed // s.linear
end

local function load(address)
  local raw = get(cat("g", address))
  need(raw ~= nil, "no grant for this address")
  return dec(raw)
end

function release()
  local s, g = dec(get("s")), load(chain.caller())
  local due = vested(g, s, chain.height()) - g.released
  need(chain.height() >= s.cliff, string.format("locked until height %d", s.cliff))
  need(due > 0, "nothing more has vested yet")
  g.released = g.released + due
  set(cat("g", chain.caller()), enc(g))
  chain.transfer(chain.caller(), due)
  chain.emit("release", {to = chain.caller(), amount = due})
  return due
end

function grant(address)
  need(type(address) == "string" and #address == 20, "bad address")
  local s, g = dec(get("s")), load(address)
  return {total = g.total, released = g.released, vested = vested(g, s, chain.height()),
          cliff = s.cliff, linear = s.linear}
end
