-- account_activity.nginx.serve inside a real nginx: CRC GETs, signed and
-- forged POSTs, a 1 MB body spooled to a temporary file, a raising handler,
-- synchronous and timer (async) dispatch.
local nginx_process = require "account_activity.nginx_process"
local core = require "account_activity.core"
local webhook = require "account_activity.webhook"
local cjson = require "cjson"

local SECRET = "nginx-spec-consumer-secret-0123456789abcdef"
local TOKEN = "ZDRiNDY0ZDgtNzdkMi00NWEzLWI1ZjQtNjk2N2NmMzM5YzBh"

local function sign(body)
  return "sha256=" .. core.base64_encode(core.hmac_sha256(SECRET, body))
end

-- This checkout, absolute: nginx workers must load its lua/ and LuaJIT core
-- even when busted runs with relative paths (and an inherited Lua 5.4 LUA_CPATH).
local function root()
  local src = debug.getinfo(1, "S").source:sub(2)
  local dir = src:match("^(.*)/spec/[^/]*$") or "."
  if dir:sub(1, 1) ~= "/" then dir = (os.getenv("PWD") or ".") .. "/" .. dir end
  return dir
end

local function paths_code()
  return ("local root = %q\n"
    .. "package.path = root .. '/lua/?.lua;' .. root .. '/lua/?/init.lua;' .. package.path\n"
    .. "package.cpath = root .. '/build/luajit/?.so;' .. package.cpath\n"):format(root())
end

local function sleep(s)
  if core.sleep then core.sleep(s) else os.execute("sleep " .. s) end
end

local function http(server, ports)
  local out = server.prefix .. "/events.jsonl"
  return ([[
  init_by_lua_block {
    ]] .. paths_code() .. [[
    local cjson = require "cjson"
    local OUT = %q
    local function append(t)
      local f = assert(io.open(OUT, "ab"))
      f:write(cjson.encode(t), "\n")
      f:close()
    end
    local function opts(mode, async)
      return {
        consumer_secret = %q,
        async = async,
        on_event = function(ev)
          if ev.type == "raise" then error("handler raised on purpose") end
          local item = ev.item
          append { mode = mode, type = ev.type, id = ev.id, for_user_id = ev.for_user_id,
                   pad = type(item) == "table" and type(item.pad) == "string" and #item.pad or nil,
                   timer = ngx.get_phase() == "timer" }
        end,
        on_error = function(err, ev)
          append { mode = mode, on_error = tostring(err), type = ev.type }
        end,
      }
    end
    package.loaded.nginx_serve_spec_app = { sync = opts("sync", false), async = opts("async", true) }
  }
  server {
    listen 127.0.0.1:%d;
    client_body_buffer_size 8k;
    client_max_body_size 4m;
    location = /webhook {
      content_by_lua_block {
        require("account_activity.nginx").serve(package.loaded.nginx_serve_spec_app.sync)
      }
    }
    location = /async {
      content_by_lua_block {
        require("account_activity.nginx").serve(package.loaded.nginx_serve_spec_app.async)
      }
    }
  }
]]):format(out, SECRET, ports[1])
end

describe("nginx.serve", function()
  local server, session

  local function read_events()
    local f = io.open(server.prefix .. "/events.jsonl", "rb")
    if not f then return {} end
    local list = {}
    for line in f:lines() do list[#list + 1] = cjson.decode(line) end
    f:close()
    return list
  end

  -- Dispatch runs after the response (ngx.eof or a timer): wait for it.
  local function wait_events(n)
    local list
    for _ = 1, 150 do
      list = read_events()
      if #list >= n then return list end
      sleep(0.01)
    end
    return list
  end

  local function request(method, path, headers, body)
    local res, err = session:request { method = method, url = server.url .. path,
      headers = headers, body = body }
    assert(res, err and err.message)
    return res
  end

  local function post(path, body, sig)
    return request("POST", path, { ["Content-Type"] = "application/json",
      ["X-Twitter-Webhooks-Signature"] = sig or sign(body) }, body)
  end

  setup(function()
    local err
    server, err = nginx_process.start { http = function(ports, s) return http(s, ports) end }
    assert(server, err)
    session = core.session { timeout = 5 }
  end)

  teardown(function()
    if session then session:close() end
    if server then server:stop() end
  end)

  before_each(function()
    os.remove(server.prefix .. "/events.jsonl")
  end)

  it("answers the CRC with the JSON response_token", function()
    local res = request("GET", "/webhook?crc_token=" .. TOKEN .. "&nonce=MTcwMDAwMDAwMDAwMA")
    assert.are.equal(200, res.status)
    assert.matches("^application/json", res.headers["content-type"])
    assert.are.equal(webhook.crc_response(SECRET, TOKEN), cjson.decode(res.body).response_token)
  end)

  it("keeps '+' in a token sent unencoded, decodes %2B and %2F", function()
    local token = "ab+cd/ef+gh=ij_kl-mn+op=="
    local res = request("GET", "/webhook?crc_token=" .. token)
    assert.are.equal(200, res.status)
    assert.are.equal(webhook.crc_response(SECRET, token), cjson.decode(res.body).response_token)
    res = request("GET", "/webhook?crc_token=" .. core.percent_encode(token))
    assert.are.equal(webhook.crc_response(SECRET, token), cjson.decode(res.body).response_token)
  end)

  it("refuses a missing token and a JSON body posing as one (CRC oracle)", function()
    assert.are.equal(400, request("GET", "/webhook").status)
    local forged = '{"for_user_id":"1","favorite_events":[{"id":"forged"}]}'
    local res = request("GET", "/webhook?crc_token=" .. core.percent_encode(forged))
    assert.are.equal(400, res.status)
    assert.is_nil(res.body:find("sha256", 1, true))
  end)

  it("verifies a signed CRC GET over the raw query string", function()
    local qs = "crc_token=" .. TOKEN .. "&nonce=MTcwMDAwMDAwMDAwMA"
    assert.are.equal(200, request("GET", "/webhook?" .. qs,
      { ["X-Twitter-Webhooks-Signature"] = sign(qs) }).status)
    assert.are.equal(401, request("GET", "/webhook?" .. qs,
      { ["X-Twitter-Webhooks-Signature"] = sign(qs .. "x") }).status)
  end)

  it("answers 405 with Allow to other methods", function()
    local res = request("PUT", "/webhook", {}, "x")
    assert.are.equal(405, res.status)
    assert.are.equal("GET, POST", res.headers["allow"])
  end)

  it("dispatches a signed POST, refuses forged ones", function()
    local body = '{"for_user_id":"2244994945","favorite_events":[{"id":"good1"}]}'
    assert.are.equal(200, post("/webhook", body).status)
    assert.are.equal(401, post("/webhook", body, sign(body .. " ")).status)
    assert.are.equal(401, request("POST", "/webhook", { ["Content-Type"] = "application/json" }, body).status)
    local tampered = body:gsub("good1", "evil1")
    assert.are.equal(401, post("/webhook", tampered, sign(body)).status)
    assert.are.equal(400, post("/webhook", "{oops").status)
    wait_events(1)
    sleep(0.05) -- give a wrongly dispatched forgery the time to show up
    local list = read_events()
    assert.are.equal(1, #list)
    assert.are.same({ mode = "sync", type = "favorite", id = "good1",
      for_user_id = "2244994945", timer = false }, list[1])
  end)

  it("reads a 1 MB body that nginx spooled to a temporary file", function()
    local pad = ("0123456789abcdef"):rep(65536) -- 1 MiB
    local body = '{"for_user_id":"7","favorite_events":[{"id":"big","pad":"' .. pad .. '"}]}'
    assert.are.equal(200, post("/webhook", body).status)
    local list = wait_events(1)
    assert.are.equal(1, #list)
    assert.are.equal("big", list[1].id)
    assert.are.equal(#pad, list[1].pad)
    assert.matches("buffered to a temporary file", server:error_log(), 1, true)
    -- one byte changed in the middle of the spooled body is caught
    local bad = body:sub(1, 600000) .. "X" .. body:sub(600002)
    assert.are.equal(401, post("/webhook", bad, sign(body)).status)
  end)

  it("answers 200 when a handler raises, and calls on_error", function()
    local body = '{"for_user_id":"9","raise_events":[{"id":"r1"}],"zzz_events":[{"id":"z1"}]}'
    assert.are.equal(200, post("/webhook", body).status)
    local list = wait_events(2)
    assert.are.equal(2, #list)
    assert.are.equal("raise", list[1].type)
    assert.matches("handler raised on purpose", list[1].on_error)
    assert.are.equal("zzz", list[2].type) -- the next event still ran
  end)

  it("async = true dispatches in a timer after answering", function()
    local body = '{"for_user_id":"3","follow_events":[{"type":"follow","source":{"id":"4"},"target":{"id":"3"}}]}'
    assert.are.equal(200, post("/async", body).status)
    local list = wait_events(1)
    assert.are.equal(1, #list)
    assert.are.equal("async", list[1].mode)
    assert.are.equal("follow", list[1].type)
    assert.is_true(list[1].timer)
    local raise = '{"raise_events":[{"id":"r2"}]}'
    assert.are.equal(200, post("/async", raise).status)
    list = wait_events(2)
    assert.matches("handler raised on purpose", list[2].on_error)
  end)

  it("logs no secret and no signature", function()
    local log = server:error_log()
    assert.is_nil(log:find(SECRET, 1, true))
    local body = '{"for_user_id":"2244994945","favorite_events":[{"id":"good1"}]}'
    assert.is_nil(log:find(sign(body):sub(8, 30), 1, true))
    assert.matches("POST refused: signature does not match", log, 1, true)
  end)
end)

describe("examples/nginx/webhook.conf", function()
  local server, session

  setup(function()
    local f = assert(io.open(root() .. "/examples/nginx/webhook.conf", "rb"))
    local conf = f:read("*a")
    f:close()
    local err
    server, err = nginx_process.start { http = function(ports)
      -- The example reads the secret with os.getenv (nginx `env` directive);
      -- the spec cannot set the environment of nginx, so it stands in for it.
      return ([[
  init_by_lua_block {
    ]] .. paths_code() .. [[
    local getenv = os.getenv
    os.getenv = function(k)
      if k == "TWITTER_CONSUMER_SECRET" then return %q end
      return getenv(k)
    end
    package.loaded.webhook_app = dofile(%q)
    os.getenv = getenv
  }
]]):format(SECRET, root() .. "/examples/nginx/webhook_app.lua")
        .. conf:gsub("listen 127%.0%.0%.1:8080;", "listen 127.0.0.1:" .. ports[1] .. ";")
    end }
    assert(server, err)
    session = core.session { timeout = 5 }
  end)

  teardown(function()
    if session then session:close() end
    if server then server:stop() end
  end)

  it("answers the CRC and signed deliveries, refuses forged ones", function()
    local res = assert(session:request { method = "GET",
      url = server.url .. "/webhooks/twitter?crc_token=" .. TOKEN })
    assert.are.equal(200, res.status)
    assert.are.equal(webhook.crc_response(SECRET, TOKEN), cjson.decode(res.body).response_token)
    local body = '{"for_user_id":"3","follow_events":[{"type":"follow","source":{"id":"4"},"target":{"id":"3"}}]}'
    res = assert(session:request { method = "POST", url = server.url .. "/webhooks/twitter",
      headers = { ["X-Twitter-Webhooks-Signature"] = sign(body) }, body = body })
    assert.are.equal(200, res.status)
    res = assert(session:request { method = "POST", url = server.url .. "/webhooks/twitter",
      headers = { ["X-Twitter-Webhooks-Signature"] = sign(body .. "x") }, body = body })
    assert.are.equal(401, res.status)
    assert.are.equal(404, assert(session:request { method = "GET", url = server.url .. "/" }).status)
    assert.is_nil(server:error_log():find("[error]", 1, true))
  end)
end)
