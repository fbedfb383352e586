-- The X Activity API end to end: the client (activity.lua, stream.lua) over
-- libcurl against the emulator (emulator/xaa.lua) in a real nginx, with a
-- second nginx as the webhook receiving signed XAA deliveries.
local H = require "emulator_helper"
local aa = require "account_activity"
local core = require "account_activity.core"
local cjson = require "cjson.safe"

describe("XAA against the emulator", function()
  local emu, rcv, cfg, c, wh, user, user2

  local function client(extra)
    local o = {
      consumer_key = cfg.app.consumer_key, consumer_secret = cfg.app.consumer_secret,
      access_token = cfg.app.owner.access_token, access_token_secret = cfg.app.owner.access_token_secret,
      bearer_token = cfg.app.bearer_token, api = "v2", base_url = emu.url, retries = 0,
    }
    for k, v in pairs(extra or {}) do o[k] = v end
    return aa.new(o)
  end

  local function knobs(x)
    local r, st = emu:control("POST", "/_emulator/config", { xaa = x })
    assert.are.equal(200, st, cjson.encode(r))
  end

  local function xstate() return (emu:control("GET", "/_emulator/xaa/state")) end

  -- Both the connection count and the streams ready to take events.
  local function wait_streams(n)
    return H.wait_for(function()
      local x = xstate()
      return x.connections == n and x.streams == n
    end, 5)
  end

  setup(function()
    emu = H.start { config = { users_count = 3, xaa = { keepalive_ms = 100 } } }
    cfg = emu.config
    rcv = H.receiver(cfg.app.consumer_secret)
    user, user2 = cfg.users[1], cfg.users[2]
  end)
  teardown(function()
    if rcv then rcv:stop() end
    if emu then emu:stop() end
  end)
  before_each(function()
    emu:reset()
    knobs { shape = "data.subscription", delete_shape = "data", duplicate_status = 400, unclassified_auth = "any",
            keepalive_ms = 100 }
    rcv:clear()
    c = client()
    wh = assert(c:register_webhook(rcv:hook("ok")))
  end)

  it("creates, lists, updates and deletes", function()
    local sub = assert(c:activity_subscribe { event_type = "post.create", filter = { user_id = user.user_id },
      tag = "mine", webhook_id = wh.id })
    assert.matches("^%d+$", sub.id)
    assert.are.same({ user_id = user.user_id }, sub.filter)
    assert.are.equal("mine", sub.tag)
    assert.are.equal(wh.id, sub.webhook_id)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT", sub.created_at)
    local list = assert(c:activity_subscriptions())
    assert.are.same({ sub }, list)
    local up = assert(c:activity_update(sub.id, { tag = "renamed" }))
    assert.are.equal("renamed", up.tag)
    assert.are.equal(sub.id, up.id)
    assert.is_true((c:activity_unsubscribe(sub.id)))
    assert.are.same({}, (c:activity_subscriptions()))
    local _, err = c:activity_unsubscribe(sub.id)
    assert.are.equal("not_found", err.kind)
  end)

  it("every configured response shape parses to the same subscription", function()
    local seen = {}
    for _, shape in ipairs { "data.subscription", "flat", "array", "empty" } do
      emu:reset()
      knobs { shape = shape, delete_shape = shape == "empty" and "empty" or "data" }
      c = client()
      wh = assert(c:register_webhook(rcv:hook("ok")))
      local sub = assert(c:activity_subscribe { event_type = "like.create",
        filter = { user_id = user.user_id, direction = "inbound" }, tag = "t", webhook_id = wh.id, user = user })
      assert.matches("^%d+$", sub.id, shape)
      local up = assert(c:activity_update(sub.id, { tag = "t2" }))
      local listed = assert(c:activity_subscriptions())[1]
      assert.are.same(listed, up, shape)
      assert.are.equal("t2", up.tag)
      assert.is_true((c:activity_unsubscribe(sub.id)))
      seen[#seen + 1] = { sub.event_type, sub.filter.direction, sub.tag, sub.webhook_id == wh.id }
    end
    for i = 2, #seen do assert.are.same(seen[1], seen[i]) end
  end)

  it("answers duplicates with 400 or 409, both kind conflict", function()
    for _, status in ipairs { 400, 409 } do
      emu:reset()
      knobs { duplicate_status = status }
      c = client()
      local args = { event_type = "profile.update.bio", filter = { user_id = user.user_id } }
      assert(c:activity_subscribe(args))
      local v, err = c:activity_subscribe(args)
      assert.is_nil(v)
      assert.are.equal(status, err.status)
      assert.are.equal("conflict", err.kind)
    end
  end)

  it("picks tokens per event and falls back to user context on a 403", function()
    local _, r = assert(c:activity_subscribe { event_type = "dm.received", user = user })
    assert.are.equal("user", r.auth)
    local _, err = c:activity_subscribe { event_type = "dm.sent", user = user, auth = "app" }
    assert.are.equal(403, err.status)
    assert.matches("OAuthAccessTokenRequired", tostring(err))
    -- another user's tokens do not subscribe this one
    _, err = c:activity_subscribe { event_type = "mute.mute", filter = { user_id = user.user_id }, user = user2 }
    assert.are.equal(403, err.status)

    knobs { unclassified_auth = "user" }
    -- the emulator's users carry both kinds of tokens: with both, OAuth 2.0
    -- goes where X's spec lists it; with OAuth 1.0a only, that one
    local oauth1_only = { user_id = user.user_id, access_token = user.access_token,
      access_token_secret = user.access_token_secret }
    for _, case in ipairs { { user, "oauth2" }, { oauth1_only, "oauth1" } } do
      c:activity_unsubscribe_many((function()
        local ids = {}
        for _, x in ipairs(assert(c:activity_subscriptions())) do
          if x.event_type == "follow.follow" then ids[#ids + 1] = x.id end
        end
        return ids
      end)())
      local since = #assert(emu:log())
      local sub, r2 = assert(c:activity_subscribe { event_type = "follow.follow", user = case[1] })
      assert.are.equal("user", r2.auth)
      assert.are.equal(user.user_id, sub.filter.user_id)
      local creates = {}
      for _, e in ipairs(assert(emu:log(since))) do
        if e.endpoint == "xaa.create" then creates[#creates + 1] = string.format("%s:%d", e.auth, e.status) end
      end
      assert.are.same({ "bearer:403", case[2] .. ":200" }, creates)
    end
  end)

  it("pages through the list", function()
    for i = 1, 5 do
      assert(c:activity_subscribe { event_type = "post.create", filter = { user_id = tostring(5000 + i) } })
    end
    local page, r = assert(c:activity_subscriptions { max_results = 2 })
    assert.are.equal(2, #page)
    assert.is_string(r.next_token)
    local all, r2 = assert(c:activity_subscriptions { max_results = 2, all = true })
    assert.are.equal(5, #all)
    assert.are.equal(3, r2.pages)
  end)

  it("bulk-deletes with a per-id report", function()
    local ids = {}
    for i = 1, 3 do
      ids[i] = assert(c:activity_subscribe { event_type = "post.delete", filter = { user_id = tostring(6000 + i) } }).id
    end
    ids[4], ids[5] = "1234567890123", "98765"
    local report = assert(c:activity_unsubscribe_many(ids))
    assert.are.same({ ids[1], ids[2], ids[3] }, report.deleted)
    assert.are.equal(2, #report.failed)
    assert.are.equal("not_found", report.failed[1].err.kind)
    assert.are.equal("1234567890123", report.failed[1].id)
    assert.are.equal(0, report.total_subscriptions)
  end)

  it("mirrors an AAA user idempotently and unmirrors", function()
    local report = assert(c:mirror_user(wh.id, user))
    assert.are.equal(17, #report.created)
    assert.are.same({}, report.failed)
    local again = assert(c:mirror_user(wh.id, user))
    assert.are.equal(0, #again.created)
    assert.are.equal(17, #again.existing)
    local other = assert(c:activity_subscribe { event_type = "post.create", filter = { user_id = user2.user_id } })
    local gone = assert(c:unmirror_user(wh.id, user))
    assert.are.equal(17, #gone.deleted)
    assert.are.same({ other }, (c:activity_subscriptions()))
  end)

  it("delivers XAA envelopes, signed, to the subscription's webhook", function()
    assert(c:activity_subscribe { event_type = "follow.follow", filter = { user_id = user.user_id },
      tag = "aa-mirror:" .. user.user_id, webhook_id = wh.id })
    assert(c:activity_subscribe { event_type = "follow.follow", filter = { user_id = user2.user_id } }) -- stream only
    local r = emu:control("POST", "/_emulator/xaa/deliver", { event_type = "follow.follow", user_id = user.user_id, wait = true })
    assert.are.equal(1, r.matched)
    assert.are.equal(1, r.delivered)
    local got = rcv:received()
    assert.are.equal(1, #got)
    assert.is_true(aa.verify_signature(cfg.app.consumer_secret, got[1].body, got[1].sig))
    local router = aa.router()
    local follows = {}
    router:on("follow", function(ev) follows[#follows + 1] = ev end)
    assert.are.equal(1, (router:dispatch(got[1].body)))
    assert.are.equal("follow.follow", follows[1].type)
    assert.are.equal(user.user_id, follows[1].for_user_id)
    assert.are.equal("aa-mirror:" .. user.user_id, follows[1].tag)
    assert.are.equal(user.user_id, follows[1].item.target.data.id)
  end)

  it("streams events with keep-alives, survives a cut mid-line, and dedupes the backfill", function()
    assert(c:activity_subscribe { event_type = "post.create", filter = { user_id = user.user_id } })
    assert(c:activity_subscribe { event_type = "dm.received", user = user2 })
    local sleeps = {}
    local st = assert(c:stream { read_timeout = 5, sleep = function(s) sleeps[#sleeps + 1] = s; core.sleep(0.05) end })
    assert(wait_streams(1))
    local d1 = emu:control("POST", "/_emulator/xaa/deliver", { event_type = "post.create", user_id = user.user_id, text = "one" })
    local d2 = emu:control("POST", "/_emulator/xaa/deliver", { event_type = "dm.received", user_id = user2.user_id })
    assert.are.same({ 1, 1 }, { d1.streamed, d2.streamed })
    local a = assert(st:next(5))
    local b = assert(st:next(5))
    assert.are.equal("post.create", a.type)
    assert.are.equal("one", a.item.text)
    assert.are.equal(user.user_id, a.item.author_id)
    assert.are.equal("dm.received", b.type)
    assert.are.equal(user2.user_id, b.for_user_id)
    core.sleep(0.25)
    -- Cut the connection in the middle of a line. The cut is asked for
    -- first: delivered first, the event could go out whole before the cut.
    -- Either way the event is on record and comes back in the backfill.
    emu:control("POST", "/_emulator/xaa/stream", { action = "cut" })
    emu:control("POST", "/_emulator/xaa/deliver", { event_type = "post.create", user_id = user.user_id, text = "cut" })
    local ev = assert(st:next(10))
    assert.are.equal(1, st.reconnects)
    assert.are.equal(1, #sleeps)
    assert.is_true(sleeps[1] >= 1 and sleeps[1] <= 1.25)
    -- the reconnect asked for a backfill: the two earlier events came again and were dropped
    assert.are.equal("cut", ev.item.text)
    assert.is_true(st.duplicates >= 2)
    assert.is_true(st.keepalives >= 1)
    assert.are.equal(3, st.count)
    st:close()
    assert(wait_streams(0))
  end)

  it("holds X's two-connection limit", function()
    local c2, c3 = client(), client()
    local s1 = assert(c:stream { read_timeout = 5 })
    local s2 = assert(c2:stream { read_timeout = 5 })
    local again, cerr = c:stream {}
    assert.is_nil(again)
    assert.are.equal("conflict", cerr.kind)
    assert(wait_streams(2))
    local s3, err = c3:stream {}
    assert.is_nil(s3)
    assert.are.equal(429, err.status)
    assert.are.equal("rate_limit", err.kind)
    s1:close()
    s2:close()
    assert(wait_streams(0))
    s3 = assert(c3:stream { read_timeout = 5 })
    s3:close()
  end)

  it("the stream takes only the app bearer", function()
    local raw = H.client(emu)
    local r = raw:call("GET", "/2/activity/stream", { auth = user })
    assert.are.equal(403, r.status)
    r = raw:call("GET", "/2/activity/stream", { auth = "app", query = { backfill_minutes = "9" } })
    assert.are.equal(400, r.status)
  end)
end)
