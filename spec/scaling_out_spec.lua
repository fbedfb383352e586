-- README "Scaling out" runs as written: its consumer block (which is
-- examples/consumer.lua) against a real Redis, fed by nginx running
-- examples/nginx/durable_app.lua.
local core = require "account_activity.core"
local nginx_process = require "account_activity.nginx_process"
local redis_helper = require "redis_helper"

local INTERP = require "spec_lua"

local function read(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local function root()
  local src = debug.getinfo(1, "S").source:sub(2)
  local dir = src:match("^(.*)/spec/[^/]*$") or "."
  if dir:sub(1, 1) ~= "/" then dir = (os.getenv("PWD") or ".") .. "/" .. dir end
  return dir
end

local function wait_for(fn, secs)
  local deadline = core.now() + (secs or 10)
  repeat
    local v = fn()
    if v then return v end
    core.sleep(0.05)
  until core.now() > deadline
  return fn()
end

describe("README, Scaling out", function()
  local srv, server
  local SECRET = "scaling-out-secret-0123456789abcdef0123"

  setup(function()
    local err
    srv, err = redis_helper.start()
    assert(srv, err)
    server, err = nginx_process.start { workers = 2,
      main = ("env TWITTER_CONSUMER_SECRET=%s;\nenv AA_REDIS_PORT=%d;"):format(SECRET, srv.port),
      http = function(ports)
        return ([[
  init_by_lua_block { package.path = %q .. "/examples/nginx/?.lua;" .. package.path }
  server {
    listen 127.0.0.1:%d;
    location = /webhooks/twitter {
      content_by_lua_block { require("account_activity.nginx").serve(require("durable_app")) }
    }
  }
]]):format(root(), ports[1])
      end }
    assert(server, err)
  end)

  teardown(function()
    if server then server:stop() end
    if srv then srv:stop() end
  end)

  it("the consumer block is examples/consumer.lua", function()
    local readme = read(root() .. "/README.md")
    local section = readme:match("\n## Scaling out\n(.-)\n## ")
    assert.is_string(section)
    local block = section:match("```lua\n(%-%- consumer%.lua.-)```")
    assert.is_string(block)
    assert.are.equal(read(root() .. "/examples/consumer.lua"), block)
  end)

  it("nginx stores the deliveries, the consumer handles each event once, SIGTERM stops it", function()
    local s = core.session { timeout = 10 }
    local function post(body)
      local res = assert(s:request { method = "POST", url = server.url .. "/webhooks/twitter", body = body,
        headers = { ["X-Twitter-Webhooks-Signature"] = "sha256=" .. core.base64_encode(core.hmac_sha256(SECRET, body)) } })
      return res.status
    end
    local a = '{"for_user_id":"5","follow_events":[{"type":"follow","id":"ev-a"}]}'
    local b = '{"for_user_id":"5","favorite_events":[{"id":"ev-b"}]}'
    -- the same event again in other bytes (a replay): stored, and skipped by the handler's id check
    local a2 = '{"for_user_id": "5", "follow_events": [{"type": "follow", "id": "ev-a"}]}'
    assert.are.equal(200, post(a))
    assert.are.equal(200, post(a)) -- X's retry: stored once
    assert.are.equal(200, post(b))
    assert.are.equal(200, post(a2))
    s:close()
    assert.are.equal(3, srv:cmd("XLEN", "aa:events"))

    local out = os.tmpname()
    local p = io.popen(("cd %s && REDIS=127.0.0.1:%d %s examples/consumer.lua >%s 2>&1 & echo $!")
      :format(root(), srv.port, INTERP, out))
    local pid = tonumber(p:read("*l"))
    p:close()
    local function pending()
      local ok, r = pcall(srv.cmd, srv, "XPENDING", "aa:events", "workers")
      return ok and r[1] or -1
    end
    assert(wait_for(function()
      local ok, groups = pcall(srv.cmd, srv, "XINFO", "GROUPS", "aa:events")
      if not ok or not groups[1] then return false end
      local g = {}
      for i = 1, #groups[1], 2 do g[groups[1][i]] = groups[1][i + 1] end
      return g["last-delivered-id"] ~= "0-0" and pending() == 0 and (g.lag == 0 or g.lag == nil)
    end, 15), read(out))
    os.execute("kill -TERM " .. pid)
    assert(wait_for(function()
      local a3 = os.execute("kill -0 " .. pid .. " 2>/dev/null")
      return not (a3 == true or a3 == 0)
    end, 10), "SIGTERM did not stop examples/consumer.lua")
    local lines = {}
    for l in read(out):gmatch("[^\n]+") do lines[#lines + 1] = l end
    os.remove(out)
    assert.are.same({ "follow\t5\tev-a", "favorite\t5\tev-b" }, lines)
  end)
end)
