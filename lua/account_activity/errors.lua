--- The one error shape of lua-account-activity.
--
-- Every run-time failure (HTTP status, network, TLS, timeout, bad JSON, rate
-- limit) is returned as `nil, err` where `err` is a table with this
-- metatable: `kind`, `status`, `code`, `reason`, `message`, `errors`,
-- `rate_limit`, `retry_after`, `request` ({method, url} with secrets
-- redacted), `attempts`. `tostring(err)` is one readable line. Callers
-- branch on `err.kind`.
local cjson = require "cjson.safe"

local M = {}

local Error = {}
Error.__index = Error
Error.__name = "account_activity.error"

M.Error = Error

-- v1.1 numeric codes. 214 is mostly a CRC/URL failure; its quota variant
-- ("Too many resources already created") is sorted out in kind_for().
local CODE_KIND = {
  [88] = "rate_limit",
  [34] = "not_found",
  [355] = "conflict",
  [32] = "auth", [89] = "auth", [135] = "auth", [215] = "auth", [61] = "auth",
  [200] = "forbidden", [220] = "forbidden", [261] = "forbidden",
  [348] = "forbidden", [99] = "forbidden",
  [170] = "invalid_webhook", [214] = "invalid_webhook",
  [356] = "argument", [357] = "argument", [358] = "argument",
  [360] = "argument", [368] = "argument",
}

-- v2 failure reasons (the text before the first ':' of errors[].message,
-- or a problem's title).
local REASON_KIND = {
  DuplicateUrlFailed = "conflict",
  DuplicateSubscriptionFailed = "conflict",
  ReplayConflictError = "conflict",
  CrcValidationFailed = "invalid_webhook",
  UrlValidationFailed = "invalid_webhook",
  WebhookIdInvalid = "not_found",
  SubscriptionNotFound = "not_found",
  WebhookLimitExceeded = "forbidden",
  SubscriptionLimitExceeded = "forbidden",
  QueryParamInvalid = "argument",
}

-- Problem `type` URIs, matched on the path suffix because live traffic uses
-- both the api.x.com and the api.twitter.com host.
local PROBLEM_KIND = {
  ["resource-not-found"] = "not_found",
  ["not-authorized-for-resource"] = "forbidden",
  ["client-forbidden"] = "forbidden",
  ["disallowed-resource"] = "forbidden",
  ["usage-capped"] = "rate_limit",
  ["rate-limit-exceeded"] = "rate_limit",
}

local STATUS_KIND = {
  [401] = "auth", [403] = "forbidden", [404] = "not_found", [409] = "conflict",
  [429] = "rate_limit", [420] = "rate_limit",
}

M.KINDS = {
  "http", "network", "timeout", "tls", "decode", "rate_limit", "not_found",
  "conflict", "auth", "forbidden", "invalid_webhook", "argument",
  "store", -- a token store could not be read, written or locked
}

-- Query parameters whose values must never leave the process in an error.
local SECRET_PARAM = {
  "token", "secret", "signature", "password", "passwd", "key", "bearer",
  "authorization", "credential",
}

local function is_secret_name(name)
  name = name:lower()
  for _, s in ipairs(SECRET_PARAM) do
    if name:find(s, 1, true) then return true end
  end
  return false
end

--- A URL with userinfo and secret-looking query values replaced.
function M.redact_url(url)
  if type(url) ~= "string" then return url end
  url = url:gsub("^(%a[%w+.-]*://)[^/@?#]*@", "%1REDACTED@")
  local base, query = url:match("^([^?]*)%?(.*)$")
  if not query then return url end
  local fragment = ""
  local q, f = query:match("^([^#]*)(#.*)$")
  if q then query, fragment = q, f end
  local parts = {}
  for pair in query:gmatch("[^&]+") do
    local name = pair:match("^([^=]*)=") or pair
    if pair:find("=", 1, true) and is_secret_name(name) then
      pair = name .. "=REDACTED"
    end
    parts[#parts + 1] = pair
  end
  return base .. "?" .. table.concat(parts, "&") .. fragment
end

-- cjson gives 5.4 floats (355.0); codes and headers read better as integers.
local function num(v)
  v = tonumber(v)
  if v and math.tointeger and v == math.floor(v) then return math.tointeger(v) or v end
  return v
end

--- The number in header `name`, or nil. A header sent more than once
-- reaches us joined ("0, 99": a proxy or a CDN adding its own), and then
-- the most restrictive number counts, `pick` = "min" (limit, remaining) or
-- "max" (reset, retry-after): reading too few calls left only waits a
-- little early, reading too many walks into a 429.
function M.header_number(headers, name, pick)
  local v = (headers or {})[name]
  local n = tonumber(v)
  if n or type(v) ~= "string" or not v:find(",", 1, true) then return num(n) end
  for part in v:gmatch("[^,]+") do
    local x = tonumber(part)
    if x and (n == nil or (pick == "max" and x > n) or (pick ~= "max" and x < n)) then n = x end
  end
  return num(n)
end

--- {limit, remaining, reset} (numbers or nil) from a response's headers.
function M.rate_limit(headers)
  return {
    limit = M.header_number(headers, "x-rate-limit-limit", "min"),
    remaining = M.header_number(headers, "x-rate-limit-remaining", "min"),
    reset = M.header_number(headers, "x-rate-limit-reset", "max"),
  }
end

local function one_line(s, max)
  s = tostring(s):gsub("[\r\n]+", " ")
  max = max or 300
  if #s > max then s = s:sub(1, max) .. "..." end
  return s
end

local function reason_of(text)
  if type(text) ~= "string" then return nil end
  local r = text:match("^%s*([%a][%w]*)%s*:")
  if r and REASON_KIND[r] then return r end
  if REASON_KIND[text] then return text end
  -- Third-party captures show the reason anywhere in the text.
  for name in pairs(REASON_KIND) do
    if text:find(name, 1, true) then return name end
  end
  return r
end

-- Normalise every error body X is known to send into a list of
-- {code = n|nil, reason = s|nil, message = s, type = s|nil}.
local function parse_body(body)
  local list = {}
  if type(body) ~= "table" then return list end
  local raw = body.errors
  if type(raw) == "table" then
    for _, e in ipairs(raw) do
      if type(e) == "table" then
        local msg = e.message or e.detail or e.title
        list[#list + 1] = {
          code = num(e.code),
          message = type(msg) == "string" and msg or nil,
          reason = reason_of(e.message) or reason_of(e.title) or reason_of(e.detail),
          type = type(e.type) == "string" and e.type or nil,
          title = e.title, detail = e.detail, label = e.label,
        }
      elseif type(e) == "string" then
        list[#list + 1] = { message = e, reason = reason_of(e) }
      end
    end
  end
  if #list == 0 and (body.title or body.detail or body.code or body.message or body.error) then
    -- A top-level Problem, or the OpenAPI "Error" object {code, message}.
    local msg = body.detail or body.message or body.title or body.error
    list[1] = {
      code = num(body.code),
      message = type(msg) == "string" and msg or nil,
      reason = reason_of(body.title) or reason_of(body.detail) or reason_of(body.message),
      type = type(body.type) == "string" and body.type or nil,
      title = body.title, detail = body.detail,
    }
  elseif #list > 0 and type(body.type) == "string" then
    -- Problem with nested errors: keep the outer type for classification.
    list.type = body.type
    list.title = body.title
  end
  return list
end

local function problem_kind(t)
  if type(t) ~= "string" then return nil end
  local suffix = t:match("/problems/([%w%-]+)$")
  return suffix and PROBLEM_KIND[suffix]
end

local function kind_for(status, list)
  if status == 429 then return "rate_limit" end
  for _, e in ipairs(list) do
    if e.reason and REASON_KIND[e.reason] then return REASON_KIND[e.reason] end
    local k = e.code and CODE_KIND[e.code]
    if k then
      if e.code == 214 and e.message and e.message:find("Too many resources", 1, true) then
        return "forbidden"
      end
      if e.code == 214 and e.message and e.message:find("Duplicate", 1, true) then
        return "conflict"
      end
      return k
    end
    k = problem_kind(e.type)
    if k then return k end
  end
  local k = problem_kind(list.type)
  if k then return k end
  return STATUS_KIND[status] or "http"
end

M.kind_for_status = function(status) return STATUS_KIND[status] or "http" end

local function new(fields)
  return setmetatable(fields, Error)
end
M.new = new

--- Build an error from a non-success HTTP response.
-- `res` is the transport response (status, headers, body); `req` the
-- request ({method, url}); `json` the decoded body when the caller has it.
function M.from_response(res, req, json)
  local headers = res.headers or {}
  if json == nil and type(res.body) == "string" and res.body ~= "" then
    json = cjson.decode(res.body)
  end
  local list = parse_body(json)
  local first = list[1] or {}
  local message = first.message
  if not message and type(res.body) == "string" and res.body ~= "" and not json then
    message = one_line(res.body, 200)
  end
  local retry_after = M.header_number(headers, "retry-after", "max")
  return new {
    kind = kind_for(res.status, list),
    status = res.status,
    code = first.code,
    reason = first.reason,
    message = message,
    errors = list,
    rate_limit = M.rate_limit(headers),
    retry_after = retry_after,
    request = req and { method = req.method, url = M.redact_url(req.url) } or nil,
    json = json,
  }
end

--- Build an error from a transport failure ({kind, message, connect}).
function M.from_transport(terr, req)
  terr = type(terr) == "table" and terr or { kind = "network", message = tostring(terr) }
  local kind = terr.kind
  if kind ~= "timeout" and kind ~= "tls" and kind ~= "argument" then kind = "network" end
  return new {
    kind = kind,
    message = terr.message and one_line(terr.message) or kind,
    connect = terr.connect and true or nil,
    errors = {},
    request = req and { method = req.method, url = M.redact_url(req.url) } or nil,
  }
end

--- An error of any kind with a message (decode failures, client-side checks).
function M.make(kind, message, req, extra)
  local e = new {
    kind = kind,
    message = message,
    errors = {},
    request = req and { method = req.method, url = M.redact_url(req.url) } or nil,
  }
  if extra then for k, v in pairs(extra) do e[k] = v end end
  return e
end

function M.is_error(v)
  return getmetatable(v) == Error
end

local KIND_LABEL = {
  network = "network error", timeout = "timeout", tls = "TLS error",
  decode = "bad response", argument = "invalid argument", not_found = "not found",
}

function Error.__tostring(e)
  local where = ""
  if e.request and e.request.url then
    where = " on " .. (e.request.method or "?") .. " " .. e.request.url
  end
  local head
  if e.status and e.kind == "decode" then
    head = "bad response (HTTP " .. tostring(e.status) .. ")" .. where
  elseif e.status then
    head = "HTTP " .. tostring(e.status) .. where
  else
    head = (KIND_LABEL[e.kind] or e.kind or "error") .. where
  end
  local msg = e.message
  if e.code and msg then
    msg = "[" .. tostring(e.code) .. "] " .. msg
  elseif e.code then
    msg = "[" .. tostring(e.code) .. "]"
  elseif e.reason and msg and not msg:find(e.reason, 1, true) then
    msg = e.reason .. ": " .. msg
  elseif e.reason and not msg then
    msg = e.reason
  end
  local s = head
  if msg and msg ~= "" then s = s .. ": " .. one_line(msg) end
  if e.attempts and e.attempts > 1 then
    s = s .. " (after " .. e.attempts .. " attempts)"
  end
  return s
end

local core_mod
local function core()
  if core_mod == nil then
    local ok, c = pcall(require, "account_activity.core")
    core_mod = ok and c or false
  end
  return core_mod or nil
end

-- Every form in which a secret may come back: as sent, percent-encoded
-- (query strings, form bodies) and base64 (Authorization: Basic, and
-- servers that echo headers encoded).
local function secret_forms(secrets)
  local forms, seen = {}, {}
  local function add(v)
    if type(v) == "string" and #v >= 4 and not seen[v] then
      seen[v] = true
      forms[#forms + 1] = v
    end
  end
  local c = core()
  -- pairs, not ipairs: a client without owner tokens has holes in its list
  for _, v in pairs(secrets or {}) do
    if type(v) == "string" then
      add(v)
      if c then
        add(c.percent_encode(v))
        add(c.base64_encode(v))
      end
    end
  end
  -- longest first, so a secret inside a longer encoded one leaves no tail
  table.sort(forms, function(x, y) return #x > #y end)
  return forms
end

local function redact(s, forms)
  for _, secret in ipairs(forms) do
    if s:find(secret, 1, true) then
      local out, from = {}, 1
      while true do
        local i, j = s:find(secret, from, true)
        if not i then break end
        out[#out + 1] = s:sub(from, i - 1)
        out[#out + 1] = "REDACTED"
        from = j + 1
      end
      out[#out + 1] = s:sub(from)
      s = table.concat(out)
    end
  end
  return s
end

--- Replace every occurrence of the given secret strings, in every form they
-- may be echoed in, in every string the error holds (message, request,
-- errors[] with all their fields, the decoded body in `json`, history):
-- the last line of defence against a server or a transport echoing one.
function M.scrub(e, secrets)
  local forms = secret_forms(secrets)
  if #forms == 0 or type(e) ~= "table" then return e end
  local visited = {}
  local function walk(t, depth)
    if visited[t] or depth > 64 then return end
    visited[t] = true
    for k, v in pairs(t) do
      if type(v) == "string" then
        local clean = redact(v, forms)
        if clean ~= v then t[k] = clean end
      elseif type(v) == "table" then
        walk(v, depth + 1)
      end
    end
  end
  walk(e, 0)
  return e
end

return M
