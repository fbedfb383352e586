-- Session:stream: pull-mode reading of long chunked responses, line by line.
local core = require "account_activity.core"
local nginx_process = require "account_activity.nginx_process"

local server
setup(function()
  server = assert(nginx_process.start { http = function(ports)
    return ([[
  server {
    listen 127.0.0.1:%d;
    location /ndjson {
      content_by_lua_block {
        ngx.header["Content-Type"] = "application/json"
        for i = 1, 5 do
          ngx.print('{"n":', i, '}\r\n')
          if i == 2 then ngx.print("\r\n") end -- a keep-alive blank line
          ngx.flush(true)
          ngx.sleep(0.01)
        end
        ngx.print('{"n":6,"tail":"this line is cut')
        ngx.flush(true)
        if ngx.var.arg_cut then ngx.exit(444) end
        ngx.print('"}\n')
      }
    }
    location /slow { content_by_lua_block { ngx.print("first\n") ngx.flush(true) ngx.sleep(1) ngx.print("second\n") } }
    location /big { content_by_lua_block { for i = 1, 200 do ngx.print(("x"):rep(65535), "\n") end } }
    # error answers no reader should wait on: 5 MiB at once, and one that never ends
    location ~ /huge(/2/activity/stream)?$ { content_by_lua_block {
      ngx.status = 500
      ngx.header["Content-Length"] = 5 * 2 ^ 20
      local part = ("e"):rep(2 ^ 20)
      for _ = 1, 5 do if not ngx.print(part) then return end end
    } }
    location ~ /endless(/2/activity/stream)?$ { content_by_lua_block {
      ngx.status = 503
      ngx.print('{"title":"Service Unavailable"')
      ngx.flush(true)
      local stop = ngx.now() + 60 -- the server's own deadline, should a client never leave
      while ngx.now() < stop do
        ngx.sleep(0.02)
        ngx.print((" "):rep(100))
        if not ngx.flush(true) then return end
      end
    } }
    location ~ /crheader {
      content_by_lua_block {
        -- nginx escapes a CR in ngx.header, so the raw socket says it
        local sock = ngx.req.socket(true)
        sock:send("HTTP/1.1 200 OK\r\nX-Split: a\rInjected: yes\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
      }
    }
    location /denied { content_by_lua_block { ngx.status = 429 ngx.header["x-rate-limit-reset"] = "123" ngx.print('{"title":"TooManyConnections"}') } }
  }]]):format(ports[1])
  end })
end)
teardown(function() if server then server:stop() end end)

describe("Session:stream", function()
  it("returns the head at once and lines as they come, blank keep-alives included", function()
    local s = core.session()
    local st, head = s:stream { method = "GET", url = server.url .. "/ndjson", headers = { Authorization = "Bearer x" } }
    assert.is_truthy(st, head)
    assert.are.equal(200, head.status)
    assert.are.equal("application/json", head.headers["content-type"])
    local lines = {}
    for _ = 1, 7 do lines[#lines + 1] = assert(st:read_line(2)) end
    assert.are.same({ '{"n":1}', '{"n":2}', "", '{"n":3}', '{"n":4}', '{"n":5}', '{"n":6,"tail":"this line is cut"}' }, lines)
    local line, err = st:read_line(2)
    assert.is_nil(line)
    assert.are.equal("closed", err.kind)
    assert.are.equal(0, err.partial_bytes)
    st:close()
    st:close()
    assert.matches("closed", tostring(st))
  end)

  it("reports a cut mid-line as an error with the partial bytes, never as a line", function()
    local st = assert(core.session():stream { method = "GET", url = server.url .. "/ndjson?cut=1" })
    local got = {}
    local line, err
    repeat
      line, err = st:read_line(2)
      if line then got[#got + 1] = line end
    until not line
    assert.are.equal(6, #got)
    assert.are.equal("network", err.kind)
    assert.are.equal(#'{"n":6,"tail":"this line is cut', err.partial_bytes)
  end)

  it("times out a read without closing the stream", function()
    local st = assert(core.session():stream { method = "GET", url = server.url .. "/slow" })
    assert.are.equal("first", st:read_line(1))
    local t0 = core.now()
    local line, err = st:read_line(0.2)
    assert.is_nil(line)
    assert.are.equal("timeout", err.kind)
    assert.is_true(core.now() - t0 < 0.8)
    assert.are.equal("second", st:read_line(3))
    st:close()
  end)

  it("pauses a fast producer instead of buffering without bound", function()
    local st = assert(core.session():stream { method = "GET", url = server.url .. "/big" })
    local n = 0
    while true do
      local line = st:read_line(5)
      if not line then break end
      assert.are.equal(65535, #line)
      n = n + 1
    end
    assert.are.equal(200, n)
  end)

  it("hands back a refusal's status, headers and body", function()
    local st, head = core.session():stream { method = "GET", url = server.url .. "/denied" }
    assert.are.equal(429, head.status)
    assert.are.equal("123", head.headers["x-rate-limit-reset"])
    assert.are.equal('{"title":"TooManyConnections"}', st:read_all())
  end)

  -- a 500 with a 5 MiB body once paused the transfer at the 4 MiB high-water
  -- mark with nobody to resume it, and read_all() waited for ever
  it("reads at most 64 KiB of an error body, and returns at once past it", function()
    local st, head = core.session { timeout = 5 }:stream { method = "GET", url = server.url .. "/huge" }
    assert.are.equal(500, head.status)
    local t0 = core.now()
    local body, cut = st:read_all()
    assert.is_true(core.now() - t0 < 4, "read_all took " .. (core.now() - t0) .. " s")
    assert.are.equal(64 * 1024, #body)
    assert.are.equal(("e"):rep(64 * 1024), body)
    assert.are.equal("truncated", cut)
    st:close()
    st = core.session():stream { method = "GET", url = server.url .. "/huge" }
    body, cut = st:read_all(10)
    assert.are.same({ "eeeeeeeeee", "truncated" }, { body, cut })
    st:close()
  end)

  it("gives up on an error body that never ends at the deadline, with what came", function()
    local st, head = core.session { timeout = 5 }:stream { method = "GET", url = server.url .. "/endless" }
    assert.are.equal(503, head.status)
    local t0 = core.now()
    local body, cut = st:read_all(2 ^ 20, 0.5)
    local took = core.now() - t0
    assert.is_true(took >= 0.45 and took < 3, "read_all took " .. took .. " s")
    assert.are.equal("timeout", cut)
    assert.matches('^{"title":"Service Unavailable" +$', body)
    st:close()
    -- the default deadline is the session's timeout
    st = core.session { timeout = 1 }:stream { method = "GET", url = server.url .. "/endless" }
    t0 = core.now()
    cut = select(2, st:read_all())
    took = core.now() - t0
    assert.is_true(took >= 0.9 and took < 4, "read_all took " .. took .. " s")
    assert.are.equal("timeout", cut)
    st:close()
    assert.has_error(function() core.session():stream { method = "GET", url = server.url .. "/slow" }:read_all(-1) end)
    assert.has_error(function() core.session():stream { method = "GET", url = server.url .. "/slow" }:read_all(2 ^ 30) end)
  end)

  it("client:stream() answers a huge or endless error body with nil, err within its timeout", function()
    local aa = require "account_activity"
    for _, case in ipairs { { "/huge", 500 }, { "/endless", 503 } } do
      local c = aa.new { consumer_key = "k", consumer_secret = "s", bearer_token = "b", api = "v2",
        base_url = server.url .. case[1], timeout = 1, retries = 0 }
      local t0 = core.now()
      local st, err = c:stream()
      local took = core.now() - t0
      assert.is_nil(st)
      assert.are.equal(case[2], err.status)
      assert.is_true(took < 5, case[1] .. ": client:stream() took " .. took .. " s")
    end
  end)

  it("replaces a bare CR inside a header value with a space", function()
    local res = assert(core.session():request { method = "GET", url = server.url .. "/crheader" })
    assert.are.equal("a Injected: yes", res.headers["x-split"])
    assert.is_nil(res.headers["injected"])
    local _, head = core.session():stream { method = "GET", url = server.url .. "/crheader" }
    assert.are.equal("a Injected: yes", head.headers["x-split"])
  end)

  it("fails to open on a closed port or a bad request", function()
    local st, err = core.session():stream { method = "GET", url = "http://127.0.0.1:1/" }
    assert.is_nil(st)
    assert.are.equal("network", err.kind)
    assert.is_true(err.connect)
    local st2, err2 = core.session():stream { method = "GET", url = server.url .. "/x", headers = { A = "b\r\nc" } }
    assert.is_nil(st2)
    assert.are.equal("argument", err2.kind)
    assert.has_error(function() core.session():stream() end)
    local open = assert(core.session():stream { method = "GET", url = server.url .. "/slow" })
    assert.has_error(function() open:read_line(-1) end)
    open:close()
    assert.has_error(function() open:read_line(1) end)
  end)
end)
