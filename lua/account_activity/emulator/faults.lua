--- Fault injection for the next N requests matching a method and a path
-- pattern (a Lua pattern, searched in the path): status and body, extra
-- headers, a delay, a dropped connection, a truncated body, invalid JSON.
local state = require "account_activity.emulator.state"
local util = require "account_activity.emulator.util"

local M = {}

local ACTIONS = { reset = true, close = true, truncate = true, invalid_json = true }

local function validate(f)
  if type(f) ~= "table" then return nil, "a fault must be an object" end
  if f.path ~= nil and type(f.path) ~= "string" then return nil, "fault.path must be a string" end
  if f.path and not pcall(string.find, "", f.path) then return nil, "fault.path is not a valid Lua pattern" end
  if f.method ~= nil and type(f.method) ~= "string" then return nil, "fault.method must be a string" end
  if f.action ~= nil and not ACTIONS[f.action] then
    return nil, "fault.action must be one of reset, close, truncate, invalid_json"
  end
  if f.status ~= nil and not (math.type and math.type(f.status) or tonumber(f.status)) then
    return nil, "fault.status must be a number"
  end
  if f.headers ~= nil and type(f.headers) ~= "table" then return nil, "fault.headers must be an object" end
  return true
end

--- Add one fault or an array of faults. Returns the stored faults or nil, err.
function M.add(spec)
  local list = (type(spec) == "table" and spec[1] ~= nil) and spec or { spec }
  for _, f in ipairs(list) do
    local ok, err = validate(f)
    if not ok then return nil, err end
  end
  local added = {}
  state.with_lock("faults", function()
    local all = state.get_json("faults") or {}
    for _, f in ipairs(list) do
      f = util.deep_copy(f)
      f.id = state.incr("seq:fault")
      f.method = f.method and f.method:upper() or "*"
      f.path = f.path or ""
      f.count = tonumber(f.count) or 1
      state.dict():set("fault_left:" .. f.id, f.count)
      all[#all + 1] = f
      added[#added + 1] = f
    end
    state.set_json("faults", util.array(all))
    state.incr("faults_ver")
  end)
  return added
end

function M.clear()
  state.with_lock("faults", function()
    for _, f in ipairs(state.get_json("faults") or {}) do state.dict():delete("fault_left:" .. f.id) end
    state.dict():delete("faults")
    state.incr("faults_ver")
  end)
end

function M.list()
  local out = {}
  for _, f in ipairs(state.get_json("faults") or {}) do
    f.remaining = state.dict():get("fault_left:" .. f.id) or 0
    if f.remaining > 0 then out[#out + 1] = f end
  end
  return util.array(out)
end

local cache = {}

--- The fault that applies to this request, if any (consumes one use).
function M.take(method, path)
  local d = state.dict()
  local ver = d:get("faults_ver")
  if ver == nil then return nil end
  if cache.ver ~= ver then cache.list, cache.ver = state.get_json("faults") or {}, ver end
  for _, f in ipairs(cache.list) do
    if (f.method == "*" or f.method == method) and path:find(f.path) then
      local left = d:incr("fault_left:" .. f.id, -1, 0)
      if left and left >= 0 then return f end
    end
  end
  return nil
end

return M
