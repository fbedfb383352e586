-- core.session against a private nginx on loopback: methods, headers,
-- bodies, keep-alive, timeouts, TLS, and curl_multi batches.
local core = require "account_activity.core"
local cjson = require "cjson"
local nginx_process = require "account_activity.nginx_process"

local ECHO = [[
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body then
    local f = ngx.req.get_body_file()
    if f then local h = io.open(f, "rb"); body = h:read("*a"); h:close() end
  end
  ngx.header["X-Multi"] = { "a", "b" }
  ngx.header["X-Conn"] = ngx.var.connection
  ngx.say(require("cjson").encode({ method = ngx.req.get_method(), uri = ngx.var.request_uri,
    headers = ngx.req.get_headers(), body = body or "", conn = ngx.var.connection }))
]]

local server, tls_port, cert
local function url(path) return server.url .. path end

local function access_log()
  local f = io.open(server.prefix .. "/logs/conn.log")
  local lines = {}
  if f then
    for l in f:lines() do lines[#lines + 1] = l end
    f:close()
  end
  return lines
end

setup(function()
  server = assert(nginx_process.start {
    ports = 2,
    http = function(ports, srv)
      cert = srv.prefix .. "/conf/cert.pem"
      assert(os.execute(("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 " ..
        "-addext subjectAltName=IP:127.0.0.1 -keyout %s/conf/key.pem -out %s 2>/dev/null"):format(srv.prefix, cert)))
      tls_port = ports[2]
      return ([[
  log_format conn '$connection $request_method $request_uri';
  client_max_body_size 20m;
  client_body_buffer_size 4m;
  keepalive_requests 10000;
  default_type application/json;
  server {
    listen 127.0.0.1:%d;
    access_log logs/conn.log conn;
    location /echo { content_by_lua_block { %s } }
    location /nocontent { return 204; }
    location /big { content_by_lua_block { ngx.print(("0123456789abcdef"):rep(65536)) } }
    location /sleep { content_by_lua_block { ngx.sleep(3); ngx.say("late") } }
    location /delay { content_by_lua_block { ngx.sleep(0.02); ngx.say(ngx.var.arg_i) } }
    location /status { content_by_lua_block { ngx.status = tonumber(ngx.var.arg_code); ngx.say("s") } }
    # n header lines (under libcurl's 300 KB cap), the same name or n names, raw
    location /headers { content_by_lua_block {
      local t, n, same = { "HTTP/1.1 200 OK" }, tonumber(ngx.var.arg_n), ngx.var.arg_same == "1"
      for i = 1, n do t[#t + 1] = same and "a: b" or ("h" .. i .. ": b") end
      t[#t + 1] = "Content-Length: 2\r\nConnection: close\r\n\r\nok"
      ngx.req.socket(true):send(table.concat(t, "\r\n"))
    } }
  }
  server {
    listen 127.0.0.1:%d ssl http2;
    ssl_certificate %s;
    ssl_certificate_key %s/conf/key.pem;
    access_log off;
    location / { return 200 "tls ok"; }
  }
]]):format(ports[1], ECHO, ports[2], cert, srv.prefix)
    end,
  })
end)

teardown(function()
  if server then server:stop() end
end)

describe("core.session", function()
  it("sends every method with its body and headers, and lowercases response headers", function()
    local s = core.session { timeout = 5 }
    for _, m in ipairs { "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS" } do
      local body = (m ~= "GET") and ("body of " .. m) or nil
      local res = assert(s:request { method = m, url = url("/echo?x=1"), body = body,
        headers = { ["X-Test"] = "v " .. m, ["Content-Type"] = "text/plain" } })
      assert.are.equal(200, res.status)
      local echo = cjson.decode(res.body)
      assert.are.equal(m, echo.method)
      assert.are.equal("/echo?x=1", echo.uri)
      assert.are.equal("v " .. m, echo.headers["x-test"])
      assert.are.equal(body or "", echo.body)
      assert.are.equal("a, b", res.headers["x-multi"])
      assert.are.equal("application/json", res.headers["content-type"])
      assert.are.equal("1.1", res.http_version)
      assert.is_number(res.time)
    end
    local head = assert(s:request { method = "HEAD", url = url("/echo") })
    assert.are.equal(200, head.status)
    assert.are.equal("", head.body)
    s:close()
  end)

  it("sends an empty POST and empty header values, and a default user agent", function()
    local s = core.session()
    local echo = cjson.decode(assert(s:request { method = "POST", url = url("/echo"), headers = { ["X-Empty"] = "" } }).body)
    assert.are.equal("POST", echo.method)
    assert.are.equal("", echo.body)
    assert.are.equal("", echo.headers["x-empty"])
    assert.are.equal("0", echo.headers["content-length"])
    assert.matches("^lua%-account%-activity/", echo.headers["user-agent"])
    assert.is_nil(echo.headers["expect"])
    local s2 = core.session { user_agent = "my-bot/1.0" }
    assert.are.equal("my-bot/1.0", cjson.decode(s2:request { method = "GET", url = url("/echo") }.body).headers["user-agent"])
  end)

  it("moves 1 MB bodies both ways", function()
    local s = core.session()
    local big = ("x"):rep(1024 * 1024 - 3) .. "end"
    local res = assert(s:request { method = "POST", url = url("/echo"), body = big })
    assert.are.equal(big, cjson.decode(res.body).body)
    local down = assert(s:request { method = "GET", url = url("/big") })
    assert.are.equal(1024 * 1024, #down.body)
    assert.are.equal(("0123456789abcdef"):rep(65536), down.body)
  end)

  it("returns 204 with an empty body and any status as a response, not an error", function()
    local s = core.session()
    local res = assert(s:request { method = "DELETE", url = url("/nocontent") })
    assert.are.equal(204, res.status)
    assert.are.equal("", res.body)
    for _, code in ipairs { 400, 404, 429, 500, 503 } do
      assert.are.equal(code, assert(s:request { method = "GET", url = url("/status?code=" .. code) }).status)
    end
  end)

  it("reuses one connection for 100 sequential requests (nginx $connection)", function()
    local s = core.session()
    local conns = {}
    for i = 1, 100 do
      local res = assert(s:request { method = i % 2 == 0 and "POST" or "GET", url = url("/echo?keepalive=" .. i), body = i % 2 == 0 and "b" or nil })
      conns[res.headers["x-conn"]] = true
    end
    local n = 0
    for _ in pairs(conns) do n = n + 1 end
    assert.are.equal(1, n)
    -- nginx writes the log line after the response, so wait for the last one
    local ours
    for _ = 1, 100 do
      ours = {}
      for _, l in ipairs(access_log()) do
        if l:find("keepalive=", 1, true) then ours[#ours + 1] = l:match("^(%d+)") end
      end
      if #ours >= 100 then break end
      core.sleep(0.01)
    end
    assert.are.equal(100, #ours)
    for _, c in ipairs(ours) do assert.are.equal(ours[1], c) end
  end)

  it("times out a slow server with kind 'timeout'", function()
    local s = core.session { timeout = 0.3 }
    local t0 = core.now()
    local res, err = s:request { method = "GET", url = url("/sleep") }
    assert.is_nil(res)
    assert.are.equal("timeout", err.kind)
    assert.is_false(err.connect)
    assert.is_true(core.now() - t0 < 2)
    local _, err2 = core.session():request { method = "GET", url = url("/sleep"), timeout = 0.2 }
    assert.are.equal("timeout", err2.kind)
  end)

  it("reports a closed port as 'network' with connect = true", function()
    local res, err = core.session():request { method = "POST", url = "http://127.0.0.1:1/x", body = "a" }
    assert.is_nil(res)
    assert.are.equal("network", err.kind)
    assert.is_true(err.connect)
    assert.is_string(err.message)
  end)

  it("rejects a self-signed certificate by default and accepts it with ca_file", function()
    local tls = "https://127.0.0.1:" .. tls_port .. "/"
    local res, err = core.session():request { method = "GET", url = tls }
    assert.is_nil(res)
    assert.are.equal("tls", err.kind)
    assert.is_true(err.connect)
    local s = core.session { ca_file = cert }
    assert.matches("ca_file=", tostring(s))
    local ok = assert(s:request { method = "GET", url = tls })
    assert.are.equal("tls ok", ok.body)
    assert.are.equal("2", ok.http_version)
    local insecure = core.session { insecure = true }
    assert.matches("INSECURE", tostring(insecure))
    assert.are.equal(200, assert(insecure:request { method = "GET", url = tls }).status)
  end)

  it("refuses CR, LF and NUL in headers and bad methods before sending anything", function()
    local s = core.session()
    local function refused_lines()
      local n = 0
      for _, l in ipairs(access_log()) do if l:find("refused", 1, true) then n = n + 1 end end
      return n
    end
    local cases = {
      { method = "GET", url = url("/echo?refused"), headers = { ["X-A"] = "a\r\nX-Injected: 1" } },
      { method = "GET", url = url("/echo?refused"), headers = { ["X-A"] = "a\nb" } },
      { method = "GET", url = url("/echo?refused"), headers = { ["X-A"] = "a\0b" } },
      { method = "GET", url = url("/echo?refused"), headers = { ["X-A\r\nB"] = "v" } },
      { method = "GET", url = url("/echo?refused"), headers = { ["Bad Name"] = "v" } },
      { method = "GET", url = url("/echo?refused"), headers = { [""] = "v" } },
      { method = "GET\r\n", url = url("/echo?refused") },
      { method = "GE T", url = url("/echo?refused") },
      { method = "", url = url("/echo?refused") },
      { method = "GET", url = url("/echo\r\nX: y") },
      { method = "GET", url = url("/echo x") },
      { method = "GET", url = "file:///etc/passwd" },
      { method = "GET", url = "ftp://127.0.0.1/" },
    }
    for i, req in ipairs(cases) do
      local res, err = s:request(req)
      assert.is_nil(res, "case " .. i)
      assert.are.equal("argument", err.kind, "case " .. i)
      assert.matches("refused before sending", err.message)
    end
    core.sleep(0.05)
    assert.are.equal(0, refused_lines())
    -- the session is still usable
    assert.are.equal(200, s:request { method = "GET", url = url("/echo?refused") }.status)
  end)

  -- Joining each repeat onto the value so far copied it every time: 20,000
  -- repeats of one name cost a third of a second where 20,000 names cost 20 ms.
  it("joins thousands of repeated response headers in linear time", function()
    local s = core.session { timeout = 30 }
    local function timed(same)
      local t0 = core.now()
      local res = assert(s:request { method = "GET", url = url("/headers?n=20000&same=" .. same) })
      return core.now() - t0, res
    end
    timed(0) -- warm up
    local distinct, dres = timed(0)
    local repeated, rres = timed(1)
    assert.are.equal("b", dres.headers.h20000)
    assert.are.equal(("b, "):rep(19999) .. "b", rres.headers.a)
    assert.is_true(repeated < 4 * distinct + 0.05,
      ("20,000 repeats took %.3f s, 20,000 names %.3f s"):format(repeated, distinct))
  end)

  it("prints its options, never a secret, and closes idempotently", function()
    local s = core.session { timeout = 7, connect_timeout = 2 }
    assert.matches("timeout=7s", tostring(s))
    assert.matches("tls=verified", tostring(s))
    s:close()
    s:close()
    assert.matches("closed", tostring(s))
    assert.has_error(function() s:request { method = "GET", url = url("/echo") } end)
  end)

  it("runs a batch of 1000 at concurrency 32 with every result in order", function()
    local s = core.session()
    local reqs = {}
    for i = 1, 1000 do reqs[i] = { method = "GET", url = url("/echo?i=" .. i) } end
    local done, max_active = 0, 0
    local results, cberrs = s:perform(reqs, { concurrency = 32, on_done = function(_, res, err)
      done = done + 1
      assert(res and not err)
      assert(res.status == 200)
    end })
    assert.is_nil(cberrs)
    assert.are.equal(1000, done)
    assert.are.equal(1000, #results)
    local conns = {}
    for i = 1, 1000 do
      local echo = cjson.decode(results[i].res.body)
      assert.are.equal("/echo?i=" .. i, echo.uri)
      conns[echo.conn] = true
    end
    for _ in pairs(conns) do max_active = max_active + 1 end
    assert.is_true(max_active <= 32, "used " .. max_active .. " connections")
  end)

  it("keeps at most n requests in flight and overlaps them", function()
    local s = core.session()
    local reqs = {}
    for i = 1, 64 do reqs[i] = { method = "GET", url = url("/delay?i=" .. i) } end
    local t0 = core.now()
    local results = s:perform(reqs, { concurrency = 16 })
    local elapsed = core.now() - t0
    for i = 1, 64 do assert.are.equal(tostring(i) .. "\n", results[i].res.body) end
    -- 4 waves of 20 ms; sequential would take 1.28 s
    assert.is_true(elapsed < 0.6, "took " .. elapsed)
    assert.is_true(elapsed >= 0.075, "more than 16 in flight? took " .. elapsed)
  end)

  it("reuses handles across batches of growing size and mixed methods", function()
    local s = core.session()
    for _, n in ipairs { 2, 8, 3, 32, 5 } do
      local reqs = {}
      for i = 1, n do
        local m = ({ "GET", "POST", "HEAD", "DELETE", "PUT" })[i % 5 + 1]
        reqs[i] = { method = m, url = url("/echo?b=" .. n .. "&i=" .. i), body = (m == "POST" or m == "PUT") and ("x" .. i) or nil }
      end
      local results = s:perform(reqs, { concurrency = n })
      for i = 1, n do
        local res = assert(results[i].res, tostring(results[i].err and results[i].err.message))
        if reqs[i].method ~= "HEAD" then
          local echo = cjson.decode(res.body)
          assert.are.equal(reqs[i].method, echo.method)
          assert.are.equal(reqs[i].body or "", echo.body)
        else
          assert.are.equal("", res.body)
        end
      end
    end
    -- a request refused before sending leaves the handle fully usable
    assert.are.equal("argument", select(2, s:request { method = "GET", url = url("/echo"), headers = { ["a b"] = "x" } }).kind)
    local after = assert(s:request { method = "GET", url = url("/echo?after") })
    assert.are.equal("/echo?after", cjson.decode(after.body).uri)
  end)

  it("reports per-request errors and catches errors raised in on_done", function()
    local s = core.session()
    local reqs = {
      { method = "GET", url = url("/echo?a") },
      { method = "GET", url = "http://127.0.0.1:1/" },
      { method = "GET", url = url("/echo"), headers = { X = "a\nb" } },
      { method = "GET", url = url("/echo?d") },
    }
    local calls = 0
    local results, cberrs = s:perform(reqs, { concurrency = 2, on_done = function(i)
      calls = calls + 1
      if i == 4 then error("boom in handler") end
    end })
    assert.are.equal(4, calls)
    assert.are.equal(200, results[1].res.status)
    assert.are.equal("network", results[2].err.kind)
    assert.are.equal("argument", results[3].err.kind)
    assert.are.equal(200, results[4].res.status)
    assert.are.equal(1, #cberrs)
    assert.are.equal(4, cberrs[1].index)
    assert.matches("boom in handler", cberrs[1].message)
    -- the session survives and can batch again, and perform inside on_done is refused
    local nested_err
    s:perform({ { method = "GET", url = url("/echo") } }, { on_done = function()
      local ok, e = pcall(s.perform, s, {})
      nested_err = not ok and e
    end })
    assert.matches("busy", tostring(nested_err))
    assert.are.same({}, (s:perform({})))
  end)
end)
