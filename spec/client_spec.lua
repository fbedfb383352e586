-- Unit specs of the client over a scripted function transport: endpoint
-- shapes per flavour, body drift, ids, bearer caching, retries, secrets.
local fake = require "client_fake"
local aa = require "account_activity"
local core = require "account_activity.core"
local cjson = require "cjson"

local res, fail = fake.res, fake.fail
local USER = fake.USER

local function bearer() return res(200, fake.BEARER) end

local function all_secrets()
  return { fake.CREDS.consumer_secret, fake.CREDS.access_token_secret, fake.BEARER.access_token,
           USER.access_token_secret }
end

local function assert_no_secret(s)
  for _, secret in ipairs(all_secrets()) do
    assert.is_nil(tostring(s):find(secret, 1, true), "secret in: " .. tostring(s))
  end
end

local function path_of(req)
  return (req.url:match("^https?://[^/]+([^?]*)"))
end

local function query_of(req)
  return req.url:match("%?(.*)$")
end

local function auth_kind(req)
  local a = req.headers.Authorization or ""
  if a:match("^Bearer ") then return "app" end
  if a:match("^Basic ") then return "basic" end
  if a:find('oauth_token="' .. fake.CREDS.access_token .. '"', 1, true) then return "user" end
  if a:find('oauth_token="' .. USER.access_token .. '"', 1, true) then return "subscriber" end
  return a
end

describe("client construction", function()
  it("requires the consumer key and secret", function()
    assert.has_error(function() aa.new {} end, "bad argument 'consumer_key' to 'new' (required string expected, got nil)")
    assert.has_error(function() aa.new { consumer_key = "k" } end,
      "bad argument 'consumer_secret' to 'new' (required string expected, got nil)")
    assert.has_error(function() aa.new("x") end)
  end)

  it("requires env_name for premium and a known api", function()
    assert.has_error(function() aa.new { consumer_key = "k", consumer_secret = "s", api = "premium" } end,
      "bad argument 'env_name' to 'new' (required with api = \"premium\" (the dev environment label))")
    assert.has_error(function() aa.new { consumer_key = "k", consumer_secret = "s", api = "v3" } end)
    assert.has_error(function() aa.new { consumer_key = "k", consumer_secret = "s", api = "premium", env_name = "a/b" } end)
    assert.has_error(function() aa.new { consumer_key = "k", consumer_secret = "s", access_token = "t" } end)
    assert.has_error(function() aa.new { consumer_key = "k", consumer_secret = "s", base_url = "ftp://x" } end)
    assert.has_error(function() aa.new { consumer_key = "k", consumer_secret = "s", transport = "carrier-pigeon" } end)
  end)

  it("turns TLS verification off only for insecure = true (a string or a number raises)", function()
    for _, v in ipairs { "false", "true", 0, 1, "no" } do
      assert.has_error(function() aa.new { consumer_key = "k", consumer_secret = "s", insecure = v } end,
        "bad argument 'insecure' to 'new' (boolean expected, got " .. (type(v) == "string" and ('"' .. v .. '"')
          or tostring(v)) .. ")")
    end
    assert.has_error(function() aa.new { consumer_key = "k", consumer_secret = "s", insecure = {} } end)
    assert.is_false(aa.new { consumer_key = "k", consumer_secret = "s" }.insecure)
    assert.is_false(aa.new { consumer_key = "k", consumer_secret = "s", insecure = false }.insecure)
    local c = aa.new { consumer_key = "k", consumer_secret = "s", insecure = true }
    assert.is_true(c.insecure)
    assert.matches("TLS verification OFF", tostring(c))
    assert.has_error(function() aa.webhook_handler { consumer_secret = "s", on_event = print,
      insecure_skip_verify = "false" } end)
  end)

  it("redacts a bearer-only client's token, in every form and field a server echoes", function()
    -- v2 with no owner tokens: the secret list had holes, and ipairs stopped at the first
    local echo = function(req)
      local a = req.headers.Authorization
      return res(403, { title = "Forbidden", detail = "you sent " .. a, type = "about:blank",
        errors = { { message = "header " .. a, label = a, parameters = { auth = { a } } } },
        echoed = { authorization = a, b64 = core.base64_encode(a:match(" (.*)$")) } })
    end
    local c = fake.client({ api = "v2", bearer_token = fake.BEARER.access_token,
      unset = { "access_token", "access_token_secret" } }, {}, echo)
    local list, err = c:subscriptions("123")
    assert.is_nil(list)
    local everything = tostring(err) .. cjson.encode(err.json) .. cjson.encode(err.errors)
    assert.is_nil(everything:find(fake.BEARER.access_token, 1, true), everything)
    assert.is_nil(everything:find(core.base64_encode(fake.BEARER.access_token), 1, true), everything)
    assert.is_nil(everything:find(core.percent_encode(fake.BEARER.access_token), 1, true), everything)
    assert.matches("REDACTED", err.errors[1].label)
    -- Basic consumer_key:consumer_secret, as sent to the token endpoint
    local basic
    local c2 = fake.client({ api = "v2", unset = { "access_token", "access_token_secret" } }, {}, function(req)
      basic = req.headers.Authorization
      return res(403, { errors = { { message = "bad credentials " .. basic, code = 99 } } })
    end)
    local tok, terr = c2:bearer_token()
    assert.is_nil(tok)
    assert.matches("^Basic ", basic)
    local s = tostring(terr) .. cjson.encode(terr.json)
    assert.is_nil(s:find(basic:sub(7), 1, true), s)
    assert.is_nil(s:find(fake.CREDS.consumer_secret, 1, true), s)
  end)

  it("prints flavour, base URL and which credentials are set, never their values", function()
    local c = fake.client({ api = "premium", env_name = "dev", bearer_token = fake.BEARER.access_token })
    local s = tostring(c)
    assert.matches("premium", s, nil, true)
    assert.matches("https://api.twitter.com", s, nil, true)
    assert.matches("env=dev", s, nil, true)
    assert.matches("owner token+secret", s, nil, true)
    assert.matches("bearer", s, nil, true)
    assert_no_secret(s)
    assert.is_nil(s:find(fake.CREDS.consumer_key, 1, true))
    assert.is_nil(s:find(fake.CREDS.access_token, 1, true))
    -- nothing secret is reachable by iterating the object either
    for k, v in pairs(c) do
      assert_no_secret(k); assert_no_secret(v)
    end
    assert.are.same({ consumer_key = true, consumer_secret = true, access_token = true,
      access_token_secret = true, bearer_token = true, client_id = false, client_secret = false }, c:credentials())
  end)

  it("builds from the environment", function()
    local client = require "account_activity.client"
    local saved = os.getenv
    local env = { TWITTER_CONSUMER_KEY = "k", TWITTER_CONSUMER_SECRET = "s", TWITTER_WEBHOOK_ENV = "prod",
                  TWITTER_API_BASE_URL = "http://127.0.0.1:9" }
    os.getenv = function(n) return env[n] end -- luacheck: ignore
    local ok, c = pcall(client.from_env, { transport = function() end })
    os.getenv = saved -- luacheck: ignore
    assert.is_true(ok, tostring(c))
    assert.are.equal("premium", c.api)
    assert.are.equal("prod", c.env_name)
    assert.are.equal("http://127.0.0.1:9", c.base_url)
  end)
end)

-- method, args, flavour -> expected method, path, auth
local SHAPES = {
  enterprise = {
    { "register_webhook", { "https://example.com/w" }, "POST", "/1.1/account_activity/webhooks.json", "user", res(200, { id = "1", url = "https://example.com/w", valid = true }) },
    { "webhooks", {}, "GET", "/1.1/account_activity/webhooks.json", "app", res(200, {}) },
    { "validate_webhook", { "11" }, "PUT", "/1.1/account_activity/webhooks/11.json", "user", res(204) },
    { "delete_webhook", { "11" }, "DELETE", "/1.1/account_activity/webhooks/11.json", "user", res(204) },
    { "subscribe", { "11", USER }, "POST", "/1.1/account_activity/webhooks/11/subscriptions/all.json", "subscriber", res(204) },
    { "is_subscribed", { "11", USER }, "GET", "/1.1/account_activity/webhooks/11/subscriptions/all.json", "subscriber", res(204) },
    { "subscriptions", { "11" }, "GET", "/1.1/account_activity/webhooks/11/subscriptions/all/list.json", "app", res(200, { subscriptions = {} }) },
    { "unsubscribe", { "11", USER }, "DELETE", "/1.1/account_activity/webhooks/11/subscriptions/all.json", "subscriber", res(204) },
    { "unsubscribe", { "11", "42" }, "DELETE", "/1.1/account_activity/webhooks/11/subscriptions/42/all.json", "app", res(204) },
    { "subscription_count", {}, "GET", "/1.1/account_activity/subscriptions/count.json", "app", res(200, { subscriptions_count_all = "3" }) },
    { "replay", { "11", "202401010000", "202401010200" }, "POST", "/1.1/account_activity/replay/webhooks/11/subscriptions/all.json", "app", res(202, { job_id = "9", created_at = "x" }) },
  },
  premium = {
    { "register_webhook", { "https://example.com/w" }, "POST", "/1.1/account_activity/all/dev/webhooks.json", "user", res(200, { id = "1", url = "https://example.com/w", valid = true }) },
    { "webhooks", {}, "GET", "/1.1/account_activity/all/dev/webhooks.json", "app", res(200, {}) },
    { "validate_webhook", { "11" }, "PUT", "/1.1/account_activity/all/dev/webhooks/11.json", "user", res(204) },
    { "delete_webhook", { "11" }, "DELETE", "/1.1/account_activity/all/dev/webhooks/11.json", "user", res(204) },
    { "subscribe", { "11", USER }, "POST", "/1.1/account_activity/all/dev/subscriptions.json", "subscriber", res(204) },
    { "is_subscribed", { "11", USER }, "GET", "/1.1/account_activity/all/dev/subscriptions.json", "subscriber", res(204) },
    { "subscriptions", { "11" }, "GET", "/1.1/account_activity/all/dev/subscriptions/list.json", "app", res(200, { subscriptions = {} }) },
    { "unsubscribe", { "11", USER }, "DELETE", "/1.1/account_activity/all/dev/subscriptions.json", "subscriber", res(204) },
    { "unsubscribe", { "11", "42" }, "DELETE", "/1.1/account_activity/all/dev/subscriptions/42.json", "app", res(204) },
    { "subscription_count", {}, "GET", "/1.1/account_activity/all/subscriptions/count.json", "app", res(200, { subscriptions_count_all = "3" }) },
  },
  v2 = {
    { "register_webhook", { "https://example.com/w" }, "POST", "/2/webhooks", "app", res(200, { data = { id = "1", url = "https://example.com/w", valid = true } }) },
    { "webhooks", {}, "GET", "/2/webhooks", "app", res(200, { data = {}, meta = { result_count = 0 } }) },
    { "validate_webhook", { "11" }, "PUT", "/2/webhooks/11", "app", res(200, { data = { valid = true } }) },
    { "delete_webhook", { "11" }, "DELETE", "/2/webhooks/11", "app", res(200, { data = { deleted = true } }) },
    { "subscribe", { "11", USER }, "POST", "/2/account_activity/webhooks/11/subscriptions/all", "subscriber", res(200, { data = { subscribed = true } }) },
    { "is_subscribed", { "11", USER }, "GET", "/2/account_activity/webhooks/11/subscriptions/all", "subscriber", res(200, { data = { subscribed = true } }) },
    { "subscriptions", { "11" }, "GET", "/2/account_activity/webhooks/11/subscriptions/all/list", "app", res(200, { data = { subscriptions = {} } }) },
    { "unsubscribe", { "11", USER }, "DELETE", "/2/account_activity/webhooks/11/subscriptions/2244994945/all", "app", res(200, { data = { subscribed = false } }) },
    { "unsubscribe", { "11", "42" }, "DELETE", "/2/account_activity/webhooks/11/subscriptions/42/all", "app", res(200, { data = { subscribed = false } }) },
    { "subscription_count", {}, "GET", "/2/account_activity/subscriptions/count", "app", res(200, { data = { subscriptions_count_all = "3" } }) },
    { "replay", { "11", "202401010000", "202401010200" }, "POST", "/2/webhooks/replay", "app", res(200, { data = { job_id = "9", created_at = "x" } }) },
  },
}

describe("endpoint shapes", function()
  for api, cases in pairs(SHAPES) do
    for _, case in ipairs(cases) do
      local name, args, method, path, auth, answer = case[1], case[2], case[3], case[4], case[5], case[6]
      it(api .. " " .. name .. " -> " .. method .. " " .. path .. " (" .. auth .. ")", function()
        local c, t = fake.client({ api = api, env_name = "dev", bearer_token = fake.BEARER.access_token,
          clock = function() return require("account_activity.client").utc_epoch(2024, 1, 1, 12, 0) end }, { answer })
        local value, r = c[name](c, (table.unpack or unpack)(args))
        assert.is_not_nil(value, tostring(r))
        assert.are.equal(1, #t.requests)
        local req = t.requests[1]
        assert.are.equal(method, req.method)
        assert.are.equal(path, path_of(req))
        assert.are.equal(auth, auth_kind(req))
        assert.are.equal(1, r.attempts)
        assert.is_table(r.rate_limit)
      end)
    end
  end

  it("v1.1 register puts the URL in the signed query; v2 in a JSON body", function()
    local c, t = fake.client({}, { res(200, { id = "1", url = "https://example.com/w?a=b", valid = true }) })
    c:register_webhook("https://example.com/w?a=b")
    assert.are.equal("url=" .. core.percent_encode("https://example.com/w?a=b"), query_of(t.requests[1]))
    assert.is_nil(t.requests[1].body)
    local c2, t2 = fake.client({ api = "v2", bearer_token = "B" }, { res(200, { data = { id = "1", url = "https://e.com/w", valid = true } }) })
    c2:register_webhook("https://e.com/w")
    assert.are.same({ url = "https://e.com/w" }, cjson.decode(t2.requests[1].body))
    assert.are.equal("application/json", t2.requests[1].headers["Content-Type"])
  end)

  it("premium has no replay", function()
    local c = fake.client({ api = "premium", env_name = "dev" })
    assert.has_error(function() c:replay("1", 0, 60) end, "replay is not available with api = \"premium\"")
  end)

  it("v2 unsubscribe of a user table needs the user's id", function()
    local c = fake.client({ api = "v2" })
    assert.has_error(function()
      c:unsubscribe("1", { access_token = "a", access_token_secret = "b" })
    end)
  end)

  it("a user-context call without owner tokens says what is missing", function()
    local c = fake.client({ unset = { "access_token", "access_token_secret" } })
    assert.has_error(function() c:register_webhook("https://e.com/w") end)
  end)
end)

describe("response drift", function()
  local function one(api, name, answer, ...)
    local c, t = fake.client({ api = api, env_name = "dev", bearer_token = "B" }, { answer })
    local v, r = c[name](c, ...)
    return v, r, t
  end

  it("webhooks: created_at or created_timestamp; numeric ids become strings", function()
    local list = one("enterprise", "webhooks", res(200, {
      { id = "1", url = "https://a/1", valid = true, created_at = "2016-06-02T23:54:02Z" },
      { id = 2, url = "https://a/2", valid = false, created_timestamp = "2019-09-13 12:34:47 +0000" } }))
    assert.are.same({
      { id = "1", url = "https://a/1", valid = true, created_at = "2016-06-02T23:54:02Z" },
      { id = "2", url = "https://a/2", valid = false, created_at = "2019-09-13 12:34:47 +0000" } }, list)
  end)

  it("webhooks: premium environments, v2 data, v2 without data", function()
    local list = one("premium", "webhooks", res(200, { environments = { { environment_name = "dev",
      webhooks = { { id = "7", url = "https://a", valid = true, created_timestamp = "t" } } } } }))
    assert.are.equal("7", list[1].id)
    assert.are.equal("dev", list[1].environment)
    assert.are.same({}, (one("v2", "webhooks", res(200, { meta = { result_count = 0 } }))))
    assert.are.equal("5", one("v2", "webhooks", res(200, { data = { { id = "5", url = "u", valid = true } } }))[1].id)
  end)

  it("register: v2 wrapped and bare", function()
    assert.are.equal("8", one("v2", "register_webhook", res(200, { data = { id = "8", url = "https://e/w", valid = true, created_at = "c" } }), "https://e/w").id)
    assert.are.equal("9", one("v2", "register_webhook", res(200, { id = "9", url = "https://e/w", valid = true }), "https://e/w").id)
  end)

  it("webhook(id) finds one or returns not_found", function()
    local body = { { id = "1", url = "https://a/1", valid = true } }
    assert.are.equal("https://a/1", one("enterprise", "webhook", res(200, body), "1").url)
    local v, err = one("enterprise", "webhook", res(200, body), 2)
    assert.is_nil(v)
    assert.are.equal("not_found", err.kind)
    assert.matches("no webhook with id 2", tostring(err), nil, true)
    -- the 200 that carried the list is not the problem
    assert.is_nil(err.status)
    assert.matches("^not found on GET ", tostring(err))
  end)

  it("validate: 204, 200 valid, 200 attempted; a failed CRC is invalid_webhook", function()
    assert.is_true(one("enterprise", "validate_webhook", res(204), "1"))
    assert.is_true(one("v2", "validate_webhook", res(200, { data = { valid = true } }), "1"))
    assert.is_true(one("v2", "validate_webhook", res(200, { data = { attempted = true } }), "1"))
    assert.is_true(one("v2", "validate_webhook", res(204), "1"))
    local v, err = one("v2", "validate_webhook", res(200, { data = { valid = false } }), "1")
    assert.is_nil(v)
    assert.are.equal("invalid_webhook", err.kind)
  end)

  it("subscribe/unsubscribe/delete: 200 with a body or 204", function()
    assert.is_true(one("v2", "subscribe", res(204), "1", USER))
    assert.is_true(one("v2", "subscribe", res(200, { data = { subscribed = true } }), "1", USER))
    assert.is_true(one("v2", "unsubscribe", res(204), "1", "5"))
    assert.is_true(one("v2", "delete_webhook", res(204), "1"))
    assert.is_true(one("enterprise", "subscribe", res(200, {}), "1", USER))
  end)

  it("is_subscribed: v1.1 204/404, v2 data.subscribed", function()
    assert.is_true(one("enterprise", "is_subscribed", res(204), "1", USER))
    local v, r = one("enterprise", "is_subscribed", res(404, { errors = { { code = 34, message = "Sorry, that page does not exist." } } }), "1", USER)
    assert.is_false(v)
    assert.are.equal(404, r.status)
    assert.is_false((one("v2", "is_subscribed", res(200, { data = { subscribed = false } }), "1", USER)))
    assert.is_true((one("v2", "is_subscribed", res(200, { data = { subscribed = true } }), "1", USER)))
    local n1, n2 = one("enterprise", "is_subscribed", res(404, { errors = { { code = 34,
      message = "Webhook does not exist or is associated with a different X application." } } }), "1", USER)
    assert.is_nil(n1)
    assert.are.equal("not_found", n2.kind)
    local e1, e2 = one("enterprise", "is_subscribed", res(401, { errors = { { code = 32, message = "Could not authenticate you." } } }), "1", USER)
    assert.is_nil(e1)
    assert.are.equal("auth", e2.kind)
  end)

  it("subscriptions: ids as strings and the raw body in response.json", function()
    local ids, r = one("enterprise", "subscriptions", res(200, { webhook_id = "1", application_id = "3",
      subscriptions = { { user_id = "20212306" }, { user_id = "42" } } }), "1")
    assert.are.same({ "20212306", "42" }, ids)
    assert.are.equal("3", r.json.application_id)
    assert.are.same({ "7" }, (one("v2", "subscriptions", res(200, { data = { subscriptions = { { user_id = "7" } } } }), "1")))
  end)

  it("subscription_count: strings become numbers", function()
    local n = one("enterprise", "subscription_count", res(200, { account_name = "my-account",
      subscriptions_count_all = "12", subscriptions_count_direct_messages = "0", provisioned_count = "50" }))
    assert.are.same({ all = 12, direct_messages = 0, provisioned = 50, account_name = "my-account" }, n)
    assert.are.equal(12, one("v2", "subscription_count", res(200, { data = { subscriptions_count_all = "12",
      subscriptions_count_direct_messages = "0", account_name = "a" } })).all)
    assert.are.equal(3, one("v2", "subscription_count", res(200, { data = { subscriptions_count_all = 3 } })).all)
  end)

  it("replay: the three body shapes", function()
    local now = require("account_activity.client").utc_epoch(2024, 1, 1, 12, 0)
    local function replay(api, body, status)
      local c = fake.client({ api = api, bearer_token = "B", clock = function() return now end }, { res(status or 200, body) })
      return c:replay("1", now - 7200, now - 3600)
    end
    local shapes = {
      { job_id = "1915510368169844736", created_at = "2025-04-24T20:57:15.242Z" },
      { data = { job_id = "1915510368169844736", created_at = "2025-04-24T20:57:15.242Z" } },
      { for_user_id = "3", replay_event = { job_id = "1915510368169844736", created_at = "2025-04-24T20:57:15.242Z" } },
    }
    for _, body in ipairs(shapes) do
      assert.are.same({ job_id = "1915510368169844736", created_at = "2025-04-24T20:57:15.242Z" }, (replay("v2", body)))
    end
    assert.are.equal("1915510368169844736", replay("enterprise", shapes[1], 202).job_id)
  end)

  it("invalid JSON on a success is a decode error", function()
    local v, err = one("enterprise", "webhooks", res(200, '[{"id": "1", "url": '))
    assert.is_nil(v)
    assert.are.equal("decode", err.kind)
    assert.are.equal(200, err.status)
    local v2, err2 = one("enterprise", "webhooks", res(200, { hello = "world" }))
    assert.is_nil(v2)
    assert.are.equal("decode", err2.kind)
  end)
end)

describe("replay dates", function()
  local now = require("account_activity.client").utc_epoch(2024, 3, 10, 12, 30)
  local function client(api, script)
    return fake.client({ api = api, bearer_token = "B", clock = function() return now end }, script)
  end

  it("formats os.time() numbers as UTC yyyymmddhhmm in the v1.1 query", function()
    local c, t = client("enterprise", { res(202, { job_id = "1", created_at = "c" }) })
    assert.is_not_nil(c:replay("5", now - 3 * 3600, now - 3600 + 59))
    assert.are.equal("from_date=202403100930&to_date=202403101130", query_of(t.requests[1]))
  end)

  it("sends the v2 JSON body", function()
    local c, t = client("v2", { res(200, { data = { job_id = "1", created_at = "c" } }) })
    assert.is_not_nil(c:replay(5, "202403100930", "202403101130"))
    assert.are.same({ webhook_id = "5", from_date = "202403100930", to_date = "202403101130" },
      cjson.decode(t.requests[1].body))
  end)

  it("refuses a v2 window older than 24 h, clearly and without a request", function()
    local c, t = client("v2", {})
    local v, err = c:replay("5", now - 30 * 3600, now - 3600)
    assert.is_nil(v)
    assert.are.equal("argument", err.kind)
    assert.matches("at most 24 hours", tostring(err), nil, true)
    assert.are.equal(0, #t.requests)
    -- the enterprise API reaches back 5 days
    local c2 = client("enterprise", { res(202, { job_id = "1" }) })
    assert.is_not_nil(c2:replay("5", now - 30 * 3600, now - 3600))
  end)

  it("refuses from >= to", function()
    local c = client("enterprise", {})
    local v, err = c:replay("5", "202403100930", "202403100930")
    assert.is_nil(v)
    assert.are.equal("argument", err.kind)
  end)

  it("raises on malformed dates", function()
    local c = client("enterprise", {})
    assert.has_error(function() c:replay("5", "2024-03-10", "202403101130") end)
    assert.has_error(function() c:replay("5", "202413100930", "202403101130") end)
    assert.has_error(function() c:replay("5", {}, "202403101130") end)
    assert.has_error(function() c:replay("5", 0 / 0, "202403101130") end)
  end)
end)

describe("ids and URLs", function()
  it("accepts integer ids and converts them", function()
    local c, t = fake.client({}, { res(204) })
    assert.is_true(c:delete_webhook(1234567890123))
    assert.are.equal("/1.1/account_activity/webhooks/1234567890123.json", path_of(t.requests[1]))
  end)

  it("raises before any request on bad ids, naming the argument", function()
    local c, t = fake.client({}, {})
    local bad = { 1.5, 0 / 0, -1, math.huge, "1/../2", "", "12a", "12345678901234567890", " 1", {}, true }
    for _, id in ipairs(bad) do
      local ok, err = pcall(c.delete_webhook, c, id)
      assert.is_false(ok, "accepted " .. tostring(id))
      assert.matches("bad argument 'webhook_id' to 'delete_webhook'", err, nil, true)
    end
    local ok, err = pcall(c.unsubscribe, c, "1", "../x")
    assert.is_false(ok)
    assert.matches("'user'", err, nil, true)
    ok, err = pcall(c.subscribe, c, "1", { user_id = "x", access_token = "a", access_token_secret = "b" })
    assert.is_false(ok)
    assert.matches("user.user_id", err, nil, true)
    ok, err = pcall(c.subscribe, c, "1", { user_id = "1", access_token = "a" })
    assert.is_false(ok)
    assert.matches("access_token_secret", err, nil, true)
    assert.are.equal(0, #t.requests)
  end)

  it("checks webhook URLs unless the base URL is a loopback emulator", function()
    local c = fake.client({}, {})
    local bad = { "http://example.com/w", "https://example.com:8443/w", "https://example.com/w\r\nX: y",
                  "https://example.com/" .. string.rep("a", 200), "example.com/w", 42, "https://u:p@example.com/" }
    for _, url in ipairs(bad) do
      local ok, err = pcall(c.register_webhook, c, url)
      assert.is_false(ok, "accepted " .. tostring(url))
      assert.matches("bad argument 'url' to 'register_webhook'", err, nil, true)
    end
    for _, base in ipairs { "http://127.0.0.1:8080", "http://[::1]:9000" } do
      local lc, t = fake.client({ base_url = base }, { res(200, { id = "1", url = "http://127.0.0.1:9/hook", valid = true }) })
      assert.are.equal("1", lc:register_webhook("http://127.0.0.1:9/hook").id)
      assert.are.equal(base .. "/1.1/account_activity/webhooks.json", t.requests[1].url:match("^[^?]+"))
      assert.has_error(function() lc:register_webhook("http://127.0.0.1:9/a\nb") end)
    end
  end)
end)

describe("bearer token", function()
  it("is fetched once with Basic auth of the percent-encoded key:secret and cached per client", function()
    local c, t = fake.client({ consumer_key = "key with space", consumer_secret = "s+cr/t" },
      { bearer(), res(200, {}), res(200, {}) })
    assert.are.same({}, (c:webhooks()))
    assert.are.same({}, (c:webhooks()))
    assert.are.equal(3, #t.requests)
    local tok = t.requests[1]
    assert.are.equal("POST", tok.method)
    assert.are.equal("/oauth2/token", path_of(tok))
    assert.are.equal("grant_type=client_credentials", tok.body)
    assert.are.equal("application/x-www-form-urlencoded;charset=UTF-8", tok.headers["Content-Type"])
    assert.are.equal("Basic " .. core.base64_encode("key%20with%20space:s%2Bcr%2Ft"), tok.headers.Authorization)
    assert.are.equal("Bearer " .. fake.BEARER.access_token, t.requests[2].headers.Authorization)
    assert.are.equal("Bearer " .. fake.BEARER.access_token, t.requests[3].headers.Authorization)
    -- another client fetches its own
    local c2, t2 = fake.client({}, { res(200, { token_type = "bearer", access_token = "OTHER" }), res(200, {}) })
    c2:webhooks()
    assert.are.equal("Bearer OTHER", t2.requests[2].headers.Authorization)
    assert.are.equal(fake.BEARER.access_token, (c:bearer_token()))
  end)

  it("matches the X example credentials", function()
    local c, t = fake.client({ consumer_key = "xvz1evFS4wEEPTGEFPHBog",
      consumer_secret = "L8qq9PZyRg6ieKGEKhZolGC0vJWLw8iEJ88DRdyOg" }, { bearer() })
    assert.are.equal(fake.BEARER.access_token, (c:bearer_token()))
    assert.are.equal("Basic eHZ6MWV2RlM0d0VFUFRHRUZQSEJvZzpMOHFxOVBaeVJnNmllS0dFS2hab2xHQzB2SldMdzhpRUo4OERSZHlPZw==",
      t.requests[1].headers.Authorization)
  end)

  it("is fetched again once after 401 code 89", function()
    local e89 = res(401, { errors = { { message = "Invalid or expired token", code = 89 } } })
    local c, t = fake.client({ bearer_token = "STALE" },
      { e89, res(200, { token_type = "bearer", access_token = "FRESH" }), res(200, {}) })
    local list, r = c:webhooks()
    assert.are.same({}, list)
    assert.are.equal("Bearer STALE", t.requests[1].headers.Authorization)
    assert.are.equal("/oauth2/token", path_of(t.requests[2]))
    assert.are.equal("Bearer FRESH", t.requests[3].headers.Authorization)
    assert.are.equal(2, r.attempts)

    -- a second 89 is an auth error, not a loop
    local c2, t2 = fake.client({ bearer_token = "STALE" }, { e89, bearer(), e89 })
    local v, err = c2:webhooks()
    assert.is_nil(v)
    assert.are.equal("auth", err.kind)
    assert.are.equal(89, err.code)
    assert.are.equal(3, #t2.requests)
    assert_no_secret(tostring(err))
  end)

  it("a failed token fetch is returned as the method's error", function()
    local c = fake.client({}, { res(403, { errors = { { code = 99, label = "authenticity_token_error",
      message = "Unable to verify your credentials" } } }) })
    local v, err = c:subscription_count()
    assert.is_nil(v)
    assert.are.equal("forbidden", err.kind)
    assert.are.equal(99, err.code)
  end)

  it("rejects a token answer that is not a bearer", function()
    local c = fake.client({}, { res(200, { token_type = "mac", access_token = "x" }) })
    local v, err = c:bearer_token()
    assert.is_nil(v)
    assert.are.equal("decode", err.kind)
  end)

  it("invalidates and forgets the token", function()
    local c, t = fake.client({ bearer_token = "TOK" },
      { res(200, { access_token = "TOK" }), bearer() })
    assert.is_true(c:invalidate_bearer_token())
    local inv = t.requests[1]
    assert.are.equal("/oauth2/invalidate_token", path_of(inv))
    assert.are.equal("access_token=TOK", inv.body)
    assert.matches("^Basic ", inv.headers.Authorization)
    assert.is_nil(tostring(c):find("bearer", 1, true))
    assert.are.equal(fake.BEARER.access_token, (c:bearer_token()))
  end)
end)

describe("retries", function()
  local e429 = function(reset)
    return res(429, { errors = { { code = 88, message = "Rate limit exceeded" } } },
      { ["x-rate-limit-limit"] = "15", ["x-rate-limit-remaining"] = "0", ["x-rate-limit-reset"] = tostring(reset) })
  end
  local e503 = res(503, { errors = { { code = 67, message = "X server error." } } })

  it("fills response.rate_limit on every call", function()
    local c = fake.client({ bearer_token = "B" }, { res(200, {}, { ["x-rate-limit-limit"] = "15",
      ["x-rate-limit-remaining"] = "14", ["x-rate-limit-reset"] = "1700000900" }) })
    local _, r = c:webhooks()
    assert.are.same({ limit = 15, remaining = 14, reset = 1700000900 }, r.rate_limit)
  end)

  it("waits for x-rate-limit-reset on a 429 and tries again", function()
    local c, t, sleeps, clock = fake.client({ bearer_token = "B" })
    t.script = { e429(clock.now + 5), res(200, {}) }
    local list, r = c:webhooks()
    assert.are.same({}, list)
    assert.are.equal(2, r.attempts)
    assert.are.same({ 6 }, sleeps)
    assert.are.equal(429, r.history[1].status)
  end)

  it("returns the 429 at once when the reset is further than max_wait", function()
    local c, t, sleeps, clock = fake.client({ bearer_token = "B", max_wait = 30 })
    t.script = { e429(clock.now + 600) }
    local v, err = c:webhooks()
    assert.is_nil(v)
    assert.are.equal("rate_limit", err.kind)
    assert.are.equal(1, err.attempts)
    assert.are.equal(0, #sleeps)
    assert.are.equal(clock.now + 600, err.rate_limit.reset)
    assert.are.equal(1, #t.requests)
  end)

  it("honours retry-after", function()
    local c, _, sleeps = fake.client({ bearer_token = "B" },
      { res(503, "", { ["retry-after"] = "3" }), res(204) })
    assert.is_true(c:delete_webhook("1"))
    assert.are.same({ 3 }, sleeps)
  end)

  it("retries a 5xx with growing jittered backoff, then surfaces it", function()
    for _ = 1, 20 do
      local c, t, sleeps = fake.client({ bearer_token = "B", retries = 3, backoff = 1 }, {}, e503)
      local v, err = c:subscriptions("1")
      assert.is_nil(v)
      assert.are.equal("http", err.kind)
      assert.are.equal(503, err.status)
      assert.are.equal(4, err.attempts)
      assert.are.equal(4, #t.requests)
      assert.are.equal(3, #sleeps)
      for i, s in ipairs(sleeps) do
        local base = 2 ^ (i - 1)
        assert.is_true(s >= base * 0.5 and s <= base, "sleep " .. s .. " for retry " .. i)
      end
      assert.matches("(after 4 attempts)", tostring(err), nil, true)
    end
  end)

  it("caps the backoff at max_wait", function()
    local c, _, sleeps = fake.client({ bearer_token = "B", retries = 4, backoff = 10, max_wait = 12 }, {}, e503)
    c:subscriptions("1")
    for _, s in ipairs(sleeps) do assert.is_true(s <= 12) end
  end)

  it("does not retry a POST on 5xx or 429", function()
    local c, t = fake.client({}, { e503 })
    local v, err = c:subscribe("1", USER)
    assert.is_nil(v)
    assert.are.equal(1, err.attempts)
    assert.are.equal(1, #t.requests)
    local c2, t2, _, clock = fake.client({})
    t2.script = { e429(clock.now + 1) }
    assert.is_nil((c2:subscribe("1", USER)))
    assert.are.equal(1, #t2.requests)
  end)

  it("retries a POST only when the connection never happened", function()
    local c, t = fake.client({}, { fail("network", "Couldn't connect to server", true), res(204) })
    assert.is_true(c:subscribe("1", USER))
    assert.are.equal(2, #t.requests)
    local c2, t2 = fake.client({}, { fail("network", "Connection reset by peer", false) })
    local v, err = c2:subscribe("1", USER)
    assert.is_nil(v)
    assert.are.equal("network", err.kind)
    assert.are.equal(1, #t2.requests)
    local c3, t3 = fake.client({}, { fail("timeout", "Operation timed out") })
    assert.is_nil((c3:subscribe("1", USER)))
    assert.are.equal(1, #t3.requests)
  end)

  it("retries GET/PUT/DELETE on network errors and timeouts, not on TLS errors", function()
    local c, t = fake.client({ bearer_token = "B" }, { fail("timeout", "t"), fail("network", "reset"), res(200, {}) })
    local v, r = c:webhooks()
    assert.are.same({}, v)
    assert.are.equal(3, r.attempts)
    assert.are.equal(3, #t.requests)
    local c2, t2 = fake.client({ bearer_token = "B" }, { fail("tls", "certificate verify failed", true) })
    local v2, err = c2:webhooks()
    assert.is_nil(v2)
    assert.are.equal("tls", err.kind)
    assert.are.equal(1, #t2.requests)
  end)

  it("retries = 0 means one attempt", function()
    local c, t = fake.client({ bearer_token = "B", retries = 0 }, { e503 })
    local _, err = c:webhooks()
    assert.are.equal(1, err.attempts)
    assert.are.equal(1, #t.requests)
  end)

  it("re-signs with the server clock after code 135", function()
    local date = "Sun, 10 Mar 2024 12:30:00 GMT"
    local c, t = fake.client({}, {
      res(401, { errors = { { code = 135, message = "Timestamp out of bounds." } } }, { date = date }), res(204) })
    assert.is_true(c:subscribe("1", USER))
    local expected = require("account_activity.client").utc_epoch(2024, 3, 10, 12, 30, 0)
    local ts = tonumber(t.requests[2].headers.Authorization:match('oauth_timestamp="(%d+)"'))
    assert.is_true(math.abs(ts - expected) <= 2, "timestamp " .. ts)
  end)
end)

describe("errors from methods", function()
  it("carry the kind, code and a secret-free request", function()
    local c = fake.client({}, { res(409, { errors = { { code = 355, message = "Subscription already exists." } } }) })
    local v, err = c:subscribe("1", USER)
    assert.is_nil(v)
    assert.are.equal("conflict", err.kind)
    assert.are.equal("HTTP 409 on POST https://api.twitter.com/1.1/account_activity/webhooks/1/subscriptions/all.json:"
      .. " [355] Subscription already exists.", tostring(err))
    assert.are.equal("subscribe", err.endpoint)
  end)

  it("never echo a credential, even when the server does", function()
    local c = fake.client({ bearer_token = fake.BEARER.access_token }, { res(400, { errors = { { code = 214,
      message = "bad " .. fake.CREDS.consumer_secret .. " and " .. fake.BEARER.access_token } } }) })
    local _, err = c:webhooks()
    assert_no_secret(tostring(err))
    assert_no_secret(err.message)
    assert_no_secret(err.errors[1].message)
  end)

  it("map transport failures", function()
    local c = fake.client({ bearer_token = "B", retries = 0 }, { fail("timeout", "Operation timed out after 10001 milliseconds") })
    local _, err = c:webhooks()
    assert.are.equal("timeout", err.kind)
    assert.matches("^timeout on GET https://api.twitter.com/1.1/account_activity/webhooks.json: Operation timed out", tostring(err))
  end)
end)

describe("client:request", function()
  it("sends any signed request and returns the response", function()
    local c, t = fake.client({}, { res(200, { ok = true }) })
    local r = c:request("get", "/1.1/users/show.json", { query = { user_id = "12" }, auth = "user" })
    assert.are.equal(200, r.status)
    assert.is_true(r.json.ok)
    assert.are.equal("GET", t.requests[1].method)
    assert.are.equal("user_id=12", query_of(t.requests[1]))
    assert.are.equal("user", auth_kind(t.requests[1]))
  end)

  it("signs as a subscriber with opts.user, and as the app with auth = app", function()
    local c, t = fake.client({ bearer_token = "B" }, { res(204), res(200, { data = {} }) })
    c:request("POST", "/2/x", { user = USER, json = { a = 1 } })
    assert.are.equal("subscriber", auth_kind(t.requests[1]))
    assert.are.equal('{"a":1}', t.requests[1].body)
    c:request("GET", "/2/y", { auth = "app" })
    assert.are.equal("Bearer B", t.requests[2].headers.Authorization)
  end)

  it("picks the app bearer on a path X serves app-only, even with owner tokens set", function()
    local c, t = fake.client({ api = "enterprise", bearer_token = "B" }, {}, res(200, { ids = {} }))
    c:request("GET", "/1.1/account_activity/webhooks/123/subscriptions/all/list.json")
    assert.are.equal("Bearer B", t.requests[1].headers.Authorization)
    c:request("GET", "/1.1/account_activity/webhooks/123/subscriptions/all.json")
    assert.are.equal("user", auth_kind(t.requests[2]))
    c:request("GET", "/1.1/users/show.json") -- unknown path: owner tokens as before
    assert.are.equal("user", auth_kind(t.requests[3]))
    local v2, t2 = fake.client({ api = "v2", bearer_token = "B" }, {}, res(200, { data = {} }))
    v2:request("GET", "/2/webhooks")
    v2:request("DELETE", "/2/activity/subscriptions/99?x=1")
    assert.are.equal("Bearer B", t2.requests[1].headers.Authorization)
    assert.are.equal("Bearer B", t2.requests[2].headers.Authorization)
  end)

  it("returns an error for a non-2xx and checks its arguments", function()
    local c = fake.client({}, { res(404, { errors = { { code = 34, message = "Sorry, that page does not exist." } } }) })
    local r, err = c:request("GET", "/1.1/nope.json")
    assert.is_nil(r)
    assert.are.equal("not_found", err.kind)
    assert.has_error(function() c:request("FETCH", "/x") end)
    assert.has_error(function() c:request("GET", "https://evil.example/x") end)
    assert.has_error(function() c:request("GET", "/x", { auth = "magic" }) end)
  end)
end)

describe("help", function()
  local docs = require "account_activity.docs"
  local endpoints = require "account_activity.endpoints"

  it("has a line for every client method and module function", function()
    for _, name in ipairs(endpoints.METHODS) do
      assert.is_string(docs.text(name), name)
    end
    for _, name in ipairs { "new", "from_env", "help", "crc_response", "verify_signature", "parse_events",
                            "router", "webhook_handler", "request", "ensure_webhook", "sync_subscriptions" } do
      assert.is_string(docs.text(name), name)
    end
  end)

  it("answers by name or by function value", function()
    local c = fake.client({}, {})
    local out = {}
    local text = aa.help(c.subscribe, function(s) out[#out + 1] = s end)
    assert.are.equal("client:subscribe(webhook_id, user)", text:match("^[^\n]+"))
    assert.are.equal(text, out[1])
    assert.are.equal(text, docs.text("subscribe"))
    assert.are.equal(text, docs.text("client:subscribe"))
    assert.matches("^aa.new%(opts%)", docs.text(aa.new))
    assert.matches("^client:request", docs.text(c.request))
    local all = aa.help(nil, function() end)
    for _, name in ipairs(endpoints.METHODS) do
      assert.matches("client:" .. name .. "(", all, nil, true)
    end
    assert.matches("no doc for", aa.help("nonsense", function() end), nil, true)
  end)
end)

describe("the curl transport", function()
  it("reports a refused connection as a network error that even a POST may retry", function()
    local sleeps = {}
    local c = aa.new { consumer_key = "k", consumer_secret = "s", base_url = "http://127.0.0.1:1",
      retries = 1, connect_timeout = 2, timeout = 2, bearer_token = "B",
      sleep = function(s) sleeps[#sleeps + 1] = s end }
    assert.matches("curl", tostring(c), nil, true)
    local v, err = c:subscribe("1", USER)
    assert.is_nil(v)
    assert.are.equal("network", err.kind)
    assert.is_true(err.connect)
    assert.are.equal(2, err.attempts)
    assert.are.equal(1, #sleeps)
    assert.matches("^network error on POST http://127.0.0.1:1/1.1/account_activity/webhooks/1/subscriptions/all.json: ", tostring(err))
    assert_no_secret(tostring(err))
    c:close()
  end)
end)
