-- aa.token_store: the memory and file stores behind OAuth 2.0 user tokens.
local aa = require "account_activity"

local function token(n)
  return { access_token = "AT-secret-" .. n, refresh_token = "RT-secret-" .. n,
           expires_at = 1800000000 + n, scope = { "tweet.read", "dm.read" },
           token_type = "bearer", user_id = "42" }
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function mode(path)
  local p = io.popen("stat -c %a " .. path)
  local m = p:read("*l")
  p:close()
  return m
end

for _, kind in ipairs { "memory", "file" } do
  describe("token_store." .. kind, function()
    local path, store
    before_each(function()
      path = os.tmpname()
      os.remove(path)
      store = kind == "memory" and aa.token_store.memory() or aa.token_store.file(path)
    end)
    after_each(function()
      os.remove(path)
      os.remove(path .. ".lock")
    end)

    it("puts, gets a copy, lists and deletes", function()
      assert.is_nil(store:get("42"))
      assert.same({}, store:list())
      assert.is_true(store:put("42", token(1)))
      assert.is_true(store:put("7", token(2)))
      local t = store:get("42")
      assert.same(token(1), t)
      t.access_token = "changed"
      t.scope[1] = "changed"
      assert.same(token(1), store:get("42"))
      assert.same({ "42", "7" }, store:list())
      assert.is_true(store:delete("42"))
      assert.is_nil(store:get("42"))
      assert.same({ "7" }, store:list())
      assert.is_true(store:delete("42"))
    end)

    it("runs fn under lock and returns its results; a raise releases the lock", function()
      local a, b = store:lock("42", function() return "one", 2 end)
      assert.are.equal("one", a)
      assert.are.equal(2, b)
      assert.has_error(function() store:lock("42", function() error("boom") end) end, "boom")
      assert.are.equal("again", store:lock("42", function()
        assert.is_true(store:put("42", token(3))) -- a put inside the lock does not wait for itself
        return "again"
      end))
      assert.same(token(3), store:get("42"))
    end)

    it("never shows a token in tostring or pairs", function()
      store:put("42", token(1))
      local s = tostring(store)
      assert.matches("1 token", s)
      assert.is_nil(s:find("secret", 1, true))
      for k, v in pairs(store) do
        assert.is_nil(tostring(k):find("secret", 1, true))
        assert.is_nil(tostring(v):find("secret", 1, true))
      end
    end)

    it("raises naming the argument on a wrong type", function()
      assert.has_error(function() store:get(42) end, "bad argument 'user_id' to 'get' (expected a decimal id string, got number)")
      assert.has_error(function() store:put("42", {}) end)
      assert.has_error(function() store:put("42", "x") end, "bad argument 'token' to 'put' (table expected, got string)")
      assert.has_error(function() store:lock("42") end, "bad argument 'fn' to 'lock' (function expected, got nil)")
    end)
  end)
end

describe("token_store.file on disk", function()
  local path
  before_each(function()
    path = os.tmpname()
    os.remove(path)
  end)
  after_each(function()
    os.remove(path)
    os.remove(path .. ".lock")
  end)

  it("writes one JSON file of mode 0600 by rename, readable by a second store", function()
    local a = aa.token_store.file(path)
    assert.is_true(a:put("42", token(1)))
    assert.are.equal("600", mode(path))
    assert.matches('"tokens"', read(path))
    local b = aa.token_store.file(path)
    assert.same(token(1), b:get("42"))
    b:put("42", token(2))
    assert.same(token(2), a:get("42")) -- read from disk each time, not cached
    local p = io.popen("ls -a " .. path:match("^(.*)/") .. " | grep -c '" .. path:match("([^/]+)$") .. "%..*tmp' || true")
    local leftovers = p:read("*l")
    p:close()
    assert.are.equal("0", leftovers)
  end)

  it("a broken file gives nil, err of kind store without its content", function()
    local f = io.open(path, "wb")
    f:write('not json AT-secret-9')
    f:close()
    local s = aa.token_store.file(path)
    local t, err = s:get("42")
    assert.is_nil(t)
    assert.are.equal("store", err.kind)
    assert.is_nil(tostring(err):find("secret", 1, true))
    local ok, perr = s:put("42", token(1))
    assert.is_nil(ok)
    assert.are.equal("store", perr.kind)
  end)

  it("lock excludes another process until released; a waiter past lock_timeout gets nil, err", function()
    local lua = os.getenv("AA_SPEC_LUA") or "lua5.4"
    local s = aa.token_store.file(path)
    local code = ([[local aa = require "account_activity"
      local s = aa.token_store.file(%q, { lock_timeout = 0.3 })
      local r, err = s:lock("42", function() return "inside" end)
      io.write(r or err.kind .. ": " .. err.message)]]):format(path)
    local out = s:lock("42", function()
      local p = io.popen(lua .. " -e " .. string.format("%q", code))
      local o = p:read("*a")
      p:close()
      return o
    end)
    assert.matches("^store: timed out", out)
    local p = io.popen(lua .. " -e " .. string.format("%q", code))
    assert.are.equal("inside", p:read("*a"))
    p:close()
  end)

  it("is_store accepts a user's own store table", function()
    local ts = require "account_activity.token_store"
    assert.is_true(ts.is_store(aa.token_store.memory()))
    assert.is_true(ts.is_store({ get = print, put = print, delete = print, list = print, lock = print }))
    assert.is_false(ts.is_store({ get = print }))
  end)
end)

describe("store:lock inside nginx (light threads of one worker)", function()
  -- A stand-in for ngx: a content phase whose sleep yields to a scheduler,
  -- as a cosocket wait lets another light thread run.
  local saved
  before_each(function()
    saved = rawget(_G, "ngx")
    local t = 0
    _G.ngx = { get_phase = function() return "content" end, now = function() return t end,
               update_time = function() t = t + 0.001 end, sleep = function() coroutine.yield() end }
  end)
  after_each(function() _G.ngx = saved end)

  for _, kind in ipairs { "memory", "file" } do
    it(kind .. ": a second thread for the same user waits until the first is done", function()
      local path = os.tmpname()
      local store = kind == "memory" and aa.token_store.memory() or aa.token_store.file(path)
      local log = {}
      local function worker(name)
        return coroutine.create(function()
          store:lock("42", function()
            log[#log + 1] = name .. " in"
            coroutine.yield() -- the refresh's HTTP wait
            log[#log + 1] = name .. " out"
          end)
        end)
      end
      local a, b = worker("a"), worker("b")
      for _ = 1, 10 do
        if coroutine.status(a) ~= "dead" then assert(coroutine.resume(a)) end
        if coroutine.status(b) ~= "dead" then assert(coroutine.resume(b)) end
      end
      assert.same({ "a in", "a out", "b in", "b out" }, log)
      os.remove(path)
      os.remove(path .. ".lock")
    end)
  end
end)
