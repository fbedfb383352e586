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
      local tr = t.new { timeout = spec.timeout or 5, pool_size = 4 }
      local out = {}
      for i = 1, spec.times or 1 do
        local res, err = tr:request(spec.req)
        out[i] = { res = res, err = err and { kind = err.kind, message = err.message } }
      end
      ngx.say(cjson.encode(out))
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
server {
  listen 127.0.0.1:%d;
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
]]):format(ports[1], ports[2], ports[2], ports[2])
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

  it("is callable as a transport function and checks its arguments", function()
    local res = assert(session:request { method = "GET", url = srv.url .. "/module" })
    local t = cjson.decode(res.body)
    assert.same({ status = 200, raised = true, bad = "argument", crlf = "argument" }, t)
  end)
end)
