--- The emulator's configuration: credentials (one app, its owner, users) and
-- the knobs (limits, CRC budget, rate limits, replay rules, latency).
-- Pure Lua: used by the launcher (Lua 5.4 / LuaJIT) and by the nginx workers.
local util = require "account_activity.emulator.util"

local M = {}

local USER_ID_BASE = 1100000000

--- The credentials of generated user number `i` (1-based): deterministic, so
-- a script and the emulator agree without exchanging anything.
function M.user(i)
  local id = string.format("%d", USER_ID_BASE + i)
  return {
    user_id = id,
    screen_name = "emu_user_" .. i,
    access_token = id .. "-" .. util.det_string("access:" .. i, 32),
    access_token_secret = util.det_string("secret:" .. i, 45),
  }
end

local DEFAULTS = {
  app = {
    app_id = "17000001",
    name = "account-activity-emulator",
    consumer_key = "emuConsumerKey0000000001",
    consumer_secret = "emuConsumerSecret000000000000000000000000000001",
    bearer_token = "AAAAAAAAAAAAAAAAAAAAAEmuBearerToken0001%2FEmulator%3DAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    owner = {
      user_id = string.format("%d", USER_ID_BASE),
      screen_name = "emu_owner",
      access_token = string.format("%d", USER_ID_BASE) .. "-emuOwnerAccessToken000000000001",
      access_token_secret = "emuOwnerAccessTokenSecret0000000000000000001",
    },
  },
  users_count = 5,
  account_name = "emulator",
  envs = { "dev", "prod" },
  limits = {
    webhooks = 5,                    -- per app (v1.1 enterprise and v2)
    webhooks_per_env = 1,            -- premium
    subscriptions_per_webhook = 10000,
    subscriptions_per_app = 20000,
    provisioned_count = 10000,
  },
  -- v1.1 webhook objects: "created_timestamp" ("YYYY-MM-DD HH:MM:SS +0000", what X
  -- sends in practice), "created_at" (ISO, what the docs show) or "both".
  webhook_time_field = "created_timestamp",
  crc = { timeout_ms = 3000 },
  oauth = { timestamp_window = 300, check_nonce = true },
  rate_limits = { enforce = false, window = 900, limits = {} },
  replay = { strict = false, max_age_days = 5, v2_max_age_hours = 24, hold_ms = 0 },
  -- X retries a delivery answered non-2xx, not at all, or after more than
  -- 3 s: 3 s, 27 s and 242 s later (X-API.md 7.3); specs compress it.
  delivery = { timeout_ms = 3000, retry_schedule = { 3, 27, 242 } },
  latency_ms = 0,
  log_max = 5000,
  events_max = 50000,
}

function M.defaults()
  return util.deep_copy(DEFAULTS)
end

--- Fill in defaults and expand `users_count` into `users`.
function M.normalize(cfg)
  if cfg ~= nil and type(cfg) ~= "table" then error("config: table expected, got " .. type(cfg), 2) end
  local out = util.merge(DEFAULTS, cfg or {})
  local users, seen = {}, {}
  for _, u in ipairs((cfg and cfg.users) or {}) do
    if type(u) ~= "table" or type(u.user_id) ~= "string" or type(u.access_token) ~= "string"
      or type(u.access_token_secret) ~= "string" then
      error("config.users: each user needs string user_id, access_token and access_token_secret", 2)
    end
    u = util.deep_copy(u)
    u.screen_name = u.screen_name or ("user_" .. u.user_id)
    users[#users + 1] = u
    seen[u.user_id] = true
  end
  local want = tonumber(out.users_count) or 0
  if cfg and cfg.users and cfg.users_count == nil then want = 0 end
  local i = 0
  while #users < want do
    i = i + 1
    local u = M.user(i)
    if not seen[u.user_id] then users[#users + 1] = u end
  end
  out.users = users
  out.users_count = nil
  local owner = out.app.owner
  for _, k in ipairs { "consumer_key", "consumer_secret", "bearer_token" } do
    if type(out.app[k]) ~= "string" then error("config.app." .. k .. " must be a string", 2) end
  end
  if type(owner) ~= "table" or type(owner.user_id) ~= "string" then
    error("config.app.owner must have a user_id", 2)
  end
  return out
end

--- Only the credentials, in the documented --print-config shape.
function M.credentials(cfg)
  local function person(u)
    return { user_id = u.user_id, screen_name = u.screen_name, access_token = u.access_token,
      access_token_secret = u.access_token_secret }
  end
  local users = {}
  for i, u in ipairs(cfg.users) do users[i] = person(u) end
  return {
    app = {
      consumer_key = cfg.app.consumer_key,
      consumer_secret = cfg.app.consumer_secret,
      bearer_token = cfg.app.bearer_token,
      owner = person(cfg.app.owner),
    },
    users = util.array(users),
  }
end

function M.read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, "cannot read config file: " .. tostring(err) end
  local s = f:read("*a")
  f:close()
  local t, derr = util.decode(s)
  if type(t) ~= "table" then return nil, "config file " .. path .. " is not a JSON object: " .. tostring(derr) end
  return t
end

return M
