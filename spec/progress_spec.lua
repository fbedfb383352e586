-- The progress bar: what a terminal user sees on stderr.
local progress = require "account_activity.progress"

local function screen()
  local out = { text = "" }
  function out:write(...) for _, s in ipairs { ... } do self.text = self.text .. s end end
  function out.flush() end
  -- what a terminal shows: each \r returns to the start and overwrites
  function out:visible()
    local line = ""
    for seg in (self.text .. "\r"):gmatch("([^\r]*)\r") do
      seg = seg:gsub("\n$", "")
      line = seg .. line:sub(#seg + 1)
    end
    return line
  end
  return out
end

describe("progress bar", function()
  it("leaves no stray characters when a line gets shorter", function()
    local out = screen()
    local bar = progress.bar("sync", out, 10)
    bar(1, 1000)
    bar(1, 1000, { waiting = 37 })
    local waiting = out:visible()
    assert.matches("waiting 37 s for the rate limit$", waiting)
    bar(1000, 1000)
    local final = out:visible()
    assert.matches("1000/1000 +%d+%.%d/s ETA 0s *$", final)
    assert.is_nil(final:find("ETA 0s%s+%S"), final)
    assert.is_nil(final:find("limit", 1, true), final)
  end)

  it("says how long a wait for the rate limit is, also past a minute", function()
    local out = screen()
    local bar = progress.bar("sync", out, 10)
    bar(3, 10, { waiting = 125 })
    assert.matches("3/10 waiting 2m05s for the rate limit$", out:visible())
  end)
end)
