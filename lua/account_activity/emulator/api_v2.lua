--- X API v2: /2/webhooks (create, list, validate, delete, replay) and the
-- v2 Account Activity subscription endpoints.
local util = require "account_activity.emulator.util"
local state = require "account_activity.emulator.state"
local webhooks = require "account_activity.emulator.webhooks"
local delivery = require "account_activity.emulator.delivery"
local crc = require "account_activity.emulator.crc"
local respond = require "account_activity.emulator.respond"
local api_v1 = require "account_activity.emulator.api_v1"

local reason = respond.v2_reason
local M = {}

local function webhook_of(id)
  if type(id) ~= "string" or not id:match("^%d+$") then return nil end
  local wh = state.webhook(id)
  if not wh or wh.env then return nil end
  return wh
end

local function invalid_id(id)
  return reason("WebhookIdInvalid", "Webhook id " .. tostring(id) .. " does not exist or is associated with a different application.")
end

function M.create(req)
  local body = util.decode(req.body or "")
  if type(body) ~= "table" or type(body.url) ~= "string" then
    return reason("UrlValidationFailed", "A JSON body with a url is required.")
  end
  local wh, why, detail = webhooks.register(body.url, nil, req.cfg)
  if not wh then
    if why == "url" then return reason("UrlValidationFailed", detail) end
    if why == "duplicate" then return reason("DuplicateUrlFailed", "This application already has a webhook with this URL.") end
    if why == "limit" then return reason("WebhookLimitExceeded", "The webhook limit for this account has been reached.") end
    return reason("CrcValidationFailed", detail.message)
  end
  return 200, { data = webhooks.v2_object(wh) }
end

function M.list(req)
  local fields
  local f = req.query["webhook_config.fields"]
  if type(f) == "string" and f ~= "" then
    fields = {}
    for name in f:gmatch("[^,]+") do fields[name] = true end
    fields.id = true
  end
  local out = {}
  for _, wh in ipairs(state.webhooks(false)) do
    local o = webhooks.v2_object(wh)
    if fields then for k in pairs(o) do if not fields[k] then o[k] = nil end end end
    out[#out + 1] = o
  end
  return 200, { data = util.array(out), meta = { result_count = #out } }
end

function M.validate(req)
  local wh = webhook_of(req.captures[1])
  if not wh then return invalid_id(req.captures[1]) end
  local r = crc.run(wh, req.cfg)
  if not r.ok then return reason("CrcValidationFailed", r.message) end
  return 200, { data = { valid = true } }
end

function M.delete(req)
  local wh = webhook_of(req.captures[1])
  if not wh then return invalid_id(req.captures[1]) end
  state.delete_webhook(wh)
  return 200, { data = { deleted = true } }
end

function M.subscribe(req)
  local wh = webhook_of(req.captures[1])
  if not wh then return invalid_id(req.captures[1]) end
  local ok, err = state.subscribe(wh.id, req.auth.user_id, req.cfg.limits)
  if ok then return 200, { data = { subscribed = true } } end
  if err == "exists" then return reason("DuplicateSubscriptionFailed", "Subscription already exists.") end
  return reason("SubscriptionLimitExceeded", "The subscription limit has been reached.")
end

function M.check(req)
  local wh = webhook_of(req.captures[1])
  if not wh then return invalid_id(req.captures[1]) end
  return 200, { data = { subscribed = state.subscribed(wh.id, req.auth.user_id) } }
end

function M.list_subscriptions(req)
  local wh = webhook_of(req.captures[1])
  if not wh then return invalid_id(req.captures[1]) end
  local subs = {}
  for i, id in ipairs(state.subscriptions(wh.id)) do subs[i] = { user_id = id } end
  return 200, { data = { application_id = req.cfg.app.app_id, webhook_id = wh.id, webhook_url = wh.url,
    subscriptions = util.array(subs) } }
end

function M.unsubscribe(req)
  local wh = webhook_of(req.captures[1])
  if not wh then return invalid_id(req.captures[1]) end
  if not state.unsubscribe(wh.id, req.captures[2]) then
    return reason("SubscriptionNotFound", "User " .. req.captures[2] .. " is not subscribed to this webhook.")
  end
  return 200, { data = { subscribed = false } }
end

function M.count(req)
  return 200, { data = api_v1.count_object(req.cfg) }
end

local function replay(req, id, from_s, to_s, mode)
  local wh = webhook_of(id)
  if not wh then return invalid_id(id) end
  local from, to, extra, value = webhooks.replay_window(from_s, to_s, mode, req.cfg)
  if not from then
    local msg = extra
    if to == "missing" then msg = extra .. " is required."
    elseif to == "malformed" then msg = extra .. " must be yyyymmddhhmm (UTC)."
    elseif to == "future" then msg = extra .. " [" .. tostring(value) .. "] is not in the past." end
    return reason("QueryParamInvalid", msg)
  end
  if not wh.valid then return reason("CrcValidationFailed", "Webhook is marked invalid and requires a CRC check.") end
  local job = delivery.start_replay(wh, from, to, req.cfg)
  if not job then return reason("ReplayConflictError", "A replay job is already in progress for this webhook.") end
  return 200, { data = { job_id = job.job_id, created_at = util.iso_ms(job.created) } }
end

function M.replay(req)
  local body = util.decode(req.body or "")
  if type(body) ~= "table" then return reason("QueryParamInvalid", "A JSON body with webhook_id, from_date and to_date is required.") end
  if body.webhook_id == nil then return reason("QueryParamInvalid", "webhook_id is required.") end
  return replay(req, tostring(body.webhook_id), body.from_date and tostring(body.from_date),
    body.to_date and tostring(body.to_date), "v2")
end

--- The deprecated AAA replay path (query parameters, to_date exclusive).
function M.replay_aaa(req)
  return replay(req, req.captures[1], req.query.from_date, req.query.to_date, "v1")
end

return M
