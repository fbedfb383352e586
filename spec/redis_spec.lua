-- The Redis client (account_activity.redis) against a real redis-server:
-- the C core's hiredis connection in this interpreter, and the cosocket
-- implementation (hiredis's reader) inside nginx.
local core = require "account_activity.core"
local redis = require "account_activity.redis"
local redis_helper = require "redis_helper"
local nginx_process = require "account_activity.nginx_process"
local cjson = require "cjson"

describe("redis client", function()
  local srv

  setup(function()
    local err
    srv, err = redis_helper.start()
    assert(srv, err)
  end)

  teardown(function()
    if srv then srv:stop() end
  end)

  describe("C core (hiredis)", function()
    it("maps every reply type", function()
      local c = assert(redis.connect { port = srv.port })
      assert.are.same({ ok = "OK" }, c:command { "SET", "k1", "v1" })
      assert.are.equal("v1", c:command { "GET", "k1" })
      assert.are.equal(redis.null, c:command { "GET", "missing" })
      assert.are.equal(3, c:command { "RPUSH", "l1", "a", 2, "c" })
      assert.are.same({ "a", "2", "c" }, c:command { "LRANGE", "l1", 0, -1 })
      local r, err = c:command { "INCR", "l1" }
      assert.is_nil(r)
      assert.are.equal("redis", err.kind)
      assert.matches("WRONGTYPE", err.message)
      -- the connection is still usable after an error reply
      assert.are.equal("v1", c:command { "GET", "k1" })
      c:close()
      assert.matches("closed", tostring(c))
    end)

    it("pipelines in one round trip, error replies in place", function()
      local c = assert(redis.connect { port = srv.port })
      local replies = assert(c:pipeline { { "SET", "p", "1" }, { "INCR", "p" }, { "INCR", "l1" }, { "GET", "p" } })
      assert.are.same({ ok = "OK" }, replies[1])
      assert.are.equal(2, replies[2])
      assert.matches("WRONGTYPE", replies[3].err)
      assert.are.equal("2", replies[4])
      c:close()
    end)

    it("binary-safe values", function()
      local c = assert(redis.connect { port = srv.port })
      local blob = "a\0b\r\n$3\r\n" .. ("x"):rep(100000)
      c:command { "SET", "bin", blob }
      assert.are.equal(blob, c:command { "GET", "bin" })
      c:close()
    end)

    it("runs a script by EVALSHA, falling back to EVAL after SCRIPT FLUSH", function()
      local c = assert(redis.connect { port = srv.port })
      local src = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
      assert.are.equal(5, c:script(src, { "sc" }, { 5 }))
      assert.are.equal(10, c:script(src, { "sc" }, { 5 }))
      c:command { "SCRIPT", "FLUSH" }
      assert.are.equal(15, c:script(src, { "sc" }, { 5 }))
      c:close()
    end)

    it("gives up a read at its deadline, then reconnects", function()
      local c = assert(redis.connect { port = srv.port, timeout_ms = 200 })
      local t0 = core.now()
      local r, err = c:command { "BLPOP", "nothing-here", 5 }
      assert.is_nil(r)
      assert.are.equal("timeout", err.kind)
      assert.is_true(core.now() - t0 < 2)
      assert.are.same({ ok = "PONG" }, c:command { "PING" })
      c:close()
    end)

    it("reports a refused connection as nil, err(network)", function()
      local r, err = redis.connect { port = 1 }
      assert.is_nil(r)
      assert.are.equal("network", err.kind)
    end)

    it("authenticates, and never shows the password", function()
      local pw = "s3cret-redis-password-xyz"
      srv:cmd("CONFIG", "SET", "requirepass", pw)
      local ok, perr = pcall(function()
        local c = assert(redis.connect { port = srv.port, password = pw, db = 2 })
        assert.are.same({ ok = "OK" }, c:command { "SET", "in2", "yes" })
        assert.is_nil(tostring(c):find(pw, 1, true))
        c:close()
        local bad, err = redis.connect { port = srv.port, password = "wrong" }
        assert.is_nil(bad)
        assert.are.equal("auth", err.kind)
        assert.is_nil(tostring(err):find("wrong", 1, true))
        local raw = assert(core.redis_connect { port = srv.port, password = pw })
        assert.is_nil(tostring(raw):find(pw, 1, true))
        raw:close()
      end)
      local c = assert(core.redis_connect { port = srv.port, password = pw })
      c:command { "CONFIG", "SET", "requirepass", "" }
      c:close()
      assert(ok, perr)
    end)

    it("raises on bad arguments, naming them", function()
      assert.has_error(function() core.redis_connect { port = "x" } end,
        "bad argument 'port' to 'redis_connect' (number expected, got string)")
      local c = assert(redis.connect { port = srv.port })
      assert.has_error(function() c:command "PING" end,
        "bad argument 'argv' to 'command' (table expected, got string)")
      assert.has_error(function() c:command { "SET", {} } end)
      assert.has_error(function() redis.connect { port = srv.port, password = 5 } end,
        "bad argument 'password' to 'connect' (string expected, got number)")
      c:close()
    end)
  end)

  describe("reader and format", function()
    it("reads replies fed one byte at a time", function()
      local bytes = "+OK\r\n$5\r\nhe\r\nl\r\n*3\r\n:7\r\n$-1\r\n-ERR bad\r\n"
      local r = core.redis_reader()
      local got = {}
      for i = 1, #bytes do
        r:feed(bytes:sub(i, i))
        local v = r:get()
        if v ~= false then got[#got + 1] = v end
      end
      assert.are.same({ { ok = "OK" }, "he\r\nl", { 7, core.redis_null, { err = "ERR bad" } } }, got)
      assert.is_false(r:get())
    end)

    it("refuses a protocol error", function()
      local r = core.redis_reader()
      r:feed("?what\r\n")
      local v, err = r:get()
      assert.is_nil(v)
      assert.matches("protocol error", err)
    end)

    it("formats RESP", function()
      assert.are.equal("*2\r\n$3\r\nGET\r\n$2\r\na\0\r\n", core.redis_format { "GET", "a\0" })
    end)
  end)

  describe("cosockets inside nginx", function()
    local server, session
    setup(function()
      local err
      server, err = nginx_process.start { http = function(ports)
        return ([[
  server {
    listen 127.0.0.1:%d;
    location = /t {
      content_by_lua_block {
        local redis = require "account_activity.redis"
        local cjson = require "cjson"
        local out = {}
        local c, err = redis.connect { port = %d, timeout_ms = 300 }
        if not c then ngx.say(cjson.encode { err = tostring(err) }) return end
        out.kind = tostring(c):match("cosocket") or "?"
        out.set = c:command { "SET", "ng", ngx.var.arg_v }
        out.get = c:command { "GET", "ng" }
        out.null = c:command { "GET", "nothing" } == ngx.null
        out.pipe = c:pipeline { { "INCR", "ngc" }, { "INCR", "l1" }, { "GET", "ng" } }
        out.script = c:script("return ARGV[1] .. ARGV[1]", {}, { "ab" })
        local _, terr = c:command { "BLPOP", "nothing-here", 5 }
        out.timeout = terr and terr.kind
        c:close()
        local c2 = redis.connect { port = %d, timeout_ms = 300 }
        out.after = c2:command { "GET", "ng" }
        c2:close()
        local c3 = redis.connect { port = 1, timeout_ms = 300 }
        out.refused = c3 == nil
        ngx.say(cjson.encode(out))
      }
    }
    location = /shared {
      content_by_lua_block {
        local redis = require "account_activity.redis"
        local cjson = require "cjson"
        local opts = redis.options { port = %d, timeout_ms = 300, password = "not-a-secret-shown" }
        local sh = redis.shared(opts)
        local out = { same = sh == redis.shared(opts) and sh == redis.shared { port = %d, timeout_ms = 300,
          password = "not-a-secret-shown" }, other = sh ~= redis.shared { port = %d, timeout_ms = 301 } }
        out.set = sh:command { "SET", "sh", "v1" }
        out.get = sh:command { "GET", "sh" }
        local _, werr = sh:command { "INCR", "sh" }
        out.wrongtype = werr and werr.kind
        out.script = sh:script("return ARGV[1] .. KEYS[1]", { "k" }, { "a" })
        local _, terr = sh:command { "BLPOP", "nothing-here", 5 }
        out.timeout = terr and terr.kind
        out.after = sh:command { "GET", "sh" }
        out.text = tostring(sh)
        ngx.say(cjson.encode(out))
      }
    }
    location = /two_passwords {
      content_by_lua_block {
        local redis = require "account_activity.redis"
        local cjson = require "cjson"
        local out = {}
        local good = assert(redis.connect { port = %d, timeout_ms = 300, password = "right-password" })
        out.good = good:command { "SET", "pw", "1" }
        good:close() -- into the pool
        local bad, berr = redis.connect { port = %d, timeout_ms = 300, password = "wrong-password" }
        out.pooled_bad = bad and "connected" or berr.kind
        if bad then bad:close() end
        local sgood = redis.shared { port = %d, timeout_ms = 300, password = "right-password" }
        out.shared_good = sgood:command { "GET", "pw" }
        local sbad = redis.shared { port = %d, timeout_ms = 300, password = "wrong-password" }
        local r, serr = sbad:command { "GET", "pw" }
        out.shared_bad = r and "answered" or serr.kind
        ngx.say(cjson.encode(out))
      }
    }
    location = /shared_dies {
      content_by_lua_block {
        local redis = require "account_activity.redis"
        local cjson = require "cjson"
        local sh = redis.shared { port = %d, timeout_ms = 300, db = 3 }
        -- not an encoded command: the loop raises on it
        local r, err = sh:_call({})
        local out = { first = r == nil and err.kind }
        out.after = sh:command { "PING" }
        ngx.say(cjson.encode(out))
      }
    }
    location = /shared_big {
      content_by_lua_block {
        local redis = require "account_activity.redis"
        local cjson = require "cjson"
        local sh = redis.shared { port = %d, timeout_ms = 2000 }
        local before = tonumber(tostring(sh):match("in (%%d+) batches"))
        local big = string.rep("x", 400 * 1024)
        local threads = {}
        for i = 1, 4 do
          threads[i] = ngx.thread.spawn(function() return sh:command { "SET", "big" .. i, big } end)
        end
        local ok = 0
        for i = 1, 4 do
          local _, r = ngx.thread.wait(threads[i])
          if type(r) == "table" and r.ok == "OK" then ok = ok + 1 end
        end
        local after = tonumber(tostring(sh):match("in (%%d+) batches"))
        ngx.say(cjson.encode { ok = ok, batches = after - before,
          intact = sh:command { "STRLEN", "big4" } == #big })
      }
    }
  }
]]):format(ports[1], srv.port, srv.port, srv.port, srv.port, srv.port, srv.port, srv.port, srv.port, srv.port, srv.port,
  srv.port)
      end }
      assert(server, err)
      session = core.session { timeout = 10 }
    end)
    teardown(function()
      if session then session:close() end
      if server then server:stop() end
    end)

    it("speaks Redis through a cosocket and hiredis's reader", function()
      local res = assert(session:request { method = "GET", url = server.url .. "/t?v=hello" })
      assert.are.equal(200, res.status, server:error_log())
      local out = cjson.decode(res.body)
      assert.are.same({ kind = "cosocket", set = { ok = "OK" }, get = "hello", null = true,
        pipe = { 1, { err = "WRONGTYPE Operation against a key holding the wrong kind of value" }, "hello" },
        script = "abab", timeout = "timeout", after = "hello", refused = true }, out)
    end)

    it("shares one connection per worker and options, batching what requests have in flight", function()
      assert(srv:cmd("CONFIG", "SET", "requirepass", "not-a-secret-shown"))
      local ok, perr = pcall(function()
        local res = assert(session:request { method = "GET", url = server.url .. "/shared" })
        assert.are.equal(200, res.status, server:error_log())
        local out = cjson.decode(res.body)
        assert.is_true(out.same)
        assert.is_true(out.other)
        assert.are.same({ ok = "OK" }, out.set)
        assert.are.equal("v1", out.get)
        assert.are.equal("redis", out.wrongtype)
        assert.are.equal("ak", out.script)
        assert.are.equal("timeout", out.timeout)
        assert.are.equal("v1", out.after) -- a new connection after the one that timed out
        assert.matches("shared by this worker's requests", out.text, 1, true)
        assert.is_nil(out.text:find("not-a-secret-shown", 1, true))
      end)
      local c = assert(srv:connect())
      assert(c:command { "AUTH", "not-a-secret-shown" })
      assert(c:command { "CONFIG", "SET", "requirepass", "" })
      c:close()
      assert(ok, perr)
    end)

    it("never hands a connection authenticated with one password to options with another", function()
      assert(srv:cmd("CONFIG", "SET", "requirepass", "right-password"))
      local ok, perr = pcall(function()
        local res = assert(session:request { method = "GET", url = server.url .. "/two_passwords" })
        assert.are.equal(200, res.status, server:error_log())
        assert.are.same({ good = { ok = "OK" }, pooled_bad = "auth", shared_good = "1", shared_bad = "auth" },
          cjson.decode(res.body))
      end)
      local c = assert(srv:connect())
      assert(c:command { "AUTH", "right-password" })
      assert(c:command { "CONFIG", "SET", "requirepass", "" })
      c:close()
      assert(ok, perr)
    end)

    it("recovers when the shared connection's loop dies: the next command gets a new one", function()
      local res = assert(session:request { method = "GET", url = server.url .. "/shared_dies" })
      assert.are.equal(200, res.status, server:error_log())
      assert.are.same({ first = "timeout", after = { ok = "PONG" } }, cjson.decode(res.body))
      assert.matches("the shared connection's loop failed", server:error_log(), 1, true)
    end)

    it("keeps one send of the shared connection near 1 MB: four 400 KB commands queued together go in two", function()
      local res = assert(session:request { method = "GET", url = server.url .. "/shared_big" })
      assert.are.equal(200, res.status, server:error_log())
      assert.are.same({ ok = 4, batches = 2, intact = true }, cjson.decode(res.body))
    end)

    it("has no shared connection outside nginx", function()
      assert.is_nil(redis.shared { port = srv.port })
    end)
  end)
end)
