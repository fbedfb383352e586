-- Soak (#soak): many requests through one client against the emulator and
-- many signed events through the nginx endpoint; the resident memory of the
-- Lua process and of the nginx worker must not grow by 5% after warm-up.
-- `make test` runs a short soak (AA_SOAK_N, default 4000); `make soak` runs
-- 100,000 of each.
local aa = require "account_activity"
local core = require "account_activity.core"
local emulator = require "account_activity.emulator"
local nginx_process = require "account_activity.nginx_process"

local N = tonumber(os.getenv("AA_SOAK_N") or "4000")
-- Under valgrind or ASan (spec/run sets AA_SLOW) freed memory is held in
-- quarantine, so RSS says nothing about leaks there (those tools check that);
-- the loops still run as a stress test.
local CHECK_RSS = not os.getenv("AA_SLOW")
local WARMUP = math.max(1000, math.floor(N / 10))

local function rss_kb(pid)
  local f = io.open("/proc/" .. (pid or "self") .. "/status")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local function worker_pid(master)
  local p = io.popen("pgrep -P " .. master)
  local pid = p:read("*l")
  p:close()
  return tonumber(pid)
end

-- A webhook endpoint in nginx running serve() with the given secret.
local function start_endpoint(secret)
  return assert(nginx_process.start { http = function(ports)
    return ([[
  init_by_lua_block {
    SOAK_OPTS = { consumer_secret = %q, on_event = function(event) SOAK_SEEN = (SOAK_SEEN or 0) + 1 end }
  }
  server {
    listen 127.0.0.1:%d;
    location /webhook { content_by_lua_block { require("account_activity.nginx").serve(SOAK_OPTS) } }
    location /seen { content_by_lua_block { ngx.print(SOAK_SEEN or 0) } }
  }]]):format(secret, ports[1])
  end })
end

local function settle()
  collectgarbage()
  collectgarbage()
end

describe("#soak", function()
  it(("keeps the client's memory flat over %d requests"):format(N), function()
    local emu = assert(emulator.start {})
    finally(function() emu:stop() end)
    local app, user = emu.config.app, emu.config.users[1]
    local client = aa.new { consumer_key = app.consumer_key, consumer_secret = app.consumer_secret,
      access_token = app.owner.access_token, access_token_secret = app.owner.access_token_secret,
      base_url = emu.url }
    local endpoint = start_endpoint(app.consumer_secret)
    finally(function() endpoint:stop() end)
    local hook = assert(client:register_webhook(endpoint.url .. "/webhook"))
    assert(client:subscribe(hook.id, user))
    local calls = {
      function() return client:webhooks() end,
      function() return client:is_subscribed(hook.id, user) end,
      function() return client:subscription_count() end,
      function() return client:subscriptions(hook.id) end,
    }
    local function run(from, to)
      for i = from, to do
        local v, err = calls[i % #calls + 1]()
        assert(v ~= nil, tostring(err))
      end
    end
    run(1, WARMUP)
    settle()
    local before = rss_kb()
    run(WARMUP + 1, N)
    settle()
    local after = rss_kb()
    io.write(("\n[soak] Lua process RSS %d kB -> %d kB over %d client requests\n"):format(before, after, N - WARMUP))
    assert.is_true(not CHECK_RSS or after <= before * 1.05, ("Lua RSS grew from %d kB to %d kB"):format(before, after))
  end)

  it(("keeps the nginx worker's memory flat over %d signed events"):format(N), function()
    local secret = "soak-consumer-secret"
    local server = start_endpoint(secret)
    finally(function() server:stop() end)
    local worker = assert(worker_pid(server.pid))
    local s = core.session()
    local function post(i)
      local body = ('{"for_user_id":"2244994945","favorite_events":[{"id":"%032x","created_at":"Mon Mar 26 16:33:26 +0000 2018","favorited_status":{"id_str":"%d","text":"%s"},"user":{"id_str":"2244994945"}}]}')
        :format(i, 1000000 + i, ("x"):rep(i % 300))
      local res = s:request { method = "POST", url = server.url .. "/webhook", body = body, headers = {
        ["Content-Type"] = "application/json",
        ["X-Twitter-Webhooks-Signature"] = aa.crc_response(secret, body) } }
      assert(res and res.status == 200)
    end
    for i = 1, WARMUP do post(i) end
    local before = rss_kb(worker)
    for i = WARMUP + 1, N do post(i) end
    local after = rss_kb(worker)
    io.write(("\n[soak] nginx worker RSS %d kB -> %d kB over %d signed events\n"):format(before, after, N - WARMUP))
    assert.are.equal(tostring(N), s:request { method = "GET", url = server.url .. "/seen" }.body)
    assert.is_true(not CHECK_RSS or after <= before * 1.05, ("nginx worker RSS grew from %d kB to %d kB"):format(before, after))
  end)
end)
