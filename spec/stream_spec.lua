-- client:stream (stream.lua): NDJSON parsing, keep-alives, reconnects with
-- backoff and jitter, the connect-rate limit, one stream per client, dedupe
-- after backfill; then for real over the C core and over cosockets against
-- a local nginx serving chunked NDJSON that cuts a line mid-way.
local fake = require "client_fake"
local cjson = require "cjson"
local stream_mod = require "account_activity.stream"

local BEARER = "AAAA-BEARER-stream"

local function envelope(uuid, et, user_id, payload)
  return cjson.encode { data = { event_uuid = uuid, event_type = et or "post.create",
    filter = { user_id = user_id or "2244994945" }, tag = "t", payload = payload or { id = uuid, text = "hi" } } }
end

-- An opener replaying a script: each entry is a connection ({status, lines,
-- headers, body, after = "closed"|"network"|"timeout"}) or a failure {err = {...}}.
local function opener(script)
  local o = { requests = {}, n = 0 }
  function o.open(req)
    o.n = o.n + 1
    o.requests[#o.requests + 1] = req
    local c = script[o.n] or script.default
    if type(c) == "function" then c = c(o.n, req) end
    if c == nil then error("no connection scripted for connect " .. o.n) end
    if c.err then return nil, c.err end
    local i = 0
    local conn = { closed = false }
    function conn.read_line()
      i = i + 1
      local l = c.lines and c.lines[i]
      if l then return l end
      local kind = c.after or "closed"
      return nil, { kind = kind, message = kind }
    end
    function conn.read_all() return c.body or "" end
    function conn.close() conn.closed = true end
    return conn, { status = c.status or 200, headers = c.headers or {} }
  end
  return o
end

local function make(script, sopts, copts)
  local o = { api = "v2", bearer_token = BEARER, retries = 0 }
  for k, v in pairs(copts or {}) do o[k] = v end
  local c, _, sleeps, clock = fake.client(o, {})
  local op = opener(script)
  local s = { open = op.open, random = function() return 0.5 end }
  for k, v in pairs(sopts or {}) do s[k] = v end
  return c, op, s, sleeps, clock
end

describe("stream parsing", function()
  it("yields parsed events, skipping keep-alives, {} and in-band errors", function()
    local errs = {}
    local c, op, s = make({ { lines = {
      "", "\r", "   ", "{}",
      envelope("101", "post.create"),
      cjson.encode { errors = { { title = "operational-disconnect", detail = "Force close" } } },
      "{not json",
      envelope("102", "like.create"),
      cjson.encode { data = { { event_uuid = "103", event_type = "dm.sent", filter = { user_id = "1" }, payload = {} },
                              { event_uuid = "104", event_type = "dm.read", filter = { user_id = "1" }, payload = {} } } },
    }, after = "closed" }, default = { err = { kind = "network", message = "refused" } } },
      { on_error = function(e) errs[#errs + 1] = e end, max_reconnects = 0 })
    local st = assert(c:stream(s))
    local got = {}
    for ev in st:events() do got[#got + 1] = ev end
    assert.are.equal(4, #got)
    assert.are.same({ "post.create", "like.create", "dm.sent", "dm.read" },
      { got[1].type, got[2].type, got[3].type, got[4].type })
    assert.are.equal("101", got[1].id)
    assert.are.equal("xaa", got[1].api)
    assert.are.equal("2244994945", got[1].for_user_id)
    assert.are.equal(4, st.keepalives)
    assert.are.equal(1, st.bad_lines)
    assert.are.equal(1, #st.stream_errors)
    assert.are.equal(2, #errs)
    assert.is_true(st.closed)
    assert.matches("gave up after 0 reconnects", tostring(st.err))
    assert.are.equal(1, #op.requests)
  end)

  it("sends the bearer and the window parameters", function()
    local c, op, s = make { { lines = {} } }
    s.backfill_minutes = 3
    s.end_time = "2026-07-24T21:10:00Z"
    local st = assert(c:stream(s))
    st:close()
    local req = op.requests[1]
    assert.are.equal("GET", req.method)
    assert.are.equal("Bearer " .. BEARER, req.headers.Authorization)
    assert.are.equal("https://api.twitter.com/2/activity/stream?backfill_minutes=3&end_time=2026-07-24T21%3A10%3A00Z",
      req.url)
    c, op, s = make { { lines = {} } }
    s.start_time = 1785000000
    st = assert(c:stream(s))
    st:close()
    assert.matches("start_time=2026%-07%-25T", op.requests[1].url)
  end)

  it("checks its options", function()
    local c, _, s = make {}
    s.backfill_minutes = 6
    assert.has_error(function() c:stream(s) end)
    assert.has_error(function() c:stream { start_time = "yesterday" } end)
    assert.has_error(function() c:stream { backfill_minutes = 1.5 } end)
    assert.has_error(function() c:stream { sleep = 3 } end)
    assert.has_error(function() c:stream(5) end)
  end)

  it("a first connect that fails returns the error", function()
    local c, _, s = make { { status = 403, body = cjson.encode { title = "Forbidden", detail = "user tokens are not allowed" } } }
    local st, err = c:stream(s)
    assert.is_nil(st)
    assert.are.equal(403, err.status)
    assert.are.equal("forbidden", err.kind)
    assert.is_nil(tostring(err):find(BEARER, 1, true))
    -- and the client may try again
    c, _, s = make { { err = { kind = "network", message = "connection refused" } } }
    st, err = c:stream(s)
    assert.is_nil(st)
    assert.are.equal("network", err.kind)
  end)
end)

describe("stream reconnects", function()
  it("backs off 1, 2, 4 ... 64 s with jitter, honours a 429, resets after a healthy connection", function()
    local script = {
      { lines = { envelope("1") }, after = "network" },
      { err = { kind = "network", message = "refused" } },
      { err = { kind = "timeout", message = "connect timeout" } },
      { status = 503, body = "{}" },
      { status = 429, headers = { ["x-rate-limit-reset"] = "1700000500" }, body = "{}" },
    }
    for i = 6, 12 do script[i] = { err = { kind = "network", message = "refused" } } end
    script[13] = { lines = { envelope("2") }, after = "closed" }
    script[14] = { lines = { envelope("3") }, after = "closed" }
    script.default = { status = 401, body = cjson.encode { title = "Unauthorized" } }
    local c, op, s, sleeps, clock = make(script)
    local disconnects = 0
    s.on_disconnect = function() disconnects = disconnects + 1 end
    local st = assert(c:stream(s))
    assert.are.equal("1", st:next().id)
    assert.are.equal("2", st:next().id)
    assert.are.equal("3", st:next().id)
    local ev, err = st:next()
    assert.is_nil(ev)
    assert.are.equal("auth", err.kind)
    assert.is_true(st.closed)
    -- waits: 1, 2, 4, 8 (then the 429's reset), 16 ... 64, 64 (capped), then reset to 1 after data
    local j = 1.125 -- random() = 0.5 -> 12.5 % jitter
    local expect = { 1 * j, 2 * j, 4 * j, 8 * j }
    for i, e in ipairs(expect) do assert.is_near(e, sleeps[i], 1e-9) end
    assert.is_true(sleeps[5] >= 16 * j)
    assert.is_true(sleeps[5] >= 1700000500 - (1700000000 + 15.5) - 1) -- waited for the reset
    assert.is_near(32 * j, sleeps[6], 1e-9)
    assert.is_near(64 * j, sleeps[7], 1e-9)
    assert.is_near(64 * j, sleeps[8], 1e-9)
    assert.is_near(64 * j, sleeps[12], 1e-9)
    assert.is_near(1 * j, sleeps[13], 1e-9) -- reset by connection 13's line
    assert.are.equal(15, #op.requests)
    assert.are.equal(2, st.reconnects)
    assert.are.equal(3, disconnects)
    assert.is_true(clock.now > 1700000000)
  end)

  it("honours a 429 whose rate-limit headers came twice (joined by a proxy)", function()
    local c, op, s, sleeps = make {
      { lines = { envelope("1") }, after = "network" },
      { status = 429, headers = { ["x-rate-limit-reset"] = "1700000100, 1700000500" }, body = "{}" },
      { lines = { envelope("2") }, after = "closed" },
      default = { status = 401, body = "{}" },
    }
    local st = assert(c:stream(s))
    assert.are.equal("1", st:next().id)
    assert.are.equal("2", st:next().id)
    assert.are.equal(3, #op.requests)
    assert.is_true(sleeps[2] >= 1700000500 - 1700000000 - 5, "waited only " .. tostring(sleeps[2]))
    st:close()
  end)

  it("jitter stays within 0-25 %", function()
    for n = 1, 10 do
      for _, r in ipairs { 0, 0.3, 0.999 } do
        local d = stream_mod.backoff(n, function() return r end)
        local base = math.min(64, 2 ^ (n - 1))
        assert.is_true(d >= base and d <= base * 1.25)
      end
    end
  end)

  it("asks for a backfill covering the gap and drops what it already returned", function()
    local script = {
      { lines = { envelope("A") }, after = "network" },
      { err = { kind = "network", message = "refused" } },
      { lines = { envelope("A"), envelope("B") }, after = "timeout" },
    }
    local c, op, s = make(script)
    local st = assert(c:stream(s))
    assert.are.equal("A", st:next().id)
    assert.are.equal("B", st:next().id)
    assert.are.equal(1, st.duplicates)
    assert.is_nil(op.requests[1].url:find("backfill", 1, true))
    assert.matches("backfill_minutes=1$", op.requests[3].url)
    st:close()
  end)

  it("records gaps longer than X's 5-minute backfill", function()
    local script = { { lines = { envelope("A") }, after = "network" } }
    for i = 2, 11 do script[i] = { err = { kind = "network", message = "down" } } end
    script[12] = { lines = { envelope("B") } , after = "timeout" }
    local c, op, s = make(script)
    local st = assert(c:stream(s))
    st:next()
    assert.are.equal("B", st:next().id)
    assert.matches("backfill_minutes=5$", op.requests[12].url)
    assert.are.equal(1, #st.gaps)
    assert.is_true(st.gaps[1].seconds > 300)
    st:close()
  end)

  it("a silent connection (no keep-alive for read_timeout) is replaced", function()
    local c, op, s = make { { lines = {}, after = "timeout" }, { lines = { envelope("Z") }, after = "timeout" } }
    s.read_timeout = 45
    local st = assert(c:stream(s))
    assert.are.equal("Z", st:next().id)
    assert.are.equal(2, #op.requests)
    assert.are.equal("timeout", st.last_error.kind)
    st:close()
  end)

  it("next(timeout) gives up with kind timeout and stays open", function()
    local c, _, s = make { { lines = { "" }, after = "timeout" } }
    local st = assert(c:stream(s))
    local ev, err = st:next(2)
    assert.is_nil(ev)
    assert.are.equal("timeout", err.kind)
    assert.is_false(st.closed)
    st:close()
    assert.is_nil(st:next())
  end)

  it("next(timeout) ends on time while keep-alives keep arriving", function()
    -- A live connection: a keep-alive every 0.2 s of real time, and an event
    -- only after 5 s. Counting just the reads that time out never ends here.
    local core = require "account_activity.core"
    local reads = 0
    local c, _, s = make { { lines = {} } }
    s.open = function()
      local conn = {}
      function conn.read_line(_, t)
        reads = reads + 1
        core.sleep(math.min(0.2, t or 0.2))
        if reads == 25 then return envelope("late") end
        return ""
      end
      function conn.read_all() return "" end
      function conn.close() end
      return conn, { status = 200, headers = {} }
    end
    local st = assert(c:stream(s))
    local t0 = core.now()
    local ev, err = st:next(1)
    local took = core.now() - t0
    assert.is_nil(ev)
    assert.are.equal("timeout", err and err.kind)
    assert.is_true(took >= 0.9 and took < 1.5, "next(1) took " .. took .. " s")
    assert.is_true(st.keepalives >= 3)
    assert.is_false(st.closed)
    st:close()
  end)

  it("next(timeout) gives up during a long reconnect backoff and keeps the rest of the wait", function()
    local core = require "account_activity.core"
    local slept = {}
    local c, op, s = make { { lines = { envelope("A") }, after = "network" }, { lines = { envelope("B") } } }
    s.sleep = function(t) slept[#slept + 1] = t; core.sleep(math.min(t, 0.05)) end
    s.random = function() return 0 end
    local st = assert(c:stream(s))
    assert.are.equal("A", st:next(1).id)
    -- the first reconnect waits 1 s; a 0.3 s poll returns before it is spent
    local ev, err = st:next(0.3)
    assert.is_nil(ev)
    assert.are.equal("timeout", err.kind)
    assert.are.equal(1, #op.requests)
    assert.is_true(slept[1] > 0.2 and slept[1] <= 0.3)
    -- the next call waits out what is left of that 1 s, then reconnects
    assert.are.equal("B", st:next(5).id)
    assert.are.equal(2, #op.requests)
    assert.is_true(math.abs(slept[1] + slept[2] - 1) < 0.05)
    st:close()
  end)

  it("never connects more than 450 times in 15 minutes", function()
    local times = {}
    local clock
    local c, _, s, _, clk = make { default = function()
      times[#times + 1] = clock.now
      return { lines = { "" }, after = "closed" }
    end }
    clock = clk
    s.max_reconnects = 470
    local st = assert(c:stream(s))
    local ev, err = st:next()
    assert.is_nil(ev)
    assert.matches("gave up after 470 reconnects", tostring(err))
    assert.are.equal(471, #times)
    for i = 1, #times - 450 do
      assert.is_true(times[i + 450] - times[i] >= 900, "connects " .. i .. " and " .. (i + 450))
    end
  end)

  it("ends cleanly once end_time has passed", function()
    local c, _, s, _, clock = make { { lines = { envelope("E") }, after = "closed" } }
    s.end_time = clock.now + 0.5
    local st = assert(c:stream(s))
    assert.are.equal("E", st:next().id)
    local ev, err = st:next()
    assert.is_nil(ev)
    assert.is_nil(err)
    assert.is_true(st.closed)
  end)
end)

describe("one stream per client", function()
  it("refuses a second open stream until the first is closed", function()
    local c, _, s = make { default = { lines = {}, after = "timeout" } }
    local st = assert(c:stream(s))
    local st2, err = c:stream(s)
    assert.is_nil(st2)
    assert.are.equal("conflict", err.kind)
    assert.matches("2 connections", tostring(err))
    st:close()
    st2 = assert(c:stream(s))
    st2:close()
    assert.matches("closed", tostring(st2))
  end)
end)

describe("stream over a function transport", function()
  it("reads the whole answer as lines", function()
    local body = table.concat({ "", envelope("F1"), "", envelope("F2"), '{"data":{"event_type":"post.cre' }, "\r\n")
    local c = fake.client({ api = "v2", bearer_token = BEARER }, { fake.res(200, body) },
      fake.res(401, { title = "Unauthorized" }))
    local st = assert(c:stream { random = function() return 0 end })
    local ids = {}
    for ev in st:events() do ids[#ids + 1] = ev.id end
    assert.are.same({ "F1", "F2" }, ids)
    assert.are.equal("auth", st.err.kind)
  end)
end)

-- A local nginx: /feed serves chunked NDJSON with keep-alive blank lines;
-- its first answer cuts a line mid-way and drops the connection, the second
-- ends cleanly. /consume runs client:stream inside nginx (cosockets).
describe("stream against nginx", function()
  local nginx_process = require "account_activity.nginx_process"
  local server

  setup(function()
    local err
    server, err = nginx_process.start {
      ports = 1, workers = 1,
      http = function(ports)
        return ([[
lua_shared_dict feed 1m;
server {
  listen 127.0.0.1:%d;
  location = /2/activity/stream {
    content_by_lua_block {
      local d = ngx.shared.feed
      local n = d:incr("conn", 1, 0)
      d:set("args:" .. n, ngx.var.args or "")
      d:set("auth:" .. n, ngx.var.http_authorization or "")
      local cjson = require "cjson"
      local function ev(id)
        return cjson.encode { data = { event_uuid = id, event_type = "follow.follow",
          filter = { user_id = "2244994945" }, payload = { source = { data = { id = "3" } },
          target = { data = { id = "2244994945" } } } } }
      end
      ngx.header["Content-Type"] = "application/json"
      ngx.send_headers()
      ngx.flush(true)
      local base = (n - 1) * 10
      ngx.print("\r\n") ngx.flush(true)
      ngx.sleep(0.02)
      ngx.print(ev(tostring(base + 1)) .. "\r\n") ngx.flush(true)
      ngx.sleep(0.02)
      ngx.print("\r\n" .. ev(tostring(base + 2)) .. "\r\n") ngx.flush(true)
      if n %% 2 == 1 then
        local line = ev(tostring(base + 3))
        ngx.print(line:sub(1, 20)) ngx.flush(true)
        ngx.sleep(0.02)
        return ngx.exit(ngx.ERROR)
      end
      ngx.print(ev(tostring(base + 3)) .. "\n") ngx.flush(true)
    }
  }
  location = /args {
    content_by_lua_block {
      local d = ngx.shared.feed
      ngx.print(d:get("args:" .. ngx.var.arg_n) or "", "|", d:get("auth:" .. ngx.var.arg_n) or "")
    }
  }
  location = /consume {
    content_by_lua_block {
      local aa = require "account_activity"
      local c = aa.new { consumer_key = "ck", consumer_secret = "cs", bearer_token = "ngx-bearer",
        api = "v2", base_url = "http://127.0.0.1:%d" }
      local st, err = c:stream { sleep = function() end, max_reconnects = 1 }
      if not st then ngx.say("ERR ", tostring(err)) return end
      local ids = {}
      for ev in st:events() do ids[#ids + 1] = ev.type .. ":" .. ev.id end
      ngx.say(table.concat(ids, ","), "|", st.reconnects, "|", st.keepalives, "|", tostring(st.err))
    }
  }
}]]):format(ports[1], ports[1])
      end,
    }
    assert(server, err)
  end)

  teardown(function()
    if server then server:stop() end
  end)

  it("reads through the C core: keep-alives skipped, a cut line dropped, reconnected with backfill", function()
    local aa = require "account_activity"
    local c = aa.new { consumer_key = "ck", consumer_secret = "cs", bearer_token = BEARER, api = "v2",
      base_url = server.url }
    local sleeps = {}
    local st = assert(c:stream { sleep = function(s) sleeps[#sleeps + 1] = s end, read_timeout = 5 })
    local ids = {}
    for _ = 1, 4 do
      local ev = assert(st:next(5))
      ids[#ids + 1] = ev.id
      assert.are.equal("follow.follow", ev.type)
    end
    assert.are.same({ "1", "2", "11", "12" }, ids)
    assert.are.equal(1, st.reconnects)
    assert.is_true(st.keepalives >= 2)
    assert.are.equal(1, #sleeps)
    assert.is_true(sleeps[1] >= 1 and sleeps[1] <= 1.25)
    assert.are.equal("network", st.last_error.kind)
    st:close()
    local check = require("account_activity.core").session {}
    local r = assert(check:request { method = "GET", url = server.url .. "/args?n=1" })
    assert.are.equal("|Bearer " .. BEARER, r.body)
    r = assert(check:request { method = "GET", url = server.url .. "/args?n=2" })
    assert.are.equal("backfill_minutes=1|Bearer " .. BEARER, r.body)
  end)

  it("reads over cosockets inside nginx", function()
    local s = require("account_activity.core").session { timeout = 20 }
    local r = assert(s:request { method = "GET", url = server.url .. "/consume" })
    assert.are.equal(200, r.status)
    local ids, reconnects, keepalives, err = r.body:match("^([^|]*)|(%d+)|(%d+)|(.*)\n$")
    assert.is_not_nil(ids, r.body)
    -- connections 3 (cut) and 4 (clean end) of this nginx
    assert.are.equal("follow.follow:21,follow.follow:22,follow.follow:31,follow.follow:32,follow.follow:33", ids)
    assert.are.equal("1", reconnects)
    assert.is_true(tonumber(keepalives) >= 4)
    assert.matches("gave up after 1 reconnects", err)
  end)
end)
