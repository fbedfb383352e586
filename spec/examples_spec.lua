-- Every example script runs against the emulator (so none rots): given its
-- URL, the credentials file and a webhook endpoint, each must exit 0.
local emulator = require "account_activity.emulator"
local cli = require "account_activity.cli"
local cjson = require "cjson"

local INTERP = require "spec_lua"

local emu, ep, cfg_file, events_file

local function read(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local function run(script, args)
  local out = os.tmpname()
  local cmd = "AA_BASE_URL=" .. emu.url .. " AA_WEBHOOK_URL=" .. ep.hook_url .. " " .. INTERP
    .. " examples/" .. script .. " --config " .. cfg_file .. " " .. (args or "") .. " >" .. out .. " 2>&1"
  local a, _, c = os.execute(cmd)
  local status = type(a) == "number" and math.floor(a / 256) or c
  local text = read(out)
  os.remove(out)
  return status, text
end

describe("examples", function()
  lazy_setup(function()
    local err
    emu, err = emulator.start { config = { users_count = 15 } }
    assert(emu, err)
    cfg_file = os.tmpname()
    local f = io.open(cfg_file, "w")
    f:write(cjson.encode(emu.config))
    f:close()
    events_file = os.tmpname()
    ep, err = cli.start_endpoint { secret = emu.config.app.consumer_secret, file = events_file }
    assert(ep, err)
  end)

  lazy_teardown(function()
    if ep then ep:stop() end
    if emu then emu:stop() end
    os.remove(cfg_file)
    os.remove(events_file)
  end)

  before_each(function() emu:control("POST", "/_emulator/reset", {}) end)

  local expect = {
    ["ensure_webhook.lua"] = "again: reused webhook",
    ["sync_subscriptions.lua"] = "sync without the last user: added 0, kept 14, removed 1, failed 0",
    ["migrate_webhook.lua"] = "old webhook deleted: true",
    ["teardown.lua"] = "again: already gone = true",
    ["health.lua"] = "healthy",
    ["replay.lua"] = "replay job %d+ created",
  }
  for _, script in ipairs { "ensure_webhook.lua", "sync_subscriptions.lua", "migrate_webhook.lua",
                            "teardown.lua", "health.lua", "replay.lua" } do
    it(script .. " runs against the emulator", function()
      local status, text = run(script)
      assert.are.equal(0, status, text)
      assert.matches(expect[script], text)
      for _, s in ipairs { emu.config.app.consumer_secret, emu.config.users[1].access_token_secret } do
        assert.is_nil(text:find(s, 1, true))
      end
    end)
  end

  it("examples/nginx/nginx.conf runs as written: a CRC, a signed delivery logged by webhook_app.lua", function()
    -- The same files, with only the port and the /tmp paths made this run's own.
    local core = require "account_activity.core"
    local dir = io.popen("mktemp -d /tmp/aa-nginx-example.XXXXXX"):read("*l")
    local port = 20000 + math.random(0, 30000)
    for _, name in ipairs { "nginx.conf", "webhook.conf" } do
      local text = read("examples/nginx/" .. name):gsub("/tmp/aa%-webhook%-example", dir .. "/run")
        :gsub("127%.0%.0%.1:8080", "127.0.0.1:" .. port)
      local f = io.open(dir .. "/" .. name, "w")
      f:write(text)
      f:close()
    end
    local secret = "example-secret-0123456789"
    local pid = io.popen("TWITTER_CONSUMER_SECRET=" .. secret .. " nginx -p \"$PWD\" -c " .. dir
      .. "/nginx.conf -e " .. dir .. "/early.log >" .. dir .. "/out.log 2>&1 & echo $!"):read("*l")
    local session = core.session { timeout = 5 }
    local url = "http://127.0.0.1:" .. port .. "/webhooks/twitter"
    local token = "ZDRiNDY0ZDgtNzdkMi00NWEzLWI1ZjQtNjk2N2NmMzM5YzBh"
    local crc
    local deadline = core.now() + 10
    repeat
      crc = session:request { method = "GET", url = url .. "?crc_token=" .. token }
      if not crc then core.sleep(0.05) end
    until crc or core.now() > deadline
    local ok, err = pcall(function()
      assert(crc, "nginx did not answer: " .. read(dir .. "/out.log"))
      assert.are.equal(200, crc.status)
      assert.are.equal(require("account_activity").crc_response(secret, token), cjson.decode(crc.body).response_token)
      local body = '{"for_user_id":"2244994945","follow_events":[{"type":"follow","source":{"id":"1"},'
        .. '"target":{"id":"2244994945"}}]}'
      local sig = "sha256=" .. core.base64_encode(core.hmac_sha256(secret, body))
      local r = assert(session:request { method = "POST", url = url, body = body,
        headers = { ["Content-Type"] = "application/json", ["x-twitter-webhooks-signature"] = sig } })
      assert.are.equal(200, r.status)
      local bad = assert(session:request { method = "POST", url = url, body = body,
        headers = { ["x-twitter-webhooks-signature"] = "sha256=AAAA" } })
      assert.are.equal(401, bad.status)
      local logged
      local until_t = core.now() + 5
      repeat
        logged = read(dir .. "/out.log"):find("follow for 2244994945 (aaa)", 1, true)
        if not logged then core.sleep(0.05) end
      until logged or core.now() > until_t
      assert.is_truthy(logged, read(dir .. "/out.log"))
      assert.is_nil(read(dir .. "/out.log"):find(secret, 1, true))
    end)
    session:close()
    if pid then os.execute("kill " .. pid .. " 2>/dev/null; sleep 0.2; kill -9 " .. pid .. " 2>/dev/null") end
    os.execute("rm -rf " .. dir)
    assert(ok, err)
  end)

  it("a script starts its own emulator and endpoint when given nothing", function()
    local out = os.tmpname()
    local a, _, c = os.execute("env -u AA_BASE_URL -u TWITTER_API_BASE_URL " .. INTERP
      .. " examples/replay.lua >" .. out .. " 2>&1")
    local status = type(a) == "number" and math.floor(a / 256) or c
    local text = read(out)
    os.remove(out)
    assert.are.equal(0, status, text)
    assert.matches("replay_job_status", text)
  end)
end)
