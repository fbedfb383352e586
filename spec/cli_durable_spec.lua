-- `account-activity events consume | pending | dead` as real processes,
-- against a real redis-server; the stored signature is never printed.
local redis_helper = require "redis_helper"
local cjson = require "cjson"

local INTERP = require "spec_lua"

local function read(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local function run(args)
  local out, err = os.tmpname(), os.tmpname()
  local a, _, c = os.execute(INTERP .. " bin/account-activity " .. args .. " >" .. out .. " 2>" .. err)
  local status = type(a) == "number" and math.floor(a / 256) or c
  local o, e = read(out), read(err)
  os.remove(out)
  os.remove(err)
  return status, o, e
end

describe("events consume / pending / dead", function()
  local srv, addr
  local SIG = "sha256=c2lnbmF0dXJlLW5ldmVyLXByaW50ZWQ="

  setup(function()
    local err
    srv, err = redis_helper.start()
    assert(srv, err)
    addr = "127.0.0.1:" .. srv.port
    for i = 1, 3 do
      srv:cmd("XADD", "aa:events", "*", "body", '{"for_user_id":"77","follow_events":[{"type":"follow","id":"c' .. i
        .. '","source":{"screen_name":"a' .. i .. '"},"target":{"screen_name":"b"}}]}',
        "sig", SIG, "received_at", os.time(), "api", "aaa")
    end
    srv:cmd("XADD", "aa:events", "*", "body", "{broken", "sig", SIG, "received_at", os.time(), "api", "aaa")
  end)

  teardown(function()
    if srv then srv:stop() end
  end)

  it("consume prints and acks the events, dead-letters the broken one", function()
    local status, out, err = run("events consume --redis " .. addr .. " --group cli --name one --count 3 --timeout 10")
    assert.are.equal(0, status, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(3, #lines, out)
    assert.matches("follow%s+for 77%s+@a1 %-> @b", lines[1])
    assert.matches("processed 3, failed 1, claimed 0, dead 1, pending 0", err)
    assert.is_nil((out .. err):find(SIG, 1, true))
  end)

  it("a --handler that raises leaves the entry pending; pending lists it", function()
    srv:cmd("XADD", "aa:events", "*", "body", '{"for_user_id":"77","favorite_events":[{"id":"p1"}]}',
      "sig", SIG, "received_at", os.time(), "api", "aaa")
    local handler = os.tmpname()
    local f = assert(io.open(handler, "wb"))
    f:write('return function(r) r:on("favorite", function() error("not today") end) end\n')
    f:close()
    local status, _, err = run("events consume --redis " .. addr .. " --group cli --name two --handler " .. handler
      .. " --count 1 --timeout 10")
    os.remove(handler)
    assert.are.equal(0, status, err)
    assert.matches("failed 1", err)
    local s2, out = run("--json events pending --redis " .. addr .. " --group cli")
    assert.are.equal(0, s2)
    local p = cjson.decode(out)
    assert.are.equal(1, p.pending)
    assert.are.same({ { name = "two", pending = 1 } }, p.consumers)
    assert.are.equal(1, p.entries[1].deliveries)
    local s3, human = run("events pending --redis " .. addr .. " --group cli")
    assert.are.equal(0, s3)
    assert.matches("1 pending in aa:events, group cli", human)
  end)

  it("dead shows the dead-letter entries with their error, never the signature", function()
    local status, out = run("events dead --redis " .. addr)
    assert.are.equal(0, status)
    assert.matches("aa:events:dead: 1 dead entry", out)
    assert.matches("after 1 attempt%(s%) on one: cannot parse", out)
    local s2, json = run("--json events dead --redis " .. addr)
    assert.are.equal(0, s2)
    local d = cjson.decode(json)
    assert.are.equal("{broken", d.entries[1].body)
    assert.is_nil(json:find(SIG, 1, true))
    assert.is_nil(out:find(SIG, 1, true))
  end)

  it("usage errors exit 2", function()
    local status, _, err = run("events consume --redis " .. addr)
    assert.are.equal(2, status)
    assert.matches("needs %-%-group", err)
    local s2 = run("events pending --redis nonsense:x --group g")
    assert.are.equal(2, s2)
    local s3, _, e3 = run("events dead --redis 127.0.0.1:1")
    assert.are.equal(1, s3)
    assert.matches("cannot connect", e3)
  end)
end)
