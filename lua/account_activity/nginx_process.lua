--- Start and stop a private nginx (with the lua module) in a temporary prefix.
-- Used by the emulator launcher, the demo and the integration specs: each
-- instance listens on free loopback ports only and is torn down by :stop().
local M = {}

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- os.execute returns a number on Lua 5.1/LuaJIT and (ok, how, code) on 5.2+.
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
-- also for callers polling a file a server writes (the CLI's redirect receiver)
M.read_file = read_file

local function write_file(path, data)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  f:write(data)
  f:close()
  return true
end

-- The source tree this file lives in (…/lua/account_activity/nginx_process.lua),
-- so a checkout works without installing anything.
local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  local p = io.popen("pwd")
  local pwd = p:read("*l")
  p:close()
  return pwd .. "/" .. path:gsub("^%./", "")
end

-- The checkout this file lives in (.../lua/account_activity/nginx_process.lua),
-- however it was found (a relative LUA_PATH included).
local function source_root()
  local src = debug.getinfo(1, "S").source
  if src:sub(1, 1) ~= "@" then return nil end
  return absolute(src:sub(2)):match("^(.*)/lua/account_activity/[^/]*$")
end

--- Lua search paths for the nginx workers (LuaJIT): this checkout's lua/ and
-- build/luajit/ first, then whatever AA_NGINX_LUA_PATH / AA_NGINX_LUA_CPATH add.
function M.lua_paths()
  local path, cpath = {}, {}
  local root = source_root()
  if root then
    path[#path + 1] = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua"
    cpath[#cpath + 1] = root .. "/build/luajit/?.so"
  end
  local ep, ec = os.getenv("AA_NGINX_LUA_PATH"), os.getenv("AA_NGINX_LUA_CPATH")
  if ep then path[#path + 1] = ep end
  if ec then cpath[#cpath + 1] = ec end
  -- LuaJIT's standard places, spelled out: ";;" would splice in the
  -- LUA_PATH/LUA_CPATH inherited from a Lua 5.4 parent, whose C modules
  -- cannot load into nginx's LuaJIT.
  path[#path + 1] = "/usr/local/share/lua/5.1/?.lua;/usr/local/share/lua/5.1/?/init.lua;"
    .. "/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua"
  local multiarch = "/usr/lib/x86_64-linux-gnu/lua/5.1/?.so"
  local p = io.popen("dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch 2>/dev/null")
  local arch = p and p:read("*l")
  if p then p:close() end
  if arch and arch ~= "" then multiarch = "/usr/lib/" .. arch .. "/lua/5.1/?.so" end
  cpath[#cpath + 1] = "/usr/local/lib/lua/5.1/?.so;" .. multiarch .. ";/usr/lib/lua/5.1/?.so"
  return table.concat(path, ";"), table.concat(cpath, ";")
end

local MODULES = {
  "/usr/lib/nginx/modules/ndk_http_module.so",
  "/usr/lib/nginx/modules/ngx_http_lua_module.so",
}

local function is_root()
  local p = io.popen("id -u 2>/dev/null")
  local uid = p and p:read("*l")
  if p then p:close() end
  return uid == "0"
end

-- This Lua process's pid (Linux), for the watchdog below.
local function own_pid()
  local f = io.open("/proc/self/stat")
  if not f then return nil end
  local pid = f:read("*n")
  f:close()
  return pid
end

-- A detached shell that stops nginx (and removes its prefix) once the Lua
-- process that started it is gone: a spec run that is killed or crashes
-- must not leave servers behind. It exits by itself when nginx stops first.
local function start_watchdog(server)
  local parent = own_pid()
  if not parent or not server.pid then return end
  local script = ("while kill -0 %d 2>/dev/null && kill -0 %d 2>/dev/null; do sleep 1; done; "
    .. "if kill -0 %d 2>/dev/null; then kill -TERM %d; sleep 1; kill -KILL %d 2>/dev/null; rm -rf %s; fi")
    :format(parent, server.pid, server.pid, server.pid, server.pid, shell_quote(server.prefix))
  run("sh -c " .. shell_quote(script) .. " </dev/null >/dev/null 2>&1 &")
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

function Server:alive()
  return self.pid ~= nil and run("kill -0 " .. self.pid .. " 2>/dev/null")
end

--- Stop nginx (fast shutdown) and wait until the master is gone; removes the
-- prefix unless `keep` is true. Idempotent.
function Server:stop(keep)
  if self.pid then
    run("kill -TERM " .. self.pid .. " 2>/dev/null")
    for _ = 1, 200 do
      if not self:alive() then break end
      run("sleep 0.02")
    end
    if self:alive() then run("kill -KILL " .. self.pid .. " 2>/dev/null") end
    self.pid = nil
  end
  if not keep and self.prefix and not self.kept then
    run("rm -rf " .. shell_quote(self.prefix))
  end
  return true
end

--- Start nginx.
-- opts.http(ports, server) -> string: directives for inside `http {}`; it
-- must `listen 127.0.0.1:<port>` on the ports it was given.
-- opts.ports: how many free ports to hand it (default 1).
-- opts.workers (default 1), opts.prefix (default: a new temporary folder),
-- opts.main: extra main-context directives (e.g. `env FOO;`).
-- opts.watchdog = false: let nginx outlive this process (a watchdog stops it
-- otherwise when this process ends without calling :stop()).
-- Returns a Server with .port, .ports, .prefix, .url, or nil, err.
function M.start(opts)
  assert(type(opts) == "table" and type(opts.http) == "function",
    "nginx_process.start: opts.http must be a function(ports, server) -> string")
  local prefix = opts.prefix
  if not prefix then
    local p = io.popen("mktemp -d /tmp/aa-nginx.XXXXXXXX")
    prefix = p:read("*l")
    p:close()
  end
  if not prefix or prefix == "" then return nil, "cannot create a temporary prefix" end
  for _, d in ipairs { "logs", "conf", "tmp" } do
    run("mkdir -p " .. shell_quote(prefix .. "/" .. d))
  end
  local lua_path, lua_cpath = M.lua_paths()
  local nports = opts.ports or 1
  math.randomseed(os.time() + math.floor((os.clock() * 1e6)) + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
  local last_err
  for _ = 1, 25 do
    local ports = {}
    local base = math.random(20000, 59000)
    for i = 1, nports do ports[i] = base + (i - 1) * 7 end
    local server = setmetatable({ prefix = prefix, ports = ports, port = ports[1],
      url = "http://127.0.0.1:" .. ports[1] }, Server)
    local conf = {}
    for _, m in ipairs(MODULES) do conf[#conf + 1] = "load_module " .. m .. ";" end
    if is_root() then conf[#conf + 1] = "user root;" end
    conf[#conf + 1] = ("worker_processes %d;"):format(opts.workers or 1)
    conf[#conf + 1] = "daemon on;"
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
    local ok = run("nginx -p " .. shell_quote(prefix) .. " -c conf/nginx.conf -e logs/error.log >"
      .. shell_quote(prefix .. "/logs/start.out") .. " 2>&1")
    if ok then
      local pid
      for _ = 1, 100 do
        pid = tonumber(read_file(prefix .. "/logs/nginx.pid") or "")
        if pid then break end
        run("sleep 0.01")
      end
      server.pid = pid
      if pid then
        if opts.watchdog ~= false then start_watchdog(server) end
        return server
      end
      last_err = "nginx started but wrote no pid file"
    else
      last_err = (read_file(prefix .. "/logs/start.out") or "") .. server:error_log()
      if not last_err:find("in use", 1, true) then break end
    end
  end
  run("rm -rf " .. shell_quote(prefix))
  return nil, "nginx did not start: " .. (last_err or "?")
end

return M
