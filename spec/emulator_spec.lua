-- The launcher, the config, the CLI, the control plane and the request log.
local H = require "emulator_helper"
local core = require "account_activity.core"
local cjson = require "cjson.safe"
local emulator = require "account_activity.emulator"

local function lua_cmd()
  -- the interpreter running this spec, with the same search paths
  local exe = require "spec_lua"
  return string.format("LUA_PATH=%q LUA_CPATH=%q %s", package.path, package.cpath, exe)
end

local function exists(pid)
  return os.execute("kill -0 " .. pid .. " 2>/dev/null") == true or os.execute("kill -0 " .. pid .. " 2>/dev/null") == 0
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

describe("emulator launcher", function()
  it("exposes url, port, config (credentials) and stops cleanly", function()
    local t0 = core.now()
    local emu = H.start {}
    assert.is_true(core.now() - t0 < 2)
    assert.equal("http://127.0.0.1:" .. emu.port, emu.url)
    local cfg = emu.config
    assert.is_string(cfg.app.consumer_key)
    assert.is_string(cfg.app.consumer_secret)
    assert.is_string(cfg.app.bearer_token)
    for _, k in ipairs { "user_id", "screen_name", "access_token", "access_token_secret" } do
      assert.is_string(cfg.app.owner[k])
      assert.is_string(cfg.users[1][k])
    end
    assert.is_true(#cfg.users >= 3)
    local prefix = emu.prefix
    local pid = emu.server.pid
    assert.matches("^emulator%(http://127%.0%.0%.1:%d+", tostring(emu))
    emu:stop()
    assert.is_nil(read(prefix .. "/conf/nginx.conf"))
    assert.is_false(exists(pid))
    assert.is_true(emu:stop())
  end)

  it("generates many users deterministically from users_count", function()
    local a = emulator.credentials { users_count = 600 }
    local b = emulator.credentials { users_count = 600 }
    assert.equal(600, #a.users)
    -- the OAuth 2.0 seed tokens are derived too; only their expiry is "now + ttl"
    a.users[600].oauth2.expires_at, b.users[600].oauth2.expires_at = nil, nil
    assert.same(a.users[600], b.users[600])
    local seen = {}
    for _, u in ipairs(a.users) do
      assert.is_nil(seen[u.access_token])
      seen[u.access_token] = true
    end
    local d = emulator.default_config()
    assert.equal(5, #d.users)
    a.users[1].oauth2 = nil
    assert.same(d.users[1], a.users[1])
  end)

  it("accepts config tables and files, and a fixed port", function()
    local file = os.tmpname()
    local f = io.open(file, "w")
    f:write(cjson.encode { app = { consumer_key = "filekey" }, users_count = 7 })
    f:close()
    local emu = H.start { config_file = file, config = { account_name = "mine" } }
    os.remove(file)
    assert.equal("filekey", emu.config.app.consumer_key)
    assert.equal(7, #emu.config.users)
    local c = H.client(emu)
    assert.equal("mine", c:call("GET", "/1.1/account_activity/subscriptions/count.json").json.account_name)
    local port = emu.port
    emu:stop()
    local emu2 = H.start { port = port }
    assert.equal(port, emu2.port)
    emu2:stop()
    local none, err = emulator.start { config_file = "/nonexistent.json" }
    assert.is_nil(none)
    assert.matches("cannot read", err)
    assert.has_error(function() emulator.start { config = "x" } end)
  end)

  it("shares state across workers (lua_shared_dict)", function()
    local emu = H.start { workers = 3 }
    local c = H.client(emu)
    local rcv = H.receiver(emu.config.app.consumer_secret)
    local wh = H.register(c, rcv)
    for _, u in ipairs(emu.config.users) do
      assert.equal(204, c:call("POST", "/1.1/account_activity/webhooks/" .. wh.id .. "/subscriptions/all.json",
        { auth = u }).status)
    end
    for _ = 1, 10 do
      local s = core.session {}  -- fresh connections land on different workers
      local res = s:request { method = "GET", url = emu.url .. "/1.1/account_activity/subscriptions/count.json",
        headers = { Authorization = "Bearer " .. emu.config.app.bearer_token } }
      assert.equal(tostring(#emu.config.users), cjson.decode(res.body).subscriptions_count_all)
      s:close()
    end
    rcv:stop()
    emu:stop()
  end)

  it("keeps webhooks and subscriptions in state_dir across restarts", function()
    local dir = os.tmpname()
    os.remove(dir)
    local emu = H.start { state_dir = dir }
    local c = H.client(emu)
    local rcv = H.receiver(emu.config.app.consumer_secret)
    local wh = H.register(c, rcv)
    assert.equal(204, c:call("POST", "/1.1/account_activity/webhooks/" .. wh.id .. "/subscriptions/all.json",
      { auth = emu.config.users[1] }).status)
    H.wait_for(function() return read(dir .. "/state.json") ~= nil end, 3)
    emu:stop()
    local emu2 = H.start { state_dir = dir }
    local c2 = H.client(emu2)
    local list = c2:call("GET", "/1.1/account_activity/webhooks/" .. wh.id .. "/subscriptions/all/list.json")
    assert.equal(200, list.status, list.body)
    assert.equal(emu.config.users[1].user_id, list.json.subscriptions[1].user_id)
    emu2:stop()
    rcv:stop()
    os.execute("rm -rf '" .. dir .. "'")
  end)
end)

describe("emulator control plane and log", function()
  local emu, c
  setup(function()
    emu = H.start {}
    c = H.client(emu)
  end)
  teardown(function() if emu then emu:stop() end end)

  it("answers JSON for config, state, unknown endpoints and bad bodies", function()
    local cfg, status = emu:control("GET", "/_emulator/config")
    assert.equal(200, status)
    assert.equal(emu.config.app.consumer_key, cfg.app.consumer_key)
    assert.equal(3000, cfg.crc.timeout_ms)
    local new = emu:control("POST", "/_emulator/config", { limits = { webhooks = 9 } })
    assert.equal(9, new.limits.webhooks)
    assert.equal(#emu.config.users, #new.users)
    local st = emu:control("GET", "/_emulator/state")
    assert.equal(0, st.subscriptions_count)
    local nf, s404 = emu:control("GET", "/_emulator/nothing")
    assert.equal(404, s404)
    assert.is_string(nf.error)
    local s = core.session {}
    local res = s:request { method = "POST", url = emu.url .. "/_emulator/faults", body = "{nope" }
    assert.equal(400, res.status)
    local idx = emu:control("GET", "/_emulator/")
    assert.is_table(idx.endpoints)
  end)

  it("resets everything but the config", function()
    local r, status = emu:reset()
    assert.equal(200, status)
    assert.is_true(r.ok)
  end)

  it("logs requests without any secret, auth header or signature", function()
    emu:reset()
    emu:control("DELETE", "/_emulator/log")
    local cfg = emu.config
    c:call("GET", "/1.1/account_activity/webhooks.json")
    c:call("POST", "/1.1/account_activity/webhooks.json", { auth = "owner",
      query = { url = "https://example.com/hook" } })
    c:call("GET", "/1.1/account_activity/webhooks/1/subscriptions/all.json", { auth = cfg.users[1] })
    c:call("POST", "/oauth2/invalidate_token", { auth = "owner", query = { access_token = cfg.app.bearer_token } })
    c:call("GET", "/2/webhooks", { query = { oauth_signature = "abc", token = cfg.users[2].access_token_secret } })
    local log = emu:log()
    assert.equal(5, #log)
    assert.equal("GET", log[1].method)
    assert.equal("/1.1/account_activity/webhooks.json", log[1].path)
    assert.equal("bearer", log[1].auth)
    assert.equal(200, log[1].status)
    assert.equal("oauth1", log[2].auth)
    assert.equal("https://example.com/hook", log[2].query.url)
    assert.equal(403, log[2].status)
    assert.equal(cfg.users[1].user_id, log[3].user_id)
    assert.equal("[redacted]", log[4].query.access_token)
    local raw = cjson.encode(log)
    local secrets = { cfg.app.consumer_secret, cfg.app.bearer_token, cfg.app.owner.access_token_secret,
      cfg.app.owner.access_token, cfg.users[1].access_token_secret, cfg.users[2].access_token_secret, "OAuth ",
      "oauth_signature=", "Bearer " }
    for _, s in ipairs(secrets) do
      assert.is_nil(raw:find(s, 1, true), s)
    end
    local since = emu:log(log[4].n)
    assert.equal(1, #since)
  end)
end)

describe("emulator CLI", function()
  local cli = "require('account_activity.emulator.cli')"

  it("prints the credentials in the documented shape", function()
    local p = io.popen(lua_cmd() .. " -e \"os.exit(" .. cli .. ".main({'--print-config'}))\"")
    local out = p:read("*a")
    p:close()
    local t = cjson.decode(out)
    local keys = {}
    for k in pairs(t) do keys[#keys + 1] = k end
    table.sort(keys)
    assert.same({ "app", "base_url", "users" }, keys)
    assert.equal("http://127.0.0.1:8099", t.base_url)
    local app_keys = {}
    for k in pairs(t.app) do app_keys[#app_keys + 1] = k end
    table.sort(app_keys)
    assert.same({ "bearer_token", "client_id", "client_secret", "consumer_key", "consumer_secret", "owner" },
      app_keys)
    local u_keys = {}
    for k in pairs(t.users[1]) do u_keys[#u_keys + 1] = k end
    table.sort(u_keys)
    assert.same({ "access_token", "access_token_secret", "oauth2", "screen_name", "user_id" }, u_keys)
    local o2_keys = {}
    for k in pairs(t.users[1].oauth2) do o2_keys[#o2_keys + 1] = k end
    table.sort(o2_keys)
    assert.same({ "access_token", "expires_at", "refresh_token", "scope", "token_type", "user_id" }, o2_keys)
    local want = emulator.credentials(nil)
    want.base_url = "http://127.0.0.1:8099"
    for _, u in ipairs(want.users) do u.oauth2.expires_at = nil end
    want.app.owner.oauth2.expires_at = nil
    for _, u in ipairs(t.users) do
      assert.truthy(math.abs(u.oauth2.expires_at - (os.time() + 7200)) < 60)
      u.oauth2.expires_at = nil
    end
    t.app.owner.oauth2.expires_at = nil
    assert.same(want, t)
  end)

  it("prints the base_url of --port, so --config FILE alone reaches that emulator", function()
    local p = io.popen(lua_cmd() .. " -e \"os.exit(" .. cli .. ".main({'--port', '18123', '--print-config'}))\"")
    local t = cjson.decode(p:read("*a"))
    p:close()
    assert.equal("http://127.0.0.1:18123", t.base_url)
  end)

  it("runs in the foreground and stops cleanly on SIGTERM", function()
    local out = os.tmpname()
    local p = io.popen(lua_cmd() .. " -e \"os.exit(" .. cli .. ".main({}))\" >" .. out .. " 2>&1 & echo $!")
    local pid = p:read("*l")
    p:close()
    local line = H.wait_for(function() return (read(out) or ""):match("listening on (http://127%.0%.0%.1:%d+)") end, 3)
    assert.truthy(line, read(out))
    local s = core.session {}
    local res = s:request { method = "GET", url = line .. "/_emulator/state" }
    assert.equal(200, res.status)
    s:close()
    -- its nginx prefix: the temporary folder whose config listens on that port
    local port = line:match(":(%d+)$")
    local g = io.popen("grep -l 'listen 127.0.0.1:" .. port .. ";' /tmp/aa-nginx.*/conf/nginx.conf 2>/dev/null")
    local conf = g:read("*l")
    g:close()
    assert.truthy(conf)
    local prefix = conf:match("^(.*)/conf/nginx.conf$")
    local master = tonumber(read(prefix .. "/logs/nginx.pid"))
    assert.truthy(master)
    os.execute("kill -TERM " .. pid)
    local gone = H.wait_for(function()
      return read(prefix .. "/conf/nginx.conf") == nil and not exists(master)
    end, 4)
    assert.truthy(gone, "nginx still running or prefix left behind")
    local s2 = core.session { connect_timeout = 1 }
    assert.is_nil(s2:request { method = "GET", url = line .. "/_emulator/health", timeout = 1 })
    s2:close()
    os.remove(out)
  end)

  it("rejects unknown options with status 2", function()
    local cli_mod = require "account_activity.emulator.cli"
    local buf = {}
    local sink = { write = function(self, ...) for _, v in ipairs { ... } do buf[#buf + 1] = v end return self end }
    assert.equal(2, cli_mod.main({ "--bogus" }, sink, sink))
    assert.matches("unknown option", table.concat(buf))
  end)
end)
