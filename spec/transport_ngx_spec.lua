-- transport/ngx.lua, run inside nginx: one server calls another through it.
local core = require "account_activity.core"
local cjson = require "cjson.safe"
local nginx_process = require "account_activity.nginx_process"

describe("transport.ngx", function()
  local srv, session

  setup(function()
    local err
    srv, err = nginx_process.start {
      ports = 3,
      -- proxies that go nowhere: the cosocket transport must ignore them (README)
      main = "env http_proxy=http://127.0.0.1:1; env HTTP_PROXY=http://127.0.0.1:1; env ALL_PROXY=http://127.0.0.1:1;",
      http = function(ports)
        return ([[
lua_socket_log_errors off;
server {
  listen 127.0.0.1:%d;
  location = /t {
    content_by_lua_block {
      local t = require "account_activity.transport.ngx"
      local cjson = require "cjson.safe"
      ngx.req.read_body()
      local spec = cjson.decode(ngx.req.get_body_data())
      local tr = t.new { timeout = spec.timeout or 5, pool_size = 4, max_body = spec.max_body }
      local out = {}
      for i = 1, spec.times or 1 do
        ngx.update_time()
        local t0 = ngx.now()
        local ok, res, err = pcall(tr.request, tr, spec.req)
        ngx.update_time()
        if not ok then res, err = nil, { kind = "raised", message = tostring(res) } end
        out[i] = { res = res, err = err and { kind = err.kind, message = err.message, connect = err.connect },
                   took = ngx.now() - t0 }
      end
      ngx.say(cjson.encode(out))
    }
  }
  # client:stream() inside nginx (stream.lua's cosocket opener) against the error answers below
  location = /xstream {
    content_by_lua_block {
      local aa = require "account_activity"
      local c = aa.new { consumer_key = "ck", consumer_secret = "cs", bearer_token = "b", api = "v2",
        base_url = "http://127.0.0.1:%d/" .. ngx.var.arg_kind, timeout = 1 }
      ngx.update_time()
      local t0 = ngx.now()
      local st, err = c:stream { sleep = function() end, max_reconnects = 0 }
      ngx.update_time()
      ngx.say(require("cjson").encode { opened = st ~= nil, status = err and err.status, kind = err and err.kind,
        message = err and err.message, took = ngx.now() - t0 })
    }
  }
  location = /module {
    content_by_lua_block {
      local t = require "account_activity.transport.ngx"
      local res = t { method = "GET", url = "http://127.0.0.1:%d/cl" }
      local ok, e = pcall(t.request, { url = 42 })
      local bad_res, bad = t.request { url = "ftp://x/y" }
      local crlf_res, crlf = t.request { url = "http://127.0.0.1:%d/cl", headers = { ["X-A"] = "a\r\nb" } }
      ngx.say(require("cjson").encode { status = res.status, raised = not ok and e:find("url") ~= nil,
        bad = bad.kind, crlf = crlf.kind })
    }
  }
}
lua_shared_dict hits 1m;
server {
  listen 127.0.0.1:%d;
  # counts every request that reaches this server: a refused one must not
  location / { content_by_lua_block { ngx.shared.hits:incr("n", 1, 0); ngx.print("hit ", ngx.var.request_uri) } }
  location = /hits { content_by_lua_block { ngx.print(ngx.shared.hits:get("n") or 0) } }
  # a hostile server: raw bytes on the connection, as nginx would never send them
  location = /raw { content_by_lua_block {
    local sock = ngx.req.socket(true)
    local kind = ngx.var.arg_kind
    local head = "HTTP/1.1 200 OK\r\n"
    local stop = ngx.now() + 30 -- the server's own deadline, should a client never leave
    if kind == "repeat1k" then -- 8,000 repeated 1 KB headers
      local line = "X-Big: " .. ("v"):rep(1024) .. "\r\n"
      sock:send(head)
      for _ = 1, 8000 do if not sock:send(line) then return end end
      sock:send("Content-Length: 0\r\n\r\n")
    elseif kind == "short" then -- n repeats of a short header
      local t = { "HTTP/1.1 200 OK" }
      for _ = 1, tonumber(ngx.var.arg_n) do t[#t + 1] = "a: b" end
      t[#t + 1] = "Content-Length: 2\r\nConnection: close\r\n\r\nok"
      sock:send(table.concat(t, "\r\n"))
    elseif kind == "endless_line" then -- a header line with no end
      sock:send(head .. "X-A: ")
      local part = ("a"):rep(16384)
      while ngx.now() < stop and sock:send(part) do end
    elseif kind == "trickle" then -- headers forever, each in time
      sock:send(head)
      while ngx.now() < stop and sock:send("X-T: 1\r\n") do ngx.sleep(0.05) end
    elseif kind == "cr" then
      sock:send(head .. "X-Split: a\rInjected: yes\r\nX-End: z\r\r\n" ..
        "X-Rate-Limit-Remaining: 0\r\nX-Rate-Limit-Remaining: 99\r\n" ..
        "Content-Length: 2\r\nConnection: close\r\n\r\nok")
    elseif kind == "spaces" then -- 100,000 blanks inside a value, and a line with no colon
      sock:send(head .. "X-S: " .. (" "):rep(1000) .. "x" .. (" "):rep(100000) .. "y" .. (" \t"):rep(500) .. "\r\n" ..
        ("n"):rep(100000) .. "\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    elseif kind == "nul" then
      sock:send(head .. "X-Nul: a\0b\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    elseif kind == "huge_length" then -- 300 MB announced
      sock:send(head .. "Content-Length: 314572800\r\n\r\n" .. ("x"):rep(1000))
      ngx.sleep(3)
    elseif kind == "huge_chunks" then -- 5 x 1 MiB chunks
      sock:send(head .. "Transfer-Encoding: chunked\r\n\r\n")
      local chunk = "100000\r\n" .. ("c"):rep(1048576) .. "\r\n"
      for _ = 1, 5 do if not sock:send(chunk) then return end end
      sock:send("0\r\n\r\n")
    elseif kind == "huge_chunk_size" then
      sock:send(head .. "Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFF\r\nabc")
      ngx.sleep(3)
    elseif kind == "huge_to_close" then -- 5 MiB, then the connection closes
      sock:send(head .. "Connection: close\r\n\r\n")
      local part = ("z"):rep(1048576)
      for _ = 1, 5 do if not sock:send(part) then return end end
    end
  } }
  location ~ ^/(\w+)/2/activity/stream$ { content_by_lua_block {
    local kind = ngx.var[1]
    local stop = ngx.now() + 30 -- the server's own deadline, should a client never leave
    if kind == "huge" then -- a 500 with 5 MiB of body
      ngx.status = 500
      ngx.header["Content-Length"] = 5 * 1048576
      local part = ("e"):rep(1048576)
      for _ = 1, 5 do if not ngx.print(part) then return end end
    elseif kind == "endless" then -- a 503 whose body never ends
      ngx.status = 503
      ngx.print('{"title":"Service Unavailable"')
      while ngx.now() < stop and ngx.flush(true) do ngx.sleep(0.02) ngx.print((" "):rep(100)) end
    elseif kind == "bigchunk" then -- a 500 announcing a chunk of 2^56 bytes
      local sock = ngx.req.socket(true)
      sock:send("HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n100000000000000\r\n")
      while ngx.now() < stop and sock:send(("x"):rep(65536)) do end
    end
  } }
  location = /cl { content_by_lua_block { ngx.header["Content-Length"] = 11; ngx.header["X-Multi"] = { "a", "b" }; ngx.print("hello world") } }
  location = /chunked { content_by_lua_block {
    for i = 1, 5 do ngx.print(string.rep(tostring(i), 1000)); ngx.flush(true) end
  } }
  location = /conn { content_by_lua_block { ngx.print(ngx.var.connection .. ":" .. ngx.var.connection_requests) } }
  location = /slow { content_by_lua_block { ngx.sleep(1); ngx.print("late") } }
  location = /echo { content_by_lua_block {
    ngx.req.read_body()
    ngx.status = 201
    ngx.header["Content-Type"] = "application/json"
    ngx.print(require("cjson").encode { method = ngx.req.get_method(), body = ngx.req.get_body_data(),
      x = ngx.var.http_x_test, host = ngx.var.http_host, len = ngx.var.http_content_length })
  } }
  location = /nocontent { return 204; }
}
]]):format(ports[1], ports[2], ports[2], ports[2], ports[2])
      end,
    }
    assert(srv, err)
    session = core.session { timeout = 10 }
  end)

  teardown(function()
    if session then session:close() end
    if srv then srv:stop() end
  end)

  local function run(spec)
    local res = assert(session:request { method = "POST", url = srv.url .. "/t", body = cjson.encode(spec) })
    assert.equal(200, res.status, res.body .. srv:error_log())
    return cjson.decode(res.body)
  end

  local function up(path) return "http://127.0.0.1:" .. srv.ports[2] .. path end

  it("reads Content-Length bodies and lowercases and joins headers", function()
    local r = run { req = { method = "GET", url = up("/cl") } }[1].res
    assert.equal(200, r.status)
    assert.equal("hello world", r.body)
    assert.equal("11", r.headers["content-length"])
    assert.equal("a, b", r.headers["x-multi"])
    assert.equal("1.1", r.http_version)
    assert.is_number(r.time)
  end)

  it("reads chunked bodies", function()
    local r = run { req = { method = "GET", url = up("/chunked") } }[1].res
    assert.equal("chunked", r.headers["transfer-encoding"])
    assert.equal(5000, #r.body)
    assert.equal(string.rep("5", 1000), r.body:sub(4001))
  end)

  it("sends method, headers and body", function()
    local r = run { req = { method = "PUT", url = up("/echo"), headers = { ["X-Test"] = "yes" }, body = "abc" } }[1].res
    assert.equal(201, r.status)
    local echo = cjson.decode(r.body)
    assert.same({ method = "PUT", body = "abc", x = "yes", host = "127.0.0.1:" .. srv.ports[2], len = "3" }, echo)
    local n = run { req = { method = "DELETE", url = up("/nocontent") } }[1].res
    assert.equal(204, n.status)
    assert.equal("", n.body)
  end)

  it("reuses kept-alive connections", function()
    local out = run { req = { method = "GET", url = up("/conn") }, times = 3 }
    local c1 = out[1].res.body:match("^(%d+):")
    assert.equal(c1, out[2].res.body:match("^(%d+):"))
    assert.equal(c1, out[3].res.body:match("^(%d+):"))
    local n1 = tonumber(out[1].res.body:match(":(%d+)$"))
    assert.equal(n1 + 2, tonumber(out[3].res.body:match(":(%d+)$")))
    assert.equal(out[1].res.reused + 2, out[3].res.reused)
  end)

  it("fails with kind timeout when the server is too slow", function()
    local r = run { req = { method = "GET", url = up("/slow"), timeout = 0.2 } }[1]
    assert.is_nil(r.res)
    assert.equal("timeout", r.err.kind)
  end)

  it("fails with kind network on a refused port", function()
    local r = run { req = { method = "GET", url = "http://127.0.0.1:" .. srv.ports[3] .. "/x" } }[1]
    assert.is_nil(r.res)
    assert.equal("network", r.err.kind)
    assert.matches("connect", r.err.message)
  end)

  local function hits()
    return tonumber(assert(session:request { method = "GET", url = up("/hits") }).body)
  end

  it("refuses CR, LF, NUL and spaces in the URL, method and headers before sending anything", function()
    local before = hits()
    local cases = {
      { method = "GET", url = up("/x HTTP/1.1\r\nX-Injected: yes") },
      { method = "GET", url = up("/x\r\nX-Injected: yes") },
      { method = "GET", url = up("/x\0y") },
      { method = "GET", url = up("/x y") },
      { method = "GET", url = up("/x\ty") },
      { method = "GET", url = up("/x\127y") },
      { method = "GET /x HTTP/1.1\r\nX-Injected: yes\r\n\r\nGET", url = up("/x") },
      { method = "GET X", url = up("/x") },
      { method = "", url = up("/x") },
      { method = "GET", url = up("/x"), headers = { ["X-A"] = "a\0b" } },
      { method = "GET", url = up("/x"), headers = { ["X-A"] = "a\r\nX-Injected: yes" } },
      { method = "GET", url = up("/x"), headers = { ["X-A"] = "a\nb" } },
      { method = "GET", url = up("/x"), headers = { ["X-A"] = "a\rb" } },
      { method = "GET", url = up("/x"), headers = { ["X A"] = "a" } },
      { method = "GET", url = up("/x"), headers = { ["X-A:"] = "a" } },
      { method = "GET", url = up("/x"), headers = { ["X-Injected: yes\r\nX-B"] = "a" } },
      { method = "GET", url = up("/x"), headers = { [""] = "a" } },
    }
    for i, req in ipairs(cases) do
      local r = run { req = req }[1]
      assert.is_nil(r.res, "case " .. i)
      assert.are.equal("argument", r.err.kind, "case " .. i)
      assert.matches("^request refused before sending: ", r.err.message)
      assert.is_true(r.err.connect, "case " .. i)
    end
    assert.are.equal(before, hits())
    -- a wrong type raises, as the C core does
    local r = run { req = { method = "GET", url = up("/x"), headers = { ["X-A"] = { 1 } } } }[1]
    assert.are.equal("raised", r.err.kind)
    assert.matches("header values must be strings or numbers", r.err.message)
    -- numbers and empty values go out, as with libcurl
    r = run { req = { method = "GET", url = up("/echo"), headers = { ["X-Test"] = 42 } } }[1]
    assert.are.equal("42", cjson.decode(r.res.body).x)
  end)

  it("refuses 8,000 repeated 1 KB headers at 300 KB, at once", function()
    local r = run { req = { method = "GET", url = up("/raw?kind=repeat1k") } }[1]
    assert.is_nil(r.res)
    assert.are.equal("network", r.err.kind)
    assert.matches("response headers larger than 307200 bytes", r.err.message)
    assert.is_true(r.took < 2, "took " .. r.took .. " s")
  end)

  it("joins thousands of repeats of one header in linear time, and caps their count", function()
    local r = run { req = { method = "GET", url = up("/raw?kind=short&n=9990"), timeout = 10 } }[1]
    assert.is_table(r.res, r.err and r.err.message)
    assert.are.equal(("b, "):rep(9989) .. "b", r.res.headers.a)
    assert.are.equal("ok", r.res.body)
    assert.is_true(r.took < 2, "took " .. r.took .. " s")
    r = run { req = { method = "GET", url = up("/raw?kind=short&n=10001") } }[1]
    assert.is_nil(r.res)
    assert.matches("more than 10000 response header lines", r.err.message)
  end)

  it("refuses a header line that never ends, and headers that never end, by the deadline", function()
    local r = run { req = { method = "GET", url = up("/raw?kind=endless_line") } }[1]
    assert.is_nil(r.res)
    assert.matches("response headers larger than 307200 bytes", r.err.message)
    assert.is_true(r.took < 3, "took " .. r.took .. " s")
    r = run { req = { method = "GET", url = up("/raw?kind=trickle"), timeout = 0.5 } }[1]
    assert.is_nil(r.res)
    assert.are.equal("timeout", r.err.kind)
    assert.is_true(r.took < 2, "took " .. r.took .. " s")
  end)

  -- "^([^:]+):%s*(.-)%s*$" backtracks over every blank inside a value: 100 KB
  -- of them held the worker for seconds
  it("parses long blank runs and colon-less lines in linear time", function()
    local r = run { req = { method = "GET", url = up("/raw?kind=spaces") } }[1]
    assert.is_table(r.res, r.err and r.err.message)
    assert.are.equal("x" .. (" "):rep(100000) .. "y", r.res.headers["x-s"])
    assert.are.equal("ok", r.res.body)
    assert.is_true(r.took < 2, "took " .. r.took .. " s")
  end)

  it("refuses a body past max_body with nil, err (a too long Content-Length unread)", function()
    local r = run { req = { method = "GET", url = up("/raw?kind=huge_length") } }[1]
    assert.is_nil(r.res)
    assert.are.equal("network", r.err.kind)
    assert.matches("response body larger than 268435456 bytes", r.err.message)
    assert.is_true(r.took < 2, "took " .. r.took .. " s")
    for _, kind in ipairs { "huge_chunks", "huge_to_close" } do
      r = run { req = { method = "GET", url = up("/raw?kind=" .. kind) }, max_body = 1048576 }[1]
      assert.is_nil(r.res, kind)
      assert.matches("response body larger than 1048576 bytes", r.err.message)
    end
    r = run { req = { method = "GET", url = up("/raw?kind=huge_chunks") }, max_body = 5 * 1048576 }[1]
    assert.are.equal(5 * 1048576, #r.res.body)
    r = run { req = { method = "GET", url = up("/raw?kind=huge_chunk_size") } }[1]
    assert.is_nil(r.res)
    assert.matches("response body larger than 268435456 bytes", r.err.message)
    assert.is_true(r.took < 2, "took " .. r.took .. " s")
  end)

  it("replaces a bare CR in a header value with a space and refuses a NUL, as the C core does", function()
    local r = run { req = { method = "GET", url = up("/raw?kind=cr") } }[1]
    assert.are.equal("a Injected: yes", r.res.headers["x-split"])
    assert.are.equal("z", r.res.headers["x-end"])
    assert.is_nil(r.res.headers["injected"])
    assert.are.equal("ok", r.res.body)
    local c = assert(core.session():request { method = "GET", url = up("/raw?kind=cr") })
    assert.are.same(c.headers["x-split"], r.res.headers["x-split"])
    assert.are.same(c.headers["x-end"], r.res.headers["x-end"])
    -- a rate limit sent twice arrives joined and still reads as exhausted
    assert.are.equal("0, 99", r.res.headers["x-rate-limit-remaining"])
    assert.are.equal("0, 99", c.headers["x-rate-limit-remaining"])
    assert.are.equal(0, require("account_activity.errors").rate_limit(r.res.headers).remaining)
    r = run { req = { method = "GET", url = up("/raw?kind=nul") } }[1]
    assert.is_nil(r.res)
    assert.are.equal("network", r.err.kind)
    assert.matches("NUL byte", r.err.message)
    local res, err = core.session():request { method = "GET", url = up("/raw?kind=nul") }
    assert.is_nil(res)
    assert.are.equal("network", err.kind)
  end)

  -- stream.lua's cosocket opener read an error body with no cap and no
  -- deadline: a 5 MiB or endless answer held client:stream() for ever
  it("client:stream() inside nginx answers a huge or endless error body within its timeout", function()
    for _, case in ipairs { { "huge", 500 }, { "endless", 503 }, { "bigchunk", 500 } } do
      local res = assert(session:request { method = "GET", url = srv.url .. "/xstream?kind=" .. case[1] })
      assert.are.equal(200, res.status, res.body .. srv:error_log())
      local r = cjson.decode(res.body)
      assert.is_false(r.opened)
      assert.are.equal(case[2], r.status, case[1])
      assert.is_true(r.took < 3, case[1] .. ": took " .. r.took .. " s")
    end
  end)

  -- README, "Proxies": libcurl honours the proxy variables (and no_proxy);
  -- cosockets never read them
  it("ignores proxy variables, where libcurl honours them", function()
    local probe = [[
      local core = require "account_activity.core"
      local r, e = core.session { timeout = 5 }:request { method = "GET", url = "URL" }
      io.write(r and r.body or e.message)
    ]]
    local function lua_with(env)
      local cmd = ("env %s %s -e %q"):format(env, os.getenv("AA_SPEC_LUA") or "lua5.4",
        (probe:gsub("URL", up("/cl")):gsub("%s+", " ")))
      local p = io.popen(cmd)
      local out = p:read("*a")
      p:close()
      return out
    end
    assert.matches("127%.0%.0%.1 port 1", lua_with("http_proxy=http://127.0.0.1:1"))
    assert.are.equal("hello world", lua_with("http_proxy=http://127.0.0.1:1 no_proxy=127.0.0.1"))
    -- this nginx's workers have http_proxy, HTTP_PROXY and ALL_PROXY set
    local r = run { req = { method = "GET", url = up("/cl") } }[1]
    assert.are.equal("hello world", r.res.body)
  end)

  it("is callable as a transport function and checks its arguments", function()
    local res = assert(session:request { method = "GET", url = srv.url .. "/module" })
    local t = cjson.decode(res.body)
    assert.same({ status = 200, raised = true, bad = "argument", crlf = "argument" }, t)
  end)
end)
