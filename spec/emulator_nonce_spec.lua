-- POST /_emulator/reset keeps the OAuth 1.0a nonces it has seen (issue 14,
-- item 11): a captured signed request must not replay past authentication
-- because the emulator was reset in between.
local core = require "account_activity.core"
local H = require "emulator_helper"

describe("emulator OAuth 1.0a nonces", function()
  local emu, session
  setup(function()
    emu = H.start {}
    session = core.session { timeout = 10 }
  end)
  teardown(function()
    session:close()
    emu:stop()
  end)

  -- One signed request, captured: the same bytes every time it is sent.
  local function capture()
    local cfg = emu.config
    local url = emu.url .. "/1.1/account_activity/all/dev/webhooks.json"
    local header = core.oauth1_header {
      method = "GET", url = url, consumer_key = cfg.app.consumer_key, consumer_secret = cfg.app.consumer_secret,
      token = cfg.app.owner.access_token, token_secret = cfg.app.owner.access_token_secret,
    }
    return { method = "GET", url = url, headers = { Authorization = header } }
  end

  local function send(req) return assert(session:request(req)).status end

  it("refuses a replayed request, even after a reset", function()
    local req = capture()
    assert.are.equal(200, send(req))
    assert.are.equal(401, send(req))
    local _, status = emu:reset()
    assert.are.equal(200, status)
    assert.are.equal(401, send(req))
    -- a fresh signature still passes: the reset did not lock anyone out
    assert.are.equal(200, send(capture()))
  end)

  it("keeps them through several resets", function()
    local req = capture()
    assert.are.equal(200, send(req))
    for _ = 1, 3 do assert.is_true(emu:reset().ok) end
    assert.are.equal(401, send(req))
  end)
end)
