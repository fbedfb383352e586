--- v1.1 enterprise (/1.1/account_activity/...) and premium
-- (/1.1/account_activity/all/:env_name/...) endpoints.
local util = require "account_activity.emulator.util"
local state = require "account_activity.emulator.state"
local webhooks = require "account_activity.emulator.webhooks"
local delivery = require "account_activity.emulator.delivery"
local crc = require "account_activity.emulator.crc"
local respond = require "account_activity.emulator.respond"

local v1 = respond.v1
local M = {}

local function webhook_of(id)
  local wh = state.webhook(id)
  if not wh or wh.env then return nil end
  return wh
end

local function not_found_webhook()
  return v1(404, 34, respond.WEBHOOK_34)
end

local function register_error(reason, detail)
  if reason == "url" then return v1(403, 214, "Webhook URL does not meet the requirements.") end
  if reason == "duplicate" then
    return v1(403, 214, "Webhook URL does not meet the requirements. Duplicate URL: this app already has a webhook with this URL.")
  end
  if reason == "limit" then return v1(403, 214, "Too many resources already created.") end
  return v1(403, 214, detail.message)
end

local function url_param(req)
  return req.query.url or req.form.url
end

-- ---------------------------------------------------------------- enterprise

function M.register(req)
  local wh, reason, detail = webhooks.register(url_param(req), nil, req.cfg)
  if not wh then return register_error(reason, detail) end
  return 200, webhooks.v1_object(wh, req.cfg)
end

function M.list(req)
  local out = {}
  for _, wh in ipairs(state.webhooks(false)) do out[#out + 1] = webhooks.v1_object(wh, req.cfg) end
  return 200, util.array(out)
end

local function validate(req, wh)
  local r = crc.run(wh, req.cfg)
  if not r.ok then return v1(403, 214, r.message) end
  return 204
end

function M.validate(req)
  local wh = webhook_of(req.captures[1])
  if not wh then return not_found_webhook() end
  return validate(req, wh)
end

function M.delete_webhook(req)
  local wh = webhook_of(req.captures[1])
  if not wh then return not_found_webhook() end
  state.delete_webhook(wh)
  return 204
end

local function subscribe(req, wh)
  if req.auth.user.aaa_permitted == false then
    return v1(403, 348, "Client application is not permitted to access this user's webhook subscriptions.")
  end
  if not wh.valid then return v1(400, 170, "Webhook URL must be defined to create subscriptions.") end
  local ok, err = state.subscribe(wh.id, req.auth.user_id, req.cfg.limits)
  if ok then return 204 end
  if err == "exists" then return v1(409, 355, "Subscription already exists.") end
  return v1(403, 214, "Too many resources already created.")
end

function M.subscribe(req)
  local wh = webhook_of(req.captures[1])
  if not wh then return not_found_webhook() end
  return subscribe(req, wh)
end

function M.check(req)
  local wh = webhook_of(req.captures[1])
  if not wh then return not_found_webhook() end
  if state.subscribed(wh.id, req.auth.user_id) then return 204 end
  return v1(404, 34, respond.NOT_FOUND_34)
end

function M.unsubscribe_self(req)
  local wh = webhook_of(req.captures[1])
  if not wh then return not_found_webhook() end
  if state.unsubscribe(wh.id, req.auth.user_id) then return 204 end
  return v1(404, 34, respond.NOT_FOUND_34)
end

function M.unsubscribe(req)
  local wh = webhook_of(req.captures[1])
  if not wh then return not_found_webhook() end
  if state.unsubscribe(wh.id, req.captures[2]) then return 204 end
  return v1(404, 34, respond.NOT_FOUND_34)
end

local function sub_list(wh)
  local subs = {}
  for i, id in ipairs(state.subscriptions(wh.id)) do subs[i] = { user_id = id } end
  return util.array(subs)
end

function M.list_subscriptions(req)
  local wh = webhook_of(req.captures[1])
  if not wh then return not_found_webhook() end
  return 200, { webhook_id = wh.id, webhook_url = wh.url, application_id = req.cfg.app.app_id,
    subscriptions = sub_list(wh) }
end

function M.count_object(cfg)
  return {
    account_name = cfg.account_name,
    subscriptions_count_all = tostring(state.subscription_count()),
    subscriptions_count_direct_messages = "0",
    provisioned_count = tostring(cfg.limits.provisioned_count),
  }
end

function M.count(req)
  return 200, M.count_object(req.cfg)
end

local REPLAY_ERRORS = {
  missing = function(field) return v1(400, 357, field .. ": queryParam is required.") end,
  malformed = function(field) return v1(400, 358, field .. ": Unable to parse parameter.") end,
  future = function(field, value) return v1(400, 368, field .. ": [" .. tostring(value) .. "] is not in the past.") end,
  order = function(msg) return v1(400, 356, msg) end,
  age = function(msg) return v1(400, 356, msg) end,
}

function M.replay(req)
  local id = req.captures[1]
  if not id:match("^%d+$") then
    if id:match("^%-%d+$") then return v1(400, 360, "webhook_id: [" .. id .. "] is not greater than or equal to 0.") end
    return v1(400, 358, "webhook_id: Unable to parse parameter.")
  end
  local wh = webhook_of(id)
  if not wh then return not_found_webhook() end
  local from, to, extra, value = webhooks.replay_window(req.query.from_date, req.query.to_date, "v1", req.cfg)
  if not from then
    return REPLAY_ERRORS[to](extra, value)
  end
  if not wh.valid then return v1(400, 214, "Webhook is marked invalid and requires a CRC check.") end
  local job = delivery.start_replay(wh, from, to, req.cfg)
  if not job then return v1(409, 355, "A replay job is already in progress for this webhook.") end
  return 202, { job_id = job.job_id, created_at = util.iso(job.created) }
end

-- ---------------------------------------------------------------- premium

local function env_of(req)
  local env = req.captures[1]
  if not req.cfg._envs[env] then return nil end
  return env
end

local function forbidden_env()
  return v1(403, 200, "Forbidden.")
end

-- Every premium endpoint starts here: an unknown environment is X's 403/200.
local function with_env(handler)
  return function(req)
    local env = env_of(req)
    if not env then return forbidden_env() end
    return handler(req, env)
  end
end

local function env_webhook(env)
  return state.webhooks(env)[1]
end

local function premium_webhook(req, env)
  local wh = state.webhook(req.captures[2])
  if not wh or wh.env ~= env then return nil end
  return wh
end

M.premium = {}
local P = M.premium

P.register = with_env(function(req, env)
  local wh, reason, detail = webhooks.register(url_param(req), env, req.cfg)
  if not wh then return register_error(reason, detail) end
  return 200, webhooks.v1_object(wh, req.cfg)
end)

function P.list_all(req)
  local envs = {}
  for _, env in ipairs(req.cfg.envs) do
    local list = {}
    for _, wh in ipairs(state.webhooks(env)) do list[#list + 1] = webhooks.v1_object(wh, req.cfg) end
    envs[#envs + 1] = { environment_name = env, webhooks = util.array(list) }
  end
  return 200, { environments = util.array(envs) }
end

P.list = with_env(function(req, env)
  local list = {}
  for _, wh in ipairs(state.webhooks(env)) do list[#list + 1] = webhooks.v1_object(wh, req.cfg) end
  return 200, util.array(list)
end)

P.validate = with_env(function(req, env)
  local wh = premium_webhook(req, env)
  if not wh then return not_found_webhook() end
  return validate(req, wh)
end)

P.delete_webhook = with_env(function(req, env)
  local wh = premium_webhook(req, env)
  if not wh then return not_found_webhook() end
  state.delete_webhook(wh)
  return 204
end)

P.subscribe = with_env(function(req, env)
  local wh = env_webhook(env)
  if not wh then return v1(400, 170, "Webhook URL must be defined to create subscriptions.") end
  return subscribe(req, wh)
end)

P.check = with_env(function(req, env)
  local wh = env_webhook(env)
  if wh and state.subscribed(wh.id, req.auth.user_id) then return 204 end
  return v1(404, 34, respond.NOT_FOUND_34)
end)

P.unsubscribe_self = with_env(function(req, env)
  local wh = env_webhook(env)
  if wh and state.unsubscribe(wh.id, req.auth.user_id) then return 204 end
  return v1(404, 34, respond.NOT_FOUND_34)
end)

P.unsubscribe = with_env(function(req, env)
  local wh = env_webhook(env)
  if wh and state.unsubscribe(wh.id, req.captures[2]) then return 204 end
  return v1(404, 34, respond.NOT_FOUND_34)
end)

P.list_subscriptions = with_env(function(req, env)
  local wh = env_webhook(env)
  return 200, { environment = env, application_id = req.cfg.app.app_id,
    subscriptions = wh and sub_list(wh) or util.empty_array }
end)

P.count = M.count

return M
