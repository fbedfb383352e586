-- health: does the webhook exist, is it valid, how many subscriptions, and
-- does our endpoint answer X's CRC correctly within 3 s?
--   lua5.4 examples/health.lua [--config FILE] [WEBHOOK_ID|URL]
package.path = ((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or ".") .. "/?.lua;" .. package.path
local common = require "common"

common.run(function(env)
  local c = env.client
  local target = env.args[1]
  if not target then
    local wh = assert(c:ensure_webhook(env.webhook_url))
    c:subscribe_many(wh.id, env.users)
    target = wh.id
  end
  local h = c:health(target)
  print(string.format("webhook %s %s", tostring(h.id), tostring(h.url)))
  print(string.format("exists %s, valid %s, subscriptions %s", tostring(h.exists), tostring(h.valid),
    tostring(h.subscriptions)))
  if h.crc then
    print(string.format("crc %s, %.1f ms of a %g s budget", h.crc.ok and "ok" or tostring(h.crc.reason),
      h.crc.latency * 1000, h.crc.budget))
  end
  for _, p in ipairs(h.problems) do print("problem: " .. p) end
  print(h.ok and "healthy" or "NOT healthy")
  return h.ok
end)
