-- iot_coin: the standard SmartShare token (docs §14.7). Each deploy issues one token.
--
-- Storage: "meta" -> {name, symbol, decimals, issuer, mintable}; "supply" -> integer;
-- "b"..address -> balance; "a"..owner..spender -> allowance (zero entries are deleted).
-- Amounts are integers in the token's base units. Errors are plain messages, e.g.
-- "insufficient balance". Events: issue, transfer, approval, mint, burn.

local get, set, del = chain.storage.get, chain.storage.set, chain.storage.delete
local enc, dec, cat = chain.encode, chain.decode, string.concat

local function check_address(a)
  if type(a) ~= "string" or #a ~= 20 then error("bad address", 0) end
  return a
end

local function check_amount(v, allow_zero)
  if math.type(v) ~= "integer" or v < 0 or (v == 0 and not allow_zero) then
    error("amount must be a positive integer", 0)
  end
  return v
end

local function get_int(key)
  local s = get(key)
  if s == nil then return 0 end
  return dec(s)
end

local function put_int(key, v)
  if v == 0 then del(key) else set(key, enc(v)) end
end

local function meta() return dec(get("meta")) end
local function balance_key(a) return cat("b", a) end
local function allowance_key(owner, spender) return cat("a", owner, spender) end

local function move(from, to, amount)
  local fb = get_int(balance_key(from))
  if fb < amount then error("insufficient balance", 0) end
  put_int(balance_key(from), fb - amount)
  put_int(balance_key(to), get_int(balance_key(to)) + amount)
  chain.emit("transfer", {from = from, to = to, amount = amount})
end

local function only_issuer_of_mintable()
  local m = meta()
  if chain.caller() ~= m.issuer then error("not the issuer", 0) end
  if not m.mintable then error("token is not mintable", 0) end
  return m
end

function init(name, symbol, decimals, supply, issuer, mintable)
  if type(name) ~= "string" or #name < 1 or #name > 32 then error("bad token name", 0) end
  if type(symbol) ~= "string" or #symbol < 1 or #symbol > 12 then error("bad symbol", 0) end
  if math.type(decimals) ~= "integer" or decimals < 0 or decimals > 18 then
    error("bad decimals", 0)
  end
  check_amount(supply, true)
  issuer = check_address(issuer or chain.caller())
  if mintable ~= nil and type(mintable) ~= "boolean" then error("mintable must be a boolean", 0) end
  set("meta", enc({name = name, symbol = symbol, decimals = decimals, issuer = issuer,
                   mintable = mintable or false}))
  put_int("supply", supply)
  put_int(balance_key(issuer), supply)
  chain.emit("issue", {name = name, symbol = symbol, issuer = issuer, supply = supply})
  return true
end

function info()
  local m = meta()
  m.supply = get_int("supply")
  return m
end

function name() return meta().name end
function symbol() return meta().symbol end
function decimals() return meta().decimals end
function issuer() return meta().issuer end
function total_supply() return get_int("supply") end
function balance_of(address) return get_int(balance_key(check_address(address))) end

function allowance(owner, spender)
  return get_int(allowance_key(check_address(owner), check_address(spender)))
end

function transfer(to, amount)
  move(chain.caller(), check_address(to), check_amount(amount))
  return true
end

function approve(spender, amount)
  check_address(spender)
  check_amount(amount, true)
  put_int(allowance_key(chain.caller(), spender), amount)
  chain.emit("approval", {owner = chain.caller(), spender = spender, amount = amount})
  return true
end

function transfer_from(from, to, amount)
  check_address(from)
  check_address(to)
  check_amount(amount)
  local key = allowance_key(from, chain.caller())
  local allowed = get_int(key)
  if allowed < amount then error("insufficient allowance", 0) end
  put_int(key, allowed - amount)
  move(from, to, amount)
  return true
end

function mint(to, amount)
  only_issuer_of_mintable()
  check_address(to)
  check_amount(amount)
  local supply = get_int("supply")
  if supply > math.maxinteger - amount then error("supply overflow", 0) end
  put_int("supply", supply + amount)
  put_int(balance_key(to), get_int(balance_key(to)) + amount)
  chain.emit("mint", {to = to, amount = amount})
  return true
end

function burn(amount)
  local m = only_issuer_of_mintable()
  check_amount(amount)
  local b = get_int(balance_key(m.issuer))
  if b < amount then error("insufficient balance", 0) end
  put_int(balance_key(m.issuer), b - amount)
  put_int("supply", get_int("supply") - amount)
  chain.emit("burn", {from = m.issuer, amount = amount})
  return true
end
