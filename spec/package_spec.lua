-- Packaging: `luarocks make` of the rockspec into a scratch tree installs a
-- module that loads (Lua 5.4 and the 5.1 ABI that LuaJIT/OpenResty use),
-- with every Lua module of lua/ and the command line tool.
local root = (os.getenv("PWD") or ".")

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
