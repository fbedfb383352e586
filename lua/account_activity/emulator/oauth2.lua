--- OAuth 2.0 user context like X's: the consent page (GET/POST
-- /i/oauth2/authorize), the token endpoint (authorization_code with PKCE,
-- refresh_token rotating), revoke, GET /2/users/me, and the control calls
-- (consent without the page, expire, state). Tokens live in the shared dict
-- so a revoke, an expiry or a rotation is seen by every worker at once.
--
-- Keys: o2:code:<code> (single use: o2:codeuse:<code>), o2:at:<token>,
-- o2:rt:<token>, o2:gone:<token> (revoked, spent or expired seed token),
-- o2:refreshes:<user_id>, o2:exchanges:<user_id>.
-- Every configured user also has a seed token set (config.oauth2_seed), valid
-- until it is revoked, expired by the control plane or its refresh is spent,
-- so --print-config can hand out tokens that work without a consent.
local core = require "account_activity.core"
local util = require "account_activity.emulator.util"
local state = require "account_activity.emulator.state"
local config = require "account_activity.emulator.config"

local M = {}

local function d() return state.dict() end

-- SHA-256 for PKCE S256. The nginx workers run LuaJIT inside a binary linked
-- with OpenSSL, so its SHA256() is reachable through the FFI.
local sha256 = core.sha256
if not sha256 then
  local ok, ffi = pcall(require, "ffi")
  if ok then
    pcall(ffi.cdef, "unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);")
    sha256 = function(s)
      local out = ffi.new("unsigned char[32]")
      ffi.C.SHA256(s, #s, out)
      return ffi.string(out, 32)
    end
  end
end

local function b64url(raw)
  return (core.base64_encode(raw):gsub("=+$", ""):gsub("+", "-"):gsub("/", "_"))
end
M.b64url = b64url

local function new_secret(n)
  return b64url(core.random_bytes(n or 48))
end

local function knobs(cfg)
  return config.oauth2_knobs(cfg)
end

local function scope_list(s)
  local out = {}
  if type(s) == "table" then
    for _, v in ipairs(s) do out[#out + 1] = tostring(v) end
  elseif type(s) == "string" then
    for v in s:gmatch("%S+") do out[#out + 1] = v end
  end
  return out
end
M.scope_list = scope_list

local function has_scope(list, s)
  for _, v in ipairs(list or {}) do if v == s then return true end end
  return false
end
M.has_scope = has_scope

-- ---------------------------------------------------------------- validation

local function known_users(cfg)
  local out = {}
  for _, u in ipairs(cfg.users) do out[#out + 1] = u end
  out[#out + 1] = cfg.app.owner
  return out
end

--- Is `uri` a callback URL of the app? Registered ones exactly; loopback
-- http URLs on any port when oauth2.loopback_redirects (the default), so a
-- CLI's or a spec's one-shot receiver works without registering its port.
local function redirect_ok(cfg, uri)
  if type(uri) ~= "string" or uri == "" then return false end
  local k = knobs(cfg)
  for _, r in ipairs(k.redirect_uris or {}) do
    if r == uri then return true end
  end
  if k.loopback_redirects ~= false then
    local u = util.parse_url(uri)
    if u and u.scheme == "http" and (u.host == "127.0.0.1" or u.host == "localhost" or u.host == "::1") then
      return true
    end
  end
  return false
end

--- Check an authorization request. Returns the normalised request or nil, message.
local function check_request(cfg, p)
  local k = knobs(cfg)
  if p.response_type ~= nil and p.response_type ~= "code" then
    return nil, "response_type must be code"
  end
  if type(p.client_id) ~= "string" or not core.equal(p.client_id, cfg.app.client_id) then
    return nil, "unknown client_id"
  end
  if p.redirect_uri == nil or p.redirect_uri == "" then return nil, "redirect_uri is missing" end
  if not redirect_ok(cfg, p.redirect_uri) then
    return nil, "redirect_uri is not a callback URL of this app"
  end
  local scopes = scope_list(p.scope)
  if #scopes == 0 then return nil, "scope is missing" end
  local allowed = {}
  for _, s in ipairs(k.scopes) do allowed[s] = true end
  for _, s in ipairs(scopes) do
    if not allowed[s] then return nil, "unknown scope " .. s end
  end
  if type(p.code_challenge) ~= "string" or p.code_challenge == "" then
    return nil, "code_challenge is missing (PKCE is required)"
  end
  local method = p.code_challenge_method or "plain"
  if method ~= "S256" and method ~= "plain" then
    return nil, "code_challenge_method must be S256 or plain"
  end
  if p.state ~= nil and type(p.state) ~= "string" then return nil, "state must be a string" end
  return { client_id = p.client_id, redirect_uri = p.redirect_uri, scope = scopes, state = p.state,
    code_challenge = p.code_challenge, code_challenge_method = method }
end

local function with_query(uri, params)
  local parts = {}
  for _, kv in ipairs(params) do
    if kv[2] ~= nil then parts[#parts + 1] = kv[1] .. "=" .. util.url_encode(kv[2]) end
  end
  local sep = uri:find("?", 1, true) and "&" or "?"
  return uri .. sep .. table.concat(parts, "&")
end

--- Grant a code for `user_id` on a checked request -> the redirect URL.
local function grant(cfg, r, user_id)
  local code = new_secret(48)
  local rec = { client_id = r.client_id, redirect_uri = r.redirect_uri, scope = r.scope, user_id = user_id,
    code_challenge = r.code_challenge, code_challenge_method = r.code_challenge_method }
  d():set("o2:code:" .. code, util.encode(rec), tonumber(knobs(cfg).code_ttl) or 30)
  return with_query(r.redirect_uri, { { "code", code }, { "state", r.state } })
end

local function find_user(cfg, id)
  if id == nil then return nil end
  return cfg._by_id[tostring(id)]
end

-- ---------------------------------------------------------------- the consent page

local function esc(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
    ['"'] = "&quot;", ["'"] = "&#39;" }))
end
M.html_escape = esc

local function page(status, title, body)
  local html = table.concat {
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>", esc(title),
    "</title></head>\n<body>\n", body, "\n</body></html>\n",
  }
  return status, html, { ["Content-Type"] = "text/html; charset=utf-8", ["Cache-Control"] = "no-store" }
end

local function error_page(msg)
  return page(400, "Something went wrong", "<h1>Something went wrong</h1>\n<p class=\"error\">"
    .. esc(msg) .. "</p>\n<p>You can close this window.</p>")
end

local HIDDEN = { "response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge",
  "code_challenge_method" }

local function consent_page(cfg, p, r)
  local out = { "<h1>Authorize ", esc(cfg.app.name or "the app"), " to access your account?</h1>\n",
    "<form method=\"post\" action=\"/i/oauth2/authorize\">\n" }
  for _, name in ipairs(HIDDEN) do
    local v = p[name]
    if name == "scope" then v = table.concat(r.scope, " ") end
    if name == "code_challenge_method" then v = r.code_challenge_method end
    if v ~= nil then
      out[#out + 1] = "<input type=\"hidden\" name=\"" .. name .. "\" value=\"" .. esc(v) .. "\">\n"
    end
  end
  out[#out + 1] = "<p>It will be able to:</p>\n<ul class=\"scopes\">\n"
  for _, s in ipairs(r.scope) do out[#out + 1] = "<li>" .. esc(s) .. "</li>\n" end
  out[#out + 1] = "</ul>\n<label for=\"user_id\">Sign in as</label>\n<select name=\"user_id\" id=\"user_id\">\n"
  for i, u in ipairs(known_users(cfg)) do
    out[#out + 1] = "<option value=\"" .. esc(u.user_id) .. "\"" .. (i == 1 and " selected" or "") .. ">@"
      .. esc(u.screen_name or u.user_id) .. " (" .. esc(u.user_id) .. ")</option>\n"
  end
  out[#out + 1] = "</select>\n<p>You will be redirected to " .. esc(r.redirect_uri) .. "</p>\n"
    .. "<button type=\"submit\" name=\"action\" value=\"authorize\">Authorize app</button>\n"
    .. "<button type=\"submit\" name=\"action\" value=\"cancel\">Cancel</button>\n</form>"
  return page(200, "Authorize " .. (cfg.app.name or "app"), table.concat(out))
end

local function first(v)
  if type(v) == "table" then return v[1] end
  return v
end

local function params_of(t)
  local p = {}
  for _, name in ipairs(HIDDEN) do p[name] = first(t[name]) end
  p.user_id, p.action = first(t.user_id), first(t.action)
  return p
end

--- GET /i/oauth2/authorize: the consent page (or an error page).
function M.authorize_page(req)
  local p = params_of(req.query)
  local r, err = check_request(req.cfg, p)
  if not r then return error_page(err) end
  return consent_page(req.cfg, p, r)
end

--- POST /i/oauth2/authorize: the form; 302 to the callback with a code, or
-- with error=access_denied on Cancel.
function M.authorize_submit(req)
  local p = params_of(req.form)
  local r, err = check_request(req.cfg, p)
  if not r then return error_page(err) end
  local location
  if p.action == "cancel" then
    location = with_query(r.redirect_uri, { { "error", "access_denied" }, { "state", r.state } })
  else
    local user = find_user(req.cfg, p.user_id)
    if not user then return error_page("pick a user to sign in as") end
    location = grant(req.cfg, r, user.user_id)
  end
  return 302, "", { Location = location, ["Cache-Control"] = "no-store", ["Content-Type"] = "text/plain" }
end

-- ---------------------------------------------------------------- tokens

local function gone(token) return d():get("o2:gone:" .. token) ~= nil end

local function seed_of(cfg, token, kind)
  local idx = kind == "access" and cfg._o2_access or cfg._o2_refresh
  local u = idx and idx[token]
  if not u then return nil end
  return { user_id = u.user_id, client_id = cfg.app.client_id, scope = knobs(cfg).scopes, seed = true,
    expires_at = math.huge }
end

--- The access token's record when it is valid now: { user_id, scope, client_id, expires_at }
-- | nil, "expired" | "unknown".
function M.lookup_access(cfg, token)
  if type(token) ~= "string" or token == "" then return nil, "unknown" end
  local rec = state.get_json("o2:at:" .. token) or seed_of(cfg, token, "access")
  if not rec then return nil, "unknown" end
  if gone(token) then return nil, "expired" end
  if rec.expires_at and rec.expires_at <= ngx.now() then return nil, "expired" end
  return rec
end

local function issue(cfg, user_id, client_id, scope)
  local ttl = tonumber(knobs(cfg).access_ttl) or 7200
  local at = new_secret(60)
  local now = ngx.now()
  local out = { token_type = "bearer", expires_in = ttl, access_token = at, scope = table.concat(scope, " ") }
  local rec = { user_id = user_id, client_id = client_id, scope = scope, expires_at = now + ttl, issued_at = now }
  if has_scope(scope, "offline.access") then
    local rt = new_secret(60)
    out.refresh_token = rt
    rec.refresh_token = rt
    state.set_json("o2:rt:" .. rt, { user_id = user_id, client_id = client_id, scope = scope,
      access_token = at, issued_at = now })
  end
  state.set_json("o2:at:" .. at, rec)
  return out
end

local function token_error(status, code, description)
  return status, { error = code, error_description = description }
end

--- The client of a token request: Basic client_id:client_secret (confidential)
-- or client_id in the body (public). Returns client_id | nil, status, body.
local function client_of(req)
  local cfg = req.cfg
  local header = ngx.var.http_authorization
  if header and header ~= "" then
    local scheme, rest = header:match("^(%S+)%s+(.+)$")
    if (scheme or ""):lower() ~= "basic" then
      return nil, token_error(401, "unauthorized_client", "Missing valid authorization header")
    end
    local raw = core.base64_decode(rest) or ""
    local id, secret = raw:match("^([^:]*):(.*)$")
    if not id or not core.equal(util.url_decode(id), cfg.app.client_id)
      or not core.equal(util.url_decode(secret), cfg.app.client_secret) then
      return nil, token_error(401, "unauthorized_client", "Missing valid authorization header")
    end
    return cfg.app.client_id
  end
  local id = first(req.form.client_id)
  if type(id) ~= "string" or not core.equal(id, cfg.app.client_id) then
    return nil, token_error(401, "unauthorized_client", "Missing valid authorization header")
  end
  if knobs(cfg).require_client_secret then
    return nil, token_error(401, "unauthorized_client", "Missing valid authorization header")
  end
  return id
end

local function pkce_ok(rec, verifier)
  if type(verifier) ~= "string" or verifier == "" then return false end
  if rec.code_challenge_method == "S256" then
    return sha256 ~= nil and core.equal(b64url(sha256(verifier)), rec.code_challenge)
  end
  return core.equal(verifier, rec.code_challenge)
end

local function exchange(req, client_id)
  local f = req.form
  local code = first(f.code)
  if type(code) ~= "string" or code == "" then
    return token_error(400, "invalid_request", "Missing required parameter [code].")
  end
  local rec = state.get_json("o2:code:" .. code)
  -- single use across workers: only the first incr sees 1
  if not rec or d():incr("o2:codeuse:" .. code, 1, 0) ~= 1 then
    return token_error(400, "invalid_request", "Value passed for the authorization code was invalid.")
  end
  d():delete("o2:code:" .. code)
  if rec.client_id ~= client_id then
    return token_error(400, "invalid_request", "Value passed for the authorization code was invalid.")
  end
  if first(f.redirect_uri) ~= rec.redirect_uri then
    return token_error(400, "invalid_request", "Value passed for the redirect uri did not match the authorization request.")
  end
  if not pkce_ok(rec, first(f.code_verifier)) then
    return token_error(400, "invalid_request", "Value passed for the code verifier did not match the code challenge.")
  end
  state.incr("o2:exchanges:" .. rec.user_id)
  return 200, issue(req.cfg, rec.user_id, client_id, rec.scope)
end

local SPENT = "Value passed for the token was invalid."

local function refresh(req, client_id)
  local cfg = req.cfg
  local rt = first(req.form.refresh_token)
  if type(rt) ~= "string" or rt == "" then
    return token_error(400, "invalid_request", "Missing required parameter [refresh_token].")
  end
  local rec = state.get_json("o2:rt:" .. rt) or seed_of(cfg, rt, "refresh")
  if not rec or rec.client_id ~= client_id then return token_error(400, "invalid_request", SPENT) end
  -- the claim is atomic: of two workers refreshing with one token, one wins
  if not d():add("o2:gone:" .. rt, "spent") then return token_error(400, "invalid_request", SPENT) end
  d():delete("o2:rt:" .. rt)
  state.touch()
  state.incr("o2:refreshes:" .. rec.user_id)
  return 200, issue(cfg, rec.user_id, client_id, rec.scope)
end

--- POST /2/oauth2/token
function M.token(req)
  local grant_type = first(req.form.grant_type)
  if grant_type ~= "authorization_code" and grant_type ~= "refresh_token" then
    if grant_type == nil then return token_error(400, "invalid_request", "Missing required parameter [grant_type].") end
    return token_error(400, "unsupported_grant_type", "Value passed for the grant type is not supported.")
  end
  local client_id, status, body = client_of(req)
  if not client_id then return status, body end
  if grant_type == "authorization_code" then return exchange(req, client_id) end
  return refresh(req, client_id)
end

--- Mark a token (and, for a refresh token, the access token issued with it) unusable.
local function revoke_token(cfg, token)
  local at = state.get_json("o2:at:" .. token)
  local rt = state.get_json("o2:rt:" .. token)
  if at or rt or seed_of(cfg, token, "access") or seed_of(cfg, token, "refresh") then
    d():set("o2:gone:" .. token, "revoked")
    if rt and rt.access_token then d():set("o2:gone:" .. rt.access_token, "revoked") end
    d():delete("o2:rt:" .. token)
    state.touch()
    return true
  end
  return false
end

--- POST /2/oauth2/revoke: 200 {revoked = true}, as X answers (also for a
-- token it does not know, RFC 7009).
function M.revoke(req)
  local client_id, status, body = client_of(req)
  if not client_id then return status, body end
  local token = first(req.form.token)
  if type(token) ~= "string" or token == "" then
    return token_error(400, "invalid_request", "Missing required parameter [token].")
  end
  revoke_token(req.cfg, token)
  return 200, { revoked = true }
end

--- GET /2/users/me
function M.users_me(req)
  local u = find_user(req.cfg, req.auth.user_id) or { user_id = req.auth.user_id }
  return 200, { data = { id = u.user_id, name = u.name or u.screen_name or ("user " .. u.user_id),
    username = u.screen_name or ("user_" .. u.user_id) } }
end

-- ---------------------------------------------------------------- control plane

--- POST /_emulator/oauth2/consent { user_id, client_id, redirect_uri, scope, state,
-- code_challenge, code_challenge_method } -> { redirect }
function M.control_consent(body)
  local cfg = state.config()
  local p = {}
  for _, name in ipairs(HIDDEN) do p[name] = body[name] end
  if p.client_id == nil then p.client_id = cfg.app.client_id end
  local r, err = check_request(cfg, p)
  if not r then return 400, { error = err } end
  local user = find_user(cfg, body.user_id)
  if not user then return 400, { error = "unknown user_id " .. tostring(body.user_id) } end
  return 200, { redirect = grant(cfg, r, user.user_id) }
end

--- POST /_emulator/oauth2/expire { user_id = nil } -> every (or that user's)
-- access token expires now.
function M.control_expire(body)
  local cfg = state.config()
  local uid = body.user_id ~= nil and tostring(body.user_id) or nil
  local now, n = ngx.now(), 0
  for _, key in ipairs(state.keys_with_prefix("o2:at:")) do
    local rec = state.get_json(key)
    if rec and (uid == nil or rec.user_id == uid) and rec.expires_at > now then
      rec.expires_at = now
      state.set_json(key, rec)
      n = n + 1
    end
  end
  for _, u in ipairs(known_users(cfg)) do
    if uid == nil or u.user_id == uid then
      local seed = config.oauth2_seed(u)
      if d():add("o2:gone:" .. seed.access_token, "expired") then n = n + 1 end
    end
  end
  state.touch()
  return 200, { expired = n }
end

--- POST /_emulator/oauth2/deauthorize { user_id }: the user revokes the app
-- in their settings. Their tokens stop working; AAA sends `user_event`
-- (revoke) to the webhooks they are subscribed to and drops those
-- subscriptions; XAA sends `oauth.revoke` (empty filter, no subscription
-- needed) to every stream and to the webhooks of the app's XAA
-- subscriptions, then forgets the user's private-event subscriptions.
function M.control_deauthorize(body)
  local cfg = state.config()
  local user = find_user(cfg, body.user_id)
  if not user then return 400, { error = "unknown user_id " .. tostring(body.user_id) } end
  local uid, n = user.user_id, 0
  for _, prefix in ipairs { "o2:at:", "o2:rt:" } do
    for _, key in ipairs(state.keys_with_prefix(prefix)) do
      local rec = state.get_json(key)
      if rec and rec.user_id == uid and d():add("o2:gone:" .. key:sub(#prefix + 1), "deauthorized") then n = n + 1 end
    end
  end
  local seed = config.oauth2_seed(user)
  for _, t in ipairs { seed.access_token, seed.refresh_token } do
    if d():add("o2:gone:" .. t, "deauthorized") then n = n + 1 end
  end
  state.touch()
  local delivery = require "account_activity.emulator.delivery"
  local aaa = { delivered = 0, unsubscribed = 0 }
  local plan = delivery.plan({ user_id = uid, type = "user_event" }, cfg)
  if plan then
    for _, r in ipairs(delivery.run(plan, cfg)) do if r.ok then aaa.delivered = aaa.delivered + 1 end end
    aaa.unsubscribed = #plan.targets
  end
  local _, sent = require("account_activity.emulator.xaa_stream").control_deliver {
    event_type = "oauth.revoke", user_id = uid, wait = true }
  sent.subscriptions_removed = require("account_activity.emulator.xaa").remove_private_of(uid)
  return 200, { tokens_revoked = n, aaa = aaa, xaa = sent }
end

local function counts(prefix)
  local out = {}
  for _, key in ipairs(state.keys_with_prefix(prefix)) do
    out[key:sub(#prefix + 1)] = d():get(key)
  end
  return out
end

--- GET /_emulator/oauth2/state: refreshes and exchanges per user, live tokens
-- per user (never a token itself).
function M.control_state()
  local now = ngx.now()
  local live = {}
  for _, key in ipairs(state.keys_with_prefix("o2:at:")) do
    local rec = state.get_json(key)
    if rec and rec.expires_at > now and not gone(key:sub(7)) then
      live[rec.user_id] = (live[rec.user_id] or 0) + 1
    end
  end
  return 200, { refreshes = counts("o2:refreshes:"), exchanges = counts("o2:exchanges:"),
    access_tokens = live, access_ttl = tonumber(knobs(state.config()).access_ttl) or 7200 }
end

--- Is `v` an OAuth 2.0 token or code the emulator issued (for the request log)?
function M.is_secret(v)
  if type(v) ~= "string" or #v < 16 then return false end
  local dict = d()
  return dict:get("o2:at:" .. v) ~= nil or dict:get("o2:rt:" .. v) ~= nil or dict:get("o2:code:" .. v) ~= nil
    or dict:get("o2:gone:" .. v) ~= nil
end

--- Route rows for routes.lua. Auth "any": the handler checks the client itself.
local ANY = { "any" }
M.ROUTES = {
  { "GET", "^/i/oauth2/authorize$", "oauth2.authorize", "page", ANY, M.authorize_page },
  { "POST", "^/i/oauth2/authorize$", "oauth2.consent", "page", ANY, M.authorize_submit },
  { "POST", "^/2/oauth2/token$", "oauth2.user_token", "oauth2_user", ANY, M.token },
  { "POST", "^/2/oauth2/revoke$", "oauth2.revoke", "oauth2_user", ANY, M.revoke },
  { "GET", "^/2/users/me$", "v2.users_me", "v2", { "oauth2", "user" }, M.users_me },
}

--- OAuth 2.0 scopes each route needs (the spec's OAuth2UserToken lists).
M.ROUTE_SCOPES = {
  ["v2.users_me"] = { "tweet.read", "users.read" },
}

M.CONTROL = {
  ["POST oauth2/consent"] = M.control_consent,
  ["POST oauth2/expire"] = M.control_expire,
  ["POST oauth2/deauthorize"] = M.control_deauthorize,
  ["GET oauth2/state"] = function() return M.control_state() end,
}

return M
