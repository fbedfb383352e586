--- nginx phase hooks: init (load the config, restore a saved state) and
-- init_worker (snapshot the state to state_dir when it changes).
local util = require "account_activity.emulator.util"
local config = require "account_activity.emulator.config"
local state = require "account_activity.emulator.state"

local M = {}

local settings = {}

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

--- init_by_lua: config_path holds the normalised config as JSON.
function M.init(config_path, state_dir)
  settings.state_dir = (state_dir ~= "" and state_dir) or nil
  local d = state.dict()
  if settings.state_dir then
    local snap = util.decode(read(settings.state_dir .. "/state.json") or "")
    if type(snap) == "table" then state.restore(snap) end
  end
  local raw = assert(read(config_path), "emulator: cannot read " .. config_path)
  local cfg = config.normalize(assert(util.decode(raw), "emulator: bad config JSON"))
  state.set_config(cfg)
  d:set("started", ngx.now())
end

local function save()
  local dir = settings.state_dir
  if not dir or not state.dict():get("dirty") then return end
  state.dict():set("dirty", false)
  local tmp = dir .. "/state.json.tmp"
  local f = io.open(tmp, "wb")
  if not f then return end
  f:write(util.encode(state.snapshot()))
  f:close()
  os.rename(tmp, dir .. "/state.json")
end
M.save = save

function M.init_worker()
  math.randomseed(ngx.worker.pid() + math.floor(ngx.now() * 1000) % 100000)
  if settings.state_dir and ngx.worker.id() == 0 then
    ngx.timer.every(0.5, function(premature)
      if not premature then pcall(save) end
    end)
  end
end

function M.exit_worker()
  if settings.state_dir and ngx.worker.id() == 0 then pcall(save) end
end

return M
