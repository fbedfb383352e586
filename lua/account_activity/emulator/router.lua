--- The request pipeline inside nginx: control plane or API; latency, faults,
-- route, auth, rate limit, handler, response; and the request log (log phase).
local util = require "account_activity.emulator.util"
local state = require "account_activity.emulator.state"
local auth = require "account_activity.emulator.auth"
local routes = require "account_activity.emulator.routes"
local ratelimit = require "account_activity.emulator.ratelimit"
local faults = require "account_activity.emulator.faults"
local respond = require "account_activity.emulator.respond"
local oauth2 = require "account_activity.emulator.oauth2"

local M = {}

-- Answers are written by respond.send (the control plane writes through it too).
local send = respond.send
M.send = send

local function default_fault_body(status)
  if status == 429 then return { errors = { { code = 88, message = "Rate limit exceeded" } } } end
  if status == 503 then return { errors = { { code = 130, message = "Over capacity" } } } end
  if status >= 500 then return { errors = { { code = 131, message = "Internal error" } } } end
  return { errors = { { code = 0, message = "Injected fault" } } }
end

-- Declares a longer body than it sends, then drops the connection.
local function truncated(f)
  local body = f.body
  if type(body) == "table" then body = util.encode(body) end
  body = body or '{"data":{"id":"1","url":"https://example.invalid/webhook","valid":true}}'
  local sock = ngx.req.socket(true)
  if not sock then return ngx.exit(444) end
  local part = body:sub(1, math.max(1, math.floor(#body / 2)))
  sock:send("HTTP/1.1 " .. (f.status or 200) .. " OK\r\nContent-Type: application/json\r\nContent-Length: "
    .. (#body + 100) .. "\r\n\r\n" .. part)
  return ngx.exit(444)
end

--- Apply a fault. Returns true when it produced the whole response; otherwise
-- returns nil and the headers to add to the normal response.
local function apply_fault(f)
  if f.delay_ms and tonumber(f.delay_ms) > 0 then ngx.sleep(tonumber(f.delay_ms) / 1000) end
  if f.action == "reset" or f.action == "close" then
    ngx.exit(444)
    return true
  end
  if f.action == "truncate" then
    truncated(f)
    return true
  end
  local headers = {}
  for k, v in pairs(f.headers or {}) do headers[k] = tostring(v) end
  if f.action == "invalid_json" then
    send(tonumber(f.status) or 200, '{"data": {"id": "1", "url": ', util.merge(headers,
      { ["Content-Type"] = "application/json;charset=utf-8" }))
    return true
  end
  if f.status then
    local status = tonumber(f.status)
    local body = f.body
    if body == nil then body = default_fault_body(status) end
    send(status, body, headers)
    return true
  end
  return nil, headers
end

local ALLOWED_DESC = {
  user_app = "OAuth 1.0a User Context", user = "OAuth 1.0a User Context", bearer = "OAuth 2.0 Application-Only",
  basic = "Basic", oauth2 = "OAuth 2.0 User Context",
}

local function satisfies(info, kinds)
  for _, k in ipairs(kinds) do
    if k == "any" then return true end
    if k == "bearer" and info.kind == "bearer" then return true end
    if k == "basic" and info.kind == "basic" then return true end
    if k == "oauth2" and info.kind == "oauth2" then return true end
    if k == "user" and info.kind == "oauth1" then return true end
    if k == "user_app" and info.kind == "oauth1" and info.is_owner then return true end
  end
  return false
end

--- The route's OAuth 2.0 scopes that the caller's token lacks (nil: none).
local function missing_scopes(route, info)
  if info.kind ~= "oauth2" or not route.scopes then return nil end
  local have, missing = {}, {}
  for _, s in ipairs(info.scope or {}) do have[s] = true end
  for _, s in ipairs(route.scopes) do
    if not have[s] then missing[#missing + 1] = s end
  end
  if #missing == 0 then return nil end
  return missing
end

local function auth_error(route, info)
  if route.flavour == "v2" then
    if not info.ok then return respond.v2_unauthorized() end
    local want, seen = {}, {}
    for _, k in ipairs(route.auth) do
      local desc = ALLOWED_DESC[k]
      if not seen[desc] then want[#want + 1], seen[desc] = desc, true end
    end
    return respond.v2_unsupported_auth { got = ALLOWED_DESC[info.kind == "oauth1" and "user" or info.kind] or info.kind,
      want = table.concat(want, ", ") }
  end
  if route.flavour == "oauth2" then
    return respond.v1(403, 99, "Unable to verify your credentials", { label = "authenticity_token_error" })
  end
  if not info.ok then return respond.v1(info.status, info.code, info.message) end
  local wants_bearer_only = #route.auth == 1 and route.auth[1] == "bearer"
  if info.kind == "oauth1" and wants_bearer_only then
    return respond.v1(401, 32, "Invalid authentication method. Please use application-only authentication.")
  end
  return respond.v1(403, 220, "Your credentials do not allow access to this resource.")
end

local function not_found(path, known)
  if path:sub(1, 3) == "/2/" then
    if known then return 405, { title = "Method Not Allowed", type = "about:blank", status = 405 } end
    return respond.v2_not_found()
  end
  return respond.v1(404, 34, respond.NOT_FOUND_34)
end

local function read_body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body then
    local file = ngx.req.get_body_file()
    if file then
      local f = io.open(file, "rb")
      if f then body = f:read("*a"); f:close() end
    end
  end
  return body
end

function M.api()
  local ctx = ngx.ctx
  local method, path = ngx.req.get_method(), ngx.var.uri
  local body = read_body()
  local cfg = state.config()
  local latency = tonumber(cfg.latency_ms) or 0
  if latency > 0 then ngx.sleep(latency / 1000) end

  local route, caps = routes.match(method, path)
  ctx.endpoint = route and route.name

  local extra_headers
  local f = faults.take(method, path)
  if f then
    ctx.fault = f.id
    local done, hdrs = apply_fault(f)
    if done then return end
    extra_headers = hdrs
  end

  if not route then
    local status, rbody = not_found(path, caps)
    local headers = ratelimit.hit(cfg, "other", "anon", true)
    return send(status, rbody, util.merge(headers, extra_headers))
  end

  local info = auth.identify(cfg)
  ctx.auth_kind = info.kind
  ctx.user_id = info.user_id
  local open = route.auth[1] == "any"
  if not open and (not info.ok or not satisfies(info, route.auth)) then
    local status, rbody = auth_error(route, info)
    local headers = ratelimit.hit(cfg, route.name, "anon", true)
    return send(status, rbody, util.merge(headers, extra_headers))
  end
  local missing = not open and missing_scopes(route, info)
  if missing then
    local headers = ratelimit.hit(cfg, route.name, "anon", true)
    local status, rbody = respond.v2_missing_scopes(missing)
    return send(status, rbody, util.merge(headers, extra_headers))
  end

  local pool = (info.ok and info.user_id) and ("user:" .. info.user_id) or "app"
  local rl_headers, limited = ratelimit.hit(cfg, route.name, pool)
  local headers = util.merge(rl_headers, extra_headers)
  if limited then
    local status, rbody
    if route.flavour == "v2" then status, rbody = respond.v2_rate_limited()
    elseif route.name == "v1.replay" then
      status, rbody = respond.v1(429, 88, "Too many requests. Please back off your API request rate.")
    else status, rbody = respond.v1(429, 88, "Rate limit exceeded") end
    return send(status, rbody, headers)
  end

  local req = {
    cfg = cfg, auth = info, captures = caps, method = method, path = path, body = body,
    query = ngx.req.get_uri_args(200),
    form = ((ngx.var.http_content_type or ""):lower():find("x-www-form-urlencoded", 1, true))
      and util.parse_query(body or "") or {},
  }
  local ok, status, rbody, hdrs = pcall(route.handler, req)
  if not ok then
    ngx.log(ngx.ERR, "emulator handler ", route.name, " failed: ", status)
    return send(500, { errors = { { code = 131, message = "Internal error" } } }, headers)
  end
  return send(status, rbody, util.merge(headers, hdrs))
end

function M.handle()
  local path = ngx.var.uri
  if path == "/_emulator" or path:sub(1, 11) == "/_emulator/" then
    ngx.ctx.control = true
    return require("account_activity.emulator.control").handle()
  end
  return M.api()
end

-- ---------------------------------------------------------------- request log

local SECRET_NAME = { "token", "secret", "signature", "oauth", "password", "key", "nonce", "crc", "bearer",
  "code", "verifier" }

local function redact_query(cfg)
  local args = ngx.req.get_uri_args(100)
  local secrets = cfg._secrets or {}
  local bearer = state.bearer()

  local out = {}
  for k, v in pairs(args) do
    local lk = tostring(k):lower()
    local hide = false
    for _, s in ipairs(SECRET_NAME) do
      if lk:find(s, 1, true) then hide = true; break end
    end
    if type(v) == "table" then v = table.concat(v, ",") end
    if v == true then v = "" end
    if hide or secrets[v] or (bearer and v == bearer) or oauth2.is_secret(v) then v = "[redacted]" end
    out[k] = v
  end
  return out
end

function M.log()
  local ctx = ngx.ctx
  if ctx.control then return end
  local ok, err = pcall(function()
    local cfg = state.config()
    state.log {
      t = ngx.req.start_time(), method = ngx.req.get_method(), path = ngx.var.uri,
      query = redact_query(cfg), auth = ctx.auth_kind or auth.kind(), user_id = ctx.user_id,
      status = ngx.status, endpoint = ctx.endpoint, fault = ctx.fault,
      ms = math.floor((ngx.now() - ngx.req.start_time()) * 1000),
    }
  end)
  if not ok then ngx.log(ngx.ERR, "emulator log failed: ", err) end
end

return M
