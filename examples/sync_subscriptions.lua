-- sync_subscriptions: make the webhook's subscribed set equal a list of users.
--   lua5.4 examples/sync_subscriptions.lua [--config FILE] [USERS.json]
-- USERS.json: a JSON array of {user_id, access_token, access_token_secret}
-- (or an emulator config); default: the users of --config / the emulator.
package.path = ((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or ".") .. "/?.lua;" .. package.path
local common = require "common"

common.run(function(env)
  local users = env.users
  if env.args[1] then users = assert(require("account_activity.cli").read_users(env.args[1])) end
  local wh = assert(env.client:ensure_webhook(env.webhook_url))
  local report = assert(env.client:sync_subscriptions(wh.id, users, { progress = true }))
  common.print_report("sync", report)
  -- Drop the last user: the next sync removes exactly that one.
  local fewer = {}
  for i = 1, #users - 1 do fewer[i] = users[i] end
  local r2 = assert(env.client:sync_subscriptions(wh.id, fewer))
  common.print_report("sync without the last user", r2)
  local r3 = assert(env.client:sync_subscriptions(wh.id, users))
  common.print_report("sync everyone again", r3)
  return report.ok and r2.ok and r3.ok and #r2.removed == 1 and #r3.added == 1
end)
