-- A fake X OAuth 2.0 server as a function transport, for unit specs:
-- authorization codes bound to a PKCE S256 challenge, rotating refresh
-- tokens (a spent one is refused), /2/users/me, revoke, and the calls an
-- OAuth 2.0 user makes (AAA v2 subscribe, XAA create/list), answering 401
-- to an unknown, expired or revoked access token.
local core = require "account_activity.core"
local cjson = require "cjson"

local M = {}

local function form_of(body)
  local out = {}
  for pair in (body or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    out[core.percent_decode(k, true)] = core.percent_decode(v, true)
  end
  return out
end
M.form_of = form_of

function M.new(opts)
  opts = opts or {}
  local srv = {
    client_id = opts.client_id or "client-abc",
    client_secret = opts.client_secret, -- nil: a public client
    user_id = opts.user_id or "2244994945",
    ttl = opts.ttl or 7200,
    now = opts.now or os.time,
    codes = {}, access = {}, refresh = {}, requests = {}, counts = {},
    seq = 0,
  }
  local function json(status, t)
    return { status = status, headers = { ["content-type"] = "application/json" }, body = cjson.encode(t) }
  end
  local function issue(scope)
    srv.seq = srv.seq + 1
    local at, rt = "AT-secret-" .. srv.seq, "RT-secret-" .. srv.seq
    srv.access[at] = { expires = srv.now() + srv.ttl, scope = scope }
    srv.refresh[rt] = { scope = scope }
    return { token_type = "bearer", expires_in = srv.ttl, access_token = at, refresh_token = rt, scope = scope }
  end
  --- A code as if the user had approved (what the consent page would redirect with).
  function srv.approve(challenge, redirect_uri, scope)
    srv.seq = srv.seq + 1
    local code = "CODE-secret-" .. srv.seq
    srv.codes[code] = { challenge = challenge, redirect_uri = redirect_uri, scope = scope }
    return code
  end
  function srv.expire_all()
    for _, a in pairs(srv.access) do a.expires = 0 end
  end
  local function client_ok(req, form)
    local basic = (req.headers.Authorization or ""):match("^Basic (.+)$")
    if srv.client_secret then
      local want = core.base64_encode(core.percent_encode(srv.client_id) .. ":" .. core.percent_encode(srv.client_secret))
      return basic == want
    end
    return basic == nil and form.client_id == srv.client_id
  end
  local function bearer_user(req)
    local at = (req.headers.Authorization or ""):match("^Bearer (.+)$")
    local a = at and srv.access[at]
    if not a or a.expires <= srv.now() then return nil end
    return a
  end
  function srv.transport(req)
    local path = req.url:match("^https?://[^/]+([^?]*)")
    srv.requests[#srv.requests + 1] = { method = req.method, path = path, headers = req.headers, body = req.body, url = req.url }
    srv.counts[path] = (srv.counts[path] or 0) + 1
    if path == "/2/oauth2/token" then
      local form = form_of(req.body)
      if not client_ok(req, form) then
        return json(401, { error = "unauthorized_client", error_description = "Missing valid authorization header" })
      end
      if form.grant_type == "authorization_code" then
        local c = srv.codes[form.code]
        srv.codes[form.code] = nil
        if not c or c.redirect_uri ~= form.redirect_uri
            or core.base64url_encode(core.sha256(form.code_verifier or "")) ~= c.challenge then
          return json(400, { error = "invalid_request", error_description = "Value passed for the authorization code was invalid." })
        end
        return json(200, issue(c.scope))
      elseif form.grant_type == "refresh_token" then
        local r = srv.refresh[form.refresh_token]
        if not r then
          return json(400, { error = "invalid_request", error_description = "Value passed for the token was invalid." })
        end
        srv.refresh[form.refresh_token] = nil
        return json(200, issue(r.scope))
      end
      return json(400, { error = "unsupported_grant_type" })
    elseif path == "/2/oauth2/revoke" then
      local form = form_of(req.body)
      if not client_ok(req, form) then return json(401, { error = "unauthorized_client" }) end
      srv.access[form.token] = nil
      srv.refresh[form.token] = nil
      return json(200, { revoked = true })
    elseif path == "/oauth2/token" then
      return json(200, { token_type = "bearer", access_token = "APP-BEARER-secret" })
    end
    local app = req.headers.Authorization == "Bearer APP-BEARER-secret"
    local user = bearer_user(req)
    if not user and not app then
      return json(401, { title = "Unauthorized", type = "about:blank", status = 401, detail = "Unauthorized" })
    end
    if path == "/2/users/me" then
      return json(200, { data = { id = srv.user_id, username = "alice" } })
    elseif path:match("^/2/account_activity/webhooks/%d+/subscriptions/all/list$") then
      return json(200, { data = { subscriptions = {} } })
    elseif path:match("^/2/account_activity/webhooks/%d+/subscriptions/all$") then
      if req.method == "POST" then return { status = 204, headers = {}, body = "" } end
      return json(200, { data = { subscribed = true } })
    elseif path == "/2/activity/subscriptions" and req.method == "POST" then
      local b = cjson.decode(req.body)
      srv.seq = srv.seq + 1
      return json(200, { data = { subscription_id = tostring(1000 + srv.seq), event_type = b.event_type,
        filter = b.filter, webhook_id = b.webhook_id, tag = b.tag } })
    elseif path == "/2/activity/subscriptions" and req.method == "GET" then
      return json(200, { data = {}, meta = { result_count = 0 } })
    end
    return json(404, { title = "Not Found" })
  end
  return srv
end

return M
