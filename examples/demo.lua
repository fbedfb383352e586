-- `make demo`: the whole job on the built-in emulator, no network, no account.
--
-- Starts the emulator (500 users) and two local webhook endpoints (nginx
-- running account_activity.nginx.serve), then: ensure_webhook,
-- sync_subscriptions with a progress bar, a burst of events of every type
-- arriving typed at the endpoint, health, a replay, migrate_webhook to the
-- second endpoint, teardown. Everything is stopped at the end, even on error.
local here = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "."
local root = here .. "/.."
local interp = rawget(_G, "jit") and "luajit" or "lua5.4"
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/" .. interp .. "/?.so;" .. package.cpath

local aa = require "account_activity"
local core = require "account_activity.core"
local emulator = require "account_activity.emulator"
local cli = require "account_activity.cli"

local USERS = tonumber(os.getenv("AA_DEMO_USERS")) or 500
local EVENTS_PER_TYPE = 3

local t_start = core.now()
local cleanup = {}
local function at_exit(fn) cleanup[#cleanup + 1] = fn end
local NGINX_PIDS = {}

local function say(fmt, ...) io.stdout:write(string.format(fmt, ...), "\n"); io.stdout:flush() end
local function step(name) say("\n== %s", name) end

-- Wait until `cond()` is true (polling), at most `timeout` seconds.
local function wait_for(cond, timeout)
  local t0 = core.now()
  while core.now() - t0 < timeout do
    if cond() then return true end
    core.sleep(0.05)
  end
  return cond()
end

local function main()
  step("start the emulator and two webhook endpoints")
  local emu = assert(emulator.start { config = { users_count = USERS } })
  at_exit(function() emu:stop() end)
  NGINX_PIDS[#NGINX_PIDS + 1] = function() return emu.server and emu.server.pid or "" end
  local cfg = emu.config
  say("emulator   %s (%d users)", emu.url, #cfg.users)

  local files, endpoints = {}, {}
  for i = 1, 2 do
    files[i] = os.tmpname()
    at_exit(function() os.remove(files[i]) end)
    local ep = assert(cli.start_endpoint { secret = cfg.app.consumer_secret, file = files[i],
      path = "/webhooks/" .. (i == 1 and "blue" or "green") })
    at_exit(function() ep:stop() end)
    NGINX_PIDS[#NGINX_PIDS + 1] = function() return ep.pid or "" end
    endpoints[i] = ep
    say("endpoint %d %s", i, ep.hook_url)
  end
  local feed = { cli.follow(files[1]), cli.follow(files[2]) }

  local client = aa.new {
    consumer_key = cfg.app.consumer_key, consumer_secret = cfg.app.consumer_secret,
    access_token = cfg.app.owner.access_token, access_token_secret = cfg.app.owner.access_token_secret,
    base_url = emu.url,
  }
  at_exit(function() client:close() end)
  say("client     %s", tostring(client))

  step("ensure_webhook (twice: the second run reuses it)")
  local wh, info = assert(client:ensure_webhook(endpoints[1].hook_url))
  say("%s webhook %s valid=%s", info.action, wh.id, tostring(wh.valid))
  local _, again = assert(client:ensure_webhook(endpoints[1].hook_url))
  say("second run: %s", again.action)

  step("sync_subscriptions: " .. #cfg.users .. " users")
  local users = cfg.users
  local r = assert(client:sync_subscriptions(wh.id, users, { progress = true }))
  say("added %d, kept %d, removed %d, failed %d in %.2f s", #r.added, #r.kept, #r.removed, #r.failed, r.elapsed)
  local r2 = assert(client:sync_subscriptions(wh.id, users))
  say("re-run: added %d, kept %d, removed %d, failed %d (nothing to do)", #r2.added, #r2.kept, #r2.removed, #r2.failed)

  step("a burst of events of every type")
  local types = emu:control("GET", "/_emulator/events").types
  local sent = 0
  for i, typ in ipairs(types) do
    local u = users[(i - 1) % #users + 1]
    local res = assert(emu:control("POST", "/_emulator/deliver",
      { user_id = u.user_id, type = typ, count = EVENTS_PER_TYPE, wait = true,
        unsubscribe_on_revoke = false }))
    sent = sent + (res.delivered or 0)
  end
  local got, by_type = {}, {}
  wait_for(function()
    for _, rec in ipairs(feed[1]()) do
      got[#got + 1] = rec
      by_type[rec.type] = (by_type[rec.type] or 0) + 1
    end
    return #got >= sent
  end, 5)
  for _, typ in ipairs(types) do
    for _, rec in ipairs(got) do
      if rec.type == typ then say("  %s", cli.event_line(rec)); break end
    end
  end
  say("delivered %d, received %d typed events (%d types)", sent, #got, #types)

  step("health")
  local h = client:health(wh.id)
  say("exists=%s valid=%s subscriptions=%s crc=%s in %.1f ms (budget %g s)", tostring(h.exists),
    tostring(h.valid), tostring(h.subscriptions), h.crc.ok and "ok" or tostring(h.crc.reason),
    h.crc.latency * 1000, h.crc.budget)

  step("replay the last minutes")
  local job = assert(client:replay_last(wh.id, 5))
  say("replay job %s", tostring(job.job_id))
  local replayed, status = 0, nil
  wait_for(function()
    for _, rec in ipairs(feed[1]()) do
      if rec.type == "replay_job_status" then status = rec else replayed = replayed + 1 end
    end
    return status ~= nil
  end, 10)
  say("replayed %d events; job status: %s", replayed, status and status.summary ~= "" and status.summary
    or (status and "received" or "not received"))

  step("migrate_webhook to the second endpoint")
  local m = assert(client:migrate_webhook(wh.id, endpoints[2].hook_url, { users = users, progress = true }))
  say("new webhook %s: moved %d, kept %d, failed %d, old deleted=%s", m.webhook.id, #m.added, #m.kept,
    #m.failed, tostring(m.old_deleted))
  assert(emu:control("POST", "/_emulator/deliver", { user_id = users[1].user_id, type = "favorite", wait = true }))
  local moved_event
  wait_for(function()
    for _, rec in ipairs(feed[2]()) do moved_event = rec end
    return moved_event ~= nil
  end, 5)
  say("endpoint 2 received: %s", moved_event and cli.event_line(moved_event) or "nothing")

  step("teardown")
  local t = assert(client:teardown(m.webhook.id, { progress = true }))
  say("removed %d subscriptions, webhook deleted=%s, failed %d", #t.removed, tostring(t.webhook_deleted), #t.failed)
  local left = assert(client:webhooks())

  step("summary")
  local ok = #r.failed == 0 and #got >= sent and sent > 0 and h.ok and status ~= nil and m.ok
    and moved_event ~= nil and t.ok and #left == 0
  say("%d users synced, %d events of %d types received, replay %s, migration %s, teardown %s, %d webhooks left",
    #r.added, #got, #types, status and "complete" or "missing", m.ok and "ok" or "FAILED",
    t.ok and "ok" or "FAILED", #left)
  say("demo %s in %.1f s", ok and "OK" or "FAILED", core.now() - t_start)
  return ok
end

local ok, res = xpcall(main, debug.traceback)
-- Ask every nginx to quit at once (each takes about a second), then reap them.
local pids = {}
for _, p in ipairs(NGINX_PIDS) do pids[#pids + 1] = tostring(p()) end
if #pids > 0 then os.execute("kill -TERM " .. table.concat(pids, " ") .. " 2>/dev/null") end
for i = #cleanup, 1, -1 do pcall(cleanup[i]) end
if not ok then
  io.stderr:write("demo failed: ", tostring(res), "\n")
  os.exit(1)
end
os.exit(res and 0 or 1)
