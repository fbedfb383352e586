--- Who is calling: OAuth 1.0a (signature recomputed with the C core and
-- compared in constant time), app-only Bearer, or Basic (consumer key and
-- secret, for /oauth2/*). Never logs or returns a secret.
local core = require "account_activity.core"
local util = require "account_activity.emulator.util"
local state = require "account_activity.emulator.state"

local M = {}

local function parse_oauth_header(value)
  local params = {}
  local rest = value:match("^[Oo][Aa][Uu][Tt][Hh]%s+(.*)$")
  if not rest then return nil end
  for k, v in rest:gmatch('([%w_]+)%s*=%s*"([^"]*)"') do
    params[util.url_decode((k:gsub("+", "%%2B")))] = util.url_decode((v:gsub("+", "%%2B")))
  end
  return params
end
M.parse_oauth_header = parse_oauth_header

--- The form-body parameters that take part in the OAuth signature.
local function form_params()
  local ctype = ngx.var.http_content_type or ""
  if not ctype:lower():find("application/x-www-form-urlencoded", 1, true) then return {} end
  local body = ngx.req.get_body_data()
  if not body then
    local file = ngx.req.get_body_file()
    if file then
      local f = io.open(file, "rb")
      if f then body = f:read("*a"); f:close() end
    end
  end
  return util.parse_query(body or "")
end
M.form_params = form_params

local function reject(status, code, message, kind)
  return { ok = false, status = status, code = code, message = message, kind = kind }
end

local STANDARD = { oauth_consumer_key = true, oauth_nonce = true, oauth_signature = true,
  oauth_signature_method = true, oauth_timestamp = true, oauth_token = true, oauth_version = true }

local function oauth1(header, cfg)
  local p = parse_oauth_header(header)
  if not p or not p.oauth_consumer_key or not p.oauth_signature or not p.oauth_nonce
    or not p.oauth_timestamp then
    return reject(400, 215, "Bad Authentication data.", "oauth1")
  end
  local info = { kind = "oauth1" }
  if not core.equal(p.oauth_consumer_key, cfg.app.consumer_key) then
    return reject(401, 32, "Could not authenticate you.", "oauth1")
  end
  if (p.oauth_signature_method or "HMAC-SHA1") ~= "HMAC-SHA1" then
    return reject(401, 32, "Could not authenticate you.", "oauth1")
  end
  local user = p.oauth_token and cfg._by_token[p.oauth_token]
  if not user then
    return reject(401, 89, "Invalid or expired token.", "oauth1")
  end
  local ts = tonumber(p.oauth_timestamp)
  local window = (cfg.oauth and cfg.oauth.timestamp_window) or 300
  if not ts or math.abs(ngx.time() - ts) > window then
    return reject(401, 135, "Timestamp out of bounds.", "oauth1")
  end
  local url = ngx.var.scheme .. "://" .. (ngx.var.http_host or ("127.0.0.1:" .. ngx.var.server_port))
    .. ngx.var.request_uri
  local extra = {}
  for k, v in pairs(p) do
    if k:sub(1, 6) == "oauth_" and not STANDARD[k] then extra[k] = v end
  end
  local ok, expected = pcall(core.oauth1_signature, {
    version = p.oauth_version or false, oauth_params = extra,
    method = ngx.req.get_method(), url = url, params = form_params(),
    consumer_key = p.oauth_consumer_key, consumer_secret = cfg.app.consumer_secret,
    token = p.oauth_token, token_secret = user.access_token_secret,
    nonce = p.oauth_nonce, timestamp = p.oauth_timestamp,
  })
  if not ok or not expected or not core.equal(expected, p.oauth_signature) then
    return reject(401, 32, "Could not authenticate you.", "oauth1")
  end
  if not cfg.oauth or cfg.oauth.check_nonce ~= false then
    local key = "nonce:" .. p.oauth_consumer_key .. ":" .. p.oauth_token .. ":" .. p.oauth_nonce
    if not state.dict():add(key, true, window * 2 + 60) then
      return reject(401, 32, "Could not authenticate you.", "oauth1")
    end
  end
  info.ok = true
  info.user = user
  info.user_id = user.user_id
  info.is_owner = user.is_owner or false
  return info
end

-- An app-only bearer, or an OAuth 2.0 user access token (kind "oauth2").
local function bearer(token, cfg)
  local current = state.bearer()
  if current and core.equal(token, current) then
    return { ok = true, kind = "bearer" }
  end
  local rec, why = require("account_activity.emulator.oauth2").lookup_access(cfg, token)
  if rec then
    local user = cfg._by_id[rec.user_id] or { user_id = rec.user_id }
    return { ok = true, kind = "oauth2", user = user, user_id = rec.user_id, scope = rec.scope,
      is_owner = user.is_owner or false }
  end
  return reject(401, 89, "Invalid or expired token.", why == "expired" and "oauth2" or "bearer")
end

local function basic(value, cfg)
  local raw = core.base64_decode(value)
  local key, secret = (raw or ""):match("^([^:]*):(.*)$")
  if key and core.equal(util.url_decode(key), cfg.app.consumer_key)
    and core.equal(util.url_decode(secret), cfg.app.consumer_secret) then
    return { ok = true, kind = "basic" }
  end
  return reject(403, 99, "Unable to verify your credentials", "basic")
end

--- Identify and verify the caller. Returns { ok, kind, user, user_id, is_owner, scope }
-- (kind: "oauth1", "bearer" (app-only), "oauth2" (user context), "basic")
-- or { ok = false, kind, status, code, message }.
function M.identify(cfg)
  local header = ngx.var.http_authorization
  if not header or header == "" then return reject(400, 215, "Bad Authentication data.", "none") end
  local scheme, rest = header:match("^(%S+)%s+(.+)$")
  scheme = (scheme or ""):lower()
  if scheme == "oauth" then return oauth1(header, cfg) end
  if scheme == "bearer" then return bearer(rest, cfg) end
  if scheme == "basic" then return basic(rest, cfg) end
  return reject(400, 215, "Bad Authentication data.", "other")
end

--- The kind of Authorization header, for the log (never its value).
function M.kind()
  local header = ngx.var.http_authorization
  if not header or header == "" then return "none" end
  local scheme = (header:match("^(%S+)") or ""):lower()
  if scheme == "oauth" then return "oauth1" end
  if scheme == "bearer" or scheme == "basic" then return scheme end
  return "other"
end

return M
