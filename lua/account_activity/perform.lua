--- The request engine under every client method: sign (auth.lua), send
-- through the client's transport, retry what is safe to retry (idempotent
-- calls on 429 / 5xx / network errors, honouring the server's hints, within
-- max_wait; a POST only when it provably never left), classify the answer.
-- The jobs add one thing on top (workflows.lua's with_retries): a subscribe
-- is a POST X lets us repeat ("already subscribed" is success there), so a
-- job retries it on 5xx where a single call may not.
local args = require "account_activity.args"
local errors = require "account_activity.errors"
local cjson_safe = require "cjson.safe"

local http_date = args.http_date

local M = {}

local json = cjson_safe.new()

local core = require "account_activity.core"

local pe = core.percent_encode

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

local function encode_pairs(t)
  local out = {}
  for _, k in ipairs(sorted_keys(t)) do
    local v = t[k]
    if type(v) == "table" then
      for _, item in ipairs(v) do out[#out + 1] = pe(k) .. "=" .. pe(tostring(item)) end
    else
      out[#out + 1] = pe(k) .. "=" .. pe(tostring(v))
    end
  end
  return table.concat(out, "&")
end

M.encode_pairs = encode_pairs

local IDEMPOTENT = { GET = true, PUT = true, DELETE = true, HEAD = true, OPTIONS = true }

-- Seconds to wait before the next attempt, from the server's hints.
local function retry_hint(res, now)
  local h = res.headers or {}
  local ra = errors.header_number(h, "retry-after", "max")
  if not ra and h["retry-after"] then
    local t = http_date(h["retry-after"])
    if t then ra = t - now end
  end
  if ra then return math.max(ra, 0) end
  if res.status == 429 then
    local reset = errors.header_number(h, "x-rate-limit-reset", "max")
    if reset then return math.max(reset - now + 1, 0) end
  end
  return nil
end

function M.backoff(self, n)
  local d = self.backoff * 2 ^ (n - 1)
  d = d * (0.5 + math.random() * 0.5)
  return math.min(d, self.max_wait)
end

local function looks_json(res)
  local body = res.body
  if type(body) ~= "string" or body == "" or body:match("^%s*$") then return false end
  local ct = (res.headers or {})["content-type"]
  if ct and ct:find("json", 1, true) then return true end
  return body:match("^%s*[%[{]") ~= nil
end

--- perform(client, secrets, call) -> res | nil, err: the engine under every
-- method: sign, send, retry, classify. `secrets` is the client's credentials
-- table (client.lua keeps it out of the client object).
-- call = { name, method, path, query, form, json (string), auth, user,
--          success = {status=true}, absent = {status=true}, retries }
function M.perform(self, s, call)
  local url = self.base_url .. call.path
  if call.query and next(call.query) then
    url = url .. (call.path:find("?", 1, true) and "&" or "?") .. encode_pairs(call.query)
  end
  if call.auth == "oauth2_client" and not s.client_secret then
    call.form = call.form or {}
    call.form.client_id = s.client_id
  end
  local body, content_type
  if call.json ~= nil then
    body, content_type = call.json, "application/json"
  elseif call.form and next(call.form) then
    body, content_type = encode_pairs(call.form), "application/x-www-form-urlencoded;charset=UTF-8"
  end
  local retries = call.retries or self.retries
  local idempotent = IDEMPOTENT[call.method]
  local attempts, retried = 0, 0
  local history = {}
  local refetched, reskewed, refreshed = false, false, false
  -- Token-endpoint calls made while a batch runs go out at once instead of
  -- yielding: they run under a token store lock another task may want.
  local send = call.direct and self._unbatched_send or self.send
  local sleep = call.direct and self._unbatched_sleep or self.sleep

  while true do
    attempts = attempts + 1
    local headers = { ["User-Agent"] = self.user_agent, ["Accept"] = "application/json" }
    if content_type then headers["Content-Type"] = content_type end
    if call.headers then for k, v in pairs(call.headers) do headers[k] = v end end
    local auth_used, aerr = self:_authorize(call, url, headers)
    if not auth_used then return self:_fail(aerr, call, attempts, history) end
    local req = { method = call.method, url = url, headers = headers, body = body,
                  timeout = call.timeout }
    local safe_req = { method = call.method, url = url }

    local res, terr = send(req)
    local err, retryable, wait
    if res then
      res.rate_limit = errors.rate_limit(res.headers)
      local decoded
      if looks_json(res) then
        local v, derr = json.decode(res.body)
        if v == nil and derr then
          decoded = false
        else
          decoded = v
        end
      end
      res.json = decoded or nil
      local status = res.status
      local absent = call.absent and call.absent[status]
      if absent and call.absent_unless and type(res.body) == "string"
          and res.body:find(call.absent_unless, 1, true) then
        absent = false
      end
      if call.success[status] or absent then
        res.attempts = attempts
        res.history = history
        if decoded == false and not absent then
          err = errors.make("decode", "invalid JSON in the " .. status .. " response", safe_req,
            { status = status, rate_limit = res.rate_limit })
          return self:_fail(err, call, attempts, history)
        end
        return res
      end
      err = errors.from_response(res, safe_req, decoded or nil)
      history[#history + 1] = { status = status, code = err.code, kind = err.kind }
      if status == 401 and auth_used == "oauth2_user" and not refreshed then
        -- Revoked, expired early, or rotated by another process: refresh
        -- once (or take the other process's token) and try again.
        refreshed = true
        local ok, rerr = require("account_activity.auth").after_401(self, call.user, call.oauth2_sent, call.name)
        if not ok then
          rerr.status = rerr.status or status
          return self:_fail(rerr, call, attempts, history)
        end
        retryable, wait = true, 0
        retried = retried - 1
      elseif err.code == 89 and auth_used == "app" and not refetched then
        -- The cached bearer was invalidated elsewhere: fetch a fresh one once.
        refetched = true
        s.bearer = nil
        s.bearer_given = false
        retryable, wait = true, 0
        retried = retried - 1
      elseif err.code == 135 and not reskewed and (auth_used == "user" or auth_used == "subscriber")
          and http_date(res.headers and res.headers["date"]) then
        -- Our clock is off: sign with the server's time and try once more.
        reskewed = true
        self.skew = http_date(res.headers["date"]) - os.time()
        retryable, wait = true, 0
        retried = retried - 1
      elseif idempotent and (status == 429 or status >= 500) then
        retryable = true
        wait = retry_hint(res, self.clock())
        if wait and wait > self.max_wait then
          err.wait = wait
          retryable = false
        end
        err.retry_after = err.retry_after or wait
      end
    else
      err = errors.from_transport(terr, safe_req)
      history[#history + 1] = { kind = err.kind, connect = err.connect }
      -- A POST is retried only when it provably never left this host.
      retryable = (err.kind == "network" or err.kind == "timeout")
        and (idempotent or err.connect == true)
    end

    if not retryable or retried >= retries then
      return self:_fail(err, call, attempts, history)
    end
    retried = retried + 1
    if wait == nil then wait = M.backoff(self, retried) end
    history[#history].wait = wait
    if wait > 0 then sleep(wait) end
  end
end


return M
