-- serve{ sink = ... } inside a real nginx with a real redis-server: a
-- signed delivery is in the stream before the 200; repeats, forgeries and an
-- unreachable or slow Redis never give a 200 for something not persisted.
local nginx_process = require "account_activity.nginx_process"
local core = require "account_activity.core"
local webhook = require "account_activity.webhook"
local redis_helper = require "redis_helper"
local cjson = require "cjson"

local SECRET = "sink-spec-consumer-secret-0123456789abcdef"
local TOKEN = "ZDRiNDY0ZDgtNzdkMi00NWEzLWI1ZjQtNjk2N2NmMzM5YzBh"

local function sign(body)
  return "sha256=" .. core.base64_encode(core.hmac_sha256(SECRET, body))
end

-- XRANGE's entries -> { id, fields = {name = value} }
local function entries(srv, stream)
  local out = {}
  for _, e in ipairs(srv:cmd("XRANGE", stream, "-", "+")) do
    local f = {}
    for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
    out[#out + 1] = { id = e[1], fields = f }
  end
  return out
end

describe("serve with a Redis sink", function()
  local srv, server, session

  setup(function()
    local err
    srv, err = redis_helper.start()
    assert(srv, err)
    server, err = nginx_process.start { workers = 2, http = function(ports)
      return ([[
  init_by_lua_block {
    package.loaded.sink_spec_opts = { consumer_secret = %q,
      sink = { redis = { host = "127.0.0.1", port = %d, timeout_ms = 300 },
               stream = "aa:events", maxlen = 1000, dedupe_ttl = 60 } }
  }
  server {
    listen 127.0.0.1:%d;
    location = /webhook {
      content_by_lua_block { require("account_activity.nginx").serve(package.loaded.sink_spec_opts) }
    }
  }
]]):format(SECRET, srv.port, ports[1])
    end }
    assert(server, err)
    session = core.session { timeout = 10 }
  end)

  teardown(function()
    if session then session:close() end
    if server then server:stop() end
    if srv then srv:stop() end
  end)

  before_each(function()
    if srv:alive() then srv:cmd("FLUSHALL") end
  end)

  local function post(body, sig)
    local res, err = session:request { method = "POST", url = server.url .. "/webhook",
      headers = { ["Content-Type"] = "application/json", ["X-Twitter-Webhooks-Signature"] = sig or sign(body) },
      body = body }
    assert(res, err and err.message)
    return res
  end

  it("persists a signed delivery, raw, before answering 200", function()
    local body = '{"for_user_id":"2244994945","favorite_events":[{"id":"e1"}]}'
    assert.are.equal(200, post(body).status)
    local list = entries(srv, "aa:events")
    assert.are.equal(1, #list)
    local f = list[1].fields
    assert.are.equal(body, f.body)
    assert.are.equal(sign(body), f.sig)
    assert.are.equal("aaa", f.api)
    assert.is_true(math.abs(tonumber(f.received_at) - os.time()) < 60)
  end)

  it("stores a repeat once (across both workers), refuses a forgery", function()
    local body = '{"for_user_id":"1","favorite_events":[{"id":"rep"}]}'
    for _ = 1, 10 do assert.are.equal(200, post(body).status) end
    assert.are.equal(401, post(body, sign(body .. "x")).status)
    assert.are.equal(401, post(body:gsub("rep", "evil"), sign(body)).status)
    assert.are.equal(1, #entries(srv, "aa:events"))
    assert.are.equal(1, srv:cmd("EXISTS", "aa:events:seen:" .. sign(body)))
    assert.is_true(srv:cmd("TTL", "aa:events:seen:" .. sign(body)) <= 60)
  end)

  it("tags XA API deliveries and does not decode on the way in", function()
    local xaa = '{"data":{"event_type":"profile.update.bio","payload":{}}}'
    assert.are.equal(200, post(xaa).status)
    assert.are.equal(200, post("not json at all").status)
    local list = entries(srv, "aa:events")
    assert.are.equal("xaa", list[1].fields.api)
    assert.are.equal("not json at all", list[2].fields.body)
  end)

  it("still answers the CRC", function()
    local res = assert(session:request { method = "GET", url = server.url .. "/webhook?crc_token=" .. TOKEN })
    assert.are.equal(200, res.status)
    assert.are.equal(webhook.crc_response(SECRET, TOKEN), cjson.decode(res.body).response_token)
  end)

  it("sends the deliveries a worker has in flight over one connection, each stored before its 200", function()
    -- Paused writes make 64 concurrent deliveries wait for Redis together:
    -- with a connection per request that is 32 or more connections.
    local pauser = assert(srv:connect())
    assert(pauser:command { "CLIENT", "PAUSE", 150, "WRITE" })
    local reqs = {}
    for i = 1, 64 do
      local body = '{"for_user_id":"1","favorite_events":[{"id":"burst' .. i .. '"}]}'
      reqs[i] = { method = "POST", url = server.url .. "/webhook", body = body,
        headers = { ["Content-Type"] = "application/json", ["X-Twitter-Webhooks-Signature"] = sign(body) } }
    end
    local results = session:perform(reqs, { concurrency = 64 })
    for i, r in ipairs(results) do assert.are.equal(200, r.res and r.res.status, "delivery " .. i) end
    assert.are.equal(64, #entries(srv, "aa:events"))
    local nginx_conns = 0
    for line in pauser:command({ "CLIENT", "LIST" }):gmatch("[^\n]+") do
      if not line:find("cmd=client", 1, true) then nginx_conns = nginx_conns + 1 end
    end
    pauser:close()
    assert.is_true(nginx_conns <= 2, nginx_conns .. " connections from 2 workers")
  end)

  it("answers 503 when Redis is slower than timeout_ms; X's retry is then stored once", function()
    local body = '{"for_user_id":"1","favorite_events":[{"id":"slow"}]}'
    local pauser = assert(srv:connect())
    assert(pauser:command { "CLIENT", "PAUSE", 1500, "ALL" })
    local t0 = core.now()
    local res = post(body)
    local took = core.now() - t0
    pauser:close()
    assert.are.equal(503, res.status)
    assert.is_true(took < 1.2, "took " .. took .. " s")
    core.sleep(math.max(0, 1.6 - took)) -- the pause ends
    -- Whether Redis ran the timed-out script or not, the retry finds one entry.
    assert.are.equal(200, post(body).status)
    assert.are.equal(200, post(body).status)
    assert.are.equal(1, #entries(srv, "aa:events"))
  end)

  it("answers 503 while Redis is down, logging at most once a second; 200 once it is back", function()
    srv:kill("TERM")
    local before = select(2, server:error_log():gsub("not persisted", ""))
    local t0 = core.now()
    local n503 = 0
    for i = 1, 40 do
      if post('{"for_user_id":"1","favorite_events":[{"id":"down' .. i .. '"}]}').status == 503 then
        n503 = n503 + 1
      end
    end
    local secs = core.now() - t0
    assert.are.equal(40, n503)
    local lines = select(2, server:error_log():gsub("not persisted", "")) - before
    -- one line per worker per second at most
    assert.is_true(lines >= 1 and lines <= 2 * (math.ceil(secs) + 1), lines .. " lines in " .. secs .. " s")
    assert(srv:restart())
    assert.are.equal(200, post('{"for_user_id":"1","favorite_events":[{"id":"back"}]}').status)
    assert.are.equal(1, #entries(srv, "aa:events"))
  end)

  it("still stores and answers 200 when nginx has no timer to spare for the shared connection", function()
    -- One running timer allowed, and a user's timer holds it: nginx drops the
    -- shared connection's timer when it fires (and only logs it).
    local busy, err = nginx_process.start { workers = 1, http = function(ports)
      return ([[
  lua_max_running_timers 1;
  init_by_lua_block {
    package.loaded.busy_opts = { consumer_secret = %q,
      sink = { redis = { host = "127.0.0.1", port = %d, timeout_ms = 1000 }, stream = "aa:busy" } }
  }
  init_worker_by_lua_block {
    ngx.timer.at(0, function() while not ngx.worker.exiting() do ngx.sleep(0.05) end end)
  }
  server {
    listen 127.0.0.1:%d;
    location = /webhook {
      content_by_lua_block { require("account_activity.nginx").serve(package.loaded.busy_opts) }
    }
  }
]]):format(SECRET, srv.port, ports[1])
    end }
    assert(busy, err)
    local ok, perr = pcall(function()
      core.sleep(0.1) -- the user's timer is running
      for i = 1, 3 do
        local body = '{"for_user_id":"1","favorite_events":[{"id":"busy' .. i .. '"}]}'
        local t0 = core.now()
        local res = assert(session:request { method = "POST", url = busy.url .. "/webhook", body = body,
          headers = { ["Content-Type"] = "application/json", ["X-Twitter-Webhooks-Signature"] = sign(body) } })
        assert.are.equal(200, res.status, "delivery " .. i)
        assert.is_true(core.now() - t0 < 0.9, "delivery " .. i .. " waited for a timer that never ran")
      end
      assert.are.equal(3, srv:cmd("XLEN", "aa:busy"))
    end)
    busy:stop()
    assert(ok, perr)
  end)

  it("lets a graceful quit through at once, though the shared connection's timer is running", function()
    for i = 1, 4 do -- both workers' timers running
      assert.are.equal(200, post('{"for_user_id":"1","favorite_events":[{"id":"quit' .. i .. '"}]}').status)
    end
    local function exited()
      local f = io.open("/proc/" .. server.pid .. "/status")
      if not f then return true end
      local st = f:read("a")
      f:close()
      return st:find("State:%s*Z") ~= nil -- our child: a zombie once it has exited
    end
    local t0 = core.now()
    core.kill(server.pid, "QUIT")
    while not exited() and core.now() - t0 < 10 do core.sleep(0.02) end
    local took = core.now() - t0
    assert.is_true(exited(), "nginx still running after a QUIT")
    -- the timer looks at ngx.worker.exiting() every 0.2 s (it waited 1 s: quit took 1.02 s)
    assert.is_true(took < 0.8, ("quit took %.2f s"):format(took))
  end)
end)
