-- data_market: device owners sell their devices' data with consent (docs §14.7, §18).
--
-- An owner registers a dataset (terms: device, the gateway that delivers, price per record or
-- per period, optional iot_coin, licence...) and records consent (every buyer, or one buyer);
-- consent is revocable: revoking stops new sales, sales already paid are honoured. A buyer
-- purchases a time range into escrow (SSP sent with the call, or iot_coin pulled with
-- transfer_from after an approve). The dataset's gateway delivers off chain and commits the hash
-- of the encrypted payload (deliver); that same call pays the owner what the delivered records
-- cost minus the platform fee (to the fee account fixed at deploy) and returns the rest to the
-- buyer. If nothing is delivered before the purchase's deadline, the buyer alone takes the whole
-- escrow back (refund). A call that fails changes nothing: the escrow stays, and can be claimed
-- or refunded later.
-- Storage: "cfg" -> {fee_to, fee_permille}; "d"..dataset id -> dataset; "p"..purchase id ->
-- purchase; "k"..buyer..dataset id -> consent epoch of that buyer; "n" -> purchase counter.

local get, set, del = chain.storage.get, chain.storage.set, chain.storage.delete
local enc, dec, cat = chain.encode, chain.decode, string.concat

local DEFAULT_DELIVERY_MS = 3600000     -- one hour to deliver
local MAX_DELIVERY_MS = 7 * 86400000    -- one week
local MAX_RECORDS = 1000000             -- records of one purchase
local MAX_TEXT = 256
local TERMS = {description = true, device = true, gateway = true, price = true, unit = true,
               period_ms = true, token = true, delivery_ms = true, schema = true, licence = true}

local function need(cond, msg) if not cond then error(msg, 0) end end
local function is_address(a) return type(a) == "string" and #a == 20 end
local function is_int(v) return math.type(v) == "integer" end
local function is_id(id) return type(id) == "string" and #id >= 1 and #id <= 32 end
local function text_or_empty(v, what)
  if v == nil then return "" end
  need(type(v) == "string" and #v <= MAX_TEXT, cat("bad ", what))
  return v
end

local function config() return dec(get("cfg")) end

local function load_dataset(id)
  need(is_id(id), "bad dataset id")
  local s = get(cat("d", id))
  need(s ~= nil, "no such dataset")
  return dec(s)
end

local function load_purchase(id)
  need(is_id(id), "bad purchase id")
  local s = get(cat("p", id))
  need(s ~= nil, "no such purchase")
  return dec(s)
end

local function save_dataset(id, d) set(cat("d", id), enc(d)) end
local function save_purchase(id, p) set(cat("p", id), enc(p)) end
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

local function only_owner(id)
  local d = load_dataset(id)
  need(chain.caller() == d.owner, "not the dataset's owner")
  return d
end

local function new_id()
  local n = 0
  local s = get("n")
  if s then n = dec(s) end
  set("n", enc(n + 1))
  return string.sub(chain.hash(cat(chain.self(), chain.caller(), string.pack(">i8", n))), 1, 16)
end

function init(fee_to, fee_permille)
  need(is_address(fee_to), "bad fee account")
  need(is_int(fee_permille) and fee_permille >= 0 and fee_permille <= 500, "bad fee")
  set("cfg", enc({fee_to = fee_to, fee_permille = fee_permille}))
  chain.emit("config", {fee_to = fee_to, fee_permille = fee_permille})
  return true
end

function register(dataset_id, terms)
  need(is_id(dataset_id), "bad dataset id")
  need(get(cat("d", dataset_id)) == nil, "dataset exists")
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
  local delivery = terms.delivery_ms or DEFAULT_DELIVERY_MS
  need(is_int(delivery) and delivery > 0 and delivery <= MAX_DELIVERY_MS, "bad delivery window")
  need(terms.token == nil or is_address(terms.token), "bad token address")
  local d = {owner = chain.caller(), device = terms.device, gateway = terms.gateway,
             price = terms.price, unit = terms.unit, period_ms = period,
             delivery_ms = delivery, description = text_or_empty(terms.description, "description"),
             schema = text_or_empty(terms.schema, "schema"),
             licence = text_or_empty(terms.licence, "licence"),
             all = false, epoch = 0, sales = 0, height = chain.height(), token = terms.token}
  save_dataset(dataset_id, d)
  chain.emit("register", {id = dataset_id, owner = d.owner, device = d.device,
                          gateway = d.gateway, price = d.price, unit = d.unit})
  return true
end

function consent(dataset_id, buyer)
  local d = only_owner(dataset_id)
  if buyer == nil then
    need(not d.all, "consent already given to every buyer")
    d.all = true
    save_dataset(dataset_id, d)
    chain.emit("consent", {id = dataset_id})
  else
    need(is_address(buyer), "bad buyer address")
    need(not covers(d, dataset_id, buyer), "consent already given to this buyer")
    set(consent_key(buyer, dataset_id), enc(d.epoch))
    chain.emit("consent", {id = dataset_id, buyer = buyer})
  end
  return true
end

function revoke(dataset_id, buyer)
  local d = only_owner(dataset_id)
  if buyer == nil then
    d.all, d.epoch = false, d.epoch + 1   -- every consent given so far ends
    save_dataset(dataset_id, d)
    chain.emit("revoke", {id = dataset_id})
  else
    need(is_address(buyer), "bad buyer address")
    local key = consent_key(buyer, dataset_id)
    local s = get(key)
    need(s ~= nil and dec(s) == d.epoch, "no consent of this buyer to revoke")
    del(key)
    chain.emit("revoke", {id = dataset_id, buyer = buyer})
  end
  return true
end

local function cost_of(d, from_ms, to_ms, max_records)
  if d.unit == "record" then
    need(d.price <= math.maxinteger // max_records, "price overflow")
    return d.price * max_records
  end
  need((to_ms - from_ms) % d.period_ms == 0, "the range must be whole periods")
  local periods = (to_ms - from_ms) // d.period_ms
  need(d.price <= math.maxinteger // periods, "price overflow")
  return d.price * periods
end

function purchase(purchase_id, dataset_id, box_key, from_ms, to_ms, max_records)
  local d = load_dataset(dataset_id)
  local buyer = chain.caller()
  need(covers(d, dataset_id, buyer), "no consent of the owner for this buyer")
  need(type(box_key) == "string" and #box_key == 32, "bad box key")
  need(is_int(from_ms) and is_int(to_ms) and from_ms >= 0 and from_ms < to_ms, "bad range")
  need(is_int(max_records) and max_records >= 1 and max_records <= MAX_RECORDS,
       "bad record count")
  local cost = cost_of(d, from_ms, to_ms, max_records)
  local id = purchase_id or new_id()
  need(is_id(id), "bad purchase id")
  need(get(cat("p", id)) == nil, "purchase exists")
  if d.token then
    need(chain.value() == 0, "this dataset is paid in tokens, not SSP")
    chain.call(d.token, "transfer_from", {buyer, chain.self(), cost})
  else
    need(chain.value() == cost, cat("send exactly ", cost))
  end
  local deadline = chain.time() + d.delivery_ms
  save_purchase(id, {dataset = dataset_id, buyer = buyer, box_key = box_key, from_ms = from_ms,
                     to_ms = to_ms, max_records = max_records, amount = cost, token = d.token,
                     deadline = deadline, state = "paid", height = chain.height()})
  d.sales = d.sales + 1
  save_dataset(dataset_id, d)
  chain.emit("purchase", {id = id, dataset = dataset_id, buyer = buyer, amount = cost,
                          from_ms = from_ms, to_ms = to_ms, max_records = max_records,
                          deadline = deadline})
  return id
end

function deliver(purchase_id, hash, records, size)
  local p = load_purchase(purchase_id)
  local d = load_dataset(p.dataset)
  need(chain.caller() == d.gateway, "not the dataset's gateway")
  need(p.state ~= "delivered", "already delivered")
  need(p.state == "paid", "the purchase was refunded")
  need(chain.time() < p.deadline, "delivery deadline passed")
  need(type(hash) == "string" and #hash == 32, "bad delivery hash")
  need(is_int(records) and records >= 0 and records <= p.max_records, "bad record count")
  need(is_int(size) and size > 0, "bad size")
  local due = p.amount
  if d.unit == "record" then due = d.price * records end
  local cfg = config()
  local fee = due * cfg.fee_permille // 1000
  local back = p.amount - due
  p.state, p.hash, p.records, p.size = "delivered", hash, records, size
  p.owner_paid, p.fee, p.refunded = due - fee, fee, back
  save_purchase(purchase_id, p)
  pay(p.token, d.owner, due - fee)
  pay(p.token, cfg.fee_to, fee)
  pay(p.token, p.buyer, back)
  chain.emit("deliver", {id = purchase_id, hash = hash, records = records, size = size,
                         owner_paid = due - fee, fee = fee, refunded = back})
  return {owner_paid = due - fee, fee = fee, refunded = back}
end

function refund(purchase_id)
  local p = load_purchase(purchase_id)
  need(chain.caller() == p.buyer, "not the buyer")
  need(p.state ~= "delivered", "already delivered")
  need(p.state == "paid", "already refunded")
  need(chain.time() >= p.deadline, "the delivery deadline is not reached")
  p.state, p.refunded = "refunded", p.amount
  save_purchase(purchase_id, p)
  pay(p.token, p.buyer, p.amount)
  chain.emit("refund", {id = purchase_id, amount = p.amount})
  return p.amount
end

function dataset(dataset_id)
  need(is_id(dataset_id), "bad dataset id")
  local s = get(cat("d", dataset_id))
  if s == nil then return nil end
  return dec(s)
end

function purchase_of(purchase_id)
  need(is_id(purchase_id), "bad purchase id")
  local s = get(cat("p", purchase_id))
  if s == nil then return nil end
  return dec(s)
end

function consented(dataset_id, buyer)
  need(is_address(buyer), "bad buyer address")
  return covers(load_dataset(dataset_id), dataset_id, buyer)
end

function settings() return config() end
