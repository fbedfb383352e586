--- The Challenge-Response Check, for real: GET url?crc_token=..&nonce=..
-- through cosockets, signed like X signs it, answer checked against the
-- consumer secret within the budget (3 s by default).
local shared = require "account_activity.crc"
local state = require "account_activity.emulator.state"
local transport = require "account_activity.transport.ngx"

local M = {}

-- v1.1 messages (code 214); v2 uses the same text after "CrcValidationFailed: ".
M.MESSAGES = {
  invalid_token = "Webhook URL does not meet the requirements. Invalid CRC token or json response format.",
  latency = "High latency on CRC GET request. Your webhook should respond in less than 3 seconds.",
  non_200 = "Non-200 response code during CRC GET request (i.e. 404, 500, etc).",
  unreachable = "Webhook URL does not meet the requirements. The webhook URL could not be reached.",
}

--- A token shaped like X's: base64 of a UUID string (48 characters).
M.new_token = shared.new_token

--- X's nonce: unpadded base64 of a millisecond epoch (18 characters).
function M.new_nonce()
  return shared.new_nonce(ngx.now())
end

local function now()
  ngx.update_time()
  return ngx.now()
end

--- Run one CRC against `url`, as X does (crc.probe over cosockets).
-- Returns { ok, reason, status, ms, message }.
function M.check(url, cfg)
  local secret = cfg.app.consumer_secret
  local r = shared.probe {
    send = transport.request, url = url, clock = now, now = now, user_agent = "",
    budget = ((cfg.crc and cfg.crc.timeout_ms) or 3000) / 1000,
    timeout = ((cfg.crc and cfg.crc.timeout_ms) or 3000) / 1000 + 0.05,
    sign = function(s) return shared.sign(secret, s) end,
  }
  local out = { ok = r.ok or nil, status = r.status, ms = math.floor(r.latency * 1000) }
  if not r.ok then
    -- X words a missing and a wrong token the same way
    out.reason = (r.reason == "no_token" or r.reason == "mismatch") and "invalid_token" or r.reason
    out.message = M.MESSAGES[out.reason]
  end
  return out
end

--- CRC a stored webhook and record the outcome (valid flag, last_crc).
function M.run(wh, cfg)
  local r = M.check(wh.url, cfg)
  local cur = state.webhook(wh.id)
  if cur then
    cur.valid = r.ok == true
    cur.last_crc = { ok = r.ok == true, reason = r.reason, status = r.status, ms = r.ms, at = ngx.now() }
    state.save_webhook(cur)
    wh.valid, wh.last_crc = cur.valid, cur.last_crc
  end
  return r
end

return M
