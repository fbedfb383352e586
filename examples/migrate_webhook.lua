-- migrate_webhook: move every subscription to a new URL, then delete the old webhook.
--   lua5.4 examples/migrate_webhook.lua [--config FILE] [NEW_URL]
package.path = ((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or ".") .. "/?.lua;" .. package.path
local common = require "common"

common.run(function(env)
  local c = env.client
  local old = assert(c:ensure_webhook(env.webhook_url))
  common.print_report("subscribe to the old webhook", c:subscribe_many(old.id, env.users))
  local r = assert(c:migrate_webhook(old.id, env.args[1] or env.webhook_url2, { users = env.users, progress = true }))
  print(string.format("migrated %s -> %s (%s)", old.id, r.webhook.id, r.webhook.url))
  common.print_report("migrate", r)
  print("old webhook deleted: " .. tostring(r.old_deleted))
  -- Safe to re-run: the old webhook is gone, everyone is already on the new one.
  local again = assert(c:migrate_webhook(old.id, env.args[1] or env.webhook_url2, { users = env.users }))
  common.print_report("migrate again", again)
  return r.ok and r.old_deleted and again.ok and #again.added == 0
end)
