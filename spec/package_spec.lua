-- Packaging: `luarocks make` of the rockspec into a scratch tree installs a
-- module that loads (Lua 5.4 and the 5.1 ABI that LuaJIT/OpenResty use),
-- with every Lua module of lua/ and the command line tool; an installed copy
-- (`make install`, or LuaRocks) runs the CLI and the emulator with no
-- LUA_PATH and no AA_* variable.
local core = require "account_activity.core"
local root = (os.getenv("PWD") or ".")

-- What a user's login shell would hand over: no LUA_*, no AA_*, no sbin.
local CLEAN_ENV = { "env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/tmp" }

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- Runs argv in CLEAN_ENV -> exit status, stdout, stderr.
local function run_clean(tmp, argv)
  local full = {}
  for _, a in ipairs(CLEAN_ENV) do full[#full + 1] = a end
  for _, a in ipairs(argv) do full[#full + 1] = a end
  os.remove(tmp .. "/run.out")
  os.remove(tmp .. "/run.err")
  local pid = assert(core.spawn(full, { stdin = "/dev/null", stdout = tmp .. "/run.out", stderr = tmp .. "/run.err" }))
  local exited, status = core.wait(pid, 60)
  if not exited then core.kill(pid, "KILL"); core.wait(pid, 5) end
  return status, read(tmp .. "/run.out") or "", read(tmp .. "/run.err") or ""
end

-- The installed CLI: --print-config, an emulator started and stopped, and
-- one client call against it.
local function exercise_installed_cli(tmp, bin)
  local status, cfg, err = run_clean(tmp, { bin, "emulator", "--print-config" })
  assert.are.equal(0, status, err)
  assert.matches('"consumer_key"', cfg)
  local cfg_file = tmp .. "/emu.json"
  local f = assert(io.open(cfg_file, "w"))
  f:write(cfg)
  f:close()
  local argv = {}
  for _, a in ipairs(CLEAN_ENV) do argv[#argv + 1] = a end
  argv[#argv + 1] = bin
  argv[#argv + 1] = "emulator"
  local emu = assert(core.spawn(argv, { stdin = "/dev/null", stdout = tmp .. "/emu.out", stderr = tmp .. "/emu.err" }))
  local url
  local deadline = core.now() + 30
  repeat
    url = (read(tmp .. "/emu.out") or ""):match("listening on (http://%S+)")
    if not url then core.sleep(0.02) end
  until url or core.now() > deadline or core.wait(emu, 0)
  if not url then core.kill(emu, "KILL"); core.wait(emu, 5) end
  assert.truthy(url, "the installed emulator did not start: " .. tostring(read(tmp .. "/emu.err")))
  local st, out, e = run_clean(tmp, { bin, "--config", cfg_file, "--base-url", url, "webhooks", "list" })
  core.kill(emu, "INT")
  local stopped, emu_status = core.wait(emu, 10)
  if not stopped then core.kill(emu, "KILL"); core.wait(emu, 5) end
  assert.are.equal(0, st, e)
  assert.are.equal("no webhooks\n", out:lower())
  assert.are.same({ true, 0 }, { stopped, emu_status })
  -- events tail: its nginx workers answer a CRC with the installed modules
  argv = {}
  for _, a in ipairs(CLEAN_ENV) do argv[#argv + 1] = a end
  for _, a in ipairs { "TWITTER_CONSUMER_SECRET=spec-secret", bin, "events", "tail" } do argv[#argv + 1] = a end
  local tail = assert(core.spawn(argv, { stdin = "/dev/null", stdout = tmp .. "/tail.out", stderr = tmp .. "/tail.err" }))
  local hook
  deadline = core.now() + 30
  repeat
    hook = (read(tmp .. "/tail.err") or ""):match("listening on (http://%S+)")
    if not hook then core.sleep(0.02) end
  until hook or core.now() > deadline or core.wait(tail, 0)
  local res
  if hook then
    local session = core.session { timeout = 10 }
    res = session:request { method = "GET", url = hook .. "?crc_token=0123456789abcdef" }
    session:close()
  end
  core.kill(tail, "INT")
  if not core.wait(tail, 10) then core.kill(tail, "KILL"); core.wait(tail, 5) end
  assert.truthy(hook, "events tail did not start: " .. tostring(read(tmp .. "/tail.err")))
  assert.are.equal(200, res and res.status, res and res.body)
  assert.matches('"response_token"', res.body)
end

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
  local out = p:read("*a")
  p:close()
  return out:match("rc=(%d+)%s*$") == "0", out
end

local function lua_files()
  local files = {}
  local p = io.popen("cd " .. root .. "/lua && find account_activity -name '*.lua' | sort")
  for f in p:lines() do files[#files + 1] = f end
  p:close()
  return files
end

describe("the rockspec", function()
  local tmp
  setup(function()
    local p = io.popen("mktemp -d /tmp/aa-rock.XXXXXX")
    tmp = p:read("*l")
    p:close()
    -- build from a copy: luarocks writes objects into the source tree
    assert(sh(("mkdir -p %s/src && cd %s && cp -r Makefile src lua bin rockspec examples %s/src"):format(tmp, root, tmp)))
  end)
  teardown(function() if tmp then os.execute("rm -rf " .. tmp) end end)

  for _, v in ipairs { { "5.1", "luajit" }, { "5.4", "lua5.4" } } do
    local abi, interp = v[1], v[2]
    it("installs with luarocks make for Lua " .. abi .. " and loads in " .. interp, function()
      local tree = tmp .. "/tree" .. abi
      local ok, out = sh(("cd %s/src && luarocks --lua-version %s make --deps-mode=none --tree %s "
        .. "rockspec/lua-account-activity-scm-1.rockspec"):format(tmp, abi, tree))
      assert(ok, out)
      local env = ("LUA_PATH='%s/share/lua/%s/?.lua;%s/share/lua/%s/?/init.lua;;' LUA_CPATH='%s/lib/lua/%s/?.so;;' ")
        :format(tree, abi, tree, abi, tree, abi)
      local ok2, out2 = sh(env .. interp .. [[ -e '
        local core = require "account_activity.core"
        local aa = require "account_activity"
        assert(aa.crc_response("s", "0123456789abcdef") == "sha256=" .. core.base64_encode(core.hmac_sha256("s", "0123456789abcdef")))
        assert(package.searchpath("account_activity.core", package.cpath):find("]] .. tree .. [[", 1, true))
        print("loaded", core.version().version)']])
      assert(ok2, out2)
      assert.matches("loaded%s0%.1%.0", out2)
      for _, f in ipairs(lua_files()) do
        local fh = io.open(("%s/share/lua/%s/%s"):format(tree, abi, f))
        assert(fh, f .. " was not installed")
        fh:close()
      end
      local bin = io.open(tree .. "/bin/account-activity")
      assert(bin, "bin/account-activity was not installed")
      bin:close()
    end)
  end

  it("runs the CLI and the emulator from the 5.4 tree alone with no extra variables", function()
    exercise_installed_cli(tmp, tmp .. "/tree5.4/bin/account-activity")
  end)
end)

describe("make install", function()
  it("installs a copy whose CLI and emulator run from anywhere with no extra variables", function()
    local tmp = io.popen("mktemp -d /tmp/aa-install.XXXXXX"):read("*l")
    local prefix = tmp .. "/prefix with space"
    local ok, out = sh(("cd %s && make -s install PREFIX='%s'"):format(root, prefix))
    assert(ok, out)
    for _, abi in ipairs { "5.1", "5.4" } do
      assert.truthy(read(prefix .. "/lib/lua/" .. abi .. "/account_activity/core.so"), "no " .. abi .. " build")
      assert.truthy(read(prefix .. "/share/lua/" .. abi .. "/account_activity/init.lua"), "no " .. abi .. " modules")
    end
    local ok2, err = pcall(exercise_installed_cli, tmp, prefix .. "/bin/account-activity")
    os.execute("rm -rf '" .. tmp .. "'")
    assert(ok2, err)
  end)
end)

describe("the C build", function()
  for _, cc in ipairs { "gcc", "clang" } do
    for _, lua in ipairs { "lua5.4", "luajit" } do
      it(("is -Wall -Wextra -Wpedantic -Werror clean with %s for %s, exports one symbol, links no Lua"):format(cc, lua), function()
        local build = ("/tmp/aa-build-%s-%s-%d"):format(cc, lua, os.time())
        local ok, out = sh(("cd %s && make -s LUA=%s CC=%s BUILD=%s"):format(root, lua, cc, build))
        assert(ok, out)
        local so = build .. "/account_activity/core.so"
        local _, syms = sh("nm -D --defined-only " .. so .. " | awk '{print $3}' | grep -v '^_'")
        assert.are.equal("luaopen_account_activity_core", (syms:gsub("%s*rc=%d+%s*$", "")))
        local _, libs = sh("ldd " .. so)
        assert.is_nil(libs:find("liblua", 1, true))
        assert.is_nil(libs:find("libluajit", 1, true))
        os.execute("rm -rf " .. build)
      end)
    end
  end
end)
