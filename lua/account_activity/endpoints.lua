--- Every endpoint of every API flavour, as data.
--
-- client.lua generates one method per entry; nothing else in the module
-- knows a path, a verb, an auth scheme or a body shape. Adding a flavour is
-- a new table here.
--
-- An endpoint:
--   method, path    path template; {webhook_id}, {user_id}, {env_name}
--   args            the method's positional arguments: { name, kind }
--                   kinds: "id" (decimal id), "user" (table of tokens),
--                   "user_or_id", "url" (a webhook URL), "date" (replay bound)
--   auth            "user" (app owner's tokens), "subscriber" (the user's
--                   own tokens), "app" (bearer), "user_or_app" (owner tokens
--                   when set, else bearer), "basic" (consumer key:secret)
--   query, json, form   request parameters: name -> argument name (or a
--                   literal when `literal` lists it)
--   success         statuses that mean success
--   absent          statuses that mean "no" rather than failure (value false)
--   absent_unless   ...unless the error message contains this text (X answers
--                   404/34 both for "not subscribed" and for "no such webhook")
--   decode          name of a decoder below
--   replay_window   seconds back from now a replay may reach
-- A method may instead be { dispatch = "user_or_id", user = <endpoint or
-- nil>, id = <endpoint> }: a user table goes to `user` (user context), an id
-- string to `id` (app-only); with no `user` endpoint the user's user_id is
-- used with `id`.
local M = {}

local function ok(...) return { ... } end

local WEBHOOK_ID = { "webhook_id", "id" }
local USER = { "user", "user" }
local USER_OR_ID = { "user", "user_or_id" }
local URL = { "url", "url" }
local FROM = { "from", "date" }
local TO = { "to", "date" }

-- Shared by every flavour: the OAuth 2.0 app-only token endpoints.
local common = {
  bearer_token = {
    method = "POST", path = "/oauth2/token", auth = "basic", args = {},
    form = { grant_type = "client_credentials" }, literal = { grant_type = true },
    success = ok(200), decode = "bearer",
  },
  invalidate_bearer_token = {
    -- X's pages disagree (Basic + form body vs OAuth 1.0a + query); the
    -- application-only guide's Basic form is what the token endpoint uses too.
    method = "POST", path = "/oauth2/invalidate_token", auth = "basic", args = {},
    form = { access_token = "$bearer" },
    success = ok(200), decode = "invalidated",
  },
}

local V11 = "/1.1/account_activity"

M.enterprise = {
  register_webhook = {
    method = "POST", path = V11 .. "/webhooks.json", auth = "user",
    args = { URL }, query = { url = "url" },
    success = ok(200, 201), decode = "webhook",
  },
  webhooks = {
    method = "GET", path = V11 .. "/webhooks.json", auth = "app",
    args = {}, success = ok(200), decode = "webhook_list",
  },
  webhook = {
    method = "GET", path = V11 .. "/webhooks.json", auth = "app",
    args = { WEBHOOK_ID }, success = ok(200), decode = "webhook_by_id",
  },
  validate_webhook = {
    method = "PUT", path = V11 .. "/webhooks/{webhook_id}.json", auth = "user_or_app",
    args = { WEBHOOK_ID }, success = ok(204, 200), decode = "validated",
  },
  delete_webhook = {
    method = "DELETE", path = V11 .. "/webhooks/{webhook_id}.json", auth = "user",
    args = { WEBHOOK_ID }, success = ok(204, 200), decode = "done",
  },
  subscribe = {
    method = "POST", path = V11 .. "/webhooks/{webhook_id}/subscriptions/all.json",
    auth = "subscriber", args = { WEBHOOK_ID, USER },
    success = ok(204, 200), decode = "done",
  },
  is_subscribed = {
    method = "GET", path = V11 .. "/webhooks/{webhook_id}/subscriptions/all.json",
    auth = "subscriber", args = { WEBHOOK_ID, USER },
    success = ok(204, 200), absent = ok(404), decode = "subscribed",
    absent_unless = "Webhook does not exist",
  },
  subscriptions = {
    method = "GET", path = V11 .. "/webhooks/{webhook_id}/subscriptions/all/list.json",
    auth = "app", args = { WEBHOOK_ID }, success = ok(200), decode = "subscription_list",
  },
  unsubscribe = {
    dispatch = "user_or_id",
    user = {
      -- Deprecated by X in 2019 but still documented; the user's own tokens.
      method = "DELETE", path = V11 .. "/webhooks/{webhook_id}/subscriptions/all.json",
      auth = "subscriber", args = { WEBHOOK_ID, USER_OR_ID },
      success = ok(204, 200), decode = "done",
    },
    id = {
      method = "DELETE", path = V11 .. "/webhooks/{webhook_id}/subscriptions/{user_id}/all.json",
      auth = "app", args = { WEBHOOK_ID, USER_OR_ID },
      success = ok(204, 200), decode = "done",
    },
  },
  subscription_count = {
    method = "GET", path = V11 .. "/subscriptions/count.json", auth = "app",
    args = {}, success = ok(200), decode = "count",
  },
  replay = {
    method = "POST", path = V11 .. "/replay/webhooks/{webhook_id}/subscriptions/all.json",
    auth = "app", args = { WEBHOOK_ID, FROM, TO },
    query = { from_date = "from", to_date = "to" },
    success = ok(202, 200), decode = "replay", replay_window = 5 * 86400,
  },
}

local P = V11 .. "/all/{env_name}"
M.premium = {
  needs_env_name = true,
  register_webhook = {
    method = "POST", path = P .. "/webhooks.json", auth = "user",
    args = { URL }, query = { url = "url" },
    success = ok(200, 201), decode = "webhook",
  },
  webhooks = {
    method = "GET", path = P .. "/webhooks.json", auth = "app",
    args = {}, success = ok(200), decode = "webhook_list",
  },
  webhook = {
    method = "GET", path = P .. "/webhooks.json", auth = "app",
    args = { WEBHOOK_ID }, success = ok(200), decode = "webhook_by_id",
  },
  validate_webhook = {
    method = "PUT", path = P .. "/webhooks/{webhook_id}.json", auth = "user_or_app",
    args = { WEBHOOK_ID }, success = ok(204, 200), decode = "validated",
  },
  delete_webhook = {
    method = "DELETE", path = P .. "/webhooks/{webhook_id}.json", auth = "user",
    args = { WEBHOOK_ID }, success = ok(204, 200), decode = "done",
  },
  -- Premium subscriptions hang off the environment, not the webhook: the
  -- webhook id is still taken (and checked) so code moves between flavours.
  subscribe = {
    method = "POST", path = P .. "/subscriptions.json", auth = "subscriber",
    args = { WEBHOOK_ID, USER }, success = ok(204, 200), decode = "done",
  },
  is_subscribed = {
    method = "GET", path = P .. "/subscriptions.json", auth = "subscriber",
    args = { WEBHOOK_ID, USER }, success = ok(204, 200), absent = ok(404),
    absent_unless = "Webhook does not exist", decode = "subscribed",
  },
  subscriptions = {
    method = "GET", path = P .. "/subscriptions/list.json", auth = "app",
    args = { WEBHOOK_ID }, success = ok(200), decode = "subscription_list",
  },
  unsubscribe = {
    dispatch = "user_or_id",
    user = {
      method = "DELETE", path = P .. "/subscriptions.json", auth = "subscriber",
      args = { WEBHOOK_ID, USER_OR_ID }, success = ok(204, 200), decode = "done",
    },
    id = {
      method = "DELETE", path = P .. "/subscriptions/{user_id}.json", auth = "app",
      args = { WEBHOOK_ID, USER_OR_ID }, success = ok(204, 200), decode = "done",
    },
  },
  subscription_count = {
    method = "GET", path = V11 .. "/all/subscriptions/count.json", auth = "app",
    args = {}, success = ok(200), decode = "count",
  },
  -- Premium has no Replay API.
}

local AA2 = "/2/account_activity"
M.v2 = {
  -- X's docs: every webhook management call takes the app-only bearer.
  register_webhook = {
    method = "POST", path = "/2/webhooks", auth = "app",
    args = { URL }, json = { url = "url" },
    success = ok(200, 201), decode = "webhook",
  },
  webhooks = {
    method = "GET", path = "/2/webhooks", auth = "app",
    args = {}, success = ok(200), decode = "webhook_list",
  },
  webhook = {
    method = "GET", path = "/2/webhooks", auth = "app",
    args = { WEBHOOK_ID }, success = ok(200), decode = "webhook_by_id",
  },
  validate_webhook = {
    method = "PUT", path = "/2/webhooks/{webhook_id}", auth = "app",
    args = { WEBHOOK_ID }, success = ok(200, 204), decode = "validated",
  },
  delete_webhook = {
    method = "DELETE", path = "/2/webhooks/{webhook_id}", auth = "app",
    args = { WEBHOOK_ID }, success = ok(200, 204), decode = "deleted",
  },
  subscribe = {
    method = "POST", path = AA2 .. "/webhooks/{webhook_id}/subscriptions/all",
    auth = "subscriber", args = { WEBHOOK_ID, USER },
    -- The spec marks a JSON body required with an empty schema; X's own
    -- sample sends none. `{}` satisfies both readings.
    json = {},
    success = ok(200, 204), decode = "subscribed_true",
  },
  is_subscribed = {
    method = "GET", path = AA2 .. "/webhooks/{webhook_id}/subscriptions/all",
    auth = "subscriber", args = { WEBHOOK_ID, USER },
    success = ok(200, 204), decode = "subscribed",
  },
  subscriptions = {
    method = "GET", path = AA2 .. "/webhooks/{webhook_id}/subscriptions/all/list",
    auth = "app", args = { WEBHOOK_ID }, success = ok(200), decode = "subscription_list",
  },
  unsubscribe = {
    -- v2 has no user-context delete: a user table is removed by its user_id.
    dispatch = "user_or_id",
    id = {
      method = "DELETE", path = AA2 .. "/webhooks/{webhook_id}/subscriptions/{user_id}/all",
      auth = "app", args = { WEBHOOK_ID, USER_OR_ID },
      success = ok(200, 204), decode = "unsubscribed",
    },
  },
  subscription_count = {
    method = "GET", path = AA2 .. "/subscriptions/count", auth = "app",
    args = {}, success = ok(200), decode = "count",
  },
  replay = {
    method = "POST", path = "/2/webhooks/replay", auth = "app",
    args = { WEBHOOK_ID, FROM, TO },
    json = { webhook_id = "webhook_id", from_date = "from", to_date = "to" },
    success = ok(200, 202), decode = "replay", replay_window = 24 * 3600,
  },
}

for _, flavour in ipairs { "enterprise", "premium", "v2" } do
  for name, spec in pairs(common) do M[flavour][name] = spec end
end

M.FLAVOURS = { enterprise = true, premium = true, v2 = true }

-- The public client methods, in the order help() lists them.
M.METHODS = {
  "register_webhook", "webhooks", "webhook", "validate_webhook", "delete_webhook",
  "subscribe", "is_subscribed", "subscriptions", "unsubscribe",
  "subscription_count", "replay", "bearer_token", "invalidate_bearer_token",
}

---------------------------------------------------------------------------
-- Decoders: (json, res, args) -> value | nil, message_or_err.
-- `json` is the decoded body (nil for an empty body). A string second
-- value becomes a "decode" error; an error object is returned as is.
---------------------------------------------------------------------------

-- v2 wraps bodies in `data`; v1.1 and older v2 specs do not.
local function unwrap(json)
  if type(json) == "table" and json.data ~= nil then return json.data end
  return json
end

local function id_string(v)
  if type(v) == "string" then return v end
  if type(v) == "number" and v == math.floor(v) then return string.format("%.0f", v) end
  return nil
end

local function webhook(w)
  if type(w) ~= "table" then return nil end
  local id = id_string(w.id_str) or id_string(w.id)
  if not id then return nil end
  local valid = w.valid
  if type(valid) == "string" then valid = (valid == "true") end
  return {
    id = id,
    url = w.url,
    valid = valid,
    created_at = w.created_at or w.created_timestamp,
  }
end

local function webhook_list(json)
  local body = unwrap(json)
  -- v2 may omit `data` when there is none (an older spec had minItems: 1).
  if body == nil or (type(body) == "table" and body.meta ~= nil and body[1] == nil
      and body.environments == nil) then
    return {}
  end
  if type(body) ~= "table" then return nil, "expected a list of webhooks" end
  local out = {}
  if type(body.environments) == "table" then
    -- Premium's all/webhooks.json groups by environment.
    for _, env in ipairs(body.environments) do
      for _, w in ipairs(type(env) == "table" and env.webhooks or {}) do
        local hw = webhook(w)
        if hw then
          hw.environment = env.environment_name
          out[#out + 1] = hw
        end
      end
    end
    return out
  end
  if next(body) ~= nil and body[1] == nil then
    return nil, "expected a list of webhooks"
  end
  for _, w in ipairs(body) do
    local hw = webhook(w)
    if not hw then return nil, "webhook without an id in the list" end
    out[#out + 1] = hw
  end
  return out
end

local function count(v)
  local n = tonumber(v)
  if n and math.tointeger and n == math.floor(n) then n = math.tointeger(n) or n end
  return n
end

M.decoders = {
  -- Success is the status; any body is ignored (X's docs show `{ }` on a 204).
  done = function() return true end,

  webhook = function(json)
    local w = webhook(unwrap(json))
    if not w then return nil, "expected a webhook object with an id" end
    return w
  end,

  webhook_list = webhook_list,

  webhook_by_id = function(json, _, args)
    local list, msg = webhook_list(json)
    if not list then return nil, msg end
    for _, w in ipairs(list) do
      if w.id == args.webhook_id then return w end
    end
    return nil, { kind = "not_found", message = "no webhook with id " .. args.webhook_id }
  end,

  -- v1.1: 204, no body. v2: {"data":{"valid":bool}} or {"data":{"attempted":bool}}.
  validated = function(json, res)
    local d = unwrap(json)
    if type(d) ~= "table" then return true end
    local flag = d.valid
    if flag == nil then flag = d.attempted end
    if flag == false then
      return nil, {
        kind = "invalid_webhook", status = res.status,
        message = d.valid == false and "the CRC check failed; the webhook is still invalid"
          or "X did not attempt the CRC check",
      }
    end
    return true
  end,

  deleted = function(json)
    local d = unwrap(json)
    if type(d) == "table" and d.deleted == false then
      return nil, "X answered deleted = false"
    end
    return true
  end,

  -- v1.1: the status says it (204 yes, 404 no). v2: data.subscribed.
  subscribed = function(json, res)
    local d = unwrap(json)
    if type(d) == "table" and d.subscribed ~= nil then
      return d.subscribed == true or d.subscribed == "true"
    end
    return res.status == 204 or res.status == 200
  end,

  subscribed_true = function(json)
    local d = unwrap(json)
    if type(d) == "table" and d.subscribed == false then
      return nil, "X answered subscribed = false"
    end
    return true
  end,

  unsubscribed = function(json)
    local d = unwrap(json)
    if type(d) == "table" and d.subscribed == true then
      return nil, "X answered subscribed = true"
    end
    return true
  end,

  subscription_list = function(json)
    local d = unwrap(json)
    if type(d) ~= "table" then return nil, "expected a subscription list object" end
    local subs = d.subscriptions
    if subs == nil then return {} end
    if type(subs) ~= "table" then return nil, "subscriptions is not a list" end
    local out = {}
    for _, s in ipairs(subs) do
      local id = type(s) == "table" and (id_string(s.user_id) or id_string(s.id))
        or id_string(s)
      if not id then return nil, "subscription without a user_id" end
      out[#out + 1] = id
    end
    return out
  end,

  -- Counts arrive as strings; callers compare them as numbers.
  count = function(json)
    local d = unwrap(json)
    if type(d) ~= "table" then return nil, "expected a count object" end
    local all = count(d.subscriptions_count_all or d.subscriptions_count)
    if all == nil then return nil, "count object without subscriptions_count_all" end
    return {
      all = all,
      direct_messages = count(d.subscriptions_count_direct_messages) or 0,
      provisioned = count(d.provisioned_count),
      account_name = d.account_name,
    }
  end,

  -- Three shapes: bare, wrapped in data, or {for_user_id, replay_event}.
  replay = function(json)
    local d = unwrap(json)
    if type(d) == "table" and type(d.replay_event) == "table" then d = d.replay_event end
    if type(d) ~= "table" or id_string(d.job_id) == nil then
      return nil, "expected a replay job with a job_id"
    end
    return { job_id = id_string(d.job_id), created_at = d.created_at or d.created_timestamp }
  end,

  bearer = function(json)
    if type(json) ~= "table" or type(json.access_token) ~= "string" or json.access_token == "" then
      return nil, "token endpoint answered without an access_token"
    end
    if type(json.token_type) == "string" and json.token_type:lower() ~= "bearer" then
      return nil, "token endpoint answered token_type " .. json.token_type
    end
    return json.access_token
  end,

  invalidated = function() return true end,
}

return M
