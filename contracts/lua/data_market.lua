-- data_market: device data sold under the owner's consent, paid through escrow (docs §14.7, §18)
-- ds: a dataset id, pid: a purchase id (1..32 bytes each)
local get, set, del = chain.storage.get, chain.storage.set, chain.storage.delete
local enc, dec, cat = chain.encode, chain.decode, string.concat

local HOUR, WEEK, MAX_RECORDS = 3600000, 7 * 86400000, 1000000
local TERMS = {description = true, device = true, gateway = true, price = true, unit = true,
               period_ms = true, token = true, delivery_ms = true, schema = true, licence = true}

local function need(cond, msg) if not cond then error(msg, 0) end end
local function is_address(a) return type(a) == "string" and #a == 20 end
local function is_int(v) return math.type(v) == "integer" end
local function is_id(id) return type(id) == "string" and #id >= 1 and #id <= 32 end
local function text_or_empty(v, what)
  need(v == nil or type(v) == "string" and #v <= 256, cat("bad ", what))
  return v or ""
end

local function find(prefix, id, what)
  need(is_id(id), cat("bad ", what, " id"))
  local s = get(cat(prefix, id))
  return s and dec(s)
end

local function load(prefix, id, what)
  local found = find(prefix, id, what)
  need(found ~= nil, cat("no such ", what))
  return found
end

local function save_dataset(id, d) set(cat("d", id), enc(d)) end
local function consent_key(buyer, id) return cat("k", buyer, id) end

local function covers(d, id, buyer)
  if d.all then return true end
  local s = get(consent_key(buyer, id))
  return s ~= nil and dec(s) == d.epoch
end

local function pay(token, to, amount)
  if amount == 0 then return end
  if token then chain.call(token, "transfer", {to, amount})
  else chain.transfer(to, amount) end
end

function settings() return dec(get("cfg")) end

function init(fee_to, fee_permille)
  need(is_address(fee_to), "bad fee account")
  need(is_int(fee_permille) and fee_permille >= 0 and fee_permille <= 500, "bad fee")
  set("cfg", enc({fee_to = fee_to, fee_permille = fee_permille}))
  chain.emit("config", {fee_to = fee_to, fee_permille = fee_permille})
  return true
end

function register(ds, terms)
  need(is_id(ds), "bad dataset id")
  need(get(cat("d", ds)) == nil, "dataset exists")
  need(type(terms) == "table", "terms must be a map")
  for k in pairs(terms) do
    need(type(k) == "string", "terms must be a map")
    need(TERMS[k], "unknown term")
  end
  need(type(terms.device) == "string" and #terms.device == 8, "bad device id")
  need(is_address(terms.gateway), "bad gateway address")
  need(is_int(terms.price) and terms.price > 0, "price must be a positive integer")
  need(terms.unit == "record" or terms.unit == "period", "unit must be record or period")
  local period = 0
  if terms.unit == "period" then
    period = terms.period_ms
    need(is_int(period) and period > 0, "bad period")
  else
    need(terms.period_ms == nil, "a per-record price has no period")
  end
  local delivery = terms.delivery_ms or HOUR
  need(is_int(delivery) and delivery > 0 and delivery <= WEEK, "bad delivery window")
  need(terms.token == nil or is_address(terms.token), "bad token address")
  local d = terms
  for _, k in ipairs({"description", "schema", "licence"}) do d[k] = text_or_empty(d[k], k) end
  d.owner, d.period_ms, d.delivery_ms, d.all = chain.caller(), period, delivery, false
  d.epoch, d.sales, d.height = 0, 0, chain.height()
  save_dataset(ds, d)
  chain.emit("register", {id = ds, owner = d.owner, device = d.device,
    gateway = d.gateway, price = d.price, unit = d.unit})
  return true
end

-- consent (on) or revoke (not on), for every buyer (buyer nil) or one
local function set_consent(ds, buyer, on)
  local d = load("d", ds, "dataset")
  need(chain.caller() == d.owner, "not the dataset's owner")
  if buyer == nil then
    need(not (on and d.all), "consent already given to every buyer")
    d.all = on
    if not on then d.epoch = d.epoch + 1 end   -- every consent given so far ends
    save_dataset(ds, d)
  else
    need(is_address(buyer), "bad buyer address")
    local key = consent_key(buyer, ds)
    if on then
      need(not covers(d, ds, buyer), "consent already given to this buyer")
      set(key, enc(d.epoch))
    else
      local s = get(key)
      need(s ~= nil and dec(s) == d.epoch, "no consent of this buyer to revoke")
      del(key)
    end
  end
  chain.emit(on and "consent" or "revoke", {id = ds, buyer = buyer})
  return true
end

function consent(ds, buyer) return set_consent(ds, buyer, true) end
function revoke(ds, buyer) return set_consent(ds, buyer, false) end

local function cost_of(d, from_ms, to_ms, units)
  if d.unit == "period" then
    need((to_ms - from_ms) % d.period_ms == 0, "the range must be whole periods")
    units = (to_ms - from_ms) // d.period_ms
  end
  need(d.price <= math.maxinteger // units, "price overflow")
  return d.price * units
end

function purchase(pid, ds, box_key, from_ms, to_ms, max_records)
  local d = load("d", ds, "dataset")
  local buyer = chain.caller()
  need(covers(d, ds, buyer), "no consent of the owner for this buyer")
  need(type(box_key) == "string" and #box_key == 32, "bad box key")
  need(is_int(from_ms) and is_int(to_ms) and from_ms >= 0 and from_ms < to_ms, "bad range")
  need(is_int(max_records) and max_records >= 1 and max_records <= MAX_RECORDS,
       "bad record count")
  local cost = cost_of(d, from_ms, to_ms, max_records)
  local id = pid
  need(is_id(id), "bad purchase id")
  need(get(cat("p", id)) == nil, "purchase exists")
  if d.token then
    need(chain.value() == 0, "this dataset is paid in tokens, not SSP")
    chain.call(d.token, "transfer_from", {buyer, chain.self(), cost})
  else
    need(chain.value() == cost, cat("send exactly ", cost))
  end
  local deadline = chain.time() + d.delivery_ms
  local p = {dataset = ds, buyer = buyer, box_key = box_key, from_ms = from_ms,
    to_ms = to_ms, max_records = max_records, amount = cost, token = d.token,
    deadline = deadline, state = "paid", height = chain.height()}
  set(cat("p", id), enc(p))
  d.sales = d.sales + 1
  save_dataset(ds, d)
  p.id = id
  chain.emit("purchase", p)   -- the record and its id
  return id
end

function deliver(pid, hash, records, size)
  local p = load("p", pid, "purchase")
  local d = load("d", p.dataset, "dataset")
  need(chain.caller() == d.gateway, "not the dataset's gateway")
  need(p.state ~= "delivered", "already delivered")
  need(p.state == "paid", "the purchase was refunded")
  need(chain.time() < p.deadline, "delivery deadline passed")
  need(type(hash) == "string" and #hash == 32, "bad delivery hash")
  need(is_int(records) and records >= 0 and records <= p.max_records, "bad record count")
  need(is_int(size) and size > 0, "bad size")
  local due = p.amount
  if d.unit == "record" then due = d.price * records end
  local cfg = settings()
  local fee = due * cfg.fee_permille // 1000
  local r = {owner_paid = due - fee, fee = fee, refunded = p.amount - due}
  p.state, p.hash, p.records, p.size = "delivered", hash, records, size
  p.owner_paid, p.fee, p.refunded = r.owner_paid, fee, r.refunded
  set(cat("p", pid), enc(p))
  pay(p.token, d.owner, r.owner_paid)
  pay(p.token, cfg.fee_to, fee)
  pay(p.token, p.buyer, r.refunded)
  chain.emit("deliver", {id = pid, hash = hash, records = records, size = size,
    owner_paid = r.owner_paid, fee = fee, refunded = r.refunded})
  return r
end

function refund(pid)
  local p = load("p", pid, "purchase")
  need(chain.caller() == p.buyer, "not the buyer")
  need(p.state ~= "delivered", "already delivered")
  need(p.state == "paid", "already refunded")
  need(chain.time() >= p.deadline, "the delivery deadline is not reached")
  p.state, p.refunded = "refunded", p.amount
  set(cat("p", pid), enc(p))
  pay(p.token, p.buyer, p.amount)
  chain.emit("refund", {id = pid, amount = p.amount})
  return p.amount
end

function dataset(ds) return find("d", ds, "dataset") end
function purchase_of(pid) return find("p", pid, "purchase") end

function consented(ds, buyer)
  need(is_address(buyer), "bad buyer address")
  return covers(load("d", ds, "dataset"), ds, buyer)
end


