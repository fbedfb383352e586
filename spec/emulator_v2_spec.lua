-- v2 webhooks / Account Activity endpoints and the oauth2 token endpoints.
local H = require "emulator_helper"
local core = require "account_activity.core"

describe("emulator v2", function()
  local emu, c, rcv, cfg
  local AA = "/2/account_activity"

  setup(function()
    emu = H.start { config = { limits = { webhooks = 2, subscriptions_per_webhook = 2 } } }
    c = H.client(emu)
    cfg = emu.config
    rcv = H.receiver(cfg.app.consumer_secret)
  end)
  teardown(function()
    if rcv then rcv:stop() end
    if emu then emu:stop() end
  end)
  before_each(function() assert(emu:reset()) end)

  local function reason(res, want)
    assert.equal(400, res.status, res.body)
    assert.equal("https://api.x.com/2/problems/invalid-request", res.json.type)
    assert.equal(want, res.json.errors[1].message:match("^(%w+):"), res.body)
  end

  local function create(mode)
    local res = c:call("POST", "/2/webhooks", { json = { url = rcv:hook(mode or "ok") } })
    assert.equal(200, res.status, res.body)
    return res.json.data
  end

  it("creates (JSON body), lists, validates and deletes webhooks", function()
    local wh = create()
    assert.matches("^%d+$", wh.id)
    assert.is_true(wh.valid)
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", wh.created_at)
    local list = c:call("GET", "/2/webhooks")
    assert.equal(1, list.json.meta.result_count)
    assert.equal(wh.id, list.json.data[1].id)
    local fields = c:call("GET", "/2/webhooks", { query = { ["webhook_config.fields"] = "url" } })
    assert.is_nil(fields.json.data[1].valid)
    assert.equal(wh.url, fields.json.data[1].url)
    local put = c:call("PUT", "/2/webhooks/" .. wh.id)
    assert.equal(200, put.status)
    assert.same({ data = { valid = true } }, put.json)
    assert.equal(200, c:call("PUT", "/2/webhooks/" .. wh.id, { auth = "owner" }).status)
    local del = c:call("DELETE", "/2/webhooks/" .. wh.id)
    assert.same({ data = { deleted = true } }, del.json)
    reason(c:call("DELETE", "/2/webhooks/" .. wh.id), "WebhookIdInvalid")
    reason(c:call("PUT", "/2/webhooks/123"), "WebhookIdInvalid")
    assert.matches('"data":%[%]', c:call("GET", "/2/webhooks").body)
  end)

  it("accepts an OAuth 1.0a owner for create", function()
    local res = c:call("POST", "/2/webhooks", { auth = "owner", json = { url = rcv:hook() } })
    assert.equal(200, res.status, res.body)
  end)

  it("reports the documented failure reasons for create", function()
    reason(c:call("POST", "/2/webhooks", { json = { url = "http://example.com/x" } }), "UrlValidationFailed")
    reason(c:call("POST", "/2/webhooks", { json = { url = "https://example.com:444/x" } }), "UrlValidationFailed")
    reason(c:call("POST", "/2/webhooks", { json = {} }), "UrlValidationFailed")
    reason(c:call("POST", "/2/webhooks", { json = { url = rcv:hook("wrong") } }), "CrcValidationFailed")
    reason(c:call("POST", "/2/webhooks", { json = { url = rcv:hook("e500") } }), "CrcValidationFailed")
    create("ok")
    reason(c:call("POST", "/2/webhooks", { json = { url = rcv:hook("ok") } }), "DuplicateUrlFailed")
    create("ok2")
    reason(c:call("POST", "/2/webhooks", { json = { url = rcv:hook("ok3") } }), "WebhookLimitExceeded")
  end)

  it("subscribes, checks, lists, counts and unsubscribes", function()
    local wh = create()
    local base = AA .. "/webhooks/" .. wh.id .. "/subscriptions"
    local u1, u2, u3 = cfg.users[1], cfg.users[2], cfg.users[3]
    assert.same({ data = { subscribed = false } }, c:call("GET", base .. "/all", { auth = u1 }).json)
    local sub = c:call("POST", base .. "/all", { auth = u1, json = {} })
    assert.equal(200, sub.status, sub.body)
    assert.same({ data = { subscribed = true } }, sub.json)
    reason(c:call("POST", base .. "/all", { auth = u1 }), "DuplicateSubscriptionFailed")
    assert.equal(200, c:call("POST", base .. "/all", { auth = u2 }).status)
    reason(c:call("POST", base .. "/all", { auth = u3 }), "SubscriptionLimitExceeded")
    assert.same({ data = { subscribed = true } }, c:call("GET", base .. "/all", { auth = u1 }).json)
    local list = c:call("GET", base .. "/all/list")
    assert.equal(wh.id, list.json.data.webhook_id)
    assert.equal(wh.url, list.json.data.webhook_url)
    assert.same({ { user_id = u1.user_id }, { user_id = u2.user_id } }, list.json.data.subscriptions)
    local count = c:call("GET", AA .. "/subscriptions/count")
    assert.equal("2", count.json.data.subscriptions_count_all)
    assert.equal("0", count.json.data.subscriptions_count_direct_messages)
    local del = c:call("DELETE", base .. "/" .. u1.user_id .. "/all")
    assert.same({ data = { subscribed = false } }, del.json)
    reason(c:call("DELETE", base .. "/" .. u1.user_id .. "/all"), "SubscriptionNotFound")
    reason(c:call("GET", AA .. "/webhooks/99/subscriptions/all/list"), "WebhookIdInvalid")
    reason(c:call("POST", AA .. "/webhooks/99/subscriptions/all", { auth = u1 }), "WebhookIdInvalid")
  end)

  it("answers v2 auth errors (401 Unauthorized, 403 Unsupported Authentication)", function()
    local bad = c:call("GET", "/2/webhooks", { bearer = "nope" })
    assert.equal(401, bad.status)
    assert.equal("Unauthorized", bad.json.title)
    local wrong_kind = c:call("GET", "/2/webhooks", { auth = "owner" })
    assert.equal(403, wrong_kind.status)
    assert.equal("Unsupported Authentication", wrong_kind.json.title)
    local wh = create()
    local app_on_user = c:call("POST", AA .. "/webhooks/" .. wh.id .. "/subscriptions/all", { auth = "app" })
    assert.equal(403, app_on_user.status)
    local none = c:call("GET", "/2/webhooks", { auth = "none" })
    assert.equal(401, none.status)
  end)

  it("replays through POST /2/webhooks/replay and the deprecated AAA path", function()
    local wh = create()
    local now = os.time()
    local from, to = os.date("!%Y%m%d%H%M", now - 600), os.date("!%Y%m%d%H%M", now)
    reason(c:call("POST", "/2/webhooks/replay", { json = { webhook_id = wh.id } }), "QueryParamInvalid")
    reason(c:call("POST", "/2/webhooks/replay", { json = { webhook_id = wh.id, from_date = "x", to_date = to } }),
      "QueryParamInvalid")
    reason(c:call("POST", "/2/webhooks/replay", { json = { webhook_id = wh.id, from_date = to, to_date = from } }),
      "QueryParamInvalid")
    reason(c:call("POST", "/2/webhooks/replay", { json = { webhook_id = wh.id,
      from_date = os.date("!%Y%m%d%H%M", now - 2 * 86400), to_date = to } }), "QueryParamInvalid")
    reason(c:call("POST", "/2/webhooks/replay", { json = { webhook_id = "77", from_date = from, to_date = to } }),
      "WebhookIdInvalid")
    local ok = c:call("POST", "/2/webhooks/replay", { json = { webhook_id = wh.id, from_date = from, to_date = to } })
    assert.equal(200, ok.status, ok.body)
    assert.matches("^%d+$", ok.json.data.job_id)
    H.wait_for(function()
      local st = emu:control("GET", "/_emulator/state")
      return st.webhooks[1].replay_running == nil
    end, 5)
    emu:control("POST", "/_emulator/config", { replay = { hold_ms = 1500 } })
    finally(function() emu:control("POST", "/_emulator/config", { replay = { hold_ms = 0 } }) end)
    local old = c:call("POST", AA .. "/replay/webhooks/" .. wh.id .. "/subscriptions/all",
      { query = { from_date = from, to_date = os.date("!%Y%m%d%H%M", now + 60) } })
    assert.equal(200, old.status, old.body)
    reason(c:call("POST", AA .. "/replay/webhooks/" .. wh.id .. "/subscriptions/all",
      { query = { from_date = from, to_date = os.date("!%Y%m%d%H%M", now + 60) } }), "ReplayConflictError")
    local bearer_only = c:call("POST", "/2/webhooks/replay", { auth = "owner",
      json = { webhook_id = wh.id, from_date = from, to_date = to } })
    assert.equal(403, bearer_only.status)
  end)

  it("answers an unknown v2 path with a 404 problem", function()
    local res = c:call("GET", "/2/nothing")
    assert.equal(404, res.status)
    assert.equal("Not Found Error", res.json.title)
  end)
end)

describe("emulator oauth2", function()
  local emu, c, cfg
  setup(function()
    emu = H.start {}
    c = H.client(emu)
    cfg = emu.config
  end)
  teardown(function() if emu then emu:stop() end end)

  local function basic(key, secret)
    return "Basic " .. core.base64_encode(core.percent_encode(key) .. ":" .. core.percent_encode(secret))
  end

  it("issues the bearer token, invalidates it and issues a new one", function()
    local tok = c:call("POST", "/oauth2/token", { auth = { header = basic(cfg.app.consumer_key, cfg.app.consumer_secret) },
      form = { grant_type = "client_credentials" } })
    assert.equal(200, tok.status, tok.body)
    assert.same({ token_type = "bearer", access_token = cfg.app.bearer_token }, tok.json)
    local again = c:call("POST", "/oauth2/token", { auth = { header = basic(cfg.app.consumer_key, cfg.app.consumer_secret) },
      form = { grant_type = "client_credentials" } })
    assert.equal(cfg.app.bearer_token, again.json.access_token)

    local inv = c:call("POST", "/oauth2/invalidate_token", {
      auth = { header = basic(cfg.app.consumer_key, cfg.app.consumer_secret) },
      form = { access_token = cfg.app.bearer_token } })
    assert.equal(200, inv.status, inv.body)
    assert.equal(cfg.app.bearer_token, inv.json.access_token)
    local old = c:call("GET", "/1.1/account_activity/webhooks.json")
    assert.equal(401, old.status)
    assert.equal(89, old.json.errors[1].code)
    local new = c:call("POST", "/oauth2/token", { auth = { header = basic(cfg.app.consumer_key, cfg.app.consumer_secret) },
      form = { grant_type = "client_credentials" } })
    assert.equal(200, new.status)
    assert.not_equal(cfg.app.bearer_token, new.json.access_token)
    assert.equal(200, c:call("GET", "/1.1/account_activity/webhooks.json", { bearer = new.json.access_token }).status)
    -- OAuth 1.0a owner with the token in the query also invalidates
    local inv2 = c:call("POST", "/oauth2/invalidate_token", { auth = "owner",
      query = { access_token = new.json.access_token } })
    assert.equal(200, inv2.status, inv2.body)
    assert.equal(401, c:call("GET", "/1.1/account_activity/webhooks.json", { bearer = new.json.access_token }).status)
  end)

  it("refuses bad credentials (403/99) and a missing grant_type (403/170)", function()
    local bad = c:call("POST", "/oauth2/token", { auth = { header = basic(cfg.app.consumer_key, "nope") },
      form = { grant_type = "client_credentials" } })
    assert.equal(403, bad.status)
    assert.equal(99, bad.json.errors[1].code)
    local nogrant = c:call("POST", "/oauth2/token", { auth = { header = basic(cfg.app.consumer_key, cfg.app.consumer_secret) },
      form = { grant_type = "password" } })
    assert.equal(403, nogrant.status)
    assert.equal(170, nogrant.json.errors[1].code)
  end)
end)

-- The X Activity API against x-openapi-2.167.json and X's docs (issue 12, item 4).
describe("emulator XAA fidelity", function()
  local endpoints = require "account_activity.endpoints"
  local cjson = require "cjson.safe"
  local emu, c, cfg, rcv
  local SUBS = "/2/activity/subscriptions"

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
    assert(emu:reset())
    rcv:clear()
  end)
  after_each(function() assert(c:control("POST", "/_emulator/config", { xaa = { payload_shape = "docs" } })) end)

  local function user_token(u) return { header = "Bearer " .. u.oauth2.access_token } end
  local function create(body, auth) return c:call("POST", SUBS, { json = body, auth = auth }) end
  local function invalid(res, where)
    assert.equal(400, res.status, res.body)
    assert.equal("https://api.x.com/2/problems/invalid-request", res.json.type)
    assert.truthy(res.json.errors[1].message:find(where, 1, true), res.body)
  end

  it("refuses filter keys other than user_id, keyword and direction", function()
    local uid = cfg.users[1].user_id
    invalid(create { event_type = "post.create", filter = { user_id = uid, qualifiers = { "a" } } }, "$.filter.qualifiers")
    invalid(create { event_type = "post.create", filter = { user_id = uid, lang = "en" } }, "$.filter.lang")
    assert.equal(200, create({ event_type = "like.create", filter = { user_id = uid, direction = "inbound" } },
      user_token(cfg.users[1])).status)
  end)

  it("takes exactly the spec's event types; oauth.revoke cannot be subscribed", function()
    local u = cfg.users[1]
    for _, et in ipairs(endpoints.xaa.event_types) do
      local filter = et == "news.new" and { keyword = "lua" } or { user_id = u.user_id }
      if et == "chat.conversation_join" then filter = { user_id = cfg.users[2].user_id } end
      local who = et == "chat.conversation_join" and cfg.users[2] or u
      local res = create({ event_type = et, filter = filter }, user_token(who))
      assert.equal(200, res.status, et .. ": " .. res.body)
      -- the deprecated alias answers under its canonical name
      local want = et == "chat.conversation_join" and "chat.conversation.join" or et
      assert.equal(want, res.json.data.subscription.event_type)
    end
    invalid(create { event_type = "oauth.revoke", filter = {} }, "$.event_type")
    invalid(create { event_type = "oauth.revoke", filter = { user_id = u.user_id } }, "$.event_type")
    invalid(create { event_type = "post.edit", filter = { user_id = u.user_id } }, "$.event_type")
  end)

  it("takes a keyword filter alone for public events, and needs a user_id for private ones", function()
    local res = create { event_type = "post.create", filter = { keyword = "emulated" }, webhook_id = nil }
    assert.equal(200, res.status, res.body)
    assert.same({ keyword = "emulated" }, res.json.data.subscription.filter)
    invalid(create { event_type = "post.create", filter = {} }, "$.filter")
    invalid(create({ event_type = "dm.received", filter = { keyword = "hi" } }, user_token(cfg.users[1])),
      "$.filter.user_id")
    local hit = c:control("POST", "/_emulator/xaa/deliver", { event_type = "post.create",
      user_id = cfg.users[2].user_id, text = "an Emulated post" })
    assert.equal(1, hit.matched)
    local miss = c:control("POST", "/_emulator/xaa/deliver", { event_type = "post.create",
      user_id = cfg.users[2].user_id, text = "something else" })
    assert.equal(0, miss.matched)
  end)

  local function delivered(et, user, o)
    o = o or {}
    rcv:clear()
    local wh = c:call("POST", "/2/webhooks", { json = { url = rcv:hook("ok") } }).json.data
    assert(wh and wh.id)
    local res = create({ event_type = et, filter = { user_id = user.user_id }, webhook_id = wh.id }, user_token(user))
    assert.equal(200, res.status, res.body)
    local r = c:control("POST", "/_emulator/xaa/deliver", { event_type = et, user_id = user.user_id,
      direction = o.direction, wait = true })
    assert.equal(1, r.delivered, cjson.encode(r))
    local got = rcv:received()
    c:call("DELETE", SUBS .. "/" .. res.json.data.subscription.subscription_id)
    c:call("DELETE", "/2/webhooks/" .. wh.id)
    return cjson.decode(got[#got].body).data
  end

  it("sends payloads as the docs' samples show them by default, as the spec's schemas with payload_shape = spec",
    function()
    local u = cfg.users[1]
    local like = delivered("like.create", u, { direction = "inbound" })
    assert.is_string(like.payload.liked_tweet_author_id)
    assert.is_nil(like.payload.tweet_author_id)
    assert.matches("^%d+$", like.payload.timestamp_ms)
    assert.is_table(like.includes.tweets)
    assert.is_nil(like.includes.posts)
    local follow = delivered("follow.follow", u)
    assert.is_table(follow.payload.source.data)
    assert.is_string(follow.payload.source.data.id)

    assert(c:control("POST", "/_emulator/config", { xaa = { payload_shape = "spec" } }))
    like = delivered("like.create", u, { direction = "inbound" })
    assert.is_string(like.payload.tweet_author_id)
    assert.is_nil(like.payload.liked_tweet_author_id)
    assert.equal("number", type(like.payload.timestamp_ms))
    assert.is_table(like.includes.posts)
    assert.is_nil(like.includes.tweets)
    follow = delivered("follow.follow", u)
    assert.is_nil(follow.payload.source.data)
    assert.is_string(follow.payload.source.id)
    local news = delivered("post.create", u)
    assert.is_table(news.includes.posts)
  end)

  it("shapes ids like X's snowflakes and types problems on api.x.com", function()
    local uid = cfg.users[1].user_id
    local a = create { event_type = "post.create", filter = { user_id = uid } }.json.data.subscription.subscription_id
    H.sleep(0.01)
    local b = create { event_type = "post.delete", filter = { user_id = uid } }.json.data.subscription.subscription_id
    local wh = c:call("POST", "/2/webhooks", { json = { url = rcv:hook("ok") } }).json.data.id
    for _, id in ipairs { a, b, wh } do assert.matches("^[1-9]%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d$", id) end
    assert.is_true(b > a, a .. " < " .. b)
    create { event_type = "post.create", filter = { keyword = "x" }, webhook_id = wh }
    c:control("POST", "/_emulator/xaa/deliver", { event_type = "post.create", user_id = uid, text = "x", wait = true })
    local ev = cjson.decode(rcv:received()[1].body).data
    assert.matches("^[1-9]%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d%d$", ev.event_uuid)
    assert.matches("^https://api%.x%.com/2/problems/", c:call("PUT", SUBS .. "/123", { json = { tag = "t" } }).json.type)
  end)

  it("keeps max_results within 1..1000 and streams keep-alives every 20 s by default", function()
    assert.equal(400, c:call("GET", SUBS, { query = { max_results = 0 } }).status)
    assert.equal(400, c:call("GET", SUBS, { query = { max_results = 1001 } }).status)
    assert.equal(200, c:call("GET", SUBS, { query = { max_results = 1000 } }).status)
    assert.equal(20000, c:control("GET", "/_emulator/xaa/state").knobs.keepalive_ms)
  end)

  it("tells receivers of a revocation like X: AAA user_event, XAA oauth.revoke unasked", function()
    local u = cfg.users[1]
    local v1 = H.register(c, rcv)
    assert.equal(204, c:call("POST", "/1.1/account_activity/webhooks/" .. v1.id .. "/subscriptions/all.json",
      { auth = u }).status)
    local wh = c:call("POST", "/2/webhooks", { json = { url = rcv:hook("ok", "?xaa") } }).json.data.id
    assert.equal(200, create({ event_type = "dm.received", filter = { user_id = u.user_id }, webhook_id = wh },
      user_token(u)).status)
    assert.equal(200, create { event_type = "post.create", filter = { user_id = u.user_id }, webhook_id = wh }.status)
    rcv:clear()
    local r, status = c:control("POST", "/_emulator/oauth2/deauthorize", { user_id = u.user_id })
    assert.equal(200, status, cjson.encode(r))
    local got, revoke, user_event = rcv:received()
    for _, g in ipairs(got) do
      local b = cjson.decode(g.body)
      if b.data and b.data.event_type == "oauth.revoke" then revoke = b.data end
      if b.user_event then user_event = b.user_event end
    end
    assert.truthy(revoke, cjson.encode(got))
    assert.same({}, revoke.filter)
    assert.equal(u.user_id, revoke.payload.user_id)
    assert.equal(emu.settings.app.app_id, revoke.payload.app_id)
    assert.equal(u.user_id, user_event.revoke.source.user_id)
    -- the AAA subscription and the private XAA one are gone, the public one stays
    assert.same({}, c:control("GET", "/_emulator/state").webhooks[1].subscriptions)
    local left = c:control("GET", "/_emulator/xaa/state").subscriptions
    assert.equal(1, #left)
    assert.equal("post.create", left[1].event_type)
    assert.equal(401, c:call("GET", "/2/users/me", { auth = user_token(u) }).status)
  end)
end)
