-- ensure_webhook: reuse, re-validate or register a webhook, idempotently.
--   lua5.4 examples/ensure_webhook.lua [--config FILE] [URL]   (see examples/common.lua)
package.path = ((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or ".") .. "/?.lua;" .. package.path
local common = require "common"

common.run(function(env)
  local url = env.args[1] or env.webhook_url
  local wh, info = env.client:ensure_webhook(url)
  if not wh then print("ensure_webhook failed: " .. tostring(info)) return false end
  print(string.format("%s webhook %s for %s (valid: %s)", info.action, wh.id, wh.url, tostring(wh.valid)))
  -- Running it again changes nothing.
  local again, info2 = env.client:ensure_webhook(url)
  print(string.format("again: %s webhook %s", info2.action, again.id))
  return again.id == wh.id and info2.action == "reused"
end)
