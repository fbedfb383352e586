-- Every client method against every injected fault on the emulator: the
-- error kind, the retry policy (idempotent verbs retried, POST only when the
-- request never left), waits honoured and capped (a fake clock, so nothing
-- really sleeps), no crash, and no half-done state: after the fault the same
-- call succeeds and the emulator ends where one clean success would.
local endpoints = require "account_activity.endpoints"
local core = require "account_activity.core"
local H = require "hardening"

local RETRIES, MAX_WAIT = 2, 10
local TIMEOUT = 0.2 -- the "slow" fault answers after 0.6 s
local IDEMPOTENT = { GET = true, PUT = true, DELETE = true, HEAD = true }

local env

-- What a case needs before the call: nothing, a webhook, or a webhook with user 1 subscribed.
local function setup(api, level)
  local c = H.client(env, api)
  local ctx = { hook_url = env.hook.hook_url, user = env:user(1), user_id = env.cfg.users[1].user_id,
                now = os.time() }
  if level == "webhook" or level == "subscribed" then
    local w, err = c:register_webhook(env.hook.hook_url)
    assert(w, tostring(err))
    ctx.w = w.id
  end
  if level == "subscribed" then assert(c:subscribe(ctx.w, ctx.user)) end
  c:close()
  return ctx
end

-- Every public method: its setup, how to call it, and the endpoint it hits.
local METHODS = {
  register_webhook = { setup = "none",
    call = function(c, x) return c:register_webhook(x.hook_url) end },
  webhooks = { setup = "webhook", call = function(c) return c:webhooks() end },
  webhook = { setup = "webhook", call = function(c, x) return c:webhook(x.w) end },
  validate_webhook = { setup = "webhook", call = function(c, x) return c:validate_webhook(x.w) end },
  delete_webhook = { setup = "webhook", call = function(c, x) return c:delete_webhook(x.w) end },
  subscribe = { setup = "webhook", call = function(c, x) return c:subscribe(x.w, x.user) end },
  is_subscribed = { setup = "subscribed", call = function(c, x) return c:is_subscribed(x.w, x.user) end },
  subscriptions = { setup = "subscribed", call = function(c, x) return c:subscriptions(x.w) end },
  unsubscribe_user = { setup = "subscribed", call = function(c, x) return c:unsubscribe(x.w, x.user) end,
    spec = function(api)
      local e = endpoints[api].unsubscribe
      return e.user or e.id
    end },
  unsubscribe_id = { setup = "subscribed", call = function(c, x) return c:unsubscribe(x.w, x.user_id) end,
    spec = function(api) return endpoints[api].unsubscribe.id end },
  subscription_count = { setup = "subscribed", call = function(c) return c:subscription_count() end },
  replay = { setup = "webhook",
    call = function(c, x) return c:replay(x.w, x.now - 3 * 3600, x.now - 3600) end },
  -- no bearer given: the call is the fetch itself
  bearer_token = { setup = "none", no_bearer = true, call = function(c) return c:bearer_token() end },
  invalidate_bearer_token = { setup = "none", call = function(c) return c:invalidate_bearer_token() end },
}
for name, m in pairs(METHODS) do
  m.spec = m.spec or function(api) return endpoints[api][name] end
end

-- Expectations: `idem` for GET/PUT/DELETE, `post` for POST. attempts; waits
-- "none" | "backoff" (one per retry, each in (0, max_wait]) | an exact list;
-- recovers = the call ends in success after the retries.
local FAULTS = {
  { name = "429 with a reset within max_wait", kind = "rate_limit", status = 429,
    fault = function(t0) return { status = 429, count = 1,
      headers = { ["x-rate-limit-reset"] = tostring(t0 + 3), ["x-rate-limit-remaining"] = "0" } } end,
    idem = { attempts = 2, recovers = true, waits = { 4 } }, post = { attempts = 1, waits = "none" } },
  { name = "429 with a reset past max_wait", kind = "rate_limit", status = 429,
    fault = function(t0) return { status = 429, count = RETRIES + 1,
      headers = { ["x-rate-limit-reset"] = tostring(t0 + 900), ["x-rate-limit-remaining"] = "0" } } end,
    idem = { attempts = 1, waits = "none" }, post = { attempts = 1, waits = "none" } },
  { name = "429 without a reset", kind = "rate_limit", status = 429,
    fault = function() return { status = 429, count = RETRIES + 1 } end,
    idem = { attempts = RETRIES + 1, waits = "backoff" }, post = { attempts = 1, waits = "none" } },
  { name = "500 on every attempt", kind = "http", status = 500,
    fault = function() return { status = 500, count = RETRIES + 1 } end,
    idem = { attempts = RETRIES + 1, waits = "backoff" }, post = { attempts = 1, waits = "none" } },
  { name = "503 once", kind = "http", status = 503,
    fault = function() return { status = 503, count = 1 } end,
    idem = { attempts = 2, recovers = true, waits = "backoff" }, post = { attempts = 1, waits = "none" } },
  { name = "connection reset", kind = "network",
    fault = function() return { action = "reset", count = RETRIES + 1 } end,
    idem = { attempts = RETRIES + 1, waits = "backoff" }, post = { attempts = 1, waits = "none" } },
  -- a 503 after the delay, so the server never does the work behind the client's back
  { name = "delay past the client timeout", kind = "timeout", slow = true,
    client = { timeout = TIMEOUT, retries = 1 },
    fault = function() return { status = 503, delay_ms = 600, count = 2 } end,
    idem = { attempts = 2, waits = "backoff" }, post = { attempts = 1, waits = "none" } },
  { name = "truncated body", kind = "network",
    fault = function() return { action = "truncate", count = RETRIES + 1 } end,
    idem = { attempts = RETRIES + 1, waits = "backoff" }, post = { attempts = 1, waits = "none" } },
  { name = "invalid JSON", kind = "decode", status = 200,
    fault = function() return { action = "invalid_json", count = RETRIES + 1 } end,
    idem = { attempts = 1, waits = "none" }, post = { attempts = 1, waits = "none" } },
  -- TLS spoken to the emulator's plain-HTTP port: the handshake fails
  { name = "TLS failure", kind = "tls", unsent = true,
    base_url = function() return (env.emu.url:gsub("^http:", "https:")) end,
    tls_url = "https://example.com/webhook",
    idem = { attempts = 1, waits = "none" }, post = { attempts = 1, waits = "none" } },
  -- nothing listens: a connect failure, so even a POST is retried
  { name = "connection refused", kind = "network", unsent = true,
    base_url = function() return "http://127.0.0.1:9" end,
    idem = { attempts = RETRIES + 1, waits = "backoff" }, post = { attempts = RETRIES + 1, waits = "backoff" } },
}

local function check_waits(want, sleeps, attempts, where)
  if want == "none" then
    assert.are.same({}, sleeps, where .. ": no wait expected")
  elseif want == "backoff" then
    assert.are.equal(attempts - 1, #sleeps, where .. ": one wait per retry")
    for _, s in ipairs(sleeps) do
      assert.is_true(s > 0 and s <= MAX_WAIT, where .. ": wait " .. tostring(s) .. " outside (0, max_wait]")
    end
  else
    assert.are.same(want, sleeps, where .. ": waits")
  end
end

-- Since entry n0: answered by a fault, how many new entries, and how many
-- reached an API endpoint (a TLS handshake sent to the plain-HTTP port is
-- logged as nginx's 400 for a garbled request, with no endpoint).
local function faulted_entries(n0)
  local n, api = 0, 0
  local log = env:log()
  for i = n0 + 1, #log do
    if log[i].fault ~= nil then n = n + 1 end
    -- (a line with a fault comes from an earlier case's delayed request that
    -- nginx finished after the client gave up: no fault is set when this is counted)
    if log[i].endpoint ~= nil and log[i].fault == nil then api = api + 1 end
  end
  return n, #log - n0, api
end

local reference = {}
-- The state one clean success leaves, per flavour and method.
local function reference_state(api, name)
  local key = api .. " " .. name
  if not reference[key] then
    env:reset()
    local m = METHODS[name]
    local ctx = setup(api, m.setup)
    local c = H.client(env, api, { bearer_token = m.no_bearer and false or nil })
    local v, r = m.call(c, ctx)
    assert(v, "reference " .. key .. ": " .. tostring(r))
    reference[key] = env:snapshot()
    c:close()
  end
  return reference[key]
end

local function run_case(api, name, F)
  local m = METHODS[name]
  local spec = m.spec(api)
  local want_state = reference_state(api, name)
  env:reset()
  local ctx = setup(api, m.setup)
  local before = env:snapshot()
  local t = H.fake_time()
  local extra = { retries = RETRIES, max_wait = MAX_WAIT, sleep = t.sleep, clock = t.clock }
  for k, v in pairs(F.client or {}) do extra[k] = v end
  if m.no_bearer then extra.bearer_token = false end
  if F.base_url then extra.base_url = F.base_url() end
  local c = H.client(env, api, extra)
  -- nginx logs a request after answering it: for the cases that must send
  -- nothing, wait until the set-up's own lines have landed
  local n0 = env:log_count()
  if F.unsent then
    for _ = 1, 50 do
      core.sleep(0.02)
      local n = env:log_count()
      if n == n0 then break end
      n0 = n
    end
  end
  if F.fault then
    local f = F.fault(t.now)
    f.method, f.path = spec.method, H.path_pattern(spec)
    env:fault(f)
  end
  local cctx = ctx
  if F.tls_url then
    cctx = setmetatable({ hook_url = F.tls_url }, { __index = ctx })
  end
  local ok, v, r = pcall(m.call, c, cctx)
  local where = api .. " " .. name .. " / " .. F.name
  assert.is_true(ok, where .. " raised: " .. tostring(v))
  local idem = IDEMPOTENT[spec.method]
  local want = idem and F.idem or F.post

  if want.recovers then
    assert.is_truthy(v, where .. ": expected success after a retry, got " .. tostring(r))
    assert.are.equal(want.attempts, r.attempts, where .. ": attempts")
  else
    assert.is_nil(v, where .. ": expected a failure")
    assert.is_table(r, where)
    assert.are.equal(F.kind, r.kind, where .. ": kind (" .. tostring(r) .. ")")
    if F.status then assert.are.equal(F.status, r.status, where .. ": status") end
    assert.are.equal(want.attempts, r.attempts, where .. ": attempts (" .. tostring(r) .. ")")
    assert.is_string(tostring(r))
  end
  check_waits(want.waits, t.sleeps, want.attempts, where)

  env:clear_faults()
  if F.unsent then
    -- nothing reached the API
    local _, _, reached = faulted_entries(n0)
    assert.are.equal(0, reached, where .. ": requests reached the emulator's API")
  elseif F.slow then
    -- the delayed requests finish on the server after the client gave up:
    -- let their log lines land here, not in the next case's window
    for _ = 1, 250 do
      if faulted_entries(n0) >= want.attempts then break end
      core.sleep(0.02)
    end
  else
    -- every failed attempt really went out, and was answered by the fault
    -- (nginx logs a request after answering it: give the last line a moment)
    local expected = want.recovers and want.attempts - 1 or want.attempts
    local nf = faulted_entries(n0)
    for _ = 1, 100 do
      if nf >= expected then break end
      core.sleep(0.02)
      nf = faulted_entries(n0)
    end
    assert.are.equal(expected, nf, where .. ": faulted requests")
  end

  if want.recovers then
    assert.are.same(want_state, env:snapshot(), where .. ": state after the recovered call")
  else
    assert.are.same(before, env:snapshot(), where .. ": state changed by a failed call")
    -- the same call again, no faults, a working client: one success's state
    local c2 = F.base_url and H.client(env, api, { bearer_token = m.no_bearer and false or nil }) or c
    local v2, r2 = m.call(c2, ctx)
    assert.is_truthy(v2, where .. ": the call again failed: " .. tostring(r2))
    assert.are.same(want_state, env:snapshot(), where .. ": state after the call again")
    if c2 ~= c then c2:close() end
  end
  c:close()
end

local ENTERPRISE = H.METHODS
local V2 = { "register_webhook", "webhooks", "validate_webhook", "delete_webhook", "subscribe",
             "is_subscribed", "unsubscribe_id", "subscription_count", "replay" }

-- The workflows, when workflows.lua is there: faults on some users fail
-- only those users, the report names them, and a re-run finishes the job.
local has_workflows = pcall(require, "account_activity.workflows")

local function ids(list)
  local out = {}
  for _, v in ipairs(list) do out[#out + 1] = type(v) == "table" and (v.user_id or "?") or v end
  table.sort(out)
  return out
end

local function subscribed_ids()
  local snap = env:snapshot()
  return snap.webhooks[1] and snap.webhooks[1].subscriptions or {}
end

local function users(from, to)
  local out = {}
  for i = from, to do out[#out + 1] = env:user(i) end
  return out
end

local function all_ids(from, to)
  local out = {}
  for i = from, to do out[#out + 1] = env.cfg.users[i].user_id end
  table.sort(out)
  return out
end

-- Faults for the workflow cases: a subscribe answered 403 (not retried by
-- anyone) for `n` requests, and an unsubscribe of one user failing on every attempt.
local WORKFLOW_FAULTS = {
  { name = "403 on two subscribes", failed = 2, kind = "forbidden",
    faults = function(spec) return { { method = "POST", path = H.path_pattern(spec), status = 403, count = 2 } } end },
  { name = "connection reset on two subscribes", failed = 0,
    -- the workflow repeats a subscribe after a network error itself
    faults = function(spec) return { { method = "POST", path = H.path_pattern(spec), action = "reset", count = 2 } } end },
  { name = "timeouts on two subscribes", failed = 0,
    client = { timeout = TIMEOUT, retries = 1 },
    faults = function(spec) return { { method = "POST", path = H.path_pattern(spec), status = 503, delay_ms = 600, count = 2 } } end },
}

local function workflow_case(api, F, which)
  env:reset()
  local ctx = setup(api, "webhook")
  local t = H.fake_time()
  local extra = { retries = RETRIES, max_wait = MAX_WAIT, sleep = t.sleep, clock = t.clock }
  for k, v in pairs(F.client or {}) do extra[k] = v end
  local c = H.client(env, api, extra)
  local spec = endpoints[api].subscribe
  local want_final
  if which == "sync_subscriptions" then
    -- users 4 and 5 are subscribed and must go; 1..3 must come
    local setup_client = H.client(env, api)
    for i = 4, 5 do assert(setup_client:subscribe(ctx.w, env:user(i))) end
    want_final = all_ids(1, 3)
  else
    want_final = all_ids(1, 5)
  end
  local fl = F.faults(spec)
  if which == "sync_subscriptions" then
    -- and user 5's removal fails on every attempt
    local del = endpoints[api].unsubscribe.id
    local p = H.path_pattern(del):gsub("%%d%+/all", env.cfg.users[5].user_id .. "/all")
    fl[#fl + 1] = { method = "DELETE", path = p, status = 500, count = 10 }
  end
  env:fault(fl)
  local list = which == "sync_subscriptions" and users(1, 3) or users(1, 5)
  local ok, report, err = pcall(c[which], c, ctx.w, list, { concurrency = 1 })
  assert.is_true(ok, "raised: " .. tostring(report))
  assert.is_table(report, tostring(err))
  local subs_failed, other_failed = 0, 0
  for _, f in ipairs(report.failed) do
    assert.is_table(f.err)
    assert.is_string(f.user_id)
    if f.action == "unsubscribe" then
      other_failed = other_failed + 1
      assert.are.equal(env.cfg.users[5].user_id, f.user_id)
      assert.are.equal(500, f.err.status)
      assert.are.equal(c.retries + 1, f.err.attempts)
    else
      subs_failed = subs_failed + 1
      if F.kind then assert.are.equal(F.kind, f.err.kind, tostring(f.err)) end
    end
  end
  assert.are.equal(F.failed, subs_failed, "failed subscribes")
  assert.are.equal(which == "sync_subscriptions" and 1 or 0, other_failed, "failed unsubscribes")
  assert.are.equal(#report.failed == 0, report.ok)
  -- what it reports is what the emulator holds
  env:clear_faults()
  local now = subscribed_ids()
  local want_now = {}
  for _, id in ipairs(report.added) do want_now[#want_now + 1] = id end
  for _, id in ipairs(report.kept) do want_now[#want_now + 1] = id end
  for _, f in ipairs(report.failed) do
    if f.action == "unsubscribe" then want_now[#want_now + 1] = f.user_id end
  end
  table.sort(want_now)
  assert.are.same(want_now, now)

  -- a re-run finishes the job, touching only what is left
  local report2 = assert(c[which](c, ctx.w, list, { concurrency = 4 }))
  assert.are.same({}, report2.failed)
  assert.is_true(report2.ok)
  local retried = {}
  for _, f in ipairs(report.failed) do if f.action ~= "unsubscribe" then retried[#retried + 1] = f.user_id end end
  table.sort(retried)
  assert.are.same(retried, ids(report2.added))
  assert.are.same(want_final, subscribed_ids())
  c:close()
end

describe("fault matrix", function()
  lazy_setup(function() env = H.start() end)
  lazy_teardown(function() if env then env:stop() end end)

  for _, plan in ipairs { { "enterprise", ENTERPRISE }, { "v2", V2 } } do
    local api, names = plan[1], plan[2]
    describe(api, function()
      for _, name in ipairs(names) do
        for _, F in ipairs(FAULTS) do
          it(name .. " / " .. F.name, function() run_case(api, name, F) end)
        end
      end
    end)
  end

  describe("workflows", function()
    for _, which in ipairs { "subscribe_many", "sync_subscriptions" } do
      for _, api in ipairs { "enterprise", "v2" } do
        for _, F in ipairs(WORKFLOW_FAULTS) do
          it(which .. " (" .. api .. ") / " .. F.name, function()
            if not has_workflows then pending("workflows.lua is not there yet") end
            workflow_case(api, F, which)
          end)
        end
      end
    end
  end)

  describe("emulator", function()
    it("a reset forgets a replay job that is still running", function()
      env:reset()
      local ctx = setup("enterprise", "webhook")
      local c = H.client(env, "enterprise")
      assert(c:replay(ctx.w, ctx.now - 3 * 3600, ctx.now - 3600))
      env:reset()
      require("account_activity.core").sleep(0.3)
      local st = env:control("GET", "/_emulator/state")
      assert.are.same({}, st.replay_jobs)
      c:close()
    end)
  end)
end)
