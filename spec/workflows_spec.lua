-- The workflows against the emulator (a real nginx on loopback) and a local
-- webhook endpoint: success, idempotent re-runs (no new mutating requests in
-- the emulator's log), interruption by injected faults and re-run, failure
-- isolation, rate limits (429 with reset, a spent window), progress.
local aa = require "account_activity"
local core = require "account_activity.core"
local emulator = require "account_activity.emulator"
local cli = require "account_activity.cli"
local cjson = require "cjson"

local emu, ep, cfg, hook_url, events_file

local function control(method, path, body)
  local r, status = emu:control(method, path, body)
  assert(r, tostring(status))
  assert.are.equal(200, status, cjson.encode(r))
  return r
end

local function new_client(extra)
  local opts = {
    consumer_key = cfg.app.consumer_key, consumer_secret = cfg.app.consumer_secret,
    access_token = cfg.app.owner.access_token, access_token_secret = cfg.app.owner.access_token_secret,
    base_url = emu.url,
  }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return aa.new(opts)
end

local function users(from, to)
  local out = {}
  for i = from, to do
    local u = cfg.users[i]
    out[#out + 1] = { user_id = u.user_id, access_token = u.access_token, access_token_secret = u.access_token_secret }
  end
  return out
end

local MUTATING = { POST = true, PUT = true, DELETE = true }

local function clear_log() control("DELETE", "/_emulator/log") end

-- Mutating API requests in the log since the last clear_log().
local function mutations()
  local n = 0
  for _, e in ipairs(emu:log()) do
    if MUTATING[e.method] and not e.path:find("^/oauth2/") then n = n + 1 end
  end
  return n
end

local function statuses(method)
  local out = {}
  for _, e in ipairs(emu:log()) do
    if e.method == method then out[e.status] = (out[e.status] or 0) + 1 end
  end
  return out
end

local function subscribed_set(c, id)
  local list = assert(c:subscriptions(id))
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s, #list
end

-- X marks a webhook invalid when a CRC fails: run one with another secret.
local function invalidate(id)
  control("POST", "/_emulator/config", { app = { consumer_secret = "not-the-secret-0000000000000" } })
  local r = control("POST", "/_emulator/crc", { webhook_id = id })
  control("POST", "/_emulator/config", { app = { consumer_secret = cfg.app.consumer_secret } })
  assert.is_false(r.results[1].valid)
end

local function reset_all()
  control("DELETE", "/_emulator/faults")
  control("POST", "/_emulator/reset", {})
  control("POST", "/_emulator/config", { rate_limits = { enforce = false, window = 900, limits = {} },
    latency_ms = 0, limits = { webhooks = 5 }, crc = { timeout_ms = 3000 } })
end

describe("workflows against the emulator", function()
  lazy_setup(function()
    local err
    emu, err = emulator.start { config = { users_count = 60 } }
    assert(emu, err)
    cfg = emu.config
    events_file = os.tmpname()
    ep, err = cli.start_endpoint { secret = cfg.app.consumer_secret, file = events_file }
    assert(ep, err)
    hook_url = ep.hook_url
  end)

  lazy_teardown(function()
    if ep then ep:stop() end
    if emu then emu:stop() end
    if events_file then os.remove(events_file) end
  end)

  before_each(reset_all)

  describe("ensure_webhook", function()
    it("registers, then reuses without any mutating request", function()
      local c = new_client()
      local wh, info = c:ensure_webhook(hook_url)
      assert.is_table(wh, tostring(info))
      assert.are.equal("registered", info.action)
      assert.is_true(wh.valid)
      clear_log()
      local again, info2 = c:ensure_webhook(hook_url)
      assert.are.equal(wh.id, again.id)
      assert.are.equal("reused", info2.action)
      assert.are.equal(0, mutations())
      -- as a function of the module too
      local wh3 = require("account_activity.workflows").ensure_webhook(c, hook_url)
      assert.are.equal(wh.id, wh3.id)
    end)

    it("re-validates a webhook X marked invalid", function()
      local c = new_client()
      local wh = assert(c:ensure_webhook(hook_url))
      invalidate(wh.id)
      assert.is_false(assert(c:webhook(wh.id)).valid)
      local again, info = c:ensure_webhook(hook_url)
      assert.are.equal("revalidated", info.action)
      assert.are.equal(wh.id, again.id)
      assert.is_true(assert(c:webhook(wh.id)).valid)
    end)

    it("with replace = true frees the last slot, without it reports the limit", function()
      local c = new_client()
      control("POST", "/_emulator/config", { limits = { webhooks = 1 } })
      local a = assert(c:ensure_webhook(hook_url))
      local none, err = c:ensure_webhook(hook_url .. "/b")
      assert.is_nil(none)
      assert.are.equal("forbidden", err.kind)
      local b, info = c:ensure_webhook(hook_url .. "/b", { replace = true })
      assert.is_table(b, tostring(info))
      assert.are.equal("replaced", info.action)
      assert.are.equal(a.id, info.replaced.id)
      local list = assert(c:webhooks())
      assert.are.equal(1, #list)
      assert.are.equal(hook_url .. "/b", list[1].url)
    end)

    it("returns the registration error when the CRC fails", function()
      local c = new_client()
      local none, err = c:ensure_webhook(ep.url .. "/nowhere")
      assert.is_nil(none)
      assert.are.equal("invalid_webhook", err.kind)
    end)
  end)

  describe("subscribe_many", function()
    it("subscribes everyone concurrently and a re-run sends no POST", function()
      local c = new_client()
      local wh = assert(c:ensure_webhook(hook_url))
      local seen = {}
      local r = c:subscribe_many(wh.id, users(1, 40), { progress = function(done, total) seen[#seen + 1] = { done, total } end })
      assert.is_true(r.ok)
      assert.are.equal(40, #r.added)
      assert.are.equal(0, #r.failed)
      assert.are.same({ 40, 40 }, seen[#seen])
      local _, n = subscribed_set(c, wh.id)
      assert.are.equal(40, n)
      clear_log()
      local again = c:subscribe_many(wh.id, users(1, 40))
      assert.are.equal(0, #again.added)
      assert.are.equal(40, #again.kept)
      assert.are.equal(0, mutations())
    end)

    it("counts 'already subscribed' (355) as success when it does not list first", function()
      local c = new_client()
      local wh = assert(c:ensure_webhook(hook_url))
      assert.is_true(c:subscribe_many(wh.id, users(1, 5)).ok)
      local r = c:subscribe_many(wh.id, users(1, 8), { check = false })
      assert.is_true(r.ok)
      assert.are.equal(5, #r.kept)
      assert.are.equal(3, #r.added)
      assert.are.equal(5, statuses("POST")[409])
    end)

    it("isolates failures: bad tokens and a malformed user do not stop the others", function()
      local c = new_client()
      local wh = assert(c:ensure_webhook(hook_url))
      local list = users(1, 20)
      list[5] = { user_id = list[5].user_id, access_token = list[5].access_token, access_token_secret = "wrong" }
      list[9] = { user_id = list[9].user_id } -- no tokens at all
      local r = c:subscribe_many(wh.id, list)
      assert.is_false(r.ok)
      assert.are.equal(18, #r.added)
      assert.are.equal(2, #r.failed)
      local by = {}
      for _, f in ipairs(r.failed) do by[f.user_id] = f end
      assert.are.equal("auth", by[list[5].user_id].err.kind)
      assert.are.equal("argument", by[list[9].user_id].err.kind)
      assert.are.equal(list[5], by[list[5].user_id].user)
      -- no secret in the errors
      for _, f in ipairs(r.failed) do
        local s = tostring(f.err)
        assert.is_nil(s:find(cfg.app.consumer_secret, 1, true))
        assert.is_nil(s:find(cfg.users[5].access_token_secret, 1, true))
      end
    end)

    it("runs concurrently (16 in flight by default)", function()
      local c = new_client()
      local wh = assert(c:ensure_webhook(hook_url))
      control("POST", "/_emulator/config", { latency_ms = 100 })
      local t0 = core.now()
      local r = c:subscribe_many(wh.id, users(1, 32), { check = false })
      local elapsed = core.now() - t0
      assert.is_true(r.ok)
      -- one after another: 3.2 s; 16 at a time: about 0.2 s
      assert.is_true(elapsed < 1.0, "took " .. elapsed .. " s")
      local t1 = core.now()
      c:subscribe_many(wh.id, users(33, 36), { check = false, concurrency = 1 })
      assert.is_true(core.now() - t1 >= 0.4)
    end)
  end)

  describe("sync_subscriptions", function()
    it("adds, keeps and removes, and a re-run changes nothing", function()
      local c = new_client()
      local wh = assert(c:ensure_webhook(hook_url))
      local r = assert(c:sync_subscriptions(wh.id, users(1, 30)))
      assert.are.equal(30, #r.added)
      local r2 = assert(c:sync_subscriptions(wh.id, users(11, 40)))
      assert.are.equal(10, #r2.added)
      assert.are.equal(20, #r2.kept)
      assert.are.equal(10, #r2.removed)
      assert.is_true(r2.ok)
      local set, n = subscribed_set(c, wh.id)
      assert.are.equal(30, n)
      assert.is_nil(set[cfg.users[1].user_id])
      assert.is_true(set[cfg.users[40].user_id])
      clear_log()
      local r3 = assert(c:sync_subscriptions(wh.id, users(11, 40)))
      assert.are.same({ 0, 30, 0, 0 }, { #r3.added, #r3.kept, #r3.removed, #r3.failed })
      assert.are.equal(0, mutations())
    end)

    it("checks the whole list before sending: a mistyped one raises naming the entry, nothing removed", function()
      local c = new_client()
      local wh = assert(c:ensure_webhook(hook_url))
      assert(c:sync_subscriptions(wh.id, users(1, 4)))
      clear_log()
      local bad = {
        { { { id = "1" } }, "users%[1%]' to 'sync_subscriptions' %(no user_id .*keys found: id%)" },
        { { a = 1 }, "got a table with key \"a\"" },
        { { users = "oops" }, "got a table with key \"users\"" },
        { "oops", "got string" },
        { { users(1, 1)[1], { user_id = "12x" } }, "users%[2%].*string of digits" },
        { { { user_id = 2 ^ 60 } }, "not an exact integer" },
        { { { user_id = "5", access_token = "t" } }, "go together" },
      }
      for _, case in ipairs(bad) do
        for _, dry in ipairs { false, true } do
          local ok, err = pcall(c.sync_subscriptions, c, wh.id, case[1], { dry_run = dry })
          assert.is_false(ok)
          assert.matches("bad argument 'users", err)
          assert.matches(case[2], err)
        end
      end
      assert.has_error(function() c:subscribe_many(wh.id, { { id = "1" } }) end)
      assert.has_error(function() c:sync_subscriptions(wh.id, users(1, 4), { allow_removals = "yes" }) end)
      assert.are.equal(0, mutations())
      local _, n = subscribed_set(c, wh.id)
      assert.are.equal(4, n)
    end)

    it("refuses to remove more than half (and more than 10) unless allow_removals", function()
      local c = new_client()
      local wh = assert(c:ensure_webhook(hook_url))
      assert(c:sync_subscriptions(wh.id, users(1, 24)))
      clear_log()
      for _, dry in ipairs { false, true } do
        local r, err = c:sync_subscriptions(wh.id, users(1, 5), { dry_run = dry })
        assert.is_nil(r)
        assert.are.equal("refused", err.kind)
        assert.matches("would remove 19 of the 24", tostring(err))
        assert.matches("allow_removals", tostring(err))
      end
      assert.are.equal(0, mutations())
      -- an empty list is the same as a wrong file
      local r0, err0 = c:sync_subscriptions(wh.id, {})
      assert.is_nil(r0)
      assert.are.equal("refused", err0.kind)
      -- named, it happens
      local r = assert(c:sync_subscriptions(wh.id, users(1, 5), { allow_removals = true }))
      assert.are.equal(19, #r.removed)
      local _, n = subscribed_set(c, wh.id)
      assert.are.equal(5, n)
      -- 10 removals are below the guard even when they are most of the list
      assert(c:sync_subscriptions(wh.id, users(1, 15), { allow_removals = true }))
      local r2 = assert(c:sync_subscriptions(wh.id, users(1, 5)))
      assert.are.equal(10, #r2.removed)
    end)

    it("dry_run reports the plan and sends nothing", function()
      local c = new_client()
      local wh = assert(c:ensure_webhook(hook_url))
      assert(c:sync_subscriptions(wh.id, users(1, 5)))
      clear_log()
      local r = assert(c:sync_subscriptions(wh.id, users(3, 9), { dry_run = true }))
      assert.is_true(r.dry_run)
      assert.are.same({ 4, 3, 2 }, { #r.added, #r.kept, #r.removed })
      assert.are.equal(0, mutations())
    end)

    it("finishes after an interruption: faults make some users fail, a re-run completes", function()
      local c = new_client { retries = 0 }
      local wh = assert(c:ensure_webhook(hook_url))
      -- (status faults: libcurl itself re-sends a request whose reused connection was closed)
      control("POST", "/_emulator/faults", { method = "POST", path = "/subscriptions/all%.json$", status = 503, count = 7 })
      control("POST", "/_emulator/faults", { method = "POST", path = "/subscriptions/all%.json$", status = 500, count = 5 })
      local r = assert(c:sync_subscriptions(wh.id, users(1, 50)))
      assert.is_false(r.ok)
      assert.are.equal(12, #r.failed)
      assert.are.equal(38, #r.added)
      for _, f in ipairs(r.failed) do assert.is_truthy(f.err.status == 500 or f.err.status == 503) end
      control("DELETE", "/_emulator/faults")
      clear_log()
      local r2 = assert(c:sync_subscriptions(wh.id, users(1, 50)))
      assert.is_true(r2.ok)
      assert.are.equal(12, #r2.added)
      assert.are.equal(38, #r2.kept)
      assert.are.equal(12, mutations())
      local _, n = subscribed_set(c, wh.id)
      assert.are.equal(50, n)
    end)

    it("retries a POST that failed with 5xx (subscribing twice is harmless)", function()
      local c = new_client { backoff = 0.01 }
      local wh = assert(c:ensure_webhook(hook_url))
      control("POST", "/_emulator/faults", { method = "POST", path = "/subscriptions/all%.json$", status = 503, count = 4 })
      local r = assert(c:sync_subscriptions(wh.id, users(1, 10)))
      assert.is_true(r.ok)
      assert.are.equal(10, #r.added)
    end)

    it("fails as a whole when the subscription list cannot be read", function()
      local c = new_client()
      local none, err = c:sync_subscriptions("123456", users(1, 3))
      assert.is_nil(none)
      assert.are.equal("not_found", err.kind)
    end)
  end)

  describe("rate limits", function()
    it("waits for the reset after a 429 and then finishes", function()
      local c = new_client()
      local wh = assert(c:ensure_webhook(hook_url))
      local reset = os.time() + 1
      control("POST", "/_emulator/faults", { method = "POST", path = "/subscriptions/all%.json$", status = 429, count = 6,
        headers = { ["x-rate-limit-remaining"] = "0", ["x-rate-limit-reset"] = tostring(reset),
                    ["x-rate-limit-limit"] = "500" } })
      local t0 = core.now()
      local r = c:subscribe_many(wh.id, users(1, 30))
      local elapsed = core.now() - t0
      assert.is_true(r.ok, r.failed[1] and tostring(r.failed[1].err))
      assert.are.equal(30, #r.added)
      assert.are.equal(6, statuses("POST")[429])
      assert.is_true(elapsed >= reset - os.time() - 0.1, "did not wait: " .. elapsed)
      assert.is_true(elapsed < 5)
    end)

    it("says it is waiting for the rate limit (progress and report) instead of freezing", function()
      local c = new_client()
      local wh = assert(c:ensure_webhook(hook_url))
      local reset = os.time() + 2
      control("POST", "/_emulator/faults", { method = "POST", path = "/subscriptions/all%.json$", status = 429, count = 4,
        headers = { ["x-rate-limit-remaining"] = "0", ["x-rate-limit-reset"] = tostring(reset),
                    ["x-rate-limit-limit"] = "500" } })
      local waits = {}
      local r = c:subscribe_many(wh.id, users(1, 8), { progress = function(done, total, info)
        if info and info.waiting then waits[#waits + 1] = { done, total, info.waiting } end
      end })
      assert.is_true(r.ok)
      assert.is_true(#waits >= 1)
      assert.is_true(waits[1][3] >= 1 and waits[1][3] <= 4, "waiting " .. tostring(waits[1][3]))
      assert.are.equal(8, waits[1][2])
      assert.is_true(r.waited >= 1)
      assert.matches("waiting for the rate limit", tostring(r))
    end)

    it("gives up at once when the reset is past max_wait", function()
      local c = new_client { max_wait = 1 }
      local wh = assert(c:ensure_webhook(hook_url))
      control("POST", "/_emulator/faults", { method = "POST", path = "/subscriptions/all%.json$", status = 429, count = 1,
        headers = { ["x-rate-limit-remaining"] = "0", ["x-rate-limit-reset"] = tostring(os.time() + 600) } })
      local t0 = core.now()
      local r = c:subscribe_many(wh.id, users(1, 5))
      assert.is_true(core.now() - t0 < 1)
      assert.are.equal(1, #r.failed)
      assert.are.equal("rate_limit", r.failed[1].err.kind)
      assert.are.equal(4, #r.added)
    end)

    it("slows down when the window runs out (enforced limits) and finishes", function()
      local c = new_client()
      local wh = assert(c:ensure_webhook(hook_url))
      assert.is_true(c:subscribe_many(wh.id, users(1, 30)).ok)
      control("POST", "/_emulator/config", { rate_limits = { enforce = true, window = 2, limits = { ["v1.unsubscribe"] = 12 } } })
      clear_log()
      local t0 = core.now()
      local r = assert(c:teardown(wh.id))
      local elapsed = core.now() - t0
      assert.is_true(r.ok, r.failed[1] and tostring(r.failed[1].err))
      assert.are.equal(30, #r.removed)
      assert.is_true(r.webhook_deleted)
      -- 30 removals at 12 per 2 s window need at least two resets
      assert.is_true(elapsed >= 2, "took " .. elapsed)
      assert.is_true(elapsed < 12, "took " .. elapsed)
      -- once the headers said the window was spent, nothing more was sent into it
      -- only the first wave (16, sent before any limit was known) may overshoot
      local n429 = statuses("DELETE")[429] or 0
      assert.is_true(n429 <= 16 - 12, n429 .. " requests hit a spent window")
    end)
  end)

  describe("migrate_webhook", function()
    it("moves every subscription, deletes the old webhook, and a re-run changes nothing", function()
      local c = new_client()
      local old = assert(c:ensure_webhook(hook_url))
      assert.is_true(c:subscribe_many(old.id, users(1, 25)).ok)
      local r = assert(c:migrate_webhook(old.id, hook_url .. "/new", { users = users(1, 60) }))
      assert.is_true(r.ok)
      assert.is_true(r.old_deleted)
      assert.are.equal(25, #r.added)
      local _, n = subscribed_set(c, r.webhook.id)
      assert.are.equal(25, n)
      local list = assert(c:webhooks())
      assert.are.equal(1, #list)
      clear_log()
      local again = assert(c:migrate_webhook(old.id, hook_url .. "/new", { users = users(1, 25) }))
      assert.is_true(again.ok)
      assert.are.equal(0, mutations())
    end)

    it("keeps the old webhook when a move fails, and a re-run finishes", function()
      local c = new_client { retries = 0 }
      local old = assert(c:ensure_webhook(hook_url))
      assert.is_true(c:subscribe_many(old.id, users(1, 20)).ok)
      control("POST", "/_emulator/faults", { method = "POST", path = "/subscriptions/all%.json$", status = 503, count = 4 })
      local r = assert(c:migrate_webhook(old.id, hook_url .. "/new", { users = users(1, 20) }))
      assert.is_false(r.ok)
      assert.is_false(r.old_deleted)
      assert.are.equal(4, #r.failed)
      assert.is_table(assert(c:webhook(old.id)))
      local r2 = assert(c:migrate_webhook(old.id, hook_url .. "/new", { users = users(1, 20) }))
      assert.is_true(r2.ok)
      assert.is_true(r2.old_deleted)
      assert.are.equal(4, #r2.added)
      assert.are.equal(16, #r2.kept)
      local _, n = subscribed_set(c, r2.webhook.id)
      assert.are.equal(20, n)
    end)

    it("does not delete the old webhook when a subscriber's tokens are missing", function()
      local c = new_client()
      local old = assert(c:ensure_webhook(hook_url))
      assert.is_true(c:subscribe_many(old.id, users(1, 6)).ok)
      local r = assert(c:migrate_webhook(old.id, hook_url .. "/new", { users = users(1, 5) }))
      assert.is_false(r.ok)
      assert.is_false(r.old_deleted)
      assert.are.equal(cfg.users[6].user_id, r.failed[1].user_id)
    end)
  end)

  describe("teardown", function()
    it("removes every subscription then the webhook; a re-run is a no-op", function()
      local c = new_client()
      local wh = assert(c:ensure_webhook(hook_url))
      assert.is_true(c:subscribe_many(wh.id, users(1, 35)).ok)
      local r = assert(c:teardown(wh.id))
      assert.is_true(r.ok)
      assert.are.equal(35, #r.removed)
      assert.is_true(r.webhook_deleted)
      assert.are.equal(0, #assert(c:webhooks()))
      clear_log()
      local again = assert(c:teardown(wh.id))
      assert.is_true(again.already_gone)
      assert.are.equal(0, mutations())
    end)

    it("keeps the webhook when removals fail, a re-run finishes", function()
      local c = new_client { retries = 0 }
      local wh = assert(c:ensure_webhook(hook_url))
      assert.is_true(c:subscribe_many(wh.id, users(1, 10)).ok)
      control("POST", "/_emulator/faults", { method = "DELETE", path = "/subscriptions/%d+/all%.json$", status = 500, count = 3 })
      local r = assert(c:teardown(wh.id))
      assert.is_false(r.ok)
      assert.are.equal(3, #r.failed)
      assert.is_false(r.webhook_deleted)
      local r2 = assert(c:teardown(wh.id))
      assert.is_true(r2.ok)
      assert.are.equal(3, #r2.removed)
      assert.is_true(r2.webhook_deleted)
    end)
  end)

  describe("health", function()
    it("reports existence, validity, subscriptions and our CRC answer", function()
      local c = new_client()
      local wh = assert(c:ensure_webhook(hook_url))
      assert.is_true(c:subscribe_many(wh.id, users(1, 7)).ok)
      local h = c:health(wh.id)
      assert.is_true(h.ok, table.concat(h.problems, "; "))
      assert.is_true(h.exists)
      assert.is_true(h.valid)
      assert.are.equal(7, h.subscriptions)
      assert.is_true(h.crc.ok)
      assert.are.equal(200, h.crc.status)
      assert.is_true(h.crc.latency < 3)
      assert.is_true(h.crc.within_budget)
      local by_url = c:health(hook_url)
      assert.are.equal(wh.id, by_url.id)
    end)

    it("finds a wrong consumer secret, a missing webhook and an invalid one", function()
      local c = new_client()
      local wh = assert(c:ensure_webhook(hook_url))
      local other = aa.new { consumer_key = cfg.app.consumer_key, consumer_secret = "another-secret-000000000000000",
        bearer_token = cfg.app.bearer_token, base_url = emu.url }
      local h = other:health(wh.id)
      assert.is_false(h.ok)
      assert.is_false(h.crc.ok)
      -- our endpoint checks the CRC signature first: signed with another secret, it refuses
      assert.matches("HTTP 401", h.crc.reason)
      local gone = c:health("987654321")
      assert.is_false(gone.exists)
      assert.is_false(gone.ok)
      invalidate(wh.id)
      local inv = c:health(wh.id)
      assert.is_false(inv.valid)
      assert.is_false(inv.ok)
      local bad = c:health(ep.url .. "/elsewhere")
      assert.is_false(bad.crc.ok)
    end)
  end)

  describe("replay", function()
    it("replay_last starts a job that re-delivers the window", function()
      local c = new_client()
      local wh = assert(c:ensure_webhook(hook_url))
      assert.is_true(c:subscribe_many(wh.id, users(1, 1)).ok)
      control("POST", "/_emulator/deliver", { user_id = cfg.users[1].user_id, type = "follow", wait = true })
      local job, err = c:replay_last(wh.id, 10)
      assert.is_table(job, tostring(err))
      assert.is_string(job.job_id)
      local wf = require "account_activity.workflows"
      assert.are.equal("201701011230", wf.parse_time("201701011230"))
      assert.are.equal(1000 - 600, wf.parse_time("-10m", 1000))
      assert.are.equal(1020, wf.parse_time("now", 1000))
      assert.is_nil((wf.parse_time("yesterday")))
    end)
  end)

  describe("inside nginx", function()
    it("runs a batch on light threads (transport ngx), concurrently", function()
      local c = new_client()
      local wh = assert(c:ensure_webhook(hook_url))
      control("POST", "/_emulator/config", { latency_ms = 50 })
      local cfgf = os.tmpname()
      local f = io.open(cfgf, "w")
      f:write(cjson.encode(cfg))
      f:close()
      local srv = assert(require("account_activity.nginx_process").start { ports = 1, http = function(p)
        return "server { listen 127.0.0.1:" .. p[1] .. "; location /run { content_by_lua_block {\n"
          .. "local cjson = require 'cjson'\n"
          .. "local f = io.open(" .. string.format("%q", cfgf) .. "); local cfg = cjson.decode(f:read('*a')); f:close()\n"
          .. "local c = require('account_activity').new { consumer_key = cfg.app.consumer_key,"
          .. " consumer_secret = cfg.app.consumer_secret, access_token = cfg.app.owner.access_token,"
          .. " access_token_secret = cfg.app.owner.access_token_secret, base_url = " .. string.format("%q", emu.url) .. " }\n"
          .. "local users = {} for i = 1, 32 do users[i] = cfg.users[i] end\n"
          .. "ngx.update_time() local t0 = ngx.now()\n"
          .. "local r = c:subscribe_many(" .. string.format("%q", wh.id) .. ", users, { check = false })\n"
          .. "ngx.update_time()\n"
          .. "ngx.say(cjson.encode { transport = c.transport_name, added = #r.added, failed = #r.failed, elapsed = ngx.now() - t0 })\n"
          .. "} } }"
      end })
      local session = core.session { timeout = 30 }
      local res = session:request { method = "GET", url = srv.url .. "/run" }
      local log = srv:error_log()
      srv:stop()
      session:close()
      os.remove(cfgf)
      assert.is_table(res)
      assert.are.equal(200, res.status, log)
      local out = cjson.decode(res.body)
      assert.are.equal("ngx", out.transport)
      assert.are.equal(32, out.added)
      assert.are.equal(0, out.failed)
      -- 32 x 50 ms one after another would be 1.6 s
      assert.is_true(out.elapsed < 0.8, "took " .. out.elapsed)
    end)
  end)

  describe("arguments", function()
    it("raise naming the argument", function()
      local c = new_client()
      assert.has_error(function() c:subscribe_many("abc", {}) end)
      assert.has_error(function() c:subscribe_many("1", "users") end)
      assert.has_error(function() c:sync_subscriptions("1", {}, { concurrency = 0 }) end)
      assert.has_error(function() c:ensure_webhook(42) end)
      assert.has_error(function() require("account_activity.workflows").teardown({}, "1") end)
    end)
  end)
end)
