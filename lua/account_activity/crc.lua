--- What X signs with the consumer secret, in one place: the CRC answer, the
-- signature of a delivery, the shape of a crc_token, and the CRC probe
-- (a GET as X sends it, and the judgement of the answer). The webhook side,
-- the jobs (health), the CLI and the emulator all use this module, so the
-- two ends of a check can never drift apart.
--
-- Pure: no network. The probe takes a `send` function (a transport).
local core = require "account_activity.core"

local hmac_sha256, b64encode, hmac_sha256_check, equal =
  core.hmac_sha256, core.base64_encode, core.hmac_sha256_check, core.equal
local type, error, format, sub = type, error, string.format, string.sub

local M = {}

M.PREFIX = "sha256="
M.HEADER = "x-twitter-webhooks-signature"
M.BUDGET = 3 -- seconds X gives a webhook to answer a CRC
local PREFIX, PREFIX_LEN = M.PREFIX, #M.PREFIX
-- base64 of a 32-byte digest is 44 chars; anything far longer is not worth
-- decoding (the core never decodes more than 256 either).
local MAX_SIG_LEN = 256

function M.check_secret(v, name, fname, level)
  if type(v) ~= "string" or v == "" then
    error(format("bad argument '%s' to '%s' (non-empty string expected, got %s)",
      name, fname, v == "" and "empty string" or type(v)), level or 3)
  end
end
local check_secret = M.check_secret

--- sign(secret, message) -> "sha256=" .. base64(HMAC-SHA256(secret, message))
-- Unchecked, for hot paths: a delivery's signature header, a CRC answer,
-- the signature X puts on a CRC GET (over its query string).
local function sign(secret, message)
  return PREFIX .. b64encode(hmac_sha256(secret, message))
end
M.sign = sign

--- response(consumer_secret, crc_token) -> the `response_token` of a CRC answer.
function M.response(consumer_secret, crc_token)
  check_secret(consumer_secret, "consumer_secret", "crc_response")
  if type(crc_token) ~= "string" then
    error("bad argument 'crc_token' to 'crc_response' (string expected, got " .. type(crc_token) .. ")", 2)
  end
  return sign(consumer_secret, crc_token)
end

local WHY = {
  base64 = "signature is not valid base64",
  length = "signature has the wrong length",
  mismatch = "signature does not match",
}

--- verify(secret, message, header_value) -> true | false, reason (unchecked).
-- The core decodes the base64 and compares digests, not base64 text (equal
-- bytes, whatever the padding), in constant time.
function M.verify(secret, msg, value)
  if value == nil or value == "" then return false, "missing signature header" end
  if sub(value, 1, PREFIX_LEN) ~= PREFIX then
    return false, "signature lacks the sha256= prefix"
  end
  if #value > MAX_SIG_LEN then return false, "signature has the wrong length" end
  local ok, why = hmac_sha256_check(secret, msg, value, PREFIX_LEN + 1)
  if ok then return true end
  return false, WHY[why]
end
local verify = M.verify

--- verify_signature(consumer_secret, raw_body, header_value) -> true | false, reason
function M.verify_signature(consumer_secret, raw_body, header_value)
  check_secret(consumer_secret, "consumer_secret", "verify_signature")
  if type(raw_body) ~= "string" then
    error("bad argument 'raw_body' to 'verify_signature' (string expected, got " .. type(raw_body) .. ")", 2)
  end
  if header_value ~= nil and type(header_value) ~= "string" then
    error("bad argument 'header_value' to 'verify_signature' (string or nil expected, got "
      .. type(header_value) .. ")", 2)
  end
  return verify(consumer_secret, raw_body, header_value)
end

-- X's tokens are base64/base64url of a UUID (48 chars seen). Anything else
-- is refused: otherwise the CRC endpoint signs any string with the key that
-- signs deliveries, e.g. a forged event body (vercel/chat#775).
local base64_alphabet = core.base64_alphabet
function M.token_shape_ok(t)
  local n = #t
  return n >= 16 and n <= 128 and base64_alphabet(t)
end
local token_shape_ok = M.token_shape_ok

--- token_valid(t) -> true when t has the shape of one of X's crc_tokens.
function M.token_valid(t) return type(t) == "string" and token_shape_ok(t) end

--- A token shaped like X's: base64 of a random UUID string (48 characters).
function M.new_token()
  local b = core.random_bytes(16)
  if not b then error("no random bytes for a CRC token", 2) end
  local hex = b:gsub(".", function(ch) return format("%02x", ch:byte()) end)
  return b64encode(sub(hex, 1, 8) .. "-" .. sub(hex, 9, 12) .. "-4" .. sub(hex, 14, 16) .. "-a"
    .. sub(hex, 18, 20) .. "-" .. sub(hex, 21, 32))
end

--- X's nonce: unpadded base64 of a millisecond epoch (18 characters).
function M.new_nonce(epoch_seconds)
  return (b64encode(format("%.0f", epoch_seconds * 1000)):gsub("=+$", ""))
end

--- probe{ send, url, sign, clock, now, budget, timeout, user_agent } -> result
-- A CRC as X runs it: GET url?crc_token=<X-shaped token>&nonce=..., signed
-- over that query string, and the answer judged. `sign(s)` signs with the
-- consumer secret (so callers need not hand the secret out); `clock` is
-- monotonic seconds, `now` epoch seconds (the nonce). result = { ok,
-- reason = nil | "unreachable" | "latency" | "non_200" | "no_token" |
-- "mismatch", status, latency, budget, error = the transport's error }.
function M.probe(o)
  local budget = o.budget or M.BUDGET
  local token = M.new_token()
  local pe = core.percent_encode
  local query = "crc_token=" .. pe(token) .. "&nonce=" .. pe(M.new_nonce(o.now()))
  local headers = { [M.HEADER] = o.sign(query) }
  if o.user_agent then headers["User-Agent"] = o.user_agent end
  local t0 = o.clock()
  local res, terr = o.send {
    method = "GET", url = o.url .. (o.url:find("?", 1, true) and "&" or "?") .. query,
    headers = headers, timeout = o.timeout or (budget + 2),
  }
  local latency = (res and tonumber(res.time)) or (o.clock() - t0)
  local out = { ok = false, latency = latency, budget = budget }
  if not res then
    out.reason = terr and terr.kind == "timeout" and "latency" or "unreachable"
    out.error = terr
    return out
  end
  out.status = res.status
  if latency > budget then
    out.reason = "latency"
  elseif res.status ~= 200 then
    out.reason = "non_200"
  else
    local body = require("cjson.safe").decode(res.body or "")
    local got = type(body) == "table" and body.response_token
    if type(got) ~= "string" then
      out.reason = "no_token"
    elseif not equal(got, o.sign(token)) then
      out.reason = "mismatch"
    else
      out.ok = true
    end
  end
  return out
end

return M
