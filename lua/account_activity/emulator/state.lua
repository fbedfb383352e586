--- Emulator state in a lua_shared_dict (JSON-encoded values), so every
-- nginx worker sees the same webhooks, subscriptions, events and log.
-- Uniqueness and limits use the dict's atomic add/incr rather than a lock;
-- the few read-modify-write documents (faults, config) take a short lock.
local util = require "account_activity.emulator.util"
local config_mod = require "account_activity.emulator.config"

local M = {}

M.DICT = "aa_emulator"

local function dict()
  return ngx.shared[M.DICT]
end
M.dict = dict

function M.get_json(key)
  local s = dict():get(key)
  if s == nil then return nil end
  return util.decode(s)
end

function M.set_json(key, v)
  local ok, err = dict():set(key, util.encode(v))
  if not ok then ngx.log(ngx.ERR, "emulator state: cannot store ", key, ": ", err) end
  M.touch()
  return ok, err
end

-- Marks the state as changed, for the state_dir snapshotter.
function M.touch()
  dict():set("dirty", true)
end

function M.incr(key, by)
  return dict():incr(key, by or 1, 0)
end

function M.with_lock(name, fn, ...)
  local d, key = dict(), "lock:" .. name
  for _ = 1, 2000 do
    if d:add(key, true, 5) then
      local ok, a, b = pcall(fn, ...)
      d:delete(key)
      if not ok then error(a, 0) end
      return a, b
    end
    ngx.sleep(0.001)
  end
  error("emulator: lock " .. name .. " is stuck")
end

-- ---------------------------------------------------------------- config

local cache = { ver = nil }

local function index(cfg)
  local by_token, by_id = {}, {}
  local owner = cfg.app.owner
  owner.is_owner = true
  by_token[owner.access_token] = owner
  by_id[owner.user_id] = owner
  for _, u in ipairs(cfg.users) do
    by_token[u.access_token] = u
    by_id[u.user_id] = u
  end
  local envs = {}
  for _, e in ipairs(cfg.envs or {}) do envs[e] = true end
  -- every credential value, so the request log can refuse to show one
  local secrets = { [cfg.app.consumer_key] = true, [cfg.app.consumer_secret] = true,
    [cfg.app.bearer_token] = true, [cfg.app.client_secret] = true }
  -- the seed OAuth 2.0 tokens of every user (config.oauth2_seed)
  local o2_access, o2_refresh = {}, {}
  for _, u in pairs(by_id) do
    secrets[u.access_token] = true
    secrets[u.access_token_secret] = true
    local seed = config_mod.oauth2_seed(u)
    o2_access[seed.access_token], o2_refresh[seed.refresh_token] = u, u
    secrets[seed.access_token], secrets[seed.refresh_token] = true, true
  end
  cfg._by_token, cfg._by_id, cfg._envs, cfg._secrets = by_token, by_id, envs, secrets
  cfg._o2_access, cfg._o2_refresh = o2_access, o2_refresh
  return cfg
end

--- The config in force (decoded once per change and per worker).
function M.config()
  local d = dict()
  local ver = d:get("config_ver")
  if cache.cfg and cache.ver == ver then return cache.cfg end
  local cfg = M.get_json("config")
  if not cfg then cfg = config_mod.normalize(nil) end
  cache.cfg, cache.ver = index(cfg), ver
  return cache.cfg
end

function M.set_config(cfg)
  local d = dict()
  cfg = util.deep_copy(cfg)
  cfg._by_token, cfg._by_id, cfg._envs, cfg._secrets = nil, nil, nil, nil
  cfg._o2_access, cfg._o2_refresh = nil, nil
  cfg.app.owner.is_owner = nil
  d:set("config", util.encode(cfg))
  d:incr("config_ver", 1, 0)
  M.touch()
  cache.cfg = nil
end

--- The bearer token currently valid (nil after invalidate_token until the
-- next POST /oauth2/token).
function M.bearer()
  local b = dict():get("bearer")
  if b == nil then return M.config().app.bearer_token end
  if b == "" then return nil end
  return b
end

function M.set_bearer(token)
  dict():set("bearer", token or "")
  M.touch()
end

-- ---------------------------------------------------------------- ids

local function now() return ngx.now() end
M.now = now

local TWEPOCH_MS = 1288834974657
local LOW = 4194304 -- 2^22: worker and sequence bits below the milliseconds

--- An id shaped like X's snowflakes: (ms since X's epoch) << 22 | a sequence
-- shared by the workers, in decimal (19 digits from 2017 on, no leading 0,
-- ordered by time). Computed in two parts below 2^53, so it is exact in
-- LuaJIT's doubles too.
function M.snowflake(t)
  local ms = math.floor((t or now()) * 1000) - TWEPOCH_MS
  local low = (M.incr("seq:snowflake") or 0) % LOW
  local hi_ms, lo_ms = math.floor(ms / 1e7), ms % 1e7
  local hi = hi_ms * LOW
  local lo = lo_ms * LOW + low
  hi = hi + math.floor(lo / 1e7)
  lo = lo % 1e7
  return string.format("%.0f%07d", hi, lo)
end

--- A new id (a snowflake); `kind` is kept for callers that name what it is for.
function M.new_id(kind) -- luacheck: ignore 212
  return M.snowflake()
end

-- ---------------------------------------------------------------- webhooks

function M.webhook(id)
  if type(id) ~= "string" then return nil end
  return M.get_json("wh:" .. id)
end

function M.save_webhook(wh)
  return M.set_json("wh:" .. wh.id, wh)
end

local function keys_with_prefix(prefix)
  local out = {}
  for _, k in ipairs(dict():get_keys(0)) do
    if k:sub(1, #prefix) == prefix then out[#out + 1] = k end
  end
  return out
end
M.keys_with_prefix = keys_with_prefix

--- All webhooks (optionally of one premium env: env = name; env = false:
-- only those without an env), oldest first.
function M.webhooks(env)
  local out = {}
  for _, k in ipairs(keys_with_prefix("wh:")) do
    local wh = M.get_json(k)
    if wh and (env == nil or (env == false and not wh.env) or wh.env == env) then out[#out + 1] = wh end
  end
  table.sort(out, function(a, b) return a.seq < b.seq end)
  return out
end

--- Create a webhook record. Returns wh | nil, "duplicate" | "limit".
function M.create_webhook(url, env, limits)
  local d = dict()
  if not d:add("whurl:" .. url, true) then return nil, "duplicate" end
  local cnt_key = env and ("cnt:env:" .. env) or "cnt:wh"
  local limit = env and limits.webhooks_per_env or limits.webhooks
  local n = d:incr(cnt_key, 1, 0)
  if n > limit then
    d:incr(cnt_key, -1)
    d:delete("whurl:" .. url)
    return nil, "limit"
  end
  local wh = { id = M.new_id("wh"), url = url, valid = false, created = now(), env = env,
    seq = M.incr("seq:whseq") }
  M.save_webhook(wh)
  return wh
end

function M.delete_webhook(wh)
  local d = dict()
  d:delete("wh:" .. wh.id)
  d:delete("whurl:" .. wh.url)
  d:incr(wh.env and ("cnt:env:" .. wh.env) or "cnt:wh", -1, 0)
  for _, k in ipairs(keys_with_prefix("sub:" .. wh.id .. ":")) do
    d:delete(k)
    d:incr("cnt:subs", -1, 0)
  end
  d:delete("cnt:sub:" .. wh.id)
  d:delete("replay:" .. wh.id)
  M.touch()
end

-- ---------------------------------------------------------------- subscriptions

function M.subscribed(wh_id, user_id)
  return dict():get("sub:" .. wh_id .. ":" .. user_id) ~= nil
end

--- Returns true | nil, "exists" | "limit".
function M.subscribe(wh_id, user_id, limits)
  local d = dict()
  local key = "sub:" .. wh_id .. ":" .. user_id
  local rec = util.encode { user_id = user_id, at = now(), seq = M.incr("seq:sub") }
  if not d:add(key, rec) then return nil, "exists" end
  local n = d:incr("cnt:sub:" .. wh_id, 1, 0)
  local total = d:incr("cnt:subs", 1, 0)
  if n > limits.subscriptions_per_webhook or total > limits.subscriptions_per_app then
    d:delete(key)
    d:incr("cnt:sub:" .. wh_id, -1, 0)
    d:incr("cnt:subs", -1, 0)
    return nil, "limit"
  end
  M.touch()
  return true
end

function M.unsubscribe(wh_id, user_id)
  local d = dict()
  local key = "sub:" .. wh_id .. ":" .. user_id
  if d:get(key) == nil then return nil, "not_found" end
  d:delete(key)
  d:incr("cnt:sub:" .. wh_id, -1, 0)
  d:incr("cnt:subs", -1, 0)
  M.touch()
  return true
end

--- Subscribed user ids of a webhook, in subscription order.
function M.subscriptions(wh_id)
  local recs = {}
  for _, k in ipairs(keys_with_prefix("sub:" .. wh_id .. ":")) do
    local r = M.get_json(k)
    if r then recs[#recs + 1] = r end
  end
  table.sort(recs, function(a, b) return a.seq < b.seq end)
  local ids = {}
  for i, r in ipairs(recs) do ids[i] = r.user_id end
  return ids
end

function M.subscription_count()
  return dict():get("cnt:subs") or 0
end

-- ---------------------------------------------------------------- events (kept for replay)

function M.record_event(ev)
  local cfg = M.config()
  local n = M.incr("seq:ev")
  ev.n = n
  dict():set("ev:" .. n, util.encode(ev))
  local old = n - (cfg.events_max or 50000)
  if old > 0 then dict():delete("ev:" .. old) end
  return n
end

--- Events recorded for a webhook with from <= t < to, oldest first.
function M.events(wh_id, from, to)
  local d = dict()
  local last = d:get("seq:ev") or 0
  local cfg = M.config()
  local first = math.max(1, last - (cfg.events_max or 50000) + 1)
  local out = {}
  for n = first, last do
    local s = d:get("ev:" .. n)
    if s then
      local ev = util.decode(s)
      if ev and ev.webhook_id == wh_id and ev.t >= from and ev.t < to then out[#out + 1] = ev end
    end
  end
  return out
end

-- ---------------------------------------------------------------- request log

function M.log(entry)
  local cfg = M.config()
  local n = M.incr("seq:log")
  entry.n = n
  dict():set("log:" .. n, util.encode(entry))
  local old = n - (cfg.log_max or 5000)
  if old > 0 then dict():delete("log:" .. old) end
end

function M.log_entries(since)
  local d = dict()
  local last = d:get("seq:log") or 0
  local first = math.max((since or 0) + 1, last - (M.config().log_max or 5000) + 1, 1)
  local out = {}
  for n = first, last do
    local e = M.get_json("log:" .. n)
    if e then out[#out + 1] = e end
  end
  return out
end

--- The time of the next generated event (seconds, millisecond steps): now,
-- but never the same millisecond twice, across workers. Two real actions
-- never share a created_timestamp, and a receiver that dedupes on content
-- must not see two generated events as one.
function M.next_event_time()
  ngx.update_time()
  local now_ms = math.floor(ngx.now() * 1000)
  local ms
  M.with_lock("event_time", function()
    local d = dict()
    ms = math.max(now_ms, (d:get("event_ms") or 0) + 1)
    d:set("event_ms", ms)
  end)
  return ms / 1000
end

-- ---------------------------------------------------------------- reset / persistence

local VOLATILE = { "lock:", "nonce:", "rl:" }

--- Forget every webhook, subscription, event, fault and log entry; keep the
-- config and the OAuth 1.0a nonces seen (each with the expiry it had): a
-- captured request must not replay past authentication after a reset.
function M.reset()
  local d = dict()
  local cfg = d:get("config")
  local ver = d:get("config_ver")
  -- versions only ever grow: a worker that cached version n must never see
  -- a new list under the same number after a reset
  local faults_ver = d:get("faults_ver")
  local nonces = {}
  for _, k in ipairs(d:get_keys(0)) do
    if k:sub(1, 6) == "nonce:" then
      local ttl = d:ttl(k)
      if ttl then nonces[k] = ttl end -- 0: never expires
    end
  end
  d:flush_all()
  d:flush_expired()
  for k, ttl in pairs(nonces) do d:set(k, true, ttl) end
  if cfg then d:set("config", cfg) end
  d:set("config_ver", (ver or 0) + 1)
  d:set("faults_ver", (faults_ver or 0) + 1)
  cache.cfg = nil
  M.touch()
end

local function persistent(k)
  for _, p in ipairs(VOLATILE) do
    if k:sub(1, #p) == p then return false end
  end
  return k ~= "dirty"
end

function M.snapshot()
  local d, out = dict(), {}
  for _, k in ipairs(d:get_keys(0)) do
    if persistent(k) then
      local v = d:get(k)
      if v ~= nil then out[k] = v end
    end
  end
  return out
end

function M.restore(snap)
  local d = dict()
  for k, v in pairs(snap or {}) do
    if persistent(k) then d:set(k, v) end
  end
end

return M
