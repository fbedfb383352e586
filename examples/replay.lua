-- replay: ask X to re-deliver the events of a time window (e.g. after an outage).
--   lua5.4 examples/replay.lua [--config FILE] [WEBHOOK_ID [FROM TO]]
-- FROM/TO: YYYYMMDDhhmm (UTC), an epoch, now, -90m, -2h. Against the
-- emulator, an event is delivered first so the replay has something to send.
package.path = ((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or ".") .. "/?.lua;" .. package.path
local common = require "common"
local wf = require "account_activity.workflows"

common.run(function(env)
  local c = env.client
  local id = env.args[1]
  if not id then
    local wh = assert(c:ensure_webhook(env.webhook_url))
    assert(c:subscribe_many(wh.id, { env.users[1] }).ok)
    id = wh.id
    local r = env.control("POST", "deliver", { user_id = env.users[1].user_id, type = "tweet_create", wait = true })
    print("delivered an event first: " .. tostring(r and r.delivered))
  end
  local from = assert(wf.parse_time(env.args[2] or "-30m"))
  local to = assert(wf.parse_time(env.args[3] or "now"))
  local job, err = c:replay(id, from, to)
  if not job then print("replay failed: " .. tostring(err)) return false end
  print(string.format("replay job %s created at %s", tostring(job.job_id), tostring(job.created_at)))
  if env.events then
    -- Our own endpoint: wait for the replayed event and the job's completion event.
    local core = require "account_activity.core"
    local t0, done = core.now(), nil
    while core.now() - t0 < 5 and not done do
      for _, rec in ipairs(env.events()) do
        print("  " .. require("account_activity.cli").event_line(rec))
        if rec.type == "replay_job_status" then done = rec end
      end
      core.sleep(0.05)
    end
    return done ~= nil
  end
  return true
end)
