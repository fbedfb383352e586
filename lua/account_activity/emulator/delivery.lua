--- Signed event POSTs to webhooks, the record kept for replay, and replay
-- jobs. Everything goes through cosockets; async work runs in ngx.timer.
local util = require "account_activity.emulator.util"
local state = require "account_activity.emulator.state"
local events = require "account_activity.emulator.events"
local crc = require "account_activity.emulator.crc"
local transport = require "account_activity.transport.ngx"

local M = {}

M.signature = require("account_activity.crc").sign

--- POST one raw body to one webhook. Returns a per-delivery report.
function M.post(wh, body, cfg)
  local res, err = transport.request {
    method = "POST", url = wh.url, body = body,
    timeout = ((cfg.delivery and cfg.delivery.timeout_ms) or 3000) / 1000,
    headers = {
      ["Content-Type"] = "application/json",
      ["x-twitter-webhooks-signature"] = M.signature(cfg.app.consumer_secret, body),
    },
  }
  if not res then
    return { webhook_id = wh.id, ok = false, error = err.kind .. ": " .. err.message }
  end
  return { webhook_id = wh.id, ok = res.status >= 200 and res.status < 300, status = res.status,
    ms = math.floor((res.time or 0) * 1000) }
end

--- Build `count` events of `type` for `user_id` and the valid webhooks the
-- user is subscribed to. Returns plan | nil, err.
function M.plan(spec, cfg)
  local user = cfg._by_id[tostring(spec.user_id or "")]
  if not user then return nil, "unknown user_id " .. tostring(spec.user_id) end
  if not events.resolve(spec.type) and spec.body == nil then
    return nil, "unknown event type " .. tostring(spec.type) .. " (known: " .. table.concat(events.types(), ", ") .. ")"
  end
  local targets, skipped = {}, {}
  for _, wh in ipairs(state.webhooks()) do
    if (spec.webhook_id == nil or tostring(spec.webhook_id) == wh.id) and state.subscribed(wh.id, user.user_id) then
      if wh.valid then targets[#targets + 1] = wh
      else skipped[#skipped + 1] = { webhook_id = wh.id, reason = "webhook is invalid (failed CRC)" } end
    end
  end
  local bodies = {}
  local count = math.max(1, math.min(tonumber(spec.count) or 1, 10000))
  local t = state.next_event_time()
  for i = 1, count do
    local body = spec.body
    if body == nil then
      if i > 1 then t = state.next_event_time() end
      local payload = events.generate(spec.type, cfg, user, t, { shape = spec.shape, index = i,
        text = spec.text, outgoing = spec.outgoing })
      body = util.encode(payload)
    elseif type(body) == "table" then
      body = util.encode(body)
    end
    bodies[i] = body
  end
  return { user = user, targets = targets, skipped = skipped, bodies = bodies, t = t,
    revoke = events.resolve(spec.type) == "user_event" and spec.unsubscribe_on_revoke ~= false }
end

--- Deliver a plan; every attempted delivery is recorded for replay.
function M.run(plan, cfg)
  local reports = {}
  for _, body in ipairs(plan.bodies) do
    for _, wh in ipairs(plan.targets) do
      state.record_event { t = plan.t, webhook_id = wh.id, user_id = plan.user.user_id, body = body }
      local r = M.post(wh, body, cfg)
      reports[#reports + 1] = r
    end
  end
  if plan.revoke then
    -- X deletes the subscription when the user revokes the app.
    for _, wh in ipairs(plan.targets) do state.unsubscribe(wh.id, plan.user.user_id) end
  end
  state.incr("stats:delivered", #reports)
  return reports
end

-- ---------------------------------------------------------------- replay

--- Start a replay job. Returns job | nil, "running".
function M.start_replay(wh, from, to, cfg)
  local job = { job_id = state.new_id("job"), webhook_id = wh.id, from = from, to = to,
    created = ngx.now(), state = "running" }
  if not state.dict():add("replay:" .. wh.id, util.encode(job), 600) then return nil, "running" end
  state.set_json("job:" .. job.job_id, job)
  local ok, err = ngx.timer.at(0, function(premature)
    if premature then return end
    local pok, perr = pcall(M.run_replay, job, cfg)
    if not pok then
      ngx.log(ngx.ERR, "emulator replay failed: ", perr)
      state.dict():delete("replay:" .. wh.id)
    end
  end)
  if not ok then
    state.dict():delete("replay:" .. wh.id)
    error("cannot start the replay timer: " .. tostring(err))
  end
  return job
end

function M.run_replay(job, cfg)
  -- replay.hold_ms keeps a job running a while, so a test can meet the
  -- "job already running" answer without racing the job's end
  local hold = cfg.replay and tonumber(cfg.replay.hold_ms) or 0
  if hold > 0 then ngx.sleep(hold / 1000) end
  local wh = state.webhook(job.webhook_id)
  local complete = false
  local delivered, failed = 0, 0
  if wh then
    local check = crc.run(wh, cfg)
    if check.ok then
      for _, ev in ipairs(state.events(wh.id, job.from, job.to)) do
        local r = M.post(wh, ev.body, cfg)
        if r.ok then delivered = delivered + 1 else failed = failed + 1 end
      end
      complete = failed == 0
      M.post(wh, util.encode(events.replay_status(wh.id, job.job_id, complete)), cfg)
    end
  end
  job.state = complete and "Complete" or "Incomplete"
  job.delivered, job.failed, job.finished = delivered, failed, ngx.now()
  -- a reset while the job ran forgot it: do not bring it back
  local current = util.decode(state.dict():get("replay:" .. job.webhook_id) or "null")
  if type(current) == "table" and current.job_id == job.job_id then
    state.set_json("job:" .. job.job_id, job)
    state.dict():delete("replay:" .. job.webhook_id)
  end
end

function M.jobs()
  local out = {}
  for _, k in ipairs(state.keys_with_prefix("job:")) do out[#out + 1] = state.get_json(k) end
  table.sort(out, function(a, b) return a.created < b.created end)
  return util.array(out)
end

return M
