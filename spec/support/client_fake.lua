-- A scripted function transport for the client's unit specs: answers from a
-- queue, records every request, and a client wired to it with a recorded
-- sleep and a settable clock.
local cjson = require "cjson"

local M = {}

M.CREDS = {
  consumer_key = "ck-KEY-1234",
  consumer_secret = "cs-SECRET-abcdef",
  access_token = "at-OWNER-5678",
  access_token_secret = "ats-OWNERSECRET-9999",
}

M.USER = { user_id = "2244994945", access_token = "ut-USER-1111", access_token_secret = "uts-USERSECRET-2222" }

--- A response table. body: a table (encoded as JSON), a string, or nil.
function M.res(status, body, headers)
  local h = { ["content-type"] = "application/json" }
  for k, v in pairs(headers or {}) do h[k] = v end
  if body == nil then h["content-type"] = nil end
  if type(body) == "table" then body = cjson.encode(body) end
  return { status = status, headers = h, body = body or "", http_version = "1.1", time = 0.001 }
end

function M.fail(kind, message, connect)
  return { err = { kind = kind, message = message or kind, connect = connect } }
end

--- A transport answering `script` in order (then `default` when given).
-- Entries: a response table, M.fail(...), or function(req) -> res | nil, err.
function M.transport(script, default)
  local t = { requests = {}, script = script or {}, default = default, n = 0 }
  function t.fn(req)
    t.requests[#t.requests + 1] = req
    t.n = t.n + 1
    local r = t.script[t.n]
    if r == nil then r = t.default end
    if r == nil then error("fake transport: no answer scripted for request " .. t.n .. " " .. req.method .. " " .. req.url) end
    if type(r) == "function" then return r(req) end
    if r.err then return nil, r.err end
    local copy = {}
    for k, v in pairs(r) do copy[k] = v end
    local h = {}
    for k, v in pairs(r.headers or {}) do h[k] = v end
    copy.headers = h
    return copy
  end
  return t
end

--- client, transport, sleeps (array of seconds slept), clock (table with .now)
function M.client(opts, script, default)
  local aa = require "account_activity"
  local t = M.transport(script, default)
  local sleeps = {}
  local clock = { now = 1700000000 }
  local o = {}
  for k, v in pairs(M.CREDS) do o[k] = v end
  o.transport = t.fn
  o.sleep = function(s) sleeps[#sleeps + 1] = s; clock.now = clock.now + s end
  o.clock = function() return clock.now end
  for k, v in pairs(opts or {}) do if k ~= "unset" then o[k] = v end end
  for _, name in ipairs(opts and opts.unset or {}) do o[name] = nil end
  return aa.new(o), t, sleeps, clock
end

M.BEARER = { token_type = "bearer", access_token = "AAAA-BEARER-%2F-secret" }

return M
