--- `account-activity events tail` and `account-activity up`: a local
-- endpoint that prints what it receives, and the one-command webhook.
local events = require "account_activity.cli.events"
local F = {}
local K = require "account_activity.cli.kit"
local usage_error, need, fail_report, report_line = K.usage_error, K.need, K.fail_report, K.report_line
local encode = K.encode

local function sleep(s)
  local ok, core = pcall(require, "account_activity.core")
  if ok and core.sleep then return core.sleep(s) end
  os.execute("sleep " .. s)
end

function F.events(ctx, pos)
  local sub = table.remove(pos, 1)
  if sub == "consume" or sub == "pending" or sub == "dead" then
    local e = need(pos, 0, "") if e then return e end
    return require("account_activity.cli.durable")[sub](ctx,
      { encode = encode, event_line = events.event_line, event_summary = events.event_summary })
  end
  if sub ~= "tail" then return usage_error("usage: events tail | consume | pending | dead (see events --help)") end
  local e = need(pos, 0, "") if e then return e end
  local secret = ctx.secret
  if not secret then return usage_error("events tail needs the consumer secret (--config FILE or TWITTER_CONSUMER_SECRET)") end
  local count = tonumber(ctx.o.count)
  local timeout = tonumber(ctx.o.timeout)
  local file = os.tmpname()
  -- TERM and HUP, like Ctrl-C, stop the endpoint before we exit.
  local core = require "account_activity.core"
  local STOP_SIGNALS = { "INT", "TERM", "HUP" }
  core.signal_catch(STOP_SIGNALS)
  local server, err = events.start_endpoint { secret = secret, file = file, port = tonumber(ctx.o.port), path = ctx.o.path }
  if not server then
    core.signal_reset(STOP_SIGNALS)
    os.remove(file)
    return "cannot start the endpoint: " .. (type(err) == "table" and err.message or tostring(err))
  end
  ctx.err:write("listening on ", server.hook_url, " (Ctrl-C stops)\n")
  local poll = events.follow(file)
  local seen = 0
  local ok, perr = pcall(function()
    local t0 = os.time()
    while true do
      for _, r in ipairs(poll()) do
        seen = seen + 1
        if ctx.o.json then ctx.out:write(encode(r), "\n") else ctx.out:write(events.event_line(r), "\n") end
        ctx.out:flush()
        if count and seen >= count then return end
      end
      if timeout and os.time() - t0 >= timeout then return end
      if core.signal_pending() then return end
      sleep(0.1)
    end
  end)
  server:stop()
  core.signal_reset(STOP_SIGNALS)
  os.remove(file)
  if not ok and not tostring(perr):find("interrupted", 1, true) then return tostring(perr) end
end

-- Ctrl-C ends a blocking loop through lua.c's "interrupted!" error; SIGTERM
-- and SIGHUP need the C core's flags (caught where the core has them).
local function catch_stop_signals()
  local ok, core = pcall(require, "account_activity.core")
  if ok and type(core.signal_catch) == "function" then
    core.signal_catch { "INT", "TERM", "HUP" }
    return function() return core.signal_pending() end,
      function() core.signal_reset { "INT", "TERM", "HUP" } end
  end
  return function() return nil end, function() end
end

function F.up(ctx, pos)
  local e = need(pos, 0, "") if e then return e end
  local c, o = ctx.client, ctx.o
  local secret = ctx.secret
  if not secret then return usage_error("up needs the consumer secret (--config FILE or TWITTER_CONSUMER_SECRET)") end
  local users
  if o.users then
    local uerr
    users, uerr = K.read_users(o.users)
    if not users then return usage_error(uerr) end
  elseif ctx.owner then
    users = { ctx.owner }
  else
    users = {}
  end
  if o.url and not tostring(o.url):match("^https?://[^%s]+$") then
    return usage_error("--url must be an http(s) URL, got " .. tostring(o.url))
  end
  local count, timeout = tonumber(o.count), tonumber(o.timeout)
  local file = os.tmpname()
  local server, serr = events.start_endpoint { secret = secret, file = file, port = tonumber(o.port), path = o.path }
  if not server then os.remove(file) return "cannot start the endpoint: " .. tostring(serr) end
  local pending_signal, reset_signals = catch_stop_signals()
  local wh, info, added = nil, nil, {}
  local function undo()
    reset_signals()
    if wh and not o.keep then
      if info and info.action == "registered" then
        local r = c:teardown(wh.id)
        ctx.err:write("up: deleted webhook ", wh.id, r and r.ok and "" or (" (not all: " .. tostring(r) .. ")"), "\n")
      else
        for _, id in ipairs(added) do c:unsubscribe(wh.id, id) end
        ctx.err:write("up: removed the ", #added, " subscriptions it added; webhook ", wh.id, " kept\n")
      end
    end
    server:stop()
    os.remove(file)
  end
  local ok, perr = pcall(function()
    local url = o.url or server.hook_url
    local werr
    wh, info = c:ensure_webhook(url)
    if not wh then werr = info; info = nil; error({ api = werr }) end
    local report = c:subscribe_many(wh.id, users, ctx.job_opts)
    added = report.added
    ctx.err:write(string.format("up: webhook %s %s for %s; %s; listening on %s (Ctrl-C tears down)\n",
      wh.id, info.action, url, report_line(report), server.hook_url))
    fail_report(ctx, report)
    local poll, seen, t0 = events.follow(file), 0, os.time()
    while true do
      for _, r in ipairs(poll()) do
        seen = seen + 1
        if o.json then ctx.out:write(encode(r), "\n") else ctx.out:write(events.event_line(r), "\n") end
        ctx.out:flush()
        if count and seen >= count then return end
      end
      if timeout and os.time() - t0 >= timeout then return end
      local sig = pending_signal()
      if sig then ctx.err:write("up: ", sig == "INT" and "interrupted" or ("SIG" .. sig), ", tearing down\n") return end
      sleep(0.1)
    end
  end)
  undo()
  if not ok then
    if type(perr) == "table" and perr.api then return perr.api end
    if not tostring(perr):find("interrupted", 1, true) then return tostring(perr) end
  end
end
return F
