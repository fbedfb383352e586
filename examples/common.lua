-- Shared set-up for the example scripts (not part of the library).
--
-- Against a running emulator (or X):
--   AA_BASE_URL=http://127.0.0.1:PORT lua5.4 examples/X.lua --config creds.json [ARGS]
--   (creds.json: `account-activity emulator --print-config`; or the TWITTER_*
--   variables instead of --config; AA_WEBHOOK_URL: the endpoint to register,
--   else one is started locally with the consumer secret)
-- With nothing given, an emulator and an endpoint are started and stopped.
local here = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "."
local root = here .. "/.."
local interp = rawget(_G, "jit") and "luajit" or "lua5.4"
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/" .. interp .. "/?.so;" .. package.cpath

local aa = require "account_activity"
local cli = require "account_activity.cli"
local cjson = require "cjson.safe"

local M = {}

--- setup(argv, { users = n }) -> env { client, users, webhook_url, webhook_url2,
-- control(method, path, body) (the emulator's control plane), args, finish(ok) }
function M.setup(argv, opts)
  opts = opts or {}
  local env = { args = {} }
  local stops = {}
  local config_file, base_url
  local i = 1
  while argv[i] do
    local a = argv[i]
    if a == "--config" then config_file = argv[i + 1]; i = i + 1
    elseif a == "--base-url" then base_url = argv[i + 1]; i = i + 1
    else env.args[#env.args + 1] = a end
    i = i + 1
  end
  base_url = base_url or os.getenv("AA_BASE_URL") or os.getenv("TWITTER_API_BASE_URL")

  function env.finish(ok)
    for k = #stops, 1, -1 do pcall(stops[k]) end
    if env.client then env.client:close() end
    return ok and 0 or 1
  end

  local ok, err = pcall(function()
    local cfg
    if config_file then
      local f = assert(io.open(config_file, "rb"))
      cfg = assert(cjson.decode(f:read("*a")))
      f:close()
    elseif not base_url then
      local emu = assert(require("account_activity.emulator").start { config = { users_count = opts.users or 20 } })
      stops[#stops + 1] = function() emu:stop() end
      cfg, base_url = emu.config, emu.url
    end
    if cfg then
      env.client = aa.new {
        consumer_key = cfg.app.consumer_key, consumer_secret = cfg.app.consumer_secret,
        access_token = cfg.app.owner.access_token, access_token_secret = cfg.app.owner.access_token_secret,
        bearer_token = cfg.app.bearer_token, base_url = base_url,
      }
      env.users = cfg.users or {}
      env.secret = cfg.app.consumer_secret
    else
      env.client = aa.from_env { base_url = base_url }
      env.users = {}
      env.secret = os.getenv("TWITTER_CONSUMER_SECRET")
    end
    env.webhook_url = os.getenv("AA_WEBHOOK_URL")
    if not env.webhook_url then
      local file = os.tmpname()
      local ep = assert(cli.start_endpoint { secret = env.secret, file = file })
      stops[#stops + 1] = function() ep:stop(); os.remove(file) end
      env.webhook_url = ep.hook_url
      env.events = cli.follow(file)
    end
    -- A second URL for migrations: the endpoint serves PATH/anything too.
    env.webhook_url2 = os.getenv("AA_WEBHOOK_URL2") or (env.webhook_url .. "/v2")
    local session = require("account_activity.core").session { timeout = 10 }
    stops[#stops + 1] = function() session:close() end
    function env.control(method, path, body)
      local res, cerr = session:request { method = method, url = base_url .. "/_emulator/" .. path,
        headers = { ["Content-Type"] = "application/json" }, body = body and cjson.encode(body) or nil }
      if not res then return nil, cerr end
      return cjson.decode(res.body), res.status
    end
  end)
  if not ok then
    io.stderr:write("set-up failed: ", tostring(err), "\n")
    os.exit(env.finish(false))
  end
  return env
end

--- Print a workflow report in a few lines (never the users' tokens).
function M.print_report(name, r)
  print(string.format("%s: added %d, kept %d, removed %d, failed %d%s", name, #(r.added or {}), #(r.kept or {}),
    #(r.removed or {}), #(r.failed or {}), r.elapsed and string.format(" (%.2f s)", r.elapsed) or ""))
  for _, f in ipairs(r.failed or {}) do
    print(string.format("  failed %s %s: %s", f.action or "?", f.user_id or "?", tostring(f.err)))
  end
end

--- Run main(env) with set-up and clean-up; exits with 0 when main returns true.
function M.run(main, opts)
  local env = M.setup(arg or {}, opts)
  local ok, res = xpcall(main, debug.traceback, env)
  if not ok then io.stderr:write(tostring(res), "\n") end
  os.exit(env.finish(ok and res))
end

return M
