--- x-rate-limit-* headers on every response and, when enforced, 429 code 88.
-- Windows are fixed (15 min by default) and kept per endpoint and per pool
-- (the calling user for OAuth 1.0a, the app for Bearer), as X does.
local state = require "account_activity.emulator.state"

local M = {}

-- X-API.md 7.1
M.DEFAULTS = {
  ["v1.register"] = 15, ["v1.list"] = 15, ["v1.validate"] = 15, ["v1.delete_webhook"] = 15,
  ["v1.subscribe"] = 500, ["v1.check"] = 500, ["v1.unsubscribe_self"] = 500, ["v1.unsubscribe"] = 500,
  ["v1.list_subscriptions"] = 50, ["v1.count"] = 15, ["v1.replay"] = 5,
  ["premium.register"] = 15, ["premium.list_all"] = 15, ["premium.list"] = 15, ["premium.validate"] = 15,
  ["premium.delete_webhook"] = 15, ["premium.subscribe"] = 500, ["premium.check"] = 500,
  ["premium.unsubscribe_self"] = 500, ["premium.unsubscribe"] = 500, ["premium.list_subscriptions"] = 50,
  ["premium.count"] = 15,
  ["v2.create"] = 450, ["v2.list"] = 450, ["v2.validate"] = 450, ["v2.delete"] = 450, ["v2.replay"] = 100,
  ["v2.subscribe"] = 500, ["v2.check"] = 500, ["v2.list_subscriptions"] = 50, ["v2.unsubscribe"] = 500,
  ["v2.count"] = 15, ["v2.replay_aaa"] = 5,
  ["oauth2.token"] = 450, ["oauth2.invalidate"] = 450,
}
for name, n in pairs(require("account_activity.emulator.xaa").RATE_LIMITS) do M.DEFAULTS[name] = n end

local function limit_of(cfg, name)
  local rl = cfg.rate_limits or {}
  local o = rl.limits and rl.limits[name]
  return tonumber(o) or M.DEFAULTS[name] or tonumber(rl.default) or 900
end

--- Count one request (peek = true: do not count). Returns headers, limited.
function M.hit(cfg, name, pool, peek)
  local rl = cfg.rate_limits or {}
  local window = tonumber(rl.window) or 900
  local now = ngx.time()
  local start = now - now % window
  local limit = limit_of(cfg, name or "other")
  local key = "rl:" .. (name or "other") .. ":" .. (pool or "anon") .. ":" .. start
  local used
  if peek then
    used = state.dict():get(key) or 0
  else
    used = state.dict():incr(key, 1, 0, window + 5)
  end
  local headers = {
    ["x-rate-limit-limit"] = tostring(limit),
    ["x-rate-limit-remaining"] = tostring(math.max(0, limit - used)),
    ["x-rate-limit-reset"] = tostring(start + window),
  }
  return headers, (rl.enforce == true) and used > limit
end

return M
