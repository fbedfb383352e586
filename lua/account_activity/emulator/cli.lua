--- `account-activity emulator [--port P] [--state DIR] [--config FILE] [--print-config]`
-- Runs the emulator in the foreground until SIGINT/SIGTERM, then stops
-- nginx and removes its temporary prefix.
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

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

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
  local emu
  emu, err = require("account_activity.emulator").start {
    port = o.port, config_file = o.config_file, state_dir = o.state_dir, workers = o.workers,
    latency_ms = o.latency_ms,
  }
  if not emu then
    errout:write("account-activity emulator: ", tostring(err), "\n")
    return 1
  end
  out:write("listening on ", emu.url, "\n")
  out:flush()
  -- Lua cannot catch signals, so a shell waits in the foreground instead: its
  -- trap stops nginx on INT/TERM, and it also cleans up when this process
  -- ($PPID) is killed while waiting.
  local pid = emu.server.pid
  local script = table.concat({
    "cleanup() { kill -TERM " .. pid .. " 2>/dev/null; i=0; while kill -0 " .. pid
      .. " 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; kill -KILL " .. pid
      .. " 2>/dev/null; rm -rf " .. shell_quote(emu.prefix) .. "; exit 0; }",
    "trap cleanup INT TERM HUP",
    "while kill -0 " .. pid .. " 2>/dev/null && kill -0 $PPID 2>/dev/null; do sleep 0.2 & wait $!; done",
    "cleanup",
  }, "\n")
  -- os.execute runs the script with `sh -c`, so $PPID in it is this process.
  os.execute(script)
  emu:stop()
  return 0
end

return M
