--- Jobs made of many API calls: one call each, idempotent, concurrent,
-- with a progress bar and a report of what failed and why.
--
--   local wh = assert(client:ensure_webhook("https://example.com/webhook"))
--   local report = client:sync_subscriptions(wh.id, users, { progress = true })
--   for _, f in ipairs(report.failed) do print(f.user_id, f.err) end
--
-- Every function here is also a client method (client.lua falls through to
-- this module), called as fn(client, ...).
--
-- Re-running a job after an interruption finishes it and changes nothing
-- already right: the current state is read first (webhook list, subscription
-- list), only what differs is sent, "already subscribed" and "not
-- subscribed" count as success, and the old webhook of a migration is only
-- deleted once every subscription is on the new one.
--
-- Concurrency: libcurl's curl_multi through the client's Session (default
-- 16 requests in flight, opts.concurrency); inside nginx (transport "ngx")
-- light threads (ngx.thread.spawn), as many as opts.concurrency; with a
-- transport function of your own, one call after another. Rate limits are
-- shared across the batch: requests of an endpoint whose window is spent
-- wait for its reset (when that is within the client's max_wait), and a
-- 429 pauses that endpoint for every task until the reset.
local args = require "account_activity.args"
local crc = require "account_activity.crc"
local errors = require "account_activity.errors"
local pretty = require "account_activity.pretty"
local progress = require "account_activity.progress"

local M = {}

-- Blames the caller of the function that raises (no tail call: it would
-- drop this frame and shift the level).
local function argerror(fname, argname, msg)
  args.argerror(fname, argname, msg, 3)
end

local function check_client(fname, c)
  if not args.is_client(c) then
    argerror(fname, "client", "expected a client from aa.new{...} (call it as client:" .. fname
      .. "(...)), got " .. type(c))
  end
end

-- More removals than this, and more than half of the list, need opts.allow_removals.
M.REMOVAL_GUARD = 10

local function check_opts(fname, opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then argerror(fname, "opts", "table expected, got " .. type(opts)) end
  for _, k in ipairs { "allow_removals", "dry_run", "remove" } do
    if opts[k] ~= nil and type(opts[k]) ~= "boolean" then
      argerror(fname, "opts." .. k, "boolean expected, got " .. type(opts[k]))
    end
  end
  local conc = opts.concurrency
  if conc ~= nil and (type(conc) ~= "number" or conc < 1 or conc > 1024 or conc ~= math.floor(conc)) then
    argerror(fname, "opts.concurrency", "expected an integer from 1 to 1024, got " .. tostring(conc))
  end
  local p = opts.progress
  if p ~= nil and type(p) ~= "boolean" and type(p) ~= "function" then
    argerror(fname, "opts.progress", "true, false or a function(done, total) expected, got " .. type(p))
  end
  return opts
end

-- A users list is checked whole before a job sends anything (args.lua).
M.user_problem, M.check_users, M.user_id_of = args.user_problem, args.check_users, args.user_id_of
local check_users = args.check_users

local function new_report()
  return { added = {}, kept = {}, removed = {}, failed = {} }
end

local function clock()
  local ok, core = pcall(require, "account_activity.core")
  if ok and type(core) == "table" and core.now then return core.now() end
  return os.time()
end

local function finish_report(r, t0)
  r.ok = #r.failed == 0
  if t0 then r.elapsed = clock() - t0 end
  return pretty.mark(r, pretty.report_mt)
end

-- Seconds until a rate-limited call may be repeated, from the error.
local function rate_wait(c, err)
  if err.retry_after then return err.retry_after end
  local rl = err.rate_limit
  if rl and rl.reset then return math.max(0, rl.reset - c.clock() + 1) end
  return nil
end

-- Repeat a call that is safe to repeat (a subscribe: "already subscribed"
-- is success) on 429 within max_wait, and on 5xx / network errors, which
-- the client does not retry for a POST on its own.
local function with_retries(c, fn)
  local tries, limited = 0, 0
  while true do
    local v, e = fn()
    if v ~= nil or not errors.is_error(e) then return v, e end
    local wait
    if e.status == 429 or e.kind == "rate_limit" then
      limited = limited + 1
      if limited > math.max(c.retries, 5) then return v, e end
      wait = rate_wait(c, e) or c:_backoff(limited)
      if wait > c.max_wait then return v, e end
    elseif e.kind == "network" or e.kind == "timeout" or (e.status and e.status >= 500) then
      tries = tries + 1
      if tries > c.retries then return v, e end
      wait = c:_backoff(tries)
    else
      return v, e
    end
    c.sleep(wait)
  end
end

local function subscribe_task(webhook_id, u)
  return function(c)
    local ok, err = with_retries(c, function() return c:subscribe(webhook_id, u) end)
    if ok then return "added" end
    if err and err.kind == "conflict" then return "kept" end
    return nil, err
  end
end

local function unsubscribe_task(webhook_id, user_id)
  return function(c)
    local ok, err = c:unsubscribe(webhook_id, user_id)
    if ok then return "removed" end
    if err and err.kind == "not_found" then return "removed" end
    return nil, err
  end
end

-- Run jobs ({task, user_id, user, action}) and sort the outcomes into `report`.
local function run_jobs(c, jobs, opts, report, label, offset)
  offset = offset or 0
  local tick = progress.new(opts.progress, label)
  local tasks = {}
  for i, j in ipairs(jobs) do tasks[i] = j.task end
  local done_so_far = offset
  if tick then tick(offset, #jobs + offset) end
  local results = c:_batch(tasks, {
    concurrency = opts.concurrency,
    on_done = function(_, _, done, total)
      done_so_far = done + offset
      if tick then tick(done_so_far, total + offset) end
    end,
    on_wait = function(seconds)
      report.waited = (report.waited or 0) + seconds
      if tick then tick(done_so_far, #jobs + offset, { waiting = seconds }) end
    end,
  })
  for i, j in ipairs(jobs) do
    local r = results[i] or { n = 2, nil, errors.make("argument", "task did not run") }
    local outcome = r[1]
    if outcome == "added" then
      report.added[#report.added + 1] = j.label
    elseif outcome == "kept" then
      report.kept[#report.kept + 1] = j.label
    elseif outcome == "removed" then
      report.removed[#report.removed + 1] = j.label
    else
      local err = r[2]
      if not errors.is_error(err) then err = errors.make("argument", tostring(err or "unknown failure")) end
      report.failed[#report.failed + 1] = { user_id = j.user_id, user = j.user, action = j.action, err = err }
    end
  end
  return report
end

local function set_of(list)
  local s = {}
  for _, v in ipairs(list or {}) do s[v] = true end
  return s
end

local function ensure_bearer(c)
  -- One token fetch before the batch, not one per task racing each other.
  local creds = c:credentials()
  if not creds.bearer_token then c:bearer_token() end
end

---------------------------------------------------------------------------
-- ensure_webhook
---------------------------------------------------------------------------

local function find_url(list, url)
  for _, wh in ipairs(list) do
    if wh.url == url then return wh end
  end
  return nil
end

local function is_quota_error(err)
  if not errors.is_error(err) then return false end
  local m = (err.message or ""):lower()
  return m:find("too many resources", 1, true) ~= nil or m:find("limit", 1, true) ~= nil
    or err.reason == "WebhookLimitExceeded" or (err.kind == "forbidden" and err.code == 214)
end

--- ensure_webhook(url, opts) -> webhook, info | nil, err
-- Reuse a webhook with this URL (re-validating it when X marked it
-- invalid), else register it. When every slot is taken, opts.replace = true
-- deletes the other webhook (an invalid one first; refused when that is
-- ambiguous), or opts.replace = "<id or url>" names it. info.action is
-- "reused", "revalidated", "registered" or "replaced" (info.replaced: the
-- webhook deleted).
function M.ensure_webhook(c, url, opts)
  check_client("ensure_webhook", c)
  if type(url) ~= "string" then argerror("ensure_webhook", "url", "expected a URL string, got " .. type(url)) end
  opts = check_opts("ensure_webhook", opts)
  local list, err = c:webhooks()
  if not list then return nil, err end
  local wh = find_url(list, url)
  if wh then
    if wh.valid ~= false then return wh, { action = "reused" } end
    local ok, verr = c:validate_webhook(wh.id)
    if not ok then return nil, verr end
    wh.valid = true
    return wh, { action = "revalidated" }
  end
  local created, rerr = c:register_webhook(url)
  if created then return created, { action = "registered" } end
  if rerr.kind == "conflict" then
    -- Registered meanwhile (another run, or X's answer to a retried POST).
    local again = c:webhooks()
    local found = again and find_url(again, url)
    if found then return found, { action = "reused" } end
    return nil, rerr
  end
  if not (opts.replace and is_quota_error(rerr)) then return nil, rerr end
  local victim
  if type(opts.replace) == "string" then
    for _, w in ipairs(list) do
      if w.id == opts.replace or w.url == opts.replace then victim = w end
    end
  else
    for _, w in ipairs(list) do
      if w.valid == false then victim = w; break end
    end
    if not victim and #list == 1 then victim = list[1] end
  end
  if not victim then
    return nil, errors.make("argument", "ensure_webhook: no free webhook slot and " .. #list
      .. " webhooks hold them; pass opts.replace = \"<id or url>\" to name the one to delete")
  end
  local ok, derr = c:delete_webhook(victim.id)
  if not ok and derr.kind ~= "not_found" then return nil, derr end
  created, rerr = c:register_webhook(url)
  if not created then return nil, rerr end
  return created, { action = "replaced", replaced = victim }
end

---------------------------------------------------------------------------
-- subscribe_many / sync_subscriptions
---------------------------------------------------------------------------

-- Jobs that subscribe `users` not in `current` (a set, or nil: unknown).
local function subscribe_jobs(webhook_id, users, current, report, seen)
  local jobs = {}
  for i, u in ipairs(users) do
    local id = M.user_id_of(u)
    local label = id or ("#" .. i)
    local duplicate = id and seen[id] -- the same user twice: once is enough
    if duplicate then -- luacheck: ignore 542
    elseif id and current and current[id] then
      report.kept[#report.kept + 1] = id
    else
      jobs[#jobs + 1] = { task = subscribe_task(webhook_id, u), user_id = id, user = u,
        action = "subscribe", label = label }
    end
    if id then seen[id] = true end
  end
  return jobs
end

--- subscribe_many(webhook_id, users, opts) -> report
-- Subscribe every user (tables with the user's own tokens). Users the
-- subscription list already holds are not sent again (opts.check = false
-- skips the list); "already subscribed" answers count as success.
-- report = { added = {ids}, kept = {ids}, removed = {}, failed = {{user_id,
-- user, action, err}}, ok = bool }.
function M.subscribe_many(c, webhook_id, users, opts)
  check_client("subscribe_many", c)
  webhook_id = args.check_id("subscribe_many", "webhook_id", webhook_id, 2)
  check_users("subscribe_many", "users", users)
  opts = check_opts("subscribe_many", opts)
  local t0 = clock()
  local report = new_report()
  local current
  if opts.check ~= false and #users > 0 then
    local list = c:subscriptions(webhook_id)
    if list then current = set_of(list) end
  end
  local jobs = subscribe_jobs(webhook_id, users, current, report, {})
  run_jobs(c, jobs, opts, report, "subscribe", #report.kept)
  return finish_report(report, t0)
end

--- sync_subscriptions(webhook_id, users, opts) -> report | nil, err
-- Make the webhook's subscribed set equal `users`: subscribe who is
-- missing, unsubscribe (app-only, by id from the list) who is not in
-- `users`. opts: concurrency, progress, remove = false (only add),
-- dry_run = true (report what would change, send nothing),
-- allow_removals = true (needed to remove more than half of the current
-- subscriptions when that is more than 10: otherwise nil, err kind "refused").
-- `users` is checked whole before anything is sent: an entry that names no
-- user raises, naming it.
function M.sync_subscriptions(c, webhook_id, users, opts)
  check_client("sync_subscriptions", c)
  webhook_id = args.check_id("sync_subscriptions", "webhook_id", webhook_id, 2)
  check_users("sync_subscriptions", "users", users)
  opts = check_opts("sync_subscriptions", opts)
  local t0 = clock()
  local list, err = c:subscriptions(webhook_id)
  if not list then return nil, err end
  local current = set_of(list)
  local report = new_report()
  local desired = {}
  local jobs = subscribe_jobs(webhook_id, users, current, report, desired)
  local removals = 0
  if opts.remove ~= false then
    for _, id in ipairs(list) do
      if not desired[id] then
        jobs[#jobs + 1] = { task = unsubscribe_task(webhook_id, id), user_id = id,
          action = "unsubscribe", label = id }
        removals = removals + 1
      end
    end
  end
  -- A sync that empties most of a webhook is far more often a wrong file
  -- than a wish: it must be asked for by name (a dry run says the same).
  if removals > M.REMOVAL_GUARD and removals * 2 > #list and opts.allow_removals ~= true then
    return nil, errors.make("refused", string.format("sync_subscriptions would remove %d of the %d subscriptions "
      .. "of webhook %s (more than half); nothing was sent. Pass opts.allow_removals = true if that is meant",
      removals, #list, webhook_id), nil, { removals = removals, current = #list })
  end
  if opts.dry_run then
    for _, j in ipairs(jobs) do
      local into = j.action == "subscribe" and report.added or report.removed
      into[#into + 1] = j.label
    end
    report.dry_run = true
    return finish_report(report, t0)
  end
  run_jobs(c, jobs, opts, report, "sync", #report.kept)
  return finish_report(report, t0)
end

---------------------------------------------------------------------------
-- migrate_webhook
---------------------------------------------------------------------------

--- migrate_webhook(old_id, new_url, opts) -> report | nil, err
-- Register (or reuse) new_url, subscribe to it every user subscribed to the
-- old webhook (their tokens in opts.users), and delete the old webhook only
-- once all of them are on the new one. Re-run after a failure to finish.
-- When the old webhook is already gone, every user in opts.users is
-- subscribed to the new one. report = { webhook, added (moved), kept,
-- failed, old_deleted, ok }.
function M.migrate_webhook(c, old_id, new_url, opts)
  check_client("migrate_webhook", c)
  old_id = args.check_id("migrate_webhook", "old_id", old_id, 2)
  if type(new_url) ~= "string" then
    argerror("migrate_webhook", "new_url", "expected a URL string, got " .. type(new_url))
  end
  opts = check_opts("migrate_webhook", opts)
  local users = check_users("migrate_webhook", "opts.users", opts.users or {})
  local t0 = clock()
  local old_list, lerr = c:subscriptions(old_id)
  local old_exists = true
  if not old_list then
    if lerr.kind ~= "not_found" then return nil, lerr end
    old_exists = false
  end
  local wh, info = M.ensure_webhook(c, new_url, { replace = opts.replace })
  if not wh then return nil, info end
  if wh.id == old_id then
    return nil, errors.make("argument", "migrate_webhook: " .. new_url .. " is the old webhook's URL")
  end
  local report = new_report()
  report.webhook, report.webhook_action = wh, info.action
  local movers = users
  if old_exists then
    local by_id = {}
    for _, u in ipairs(users) do
      local id = M.user_id_of(u)
      if id then by_id[id] = u end
    end
    movers = {}
    for _, id in ipairs(old_list) do
      if by_id[id] then
        movers[#movers + 1] = by_id[id]
      elseif not opts.drop_missing then
        report.failed[#report.failed + 1] = { user_id = id, action = "subscribe",
          err = errors.make("argument", "no tokens for subscribed user " .. id
            .. " in opts.users (opts.drop_missing = true leaves it behind)") }
      end
    end
  end
  local sub = M.subscribe_many(c, wh.id, movers, { concurrency = opts.concurrency, progress = opts.progress })
  report.added, report.kept = sub.added, sub.kept
  for _, f in ipairs(sub.failed) do report.failed[#report.failed + 1] = f end
  report.old_deleted = not old_exists
  if old_exists and #report.failed == 0 and not opts.keep_old then
    local ok, derr = c:delete_webhook(old_id)
    if ok or (derr and derr.kind == "not_found") then
      report.old_deleted = true
    else
      report.failed[#report.failed + 1] = { action = "delete_webhook", err = derr }
    end
  end
  return finish_report(report, t0)
end

---------------------------------------------------------------------------
-- teardown
---------------------------------------------------------------------------

--- teardown(webhook_id, opts) -> report | nil, err
-- Unsubscribe everyone (app-only, by id), then delete the webhook; the
-- webhook stays when an unsubscribe failed (opts.force = true deletes it
-- anyway), so a re-run can finish. A webhook already gone is success
-- (report.already_gone).
function M.teardown(c, webhook_id, opts)
  check_client("teardown", c)
  webhook_id = args.check_id("teardown", "webhook_id", webhook_id, 2)
  opts = check_opts("teardown", opts)
  local t0 = clock()
  local report = new_report()
  report.webhook_deleted = false
  local list, err = c:subscriptions(webhook_id)
  if not list then
    if err.kind == "not_found" then
      report.already_gone = true
      return finish_report(report, t0)
    end
    return nil, err
  end
  ensure_bearer(c)
  local jobs = {}
  for _, id in ipairs(list) do
    jobs[#jobs + 1] = { task = unsubscribe_task(webhook_id, id), user_id = id, action = "unsubscribe", label = id }
  end
  run_jobs(c, jobs, opts, report, "teardown")
  if #report.failed == 0 or opts.force then
    local ok, derr = c:delete_webhook(webhook_id)
    if ok or (derr and derr.kind == "not_found") then
      report.webhook_deleted = true
    else
      report.failed[#report.failed + 1] = { action = "delete_webhook", err = derr }
    end
  end
  return finish_report(report, t0)
end

---------------------------------------------------------------------------
-- health
---------------------------------------------------------------------------

M.CRC_BUDGET = crc.BUDGET

local CRC_REASON = {
  no_token = "no response_token in the JSON answer",
  mismatch = "response_token does not match (is the consumer secret the webhook uses this app's?)",
}

--- crc_check(url, opts) -> { ok, status, latency, within_budget, reason }
-- A CRC as X runs it (crc.probe): GET url?crc_token=<X-shaped token>&nonce=...,
-- signed with x-twitter-webhooks-signature, answer compared with crc_response.
function M.crc_check(c, url, opts)
  check_client("crc_check", c)
  if type(url) ~= "string" then argerror("crc_check", "url", "expected a URL string, got " .. type(url)) end
  opts = opts or {}
  local r = crc.probe {
    send = c.send, url = url, budget = opts.budget or M.CRC_BUDGET, timeout = opts.timeout,
    sign = function(s) return c:_crc_response(s) end, clock = clock, now = os.time,
    user_agent = c.user_agent,
  }
  local out = { ok = r.ok, url = errors.redact_url(url), latency = r.latency, budget = r.budget,
    within_budget = r.latency < r.budget, status = r.status }
  if r.ok then return out end
  if r.error then
    out.reason = (r.error.kind or "network") .. ": " .. tostring(r.error.message or "no answer")
  elseif r.reason == "non_200" then
    out.reason = "HTTP " .. tostring(r.status) .. " (X wants 200)"
  elseif r.reason == "latency" then
    out.reason = string.format("answered in %.2f s; X allows %g s", r.latency, r.budget)
  else
    out.reason = CRC_REASON[r.reason] or r.reason
  end
  return out
end

--- health(webhook_id or url, opts) -> report
-- exists? valid? how many subscriptions? and our CRC answer at the
-- webhook's URL (or opts.url, its public URL when that differs) with its
-- latency against X's 3 s budget. opts.crc = false skips the CRC.
-- report = { id, url, exists, valid, subscriptions, crc = {...}, problems = {...}, ok }
function M.health(c, target, opts)
  check_client("health", c)
  if type(target) == "number" then target = args.check_id("health", "webhook", target, 2) end
  if type(target) ~= "string" then
    argerror("health", "webhook", "expected a webhook id or URL string, got " .. type(target))
  end
  opts = opts or {}
  local report = { exists = false, problems = {} }
  local by_id = target:match("^%d+$") ~= nil
  if by_id then report.id = target else report.url = target end
  local list, err = c:webhooks()
  if not list then
    report.problems[#report.problems + 1] = "cannot list webhooks: " .. tostring(err)
  else
    for _, wh in ipairs(list) do
      if (by_id and wh.id == target) or (not by_id and wh.url == target) then
        report.exists, report.id, report.url, report.valid = true, wh.id, wh.url, wh.valid
        report.created_at = wh.created_at
      end
    end
    if not report.exists then report.problems[#report.problems + 1] = "no webhook " .. target end
  end
  if report.exists then
    if report.valid == false then
      report.problems[#report.problems + 1] = "X marked the webhook invalid (a CRC failed): events stop until it is re-validated"
    end
    local subs, serr = c:subscriptions(report.id)
    if subs then
      report.subscriptions = #subs
    else
      report.problems[#report.problems + 1] = "cannot list subscriptions: " .. tostring(serr)
    end
  end
  local url = opts.url or report.url
  if url and opts.crc ~= false then
    report.crc = M.crc_check(c, url, opts)
    if not report.crc.ok then report.problems[#report.problems + 1] = "CRC: " .. report.crc.reason end
  end
  report.ok = #report.problems == 0
  return pretty.mark(report, pretty.health_mt)
end

---------------------------------------------------------------------------
-- replay helpers
---------------------------------------------------------------------------

--- parse_time(s) -> epoch or "YYYYMMDDhhmm" | nil, message
-- "YYYYMMDDhhmm" (UTC), an epoch number, "now" (the end of the current
-- minute, as an exclusive bound) or relative "-90m", "-2h", "-1d".
function M.parse_time(s, now)
  now = now or os.time()
  if type(s) == "number" then return s end
  if type(s) ~= "string" then return nil, "expected a time, got " .. type(s) end
  if s:match("^%d%d%d%d%d%d%d%d%d%d%d%d$") then return s end
  if s:match("^%d%d%d%d%d%d%d%d%d%d$") then return tonumber(s) end
  if s == "now" then return now - now % 60 + 60 end
  local n, unit = s:match("^%-(%d+)([smhd])$")
  if n then
    local mul = ({ s = 1, m = 60, h = 3600, d = 86400 })[unit]
    return now - tonumber(n) * mul
  end
  return nil, "expected YYYYMMDDhhmm (UTC), an epoch, now, or -Nm / -Nh / -Nd; got " .. s
end

--- replay_last(webhook_id, minutes) -> job, response | nil, err
-- Replay the last `minutes` up to the end of the current minute.
function M.replay_last(c, webhook_id, minutes)
  check_client("replay_last", c)
  if type(minutes) ~= "number" or minutes <= 0 then
    argerror("replay_last", "minutes", "expected a positive number, got " .. tostring(minutes))
  end
  local to = M.parse_time("now", math.floor(c.clock()))
  return c:replay(webhook_id, to - math.floor(minutes) * 60, to)
end

return M
