--- The Challenge-Response Check, for real: GET url?crc_token=..&nonce=..
-- through cosockets, signed like X signs it, answer checked against the
-- consumer secret within the budget (3 s by default).
local core = require "account_activity.core"
local util = require "account_activity.emulator.util"
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

local function uuid()
  local b = core.random_bytes(16)
  local hex = b:gsub(".", function(c) return string.format("%02x", c:byte()) end)
  return hex:sub(1, 8) .. "-" .. hex:sub(9, 12) .. "-4" .. hex:sub(14, 16) .. "-a" .. hex:sub(18, 20)
    .. "-" .. hex:sub(21, 32)
end

--- A token shaped like X's: base64 of a UUID string (48 characters).
function M.new_token()
  return core.base64_encode(uuid())
end

--- X's nonce: unpadded base64 of a millisecond epoch (18 characters).
function M.new_nonce()
  return (core.base64_encode(util.ms_string(ngx.now())):gsub("=+$", ""))
end

--- Run one CRC against `url`. Returns { ok, reason, status, ms, message }.
function M.check(url, cfg)
  local secret = cfg.app.consumer_secret
  local budget = ((cfg.crc and cfg.crc.timeout_ms) or 3000) / 1000
  local token, nonce = M.new_token(), M.new_nonce()
  local query = "crc_token=" .. util.url_encode(token) .. "&nonce=" .. util.url_encode(nonce)
  local sep = url:find("?", 1, true) and "&" or "?"
  local signature = "sha256=" .. core.base64_encode(core.hmac_sha256(secret, query))
  ngx.update_time()
  local t0 = ngx.now()
  local res, err = transport.request {
    method = "GET", url = url .. sep .. query, timeout = budget + 0.05,
    headers = { ["x-twitter-webhooks-signature"] = signature, ["User-Agent"] = "" },
  }
  ngx.update_time()
  local ms = math.floor((ngx.now() - t0) * 1000)
  local out = { ms = ms }
  if not res then
    out.reason = err.kind == "timeout" and "latency" or "unreachable"
  elseif ngx.now() - t0 > budget then
    out.reason, out.status = "latency", res.status
  elseif res.status ~= 200 then
    out.reason, out.status = "non_200", res.status
  else
    out.status = res.status
    local body = util.decode(res.body)
    local expected = "sha256=" .. core.base64_encode(core.hmac_sha256(secret, token))
    if type(body) ~= "table" or type(body.response_token) ~= "string"
      or not core.equal(body.response_token, expected) then
      out.reason = "invalid_token"
    else
      out.ok = true
    end
  end
  if not out.ok then out.message = M.MESSAGES[out.reason] end
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
