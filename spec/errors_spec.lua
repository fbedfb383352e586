local errors = require "account_activity.errors"
local cjson = require "cjson"

local function res(status, body, headers)
  return { status = status, headers = headers or { ["content-type"] = "application/json" },
           body = type(body) == "table" and cjson.encode(body) or body or "" }
end

local REQ = { method = "POST", url = "https://api.twitter.com/1.1/account_activity/webhooks/1/subscriptions/all.json" }

local function v11(status, code, message)
  return errors.from_response(res(status, { errors = { { code = code, message = message } } }), REQ)
end

local function v2(status, message, extra)
  local body = { title = "Invalid Request", detail = "One or more parameters to your request was invalid.",
                 type = "https://api.x.com/2/problems/invalid-request",
                 errors = { { message = message } } }
  for k, v in pairs(extra or {}) do body[k] = v end
  return errors.from_response(res(status, body), { method = "POST", url = "https://api.x.com/2/webhooks" })
end

describe("errors", function()
  it("parses the v1.1 envelope and prints one readable line", function()
    local e = v11(409, 355, "Subscription already exists.")
    assert.are.equal("conflict", e.kind)
    assert.are.equal(409, e.status)
    assert.are.equal(355, e.code)
    assert.are.equal("Subscription already exists.", e.message)
    assert.are.equal(1, #e.errors)
    assert.is_true(errors.is_error(e))
    assert.are.equal("HTTP 409 on POST https://api.twitter.com/1.1/account_activity/webhooks/1/subscriptions/all.json:"
      .. " [355] Subscription already exists.", tostring(e))
  end)

  it("keeps every error of the list, first one as code/message", function()
    local e = errors.from_response(res(400, { errors = {
      { code = 215, message = "Bad Authentication data." }, { code = 32, message = "Could not authenticate you." } } }), REQ)
    assert.are.equal(215, e.code)
    assert.are.equal(2, #e.errors)
    assert.are.equal(32, e.errors[2].code)
  end)

  it("maps v1.1 codes to kinds", function()
    local cases = {
      [32] = "auth", [89] = "auth", [135] = "auth", [215] = "auth",
      [200] = "forbidden", [220] = "forbidden", [261] = "forbidden", [348] = "forbidden", [99] = "forbidden",
      [170] = "invalid_webhook", [214] = "invalid_webhook",
      [34] = "not_found", [355] = "conflict", [88] = "rate_limit",
      [357] = "argument", [356] = "argument",
    }
    for code, kind in pairs(cases) do
      assert.are.equal(kind, v11(400, code, "x").kind, "code " .. code)
    end
  end)

  it("tells a CRC 214 from the quota 214", function()
    assert.are.equal("invalid_webhook", v11(403, 214, "High latency on CRC GET request. Your webhook should respond in less than 3 seconds.").kind)
    assert.are.equal("forbidden", v11(403, 214, "Too many resources already created.").kind)
  end)

  it("reads the v2 reason before the first colon, or the title", function()
    local e = v2(400, "DuplicateUrlFailed: URL is already registered for this app")
    assert.are.equal("conflict", e.kind)
    assert.are.equal("DuplicateUrlFailed", e.reason)
    assert.is_nil(e.code)
    assert.matches("HTTP 400 on POST https://api.x.com/2/webhooks: DuplicateUrlFailed: URL is already", tostring(e), nil, true)

    local t = errors.from_response(res(400, { errors = { { title = "DuplicateSubscriptionFailed", detail = "Subscription exists" } } }), REQ)
    assert.are.equal("conflict", t.kind)
    assert.are.equal("DuplicateSubscriptionFailed", t.reason)

    local cases = {
      CrcValidationFailed = "invalid_webhook", UrlValidationFailed = "invalid_webhook",
      DuplicateSubscriptionFailed = "conflict", ReplayConflictError = "conflict",
      WebhookIdInvalid = "not_found", SubscriptionNotFound = "not_found",
      QueryParamInvalid = "argument", WebhookLimitExceeded = "forbidden",
    }
    for reason, kind in pairs(cases) do
      local err = v2(400, reason .. ": details here")
      assert.are.equal(kind, err.kind, reason)
      assert.are.equal(reason, err.reason)
    end
  end)

  it("classifies top-level problems by the type path, whatever the host", function()
    local e = errors.from_response(res(404, { title = "Not Found Error", detail = "Could not find webhook",
      type = "https://api.twitter.com/2/problems/resource-not-found" }), REQ)
    assert.are.equal("not_found", e.kind)
    assert.are.equal("Could not find webhook", e.message)
    local f = errors.from_response(res(403, { title = "Client Forbidden", detail = "no access",
      type = "https://api.twitter.com/2/problems/client-forbidden" }), REQ)
    assert.are.equal("forbidden", f.kind)
  end)

  it("falls back on the status", function()
    assert.are.equal("rate_limit", errors.from_response(res(429, ""), REQ).kind)
    assert.are.equal("not_found", errors.from_response(res(404, ""), REQ).kind)
    assert.are.equal("auth", errors.from_response(res(401, ""), REQ).kind)
    assert.are.equal("forbidden", errors.from_response(res(403, ""), REQ).kind)
    assert.are.equal("http", errors.from_response(res(500, ""), REQ).kind)
    assert.are.equal("http", errors.from_response(res(400, ""), REQ).kind)
  end)

  it("quotes a non-JSON body on one line", function()
    local e = errors.from_response(res(502, "<html>\r\nBad gateway\r\n</html>", { ["content-type"] = "text/html" }), REQ)
    assert.are.equal("http", e.kind)
    assert.are.equal("<html> Bad gateway </html>", e.message)
    assert.is_nil(tostring(e):find("\n"))
  end)

  it("carries rate limit headers and retry-after as numbers", function()
    local e = errors.from_response(res(429, { errors = { { code = 88, message = "Rate limit exceeded" } } }, {
      ["x-rate-limit-limit"] = "15", ["x-rate-limit-remaining"] = "0", ["x-rate-limit-reset"] = "1700000900",
      ["retry-after"] = "30" }), REQ)
    assert.are.equal("rate_limit", e.kind)
    assert.are.same({ limit = 15, remaining = 0, reset = 1700000900 }, e.rate_limit)
    assert.are.equal(30, e.retry_after)
  end)

  -- a header sent twice reaches the client joined ("0, 99"), and tonumber
  -- of that is nil: the rate limit was lost exactly when it was exhausted
  it("reads repeated rate-limit headers as their most restrictive value", function()
    local e = errors.from_response(res(429, "", {
      ["x-rate-limit-limit"] = "900, 15", ["x-rate-limit-remaining"] = "0, 99",
      ["x-rate-limit-reset"] = "1700000900,1700000000", ["retry-after"] = "5, 30" }), REQ)
    assert.are.same({ limit = 15, remaining = 0, reset = 1700000900 }, e.rate_limit)
    assert.are.equal(30, e.retry_after)
    assert.are.same({ limit = 15, remaining = 0, reset = 1700000900 }, errors.rate_limit {
      ["x-rate-limit-limit"] = "15", ["x-rate-limit-remaining"] = "99, 0", ["x-rate-limit-reset"] = " 1700000900 , x" })
    assert.are.same({}, errors.rate_limit { ["x-rate-limit-remaining"] = "soon, later" })
  end)

  it("gives the client's response.rate_limit and retry wait from repeated headers", function()
    local aa = require "account_activity"
    local calls = 0
    local c = aa.new { consumer_key = "k", consumer_secret = "s", bearer_token = "b", retries = 0,
      transport = function()
        calls = calls + 1
        return { status = 200, body = '{"ok":true}', headers = { ["content-type"] = "application/json",
          ["x-rate-limit-limit"] = "15, 15", ["x-rate-limit-remaining"] = "0, 99", ["x-rate-limit-reset"] = "1700000900" } }
      end }
    local _, r = assert(c:request("GET", "/1.1/account_activity/all/webhooks.json", { auth = "app" }))
    assert.are.same({ limit = 15, remaining = 0, reset = 1700000900 }, r.rate_limit)
  end)

  it("redacts secret query parameters and user info from the request URL", function()
    local e = errors.from_response(res(500, ""), { method = "POST",
      url = "https://user:pw@api.twitter.com/oauth2/invalidate_token?access_token=AAAA%2Fsecret&x=1&oauth_signature=abc" })
    assert.are.equal("https://REDACTED@api.twitter.com/oauth2/invalidate_token?access_token=REDACTED&x=1&oauth_signature=REDACTED",
      e.request.url)
    assert.is_nil(tostring(e):find("AAAA", 1, true))
    assert.is_nil(tostring(e):find("pw@", 1, true))
    -- the webhook URL parameter is not a secret
    assert.are.equal("https://api.twitter.com/1.1/account_activity/webhooks.json?url=https%3A%2F%2Fa.example%2Fw",
      errors.redact_url("https://api.twitter.com/1.1/account_activity/webhooks.json?url=https%3A%2F%2Fa.example%2Fw"))
  end)

  it("wraps transport failures", function()
    local e = errors.from_transport({ kind = "network", message = "Couldn't connect to server", connect = true },
      { method = "GET", url = "http://127.0.0.1:1/x" })
    assert.are.equal("network", e.kind)
    assert.is_true(e.connect)
    assert.are.equal("network error on GET http://127.0.0.1:1/x: Couldn't connect to server", tostring(e))
    e.attempts = 3
    assert.matches("(after 3 attempts)", tostring(e), nil, true)
    assert.are.equal("timeout", errors.from_transport({ kind = "timeout", message = "t" }).kind)
    assert.are.equal("tls", errors.from_transport({ kind = "tls", message = "t" }).kind)
    assert.are.equal("network", errors.from_transport({ kind = "weird", message = "t" }).kind)
  end)

  it("scrubs known secrets from every text field", function()
    local e = v11(401, 32, "token s3cr3t-value was rejected; s3cr3t-value again")
    errors.scrub(e, { "s3cr3t-value" })
    assert.are.equal("token REDACTED was rejected; REDACTED again", e.message)
    assert.are.equal("token REDACTED was rejected; REDACTED again", e.errors[1].message)
  end)

  it("prints decode errors as bad responses", function()
    local e = errors.make("decode", "expected a webhook object", { method = "GET", url = "http://h/x" }, { status = 200 })
    assert.are.equal("bad response (HTTP 200) on GET http://h/x: expected a webhook object", tostring(e))
  end)
end)
