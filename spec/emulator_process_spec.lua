-- The emulator's nginx is supervised (issue 14, items 9 and 10): signals stop
-- it before the CLI exits, a killed parent takes it along, a busy port is
-- reported at once. Everything runs on free loopback ports.
local core = require "account_activity.core"
local nginx_process = require "account_activity.nginx_process"
local INTERP = require "spec_lua"
local H = require "emulator_helper"

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- A scratch folder (and its .out/.err files), removed however the test ends.
local function scratch()
  local p = io.popen("mktemp -d /tmp/aa-proc-spec.XXXXXX")
  local d = p:read("*l")
  p:close()
  finally(function() os.execute("rm -rf " .. d .. " " .. d .. ".out " .. d .. ".err " .. d .. ".lua") end)
  return d
end

local function ls(dir)
  local p = io.popen("ls -A " .. dir .. " 2>/dev/null")
  local names = {}
  for l in p:lines() do names[#names + 1] = l end
  p:close()
  return names
end

-- A live process (a zombie is dead: PID 1 here may never reap it).
local function alive(pid)
  local stat = read("/proc/" .. pid .. "/stat")
  return stat ~= nil and stat:match("^%d+ %b() (%a)") ~= "Z"
end

local function children(pid)
  local kids = {}
  for _, name in ipairs(ls("/proc")) do
    if name:match("^%d+$") then
      local stat = read("/proc/" .. name .. "/stat")
      local ppid = stat and stat:match("^%d+ %b() %a (%d+)")
      if ppid and tonumber(ppid) == pid then kids[#kids + 1] = tonumber(name) end
    end
  end
  return kids
end

-- The nginx master listening on port, its workers and its prefix.
local function find_nginx(port)
  for _, name in ipairs(ls("/proc")) do
    local cmd = name:match("^%d+$") and (read("/proc/" .. name .. "/cmdline") or ""):gsub("%z", " ")
    local prefix = cmd and cmd:find("nginx: master", 1, true) and cmd:match("%-p (%S+)")
    if prefix and (read(prefix .. "/conf/nginx.conf") or ""):find("listen 127.0.0.1:" .. port .. ";", 1, true) then
      return tonumber(name), children(tonumber(name)), prefix
    end
  end
end

-- The CLI (`bin/account-activity emulator ARGS`), its stdout and stderr in files.
local function start_cli(tmp, args)
  local argv = { "env", "TMPDIR=" .. tmp, INTERP, "bin/account-activity", "emulator" }
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  return assert(core.spawn(argv, { stdin = "/dev/null", stdout = tmp .. ".out", stderr = tmp .. ".err" }))
end

describe("account-activity emulator (the CLI)", function()
  for _, sig in ipairs { "INT", "TERM", "HUP" } do
    it("on SIG" .. sig .. " stops nginx and removes its prefix before it exits", function()
      local tmp = scratch()
      local cli = start_cli(tmp)
      local port = H.wait_for(function() return (read(tmp .. ".out") or ""):match("listening on http://127%.0%.0%.1:(%d+)") end, 20)
      assert.truthy(port, "the emulator did not start: " .. tostring(read(tmp .. ".err")))
      local master, workers, prefix = find_nginx(port)
      assert.is_number(master, "no nginx master on port " .. port)
      assert.is_true(#workers >= 1)
      assert.is_true(core.kill(cli, sig))
      local exited, status = core.wait(cli, 10)
      if not exited then core.kill(cli, "KILL"); core.wait(cli, 5) end
      assert.is_true(exited, "the CLI ignored SIG" .. sig)
      assert.are.equal(0, status)
      -- already gone when the CLI is: the master, every worker, the prefix
      assert.is_false(alive(master), "nginx master outlived the CLI")
      for _, w in ipairs(workers) do assert.is_false(alive(w), "an nginx worker outlived the CLI") end
      assert.is_nil(io.open(prefix), "the prefix outlived the CLI")
      assert.are.same({}, ls(tmp))
    end)
  end

  it("says at once that a busy --port is in use, exits 2 and leaves nothing", function()
    local busy = assert(nginx_process.start { http = function(p) return "server { listen 127.0.0.1:" .. p[1] .. "; }" end })
    local tmp = scratch()
    local t0 = core.now()
    local cli = start_cli(tmp, { "--port", tostring(busy.port) })
    local exited, status = core.wait(cli, 10)
    if not exited then core.kill(cli, "KILL"); core.wait(cli, 5) end
    local took = core.now() - t0
    busy:stop()
    local err = read(tmp .. ".err") or ""
    local left = ls(tmp)
    assert.is_true(exited, "the CLI was still trying after 10 s")
    assert.are.equal(2, status)
    assert.is_true(took < 5, ("took %.1f s"):format(took))
    assert.are.equal("account-activity emulator: port " .. busy.port .. " is in use\n", err)
    assert.are.same({}, left)
  end)
end)

describe("account-activity events tail", function()
  it("on SIGTERM stops its endpoint's nginx and removes its prefix before it exits", function()
    local tmp = scratch()
    local cli = assert(core.spawn({ "env", "TMPDIR=" .. tmp, "TWITTER_CONSUMER_SECRET=spec-secret", INTERP,
      "bin/account-activity", "events", "tail" }, { stdin = "/dev/null", stdout = tmp .. ".out", stderr = tmp .. ".err" }))
    local port = H.wait_for(function() return (read(tmp .. ".err") or ""):match("listening on http://127%.0%.0%.1:(%d+)") end, 20)
    assert.truthy(port, "the endpoint did not start: " .. tostring(read(tmp .. ".err")))
    local master, workers, prefix = find_nginx(port)
    assert.is_number(master, "no nginx master on port " .. port)
    assert.is_true(core.kill(cli, "TERM"))
    local exited = core.wait(cli, 10)
    if not exited then core.kill(cli, "KILL"); core.wait(cli, 5) end
    assert.is_true(exited, "events tail ignored SIGTERM")
    assert.is_false(alive(master), "nginx master outlived events tail")
    for _, w in ipairs(workers) do assert.is_false(alive(w), "an nginx worker outlived events tail") end
    assert.is_nil(io.open(prefix), "the prefix outlived events tail")
  end)
end)

describe("the emulator library", function()
  it("returns err.kind 'port_in_use' for a busy port", function()
    local busy = assert(nginx_process.start { http = function(p) return "server { listen 127.0.0.1:" .. p[1] .. "; }" end })
    local emu, err = require("account_activity.emulator").start { port = busy.port }
    busy:stop()
    if emu then emu:stop() end
    assert.is_nil(emu)
    assert.are.equal("port_in_use", err.kind)
    assert.are.equal("port " .. busy.port .. " is in use", err.message)
  end)

  it("leaves no nginx behind when the Lua process that started it is killed (kill -9, whole group)", function()
    local tmp = scratch()
    local script = tmp .. ".lua"
    local f = assert(io.open(script, "w"))
    f:write([[
      local emu = assert(require("account_activity.emulator").start {})
      io.stdout:write(emu.server.pid, " ", emu.prefix, "\n")
      io.stdout:flush()
      require("account_activity.core").sleep(120)
    ]])
    f:close()
    -- its own process group, as `timeout` or Ctrl-C on `make test` would hit
    local lua = assert(core.spawn({ "env", "TMPDIR=" .. tmp, INTERP, script },
      { group = true, stdin = "/dev/null", stdout = tmp .. ".out", stderr = tmp .. ".err" }))
    local line = H.wait_for(function() return (read(tmp .. ".out") or ""):match("^%d+ %S+\n") end, 20)
    assert.truthy(line, "the emulator did not start: " .. tostring(read(tmp .. ".err")))
    local master, prefix = line:match("^(%d+) (%S+)")
    master = tonumber(master)
    local workers = children(master)
    assert.is_true(alive(master))
    assert.is_true(#workers >= 1)
    assert.is_true(core.kill(-lua, "KILL"))
    assert.are.same({ true, "KILL" }, { core.wait(lua, 5) })
    local gone = H.wait_for(function()
      if alive(master) then return false end
      for _, w in ipairs(workers) do if alive(w) then return false end end
      return true
    end, 5)
    if not gone then -- leave nothing behind either way
      core.kill(master, "KILL")
      for _, w in ipairs(workers) do core.kill(w, "KILL") end
    end
    -- the prefix may stay on kill -9: nobody is left to remove it
    if prefix:match("^/tmp/aa%-") then os.execute("rm -rf '" .. prefix .. "'") end
    assert.is_true(gone, "nginx (master " .. master .. ") outlived the killed Lua process")
  end)

  it("stop() leaves no worker behind, even one stuck in a busy handler", function()
    local srv = assert(nginx_process.start { http = function(p)
      return "server { listen 127.0.0.1:" .. p[1] .. "; location / { content_by_lua_block { while true do end } } }"
    end })
    local workers = children(srv.pid)
    assert.is_true(#workers >= 1)
    local s = core.session { timeout = 1 }
    s:request { method = "GET", url = srv.url .. "/" } -- times out: the worker spins
    s:close()
    local t0 = core.now()
    srv:stop()
    local took = core.now() - t0
    local left = {}
    for _, w in ipairs(workers) do if alive(w) then left[#left + 1] = w; core.kill(w, "KILL") end end
    assert.are.same({}, left, "a busy worker outlived stop()")
    assert.is_true(took < 8, ("stop took %.1f s"):format(took))
  end)
end)
