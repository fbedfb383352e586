--- Which runtime we are in, decided in one place: inside an nginx phase that
-- may yield (cosockets, ngx.sleep) or in a plain Lua process (the C core).
-- The client, the stream and the jobs ask here instead of probing `ngx`
-- themselves, so they cannot drift apart on which phases may yield.
local M = {}

-- Phases in which lua-nginx-module lets a request yield on cosockets.
local YIELDABLE_PHASES = {
  rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
}

local core = require "account_activity.core"

local function ngx_table()
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and type(ngx.get_phase) == "function" then return ngx end
  return nil
end

--- true when running in an nginx phase that can use cosockets.
function M.cosocket_phase()
  local ngx = ngx_table()
  if not ngx then return false end
  local ok, phase = pcall(ngx.get_phase)
  return ok and YIELDABLE_PHASES[phase] == true
end

--- Sleep without blocking an nginx worker where that matters.
function M.sleep(seconds)
  if seconds <= 0 then return end
  if M.cosocket_phase() then return rawget(_G, "ngx").sleep(seconds) end
  return core.sleep(seconds)
end

--- Epoch seconds (rate-limit resets and dates are epoch times).
function M.clock()
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and type(ngx.now) == "function" then return ngx.now() end
  return core.time()
end

--- Seconds on a clock that never jumps and is never cached, for deadlines.
-- (ngx.now() is the time the event loop last woke up; a request that
-- loops on cosockets must refresh it, or a deadline never arrives.)
function M.monotonic()
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and type(ngx.update_time) == "function" and type(ngx.now) == "function" then
    ngx.update_time()
    return ngx.now()
  end
  return core.now()
end

return M
