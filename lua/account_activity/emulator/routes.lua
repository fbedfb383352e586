--- The route table: method, path pattern, name (also the rate-limit bucket),
-- flavour (error shapes), accepted auth kinds, handler.
-- Auth kinds: "user_app" = OAuth 1.0a with the app owner's token, "user" =
-- OAuth 1.0a with any known user's token, "bearer", "basic", "oauth2" = an
-- OAuth 2.0 user token (X's OAuth2UserToken, with the scopes of SCOPES[name]),
-- "any" = no check here (the handler authenticates the client itself).
local v1 = require "account_activity.emulator.api_v1"
local v2 = require "account_activity.emulator.api_v2"
local oauth2 = require "account_activity.emulator.api_oauth2"
local xaa = require "account_activity.emulator.xaa"
local oauth2_user = require "account_activity.emulator.oauth2"

local P = v1.premium
local AA = "^/1%.1/account_activity"
local ALL = AA .. "/all"
local V2 = "^/2/account_activity"
local SEG = "([^/]+)"

local U_APP, USER, B = { "user_app" }, { "user" }, { "bearer" }
local O2_OR_USER = { "oauth2", "user" }
local B_OR_U_APP = { "bearer", "user_app" }

local R = {
  -- v1.1 enterprise
  { "POST", AA .. "/webhooks%.json$", "v1.register", "v1", U_APP, v1.register },
  { "GET", AA .. "/webhooks%.json$", "v1.list", "v1", B, v1.list },
  { "PUT", AA .. "/webhooks/" .. SEG .. "%.json$", "v1.validate", "v1", B_OR_U_APP, v1.validate },
  { "DELETE", AA .. "/webhooks/" .. SEG .. "%.json$", "v1.delete_webhook", "v1", U_APP, v1.delete_webhook },
  { "POST", AA .. "/webhooks/" .. SEG .. "/subscriptions/all%.json$", "v1.subscribe", "v1", USER, v1.subscribe },
  { "GET", AA .. "/webhooks/" .. SEG .. "/subscriptions/all%.json$", "v1.check", "v1", USER, v1.check },
  { "DELETE", AA .. "/webhooks/" .. SEG .. "/subscriptions/all%.json$", "v1.unsubscribe_self", "v1", USER, v1.unsubscribe_self },
  { "GET", AA .. "/webhooks/" .. SEG .. "/subscriptions/all/list%.json$", "v1.list_subscriptions", "v1", B, v1.list_subscriptions },
  { "DELETE", AA .. "/webhooks/" .. SEG .. "/subscriptions/" .. SEG .. "/all%.json$", "v1.unsubscribe", "v1", B, v1.unsubscribe },
  { "GET", AA .. "/subscriptions/count%.json$", "v1.count", "v1", B, v1.count },
  { "POST", AA .. "/replay/webhooks/" .. SEG .. "/subscriptions/all%.json$", "v1.replay", "v1", B, v1.replay },
  -- v1.1 premium
  { "GET", ALL .. "/webhooks%.json$", "premium.list_all", "v1", B, P.list_all },
  { "GET", ALL .. "/subscriptions/count%.json$", "premium.count", "v1", B, P.count },
  { "POST", ALL .. "/" .. SEG .. "/webhooks%.json$", "premium.register", "v1", U_APP, P.register },
  { "GET", ALL .. "/" .. SEG .. "/webhooks%.json$", "premium.list", "v1", B_OR_U_APP, P.list },
  { "PUT", ALL .. "/" .. SEG .. "/webhooks/" .. SEG .. "%.json$", "premium.validate", "v1", B_OR_U_APP, P.validate },
  { "DELETE", ALL .. "/" .. SEG .. "/webhooks/" .. SEG .. "%.json$", "premium.delete_webhook", "v1", U_APP, P.delete_webhook },
  { "POST", ALL .. "/" .. SEG .. "/subscriptions%.json$", "premium.subscribe", "v1", USER, P.subscribe },
  { "GET", ALL .. "/" .. SEG .. "/subscriptions%.json$", "premium.check", "v1", USER, P.check },
  { "DELETE", ALL .. "/" .. SEG .. "/subscriptions%.json$", "premium.unsubscribe_self", "v1", USER, P.unsubscribe_self },
  { "GET", ALL .. "/" .. SEG .. "/subscriptions/list%.json$", "premium.list_subscriptions", "v1", B, P.list_subscriptions },
  { "DELETE", ALL .. "/" .. SEG .. "/subscriptions/" .. SEG .. "%.json$", "premium.unsubscribe", "v1", B, P.unsubscribe },
  -- v2
  { "POST", "^/2/webhooks/replay$", "v2.replay", "v2", B, v2.replay },
  { "POST", "^/2/webhooks$", "v2.create", "v2", B_OR_U_APP, v2.create },
  { "GET", "^/2/webhooks$", "v2.list", "v2", B, v2.list },
  { "PUT", "^/2/webhooks/" .. SEG .. "$", "v2.validate", "v2", B_OR_U_APP, v2.validate },
  { "DELETE", "^/2/webhooks/" .. SEG .. "$", "v2.delete", "v2", B_OR_U_APP, v2.delete },
  { "POST", V2 .. "/webhooks/" .. SEG .. "/subscriptions/all$", "v2.subscribe", "v2", O2_OR_USER, v2.subscribe },
  { "GET", V2 .. "/webhooks/" .. SEG .. "/subscriptions/all$", "v2.check", "v2", O2_OR_USER, v2.check },
  { "GET", V2 .. "/webhooks/" .. SEG .. "/subscriptions/all/list$", "v2.list_subscriptions", "v2", B, v2.list_subscriptions },
  { "DELETE", V2 .. "/webhooks/" .. SEG .. "/subscriptions/" .. SEG .. "/all$", "v2.unsubscribe", "v2", B, v2.unsubscribe },
  { "GET", V2 .. "/subscriptions/count$", "v2.count", "v2", B, v2.count },
  { "POST", V2 .. "/replay/webhooks/" .. SEG .. "/subscriptions/all$", "v2.replay_aaa", "v2", B, v2.replay_aaa },
  -- app-only tokens
  { "POST", "^/oauth2/token$", "oauth2.token", "oauth2", { "basic" }, oauth2.token },
  { "POST", "^/oauth2/invalidate_token$", "oauth2.invalidate", "oauth2", { "basic", "user_app" }, oauth2.invalidate },
}

-- X Activity API: subscriptions in xaa.lua, the stream in xaa_stream.lua;
-- OAuth 2.0 user context (consent page, token, revoke, users/me) in oauth2.lua
for _, r in ipairs(xaa.ROUTES) do R[#R + 1] = r end
for _, r in ipairs(require("account_activity.emulator.xaa_stream").ROUTES) do R[#R + 1] = r end
for _, r in ipairs(oauth2_user.ROUTES) do R[#R + 1] = r end

local M = {}

-- The OAuth2UserToken scopes of x-openapi-2.167.json, all required.
local AAA_V2_SCOPES = { "dm.read", "users.read", "dm.write", "tweet.read" }
M.SCOPES = {
  ["v2.subscribe"] = AAA_V2_SCOPES, ["v2.check"] = AAA_V2_SCOPES,
}
for name, scopes in pairs(xaa.ROUTE_SCOPES or {}) do M.SCOPES[name] = scopes end
for name, scopes in pairs(oauth2_user.ROUTE_SCOPES) do M.SCOPES[name] = scopes end

M.list = {}
for i, r in ipairs(R) do
  M.list[i] = { method = r[1], pattern = r[2], name = r[3], flavour = r[4], auth = r[5], handler = r[6],
    scopes = M.SCOPES[r[3]] }
end

--- The route for method and path: route, captures | nil, path_known.
function M.match(method, path)
  local known = false
  for _, r in ipairs(M.list) do
    local caps = { path:match(r.pattern) }
    if caps[1] ~= nil then
      if r.method == method then
        if caps[1] == path then caps = {} end
        return r, caps
      end
      known = true
    end
  end
  return nil, known
end

return M
