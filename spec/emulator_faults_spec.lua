-- Fault injection, rate limits and latency.
local H = require "emulator_helper"
local core = require "account_activity.core"

describe("emulator faults and rate limits", function()
  local emu, c
  local LIST = "/1.1/account_activity/webhooks.json"
  setup(function()
    emu = H.start {}
    c = H.client(emu)
  end)
  teardown(function() if emu then emu:stop() end end)
  before_each(function()
    emu:reset()
    emu:control("POST", "/_emulator/config", { rate_limits = { enforce = false, limits = {} }, latency_ms = 0 })
  end)

  it("puts x-rate-limit headers on every response", function()
    local a = c:call("GET", LIST)
    assert.equal("15", a.headers["x-rate-limit-limit"])
    assert.equal("14", a.headers["x-rate-limit-remaining"])
    assert.is_true(tonumber(a.headers["x-rate-limit-reset"]) > os.time())
    local b = c:call("GET", LIST)
    assert.equal("13", b.headers["x-rate-limit-remaining"])
    local v2 = c:call("GET", "/2/webhooks")
    assert.equal("450", v2.headers["x-rate-limit-limit"])
    local err = c:call("GET", LIST, { bearer = "bad" })
    assert.truthy(err.headers["x-rate-limit-limit"])
    local nf = c:call("GET", "/1.1/nothing.json")
    assert.truthy(nf.headers["x-rate-limit-remaining"])
  end)

  it("answers 429 code 88 once the limit is used up when enforced", function()
    emu:control("POST", "/_emulator/config", { rate_limits = { enforce = true, limits = { ["v1.list"] = 2 } } })
    assert.equal(200, c:call("GET", LIST).status)
    assert.equal(200, c:call("GET", LIST).status)
    local res = c:call("GET", LIST)
    assert.equal(429, res.status)
    assert.equal(88, res.json.errors[1].code)
    assert.equal("0", res.headers["x-rate-limit-remaining"])
    -- other endpoints have their own windows
    assert.equal(200, c:call("GET", "/1.1/account_activity/subscriptions/count.json").status)
    local v2 = c:call("GET", "/2/webhooks")
    assert.equal(200, v2.status)
  end)

  it("is lenient by default (counts but does not refuse)", function()
    emu:control("POST", "/_emulator/config", { rate_limits = { limits = { ["v1.list"] = 1 } } })
    c:call("GET", LIST)
    local res = c:call("GET", LIST)
    assert.equal(200, res.status)
    assert.equal("0", res.headers["x-rate-limit-remaining"])
  end)

  it("injects a status, body and headers for the next N matching requests", function()
    local r = emu:control("POST", "/_emulator/faults", { method = "GET", path = "/webhooks%.json$", count = 2,
      status = 429, headers = { ["retry-after"] = "7", ["x-rate-limit-reset"] = "12345" } })
    assert.equal(1, #r.faults)
    local a = c:call("GET", LIST)
    assert.equal(429, a.status)
    assert.equal(88, a.json.errors[1].code)
    assert.equal("7", a.headers["retry-after"])
    assert.equal("12345", a.headers["x-rate-limit-reset"])
    assert.equal(429, c:call("GET", LIST).status)
    assert.equal(200, c:call("GET", LIST).status)
    -- method must match
    emu:control("POST", "/_emulator/faults", { method = "POST", path = "webhooks", status = 503 })
    assert.equal(200, c:call("GET", LIST).status)
    emu:control("DELETE", "/_emulator/faults")
    assert.equal(0, #emu:control("GET", "/_emulator/faults").faults)
  end)

  it("injects custom bodies, invalid JSON, delays, resets and truncated bodies", function()
    emu:control("POST", "/_emulator/faults", { path = "^/2/webhooks$", status = 500, body = { errors = { { code = 131, message = "x" } } } })
    local a = c:call("GET", "/2/webhooks")
    assert.equal(500, a.status)
    assert.equal(131, a.json.errors[1].code)

    emu:control("POST", "/_emulator/faults", { path = "^/2/webhooks$", action = "invalid_json" })
    local b = c:call("GET", "/2/webhooks")
    assert.equal(200, b.status)
    assert.is_nil(b.json)

    emu:control("POST", "/_emulator/faults", { path = "^/2/webhooks$", delay_ms = 300 })
    local t0 = core.now()
    local d = c:call("GET", "/2/webhooks")
    assert.equal(200, d.status)
    assert.is_true(core.now() - t0 >= 0.29)

    local s = core.session { timeout = 2 }
    emu:control("POST", "/_emulator/faults", { path = "^/2/webhooks$", action = "reset" })
    local res, err = s:request { method = "GET", url = emu.url .. "/2/webhooks",
      headers = { Authorization = "Bearer " .. emu.config.app.bearer_token } }
    assert.is_nil(res)
    assert.equal("network", err.kind)

    emu:control("POST", "/_emulator/faults", { path = "^/2/webhooks$", action = "truncate" })
    local res2, err2 = s:request { method = "GET", url = emu.url .. "/2/webhooks",
      headers = { Authorization = "Bearer " .. emu.config.app.bearer_token } }
    assert.is_nil(res2)
    assert.equal("network", err2.kind)
    s:close()
    assert.equal(200, c:call("GET", "/2/webhooks").status)
  end)

  it("rejects malformed faults", function()
    local r, status = emu:control("POST", "/_emulator/faults", { action = "explode" })
    assert.equal(400, status)
    assert.matches("action", r.error)
    local r2, status2 = emu:control("POST", "/_emulator/faults", { path = "[" })
    assert.equal(400, status2)
    assert.matches("pattern", r2.error)
  end)

  it("adds latency_ms to every API request but not to the control plane", function()
    emu:control("POST", "/_emulator/config", { latency_ms = 200 })
    local t0 = core.now()
    c:call("GET", LIST)
    assert.is_true(core.now() - t0 >= 0.19)
    t0 = core.now()
    emu:control("GET", "/_emulator/state")
    assert.is_true(core.now() - t0 < 0.15)
    emu:control("POST", "/_emulator/config", { latency_ms = 0 })
  end)
end)
