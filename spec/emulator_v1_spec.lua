-- v1.1 enterprise and premium endpoints of the emulator, driven through raw
-- requests signed with core.oauth1_header and sent with core.session.
local H = require "emulator_helper"

describe("emulator v1.1 enterprise", function()
  local emu, c, rcv, cfg
  local AA = "/1.1/account_activity"

  setup(function()
    emu = H.start { config = { envs = { "dev" }, limits = { webhooks = 2 } } }
    c = H.client(emu)
    cfg = emu.config
    rcv = H.receiver(cfg.app.consumer_secret)
  end)
  teardown(function()
    if rcv then rcv:stop() end
    if emu then emu:stop() end
  end)
  before_each(function() assert(emu:reset()) end)

  it("registers a webhook (url in the query) after a real CRC and lists it", function()
    local res = c:call("POST", AA .. "/webhooks.json", { auth = "owner", query = { url = rcv:hook("ok") } })
    assert.equal(200, res.status)
    local wh = res.json
    assert.matches("^%d+$", wh.id)
    assert.equal(rcv:hook("ok"), wh.url)
    assert.is_true(wh.valid)
    assert.matches("^%d%d%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d %+0000$", wh.created_timestamp)
    local list = c:call("GET", AA .. "/webhooks.json")
    assert.equal(200, list.status)
    assert.equal(1, #list.json)
    assert.equal(wh.id, list.json[1].id)
  end)

  it("accepts the url as a form body too", function()
    local res = c:call("POST", AA .. "/webhooks.json", { auth = "owner", form = { url = rcv:hook("ok") } })
    assert.equal(200, res.status, res.body)
    assert.equal(rcv:hook("ok"), res.json.url)
  end)

  it("lists an empty array as []", function()
    local res = c:call("GET", AA .. "/webhooks.json")
    assert.equal("[]", res.body)
  end)

  it("can report created_at instead of created_timestamp", function()
    assert(emu:control("POST", "/_emulator/config", { webhook_time_field = "created_at" }))
    local wh = H.register(c, rcv)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$", wh.created_at)
    assert.is_nil(wh.created_timestamp)
    assert(emu:control("POST", "/_emulator/config", { webhook_time_field = "created_timestamp" }))
  end)

  it("rejects bad URLs, duplicates and too many webhooks with 214", function()
    for _, url in ipairs { "http://example.com/hook", "https://example.com:8443/hook", "not a url", "" } do
      local res = c:call("POST", AA .. "/webhooks.json", { auth = "owner", query = { url = url } })
      assert.equal(403, res.status, url)
      assert.equal(214, res.json.errors[1].code)
    end
    H.register(c, rcv)
    local dup = c:call("POST", AA .. "/webhooks.json", { auth = "owner", query = { url = rcv:hook("ok") } })
    assert.equal(403, dup.status)
    assert.equal(214, dup.json.errors[1].code)
    H.register(c, rcv, "ok2")
    local over = c:call("POST", AA .. "/webhooks.json", { auth = "owner", query = { url = rcv:hook("ok3") } })
    assert.equal(403, over.status)
    assert.equal("Too many resources already created.", over.json.errors[1].message)
  end)

  it("fails registration with 214 when the CRC fails", function()
    local res = c:call("POST", AA .. "/webhooks.json", { auth = "owner", query = { url = rcv:hook("wrong") } })
    assert.equal(403, res.status)
    assert.equal(214, res.json.errors[1].code)
    assert.matches("Invalid CRC token", res.json.errors[1].message)
    assert.equal("[]", c:call("GET", AA .. "/webhooks.json").body)
  end)

  it("re-validates with PUT (204) and deletes with DELETE (204)", function()
    local wh = H.register(c, rcv)
    local put = c:call("PUT", AA .. "/webhooks/" .. wh.id .. ".json", { auth = "owner" })
    assert.equal(204, put.status)
    assert.equal("", put.body)
    local put_app = c:call("PUT", AA .. "/webhooks/" .. wh.id .. ".json", { auth = "app" })
    assert.equal(204, put_app.status)
    local del = c:call("DELETE", AA .. "/webhooks/" .. wh.id .. ".json", { auth = "owner" })
    assert.equal(204, del.status)
    local again = c:call("DELETE", AA .. "/webhooks/" .. wh.id .. ".json", { auth = "owner" })
    assert.equal(404, again.status)
    assert.equal(34, again.json.errors[1].code)
    local put404 = c:call("PUT", AA .. "/webhooks/123.json", { auth = "owner" })
    assert.equal(34, put404.json.errors[1].code)
  end)

  it("subscribes, checks, lists, counts and unsubscribes", function()
    local wh = H.register(c, rcv)
    local base = AA .. "/webhooks/" .. wh.id .. "/subscriptions"
    local u1, u2 = cfg.users[1], cfg.users[2]
    assert.equal(404, c:call("GET", base .. "/all.json", { auth = u1 }).status)
    assert.equal(204, c:call("POST", base .. "/all.json", { auth = u1 }).status)
    assert.equal(204, c:call("POST", base .. "/all.json", { auth = u2 }).status)
    local dup = c:call("POST", base .. "/all.json", { auth = u1 })
    assert.equal(409, dup.status)
    assert.equal(355, dup.json.errors[1].code)
    assert.equal(204, c:call("GET", base .. "/all.json", { auth = u1 }).status)
    local list = c:call("GET", base .. "/all/list.json")
    assert.equal(200, list.status)
    assert.same({ webhook_id = wh.id, webhook_url = wh.url, application_id = list.json.application_id,
      subscriptions = { { user_id = u1.user_id }, { user_id = u2.user_id } } }, list.json)
    local count = c:call("GET", AA .. "/subscriptions/count.json")
    assert.equal("2", count.json.subscriptions_count_all)
    assert.equal("0", count.json.subscriptions_count_direct_messages)
    assert.equal("string", type(count.json.provisioned_count))
    assert.equal("string", type(count.json.account_name))
    -- user-context delete (deprecated) and app-only delete by id
    assert.equal(204, c:call("DELETE", base .. "/all.json", { auth = u1 }).status)
    local gone = c:call("DELETE", base .. "/all.json", { auth = u1 })
    assert.equal(404, gone.status)
    assert.equal(204, c:call("DELETE", base .. "/" .. u2.user_id .. "/all.json").status)
    local nf = c:call("DELETE", base .. "/" .. u2.user_id .. "/all.json")
    assert.equal(404, nf.status)
    assert.equal(34, nf.json.errors[1].code)
    assert.matches('"subscriptions":%[%]', c:call("GET", base .. "/all/list.json").body)
  end)

  it("answers 34 for an unknown webhook and 170 for an invalid one", function()
    local res = c:call("POST", AA .. "/webhooks/999/subscriptions/all.json", { auth = cfg.users[1] })
    assert.equal(404, res.status)
    assert.equal(34, res.json.errors[1].code)
    local wh = H.register(c, rcv)
    -- make it invalid: a fault is not needed, the periodic CRC can fail
    assert(emu:control("POST", "/_emulator/config", { app = { consumer_secret = "changed-secret" } }))
    local r = emu:control("POST", "/_emulator/crc", { webhook_id = wh.id })
    assert.is_false(r.results[1].valid)
    local res2 = c:call("POST", AA .. "/webhooks/" .. wh.id .. "/subscriptions/all.json",
      { auth = cfg.users[1], consumer_secret = "changed-secret" })
    assert.equal(170, res2.json.errors[1].code)
    assert(emu:control("POST", "/_emulator/config", { app = { consumer_secret = cfg.app.consumer_secret } }))
  end)

  it("answers 348 for a user the app may not subscribe", function()
    local users = {}
    for i, u in ipairs(cfg.users) do users[i] = { user_id = u.user_id, screen_name = u.screen_name,
      access_token = u.access_token, access_token_secret = u.access_token_secret } end
    users[1].aaa_permitted = false
    assert(emu:control("POST", "/_emulator/config", { users = users }))
    local wh = H.register(c, rcv)
    local res = c:call("POST", AA .. "/webhooks/" .. wh.id .. "/subscriptions/all.json", { auth = cfg.users[1] })
    assert.equal(403, res.status)
    assert.equal(348, res.json.errors[1].code)
    users[1].aaa_permitted = nil
    assert(emu:control("POST", "/_emulator/config", { users = users }))
  end)

  describe("auth", function()
    it("answers 403/220 for a bearer token on a user-context endpoint", function()
      local res = c:call("POST", AA .. "/webhooks.json", { auth = "app", query = { url = rcv:hook() } })
      assert.equal(403, res.status)
      assert.equal(220, res.json.errors[1].code)
    end)
    it("answers 401/89 for a bad bearer token", function()
      local res = c:call("GET", AA .. "/webhooks.json", { bearer = "AAAAnot-the-token" })
      assert.equal(401, res.status)
      assert.equal(89, res.json.errors[1].code)
    end)
    it("answers 401/32 for a bad OAuth signature", function()
      local res = c:call("POST", AA .. "/webhooks.json",
        { auth = "owner", token_secret = "wrong", query = { url = rcv:hook() } })
      assert.equal(401, res.status)
      assert.equal(32, res.json.errors[1].code)
      local res2 = c:call("POST", AA .. "/webhooks.json",
        { auth = "owner", consumer_key = "someone-else", query = { url = rcv:hook() } })
      assert.equal(32, res2.json.errors[1].code)
    end)
    it("signs over the query as addressed (a tampered query fails)", function()
      local core = require "account_activity.core"
      local url = emu.url .. AA .. "/webhooks.json?url=" .. core.percent_encode(rcv:hook())
      local header = core.oauth1_header { method = "POST", url = url, consumer_key = cfg.app.consumer_key,
        consumer_secret = cfg.app.consumer_secret, token = cfg.app.owner.access_token,
        token_secret = cfg.app.owner.access_token_secret }
      local res = c:call("POST", AA .. "/webhooks.json", { auth = { header = header },
        query = { url = rcv:hook("other") } })
      assert.equal(32, res.json.errors[1].code)
    end)
    it("answers 401/89 for an unknown access token", function()
      local res = c:call("GET", AA .. "/webhooks/1/subscriptions/all.json",
        { auth = { access_token = "1-unknown", access_token_secret = "x" } })
      assert.equal(401, res.status)
      assert.equal(89, res.json.errors[1].code)
    end)
    it("rejects a stale timestamp (135) and a reused nonce (32)", function()
      local old = c:call("GET", AA .. "/webhooks/1/subscriptions/all.json",
        { auth = cfg.users[1], timestamp = tostring(os.time() - 1000) })
      assert.equal(401, old.status)
      assert.equal(135, old.json.errors[1].code)
      local wh = H.register(c, rcv)
      local path = AA .. "/webhooks/" .. wh.id .. "/subscriptions/all.json"
      local first = c:call("POST", path, { auth = cfg.users[1], nonce = "samenonce123" })
      assert.equal(204, first.status)
      local replayed = c:call("GET", path, { auth = cfg.users[1], nonce = "samenonce123" })
      assert.equal(401, replayed.status)
      assert.equal(32, replayed.json.errors[1].code)
    end)
    it("answers 400/215 without credentials", function()
      local res = c:call("GET", AA .. "/webhooks.json", { auth = "none" })
      assert.equal(400, res.status)
      assert.equal(215, res.json.errors[1].code)
    end)
    it("answers 403/220 when a non-owner registers", function()
      local res = c:call("POST", AA .. "/webhooks.json", { auth = cfg.users[1], query = { url = rcv:hook() } })
      assert.equal(403, res.status)
      assert.equal(220, res.json.errors[1].code)
    end)
    it("answers 401/32 'Invalid authentication method' for user context on app-only endpoints", function()
      local res = c:call("POST", AA .. "/replay/webhooks/1/subscriptions/all.json",
        { auth = "owner", query = { from_date = "202001010000", to_date = "202001010100" } })
      assert.equal(401, res.status)
      assert.equal(32, res.json.errors[1].code)
      assert.matches("^Invalid authentication method", res.json.errors[1].message)
      local res2 = c:call("GET", AA .. "/subscriptions/count.json", { auth = "owner" })
      assert.equal(32, res2.json.errors[1].code)
    end)
  end)

  describe("replay", function()
    local function minute(t) return os.date("!%Y%m%d%H%M", t) end

    it("validates its parameters (357, 358, 368, 356, 34, 360)", function()
      local wh = H.register(c, rcv)
      local path = AA .. "/replay/webhooks/" .. wh.id .. "/subscriptions/all.json"
      local now = os.time()
      local cases = {
        { {}, 357 },
        { { from_date = "2020", to_date = minute(now) }, 358 },
        { { from_date = minute(now - 600), to_date = minute(now + 86400) }, 368 },
        { { from_date = minute(now - 600), to_date = minute(now - 1200) }, 356 },
        { { from_date = minute(now - 7 * 86400), to_date = minute(now - 600) }, 356 },
      }
      for _, case in ipairs(cases) do
        local res = c:call("POST", path, { query = case[1] })
        assert.equal(400, res.status, res.body)
        assert.equal(case[2], res.json.errors[1].code, res.body)
      end
      local unknown = c:call("POST", AA .. "/replay/webhooks/42/subscriptions/all.json",
        { query = { from_date = minute(now - 600), to_date = minute(now) } })
      assert.equal(404, unknown.status)
      assert.equal(34, unknown.json.errors[1].code)
      local neg = c:call("POST", AA .. "/replay/webhooks/-1/subscriptions/all.json",
        { query = { from_date = minute(now - 600), to_date = minute(now) } })
      assert.equal(360, neg.json.errors[1].code)
    end)

    it("accepts a job (202), refuses a second one (409/355) and sends replay_job_status", function()
      local wh = H.register(c, rcv, "slow")
      local path = AA .. "/replay/webhooks/" .. wh.id .. "/subscriptions/all.json"
      local now = os.time()
      local q = { from_date = minute(now - 600), to_date = minute(now + 60) }
      local res = c:call("POST", path, { query = q })
      assert.equal(202, res.status, res.body)
      assert.matches("^%d+$", res.json.job_id)
      assert.matches("Z$", res.json.created_at)
      local again = c:call("POST", path, { query = q })
      assert.equal(409, again.status)
      assert.equal(355, again.json.errors[1].code)
      local done = H.wait_for(function()
        for _, r in ipairs(rcv:received()) do
          if r.body:find("replay_job_status", 1, true) and r.body:find(res.json.job_id, 1, true) then return r end
        end
      end, 5)
      assert.truthy(done)
      assert.matches('"job_state":"Complete"', done.body)
    end)
  end)
end)

describe("emulator v1.1 premium", function()
  local emu, c, rcv, cfg
  local ALL = "/1.1/account_activity/all"

  setup(function()
    emu = H.start { config = { envs = { "dev", "prod" } } }
    c = H.client(emu)
    cfg = emu.config
    rcv = H.receiver(cfg.app.consumer_secret)
  end)
  teardown(function()
    if rcv then rcv:stop() end
    if emu then emu:stop() end
  end)

  it("runs the whole flow per environment", function()
    local reg = c:call("POST", ALL .. "/dev/webhooks.json", { auth = "owner", query = { url = rcv:hook() } })
    assert.equal(200, reg.status, reg.body)
    local wh = reg.json
    assert.is_true(wh.valid)
    -- one webhook per env
    local second = c:call("POST", ALL .. "/dev/webhooks.json", { auth = "owner", query = { url = rcv:hook("ok2") } })
    assert.equal(403, second.status)
    assert.equal(214, second.json.errors[1].code)
    local all = c:call("GET", ALL .. "/webhooks.json")
    assert.equal(200, all.status)
    assert.equal(2, #all.json.environments)
    assert.equal("dev", all.json.environments[1].environment_name)
    assert.equal(wh.id, all.json.environments[1].webhooks[1].id)
    assert.equal(0, #all.json.environments[2].webhooks)
    local env_list = c:call("GET", ALL .. "/dev/webhooks.json")
    assert.equal(wh.id, env_list.json[1].id)
    assert.equal(200, c:call("GET", ALL .. "/dev/webhooks.json", { auth = "owner" }).status)
    assert.equal(204, c:call("PUT", ALL .. "/dev/webhooks/" .. wh.id .. ".json", { auth = "owner" }).status)

    local u = cfg.users[1]
    assert.equal(204, c:call("POST", ALL .. "/dev/subscriptions.json", { auth = u }).status)
    assert.equal(355, c:call("POST", ALL .. "/dev/subscriptions.json", { auth = u }).json.errors[1].code)
    assert.equal(204, c:call("GET", ALL .. "/dev/subscriptions.json", { auth = u }).status)
    assert.equal(404, c:call("GET", ALL .. "/dev/subscriptions.json", { auth = cfg.users[2] }).status)
    local list = c:call("GET", ALL .. "/dev/subscriptions/list.json")
    assert.equal("dev", list.json.environment)
    assert.equal(u.user_id, list.json.subscriptions[1].user_id)
    assert.equal("1", c:call("GET", ALL .. "/subscriptions/count.json").json.subscriptions_count_all)
    assert.equal(204, c:call("DELETE", ALL .. "/dev/subscriptions/" .. u.user_id .. ".json").status)
    assert.equal(404, c:call("DELETE", ALL .. "/dev/subscriptions/" .. u.user_id .. ".json").status)
    assert.equal(204, c:call("POST", ALL .. "/dev/subscriptions.json", { auth = u }).status)
    assert.equal(204, c:call("DELETE", ALL .. "/dev/subscriptions.json", { auth = u }).status)
    -- subscribing in an env without a webhook
    assert.equal(170, c:call("POST", ALL .. "/prod/subscriptions.json", { auth = u }).json.errors[1].code)
    assert.equal(204, c:call("DELETE", ALL .. "/dev/webhooks/" .. wh.id .. ".json", { auth = "owner" }).status)
  end)

  it("answers 403/200 for an unknown (case-sensitive) environment", function()
    local res = c:call("GET", ALL .. "/Dev/webhooks.json")
    assert.equal(403, res.status)
    assert.equal(200, res.json.errors[1].code)
  end)
end)
