--- The webhook side: CRC answers, delivery signatures, and a pure handler.
--
--   local webhook = require "account_activity.webhook"
--   local handler = webhook.handler { consumer_secret = secret, router = r }
--   local response = handler { method = "POST", headers = h, body = raw }
--
-- No network, no blocking, no globals: the same handler runs in a script,
-- in a test, and inside nginx (account_activity.nginx adapts it).
local core = require "account_activity.core"
local crc = require "account_activity.crc"
local events = require "account_activity.events"
local type, pairs, tostring, error, pcall, setmetatable, getmetatable =
  type, pairs, tostring, error, pcall, setmetatable, getmetatable
local sub, find, lower, upper, gsub, format =
  string.sub, string.find, string.lower, string.upper, string.gsub, string.format
local ipairs = ipairs

local M = {}

local SIG_HEADER = "x-twitter-webhooks-signature"
local SIG_HEADER_C = "X-Twitter-Webhooks-Signature"
-- Unconfirmed by X's docs but sent to apps with an OAuth 2.0 client secret
-- (X-API.md §5); checked only when that secret is configured.
local SIG2_HEADER = "x-twitter-webhooks-signature-oauth2"
local SIG2_HEADER_C = "X-Twitter-Webhooks-Signature-OAuth2"

local check_secret = crc.check_secret
local sign, verify, token_shape_ok = crc.sign, crc.verify, crc.token_shape_ok

---------------------------------------------------------------------------
-- CRC and signatures (crc.lua; the public names stay here)

--- crc_response(consumer_secret, crc_token) -> "sha256=" .. base64(HMAC-SHA256)
-- The value of `response_token` in the answer to X's Challenge-Response Check.
M.crc_response = crc.response

--- verify_signature(consumer_secret, raw_body, header_value) -> true | false, reason
-- Constant-time check of `x-twitter-webhooks-signature` over the raw body
-- bytes (never re-serialised JSON). Reasons: missing header, missing
-- `sha256=` prefix, bad base64, wrong length, signature does not match.
M.verify_signature = crc.verify_signature

M.crc_token_valid = crc.token_valid

---------------------------------------------------------------------------
-- Request helpers

-- A headers table with this metatable promises lowercase names only, so a
-- missing header is known missing without a scan. The nginx adapter uses
-- it: the scan is a loop, and a loop on the CRC path keeps LuaJIT from
-- compiling the request (the trace aborts and the path stays interpreted).
local LOWERCASE_HEADERS = {}
-- public: an adapter marks the headers table it builds with it
M.LOWERCASE_HEADERS = LOWERCASE_HEADERS

-- Header lookup in any case: exact lowercase (nginx's get_headers() table
-- answers any case through it), canonical case, then a scan.
local function header(headers, lname, cname)
  local v = headers[lname]
  if v == nil and getmetatable(headers) ~= LOWERCASE_HEADERS then
    v = headers[cname]
    if v ~= nil then return v end
    local n = #lname
    for k, val in pairs(headers) do
      if type(k) == "string" and #k == n and lower(k) == lname then
        v = val
        break
      end
    end
  end
  return v
end

local percent_decode = core.percent_decode

-- %XX escapes undone ('+' kept as it is); invalid escapes stay literal.
local function percent_decode_token(token)
  if find(token, "%", 1, true) then token = percent_decode(token) end
  return token
end

-- crc_token from the raw query string: percent-decoded but '+' kept, since
-- X's base64 tokens hold '+' and a form decoder would turn it into a space.
local function token_from_raw(raw)
  -- X's own form, "crc_token=...[&nonce=...]", without a loop (see
  -- LOWERCASE_HEADERS: a loop here would keep the CRC path interpreted).
  if sub(raw, 1, 10) == "crc_token=" and not find(raw, "crc_token=", 11, true) then
    local stop = find(raw, "&", 11, true)
    return percent_decode_token(sub(raw, 11, stop and stop - 1 or #raw))
  end
  local token, count = nil, 0
  local pos = 1
  while true do
    local s, e = find(raw, "crc_token=", pos, true)
    if not s then break end
    if s == 1 or sub(raw, s - 1, s - 1) == "&" then
      count = count + 1
      local stop = find(raw, "&", e + 1, true)
      token = sub(raw, e + 1, stop and stop - 1 or #raw)
    end
    pos = e + 1
  end
  if count > 1 then return nil, "repeated crc_token" end
  return token and percent_decode_token(token)
end

-- The query string as sent, in whichever form the server handed it over:
-- raw_query, query as a string, or still inside path ("/webhook?crc_token=").
local function raw_query_of(req)
  local raw = req.raw_query
  if type(raw) ~= "string" or raw == "" then
    raw = req.query
    if type(raw) ~= "string" then
      local path = req.path
      local q = type(path) == "string" and find(path, "?", 1, true)
      raw = q and sub(path, q + 1) or nil
    end
  end
  if raw and sub(raw, 1, 1) == "?" then raw = sub(raw, 2) end
  if raw == "" then return nil end
  return raw
end

local function crc_token(req)
  local raw = raw_query_of(req)
  if raw then return token_from_raw(raw) end
  local q = req.query
  local t = type(q) == "table" and q.crc_token or nil
  if type(t) == "table" then return nil, "repeated crc_token" end
  if type(t) ~= "string" then return nil end
  -- A decoded query turned a literal '+' into ' '; spaces never occur in a token.
  if find(t, " ", 1, true) then t = gsub(t, " ", "+") end
  return t
end

-- A fresh table each time: callers may add headers to a response.
local function reply(status, body, ctype)
  return { status = status, headers = { ["Content-Type"] = ctype }, body = body }
end

local function text(status, msg)
  return reply(status, msg .. "\n", "text/plain")
end

---------------------------------------------------------------------------
-- The Webhook object (webhook.handler wraps one in a function)

local Webhook = {}
Webhook.__index = Webhook

local INSECURE = "[insecure_skip_verify: signatures NOT verified] "

function Webhook:_log(level, msg)
  local log = self._log_fn
  if not log then return end
  if self.insecure then msg = INSECURE .. msg end
  log(level, msg)
end

-- true, or false and a reason. Either header passes when its secret verifies
-- it; a bad first header does not sink a good OAuth 2.0 one.
function Webhook:_verify_any(headers, msg)
  local sig = header(headers, SIG_HEADER, SIG_HEADER_C)
  local secret2 = self._secret2
  local sig2 = secret2 and header(headers, SIG2_HEADER, SIG2_HEADER_C) or nil
  if type(sig) == "table" or type(sig2) == "table" then
    return false, "repeated signature header"
  end
  local ok, reason
  if sig ~= nil then
    ok, reason = verify(self._secret, msg, sig)
    if ok then return true end
  end
  if sig2 ~= nil then
    local ok2, reason2 = verify(secret2, msg, sig2)
    if ok2 then return true end
    reason = reason or reason2
  end
  return false, reason or "missing signature header"
end

local ALLOW = "GET, POST"

function Webhook:_get(req, headers)
  local token, err = crc_token(req)
  if not token then
    err = err or "missing crc_token"
    self:_log("info", "CRC refused: " .. err)
    return text(400, err)
  end
  if not token_shape_ok(token) then
    self:_log("warn", "CRC refused: crc_token does not have the shape of an X token")
    return text(400, "invalid crc_token")
  end
  if not self.insecure then
    local sig = header(headers, SIG_HEADER, SIG_HEADER_C)
    local sig2 = self._secret2 and header(headers, SIG2_HEADER, SIG2_HEADER_C)
    if sig ~= nil or sig2 then
      -- X signs the query string as sent ("crc_token=...&nonce=...").
      local qs = raw_query_of(req)
      if not qs then
        local q = type(req.query) == "table" and req.query or {}
        qs = "crc_token=" .. token
        if type(q.nonce) == "string" then qs = qs .. "&nonce=" .. q.nonce end
      end
      local ok, reason = self:_verify_any(headers, qs)
      if not ok then
        self:_log("warn", "CRC refused: " .. reason)
        return text(401, "invalid signature")
      end
    end
  end
  return reply(200, '{"response_token":"' .. sign(self._secret, token) .. '"}', "application/json")
end

function Webhook:_post(req, headers)
  local body = req.body
  if body == nil then body = "" end
  if type(body) ~= "string" then
    error("bad argument 'request.body' to 'handler' (string expected, got "
      .. type(body) .. ")", 3)
  end
  if self.insecure then
    self:_log("warn", "accepting a POST without checking its signature")
  else
    local ok, reason = self:_verify_any(headers, body)
    if not ok then
      self:_log("warn", "POST refused: " .. reason)
      return text(401, "invalid signature")
    end
  end
  local list, err = events.parse(body)
  if not list then
    self:_log("warn", "POST refused: " .. err)
    return text(400, "invalid JSON")
  end
  return { status = 200, headers = {}, body = "" }, list
end

--- wh:process(request) -> response, events
-- Everything but the dispatch: `events` is set only for an accepted POST,
-- so an adapter can answer first and dispatch afterwards.
function Webhook:process(req)
  if type(req) ~= "table" then
    error("bad argument 'request' to 'handler' (table expected, got " .. type(req) .. ")", 2)
  end
  local headers = req.headers
  if headers == nil then
    headers = {}
  elseif type(headers) ~= "table" then
    error("bad argument 'request.headers' to 'handler' (table or nil expected, got " .. type(headers) .. ")", 2)
  end
  local method = req.method
  if method ~= "POST" and method ~= "GET" and type(method) == "string" then
    method = upper(method)
  end
  if method == "POST" then return self:_post(req, headers) end
  if method == "GET" then return self:_get(req, headers) end
  return { status = 405, headers = { ["Content-Type"] = "text/plain", Allow = ALLOW },
    body = "method not allowed\n" }
end

--- wh:dispatch(events) -> count. Handler errors go to on_error (or the log);
-- they never escape.
--- wh:report(err, ev[, what]): the one route of every problem with an
-- event, here and in adapters (nginx.lua): on_error when given (its own
-- errors logged), else a log line "<what> (type id): err" (none when what
-- is false: the caller has logged the problem once for all its events).
function Webhook:report(err, ev, what)
  local on_error = self._on_error
  if on_error then
    local ok, err2 = pcall(on_error, err, ev)
    if not ok then self:_log("error", "on_error raised: " .. tostring(err2)) end
  elseif what ~= false then
    self:_log("error", format("%s (%s %s): %s", what or "event handler failed",
      tostring(ev.type), tostring(ev.id), tostring(err)))
  end
end
Webhook._report = Webhook.report

--- wh:verify(headers, body) -> true | false, reason: the delivery signature
-- (either header, when an OAuth 2.0 client secret is set), for adapters that
-- answer before parsing (nginx.lua's sink).
function Webhook:verify(headers, body) return self:_verify_any(headers, body) end

--- wh:log(level, msg): the handler's log function (never a secret in msg).
function Webhook:log(level, msg) return self:_log(level, msg) end

--- wh:checks_oauth2_header() -> true when an OAuth 2.0 client secret is set,
-- so the adapter must hand over x-twitter-webhooks-signature-oauth2 too.
function Webhook:checks_oauth2_header() return self._secret2 ~= nil end

function Webhook:dispatch(list)
  local n, errs = self._router:dispatch(list)
  if errs then
    for i = 1, #errs do self:report(errs[i].err, errs[i].event) end
  end
  return n or 0
end

--- wh:handle(request) -> response: process, then dispatch before returning.
function Webhook:handle(req)
  local res, list = self:process(req)
  if list then self:dispatch(list) end
  return res
end

function Webhook:__tostring()
  return format("account_activity.webhook(oauth2 secret: %s%s)",
    self._secret2 and "yes" or "no", self.insecure and ", INSECURE: signatures not verified" or "")
end

local function default_log(level, msg)
  if level == "error" or level == "warn" then
    io.stderr:write("account_activity.webhook [", level, "] ", msg, "\n")
  end
end

--- webhook.new(opts) -> Webhook (see handler for opts).
function M.new(opts, fname)
  fname = fname or "new"
  -- Errors point at the user's call, through handler() when it is the caller.
  local lvl = fname == "new" and 2 or 3
  if type(opts) ~= "table" then
    error("bad argument #1 to '" .. fname .. "' (options table expected, got "
      .. type(opts) .. ")", lvl)
  end
  check_secret(opts.consumer_secret, "consumer_secret", fname, lvl + 1)
  if opts.oauth2_client_secret ~= nil then
    check_secret(opts.oauth2_client_secret, "oauth2_client_secret", fname, lvl + 1)
  end
  for _, name in ipairs { "on_event", "on_error", "log" } do
    if opts[name] ~= nil and type(opts[name]) ~= "function" then
      error(format("bad argument '%s' to '%s' (function expected, got %s)",
        name, fname, type(opts[name])), lvl)
    end
  end
  local router, own_router = opts.router, false
  if router ~= nil then
    if type(router) ~= "table" or type(router.dispatch) ~= "function" then
      error("bad argument 'router' to '" .. fname .. "' (router expected, got "
        .. type(router) .. ")", lvl)
    end
    if opts.on_event then
      error("bad argument 'on_event' to '" .. fname .. "' (give on_event or router, not both)", lvl)
    end
  elseif opts.on_event then
    -- Exact: on_event sees every event once, whatever its type.
    router = events.router { exact = true }
    router:on("*", opts.on_event)
    own_router = true
  else
    error("bad argument 'on_event' to '" .. fname .. "' (on_event or router required)", lvl)
  end
  if opts.dedupe then
    if router.dedupe then router:dedupe(opts.dedupe) end
  end
  if opts.insecure_skip_verify ~= nil and type(opts.insecure_skip_verify) ~= "boolean" then
    error(format("bad argument 'insecure_skip_verify' to '%s' (boolean expected, got %s)",
      fname, type(opts.insecure_skip_verify)), lvl)
  end
  local self = setmetatable({
    _secret = opts.consumer_secret,
    _secret2 = opts.oauth2_client_secret,
    _router = router,
    _on_error = opts.on_error,
    _log_fn = opts.log == nil and default_log or opts.log,
    insecure = opts.insecure_skip_verify == true,
  }, Webhook)
  if own_router then
    -- Report errors as they happen, in event order.
    router.on_error = function(err, ev) self:report(err, ev) end
  end
  if self.insecure then
    self:_log("warn", "webhook handler created with insecure_skip_verify = true")
  end
  return self
end

--- webhook.handler(opts) -> function(request) -> response
-- opts: consumer_secret (required), oauth2_client_secret, on_event = fn(event)
-- or router = events.router(), on_error = fn(err, event), dedupe = n,
-- insecure_skip_verify = false, log = fn(level, msg) (default: warnings and
-- errors to stderr; pass function() end to silence).
-- request: { method, path, query = {...}, raw_query = "...", headers = {...}
-- (any case), body = "..." }; response: { status, headers, body }.
function M.handler(opts)
  local wh = M.new(opts, "handler")
  return function(request)
    return wh:handle(request)
  end
end

M.Webhook = Webhook

return M
