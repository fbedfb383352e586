-- End to end: the emulator registers our nginx endpoint (its CRC, signed
-- over the query string, must pass), then delivers every event type it
-- knows; the router (with dedupe) must see each one, typed, and a replay
-- must only add its replay_job_status.
local core = require "account_activity.core"
local cjson = require "cjson"
local nginx_process = require "account_activity.nginx_process"

local ok_emu, emulator = pcall(require, "account_activity.emulator")
local emu_events = ok_emu and require("account_activity.emulator.events")

local function root()
  local src = debug.getinfo(1, "S").source:sub(2)
  local dir = src:match("^(.*)/spec/[^/]*$") or "."
  if dir:sub(1, 1) ~= "/" then dir = (os.getenv("PWD") or ".") .. "/" .. dir end
  return dir
end

local function wait_for(fn, timeout)
  -- generous: under valgrind or ASan, or a loaded CI machine, delivery is slower
  local deadline = core.now() + (timeout or 15)
  repeat
    local v = fn()
    if v then return v end
    core.sleep(0.02)
  until core.now() > deadline
  return fn()
end

-- Our endpoint: serve() with a deduping router that appends each event it
-- dispatches to a JSON-lines file.
local function start_receiver(secret)
  return nginx_process.start { http = function(ports, server)
    return ([[
  init_by_lua_block {
    local root = %q
    package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
    package.cpath = root .. "/build/luajit/?.so;" .. package.cpath
    local cjson = require "cjson"
    local OUT = %q
    local r = require("account_activity.events").router():dedupe(1000)
    r:on("*", function(ev)
      local f = assert(io.open(OUT, "ab"))
      f:write(cjson.encode { type = ev.type, id = ev.id, for_user_id = ev.for_user_id or cjson.null,
        users = ev.users ~= nil, apps = ev.apps ~= nil }, "\n")
      f:close()
    end)
    package.loaded.webhook_emulator_spec_opts = { consumer_secret = %q, router = r }
  }
  server {
    listen 127.0.0.1:%d;
    location = /webhooks/twitter {
      content_by_lua_block {
        require("account_activity.nginx").serve(package.loaded.webhook_emulator_spec_opts)
      }
    }
  }
]]):format(root(), server.prefix .. "/events.jsonl", secret, ports[1])
  end }
end

local describe_if = ok_emu and describe or pending

describe_if("webhook endpoint against the emulator", function()
  local emu, rcv, session, cfg

  local function events_seen()
    local f = io.open(rcv.prefix .. "/events.jsonl", "rb")
    if not f then return {} end
    local list = {}
    for line in f:lines() do list[#list + 1] = cjson.decode(line) end
    f:close()
    return list
  end

  local function call(method, path, auth, query)
    local url = emu.url .. path
    if query then
      local parts = {}
      for k, v in pairs(query) do parts[#parts + 1] = core.percent_encode(k) .. "=" .. core.percent_encode(v) end
      table.sort(parts)
      url = url .. "?" .. table.concat(parts, "&")
    end
    local headers = {}
    if auth == "app" then
      headers.Authorization = "Bearer " .. cfg.app.bearer_token
    else
      headers.Authorization = core.oauth1_header { method = method, url = url,
        consumer_key = cfg.app.consumer_key, consumer_secret = cfg.app.consumer_secret,
        token = auth.access_token, token_secret = auth.access_token_secret }
    end
    local res, err = session:request { method = method, url = url, headers = headers }
    assert(res, err and err.message)
    return res
  end

  setup(function()
    local err
    emu, err = emulator.start {}
    assert(emu, err)
    cfg = emu.config
    rcv, err = start_receiver(cfg.app.consumer_secret)
    assert(rcv, err)
    session = core.session { timeout = 10 }
  end)

  teardown(function()
    if session then session:close() end
    if rcv then rcv:stop() end
    if emu then emu:stop() end
  end)

  it("passes the CRC, receives every event type, dedupes a replay", function()
    local hook = rcv.url .. "/webhooks/twitter"
    local res = call("POST", "/1.1/account_activity/webhooks.json", cfg.app.owner, { url = hook })
    assert.are.equal(200, res.status, res.body)
    local wh = cjson.decode(res.body)
    assert.is_true(wh.valid)
    local crc = emu:control("POST", "/_emulator/crc", { webhook_id = wh.id })
    assert.is_true(crc.results[1].ok)

    local user = cfg.users[1]
    res = call("POST", "/1.1/account_activity/webhooks/" .. wh.id .. "/subscriptions/all.json", user)
    assert.are.equal(204, res.status, res.body)

    local types = emu_events.types()
    local want = {}
    for _, typ in ipairs(types) do
      if typ ~= "user_event" then -- the revoke ends the subscription: last
        local r = emu:control("POST", "/_emulator/deliver", { user_id = user.user_id, type = typ, wait = true })
        assert.are.equal(1, #r.deliveries, typ)
        assert.are.equal(200, r.deliveries[1].status, typ)
        want[#want + 1] = typ
      end
    end
    -- the documented separate key for unfollow
    local r = emu:control("POST", "/_emulator/deliver",
      { user_id = user.user_id, type = "unfollow", shape = "documented", wait = true })
    assert.are.equal(200, r.deliveries[1].status)
    want[#want + 1] = "unfollow"

    local seen = wait_for(function()
      local s = events_seen()
      return #s >= #want and s
    end) or events_seen()
    assert.are.equal(#want, #seen)
    local by_type = {}
    for i, ev in ipairs(seen) do
      assert.are.equal(want[i], ev.type)
      assert.are.equal(user.user_id, ev.for_user_id)
      assert.is_string(ev.id)
      by_type[ev.type] = ev
    end
    assert.is_true(by_type.direct_message.users)
    assert.is_true(by_type.direct_message.apps)
    assert.is_true(by_type.direct_message_mark_read.users)

    -- replay: the same bodies again (deduped), then replay_job_status
    local now = os.time()
    res = call("POST", "/1.1/account_activity/replay/webhooks/" .. wh.id .. "/subscriptions/all.json", "app",
      { from_date = os.date("!%Y%m%d%H%M", now - 300), to_date = os.date("!%Y%m%d%H%M", now + 60) })
    assert.are.equal(202, res.status, res.body)
    local after = wait_for(function()
      local s = events_seen()
      return s[#s] and s[#s].type == "replay_job_status" and s
    end)
    assert.are.equal(#want + 1, #after)
    assert.are.equal("replay_job_status", after[#after].type)

    -- the revoke: no for_user_id in the envelope, the revoking user instead
    r = emu:control("POST", "/_emulator/deliver", { user_id = user.user_id, type = "user_event", wait = true })
    assert.are.equal(200, r.deliveries[1].status)
    local last = wait_for(function()
      local s = events_seen()
      return s[#s].type == "user_event" and s[#s]
    end)
    assert.are.equal(user.user_id, last.for_user_id)
    assert.is_nil(rcv:error_log():find("[error]", 1, true))
  end)

  it("a webhook registered with another app's secret fails our CRC", function()
    emu:reset()
    local other = assert(start_receiver("not-the-app-secret"))
    local res = call("POST", "/1.1/account_activity/webhooks.json", cfg.app.owner,
      { url = other.url .. "/webhooks/twitter" })
    local log = other:error_log()
    other:stop()
    assert.are.equal(403, res.status, res.body)
    assert.are.equal(214, cjson.decode(res.body).errors[1].code)
    -- refused because the emulator's signature over the query did not verify
    assert.matches("CRC refused: signature does not match", log, 1, true)
  end)
end)
