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
--   oauth2          true where X's spec lists OAuth2UserToken for the call: an
--                   OAuth 2.0 user ({user_id, oauth2 = ...}) sends its Bearer
--                   token; elsewhere such a user is an argument error
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
    auth = "subscriber", args = { WEBHOOK_ID, USER }, oauth2 = true,
    -- The spec marks a JSON body required with an empty schema; X's own
    -- sample sends none. `{}` satisfies both readings.
    json = {},
    success = ok(200, 204), decode = "subscribed_true",
  },
  is_subscribed = {
    method = "GET", path = AA2 .. "/webhooks/{webhook_id}/subscriptions/all",
    auth = "subscriber", args = { WEBHOOK_ID, USER }, oauth2 = true,
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

---------------------------------------------------------------------------
-- The X Activity API (XAA): subscriptions per (event_type, filter) and the
-- stream. Not a flavour: activity.lua and stream.lua reach these from every
-- client. Paths, limits, shapes and the auth policy are data here because X
-- has moved each of them at least once (X-API.md Part 2, 3.1-3.8).
---------------------------------------------------------------------------

local XAA = "/2/activity"
M.xaa = {
  create = {
    method = "POST", path = XAA .. "/subscriptions", oauth2 = true,
    -- 204 with no body was seen in practice; the id is then looked up.
    success = ok(200, 201, 204), decode = "activity_subscription",
  },
  list = {
    method = "GET", path = XAA .. "/subscriptions", auth = "app", oauth2 = true,
    success = ok(200), decode = "activity_subscription_list",
    max_results = 1000, -- spec 2.167 (2.159 said 100)
    max_pages = 10000,  -- a server repeating tokens must not spin us forever
  },
  update = {
    method = "PUT", path = XAA .. "/subscriptions/{id}", auth = "app",
    success = ok(200, 204), decode = "activity_subscription",
  },
  delete = {
    method = "DELETE", path = XAA .. "/subscriptions/{id}", auth = "app",
    success = ok(200, 204), decode = "activity_deleted",
  },
  delete_many = {
    method = "DELETE", path = XAA .. "/subscriptions", auth = "app",
    success = ok(200, 204), decode = "activity_bulk_deleted",
    max_ids = 100,
  },
  stream = {
    method = "GET", path = XAA .. "/stream", auth = "app",
    max_backfill_minutes = 5,
    connections = 2,                          -- per app
    connects = 450, connect_window = 15 * 60, -- connect requests per window
    backoff_min = 1, backoff_max = 64, jitter = 0.25,
  },
  filter_keys = { user_id = "id", keyword = "string", direction = "direction" },
  -- the event_type enum of x-openapi-2.167.json, exactly (oauth.revoke is not
  -- in it: X sends it unasked); the alias answers under its canonical name
  event_types = {
    "profile.update.bio", "profile.update.profile_picture", "profile.update.banner_picture",
    "profile.update.screenname", "profile.update.geo", "profile.update.url",
    "profile.update.verified_badge", "profile.update.affiliate_badge", "profile.update.handle", "news.new",
    "follow.follow", "follow.unfollow", "spaces.start", "spaces.end",
    "broadcast.start", "broadcast.end", "broadcast.chat",
    "chat.received", "chat.sent", "chat.conversation.join", "chat.conversation_join",
    "chat.conversation.member_added", "chat.conversation.member_removed",
    "chat.conversation.admin_added", "chat.conversation.admin_removed",
    "chat.update.group_name", "chat.update.restrictions",
    "dm.sent", "dm.received", "dm.indicate_typing", "dm.read",
    "post.create", "post.delete", "post.mention.create", "post.reply.create", "post.quote.create",
    "post.repost.create", "like.create", "mute.mute", "mute.unmute", "block.block", "block.unblock",
  },
  event_type_aliases = { ["chat.conversation_join"] = "chat.conversation.join" },
  directions = { inbound = true, outbound = true },
  keyword_max = 150, tag_max = 200,
}

--- Which token creates a subscription, by event type (X-API.md 3.1, 3.4).
-- Public events take the app bearer; private ones the filtered user's own
-- OAuth 1.0a tokens (CXA found OAuth 1.0a necessary). Prefixes end in ".".
-- Anything unlisted (follow.*, spaces.*, oauth.revoke, types X adds later)
-- starts with the bearer and falls back to the user's tokens on a 403 that
-- asks for user context.
M.xaa.auth = {
  public = {
    "profile.update.", "post.create", "post.delete", "broadcast.start", "broadcast.end", "news.new",
  },
  private = {
    "dm.", "chat.", "like.", "mute.", "block.", "post.mention.create", "post.reply.create",
    "post.quote.create", "post.repost.create", "broadcast.chat",
  },
  -- Texts of a 403 that mean "try again with the user's tokens" (PRAC).
  user_context_hints = {
    "oauthaccesstokenrequired", "user context", "private events", "authorized your application",
  },
}

--- What an AAA subscription delivered for a user, as XAA subscriptions
-- (X-API.md Part 2, 3.8: derived, not X's own table).
M.xaa.aaa_mirror = {
  { event_type = "post.create",         aaa = "tweet_create_events (the user's posts, replies, quotes, retweets)" },
  { event_type = "post.mention.create", aaa = "tweet_create_events (@mentions of the user)" },
  { event_type = "post.reply.create",   aaa = "tweet_create_events (replies to the user's posts)" },
  { event_type = "post.quote.create",   aaa = "tweet_create_events (quotes of the user's posts)" },
  { event_type = "post.repost.create",  aaa = "tweet_create_events (retweets of the user's posts)" },
  { event_type = "post.delete",         aaa = "tweet_delete_events" },
  { event_type = "like.create",         aaa = "favorite_events (both directions: no direction filter)" },
  { event_type = "follow.follow",       aaa = "follow_events (type follow)" },
  { event_type = "follow.unfollow",     aaa = "follow_events (type unfollow)" },
  { event_type = "block.block",         aaa = "block_events (type block)" },
  { event_type = "block.unblock",       aaa = "block_events (type unblock)" },
  { event_type = "mute.mute",           aaa = "mute_events (type mute)" },
  { event_type = "mute.unmute",         aaa = "mute_events (type unmute)" },
  { event_type = "dm.sent",             aaa = "direct_message_events (sent)" },
  { event_type = "dm.received",         aaa = "direct_message_events (received)" },
  { event_type = "dm.indicate_typing",  aaa = "direct_message_indicate_typing_events" },
  { event_type = "dm.read",             aaa = "direct_message_mark_read_events" },
}

--- XChat counterparts of direct_message_events, added by mirror_user{xchat = true}.
M.xaa.aaa_mirror_xchat = {
  { event_type = "chat.sent",     aaa = "direct_message_events (XChat, sent)" },
  { event_type = "chat.received", aaa = "direct_message_events (XChat, received)" },
}

--- What AAA delivered that no XAA subscription reproduces.
M.xaa.aaa_unmapped = {
  { aaa = "retweets of quoted posts", reason = "no XAA event type identified" },
  { aaa = "user_has_blocked (flag on mention deliveries)", reason = "no known XAA field" },
  { aaa = "user_event (revoke)",
    reason = "oauth.revoke has an empty filter: not a per-user subscription; whether XAA sends it unasked is not documented" },
  { aaa = "replies, quotes and retweets beyond the direct ones",
    reason = "post.reply/quote/repost.create cover direct replies, quotes and reposts only" },
}

-- A subscription object from any of the shapes of X-API.md 3.3.
local function xaa_subscription(s)
  if type(s) ~= "table" then return nil end
  local id = id_string(s.subscription_id) or id_string(s.id)
  local f = type(s.filter) == "table" and s.filter or {}
  local filter = {}
  for k, v in pairs(f) do
    if k == "user_id" then filter.user_id = id_string(v) else filter[k] = v end
  end
  local sub = {
    id = id,
    event_type = type(s.event_type) == "string" and s.event_type or nil,
    filter = filter,
    tag = type(s.tag) == "string" and s.tag or nil,
    webhook_id = id_string(s.webhook_id),
    created_at = s.created_at,
    updated_at = s.updated_at,
  }
  return sub
end
M.xaa_subscription = xaa_subscription

-- The one subscription inside a create/update body, whatever its wrapping:
-- data.subscription, flat data, data as an array of one, or bare.
local function xaa_one(json)
  if type(json) ~= "table" then return nil end
  local d = json.data
  if d == nil then d = json end
  if type(d) ~= "table" then return nil end
  if type(d.subscription) == "table" then d = d.subscription end
  if d[1] ~= nil then d = d[1] end
  if type(d) ~= "table" then return nil end
  if d.subscription_id == nil and d.id == nil and d.event_type == nil then return nil end
  return xaa_subscription(d)
end

M.decoders.activity_subscription = function(json)
  -- A 204 (or a body without the object) is not a failure: activity.lua
  -- looks the subscription up. Return an empty marker, never nil.
  return xaa_one(json) or { id = nil, filter = {} }
end

M.decoders.activity_subscription_list = function(json)
  if json == nil then return {} end
  if type(json) ~= "table" then return nil, "expected a subscription list" end
  local d = json.data
  if d == nil then return {} end
  if type(d) == "table" and type(d.subscriptions) == "table" then d = d.subscriptions end
  if type(d) ~= "table" or (next(d) ~= nil and d[1] == nil) then
    return nil, "expected data to be a list of subscriptions"
  end
  local out = {}
  for _, s in ipairs(d) do
    local sub = xaa_subscription(s)
    if not sub or not sub.id then return nil, "subscription without a subscription_id in the list" end
    out[#out + 1] = sub
  end
  return out
end

M.decoders.activity_deleted = function(json)
  local d = unwrap(json)
  if type(d) == "table" and (d.deleted == false or d.deleted == "false") then
    return nil, "X answered deleted = false"
  end
  return true
end

-- {subscription_id, deleted} items in data, {subscription_id, reason,
-- message} in errors; the per-id sorting is activity.lua's.
M.decoders.activity_bulk_deleted = function(json)
  if json == nil then return { data = nil, errors = {} } end
  if type(json) ~= "table" then return nil, "expected a bulk delete result" end
  local data
  if type(json.data) == "table" then
    data = {}
    for _, item in ipairs(json.data) do
      if type(item) == "table" then
        local id = id_string(item.subscription_id) or id_string(item.id)
        if id then data[#data + 1] = { id = id, deleted = item.deleted ~= false and item.deleted ~= "false" } end
      end
    end
  end
  local errs = {}
  for _, e in ipairs(type(json.errors) == "table" and json.errors or {}) do
    if type(e) == "table" then
      local id = id_string(e.subscription_id) or id_string(e.resource_id) or id_string(e.value)
      errs[#errs + 1] = { id = id, reason = e.reason, message = e.message or e.detail or e.title,
                          title = e.title, detail = e.detail, type = e.type }
    end
  end
  return { data = data, errors = errs, total = json.meta and json.meta.total_subscriptions }
end

--- auth_for(api, method, path) -> "app" | "basic" | nil: the auth this table
-- gives a known path of this flavour ({id}s match
-- any segment), so request() on an app-only path sends the app bearer
-- even when owner tokens are set.
local known_auth_cache = {}
function M.auth_for(api, method, path)
  path = path:gsub("[?#].*$", "")
  local rows = known_auth_cache[api]
  if not rows then
    rows = {}
    local function add(spec)
      if type(spec) ~= "table" then return end
      if spec.dispatch then add(spec.user) add(spec.id) return end
      if type(spec.method) == "string" and type(spec.path) == "string" and type(spec.auth) == "string" then
        local pat = spec.path:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"):gsub("{[%w_]+}", "[^/]+")
        rows[#rows + 1] = { spec.method, "^" .. pat .. "$", spec.auth }
      end
    end
    for _, spec in pairs(M[api] or {}) do add(spec) end
    if api == "v2" then for _, spec in pairs(M.xaa) do add(spec) end end
    known_auth_cache[api] = rows
  end
  local found
  for _, r in ipairs(rows) do
    if r[1] == method and path:match(r[2]) then
      if found and found ~= r[3] then return nil end -- the path alone does not decide
      found = r[3]
    end
  end
  if found == "app" or found == "basic" then return found end
  return nil
end


return M
