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
    -- OAuth 2.0 (user context): X's client ids are 34 base64 characters
    client_id = "ZW11Q2xpZW50SWQwMDAwMDAwMDAwMDE6MTpjaQ",
    client_secret = "emuClientSecret0000000000000000000000000000000000001",
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
  -- OAuth 2.0 user context (oauth2.lua). redirect_uris: the app's callback
  -- URLs; loopback_redirects: also any http://127.0.0.1:*/localhost:* URL.
  -- require_client_secret: refuse public clients (client_id without Basic).
  oauth2 = { access_ttl = 7200, code_ttl = 30, redirect_uris = {}, loopback_redirects = true,
    require_client_secret = false, scopes = nil },
  rate_limits = { enforce = false, window = 900, limits = {} },
  replay = { strict = false, max_age_days = 5, v2_max_age_hours = 24, hold_ms = 0 },
  -- X retries a delivery answered non-2xx, not at all, or after more than
  -- 3 s: 3 s, 27 s and 242 s later (X-API.md 7.3); specs compress it.
  delivery = { timeout_ms = 3000, retry_schedule = { 3, 27, 242 } },
  latency_ms = 0,
  log_max = 5000,
  events_max = 50000,
}

-- X's OAuth 2.0 scopes (docs.x.com, "OAuth 2.0 Authorization Code Flow with PKCE").
M.OAUTH2_SCOPES = {
  "tweet.read", "tweet.write", "tweet.moderate.write", "users.email", "users.read", "follows.read",
  "follows.write", "offline.access", "space.read", "mute.read", "mute.write", "like.read", "like.write",
  "list.read", "list.write", "block.read", "block.write", "bookmark.read", "bookmark.write",
  "dm.read", "dm.write", "media.write", "broadcast.read",
}

--- The oauth2 knobs of a config, defaults filled in.
function M.oauth2_knobs(cfg)
  local k = util.merge(DEFAULTS.oauth2, type(cfg.oauth2) == "table" and cfg.oauth2 or {})
  if type(k.scopes) ~= "table" or #k.scopes == 0 then k.scopes = M.OAUTH2_SCOPES end
  return k
end

--- A user's seed OAuth 2.0 tokens: derived from the user id, so a printed
-- config and the running emulator agree without exchanging anything.
function M.oauth2_seed(u)
  return { access_token = util.det_string("oauth2-access:" .. u.user_id, 64),
    refresh_token = util.det_string("oauth2-refresh:" .. u.user_id, 64) }
end

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
  for _, k in ipairs { "consumer_key", "consumer_secret", "bearer_token", "client_id", "client_secret" } do
    if type(out.app[k]) ~= "string" then error("config.app." .. k .. " must be a string", 2) end
  end
  if type(owner) ~= "table" or type(owner.user_id) ~= "string" then
    error("config.app.owner must have a user_id", 2)
  end
  return out
end

--- Only the credentials, in the documented --print-config shape; `base_url`
-- when known (the emulator's URL).
function M.credentials(cfg, base_url)
  local k = M.oauth2_knobs(cfg)
  local expires_at = math.floor(os.time() + (tonumber(k.access_ttl) or 7200))
  local function person(u)
    local seed = M.oauth2_seed(u)
    return { user_id = u.user_id, screen_name = u.screen_name, access_token = u.access_token,
      access_token_secret = u.access_token_secret,
      oauth2 = { access_token = seed.access_token, refresh_token = seed.refresh_token, expires_at = expires_at,
        scope = util.deep_copy(k.scopes), token_type = "bearer", user_id = u.user_id } }
  end
  local users = {}
  for i, u in ipairs(cfg.users) do users[i] = person(u) end
  return {
    base_url = base_url,
    app = {
      consumer_key = cfg.app.consumer_key,
      consumer_secret = cfg.app.consumer_secret,
      bearer_token = cfg.app.bearer_token,
      client_id = cfg.app.client_id,
      client_secret = cfg.app.client_secret,
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
