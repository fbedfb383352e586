--- The control plane under /_emulator/ (JSON in, JSON out; loopback only).
local util = require "account_activity.emulator.util"
local respond = require "account_activity.emulator.respond"
local state = require "account_activity.emulator.state"
local config = require "account_activity.emulator.config"
local faults = require "account_activity.emulator.faults"
local delivery = require "account_activity.emulator.delivery"
local crc = require "account_activity.emulator.crc"
local webhooks = require "account_activity.emulator.webhooks"
local events = require "account_activity.emulator.events"

local M = {}

local function send(status, body)
  return respond.send(status, body)
end

local function bad(msg, status)
  return send(status or 400, { error = msg })
end

local function clean_config(cfg)
  local c = util.deep_copy(cfg)
  c._by_token, c._by_id, c._envs, c._secrets = nil, nil, nil, nil
  c._o2_access, c._o2_refresh = nil, nil
  c.app.owner.is_owner = nil
  for _, u in ipairs(c.users) do u.is_owner = nil end
  c.users = util.array(c.users)
  c.envs = util.array(c.envs)
  return c
end

local function body_json()
  ngx.req.read_body()
  local raw = ngx.req.get_body_data()
  if not raw then
    local file = ngx.req.get_body_file()
    if file then
      local f = io.open(file, "rb")
      if f then raw = f:read("*a"); f:close() end
    end
  end
  if raw == nil or raw:match("^%s*$") then return {} end
  local v = util.decode(raw)
  if type(v) ~= "table" then return nil, "the body must be a JSON object" end
  return v
end

local H = {}

H["POST reset"] = function()
  state.reset()
  return send(200, { ok = true })
end

local function base_url()
  return "http://" .. (ngx.var.http_host or ("127.0.0.1:" .. ngx.var.server_port))
end

H["GET config"] = function()
  local c = clean_config(state.config())
  c.base_url = base_url()
  return send(200, c)
end

-- The running emulator's --print-config, base_url included.
H["GET credentials"] = function()
  return send(200, config.credentials(state.config(), base_url()))
end

H["POST config"] = function(body)
  local cur = clean_config(state.config())
  body.base_url = nil -- GET config's answer posted back: the URL is not a setting
  local keep_users = body.users == nil and body.users_count == nil
  local users = cur.users
  cur.users = nil
  local merged = util.merge(cur, body)
  if keep_users then merged.users = users end
  local ok, cfg = pcall(config.normalize, merged)
  if not ok then return bad((tostring(cfg):gsub("^[^:]*:%d+: ", ""))) end
  state.set_config(cfg)
  return send(200, clean_config(state.config()))
end

H["GET faults"] = function()
  return send(200, { faults = faults.list() })
end

H["POST faults"] = function(body)
  local added, err = faults.add(body.faults or body)
  if not added then return bad(err) end
  return send(200, { faults = added })
end

H["DELETE faults"] = function()
  faults.clear()
  return send(200, { ok = true })
end

H["POST deliver"] = function(body)
  local cfg = state.config()
  local plan, err = delivery.plan(body, cfg)
  if not plan then return bad(err) end
  local n = #plan.bodies * #plan.targets
  if body.wait then
    local reports = delivery.run(plan, cfg)
    local ok_count = 0
    for _, r in ipairs(reports) do if r.ok then ok_count = ok_count + 1 end end
    return send(200, { events = #plan.bodies, deliveries = util.array(reports), delivered = ok_count,
      failed = #reports - ok_count, skipped = util.array(plan.skipped) })
  end
  local ok, terr = ngx.timer.at(0, function(premature)
    if premature then return end
    local pok, perr = pcall(delivery.run, plan, cfg)
    if not pok then ngx.log(ngx.ERR, "emulator delivery failed: ", perr) end
  end)
  if not ok then return bad("cannot start a delivery timer: " .. tostring(terr), 500) end
  return send(202, { events = #plan.bodies, queued = n, skipped = util.array(plan.skipped) })
end

H["POST crc"] = function(body)
  local cfg = state.config()
  local list
  if body.webhook_id ~= nil then
    local wh = state.webhook(tostring(body.webhook_id))
    if not wh then return bad("unknown webhook_id " .. tostring(body.webhook_id), 404) end
    list = { wh }
  else
    list = state.webhooks()
  end
  local results = {}
  for _, wh in ipairs(list) do
    local r = crc.run(wh, cfg)
    results[#results + 1] = { webhook_id = wh.id, url = wh.url, ok = r.ok == true, valid = r.ok == true,
      reason = r.reason, message = r.message, status = r.status, ms = r.ms }
  end
  return send(200, { results = util.array(results) })
end

H["GET deliveries"] = function()
  return send(200, { entries = util.array(delivery.attempts(tonumber(ngx.var.arg_since))) })
end

H["GET log"] = function()
  local since = tonumber(ngx.var.arg_since)
  return send(200, { entries = util.array(state.log_entries(since)) })
end

H["DELETE log"] = function()
  for _, k in ipairs(state.keys_with_prefix("log:")) do state.dict():delete(k) end
  return send(200, { ok = true })
end

H["GET state"] = function()
  local cfg = state.config()
  local whs = {}
  for _, wh in ipairs(state.webhooks()) do
    local o = webhooks.v2_object(wh)
    o.env = wh.env
    o.last_crc = wh.last_crc
    o.subscriptions = util.array(state.subscriptions(wh.id))
    local job = state.get_json("replay:" .. wh.id)
    o.replay_running = job and job.job_id or nil
    whs[#whs + 1] = o
  end
  return send(200, {
    webhooks = util.array(whs),
    subscriptions_count = state.subscription_count(),
    replay_jobs = delivery.jobs(),
    faults = faults.list(),
    bearer_valid = state.bearer() ~= nil,
    events_recorded = state.dict():get("seq:ev") or 0,
    delivered = state.dict():get("stats:delivered") or 0,
    requests = state.dict():get("seq:log") or 0,
    users = #cfg.users,
  })
end

H["GET events"] = function()
  return send(200, { types = events.types() })
end

H["GET health"] = function()
  return send(200, { ok = true, pid = ngx.worker.pid() })
end

-- X Activity API: deliver events, end streams, inspect (xaa_stream.lua);
-- OAuth 2.0 consent, expiry and counts (oauth2.lua)
for _, mod in ipairs { "xaa_stream", "oauth2" } do
  for name, fn in pairs(require("account_activity.emulator." .. mod).CONTROL) do
    H[name] = function(body) return send(fn(body)) end
  end
end

H["GET "] = function()
  local names = {}
  for k in pairs(H) do names[#names + 1] = k:gsub(" ", " /_emulator/") end
  table.sort(names)
  return send(200, { endpoints = names })
end

function M.handle()
  local addr = ngx.var.remote_addr or ""
  if not (addr:match("^127%.") or addr == "::1" or addr == "unix:") then
    return bad("the control plane only answers loopback clients", 403)
  end
  local name = ngx.var.uri:match("^/_emulator/?(.-)/?$") or ""
  local h = H[ngx.req.get_method() .. " " .. name]
  if not h then return bad("no control endpoint " .. ngx.req.get_method() .. " /_emulator/" .. name, 404) end
  local body, err = {}
  if ngx.req.get_method() ~= "GET" then
    body, err = body_json()
    if not body then return bad(err) end
  end
  return h(body)
end

return M
