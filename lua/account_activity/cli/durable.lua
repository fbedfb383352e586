--- `events consume | pending | dead`: the command line over the durable
-- hand-off (account_activity.consumer and the Redis streams the sink fills).
--
-- The stream entries hold the delivery's signature: it is never printed.
local core = require "account_activity.core"
local redis = require "account_activity.redis"

local M = {}

local function usage(msg)
  return { usage = true, message = msg }
end

-- --redis HOST:PORT (default 127.0.0.1:6379); the password, when one is
-- needed, from AA_REDIS_PASSWORD (never a command-line argument: ps shows those).
local function redis_opts(o)
  local host, port = redis.parse_address(o.redis or "127.0.0.1:6379")
  if not host or port < 1 or port > 65535 then return nil, usage("--redis must be HOST:PORT") end
  return { host = host, port = port, password = os.getenv("AA_REDIS_PASSWORD"), timeout_ms = 2000 }
end

local function stream_of(o)
  return o.stream or "aa:events"
end

local function field_map(list)
  local f = {}
  for i = 1, #(list or {}) - 1, 2 do f[list[i]] = list[i + 1] end
  return f
end

-- A handler file returns function(router) that adds handlers; without one,
-- every event is printed on one line.
local function build_router(ctx, cli)
  local aa = require "account_activity"
  local r = aa.router()
  local o = ctx.o
  if o.handler then
    local chunk, err = loadfile(o.handler)
    if not chunk then return nil, "cannot load --handler: " .. tostring(err) end
    local setup = chunk()
    if type(setup) ~= "function" then return nil, "--handler " .. o.handler .. " must return function(router)" end
    setup(r)
  end
  local seen = 0
  r:on("*", function(ev)
    seen = seen + 1
    local rec = { t = os.time(), type = ev.type, for_user_id = ev.for_user_id, id = ev.id,
      stream_id = ev.stream_id, summary = cli.event_summary(ev) }
    if o.json then ctx.out:write(cli.encode(rec), "\n") else ctx.out:write(cli.event_line(rec), "\n") end
    ctx.out:flush()
  end)
  return r, function() return seen end
end

function M.consume(ctx, cli)
  local o = ctx.o
  if not o.group then return usage("events consume needs --group G") end
  local ropts, uerr = redis_opts(o)
  if not ropts then return uerr end
  local r, seen = build_router(ctx, cli)
  if not r then return seen end
  local count, timeout = tonumber(o.count), tonumber(o.timeout)
  local consumer = require("account_activity.consumer").new {
    redis = ropts, stream = stream_of(o), group = o.group, name = o.name, router = r,
    batch = tonumber(o.batch) or 64, block_ms = 500,
    log = function(level, msg) if level ~= "debug" then ctx.err:write(level, ": ", msg, "\n") end end,
  }
  ctx.err:write("consuming ", stream_of(o), " as ", consumer.name, " in group ", o.group, " (Ctrl-C stops)\n")
  local signals = { "INT", "TERM" }
  if core.signal_catch then core.signal_catch(signals) end
  local t0 = core.now()
  while true do
    local _, err = consumer:step()
    if err then
      ctx.err:write("warn: ", tostring(err), "\n")
      core.sleep(0.5)
    end
    if core.signal_pending and core.signal_pending() then break end
    if count and seen() >= count then break end
    if timeout and core.now() - t0 >= timeout then break end
  end
  if core.signal_reset then core.signal_reset(signals) end
  local stats = consumer:stats()
  consumer:close()
  ctx.err:write(("processed %d, failed %d, claimed %d, dead %d, pending %s\n"):format(stats.processed,
    stats.failed, stats.claimed, stats.dead, tostring(stats.pending)))
end

local function connect(o)
  local ropts, uerr = redis_opts(o)
  if not ropts then return nil, uerr end
  local c, err = redis.connect(ropts)
  if not c then return nil, tostring(err) end
  return c
end

function M.pending(ctx, cli)
  local o = ctx.o
  if not o.group then return usage("events pending needs --group G") end
  local c, err = connect(o)
  if not c then return err end
  local r
  r, err = c:command { "XPENDING", stream_of(o), o.group }
  if not r then
    c:close()
    return tostring(err)
  end
  local out = { stream = stream_of(o), group = o.group, pending = r[1], first = r[2] ~= redis.null and r[2] or nil,
    last = r[3] ~= redis.null and r[3] or nil, consumers = {} }
  if type(r[4]) == "table" then
    for _, pair in ipairs(r[4]) do out.consumers[#out.consumers + 1] = { name = pair[1], pending = tonumber(pair[2]) } end
  end
  local detail = {}
  if out.pending > 0 then
    detail = c:command { "XPENDING", stream_of(o), o.group, "-", "+", tonumber(o.count) or 20 } or {}
  end
  c:close()
  out.entries = {}
  for _, row in ipairs(detail) do
    out.entries[#out.entries + 1] = { id = row[1], consumer = row[2], idle_ms = row[3], deliveries = row[4] }
  end
  if o.json then
    ctx.out:write(cli.encode(out), "\n")
    return
  end
  ctx.out:write(("%d pending in %s, group %s\n"):format(out.pending, out.stream, out.group))
  for _, cn in ipairs(out.consumers) do ctx.out:write(("  %-30s %d\n"):format(cn.name, cn.pending)) end
  for _, e in ipairs(out.entries) do
    ctx.out:write(("  %s  %s  idle %.1f s  delivered %d time(s)\n"):format(e.id, e.consumer, e.idle_ms / 1000, e.deliveries))
  end
end

function M.dead(ctx, cli)
  local o = ctx.o
  local c, err = connect(o)
  if not c then return err end
  local stream = o.stream and (o.stream .. ":dead") or "aa:events:dead"
  local r
  r, err = c:command { "XREVRANGE", stream, "+", "-", "COUNT", tonumber(o.count) or 20 }
  local total = c:command { "XLEN", stream }
  c:close()
  if not r then return tostring(err) end
  local list = {}
  for _, e in ipairs(r) do
    local f = field_map(e[2])
    local rec = { dead_id = e[1], id = f.id, error = f.error, attempts = tonumber(f.attempts),
      consumer = f.consumer, failed_at = tonumber(f.failed_at), api = f.api, received_at = tonumber(f.received_at),
      body = f.body }
    list[#list + 1] = rec
  end
  if o.json then
    ctx.out:write(cli.encode({ stream = stream, total = total, entries = list }), "\n")
    return
  end
  ctx.out:write(("%s: %s dead entr%s (newest first)\n"):format(stream, tostring(total), total == 1 and "y" or "ies"))
  for _, e in ipairs(list) do
    ctx.out:write(("  %s  after %s attempt(s) on %s: %s\n"):format(tostring(e.id), tostring(e.attempts),
      tostring(e.consumer), tostring(e.error):gsub("[\r\n]+", " "):sub(1, 200)))
  end
end

return M
