-- payment_channel: many unidirectional payment channels in one contract (docs §14.7).
--
-- The buyer opens a channel with a deposit (SSP sent with the call, or iot_coin tokens pulled
-- with transfer_from after an approve), then signs cumulative vouchers off chain:
--   message = chain.voucher_message(channel_id, seller, amount, nonce)   (docs §14.6)
-- which binds the chain, this contract's address and the seller (the payee).
-- The seller redeems the latest voucher as an installment (amount and nonce must both increase),
-- and closes with the final voucher: the difference goes to the seller, the rest back to the
-- buyer. The buyer may ask to close: the seller then has the channel's dispute window to submit
-- its best voucher (close), after which the buyer takes back what was not redeemed (refund);
-- after expiry_height the buyer may refund at once.
-- Storage: "c"..channel_id -> channel record; "n" -> counter for derived channel ids.

local get, set = chain.storage.get, chain.storage.set
local enc, dec, cat = chain.encode, chain.decode, string.concat

local DEFAULT_DISPUTE_MS = 3600000      -- one hour
local MAX_DISPUTE_MS = 7 * 86400000     -- one week

local function need(cond, msg) if not cond then error(msg, 0) end end
local function is_address(a) return type(a) == "string" and #a == 20 end
local function is_int(v) return math.type(v) == "integer" end
local function key(id) return cat("c", id) end

local function load_open(id)
  need(type(id) == "string" and #id >= 1 and #id <= 63, "bad channel id")
  local s = get(key(id))
  need(s ~= nil, "no such channel")
  local ch = dec(s)
  need(ch.open, "channel is closed")
  return ch
end

local function save(id, ch) set(key(id), enc(ch)) end

local function pay(ch, to, amount)
  if amount == 0 then return end
  if ch.token then chain.call(ch.token, "transfer", {to, amount})
  else chain.transfer(to, amount) end
end

local function check_voucher(id, ch, amount, nonce, signature)
  need(is_int(amount) and amount >= 0, "bad voucher amount")
  need(is_int(nonce) and nonce >= 0, "bad voucher nonce")
  need(amount <= ch.deposit, "voucher exceeds deposit")
  need(type(signature) == "string" and #signature == 64, "bad voucher signature")
  local message = chain.voucher_message(id, ch.seller, amount, nonce)
  need(chain.verify_ed25519(ch.pubkey, message, signature), "bad voucher signature")
end

local function new_id()
  local n = 0
  local s = get("n")
  if s then n = dec(s) end
  set("n", enc(n + 1))
  return chain.hash(cat(chain.self(), chain.caller(), string.pack(">i8", n)))
end

function open(channel_id, seller, buyer_pubkey, expiry_height, token, amount, dispute_ms)
  need(is_address(seller), "bad seller address")
  need(type(buyer_pubkey) == "string" and #buyer_pubkey == 32, "bad buyer public key")
  need(is_int(expiry_height) and expiry_height > chain.height(), "expiry must be in the future")
  if dispute_ms == nil then dispute_ms = DEFAULT_DISPUTE_MS end
  need(is_int(dispute_ms) and dispute_ms > 0 and dispute_ms <= MAX_DISPUTE_MS,
       "bad dispute window")
  local id = channel_id or new_id()
  need(type(id) == "string" and #id >= 1 and #id <= 63, "bad channel id")
  need(get(key(id)) == nil, "channel exists")
  local deposit = chain.value()
  if token ~= nil then
    need(is_address(token), "bad token address")
    need(deposit == 0, "send either SSP or tokens, not both")
    need(is_int(amount) and amount > 0, "token deposit must be a positive integer")
    chain.call(token, "transfer_from", {chain.caller(), chain.self(), amount})
    deposit = amount
  end
  need(deposit > 0, "deposit must be positive")
  local ch = {seller = seller, buyer = chain.caller(), pubkey = buyer_pubkey, deposit = deposit,
              paid = 0, nonce = 0, expiry = expiry_height, open = true, token = token,
              dispute = dispute_ms}
  save(id, ch)
  chain.emit("open", {id = id, seller = seller, buyer = ch.buyer, deposit = deposit,
                      expiry = expiry_height, dispute = dispute_ms})
  return id
end

function redeem(channel_id, amount, nonce, signature)
  local ch = load_open(channel_id)
  need(chain.caller() == ch.seller, "not the seller")
  need(is_int(amount) and amount > ch.paid, "voucher amount must increase")
  need(is_int(nonce) and nonce > ch.nonce, "voucher nonce must increase")
  check_voucher(channel_id, ch, amount, nonce, signature)
  local due = amount - ch.paid
  ch.paid, ch.nonce = amount, nonce
  save(channel_id, ch)
  pay(ch, ch.seller, due)
  chain.emit("redeem", {id = channel_id, amount = amount, nonce = nonce, paid = due})
  return due
end

function close(channel_id, amount, nonce, signature)
  local ch = load_open(channel_id)
  need(chain.caller() == ch.seller, "not the seller")
  if amount == nil then
    amount = ch.paid
  else
    need(is_int(amount) and amount >= ch.paid, "voucher amount below what was redeemed")
    need(is_int(nonce) and (nonce > ch.nonce or (amount == ch.paid and nonce == ch.nonce)),
         "voucher nonce must increase")
    check_voucher(channel_id, ch, amount, nonce, signature)
    ch.nonce = nonce
  end
  local due, refund = amount - ch.paid, ch.deposit - amount
  ch.paid, ch.open = amount, false
  save(channel_id, ch)
  pay(ch, ch.seller, due)
  pay(ch, ch.buyer, refund)
  chain.emit("close", {id = channel_id, paid = due, refunded = refund})
  return {paid = due, refunded = refund}
end

function request_close(channel_id)
  local ch = load_open(channel_id)
  need(chain.caller() == ch.buyer, "not the buyer")
  need(ch.closing == nil, "close already requested")
  ch.closing = chain.time() + ch.dispute
  save(channel_id, ch)
  chain.emit("closing", {id = channel_id, at = ch.closing})
  return ch.closing
end

function refund(channel_id)
  local ch = load_open(channel_id)
  need(chain.caller() == ch.buyer, "not the buyer")
  if chain.height() < ch.expiry then
    need(ch.closing ~= nil, "channel has not expired")
    need(chain.time() >= ch.closing, "dispute window is not over")
  end
  local back = ch.deposit - ch.paid
  ch.open = false
  save(channel_id, ch)
  pay(ch, ch.buyer, back)
  chain.emit("refund", {id = channel_id, refunded = back})
  return back
end

function channel(channel_id)
  need(type(channel_id) == "string", "bad channel id")
  local s = get(key(channel_id))
  if s == nil then return nil end
  return dec(s)
end
