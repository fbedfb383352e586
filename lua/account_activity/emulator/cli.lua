--- `account-activity emulator [--port P] [--state DIR] [--config FILE] [--print-config]`
-- Runs the emulator in the foreground until SIGINT, SIGTERM or SIGHUP, then
-- stops nginx and removes its temporary prefix before exiting. A busy --port
-- is reported at once (exit 2).
local util = require "account_activity.emulator.util"
local config = require "account_activity.emulator.config"

local M = {}

local USAGE = [[
usage: account-activity emulator [--port P] [--state DIR] [--config FILE] [--print-config]
                                 [--workers N] [--latency-ms MS]
  --port P         listen on 127.0.0.1:P (default: a free port)
  --state DIR      keep webhooks and subscriptions in DIR across restarts
  --config FILE    JSON config (same shape as --print-config, plus knobs such as users_count)
  --print-config   print the credentials in force as JSON and exit; its base_url is
                   http://127.0.0.1:P of --port P (8099 without --port)
]]

-- The port --print-config assumes without --port (the one the README uses).
M.DEFAULT_PORT = 8099

local function parse(argv)
  local o, i = {}, 1
  while i <= #argv do
    local a = argv[i]
    local name, inline = a:match("^(%-%-[%w-]+)=(.*)$")
    name = name or a
    local function value()
      if inline then return inline end
      i = i + 1
      if argv[i] == nil then return nil, name .. " needs a value" end
      return argv[i]
    end
    local v, err
    if name == "--port" then
      v, err = value()
      o.port = tonumber(v)
      if not err and not o.port then err = "--port needs a number" end
    elseif name == "--state" then o.state_dir, err = value()
    elseif name == "--config" then o.config_file, err = value()
    elseif name == "--workers" then v, err = value(); o.workers = tonumber(v)
    elseif name == "--latency-ms" then v, err = value(); o.latency_ms = tonumber(v)
    elseif name == "--print-config" then o.print_config = true
    elseif name == "-h" or name == "--help" then o.help = true
    elseif not (name == "emulator" and i == 1) then -- tolerate the sub-command name
      err = "unknown option " .. a end
    if err then return nil, err end
    i = i + 1
  end
  return o
end

--- Returns an exit status (0 ok, 1 failure, 2 usage).
function M.main(argv, out, errout)
  out, errout = out or io.stdout, errout or io.stderr
  local o, err = parse(argv or {})
  if not o then
    errout:write("account-activity emulator: ", err, "\n", USAGE)
    return 2
  end
  if o.help then out:write(USAGE); return 0 end
  if o.print_config then
    local t
    if o.config_file then
      t, err = config.read_file(o.config_file)
      if not t then errout:write("account-activity emulator: ", err, "\n"); return 1 end
    end
    local ok, cfg = pcall(config.normalize, t)
    if not ok then errout:write("account-activity emulator: ", tostring(cfg), "\n"); return 1 end
    -- base_url lets `--config FILE` alone reach the emulator started with the same --port
    out:write(util.encode(config.credentials(cfg, "http://127.0.0.1:" .. (o.port or M.DEFAULT_PORT))), "\n")
    return 0
  end
  -- Caught before nginx starts, so a Ctrl-C during the start is answered
  -- too; handlers only note the signal, the loop below does the stopping.
  local core = require "account_activity.core"
  local STOP_SIGNALS = { "INT", "TERM", "HUP" }
  core.signal_catch(STOP_SIGNALS)
  local emu
  emu, err = require("account_activity.emulator").start {
    port = o.port, config_file = o.config_file, state_dir = o.state_dir, workers = o.workers,
    latency_ms = o.latency_ms,
  }
  if not emu then
    core.signal_reset(STOP_SIGNALS)
    if type(err) == "table" and err.kind == "port_in_use" then
      errout:write("account-activity emulator: ", err.message, "\n")
      return 2
    end
    errout:write("account-activity emulator: ", tostring(err), "\n")
    return 1
  end
  out:write("listening on ", emu.url, "\n")
  out:flush()
  local status = 0
  while not core.signal_pending() do
    local exited, how = emu.server:wait(3600, true)
    if exited then
      errout:write("account-activity emulator: nginx exited (", tostring(how), ")\n", emu:error_log())
      status = 1
      break
    end
  end
  -- Stopped and removed before we exit: nothing of it outlives the CLI.
  emu:stop()
  core.signal_reset(STOP_SIGNALS)
  return status
end

return M
