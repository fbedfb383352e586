--- A private redis-server for the specs: a free loopback port, AOF on, its
-- own temporary folder; stopped by PID (never by name).
--
--   local redis_helper = require "redis_helper"
--   local srv = assert(redis_helper.start())   -- srv.port, srv.dir, srv.pid
--   srv:restart()  -- same port and data (AOF), e.g. to cut Redis mid-run
--   srv:stop()
local core = require "account_activity.core"

local M = {}

local function run(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0, a end
  return a == true, c
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function own_pid()
  local f = io.open("/proc/self/stat")
  if not f then return nil end
  local pid = f:read("*n")
  f:close()
  return pid
end

local Server = {}
Server.__index = Server

function Server:__tostring()
  return ("redis_helper(pid=%s, port=%d)"):format(tostring(self.pid), self.port)
end

function Server:alive()
  return self.pid ~= nil and run("kill -0 " .. self.pid .. " 2>/dev/null")
end

--- A fresh connection (the C core) to this server.
function Server:connect(opts)
  local o = { host = "127.0.0.1", port = self.port, timeout_ms = 2000 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return core.redis_connect(o)
end

--- One command on a throwaway connection; raises on failure (spec helper).
function Server:cmd(...)
  local c = assert(self:connect())
  local r, err = c:command({ ... })
  c:close()
  if r == nil then error("redis: " .. tostring(err), 2) end
  return r
end

local function launch(self)
  local cmd = ("redis-server --port %d --bind 127.0.0.1 --appendonly yes --dir %s --save '' "
    .. "--daemonize yes --pidfile %s/redis.pid --logfile %s/redis.log --protected-mode yes")
    :format(self.port, self.dir, self.dir, self.dir)
  os.remove(self.dir .. "/redis.pid")
  if not run(cmd) then return nil, "redis-server did not start" end
  local deadline = core.now() + 10
  while core.now() < deadline do
    self.pid = tonumber(read_file(self.dir .. "/redis.pid") or "")
    local c = self.pid and core.redis_connect { port = self.port, timeout_ms = 500 }
    if c then
      local pong = c:command { "PING" }
      c:close()
      -- Loading the AOF answers -LOADING: ready is PONG.
      if type(pong) == "table" and pong.ok == "PONG" then
        -- Stops this server when the spec process dies without stop().
        local watch = ("while kill -0 %d 2>/dev/null && kill -0 %d 2>/dev/null; do sleep 1; done; "
          .. "kill -TERM %d 2>/dev/null"):format(own_pid() or 0, self.pid, self.pid)
        run("sh -c \"" .. watch .. "\" </dev/null >/dev/null 2>&1 &")
        return true
      end
    end
    if self.pid and not self:alive() then break end
    core.sleep(0.02)
  end
  return nil, "redis-server did not answer: " .. (read_file(self.dir .. "/redis.log") or "")
end

--- Stop (SIGTERM: Redis writes its AOF and exits), wait up to 10 s, KILL past it.
function Server:kill(signal)
  if not self.pid then return end
  run(("kill -%s %d 2>/dev/null"):format(signal or "TERM", self.pid))
  local deadline = core.now() + 10
  while self:alive() and core.now() < deadline do core.sleep(0.02) end
  if self:alive() then run("kill -KILL " .. self.pid .. " 2>/dev/null") end
  self.pid = nil
end

function Server:restart()
  self:kill("TERM")
  return launch(self)
end

function Server:stop()
  self:kill("TERM")
  if self.dir then run("rm -rf '" .. self.dir .. "'") end
  self.dir = nil
end

--- Start a server; returns it or nil, err.
function M.start()
  local p = io.popen("mktemp -d /tmp/aa-redis.XXXXXXXX")
  local dir = p:read("*l")
  p:close()
  math.randomseed(os.time() + (own_pid() or 0))
  local last
  for _ = 1, 20 do
    local self = setmetatable({ dir = dir, port = math.random(20000, 59000) }, Server)
    local probe = core.redis_connect { port = self.port, timeout_ms = 200 }
    if probe then
      probe:close() -- someone else's port
    else
      local ok, err = launch(self)
      if ok then return self end
      last = err
      self:kill("KILL")
    end
  end
  run("rm -rf '" .. dir .. "'")
  return nil, last or "no free port"
end

return M
