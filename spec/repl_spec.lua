-- What a REPL user sees: results print as one readable line or block (never
-- "table: 0x..." and never a secret), stay plain tables underneath, and
-- aa.help prints its text once.
local aa = require "account_activity"
local core = require "account_activity.core"
local cjson = require "cjson"
local H = require "emulator_helper"

-- A real REPL (-i): the spec's own interpreter, unless that is the ASan
-- build, which has no REPL; then the same Lua without the sanitizer.
local INTERP = require "spec_lua"
if INTERP:find("asan", 1, true) then INTERP = nil end

local function printable(v, pattern)
  local s = tostring(v)
  assert.is_nil(s:find("^table: "), "prints as " .. s)
  if pattern then assert.matches(pattern, s) end
  return s
end

describe("REPL printing", function()
  local emu, rcv, cfg, c

  setup(function()
    emu = H.start { config = { users_count = 3 } }
    cfg = emu.config
    rcv = H.receiver(cfg.app.consumer_secret)
    c = aa.new { consumer_key = cfg.app.consumer_key, consumer_secret = cfg.app.consumer_secret,
      access_token = cfg.app.owner.access_token, access_token_secret = cfg.app.owner.access_token_secret,
      base_url = emu.url }
  end)
  teardown(function()
    if rcv then rcv:stop() end
    if emu then emu:stop() end
  end)

  it("webhooks, counts, responses, reports, health and events print; none shows a secret", function()
    local wh, res = assert(c:ensure_webhook(rcv:hook("ok")))
    printable(wh, "^webhook %d+ http://127%.0%.0%.1:%d+/ok/webhook %(valid")
    local list, lres = assert(c:webhooks())
    printable(list, "^webhooks: 1\n  webhook " .. wh.id)
    printable(lres, "^HTTP 200, %d+ bytes")
    printable(assert(c:webhook(wh.id)), "^webhook " .. wh.id)
    local users = {}
    for i, u in ipairs(cfg.users) do
      users[i] = { user_id = u.user_id, access_token = u.access_token, access_token_secret = u.access_token_secret }
    end
    local report = assert(c:sync_subscriptions(wh.id, users))
    printable(report, "^ok: added 3, kept 0, removed 0, failed 0 in %d")
    printable(assert(c:subscription_count()), "^subscriptions: all 3")
    local health = assert(c:health(wh.id))
    printable(health, "^healthy, webhook " .. wh.id .. ", exists, valid, 3 subscriptions, CRC ok in %d+ ms$")
    local bad = c:subscribe_many(wh.id, { { user_id = "999", access_token = "999-x", access_token_secret = "y" } })
    printable(bad, "^NOT ok: added 0, kept 0, removed 0, failed 1.*\n  subscribe 999: HTTP 401")
    local evs = aa.parse_events('{"for_user_id":"7","follow_events":[{"type":"follow","source":{"id":"2"},"target":{"id":"7"}}]}')
    printable(evs, "^events: 1\n  event follow for 7 %(id ")
    printable(evs[1], "^event follow for 7")
    printable(core.version(), "^lua%-account%-activity %d+%.%d+%.%d+ %(libcurl ")
    -- still plain tables
    assert.are.equal(3, #report.added)
    assert.is_string(cjson.encode(report.added))
    assert.are.equal("follow", cjson.decode(cjson.encode { evs[1].type })[1])
    for _, v in ipairs { wh, list, lres, report, health, evs[1] } do
      local s = tostring(v)
      for _, secret in ipairs { cfg.app.consumer_secret, cfg.app.owner.access_token_secret, cfg.app.bearer_token } do
        assert.is_nil(s:find(secret, 1, true))
      end
    end
    assert(c:teardown(wh.id))
    -- a response never prints its body (a token endpoint's body is a secret)
    local _, tres = assert(c:bearer_token())
    assert.is_nil(tostring(tres):find(cfg.app.bearer_token, 1, true))
    assert.is_nil(res and tostring(res):find("access_token", 1, true))
  end)

  it("aa.help prints its text once in a real REPL", function()
    if not INTERP then return pending("the ASan interpreter has no REPL") end
    local script = os.tmpname()
    local f = io.open(script, "w")
    f:write('aa.help("subscribe")\n')
    f:close()
    local p = io.popen(INTERP .. " -i -e 'aa = require \"account_activity\"' < " .. script .. " 2>&1")
    local out = p:read("a")
    p:close()
    os.remove(script)
    local _, n = out:gsub("Subscribe a user", "")
    assert.are.equal(1, n, out)
  end)
end)
