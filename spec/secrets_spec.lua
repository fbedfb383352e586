-- No secret anywhere: an emulator with per-run credentials, every client
-- method with success and with faults, errors, tostring of clients and
-- sessions, the webhook handler's log, aa.help, the emulator's request and
-- error logs, and the CLI. Everything produced is collected and searched for
-- each secret (and its percent-encoded and base64 forms); a leak is reported
-- by where it came from, never by printing the secret.
local aa = require "account_activity"
local core = require "account_activity.core"
local H = require "hardening"

math.randomseed(os.time() + math.floor((os.clock() * 1e6) % 1e6))

local env, leaks, app, users

local function secret_config()
  local tag = H.token("", 6)
  app = {
    consumer_key = "CKEY" .. tag .. H.token("", 16),
    consumer_secret = H.token("SECRETcs-" .. tag .. "-", 32),
    bearer_token = H.token("SECRETbearer-" .. tag .. "-", 40),
    owner = { user_id = "1200000000", screen_name = "owner_" .. tag,
              access_token = "1200000000-" .. H.token("OWNERTOK", 24),
              access_token_secret = H.token("SECRETots-" .. tag .. "-", 32) },
  }
  users = {}
  for i = 1, 3 do
    users[i] = { user_id = "120000000" .. i, screen_name = "user_" .. i,
                 access_token = "120000000" .. i .. "-" .. H.token("USERTOK", 24),
                 access_token_secret = H.token("SECRETuts" .. i .. "-" .. tag .. "-", 32) }
  end
  return { app = app, users = users }
end

local function client(extra)
  return H.client(env, "enterprise", extra)
end

-- The emulator's log is cleared by a reset: collect it first.
local function reset()
  leaks:add("emulator log before a reset", env:log())
  leaks:add("emulator error log before a reset", env.emu:error_log())
  env:reset()
end

-- Every field of an error (request, history, errors...), as JSON.
local function note_err(where, err)
  if err == nil then return end
  leaks:add(where .. " tostring", tostring(err))
  if type(err) == "table" then
    local t = {}
    for k, v in pairs(err) do
      if type(v) ~= "function" and type(v) ~= "userdata" then t[tostring(k)] = v end
    end
    leaks:add(where .. " fields", require("cjson.safe").encode(t) or "")
  end
end

local function run_all_methods(c, tag)
  local out = {}
  local function call(name, ...)
    local ok, v, r = pcall(c[name], c, ...)
    leaks:add(tag .. " " .. name .. " raised?", ok and "" or tostring(v))
    if v == nil or v == false then
      note_err(tag .. " " .. name, r)
    elseif name ~= "bearer_token" then -- its value is the secret, by contract
      leaks:add(tag .. " " .. name, v)
    end
    if type(r) == "table" and v then leaks:add(tag .. " " .. name .. " response headers", r.headers or {}) end
    return v
  end
  local w = call("register_webhook", env.hook.hook_url)
  local id = type(w) == "table" and w.id or "123"
  call("webhooks"); call("webhook", id); call("validate_webhook", id)
  local u = { user_id = users[1].user_id, access_token = users[1].access_token,
              access_token_secret = users[1].access_token_secret }
  call("subscribe", id, u); call("is_subscribed", id, u); call("subscriptions", id)
  call("subscription_count")
  local now = os.time()
  call("replay", id, now - 3 * 3600, now - 3600)
  call("unsubscribe", id, u)
  call("subscribe", id, u); call("unsubscribe", id, u.user_id)
  call("request", "GET", "/1.1/account_activity/webhooks.json", { auth = "app" })
  call("delete_webhook", id)
  call("bearer_token"); call("invalidate_bearer_token")
  -- a freshly issued token is a secret too
  local fresh = call("bearer_token")
  if type(fresh) == "string" then leaks:add_secret("re-issued bearer", fresh) end
  leaks:add(tag .. " tostring(client)", tostring(c))
  leaks:add(tag .. " credentials()", c:credentials())
  return out
end

describe("secrets stay secret", function()
  lazy_setup(function()
    env = H.start(secret_config())
    assert.are.equal(app.consumer_secret, env.cfg.app.consumer_secret)
    local s = { consumer_secret = app.consumer_secret, bearer_token = app.bearer_token,
                owner_token_secret = app.owner.access_token_secret }
    for i, u in ipairs(users) do s["user " .. i .. " token secret"] = u.access_token_secret end
    leaks = H.collector(s)
  end)
  lazy_teardown(function() if env then env:stop() end end)

  it("every client method, succeeding", function()
    reset()
    run_all_methods(client(), "ok")
    -- the bearer fetched rather than given
    run_all_methods(client { bearer_token = false }, "fetched")
  end)

  it("every client method, under faults", function()
    local faults = {
      { status = 500, count = 100 }, { status = 429, count = 100, headers = { ["x-rate-limit-reset"] = tostring(os.time() + 900) } },
      { action = "reset", count = 100 }, { action = "truncate", count = 100 }, { action = "invalid_json", count = 100 },
      { status = 401, count = 100, body = { errors = { { code = 89, message = "Invalid or expired token." } } } },
    }
    for i, f in ipairs(faults) do
      reset()
      env:fault(f)
      run_all_methods(client { retries = 1, sleep = function() end }, "fault " .. i)
    end
    reset()
    -- transport failures: TLS and refused
    run_all_methods(client { base_url = (env.emu.url:gsub("^http:", "https:")), retries = 0 }, "tls")
    run_all_methods(client { base_url = "http://127.0.0.1:9", retries = 0 }, "refused")
    -- wrong credentials: the server says no, the error says nothing secret
    local wrong = client { consumer_secret = H.token("SECRETwrong-", 20), access_token_secret = H.token("SECRETwrongots-", 20),
                           bearer_token = H.token("SECRETwrongbearer-", 30) }
    run_all_methods(wrong, "wrong")
  end)

  it("argument errors and tostring of sessions", function()
    local c = client()
    for _, f in ipairs {
      function() return c:subscribe("1", { access_token = "x", access_token_secret = nil }) end,
      function() return c:subscribe("x/y", { access_token = users[1].access_token, access_token_secret = users[1].access_token_secret }) end,
      function() return aa.new { consumer_key = "k", consumer_secret = app.consumer_secret, retries = -1 } end,
      function() return aa.new { consumer_key = "k", consumer_secret = app.consumer_secret, access_token = "t" } end,
      function() return aa.new { consumer_key = app.consumer_key, consumer_secret = app.consumer_secret .. "\n" } end,
      function() return aa.new { consumer_key = "k", consumer_secret = "s", bearer_token = app.bearer_token .. "\r\n" } end,
      function() return aa.crc_response(app.consumer_secret, {}) end,
      function() return aa.verify_signature(app.consumer_secret, 1, "x") end,
      function() return aa.webhook_handler { consumer_secret = app.consumer_secret } end,
      function() return core.oauth1_header { method = "GET\n", url = "http://x/", consumer_key = "k",
        consumer_secret = app.consumer_secret, token = "t", token_secret = app.owner.access_token_secret } end,
    } do
      local ok, e = pcall(f)
      leaks:add("argument error", ok and "" or tostring(e))
    end
    local s = core.session { timeout = 1 }
    leaks:add("tostring(session)", tostring(s))
    s:close()
    leaks:add("tostring(client.transport)", tostring(c.transport))
  end)

  it("the webhook handler and its log", function()
    local logs, seen = {}, {}
    local h = aa.webhook_handler { consumer_secret = app.consumer_secret,
      on_event = function(ev) seen[#seen + 1] = ev end,
      on_error = function(err) logs[#logs + 1] = "on_error " .. tostring(err) end,
      log = function(level, msg) logs[#logs + 1] = tostring(level) .. " " .. tostring(msg) end }
    leaks:add("tostring(handler)", tostring(h))
    local body = '{"for_user_id":"1200000001","favorite_events":[{"id":"1"}]}'
    local sig = "sha256=" .. core.base64_encode(core.hmac_sha256(app.consumer_secret, body))
    local bad = "sha256=" .. core.base64_encode(core.hmac_sha256("nope", body))
    for _, req in ipairs {
      { method = "GET", path = "/webhook", query = { crc_token = "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuv" }, headers = {} },
      { method = "GET", path = "/webhook", query = {}, headers = {} },
      { method = "POST", path = "/webhook", headers = { ["x-twitter-webhooks-signature"] = sig }, body = body },
      { method = "POST", path = "/webhook", headers = { ["x-twitter-webhooks-signature"] = bad }, body = body },
      { method = "POST", path = "/webhook", headers = { ["x-twitter-webhooks-signature"] = sig }, body = body .. " " },
      { method = "POST", path = "/webhook", headers = {}, body = body },
      { method = "PUT", path = "/webhook", headers = {}, body = "" },
    } do
      local ok, res = pcall(h, req)
      leaks:add("handler response", ok and res or tostring(res))
    end
    -- a raising event handler: its error goes to on_error / the log
    local h2 = aa.webhook_handler { consumer_secret = app.consumer_secret,
      on_event = function() error("handler blew up") end,
      log = function(level, msg) logs[#logs + 1] = tostring(level) .. " " .. tostring(msg) end }
    local ok, res = pcall(h2, { method = "POST", path = "/webhook",
      headers = { ["x-twitter-webhooks-signature"] = sig }, body = body })
    leaks:add("raising handler response", ok and res or tostring(res))
    assert.is_true(#logs > 0)
    for i, l in ipairs(logs) do leaks:add("handler log #" .. i, l) end
  end)

  it("aa.help, captured", function()
    local out = {}
    local old_print, old_write = _G.print, io.write
    local function grab(sep)
      return function(...)
        local parts = {}
        for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
        out[#out + 1] = table.concat(parts, sep)
      end
    end
    _G.print, io.write = grab("\t"), grab("") -- luacheck: ignore 122 (capturing aa.help output)
    local ok, err = pcall(function()
      aa.help()
      aa.help("new"); aa.help("crc_response"); aa.help("client:subscribe"); aa.help(aa.webhook_handler)
      aa.help("no such thing")
    end)
    _G.print, io.write = old_print, old_write -- luacheck: ignore 122
    assert.is_true(ok, "aa.help raised: " .. tostring(err))
    assert.is_true(#out > 0)
    for i, s in ipairs(out) do leaks:add("aa.help #" .. i, s) end
  end)

  it("the CLI with a --config file of secrets", function()
    local f = io.open("bin/account-activity", "r")
    if not f then pending("bin/account-activity is not there yet") end
    f:close()
    local cjson = require "cjson"
    local path = os.tmpname()
    local cf = assert(io.open(path, "w"))
    cf:write(cjson.encode { app = app, users = users, base_url = env.emu.url })
    cf:close()
    local interp = require "spec_lua"
    local function run(args)
      local cmd = interp .. " bin/account-activity --config " .. path .. " --base-url " .. env.emu.url
        .. " " .. args .. " 2>&1"
      local p = assert(io.popen(cmd))
      local s = p:read("*a")
      p:close()
      leaks:add("cli " .. args, s)
      return s
    end
    reset()
    run("webhooks list")
    run("webhooks add " .. env.hook.hook_url)
    run("webhooks add http://127.0.0.1:9/nothere")
    run("subs count")
    run("subs list 999")
    run("--json webhooks list")
    run("subs add 1 --users " .. path)
    run("crc " .. app.consumer_secret:sub(1, 3) .. "x sometoken")
    run("nosuchcommand")
    env:fault { status = 500, count = 10 }
    run("webhooks list")
    env:clear_faults()
    os.remove(path)
  end)

  it("the emulator's request and error logs", function()
    leaks:add("emulator log", env:log())
    leaks:add("emulator state", env:control("GET", "/_emulator/state"))
    leaks:add("emulator error log", env.emu:error_log())
    leaks:add("tostring(emulator)", tostring(env.emu))
  end)

  it("the collector finds a planted secret in each form", function()
    local c = H.collector { cs = app.consumer_secret }
    c:add("plain", "x" .. app.consumer_secret .. "y")
    c:add("basic", "Basic " .. core.base64_encode(app.consumer_key .. ":" .. app.consumer_secret))
    c:add("b64", core.base64_encode(app.consumer_secret))
    c:add("clean", "nothing here")
    local where = {}
    for _, l in ipairs(c:leaks()) do
      where[l:match("^(%w+):")] = true
      assert.is_nil(l:find(app.consumer_secret, 1, true), "a leak line printed the secret")
    end
    assert.are.same({ plain = true, basic = true, b64 = true }, where)
  end)

  it("nothing collected holds a secret", function()
    assert.is_true(#leaks.items > 100, "collected only " .. #leaks.items .. " strings")
    assert.are.same({}, leaks:leaks())
  end)
end)
