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
