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
