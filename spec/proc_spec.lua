-- The C core's signals and processes (src/proc.c): what the emulator CLI and
-- nginx_process use to answer Ctrl-C and to supervise nginx.
local core = require "account_activity.core"

local INTERP = os.getenv("AA_SPEC_LUA") or "lua5.4"

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
