-- The durable hand-off end to end, against real redis-server and nginx:
-- repeats across hosts and workers, a consumer killed mid-batch, Redis
-- restarted while the emulator delivers. Each case counts losses and
-- duplicates (printed, and asserted to be none).
local core = require "account_activity.core"
local aa = require "account_activity"
local cjson = require "cjson"
local nginx_process = require "account_activity.nginx_process"
local redis_helper = require "redis_helper"
local H = require "emulator_helper"

local function sign(secret, body)
  return "sha256=" .. core.base64_encode(core.hmac_sha256(secret, body))
end

local function wait_for(fn, secs)
  local deadline = core.now() + (secs or 20)
  repeat
    local v = fn()
    if v then return v end
    core.sleep(0.05)
  until core.now() > deadline
  return fn()
end

local function sink_nginx(secret, redis_port, workers)
  return nginx_process.start { workers = workers or 2, http = function(ports)
    return ([[
  init_by_lua_block {
    package.loaded.durable_opts = { consumer_secret = %q,
      sink = { redis = { host = "127.0.0.1", port = %d, timeout_ms = 500 }, stream = "aa:events", dedupe_ttl = 600 } }
  }
  server {
    listen 127.0.0.1:%d;
    location = /webhook { content_by_lua_block { require("account_activity.nginx").serve(package.loaded.durable_opts) } }
  }
]]):format(secret, redis_port, ports[1])
  end }
end

local function read_lines(path)
  local out = {}
  local f = io.open(path, "rb")
  if not f then return out end
  for line in f:lines() do out[#out + 1] = line end
  f:close()
  return out
end

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- A consumer in a child process (this interpreter): every dispatched entry
-- is appended to `out` as "<stream id> <event id>" before its handler returns.
local function child_consumer(o)
  local script = os.tmpname()
  local f = assert(io.open(script, "wb"))
  f:write(([[
local aa = require "account_activity"
local core = require "account_activity.core"
local out = assert(io.open(%q, "ab"))
out:setvbuf("no")
local r = aa.router()
r:on("*", function(ev)
  out:write(ev.stream_id, " ", tostring(ev.id), "\n")
  if %s > 0 then core.sleep(%s) end
end)
local c = aa.consumer { redis = { port = %d }, stream = "aa:events", group = "g", name = %q,
  router = r, batch = %d, block_ms = 200, claim_idle_ms = %d, log = function() end }
assert(io.open(%q, "wb")):close()
local stats = c:run()
local d = assert(io.open(%q, "wb"))
d:write(require("cjson").encode(stats))
d:close()
]]):format(o.out, o.delay or 0, o.delay or 0, o.port, o.name, o.batch or 64, o.claim_idle_ms or 60000,
    o.out .. ".ready", o.out .. ".done"))
  f:close()
  local lua = os.getenv("AA_SPEC_LUA") or "lua5.4"
  local p = io.popen(("%s %s >%s.log 2>&1 & echo $!"):format(lua, script, o.out))
  local pid = tonumber(p:read("*l"))
  p:close()
  assert(wait_for(function() return file_exists(o.out .. ".ready") end, 10), "child consumer did not start")
  return { pid = pid, script = script, out = o.out }
end

local function kill(pid, sig)
  os.execute(("kill -%s %d 2>/dev/null"):format(sig, pid))
end

local function alive(pid)
  local a = os.execute(("kill -0 %d 2>/dev/null"):format(pid))
  return a == true or a == 0
end

-- stream id -> times dispatched, from the consumers' records
local function tally(lines, into)
  into = into or {}
  for _, l in ipairs(lines) do
    local id = l:match("^(%S+)")
    into[id] = (into[id] or 0) + 1
  end
  return into
end

local function stream_ids(srv)
  local ids = {}
  for _, e in ipairs(srv:cmd("XRANGE", "aa:events", "-", "+")) do ids[#ids + 1] = e[1] end
  return ids
end

describe("durable hand-off", function()
  local srv

  before_each(function()
    local err
    srv, err = redis_helper.start()
    assert(srv, err)
  end)

  after_each(function()
    if srv then srv:stop() end
  end)

  it("2 nginx x 2 workers, 2,000 deliveries of which 300 repeats -> 1,700 entries, each dispatched once", function()
    local SECRET = "durable-spec-secret-0123456789abcdef0123"
    local a = assert(sink_nginx(SECRET, srv.port))
    local b = assert(sink_nginx(SECRET, srv.port))
    local ok, perr = pcall(function()
      local reqs = {}
      for i = 1, 2000 do
        local k = i <= 1700 and i or (i * 7) % 1700 + 1 -- 300 repeats of earlier deliveries
        local body = '{"for_user_id":"9","favorite_events":[{"id":"f' .. k .. '"}]}'
        reqs[i] = { method = "POST", url = (i % 2 == 0 and a or b).url .. "/webhook", body = body,
          headers = { ["Content-Type"] = "application/json", ["X-Twitter-Webhooks-Signature"] = sign(SECRET, body) } }
      end
      local s = core.session { timeout = 30 }
      local results = s:perform(reqs, { concurrency = 32 })
      s:close()
      local non200 = 0
      for _, r in ipairs(results) do if not (r.res and r.res.status == 200) then non200 = non200 + 1 end end
      assert.are.equal(0, non200)
      assert.are.equal(1700, srv:cmd("XLEN", "aa:events"))

      local seen = {}
      local r = aa.router()
      r:on("favorite", function(ev) seen[ev.id] = (seen[ev.id] or 0) + 1 end)
      local c = aa.consumer { redis = { port = srv.port }, group = "g", router = r, block_ms = 100, log = function() end }
      wait_for(function() assert(c:step()); return c.counts.processed >= 1700 end, 60)
      assert(c:step())
      local distinct, twice = 0, 0
      for _, n in pairs(seen) do
        distinct = distinct + 1
        if n > 1 then twice = twice + 1 end
      end
      print(("\n  [repeats] 2000 sent, 1700 distinct: %d entries, %d dispatched, %d lost, %d twice")
        :format(srv:cmd("XLEN", "aa:events"), distinct, 1700 - distinct, twice))
      assert.are.equal(1700, distinct)
      assert.are.equal(0, twice)
      assert.are.equal(0, c:stats().pending)
      c:close()
    end)
    a:stop()
    b:stop()
    assert(ok, perr)
  end)

  it("a consumer killed -9 mid-batch: another claims its entries, nothing lost", function()
    for i = 1, 300 do
      srv:cmd("XADD", "aa:events", "*", "body", '{"for_user_id":"9","favorite_events":[{"id":"k' .. i .. '"}]}',
        "sig", "s" .. i, "received_at", os.time(), "api", "aaa")
    end
    local out1, out2 = os.tmpname(), os.tmpname()
    os.remove(out1)
    local child = child_consumer { out = out1, port = srv.port, name = "doomed", batch = 50, delay = 0.01 }
    assert(wait_for(function() return #read_lines(out1) >= 20 end, 20))
    kill(child.pid, "KILL")
    assert(wait_for(function() return not alive(child.pid) end, 5))
    local by_child = #read_lines(out1)
    assert.is_true(by_child < 300, "the child finished before the kill")

    local got = {}
    local r = aa.router()
    r:on("favorite", function(ev)
      local f = assert(io.open(out2, "ab"))
      f:write(ev.stream_id, " ", ev.id, "\n")
      f:close()
      got[#got + 1] = ev.id
    end)
    local c = aa.consumer { redis = { port = srv.port }, group = "g", name = "survivor", router = r,
      block_ms = 100, claim_idle_ms = 300, log = function() end }
    wait_for(function()
      assert(c:step())
      return c:stats().pending == 0 and c.counts.processed + by_child >= 300 and c.counts.claimed > 0
    end, 30)
    local counts = tally(read_lines(out1))
    tally(read_lines(out2), counts)
    local lost, twice = 0, 0
    for _, id in ipairs(stream_ids(srv)) do
      if not counts[id] then lost = lost + 1 elseif counts[id] > 1 then twice = twice + 1 end
    end
    print(("\n  [kill -9] 300 entries: child dispatched %d before the kill, survivor claimed %d, %d lost, "
      .. "%d dispatched twice (handled, not acked, when the child died)"):format(by_child, c.counts.claimed, lost, twice))
    assert.are.equal(0, lost)
    assert.is_true(c.counts.claimed > 0)
    assert.is_true(twice <= 50, twice .. " twice: more than the batch in hand")
    assert.are.equal(0, c:stats().pending)
    c:close()
    os.remove(out1); os.remove(out2); os.remove(child.script)
  end)

  it("Redis restarted mid-run: 503s in the gap, the emulator's retries get through, nothing lost or twice", function()
    local emu = H.start { config = { delivery = { timeout_ms = 1000, retry_schedule = { 0.5, 1, 2 } } } }
    local ngx_srv, child
    local out = os.tmpname()
    os.remove(out)
    local ok, perr = pcall(function()
      local cfg = emu.config
      local ec = H.client(emu)
      ngx_srv = assert(sink_nginx(cfg.app.consumer_secret, srv.port))
      local res = ec:call("POST", "/1.1/account_activity/webhooks.json",
        { auth = "owner", query = { url = ngx_srv.url .. "/webhook" } })
      assert.are.equal(200, res.status, res.body)
      local wh = res.json
      assert.are.equal(204, ec:call("POST", "/1.1/account_activity/webhooks/" .. wh.id .. "/subscriptions/all.json",
        { auth = cfg.users[1] }).status)
      child = child_consumer { out = out, port = srv.port, name = "steady", batch = 16 }

      local N = 400
      local function deliver(count)
        local q = emu:control("POST", "/_emulator/deliver", { user_id = cfg.users[1].user_id, type = "favorite",
          count = count })
        assert.are.equal(count, q.queued)
      end
      -- Half before Redis goes away, half while it is away: the sink may be
      -- fast enough to store all 400 before a restart is even noticed.
      deliver(N / 2)
      assert(wait_for(function() return srv:cmd("XLEN", "aa:events") >= 60 end, 20))
      srv:kill("TERM")
      deliver(N / 2)
      assert(wait_for(function()
        for _, a in ipairs((emu:control("GET", "/_emulator/deliveries")).entries) do
          if a.status == 503 then return true end
        end
        return false
      end, 20), "no delivery reached nginx while Redis was down")
      assert(srv:restart())

      -- every delivery ends: ok, or given up after the schedule
      local final
      assert(wait_for(function()
        final = {}
        local n = 0
        for _, a in ipairs((emu:control("GET", "/_emulator/deliveries")).entries) do
          local f = final[a.body_md5] or { attempts = 0 }
          f.attempts = math.max(f.attempts, a.attempt)
          f.ok = f.ok or a.ok
          f.gave_up = f.gave_up or a.gave_up
          f.saw503 = f.saw503 or a.status == 503
          if not final[a.body_md5] then n = n + 1 end
          final[a.body_md5] = f
        end
        if n < N then return false end
        for _, f in pairs(final) do if not (f.ok or f.gave_up) then return false end end
        return true
      end, 40), "the emulator's deliveries did not end")
      local retried, retried_ok, gave_up, n503 = 0, 0, 0, 0
      for _, f in pairs(final) do
        if f.attempts > 1 then retried = retried + 1 end
        if f.attempts > 1 and f.ok then retried_ok = retried_ok + 1 end
        if not f.ok then gave_up = gave_up + 1 end
        if f.saw503 then n503 = n503 + 1 end
      end
      assert(wait_for(function() return #read_lines(out) >= srv:cmd("XLEN", "aa:events") end, 30))
      kill(child.pid, "TERM")
      assert(wait_for(function() return file_exists(out .. ".done") end, 10), "SIGTERM did not stop the consumer")
      local counts = tally(read_lines(out))
      local entries = srv:cmd("XRANGE", "aa:events", "-", "+")
      local bodies, lost, twice = {}, 0, 0
      for _, e in ipairs(entries) do
        bodies[e[2][2]] = true
        if not counts[e[1]] then lost = lost + 1 elseif counts[e[1]] > 1 then twice = twice + 1 end
      end
      local distinct_bodies = 0
      for _ in pairs(bodies) do distinct_bodies = distinct_bodies + 1 end
      local stats = cjson.decode(read_lines(out .. ".done")[1])
      print(("\n  [redis restart] %d deliveries: %d saw a 503, %d retried, %d retried and got through, %d given up; "
        .. "%d entries (%d distinct bodies), %d lost, %d dispatched twice (their ack was cut by the restart); "
        .. "consumer stopped by SIGTERM, pending %s")
        :format(N, n503, retried, retried_ok, gave_up, #entries, distinct_bodies, N - distinct_bodies, twice,
          tostring(stats.pending)))
      assert.is_true(n503 > 0, "no delivery met the gap")
      assert.are.equal(0, gave_up)
      assert.are.equal(retried, retried_ok)
      assert.are.equal(N, #entries)
      assert.are.equal(N, distinct_bodies)
      assert.are.equal(0, lost)
      -- at most the batch in hand when Redis went away: an acked entry never comes back
      assert.is_true(twice <= 16, twice .. " dispatched twice")
      assert.are.equal(0, stats.pending)
    end)
    if child and alive(child.pid) then kill(child.pid, "KILL") end
    if ngx_srv then ngx_srv:stop() end
    emu:stop()
    os.remove(out)
    assert(ok, perr)
  end)
end)
