-- teardown: remove every subscription, then the webhook.
--   lua5.4 examples/teardown.lua [--config FILE] [WEBHOOK_ID]
-- Without an id, a webhook with subscriptions is made first so there is something to remove.
package.path = ((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or ".") .. "/?.lua;" .. package.path
local common = require "common"

common.run(function(env)
  local c = env.client
  local id = env.args[1]
  if not id then
    local wh = assert(c:ensure_webhook(env.webhook_url))
    common.print_report("set up", c:subscribe_many(wh.id, env.users))
    id = wh.id
  end
  local r = assert(c:teardown(id, { progress = true }))
  common.print_report("teardown " .. id, r)
  print("webhook deleted: " .. tostring(r.webhook_deleted))
  local again = assert(c:teardown(id))
  print("again: already gone = " .. tostring(again.already_gone))
  return r.ok and r.webhook_deleted and again.already_gone == true
end)
