-- Spec helpers for the emulator: start it, a webhook receiver (a second
-- nginx answering CRCs and recording deliveries), and signed raw requests.
local core = require "account_activity.core"
local cjson = require "cjson.safe"
local emulator = require "account_activity.emulator"
local nginx_process = require "account_activity.nginx_process"

local H = {}

function H.start(opts)
  local emu, err = emulator.start(opts or {})
  assert(emu, err)
  return emu
end

function H.sleep(s)
  core.sleep(s)
end

--- Poll fn() until it returns a truthy value or `timeout` seconds pass.
function H.wait_for(fn, timeout)
  local deadline = core.now() + (timeout or 5)
  repeat
    local v = fn()
    if v then return v end
    core.sleep(0.02)
  until core.now() > deadline
  return fn()
end

local function urlencode_form(t)
  local names = {}
  for k in pairs(t) do names[#names + 1] = k end
  table.sort(names)
  local parts = {}
  for _, k in ipairs(names) do parts[#parts + 1] = core.percent_encode(k) .. "=" .. core.percent_encode(t[k]) end
  return table.concat(parts, "&")
end
H.form = urlencode_form

--- A raw API caller for one emulator.
-- c:call(method, path, { auth = "app"|"owner"|"none"|user|{ header = "..." },
--   query = {...}, form = {...}, json = {...}, body = "...", headers = {...} })
--   -> res with .status, .headers, .body, .json
function H.client(emu)
  local session = core.session { timeout = 10 }
  local cfg = emu.config
  local c = { emu = emu, session = session, cfg = cfg }
  function c:call(method, path, o)
    o = o or {}
    local url = emu.url .. path
    if o.query then url = url .. (url:find("?", 1, true) and "&" or "?") .. urlencode_form(o.query) end
    local headers = {}
    for k, v in pairs(o.headers or {}) do headers[k] = v end
    local body = o.body
    if o.form then
      body = urlencode_form(o.form)
      headers["Content-Type"] = "application/x-www-form-urlencoded"
    elseif o.json then
      body = cjson.encode(o.json)
      headers["Content-Type"] = "application/json"
    end
    local auth = o.auth
    if auth == nil then auth = "app" end
    if auth == "app" then
      headers.Authorization = "Bearer " .. (o.bearer or cfg.app.bearer_token)
    elseif auth == "owner" or type(auth) == "table" and auth.access_token then
      local u = auth == "owner" and cfg.app.owner or auth
      headers.Authorization = core.oauth1_header {
        method = method, url = url, params = o.form,
        consumer_key = o.consumer_key or cfg.app.consumer_key,
        consumer_secret = o.consumer_secret or cfg.app.consumer_secret,
        token = u.access_token, token_secret = o.token_secret or u.access_token_secret,
        nonce = o.nonce, timestamp = o.timestamp,
      }
    elseif type(auth) == "table" and auth.header then
      headers.Authorization = auth.header
    end
    local res, err = session:request { method = method, url = url, headers = headers, body = body }
    assert(res, err and err.message)
    res.json = cjson.decode(res.body or "")
    return res
  end
  function c:control(method, path, body)
    return emu:control(method, path, body)
  end
  return c
end

-- The receiver: GET ?crc_token answers per mode (path /<mode>/...), POSTs
-- are recorded with their signature header and raw body.
--   ok: correct response_token; wrong: a wrong token; slow: correct but after
--   ?delay / 0.6 s; e500: HTTP 500; notjson: 200 with a non-JSON body.
function H.receiver(secret)
  local code = [[
    local core = require "account_activity.core"
    local cjson = require "cjson.safe"
    local d = ngx.shared.recv
    local mode = d:get("mode") or ngx.var.uri:match("^/(%w+)") or "ok"
    if ngx.var.uri == "/_mode" then d:set("mode", ngx.var.arg_m ~= "" and ngx.var.arg_m or nil); return ngx.say("{}") end
    if ngx.var.uri == "/_received" then
      if ngx.req.get_method() == "DELETE" then
        local m = d:get("mode"); d:flush_all(); d:set("mode", m); return ngx.say("{}")
      end
      local out = {}
      for i = 1, d:get("n") or 0 do out[#out + 1] = cjson.decode(d:get("r:" .. i)) end
      ngx.header["Content-Type"] = "application/json"
      return ngx.print(#out == 0 and "[]" or cjson.encode(out))
    end
    if ngx.var.uri == "/_crc_last" then return ngx.print(d:get("crc_last") or "{}") end
    if ngx.req.get_method() == "GET" then
      local args = ngx.req.get_uri_args()
      local n = d:incr("crc", 1, 0)
      d:set("crc_last", cjson.encode({ query = ngx.var.args, sig = ngx.var.http_x_twitter_webhooks_signature,
        token = args.crc_token, nonce = args.nonce, ua = ngx.var.http_user_agent }))
      if mode == "e500" then return ngx.exit(500) end
      if mode == "notjson" then return ngx.say("hello") end
      if mode == "slow" then ngx.sleep(tonumber(args.delay) or 0.6) end
      local token = "sha256=" .. core.base64_encode(core.hmac_sha256(SECRET, args.crc_token or ""))
      if mode == "wrong" then token = "sha256=" .. core.base64_encode(core.hmac_sha256("wrong", args.crc_token or "")) end
      ngx.header["Content-Type"] = "application/json"
      return ngx.print(cjson.encode({ response_token = token }))
    end
    ngx.req.read_body()
    local body = ngx.req.get_body_data() or ""
    local n = d:incr("n", 1, 0)
    d:set("r:" .. n, cjson.encode({ path = ngx.var.uri, sig = ngx.var.http_x_twitter_webhooks_signature,
      ctype = ngx.var.http_content_type, body = body }))
    if mode == "e500" then return ngx.exit(500) end
    ngx.say("ok")
  ]]
  code = code:gsub("SECRET", string.format("%q", secret))
  local srv, err = nginx_process.start {
    http = function(ports)
      return table.concat({
        "lua_shared_dict recv 8m;",
        "server { listen 127.0.0.1:" .. ports[1] .. "; location / { content_by_lua_block { " .. code .. " } } }",
      }, "\n")
    end,
  }
  assert(srv, err)
  local session = core.session { timeout = 10 }
  local r = { server = srv, url = srv.url }
  function r:hook(mode, extra) return srv.url .. "/" .. (mode or "ok") .. "/webhook" .. (extra or "") end
  function r:received()
    local res = assert(session:request { method = "GET", url = srv.url .. "/_received" })
    return cjson.decode(res.body)
  end
  function r:last_crc()
    local res = assert(session:request { method = "GET", url = srv.url .. "/_crc_last" })
    return cjson.decode(res.body)
  end
  --- Force every CRC answer to `mode` (nil: back to the path's mode).
  function r:set_mode(mode)
    assert(session:request { method = "POST", url = srv.url .. "/_mode?m=" .. (mode or "") })
  end
  function r:clear() session:request { method = "DELETE", url = srv.url .. "/_received" } end
  function r:stop() session:close(); srv:stop() end
  return r
end

--- An address on which nothing listens.
function H.dead_url()
  return "http://127.0.0.1:9/webhook"
end

function H.register(c, rcv, mode)
  local res = c:call("POST", "/1.1/account_activity/webhooks.json",
    { auth = "owner", query = { url = rcv:hook(mode or "ok") } })
  assert(res.status == 200, res.body)
  return res.json
end

return H
