-- Malformed calls across the public API: wrong types, nil, NaN, negative and
-- huge numbers, empty and 10 MB strings, NULs, CR/LF injection, non-UTF-8,
-- ids such as "1/../2" or 20 digits. Each must raise an error naming the
-- argument, or return nil/false and an error of a sensible kind; never
-- crash, never leak a secret, and never send anything (the emulator's
-- request log does not grow). The spec counts its calls and proves >= 150.
local aa = require "account_activity"
local core = require "account_activity.core"
local H = require "hardening"

local env, c, leaks
local calls = 0
local BIG = string.rep("7", 10 * 1024 * 1024)
local BIG_TEXT = string.rep("a", 10 * 1024 * 1024)
local NAN, INF = 0 / 0, math.huge

local function check_message(label, msg)
  assert.is_true(#msg < 4096, label .. ": a message of " .. #msg .. " bytes")
  leaks:add(label, msg)
end

--- fn must raise naming `name`, or return nil/false plus an error (of a
-- kind in `kinds` when given).
local function rejects(label, name, fn, kinds)
  calls = calls + 1
  local ok, v, err = pcall(fn)
  if not ok then
    local msg = tostring(v)
    assert.is_truthy(msg:find(name, 1, true), label .. ": the error does not name '" .. name .. "': " .. msg:sub(1, 300))
    check_message(label, msg)
    return "raised", msg
  end
  assert.is_true(v == nil or v == false, label .. ": accepted, returned " .. tostring(v):sub(1, 100))
  assert.is_truthy(err, label .. ": no error value")
  local msg = tostring(err)
  check_message(label, msg)
  if kinds then
    local kind = type(err) == "table" and err.kind or err
    local okk = false
    for _, k in ipairs(kinds) do if kind == k then okk = true end end
    assert.is_true(okk, label .. ": kind " .. tostring(kind))
  end
  return "returned", err
end

--- A webhook handler's answer must be a 4xx response.
local function refused(label, handler, req)
  calls = calls + 1
  local ok, res = pcall(handler, req)
  assert.is_true(ok, label .. " raised: " .. tostring(res))
  assert.is_table(res, label)
  assert.is_true(res.status >= 400 and res.status < 500, label .. ": status " .. tostring(res.status))
  check_message(label, tostring(res.body))
end

-- The emulator's log must not grow across `fn` (nothing was sent).
local function unsent(fn)
  local n0 = env:log_count()
  fn()
  assert.are.equal(n0, env:log_count(), "invalid calls reached the emulator")
end

local BAD_IDS = {
  { "nil", nil }, { "true", true }, { "a table", {} }, { "a function", print },
  { "empty", "" }, { "1/../2", "1/../2" }, { "12a", "12a" }, { "-5", "-5" }, { "1e5", "1e5" },
  { "20 digits", "12345678901234567890" }, { "CR/LF", "1\r\nX-Evil: 1" }, { "NUL", "1\0002" },
  { "space", " 12" }, { "non-UTF-8", "\255\254" }, { "fullwidth digits", "\239\188\145\239\188\146" },
  { "percent", "%31" }, { "10 MB", BIG }, { "NaN", NAN }, { "-1", -1 }, { "1.5", 1.5 },
  { "inf", INF }, { "-inf", -INF }, { "2^60", 2 ^ 60 },
}

local function user(i)
  local u = env.cfg.users[i]
  return { user_id = u.user_id, access_token = u.access_token, access_token_secret = u.access_token_secret }
end

describe("bad input", function()
  lazy_setup(function()
    env = H.start()
    c = H.client(env, "enterprise")
    local secrets = { consumer_secret = env.cfg.app.consumer_secret, bearer = env.cfg.app.bearer_token,
                      owner_secret = env.cfg.app.owner.access_token_secret }
    for i, u in ipairs(env.cfg.users) do secrets["user " .. i .. " secret"] = u.access_token_secret end
    leaks = H.collector(secrets)
  end)
  lazy_teardown(function()
    if c then c:close() end
    if env then env:stop() end
  end)

  it("ids: every method that takes one", function()
    local u = user(1)
    local takers = {
      { "webhook", "webhook_id", function(v) return c:webhook(v) end },
      { "validate_webhook", "webhook_id", function(v) return c:validate_webhook(v) end },
      { "delete_webhook", "webhook_id", function(v) return c:delete_webhook(v) end },
      { "subscriptions", "webhook_id", function(v) return c:subscriptions(v) end },
      { "subscribe", "webhook_id", function(v) return c:subscribe(v, u) end },
      { "unsubscribe (user id)", "user", function(v) return c:unsubscribe("1", v) end },
      { "replay", "webhook_id", function(v) return c:replay(v, "202401010000", "202401010100") end },
    }
    unsent(function()
      for _, t in ipairs(takers) do
        for _, b in ipairs(BAD_IDS) do
          -- a table is a user for unsubscribe: covered with the users below
          if not (t[1]:find("unsubscribe") and type(b[2]) == "table") then
            rejects(t[1] .. "(" .. b[1] .. ")", t[2], function() return t[3](b[2]) end)
          end
        end
      end
    end)
  end)

  it("users: subscribe, is_subscribed, unsubscribe", function()
    local good = user(1)
    local function with(k, v)
      local t = { user_id = good.user_id, access_token = good.access_token, access_token_secret = good.access_token_secret }
      t[k] = v
      return t
    end
    local bad_users = {
      { "nil", nil, "user" }, { "a string", "abc", "user" }, { "a number", 42, "user" },
      { "empty table", {}, "access_token" },
      { "no secret", with("access_token_secret", nil), "access_token_secret" },
      { "empty token", with("access_token", ""), "access_token" },
      { "numeric token", with("access_token", 1), "access_token" },
      { "table secret", with("access_token_secret", {}), "access_token_secret" },
      { "user_id 1/../2", with("user_id", "1/../2"), "user_id" },
      { "user_id 12a", with("user_id", "12a"), "user_id" },
      { "user_id CRLF", with("user_id", "1\r\n2"), "user_id" },
      { "user_id 20 digits", with("user_id", "12345678901234567890"), "user_id" },
      { "user_id NaN", with("user_id", NAN), "user_id" },
      { "user_id -5", with("user_id", -5), "user_id" },
    }
    unsent(function()
      for _, b in ipairs(bad_users) do
        rejects("subscribe " .. b[1], b[3], function() return c:subscribe("1", b[2]) end)
        rejects("is_subscribed " .. b[1], b[3], function() return c:is_subscribed("1", b[2]) end)
        if type(b[2]) == "table" then
          rejects("unsubscribe " .. b[1], b[3], function() return c:unsubscribe("1", b[2]) end)
        end
      end
    end)
  end)

  it("users: CR, LF or NUL in a user's tokens are refused before sending", function()
    local good = user(1)
    unsent(function()
      for _, field in ipairs { "access_token", "access_token_secret" } do
        for _, v in ipairs { good[field] .. "\r\nX-Evil: 1", good[field] .. "\0" } do
          local u = { user_id = good.user_id, access_token = good.access_token,
                      access_token_secret = good.access_token_secret }
          u[field] = v
          rejects("subscribe with " .. field .. " " .. v:sub(-3):gsub("%c", "?"), field,
            function() return c:subscribe("1", u) end)
        end
      end
    end)
  end)

  it("webhook URLs", function()
    -- a client for X itself whose transport only records: validation must
    -- raise before anything would leave
    local sent = {}
    local x = aa.new { consumer_key = "k", consumer_secret = "SECRETbad-input-x", access_token = "1-t",
      access_token_secret = "ts-secret-x", transport = function(req)
        sent[#sent + 1] = req
        return nil, { kind = "network", message = "offline" }
      end }
    leaks:add_secret("x consumer secret", "SECRETbad-input-x")
    local bad = {
      nil, 42, {}, "", "not a url", "https://", "https://example.com:8443/hook",
      "https://user:pw@example.com/hook", "http://example.com/hook", "ftp://example.com/hook",
      "https://exa mple.com/hook", "https://example.com/\r\nHost: evil", "https://example.com/\0x",
      "https://example.com/\n", "https://example.com/" .. string.rep("a", 200), "https://example.com/" .. BIG_TEXT,
      "//example.com/hook", "javascript:alert(1)",
    }
    for i = 1, 18 do
      rejects("register_webhook(#" .. i .. ")", "url", function() return x:register_webhook(bad[i]) end)
    end
    assert.are.same({}, sent)
    -- the loopback client (the emulator): control characters and length still count
    unsent(function()
      for _, u in ipairs { "", "http://127.0.0.1/\r\nX: y", "http://127.0.0.1/\0", "http://127.0.0.1/" .. BIG_TEXT, 5 } do
        rejects("register_webhook loopback", "url", function() return c:register_webhook(u) end)
      end
    end)
  end)

  it("webhook URLs: a loopback client still wants http(s)", function()
    unsent(function()
      rejects("register_webhook ftp on loopback", "url", function() return c:register_webhook("ftp://127.0.0.1/x") end)
    end)
  end)

  it("replay dates", function()
    local now = os.time()
    local bad = {
      { "nil", nil }, { "true", true }, { "table", {} }, { "empty", "" }, { "2024", "2024" },
      { "month 13", "202413011200" }, { "hour 24", "202401012400" }, { "minute 60", "202401011260" },
      { "ISO", "2024-01-01T00:00" }, { "NUL", "20240101\0000" }, { "CRLF", "202401010000\r\n" },
      { "10 MB", BIG }, { "NaN", NAN }, { "-1", -1 }, { "inf", INF },
    }
    unsent(function()
      for _, b in ipairs(bad) do
        rejects("replay from " .. b[1], "from", function() return c:replay("1", b[2], now - 60) end)
        rejects("replay to " .. b[1], "to", function() return c:replay("1", now - 3600, b[2]) end)
      end
      -- well-formed but impossible windows: an argument error, nothing sent
      rejects("replay from after to", "from", function() return c:replay("1", now - 60, now - 3600) end, { "argument" })
      rejects("replay 6 days back", "from", function() return c:replay("1", now - 6 * 86400, now - 3600) end, { "argument" })
      rejects("replay Feb 31 2099", "from", function() return c:replay("1", "209902311200", "209903011200") end, { "argument" })
    end)
  end)

  it("replay dates: huge epochs", function()
    unsent(function()
      rejects("replay from 1e300", "from", function() return c:replay("1", 1e300, 1e301) end)
    end)
  end)

  it("replay errors name the real URL, not the template", function()
    local _, err = c:replay("123", os.time() - 60, os.time() - 3600)
    calls = calls + 1
    assert.is_nil(tostring(err):find("{webhook_id}", 1, true), tostring(err))
  end)

  it("client:request", function()
    unsent(function()
      for _, m in ipairs { nil, 1, "", "FETCH", "GET\r\n", "G ET" } do
        rejects("request method", "method", function() return c:request(m, "/1.1/account_activity/webhooks.json") end)
      end
      for _, p in ipairs { nil, 1, "", "relative", "/a b", "/x\r\nHost: evil", "/x\0y" } do
        rejects("request path", "path", function() return c:request("GET", p) end)
      end
      rejects("request opts", "opts", function() return c:request("GET", "/x", "opts") end)
      rejects("request opts.auth", "opts.auth", function() return c:request("GET", "/x", { auth = "magic" }) end)
      rejects("request opts.user", "opts.user", function() return c:request("GET", "/x", { user = "u" }) end)
      rejects("request subscriber without user", "opts.user", function() return c:request("GET", "/x", { auth = "subscriber" }) end)
      -- headers are checked by the core before anything is sent
      rejects("request header CRLF", "header", function()
        return c:request("GET", "/1.1/account_activity/webhooks.json", { headers = { ["X-A"] = "a\r\nX-B: b" } })
      end, { "argument" })
      rejects("request header name CRLF", "header", function()
        return c:request("GET", "/1.1/account_activity/webhooks.json", { headers = { ["X-A\r\nX-B"] = "a" } })
      end, { "argument" })
    end)
  end)

  it("aa.new and aa.from_env options", function()
    local base = { consumer_key = "ck", consumer_secret = "SECRETbad-input-new", base_url = env.emu.url }
    leaks:add_secret("new consumer secret", "SECRETbad-input-new")
    local function with(k, v)
      local t = {}
      for kk, vv in pairs(base) do t[kk] = vv end
      t[k] = v
      return t
    end
    rejects("new(nil)", "opts", function() return aa.new(nil) end)
    rejects("new('x')", "opts", function() return aa.new("x") end)
    local bad = {
      { "consumer_key", nil }, { "consumer_key", 1 }, { "consumer_key", "" }, { "consumer_key", "a\r\nb" },
      { "consumer_secret", nil }, { "consumer_secret", {} }, { "consumer_secret", "" }, { "consumer_secret", "s\n" },
      { "access_token", "1-t" }, { "access_token", 5 }, { "access_token_secret", "x" }, { "access_token_secret", "" },
      { "bearer_token", 1 }, { "bearer_token", "b\r\n" }, { "bearer_token", "" },
      { "api", "v3" }, { "api", 1 }, { "api", "" },
      { "base_url", "ftp://x" }, { "base_url", "http://h/?q" }, { "base_url", "http://h\r\n" }, { "base_url", "" },
      { "base_url", 1 }, { "base_url", "http://h/\0" },
      { "timeout", -1 }, { "timeout", NAN }, { "timeout", "10" }, { "connect_timeout", -5 },
      { "retries", 1.5 }, { "retries", -1 }, { "retries", NAN }, { "max_wait", -1 }, { "backoff", -1 },
      { "sleep", "x" }, { "clock", 1 }, { "user_agent", "ua\r\nX-Evil: 1" }, { "user_agent", 1 }, { "user_agent", "" },
      { "transport", "http2" }, { "transport", 1 },
    }
    for _, b in ipairs(bad) do
      rejects("new " .. b[1] .. "=" .. tostring(b[2]):gsub("%c", "?"), b[1], function() return aa.new(with(b[1], b[2])) end)
    end
    for _, e in ipairs { nil, 1, "", "a/b", "dev\r\n", "dev\0" } do
      rejects("new premium env_name", "env_name", function()
        local t = with("api", "premium")
        t.env_name = e
        return aa.new(t)
      end)
    end
    rejects("from_env bad override", "consumer_key", function()
      return aa.from_env { consumer_key = 1, consumer_secret = "SECRETbad-input-new" }
    end)
    rejects("from_env bad api", "api", function()
      return aa.from_env { consumer_key = "k", consumer_secret = "SECRETbad-input-new", api = "v3" }
    end)
    if not os.getenv("TWITTER_CONSUMER_KEY") then
      rejects("from_env without credentials", "TWITTER_CONSUMER_KEY", function() return aa.from_env() end)
    end
    -- checked when the session is made: raised at the first call, naming the option, nothing sent
    unsent(function()
      rejects("user_agent with NUL", "user_agent", function()
        local x = aa.new(with("user_agent", "ua\0x"))
        return x:subscription_count()
      end)
      rejects("timeout 1e300", "timeout", function()
        local x = aa.new(with("timeout", 1e300))
        return x:subscription_count()
      end)
    end)
  end)

  it("aa.new refuses numbers that never end", function()
    rejects("new retries=inf", "retries", function()
      return aa.new { consumer_key = "k", consumer_secret = "s", retries = INF }
    end)
    rejects("new timeout=inf", "timeout", function()
      return aa.new { consumer_key = "k", consumer_secret = "s", timeout = INF }
    end)
  end)

  it("methods a flavour lacks, and a client without owner tokens", function()
    local p = H.client(env, "premium")
    rejects("premium replay", "replay", function() return p:replay("1", os.time() - 3600, os.time() - 60) end)
    local app_only = H.client(env, "enterprise", { access_token = false, access_token_secret = false })
    unsent(function()
      rejects("register without owner tokens", "access_token", function()
        return app_only:register_webhook(env.hook.hook_url)
      end)
      rejects("delete without owner tokens", "access_token", function() return app_only:delete_webhook("1") end)
    end)
  end)

  it("aa.crc_response and aa.verify_signature", function()
    local s = "SECRETwebhook-bad-input"
    leaks:add_secret("webhook secret", s)
    for _, b in ipairs { { nil }, { "" }, { 1 }, { {} }, { true } } do
      rejects("crc_response secret", "consumer_secret", function() return aa.crc_response(b[1], "token") end)
    end
    for _, b in ipairs { { nil }, { 1 }, { {} }, { true } } do
      rejects("crc_response token", "crc_token", function() return aa.crc_response(s, b[1]) end)
    end
    for _, b in ipairs { { nil }, { "" }, { {} } } do
      rejects("verify_signature secret", "consumer_secret", function() return aa.verify_signature(b[1], "{}", "sha256=x") end)
    end
    for _, b in ipairs { { nil }, { 1 }, { {} } } do
      rejects("verify_signature body", "raw_body", function() return aa.verify_signature(s, b[1], "sha256=x") end)
    end
    for _, b in ipairs { { 1 }, { {} }, { true } } do
      rejects("verify_signature header", "header_value", function() return aa.verify_signature(s, "{}", b[1]) end)
    end
    local good = "sha256=" .. core.base64_encode(core.hmac_sha256(s, "{}"))
    for _, h in ipairs { "", "sha256=", "sha256=!!!", "sha1=" .. good:sub(8), "SHA256" .. good:sub(7),
        good .. "\r\nX: y", good .. "\0", "\255\254", "sha256=" .. BIG_TEXT, good:sub(1, -3), " " .. good } do
      rejects("verify_signature bad header", "signature", function() return aa.verify_signature(s, "{}", h) end)
    end
  end)

  it("aa.parse_events, aa.router", function()
    for _, b in ipairs { { nil }, { 1 }, { true }, { print } } do
      rejects("parse_events type", "parse", function() return aa.parse_events(b[1]) end)
    end
    for _, body in ipairs { "", "not json", "[1,2", "5", "[1,2]", "\255\254", string.rep("[", 100000),
        "{\"a\":" .. BIG_TEXT, "\0" } do
      rejects("parse_events body", "JSON", function() return aa.parse_events(body) end)
    end
    rejects("router('x')", "router", function() return aa.router("x") end)
    rejects("router on_error", "on_error", function() return aa.router { on_error = 1 } end)
    local r = aa.router()
    for _, t in ipairs { { nil }, { 1 }, { {} } } do
      rejects("router:on type", "#1", function() return r:on(t[1], function() end) end)
    end
    for _, f in ipairs { { nil }, { "f" }, { 1 } } do
      rejects("router:on fn", "#2", function() return r:on("follow", f[1]) end)
    end
    for _, id in ipairs { { nil }, { {} }, { true } } do
      rejects("router:for_user", "for_user", function() return r:for_user(id[1]) end)
    end
    for _, d in ipairs { { 1 }, { true }, { print } } do
      rejects("router:dispatch", "dispatch", function() return r:dispatch(d[1]) end)
    end
    rejects("router:dispatch not json", "JSON", function() return r:dispatch("not json") end)
    for _, n in ipairs { -1, "x", {}, 0.5 } do
      rejects("router:dedupe", "dedupe", function() return r:dedupe(n) end)
    end
  end)

  it("router:dedupe refuses NaN", function()
    local r = aa.router()
    rejects("router:dedupe NaN", "dedupe", function() return r:dedupe(NAN) end)
  end)

  it("aa.webhook_handler options and requests", function()
    local s = "SECREThandler-bad-input"
    leaks:add_secret("handler secret", s)
    local on = function() end
    local bad_opts = {
      { "opts nil", nil, "#1" }, { "opts string", "x", "#1" }, { "no secret", { on_event = on }, "consumer_secret" },
      { "empty secret", { consumer_secret = "", on_event = on }, "consumer_secret" },
      { "number secret", { consumer_secret = 1, on_event = on }, "consumer_secret" },
      { "no handler", { consumer_secret = s }, "on_event" },
      { "on_event number", { consumer_secret = s, on_event = 1 }, "on_event" },
      { "both", { consumer_secret = s, on_event = on, router = aa.router() }, "on_event" },
      { "router string", { consumer_secret = s, router = "x" }, "router" },
      { "log number", { consumer_secret = s, on_event = on, log = 1 }, "log" },
      { "oauth2 secret", { consumer_secret = s, on_event = on, oauth2_client_secret = 1 }, "oauth2_client_secret" },
    }
    for _, b in ipairs(bad_opts) do
      rejects("webhook_handler " .. b[1], b[3], function() return aa.webhook_handler(b[2]) end)
    end
    local logs = {}
    local h = aa.webhook_handler { consumer_secret = s, on_event = function() error("dispatched a bad request") end,
      log = function(level, msg) logs[#logs + 1] = level .. " " .. tostring(msg) end }
    rejects("handler(nil)", "request", function() return h(nil) end)
    rejects("handler(1)", "request", function() return h(1) end)
    rejects("handler body number", "request.body", function() return h { method = "POST", headers = {}, body = 1 } end)
    local reqs = {
      {}, { method = 1 }, { method = "DELETE" }, { method = "GET" }, { method = "GET", query = "x" },
      { method = "GET", query = { crc_token = {} } }, { method = "GET", query = { crc_token = "" } },
      { method = "GET", query = { crc_token = BIG_TEXT } }, { method = "GET", query = { crc_token = "ab\r\ncd" } },
      { method = "GET", query = { crc_token = "ab\0cd" } }, { method = "GET", query = { crc_token = "\255\254\253" } },
      { method = "POST", headers = {} , body = "{}" },
      { method = "POST", headers = { ["x-twitter-webhooks-signature"] = "sha256=\255\254" }, body = "{}" },
      { method = "POST", headers = { ["x-twitter-webhooks-signature"] = "sha256=" .. BIG_TEXT }, body = "{}" },
      { method = "POST", headers = { ["x-twitter-webhooks-signature"] = "sha256=AAAA" }, body = BIG_TEXT },
      { method = "POST", headers = { ["x-twitter-webhooks-signature"] = "x\r\ny" }, body = "\0" },
    }
    for i, req in ipairs(reqs) do refused("handler request #" .. i, h, req) end
    for i, l in ipairs(logs) do leaks:add("handler log #" .. i, l) end
  end)

  it("handler: a request whose headers are not a table", function()
    local h = aa.webhook_handler { consumer_secret = "SECREThandler-bad-input", on_event = function() end, log = function() end }
    rejects("handler headers string", "request.headers", function()
      return h { method = "POST", headers = "x", body = "{}" }
    end)
  end)

  it("core functions", function()
    for _, f in ipairs { "hmac_sha1", "hmac_sha256" } do
      for _, b in ipairs { { nil, "m" }, { {}, "m" }, { "k", nil }, { "k", print } } do
        rejects("core." .. f, b[1] == "k" and "#2" or "#1", function() return core[f](b[1], b[2]) end)
      end
    end
    for _, f in ipairs { "base64_encode", "base64_decode", "percent_encode" } do
      for _, b in ipairs { { nil }, { {} }, { print } } do
        rejects("core." .. f, "#1", function() return core[f](b[1]) end)
      end
    end
    for _, s in ipairs { "!!!", "abc", "ab=c", "\0\0\0\0", "\255\255\255\255" } do
      rejects("core.base64_decode data", "base64", function() return core.base64_decode(s) end)
    end
    rejects("core.equal", "#1", function() return core.equal(nil, "a") end)
    rejects("core.equal 2", "#2", function() return core.equal("a", {}) end)
    local o = { method = "GET", url = "http://127.0.0.1/x", consumer_key = "k", consumer_secret = "SECRETcore-bad" }
    leaks:add_secret("core secret", "SECRETcore-bad")
    rejects("oauth1_header nil", "#1", function() return core.oauth1_header(nil) end)
    for _, b in ipairs { { "method", nil }, { "method", "GET\r\n" }, { "method", 1 }, { "url", nil }, { "url", {} },
        { "consumer_key", nil }, { "consumer_secret", {} }, { "params", "x" } } do
      local t = {}
      for k, v in pairs(o) do t[k] = v end
      t[b[1]] = b[2]
      rejects("oauth1_header " .. b[1], b[1], function() return core.oauth1_header(t) end)
    end
    for _, b in ipairs { { "timeout", -1 }, { "timeout", "x" }, { "timeout", NAN }, { "timeout", 1e300 },
        { "connect_timeout", -1 }, { "user_agent", "a\r\nb" }, { "user_agent", "a\0b" }, { "user_agent", 1 } } do
      rejects("core.session " .. b[1], b[1], function() return core.session { [b[1]] = b[2] } end)
    end
    local s = core.session { timeout = 2 }
    rejects("session:request nil", "table expected", function() return s:request(nil) end)
    rejects("session:request no url", "url", function() return s:request { method = "GET" } end)
    unsent(function()
      local url = env.emu.url .. "/1.1/account_activity/webhooks.json"
      for _, req in ipairs {
        { method = "GET", url = url .. "\r\nX: y" }, { method = "GET", url = url .. "\0x" },
        { method = "GE T", url = url }, { method = "GET", url = url, headers = { ["X-A"] = "a\r\nb" } },
        { method = "GET", url = url, headers = { ["X-A\r\nB"] = "a" } }, { method = "GET", url = url, headers = { ["X-A"] = "a\0" } },
      } do
        rejects("session:request", "", function() return s:request(req) end, { "argument" })
      end
    end)
    s:close()
  end)

  it("leaked no secret and made at least 150 malformed calls", function()
    assert.are.same({}, leaks:leaks())
    assert.is_true(calls >= 150, "only " .. calls .. " malformed calls")
    print(("\n[bad_input_spec] %d malformed calls"):format(calls))
  end)
end)
