-- serve without Redis (issue 13, "Without Redis"): dedupe_dict drops a
-- delivery any worker took already; async = true never loses an event to
-- lua_max_running_timers (nginx drops a timer that fires past the limit and
-- only logs it).
local nginx_process = require "account_activity.nginx_process"
local core = require "account_activity.core"

local SECRET = "nosink-spec-consumer-secret-0123456789abcdef"

local function sign(body)
  return "sha256=" .. core.base64_encode(core.hmac_sha256(SECRET, body))
end

local function count_lines(path)
  local f = io.open(path, "rb")
  if not f then return 0, {} end
  local n, seen = 0, {}
  for line in f:lines() do
    n = n + 1
    seen[line] = (seen[line] or 0) + 1
  end
  f:close()
  return n, seen
end

local function wait_for(fn, secs)
  local deadline = core.now() + (secs or 10)
  repeat
    local v = fn()
    if v then return v end
    core.sleep(0.02)
  until core.now() > deadline
  return fn()
end

local function start(out)
  return nginx_process.start { workers = 2, main = "", http = function(ports)
    return ([[
  lua_shared_dict aa_dedupe 1m;
  lua_max_running_timers 4;
  init_by_lua_block {
    local OUT = %q
    local function record(ev)
      local f = assert(io.open(OUT, "ab"))
      f:write(ev.id, "\n")
      f:close()
    end
    package.loaded.nosink_opts = {
      dedupe = { consumer_secret = %q, dedupe_dict = "aa_dedupe", on_event = record },
      async = { consumer_secret = %q, async = true, max_running_timers = 4,
        on_event = function(ev) ngx.sleep(0.3); record(ev) end },
    }
  }
  server {
    listen 127.0.0.1:%d;
    location = /dedupe { content_by_lua_block { require("account_activity.nginx").serve(package.loaded.nosink_opts.dedupe) } }
    location = /async { content_by_lua_block { require("account_activity.nginx").serve(package.loaded.nosink_opts.async) } }
  }
]]):format(out, SECRET, SECRET, ports[1])
  end }
end

describe("serve without a sink", function()
  local server, out

  setup(function()
    out = os.tmpname()
    os.remove(out)
    local err
    server, err = start(out)
    assert(server, err)
  end)

  teardown(function()
    if server then server:stop() end
    os.remove(out)
  end)

  before_each(function() os.remove(out) end)

  local function deliveries(path, bodies)
    local reqs = {}
    for i, body in ipairs(bodies) do
      reqs[i] = { method = "POST", url = server.url .. path, body = body,
        headers = { ["Content-Type"] = "application/json", ["X-Twitter-Webhooks-Signature"] = sign(body),
          Connection = "close" } }
    end
    -- several sessions and no keep-alive: the requests spread over both workers
    local s = core.session { timeout = 30 }
    local results = s:perform(reqs, { concurrency = 32 })
    s:close()
    return results
  end

  it("dedupe_dict: a delivery repeated 30 times is dispatched once", function()
    local body = '{"for_user_id":"1","favorite_events":[{"id":"once"}]}'
    local bodies = {}
    for i = 1, 30 do bodies[i] = body end
    for _, r in ipairs(deliveries("/dedupe", bodies)) do assert.are.equal(200, r.res.status) end
    core.sleep(0.3) -- a wrongly repeated dispatch has the time to land
    local n, seen = count_lines(out)
    assert.are.equal(1, n)
    assert.are.equal(1, seen.once)
  end)

  it("async: 120 deliveries with a slow handler and 4 timers: every one answered 200 is handled", function()
    local bodies = {}
    for i = 1, 120 do bodies[i] = '{"for_user_id":"1","favorite_events":[{"id":"ev' .. i .. '"}]}' end
    local ok200 = {}
    for i, r in ipairs(deliveries("/async", bodies)) do
      if r.res and r.res.status == 200 then ok200[#ok200 + 1] = "ev" .. i end
    end
    wait_for(function() return count_lines(out) >= #ok200 end, 30)
    local n, seen = count_lines(out)
    local lost = 0
    for _, id in ipairs(ok200) do if not seen[id] then lost = lost + 1 end end
    assert.are.equal(0, lost, lost .. " of " .. #ok200 .. " answered 200 never handled")
    assert.are.equal(#ok200, n)
    assert.is_nil(server:error_log():find("lua_max_running_timers are not enough", 1, true))
    assert.matches("dispatching %d+ event%(s%) in the request", server:error_log())
  end)
end)
