-- The client inside nginx: the cosocket transport is chosen by itself and
-- every method of every flavour, the error kinds, retries, faults and a
-- workflow behave as they do over libcurl (spec/support/client_ngx_run.lua
-- runs the checks in a content_by_lua handler; this spec asserts them).
local emulator = require "account_activity.emulator"
local nginx_process = require "account_activity.nginx_process"
local core = require "account_activity.core"
local cjson = require "cjson"

describe("the client inside nginx (cosockets)", function()
  local emu, runner
  setup(function()
    emu = assert(emulator.start { config = { users_count = 20 } })
    runner = assert(nginx_process.start { http = function(ports)
      return ([[
  init_by_lua_block { HOOK_OPTS = { consumer_secret = %q, on_event = function() end } }
  server {
    listen 127.0.0.1:%d;
    # the emulator's config (with a token set per user) outgrows the default buffer
    client_body_buffer_size 1m;
    location /hook { content_by_lua_block { require("account_activity.nginx").serve(HOOK_OPTS) } }
    location = /run {
      content_by_lua_block {
        local cjson = require "cjson"
        ngx.req.read_body()
        local args = cjson.decode(ngx.req.get_body_data())
        ngx.say(cjson.encode(dofile(args.script)(args)))
      }
    }
  }]]):format(emu.config.app.consumer_secret, ports[1])
    end })
  end)
  teardown(function()
    if runner then runner:stop() end
    if emu then emu:stop() end
  end)

  it("passes every check over the ngx transport", function()
    local pwd = io.popen("pwd"):read("*l")
    local res = assert(core.session { timeout = 120 }:request { method = "POST", url = runner.url .. "/run",
      headers = { ["Content-Type"] = "application/json" },
      body = cjson.encode { script = pwd .. "/spec/support/client_ngx_run.lua", config = emu.config,
        emulator_url = emu.url, hook_url = runner.url .. "/hook" } })
    assert.are.equal(200, res.status, res.body .. runner:error_log())
    local out = cjson.decode(res.body)
    assert.are.equal("ngx", out.transport)
    assert.are.same({}, out.failures)
    assert.is_true(out.checks >= 50, "only " .. out.checks .. " checks ran")
  end)
end)
