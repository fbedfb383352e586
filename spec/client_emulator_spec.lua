-- The client against the emulator (a real nginx on loopback) over the real
-- libcurl transport: every method in every flavour, documented errors,
-- rate limits, retries, injected faults, bearer refetch, and secrets.
local aa = require "account_activity"
local emulator = require "account_activity.emulator"
local hook_server = require "client_hook"
local cjson = require "cjson"

local emu, hook, cfg
local collected = {} -- every error string and tostring(client) seen, checked for secrets at the end

local function secrets()
  local list = { cfg.app.consumer_secret, cfg.app.bearer_token, cfg.app.owner.access_token_secret }
  for _, u in ipairs(cfg.users) do list[#list + 1] = u.access_token_secret end
  return list
end

local function assert_no_secret(s, extra)
  s = tostring(s)
  for _, secret in ipairs(secrets()) do
    assert.is_nil(s:find(secret, 1, true), "a secret leaked into: " .. s:sub(1, 300))
  end
  for _, secret in ipairs(extra or {}) do
    assert.is_nil(s:find(secret, 1, true), "a secret leaked into: " .. s:sub(1, 300))
  end
end

local function note(err)
  collected[#collected + 1] = tostring(err)
  return err
end

local sleeps
local function client(api, extra)
  sleeps = {}
  local opts = {
    consumer_key = cfg.app.consumer_key, consumer_secret = cfg.app.consumer_secret,
    access_token = cfg.app.owner.access_token, access_token_secret = cfg.app.owner.access_token_secret,
    base_url = emu.url, api = api, env_name = api == "premium" and "dev" or nil,
    -- retries are real; their waits are recorded instead of slept
    sleep = function(s) sleeps[#sleeps + 1] = s end,
  }
  for k, v in pairs(extra or {}) do opts[k] = v end
  local c = aa.new(opts)
  collected[#collected + 1] = tostring(c)
  return c
end

local function user(i)
  local u = cfg.users[i]
  return { user_id = u.user_id, access_token = u.access_token, access_token_secret = u.access_token_secret }
end

local function control(method, path, body)
  local r, status = emu:control(method, path, body)
  assert.is_not_nil(r, tostring(status))
  assert.are.equal(200, status, cjson.encode(r))
  return r
end

local function fault(f)
  control("POST", "/_emulator/faults", f)
end

local function log_since(n)
  local entries = emu:log()
  local out = {}
  for i = n + 1, #entries do out[#out + 1] = entries[i] end
  return out
end

describe("client against the emulator", function()
  lazy_setup(function()
    local err
    emu, err = emulator.start {}
    assert(emu, err)
    cfg = emu.config
    hook, err = hook_server.start(emu)
    assert(hook, err)
  end)

  lazy_teardown(function()
    if emu then
      -- the emulator's own request log must hold no secret either
      local entries = emu:log()
      if entries then assert_no_secret(cjson.encode(entries)) end
      emu:stop()
    end
    if hook then hook:stop() end
    for _, s in ipairs(collected) do assert_no_secret(s) end
  end)

  before_each(function()
    control("POST", "/_emulator/reset", {})
  end)

  for _, api in ipairs { "enterprise", "premium", "v2" } do
    describe(api, function()
      it("registers, lists, finds, validates and deletes a webhook", function()
        local c = client(api)
        local w, res = c:register_webhook(hook.hook_url)
        assert.is_table(w, tostring(res))
        assert.matches("^%d+$", w.id)
        assert.are.equal(hook.hook_url, w.url)
        assert.is_true(w.valid)
        assert.is_string(w.created_at)
        assert.are.equal(1, res.attempts)
        assert.is_number(res.rate_limit.limit)
        assert.is_number(res.rate_limit.remaining)
        assert.is_number(res.rate_limit.reset)

        local list = assert(c:webhooks())
        assert.are.equal(1, #list)
        assert.are.equal(w.id, list[1].id)
        assert.are.same(w.id, assert(c:webhook(w.id)).id)
        local none, nerr = c:webhook("999")
        assert.is_nil(none)
        assert.are.equal("not_found", note(nerr).kind)

        assert.is_true((c:validate_webhook(w.id)))
        assert.is_true((c:delete_webhook(w.id)))
        assert.are.same({}, (c:webhooks()))
        local gone, gerr = c:delete_webhook(w.id)
        assert.is_nil(gone)
        assert.are.equal("not_found", note(gerr).kind)
        local v, verr = c:validate_webhook(w.id)
        assert.is_nil(v)
        assert.are.equal("not_found", note(verr).kind)
      end)

      it("subscribes, checks, lists, counts and unsubscribes users", function()
        local c = client(api)
        local w = assert(c:register_webhook(hook.hook_url))
        local u1, u2 = user(1), user(2)
        assert.is_true((c:subscribe(w.id, u1)))
        assert.is_true((c:subscribe(w.id, u2)))
        assert.is_true((c:is_subscribed(w.id, u1)))
        assert.is_false((c:is_subscribed(w.id, user(3))))

        local ids, res = c:subscriptions(w.id)
        table.sort(ids)
        local want = { u1.user_id, u2.user_id }
        table.sort(want)
        assert.are.same(want, ids)
        assert.is_table(res.json)

        local n = assert(c:subscription_count())
        assert.are.equal(2, n.all)
        assert.is_number(n.direct_messages)
        assert.is_string(n.account_name)

        local dup, derr = c:subscribe(w.id, u1)
        assert.is_nil(dup)
        assert.are.equal("conflict", note(derr).kind)

        -- a user table (their tokens in v1.1, their id in v2) and a bare id
        assert.is_true((c:unsubscribe(w.id, u1)))
        assert.is_false((c:is_subscribed(w.id, u1)))
        assert.is_true((c:unsubscribe(w.id, u2.user_id)))
        assert.are.same({}, (c:subscriptions(w.id)))
        assert.are.equal(0, assert(c:subscription_count()).all)
        local again, aerr = c:unsubscribe(w.id, u2.user_id)
        assert.is_nil(again)
        assert.are.equal("not_found", note(aerr).kind)
      end)

      it("maps the documented errors to kinds", function()
        local c = client(api)
        local bad, err = c:register_webhook(hook.url .. "/nocrc")
        assert.is_nil(bad)
        assert.are.equal("invalid_webhook", note(err).kind)

        local w = assert(c:register_webhook(hook.hook_url))
        if api ~= "premium" then
          local dup, derr = c:register_webhook(hook.hook_url)
          assert.is_nil(dup)
          assert.are.equal("conflict", note(derr).kind)
        end

        local stranger = { user_id = "1", access_token = "1-unknown", access_token_secret = "nope-nope" }
        local s, serr = c:subscribe(w.id, stranger)
        assert.is_nil(s)
        assert.are.equal("auth", note(serr).kind)
        assert.are.equal(401, serr.status)

        if api ~= "premium" then
          local u, uerr = c:subscribe("123456", user(1))
          assert.is_nil(u)
          assert.are.equal("not_found", note(uerr).kind)
        end
      end)

      if api ~= "premium" then
        it("starts a replay job", function()
          local c = client(api)
          local w = assert(c:register_webhook(hook.hook_url))
          local now = os.time()
          local job, res = c:replay(w.id, now - 3 * 3600, now - 3600)
          assert.is_table(job, tostring(res))
          assert.matches("^%d+$", job.job_id)
          assert.is_string(job.created_at)
          local far, ferr = c:replay(w.id, now - 6 * 86400, now - 3600)
          assert.is_nil(far)
          assert.are.equal("argument", note(ferr).kind)
        end)
      end
    end)
  end

  describe("app-only bearer token", function()
    it("is fetched on first need, cached, and fetched again after 89", function()
      local a = client("enterprise")
      local n0 = #emu:log()
      assert.is_table((a:webhooks()))
      assert.is_table((a:webhooks()))
      local names = {}
      for _, e in ipairs(log_since(n0)) do names[#names + 1] = e.endpoint end
      assert.are.same({ "oauth2.token", "v1.list", "v1.list" }, names)

      -- another client revokes it; the first one notices (89) and fetches anew
      local b = client("enterprise")
      assert.is_string((b:bearer_token()))
      assert.is_true((b:invalidate_bearer_token()))
      local list, res = a:webhooks()
      assert.is_table(list, tostring(res))
      assert.are.equal(2, res.attempts)
      assert.are.equal(89, res.history[1].code)
    end)

    it("a client-supplied bearer works without a fetch", function()
      local c = client("v2", { bearer_token = cfg.app.bearer_token })
      local n0 = #emu:log()
      assert.is_table((c:webhooks()))
      assert.are.equal(1, #log_since(n0))
    end)
  end)

  describe("rate limits and retries", function()
    it("waits for x-rate-limit-reset after a 429, then succeeds", function()
      local c = client("enterprise")
      local reset = os.time() + 2
      fault { method = "GET", path = "/webhooks%.json$", status = 429, count = 1,
              headers = { ["x-rate-limit-limit"] = "15", ["x-rate-limit-remaining"] = "0",
                          ["x-rate-limit-reset"] = tostring(reset) } }
      local list, res = c:webhooks()
      assert.is_table(list, tostring(res))
      assert.are.equal(2, res.attempts)
      assert.are.equal(1, #sleeps)
      assert.is_true(sleeps[1] >= 1 and sleeps[1] <= 4, "slept " .. tostring(sleeps[1]))
    end)

    it("returns the 429 at once when the reset is past max_wait", function()
      local c = client("enterprise", { max_wait = 5 })
      fault { method = "GET", path = "/webhooks%.json$", status = 429, count = 1,
              headers = { ["x-rate-limit-reset"] = tostring(os.time() + 900), ["x-rate-limit-remaining"] = "0" } }
      local list, err = c:webhooks()
      assert.is_nil(list)
      assert.are.equal("rate_limit", note(err).kind)
      assert.are.equal(88, err.code)
      assert.are.equal(1, err.attempts)
      assert.are.equal(0, #sleeps)
    end)

    it("enforced emulator limits come back as rate_limit errors with the window", function()
      control("POST", "/_emulator/config", { rate_limits = { enforce = true, limits = { ["v1.count"] = 1 } } })
      local c = client("enterprise", { max_wait = 0 })
      assert.is_table((c:subscription_count()))
      local n, err = c:subscription_count()
      assert.is_nil(n)
      assert.are.equal("rate_limit", note(err).kind)
      assert.are.equal(0, err.rate_limit.remaining)
      assert.is_number(err.rate_limit.reset)
      control("POST", "/_emulator/config", { rate_limits = { enforce = false } })
    end)

    it("retries 5xx for idempotent calls and surfaces the last one", function()
      local c = client("v2")
      fault { method = "GET", path = "^/2/webhooks$", status = 503, count = 1 }
      local list, res = c:webhooks()
      assert.is_table(list, tostring(res))
      assert.are.equal(2, res.attempts)

      fault { method = "GET", path = "^/2/webhooks$", status = 500, count = 5 }
      local none, err = c:webhooks()
      assert.is_nil(none)
      assert.are.equal("http", note(err).kind)
      assert.are.equal(500, err.status)
      assert.are.equal(3, err.attempts)
      assert.matches("(after 3 attempts)", tostring(err), nil, true)
    end)

    it("never retries a POST that reached the server", function()
      local c = client("enterprise")
      local w = assert(c:register_webhook(hook.hook_url))
      fault { method = "POST", path = "/subscriptions/all%.json$", status = 503, count = 3 }
      local n0 = #emu:log()
      local ok, err = c:subscribe(w.id, user(1))
      assert.is_nil(ok)
      assert.are.equal(503, note(err).status)
      assert.are.equal(1, err.attempts)
      assert.are.equal(1, #log_since(n0))
    end)
  end)

  describe("faults", function()
    -- A client with its bearer given makes no token call first, so the
    -- faulted request goes out on a fresh connection: libcurl silently
    -- re-sends a request once when a *reused* connection dies before any
    -- answer, which would swallow a one-shot fault.
    local function one(action)
      local c = client("enterprise", { retries = 0, bearer_token = cfg.app.bearer_token })
      fault { method = "GET", path = "/subscriptions/count%.json$", action = action, count = 1 }
      return c:subscription_count()
    end

    it("a reset connection is a network error", function()
      local v, err = one("reset")
      assert.is_nil(v)
      assert.are.equal("network", note(err).kind)
    end)

    it("a truncated body is a network error", function()
      local v, err = one("truncate")
      assert.is_nil(v)
      assert.are.equal("network", note(err).kind)
    end)

    it("invalid JSON is a decode error", function()
      local v, err = one("invalid_json")
      assert.is_nil(v)
      assert.are.equal("decode", note(err).kind)
      assert.are.equal(200, err.status)
    end)

    it("a reset GET is retried", function()
      local c = client("enterprise", { bearer_token = cfg.app.bearer_token })
      fault { method = "GET", path = "/subscriptions/count%.json$", action = "reset", count = 1 }
      local n, res = c:subscription_count()
      assert.is_table(n, tostring(res))
      assert.are.equal(2, res.attempts)
    end)
  end)

  describe("inside nginx", function()
    it("picks the cosocket transport by itself", function()
      local c = client("enterprise")
      assert(c:register_webhook(hook.hook_url))
      local s = require("account_activity.core").session { timeout = 10 }
      local r = assert(s:request { method = "GET", url = hook.url .. "/probe" })
      s:close()
      assert.are.equal(200, r.status, r.body)
      local out = cjson.decode(r.body)
      assert.are.equal("ngx", out.transport)
      assert.are.equal(1, out.webhooks, tostring(out.err))
      assert.are.equal(0, out.all)
      collected[#collected + 1] = out.client
    end)
  end)

  it("keeps secrets out of errors, tostring and the emulator log", function()
    local c = client("enterprise")
    local _, err = c:subscribe("123", { user_id = "1", access_token = "1-x", access_token_secret = "very-secret-value" })
    assert_no_secret(tostring(note(err)), { "very-secret-value" })
    assert_no_secret(tostring(c))
    assert_no_secret(cjson.encode(emu:log()), { "very-secret-value" })
  end)
end)
