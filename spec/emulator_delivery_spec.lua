-- CRC for real (against a second nginx), signed event delivery, replay.
local H = require "emulator_helper"
local core = require "account_activity.core"
local cjson = require "cjson.safe"

describe("emulator CRC", function()
  local emu, c, rcv, cfg
  setup(function()
    emu = H.start { config = { crc = { timeout_ms = 300 } } }
    c = H.client(emu)
    cfg = emu.config
    rcv = H.receiver(cfg.app.consumer_secret)
  end)
  teardown(function()
    if rcv then rcv:stop() end
    if emu then emu:stop() end
  end)
  before_each(function() emu:reset() end)

  it("sends crc_token (base64 of a UUID), nonce and a signature over the query string", function()
    H.register(c, rcv)
    local last = rcv:last_crc()
    assert.equal(48, #last.token)
    assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+$", core.base64_decode(last.token))
    assert.equal(18, #last.nonce)
    assert.matches("^%d+$", core.base64_decode(last.nonce .. "=="))
    local want = "sha256=" .. core.base64_encode(core.hmac_sha256(cfg.app.consumer_secret, last.query))
    assert.equal(want, last.sig)
    assert.matches("^crc_token=", last.query)
    local r = emu:control("POST", "/_emulator/crc", {})
    assert.is_true(r.results[1].ok)
    assert.not_equal(last.token, rcv:last_crc().token)
  end)

  it("marks the webhook invalid on a wrong token, a slow answer, a 500, non-JSON, or no server", function()
    local modes = { wrong = "invalid_token", slow = "latency", e500 = "non_200", notjson = "invalid_token" }
    for mode, why in pairs(modes) do
      local res = c:call("POST", "/1.1/account_activity/webhooks.json", { auth = "owner", query = { url = rcv:hook(mode) } })
      assert.equal(403, res.status, mode)
      assert.equal(214, res.json.errors[1].code, mode)
      local v2 = c:call("POST", "/2/webhooks", { json = { url = rcv:hook(mode) } })
      assert.matches("^CrcValidationFailed: ", v2.json.errors[1].message)
      assert.truthy(why)
    end
    local dead = c:call("POST", "/2/webhooks", { json = { url = H.dead_url() } })
    assert.matches("^CrcValidationFailed: ", dead.json.errors[1].message)

    -- a valid webhook turned invalid by the periodic CRC (control call)
    local wh = H.register(c, rcv, "ok")
    assert(emu:control("POST", "/_emulator/config", { app = { consumer_secret = "rotated" } }))
    local r = emu:control("POST", "/_emulator/crc", { webhook_id = wh.id })
    assert.is_false(r.results[1].valid)
    assert.equal("invalid_token", r.results[1].reason)
    local list = c:call("GET", "/1.1/account_activity/webhooks.json")
    assert.is_false(list.json[1].valid)
    assert(emu:control("POST", "/_emulator/config", { app = { consumer_secret = cfg.app.consumer_secret } }))
    -- PUT re-validates and re-enables
    assert.equal(204, c:call("PUT", "/1.1/account_activity/webhooks/" .. wh.id .. ".json", { auth = "owner" }).status)
    assert.is_true(c:call("GET", "/1.1/account_activity/webhooks.json").json[1].valid)
  end)

  it("marks a registered webhook invalid when the periodic CRC fails, with the reason", function()
    local expect = { wrong = "invalid_token", slow = "latency", e500 = "non_200", notjson = "invalid_token" }
    local wh = H.register(c, rcv, "ok")
    for mode, why in pairs(expect) do
      rcv:set_mode(mode)
      local r = emu:control("POST", "/_emulator/crc", { webhook_id = wh.id })
      assert.is_false(r.results[1].valid, mode)
      assert.equal(why, r.results[1].reason, mode)
      assert.is_false(c:call("GET", "/2/webhooks").json.data[1].valid, mode)
      -- PUT fails the same way, then succeeds once the receiver is fixed
      local put = c:call("PUT", "/2/webhooks/" .. wh.id)
      assert.matches("^CrcValidationFailed: ", put.json.errors[1].message)
      rcv:set_mode(nil)
      assert.equal(200, c:call("PUT", "/2/webhooks/" .. wh.id).status)
      assert.is_true(c:call("GET", "/2/webhooks").json.data[1].valid)
    end
    -- unreachable: a second receiver that goes away
    local gone = H.receiver(cfg.app.consumer_secret)
    local wh2 = H.register(c, gone, "ok")
    gone:stop()
    local r = emu:control("POST", "/_emulator/crc", { webhook_id = wh2.id })
    assert.is_false(r.results[1].valid)
    assert.equal("unreachable", r.results[1].reason)
  end)

  it("reports why a periodic CRC failed", function()
    local wh = H.register(c, rcv, "ok")
    local faults = emu:control("POST", "/_emulator/config", { crc = { timeout_ms = 300 } })
    assert.truthy(faults)
    -- a slow receiver: budget exceeded
    local slow = H.start { config = { crc = { timeout_ms = 100 } } }
    local sc = H.client(slow)
    local res = sc:call("POST", "/2/webhooks", { json = { url = rcv:hook("slow", "?delay=0.3") } })
    assert.equal(400, res.status)
    assert.matches("High latency", res.json.errors[1].message)
    slow:stop()
    local r = emu:control("POST", "/_emulator/crc", { webhook_id = wh.id })
    assert.is_true(r.results[1].ok)
    assert.is_number(r.results[1].ms)
  end)
end)

describe("emulator delivery", function()
  local emu, c, rcv, cfg
  setup(function()
    emu = H.start {}
    c = H.client(emu)
    cfg = emu.config
    rcv = H.receiver(cfg.app.consumer_secret)
  end)
  teardown(function()
    if rcv then rcv:stop() end
    if emu then emu:stop() end
  end)
  before_each(function()
    emu:reset()
    rcv:clear()
  end)

  local function subscribe(wh, u)
    local res = c:call("POST", "/1.1/account_activity/webhooks/" .. wh.id .. "/subscriptions/all.json", { auth = u })
    assert.equal(204, res.status, res.body)
  end

  local function check_signature(r)
    local want = "sha256=" .. core.base64_encode(core.hmac_sha256(cfg.app.consumer_secret, r.body))
    assert.is_true(core.equal(want, r.sig))
    assert.equal("application/json", r.ctype)
  end

  local EXPECT = {
    tweet_create = "tweet_create_events", favorite = "favorite_events", follow = "follow_events",
    unfollow = "follow_events", block = "block_events", unblock = "block_events", mute = "mute_events",
    unmute = "mute_events", direct_message = "direct_message_events",
    direct_message_indicate_typing = "direct_message_indicate_typing_events",
    direct_message_mark_read = "direct_message_mark_read_events", tweet_delete = "tweet_delete_events",
    unfollow_events = "unfollow_events", user_event = "user_event",
  }

  it("delivers every event type, signed, synchronously with per-delivery status", function()
    local wh = H.register(c, rcv)
    local u = cfg.users[1]
    for typ in pairs(EXPECT) do
      if typ ~= "user_event" then
        subscribe(wh, u)
        local r = emu:control("POST", "/_emulator/deliver", { user_id = u.user_id, type = typ, wait = true })
        assert.equal(1, #r.deliveries, typ)
        assert.is_true(r.deliveries[1].ok, typ)
        assert.equal(200, r.deliveries[1].status)
        c:call("DELETE", "/1.1/account_activity/webhooks/" .. wh.id .. "/subscriptions/" .. u.user_id .. "/all.json")
      end
    end
    local got = rcv:received()
    assert.equal(13, #got)
    for _, r in ipairs(got) do
      check_signature(r)
      local env = cjson.decode(r.body)
      assert.equal(u.user_id, env.for_user_id)
    end
    local seen = {}
    for _, r in ipairs(got) do
      for k in pairs(cjson.decode(r.body)) do seen[k] = true end
    end
    for typ, key in pairs(EXPECT) do
      if typ ~= "user_event" then assert.is_true(seen[key], key) end
    end
    local dm = nil
    for _, r in ipairs(got) do
      local e = cjson.decode(r.body)
      if e.direct_message_events then dm = e end
    end
    assert.equal("message_create", dm.direct_message_events[1].type)
    assert.equal(u.user_id, dm.direct_message_events[1].message_create.target.recipient_id)
    assert.truthy(dm.users[u.user_id])
    assert.truthy(next(dm.apps))
    assert.equal("table", type(dm.direct_message_events[1].message_create.message_data.entities.hashtags))
  end)

  it("uses type on follow_events for unfollow, and unfollow_events for the documented shape", function()
    local wh = H.register(c, rcv)
    local u = cfg.users[2]
    subscribe(wh, u)
    emu:control("POST", "/_emulator/deliver", { user_id = u.user_id, type = "unfollow", wait = true })
    emu:control("POST", "/_emulator/deliver", { user_id = u.user_id, type = "unfollow", shape = "documented", wait = true })
    local got = rcv:received()
    local a, b = cjson.decode(got[1].body), cjson.decode(got[2].body)
    assert.equal("unfollow", a.follow_events[1].type)
    assert.equal("unfollow", b.unfollow_events[1].type)
  end)

  it("delivers a revoke (user_event without for_user_id) and drops the subscription", function()
    local wh = H.register(c, rcv)
    local u = cfg.users[3]
    subscribe(wh, u)
    local r = emu:control("POST", "/_emulator/deliver", { user_id = u.user_id, type = "user_event", wait = true })
    assert.is_true(r.deliveries[1].ok)
    local env = cjson.decode(rcv:received()[1].body)
    assert.is_nil(env.for_user_id)
    assert.equal(u.user_id, env.user_event.revoke.source.user_id)
    assert.equal(404, c:call("GET", "/1.1/account_activity/webhooks/" .. wh.id .. "/subscriptions/all.json",
      { auth = u }).status)
  end)

  it("delivers asynchronously from a timer and only to valid, subscribed webhooks", function()
    local wh = H.register(c, rcv)
    local u, other = cfg.users[1], cfg.users[2]
    subscribe(wh, u)
    local r, status = emu:control("POST", "/_emulator/deliver", { user_id = u.user_id, type = "favorite", count = 3 })
    assert.equal(202, status)
    assert.equal(3, r.queued)
    assert.truthy(H.wait_for(function() return #rcv:received() == 3 end, 5))
    local none = emu:control("POST", "/_emulator/deliver", { user_id = other.user_id, type = "favorite", wait = true })
    assert.equal(0, #none.deliveries)
    local bad = emu:control("POST", "/_emulator/deliver", { user_id = u.user_id, type = "nonsense", wait = true })
    assert.matches("unknown event type", bad.error)
  end)

  it("reports failed deliveries (500, unreachable)", function()
    local wh = H.register(c, rcv, "ok")
    subscribe(wh, cfg.users[1])
    local r = emu:control("POST", "/_emulator/deliver", { user_id = cfg.users[1].user_id, type = "follow", wait = true })
    assert.is_true(r.deliveries[1].ok)
    rcv:stop()
    local r2 = emu:control("POST", "/_emulator/deliver", { user_id = cfg.users[1].user_id, type = "follow", wait = true })
    assert.is_false(r2.deliveries[1].ok)
    assert.matches("^network", r2.deliveries[1].error)
    rcv = H.receiver(cfg.app.consumer_secret)
  end)

  it("replays the delivered events of a window, then sends replay_job_status", function()
    local wh = H.register(c, rcv)
    local u = cfg.users[1]
    subscribe(wh, u)
    emu:control("POST", "/_emulator/deliver", { user_id = u.user_id, type = "tweet_create", count = 2, wait = true })
    local first = rcv:received()
    assert.equal(2, #first)
    rcv:clear()
    local now = os.time()
    local res = c:call("POST", "/1.1/account_activity/replay/webhooks/" .. wh.id .. "/subscriptions/all.json",
      { query = { from_date = os.date("!%Y%m%d%H%M", now - 300), to_date = os.date("!%Y%m%d%H%M", now + 60) } })
    assert.equal(202, res.status, res.body)
    local got = H.wait_for(function()
      local g = rcv:received()
      if #g >= 3 then return g end
    end, 5)
    assert.equal(3, #got)
    assert.equal(first[1].body, got[1].body)
    assert.equal(first[2].body, got[2].body)
    local status = cjson.decode(got[3].body).replay_job_status
    assert.equal("Complete", status.job_state)
    assert.equal(res.json.job_id, status.job_id)
    assert.equal(wh.id, status.webhook_id)
    for _, r in ipairs(got) do check_signature(r) end
    local st = emu:control("GET", "/_emulator/state")
    assert.equal("Complete", st.replay_jobs[1].state)
  end)
end)

describe("emulator delivery retries (like X: 3 s, 27 s, 242 s; compressed here)", function()
  local emu, c, rcv, cfg
  setup(function()
    emu = H.start { config = { delivery = { timeout_ms = 300, retry_schedule = { 0.1, 0.2, 0.4 } } } }
    c = H.client(emu)
    cfg = emu.config
    rcv = H.receiver(cfg.app.consumer_secret)
  end)
  teardown(function()
    if rcv then rcv:stop() end
    if emu then emu:stop() end
  end)
  before_each(function()
    emu:reset()
    rcv:set_mode(nil)
    rcv:clear()
  end)

  local function subscribed_webhook(mode)
    local wh = H.register(c, rcv, mode)
    local res = c:call("POST", "/1.1/account_activity/webhooks/" .. wh.id .. "/subscriptions/all.json",
      { auth = cfg.users[1] })
    assert.equal(204, res.status, res.body)
    return wh
  end

  local function attempts()
    return (emu:control("GET", "/_emulator/deliveries")).entries
  end

  it("retries a delivery answered 500 until it gets a 200, each attempt in the delivery log", function()
    subscribed_webhook("ok")
    rcv:set_mode("e500")
    local r = emu:control("POST", "/_emulator/deliver", { user_id = cfg.users[1].user_id, type = "favorite", wait = true })
    assert.is_false(r.deliveries[1].ok)
    assert.equal(0.1, r.deliveries[1].retry_in)
    assert.truthy(H.wait_for(function() return #rcv:received() >= 2 end, 5))
    rcv:set_mode(nil)
    assert.truthy(H.wait_for(function()
      local list = attempts()
      return list[#list] and list[#list].ok
    end, 5))
    local list = attempts()
    assert.is_true(#list >= 3 and #list <= 4, #list .. " attempts")
    for i, a in ipairs(list) do
      assert.equal(i, a.attempt)
      assert.equal(list[1].body_md5, a.body_md5)
      if i < #list then
        assert.is_false(a.ok)
        assert.equal(500, a.status)
        assert.equal(({ 0.1, 0.2, 0.4 })[i], a.retry_in)
      end
    end
    local got = rcv:received()
    assert.equal(#list, #got)
    for _, g in ipairs(got) do
      assert.equal(got[1].body, g.body)
      assert.equal(got[1].sig, g.sig)
    end
  end)

  it("gives up after the schedule: four attempts in all", function()
    subscribed_webhook("ok")
    rcv:set_mode("e500")
    emu:control("POST", "/_emulator/deliver", { user_id = cfg.users[1].user_id, type = "follow" })
    assert.truthy(H.wait_for(function()
      local list = attempts()
      return list[#list] and list[#list].gave_up
    end, 5))
    core.sleep(0.5) -- a fifth attempt would land by now
    local list = attempts()
    assert.equal(4, #list)
    assert.equal(4, #rcv:received())
    assert.is_nil(list[4].retry_in)
  end)

  it("retries a delivery nobody answers", function()
    local dead = H.receiver(cfg.app.consumer_secret)
    local wh = H.register(c, dead, "ok")
    assert.equal(204, c:call("POST", "/1.1/account_activity/webhooks/" .. wh.id .. "/subscriptions/all.json",
      { auth = cfg.users[1] }).status)
    dead:stop()
    emu:control("POST", "/_emulator/deliver", { user_id = cfg.users[1].user_id, type = "follow" })
    assert.truthy(H.wait_for(function()
      local list = attempts()
      return list[#list] and list[#list].gave_up
    end, 5))
    local list = attempts()
    assert.equal(4, #list)
    assert.matches("^network", list[1].error)
  end)
end)
