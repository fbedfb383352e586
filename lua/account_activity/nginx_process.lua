--- Start and stop a private nginx (with the lua module) in a temporary prefix.
-- Used by the emulator launcher, the demo and the integration specs: each
-- instance listens on free loopback ports only and is torn down by :stop().
-- nginx runs in the foreground as our child (core.spawn with pdeathsig), so
-- it cannot outlive this process, however this process ends.
local M = {}

local core = require "account_activity.core"
local errors = require "account_activity.errors"

-- Runs argv (no shell) to its end; true when it exited 0.
local function run(argv)
  local pid = core.spawn(argv, { stdin = "/dev/null" })
  if not pid then return false end
  local exited, status = core.wait(pid, 30)
  if exited == false then core.kill(pid, "KILL"); core.wait(pid, 5) end
  return exited == true and status == 0
end

-- One line of a command's output (for id -u, mktemp), through the shell.
local function first_line(cmd)
  local p = io.popen(cmd)
  if not p then return nil end
  local line = p:read("*l")
  p:close()
  return line
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
-- also for callers polling a file a server writes (the CLI's redirect receiver)
M.read_file = read_file

local function write_file(path, data)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  f:write(data)
  f:close()
  return true
end

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  return first_line("pwd") .. "/" .. path:gsub("^%./", "")
end

-- Where this file was loaded from, absolute (a relative LUA_PATH included).
local function this_file()
  local src = debug.getinfo(1, "S").source
  if src:sub(1, 1) ~= "@" then return nil end
  return absolute(src:sub(2))
end

-- Debian's multiarch triplet, asked once per process (a fork each time
-- would slow the specs, which start many servers).
local multiarch_cached
local function multiarch()
  if not multiarch_cached then
    local arch = first_line("dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch 2>/dev/null")
    multiarch_cached = (arch and arch ~= "") and arch or "x86_64-linux-gnu"
  end
  return multiarch_cached
end

--- Lua search paths for the nginx workers (LuaJIT), found from where this
-- file is: a checkout's lua/ and build/luajit/, or an install's
-- PREFIX/share/lua/X.Y with the LuaJIT build in PREFIX/lib/lua/5.1 (`make
-- install` puts it there) or PREFIX/lib/lua/X.Y/account_activity/luajit
-- (`luarocks make` does); then whatever AA_NGINX_LUA_PATH / AA_NGINX_LUA_CPATH
-- add (for a layout of your own), then LuaJIT's standard places.
local paths_cached
function M.lua_paths()
  if paths_cached then return paths_cached[1], paths_cached[2] end
  local path, cpath = {}, {}
  local file = this_file() or ""
  local root = file:match("^(.*)/lua/account_activity/[^/]*$")
  local lua_dir = file:match("^(.*/share/lua/%d+%.%d+)/account_activity/[^/]*$")
  if root then
    path[#path + 1] = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua"
    cpath[#cpath + 1] = root .. "/build/luajit/?.so"
  elseif lua_dir then
    local prefix, abi = lua_dir:match("^(.*)/share/lua/(%d+%.%d+)$")
    path[#path + 1] = lua_dir .. "/?.lua;" .. lua_dir .. "/?/init.lua"
    -- make install's LuaJIT build, then a LuaRocks tree's (the rockspec
    -- builds one next to the core of the rock's Lua)
    cpath[#cpath + 1] = prefix .. "/lib/lua/5.1/?.so;" .. prefix .. "/lib/lua/" .. abi .. "/account_activity/luajit/?.so"
  end
  local ep, ec = os.getenv("AA_NGINX_LUA_PATH"), os.getenv("AA_NGINX_LUA_CPATH")
  if ep then path[#path + 1] = ep end
  if ec then cpath[#cpath + 1] = ec end
  -- LuaJIT's standard places, spelled out: ";;" would splice in the
  -- LUA_PATH/LUA_CPATH inherited from a Lua 5.4 parent, whose C modules
  -- cannot load into nginx's LuaJIT.
  path[#path + 1] = "/usr/local/share/lua/5.1/?.lua;/usr/local/share/lua/5.1/?/init.lua;"
    .. "/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua"
  cpath[#cpath + 1] = "/usr/local/lib/lua/5.1/?.so;/usr/lib/" .. multiarch() .. "/lua/5.1/?.so;/usr/lib/lua/5.1/?.so"
  paths_cached = { table.concat(path, ";"), table.concat(cpath, ";") }
  return paths_cached[1], paths_cached[2]
end

-- nginx from PATH, else from the sbin folders a user's PATH lacks on Debian.
local nginx_cached
local function nginx_binary()
  if not nginx_cached then
    local dirs = (os.getenv("PATH") or "") .. ":/usr/sbin:/usr/local/sbin"
    for dir in dirs:gmatch("[^:]+") do
      local f = io.open(dir .. "/nginx", "rb")
      if f then
        f:close()
        nginx_cached = dir .. "/nginx"
        break
      end
    end
  end
  return nginx_cached or "nginx"
end

local MODULES = {
  "/usr/lib/nginx/modules/ndk_http_module.so",
  "/usr/lib/nginx/modules/ngx_http_lua_module.so",
}

local root_cached
local function is_root()
  if root_cached == nil then root_cached = first_line("id -u 2>/dev/null") == "0" end
  return root_cached
end

local Server = {}
Server.__index = Server

function Server:__tostring()
  return string.format("nginx_process(pid=%s, port=%s, prefix=%s)",
    tostring(self.pid), tostring(self.port), self.prefix)
end

--- The nginx error log so far (for diagnostics in failing specs).
function Server:error_log()
  return read_file(self.prefix .. "/logs/error.log") or ""
end

--- Is the master still running? (It is our child: this also reaps it.)
function Server:alive()
  if not self.pid then return false end
  return self:wait(0) == false
end

--- Wait up to timeout_s for the master to end -> true, exit code | signal
-- name, or false, "timeout" | "signal" (interruptible: a signal caught by
-- core.signal_catch is waiting).
function Server:wait(timeout_s, interruptible)
  if self.status ~= nil then return true, self.status end
  if not self.pid then return true, nil end
  local exited, status = core.wait(self.pid, timeout_s, interruptible)
  if exited == nil then exited, status = true, "gone" end -- reaped elsewhere
  if exited then self.status = status end
  return exited, status
end

--- Stop nginx (fast shutdown) and wait until the master and its workers are
-- gone; removes the prefix unless `keep` is true. Idempotent.
function Server:stop(keep)
  if self.pid then
    if self:wait(0) == false then
      core.kill(self.pid, "TERM")
      -- The master kills a worker that ignores the shutdown after ~1.5 s.
      if self:wait(3) == false then
        -- nginx leads its own process group: this reaches the workers too.
        core.kill(-self.pid, "KILL")
        self:wait(2)
      end
    end
    self.pid = nil
  end
  if not keep and self.prefix and not self.kept then
    run { "rm", "-rf", "--", self.prefix }
  end
  return true
end

local function contains(text, what) return text:find(what, 1, true) ~= nil end

-- Starts nginx on one set of ports and waits until it listens (it writes the
-- pid file once every socket is bound). Returns server | nil, err, retry.
local function launch(server, deadline)
  local prefix = server.prefix
  local start_out = prefix .. "/logs/start.out"
  local pid, err = core.spawn({ nginx_binary(), "-p", prefix, "-c", "conf/nginx.conf", "-e", "logs/error.log" }, {
    pdeathsig = "TERM", group = true, stdin = "/dev/null", stdout = start_out, stderr = start_out,
  })
  if not pid then return nil, err end
  server.pid = pid
  local pidfile = prefix .. "/logs/nginx.pid"
  repeat
    local exited = server:wait(0.005)
    if tonumber(read_file(pidfile) or "") == pid then return server end
    local log = (read_file(start_out) or "") .. server:error_log()
    -- nginx retries a busy port for 2.5 s: no need to watch it do so.
    if contains(log, "Address already in use") or exited then
      server:stop(true)
      return nil, log, contains(log, "Address already in use")
    end
  until core.now() > deadline
  local log = server:error_log()
  server:stop(true)
  return nil, "nginx did not start in time\n" .. log
end

--- Start nginx, in the foreground as a child of this process, so that it
-- dies with it (kill -9 included) and a Ctrl-C reaches it only through us.
-- opts.http(ports, server) -> string: directives for inside `http {}`; it
-- must `listen 127.0.0.1:<port>` on the ports it was given.
-- opts.ports: how many free ports to hand it (default 1); opts.port: this
-- one port instead (a busy one is an error of kind "port_in_use").
-- opts.workers (default 1), opts.prefix (default: a new temporary folder),
-- opts.main: extra main-context directives (e.g. `env FOO;`).
-- Returns a Server with .pid, .port, .ports, .prefix, .url, or nil, err.
--- server_block{ port, directives = {...}, locations = { {match, directives = {...}}, ... } }
-- -> the text of one loopback server {} for opts.http: the only place that
-- writes nginx configuration (a location's match is "/x", "= /x", ...).
function M.server_block(o)
  local out = { "server {", "  listen 127.0.0.1:" .. assert(tonumber(o.port), "server_block: port") .. ";" }
  for _, d in ipairs(o.directives or {}) do out[#out + 1] = "  " .. d end
  for _, loc in ipairs(o.locations or {}) do
    out[#out + 1] = "  location " .. loc.match .. " {"
    for _, d in ipairs(loc.directives or {}) do out[#out + 1] = "    " .. d end
    out[#out + 1] = "  }"
  end
  out[#out + 1] = "}"
  return table.concat(out, "\n")
end

--- lua_string(s) -> s as a Lua string literal, for code written into a config.
function M.lua_string(s) return string.format("%q", tostring(s)) end

function M.start(opts)
  assert(type(opts) == "table" and type(opts.http) == "function",
    "nginx_process.start: opts.http must be a function(ports, server) -> string")
  assert(opts.port == nil or (type(opts.port) == "number" and opts.port % 1 == 0),
    "nginx_process.start: opts.port must be an integer")
  local prefix = opts.prefix
  if not prefix then prefix = first_line("mktemp -d -t aa-nginx.XXXXXXXX") end
  if not prefix or prefix == "" then return nil, "cannot create a temporary prefix" end
  run { "mkdir", "-p", prefix .. "/logs", prefix .. "/conf", prefix .. "/tmp" }
  local lua_path, lua_cpath = M.lua_paths()
  local nports = opts.ports or 1
  math.randomseed(os.time() + math.floor((os.clock() * 1e6)) + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
  local last_err
  local deadline = core.now() + 20
  for _ = 1, opts.port and 1 or 25 do
    local ports = {}
    local base = math.random(20000, 59000)
    for i = 1, nports do ports[i] = base + (i - 1) * 7 end
    if opts.port then ports = { opts.port } end
    local server = setmetatable({ prefix = prefix, ports = ports, port = ports[1],
      url = "http://127.0.0.1:" .. ports[1] }, Server)
    local conf = {}
    for _, m in ipairs(MODULES) do conf[#conf + 1] = "load_module " .. m .. ";" end
    if is_root() then conf[#conf + 1] = "user root;" end
    conf[#conf + 1] = ("worker_processes %d;"):format(opts.workers or 1)
    conf[#conf + 1] = "daemon off;"
    conf[#conf + 1] = "master_process on;"
    conf[#conf + 1] = "pid logs/nginx.pid;"
    conf[#conf + 1] = "error_log logs/error.log " .. (opts.log_level or "warn") .. ";"
    conf[#conf + 1] = opts.main or ""
    conf[#conf + 1] = "events { worker_connections 1024; }"
    conf[#conf + 1] = "http {"
    conf[#conf + 1] = "  access_log off;"
    for _, t in ipairs { "client_body", "proxy", "fastcgi", "uwsgi", "scgi" } do
      conf[#conf + 1] = ("  %s_temp_path tmp/%s;"):format(t, t)
    end
    conf[#conf + 1] = ('  lua_package_path "%s";'):format(lua_path)
    conf[#conf + 1] = ('  lua_package_cpath "%s";'):format(lua_cpath)
    conf[#conf + 1] = opts.http(ports, server)
    conf[#conf + 1] = "}"
    write_file(prefix .. "/conf/nginx.conf", table.concat(conf, "\n") .. "\n")
    write_file(prefix .. "/logs/error.log", "")
    write_file(prefix .. "/logs/start.out", "")
    os.remove(prefix .. "/logs/nginx.pid")
    local started, err, busy = launch(server, deadline)
    if started then return started end
    last_err = err
    if busy and opts.port then
      run { "rm", "-rf", "--", prefix }
      return nil, errors.make("port_in_use", "port " .. opts.port .. " is in use", nil, { port = opts.port })
    end
    if not busy or core.now() > deadline then break end
  end
  run { "rm", "-rf", "--", prefix }
  return nil, "nginx did not start: " .. (last_err or "?")
end

return M
