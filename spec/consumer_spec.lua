-- aa.consumer against a real redis-server: read, dispatch, ack; retries of a
-- raising handler, the dead-letter stream, stop() after the batch in hand.
local aa = require "account_activity"
local core = require "account_activity.core"
local redis_helper = require "redis_helper"

local function body_of(id)
  return '{"for_user_id":"42","favorite_events":[{"id":"' .. id .. '"}]}'
end

local function wait_for(fn, secs)
  local deadline = core.now() + (secs or 10)
  repeat
    local v = fn()
    if v then return v end
  until core.now() > deadline
  return fn()
end

local function field_map(list)
  local f = {}
  for i = 1, #list, 2 do f[list[i]] = list[i + 1] end
  return f
end

describe("consumer", function()
  local srv
  local n = 0

  setup(function()
    local err
    srv, err = redis_helper.start()
    assert(srv, err)
  end)

  teardown(function()
    if srv then srv:stop() end
  end)

  -- A fresh stream per test.
  local stream
  before_each(function()
    n = n + 1
    stream = "spec:" .. n
  end)

  local function add(id, body)
    return srv:cmd("XADD", stream, "*", "body", body or body_of(id), "sig", "sha256=x", "received_at", os.time(), "api", "aaa")
  end

  local function new(router, o)
    local opts = { redis = { port = srv.port }, stream = stream, group = "g", name = "c1",
      router = router, block_ms = 50, claim_idle_ms = 100, max_attempts = 3, log = function() end }
    for k, v in pairs(o or {}) do opts[k] = v end
    return aa.consumer(opts)
  end

  it("creates the group (entries added before it count), dispatches, acks", function()
    add("a1"); add("a2"); add("a3")
    local seen = {}
    local r = aa.router()
    r:on("favorite", function(ev) seen[#seen + 1] = ev.id .. "@" .. ev.stream_id:match("^%d+") end)
    local c = new(r)
    local out = assert(c:step())
    assert.are.same({ processed = 3, failed = 0, claimed = 0, dead = 0 }, out)
    assert.are.equal(3, #seen)
    assert.matches("^a1@%d+$", seen[1])
    assert.are.same({ processed = 3, failed = 0, claimed = 0, dead = 0, pending = 0 }, c:stats())
    -- nothing left for a second consumer of the group
    local other = new(r, { name = "c2" })
    assert.are.same({ processed = 0, failed = 0, claimed = 0, dead = 0 }, assert(other:step()))
    c:close(); other:close()
  end)

  it("leaves a failed entry pending and retries it after claim_idle_ms", function()
    add("t1")
    local calls = 0
    local r = aa.router()
    r:on("favorite", function()
      calls = calls + 1
      if calls == 1 then error("transient") end
    end)
    local c = new(r)
    local first = assert(c:step())
    assert.are.equal(1, first.failed)
    assert.are.equal(1, c:stats().pending)
    local out = wait_for(function()
      local o = assert(c:step())
      return o.processed > 0 and o
    end)
    assert.are.equal(1, out.claimed)
    assert.are.equal(2, calls)
    assert.are.equal(0, c:stats().pending)
    assert.are.equal(0, srv:cmd("XLEN", stream .. ":dead"))
    c:close()
  end)

  it("moves an always-raising entry to the dead letter after max_attempts tries", function()
    add("bad1")
    local calls = 0
    local r = aa.router()
    r:on("favorite", function() calls = calls + 1; error("handler always raises") end)
    local c = new(r)
    wait_for(function() assert(c:step()); return c.counts.dead > 0 end)
    assert.are.equal(3, calls)
    local dead = srv:cmd("XRANGE", stream .. ":dead", "-", "+")
    assert.are.equal(1, #dead)
    local f = field_map(dead[1][2])
    assert.matches("handler always raises", f.error)
    assert.are.equal("3", f.attempts)
    assert.are.equal(body_of("bad1"), f.body)
    assert.are.equal("sha256=x", f.sig)
    assert.are.equal(0, c:stats().pending)
    -- and it stays dead: no fourth call
    core.sleep(0.25)
    assert(c:step())
    assert.are.equal(3, calls)
    c:close()
  end)

  it("dead-letters a body that does not parse at once", function()
    add(nil, "{not json")
    local calls = 0
    local r = aa.router()
    r:on("*", function() calls = calls + 1 end)
    local c = new(r)
    local out = assert(c:step())
    assert.are.equal(1, out.dead)
    assert.are.equal(0, calls)
    assert.matches("cannot parse", field_map(srv:cmd("XRANGE", stream .. ":dead", "-", "+")[1][2]).error)
    c:close()
  end)

  it("router.on_error still hears of errors, and they still count as failures", function()
    add("oe1")
    local heard
    local r = aa.router { on_error = function(err) heard = err end }
    r:on("favorite", function() error("boom") end)
    local c = new(r)
    assert.are.equal(1, assert(c:step()).failed)
    assert.matches("boom", tostring(heard))
    assert.are.equal(1, c:stats().pending)
    c:close()
  end)

  it("stop() ends run() after the batch in hand", function()
    for i = 1, 5 do add("s" .. i) end
    local got = 0
    local r = aa.router()
    local c
    r:on("favorite", function()
      got = got + 1
      if got == 2 then c:stop() end
    end)
    c = new(r, { batch = 10 })
    local stats = c:run()
    assert.are.equal(5, got)
    assert.are.equal(5, stats.processed)
    assert.are.equal(0, stats.pending)
  end)

  it("an ack lost with the connection: its entries run again on reconnect, not after claim_idle_ms", function()
    add("lost1"); add("lost2")
    local calls = {}
    local r = aa.router()
    local killed = false
    r:on("favorite", function(ev)
      calls[ev.id] = (calls[ev.id] or 0) + 1
      if not killed then
        killed = true
        -- every other client's connection dropped: this consumer's included, before its XACK
        srv:cmd("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
      end
    end)
    local c = new(r, { claim_idle_ms = 60000 })
    local first, err = c:step()
    assert.is_nil(first)
    assert.are.equal("network", err.kind)
    assert.are.equal(2, c:stats().pending)
    local again = assert(c:step())
    assert.are.equal(2, again.processed)
    assert.are.same({ lost1 = 2, lost2 = 2 }, calls)
    assert.are.equal(0, c:stats().pending)
    c:close()
  end)

  it("returns nil, err while Redis is unreachable", function()
    local c = aa.consumer { redis = { port = 1 }, stream = stream, router = aa.router(), log = function() end }
    local out, err = c:step()
    assert.is_nil(out)
    assert.are.equal("network", err.kind)
  end)

  it("raises on bad arguments", function()
    assert.has_error(function() aa.consumer { stream = "x" } end,
      "bad argument 'router' to 'consumer' (router expected, got nil)")
    assert.has_error(function() aa.consumer { router = aa.router(), batch = "64" } end,
      "bad argument 'batch' to 'consumer' (number expected, got string)")
  end)
end)
