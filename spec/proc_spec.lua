-- The C core's signals and processes (src/proc.c): what the emulator CLI and
-- nginx_process use to answer Ctrl-C and to supervise nginx.
local core = require "account_activity.core"

local INTERP = require "spec_lua"

local function own_pid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = f:read("*n")
  f:close()
  return pid
end

-- Runs `code` in a fresh interpreter; returns the shell's exit status.
local function run_lua(code)
  local f = os.tmpname()
  local fh = assert(io.open(f, "w"))
  fh:write(code)
  fh:close()
  local p = io.popen(INTERP .. " " .. f .. " >/dev/null 2>&1; echo $?")
  local rc = tonumber(p:read("*l"))
  p:close()
  os.remove(f)
  return rc
end

describe("core.signal_catch / signal_pending / signal_reset", function()
  after_each(function() core.signal_reset() end)

  it("records a caught signal until it is taken, once", function()
    assert.is_true(core.signal_catch { "USR1" })
    assert.is_nil(core.signal_pending())
    os.execute("kill -USR1 " .. own_pid())
    assert.are.equal("USR1", core.signal_pending())
    assert.is_nil(core.signal_pending())
  end)

  it("ends a core.sleep early, so the script answers at once", function()
    assert.is_true(core.signal_catch { "USR2", "HUP" })
    os.execute("(sleep 0.2; kill -HUP " .. own_pid() .. ") >/dev/null 2>&1 &")
    local t0 = core.now()
    core.sleep(10)
    assert.is_true(core.now() - t0 < 5, "the sleep was not interrupted")
    assert.are.equal("HUP", core.signal_pending())
  end)

  it("signal_reset puts back the previous disposition and forgets arrivals", function()
    -- default TERM kills the process: 143 from the shell
    assert.are.equal(143, run_lua([[
      local core = require "account_activity.core"
      core.signal_catch { "TERM" }
      core.signal_reset { "TERM" }
      os.execute("kill -TERM " .. io.open("/proc/self/stat"):read("*n"))
      core.sleep(2)
      os.exit(0)
    ]]))
    -- caught: the process lives and sees it
    assert.are.equal(7, run_lua([[
      local core = require "account_activity.core"
      core.signal_catch { "SIGTERM" }
      os.execute("kill -TERM " .. io.open("/proc/self/stat"):read("*n"))
      core.sleep(2)
      os.exit(core.signal_pending() == "TERM" and 7 or 1)
    ]]))
    core.signal_catch { "USR1" }
    os.execute("kill -USR1 " .. own_pid())
    core.signal_reset { "USR1" }
    assert.is_nil(core.signal_pending())
  end)

  it("names the argument on bad input", function()
    assert.has_error(function() core.signal_catch("INT") end,
      "bad argument 'names' to 'signal_catch' (an array of signal names expected, got string)")
    assert.has_error(function() core.signal_catch { "NOPE" } end,
      "bad argument 'names' to 'signal_catch' (cannot catch signal 'NOPE')")
    assert.has_error(function() core.signal_catch { "KILL" } end,
      "bad argument 'names' to 'signal_catch' (cannot catch signal 'KILL')")
    assert.has_error(function() core.signal_reset { 1 } end,
      "bad argument 'names' to 'signal_reset' (names[1] is a number, not a signal name)")
  end)
end)

describe("core.spawn / core.wait / core.kill", function()
  it("runs a program found on PATH and reports how it ended", function()
    local pid = assert(core.spawn { "sh", "-c", "exit 3" })
    assert.are.same({ true, 3 }, { core.wait(pid, 5) })
    pid = assert(core.spawn { "sleep", "5" })
    assert.are.same({ false, "timeout" }, { core.wait(pid, 0.05) })
    assert.is_true(core.kill(pid, "TERM"))
    assert.are.same({ true, "TERM" }, { core.wait(pid, 5) })
    local ok, err = core.wait(pid, 0)
    assert.is_nil(ok)
    assert.matches("waitpid", err)
  end)

  it("returns nil, err when the program cannot run, and refuses bad arguments", function()
    local pid, err = core.spawn { "/nonexistent/aa-program" }
    assert.is_nil(pid)
    assert.matches("cannot run /nonexistent/aa%-program: No such file", err)
    pid, err = core.spawn({ "true" }, { stdout = "/nonexistent/dir/out" })
    assert.is_nil(pid)
    assert.matches("/nonexistent/dir/out", err)
    assert.has_error(function() core.spawn("sh") end,
      "bad argument 'argv' to 'spawn' (an array of strings expected, got string)")
    assert.has_error(function() core.spawn { "sh", 1 } end,
      "bad argument 'argv' to 'spawn' (argv[2] is a number, not a string)")
    assert.has_error(function() core.spawn { "a\0b" } end, "bad argument 'argv' to 'spawn' (argv[1] holds a NUL byte)")
    assert.has_error(function() core.spawn({ "true" }, { pdeathsig = "NOPE" }) end,
      "bad argument 'opts.pdeathsig' to 'spawn' (unknown signal 'NOPE')")
    assert.has_error(function() core.kill(1, "TERM") end)
    assert.has_error(function() core.kill(-1, "KILL") end)
    assert.has_error(function() core.kill(0) end)
    assert.has_error(function() core.wait(-5) end)
    assert.has_error(function() core.kill(12345, "BOGUS") end, "bad argument 'signal' to 'kill' (unknown signal 'BOGUS')")
  end)

  it("redirects stdio to files and keeps no other descriptor of ours open", function()
    local out = os.tmpname()
    local keep = assert(io.open(os.tmpname(), "w")) -- an fd the child must not inherit
    local pid = assert(core.spawn({ "sh", "-c", "echo hello; ls /proc/self/fd; echo oops >&2" },
      { stdin = "/dev/null", stdout = out, stderr = out }))
    assert.are.same({ true, 0 }, { core.wait(pid, 5) })
    keep:close()
    local text = io.open(out):read("*a")
    os.remove(out)
    assert.matches("^hello\n", text)
    assert.matches("oops", text)
    local fds = {}
    for fd in text:gmatch("\n(%d+)") do fds[#fds + 1] = tonumber(fd) end
    table.sort(fds)
    -- 0, 1, 2 and the one ls opens for /proc/self/fd
    assert.are.same({ 0, 1, 2, 3 }, fds)
  end)

  it("a pdeathsig child dies with its parent, kill -9 included", function()
    local pidfile = os.tmpname()
    -- an interpreter that spawns `sleep 60` with pdeathsig, then waits to be killed
    local code = ([[
      local core = require "account_activity.core"
      local pid = assert(core.spawn({ "sleep", "60" }, { pdeathsig = "TERM", group = true }))
      local f = io.open(%q, "w"); f:write(pid, "\n"); f:close()
      core.sleep(60)
    ]]):format(pidfile)
    local script = os.tmpname()
    local fh = assert(io.open(script, "w"))
    fh:write(code)
    fh:close()
    local parent = assert(core.spawn { INTERP, script })
    local child
    local deadline = core.now() + 10
    while not child and core.now() < deadline do
      local f = io.open(pidfile)
      child = f and tonumber(f:read("*l") or "")
      if f then f:close() end
      if not child then core.sleep(0.01) end
    end
    assert.is_number(child)
    assert.truthy(io.open("/proc/" .. child .. "/stat"), "the child did not start")
    assert.is_true(core.kill(parent, "KILL"))
    assert.are.same({ true, "KILL" }, { core.wait(parent, 5) })
    -- gone (or a zombie awaiting a PID 1 that may not reap) within a deadline
    local gone = false
    deadline = core.now() + 5
    while not gone and core.now() < deadline do
      local f = io.open("/proc/" .. child .. "/stat")
      local stat = f and f:read("*l")
      if f then f:close() end
      gone = not stat or stat:match("^%d+ %b() (%a)") == "Z"
      if not gone then core.sleep(0.01) end
    end
    os.remove(pidfile)
    os.remove(script)
    assert.is_true(gone, "the pdeathsig child outlived its parent")
  end)
end)
