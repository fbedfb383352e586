--- The X Activity API (XAA) in the emulator: subscription CRUD with X's
-- limits and (configurable) response shapes, event delivery to the webhooks
-- named by subscriptions and to open streams, and GET /2/activity/stream
-- (chunked NDJSON, blank keep-alive lines, disconnect on demand).
-- X-API.md Part 2, section 3; payloads per 5.2.
--
-- Knobs (config `xaa = {...}`, all optional):
--   shape = "data.subscription"   create/update answers: "data.subscription" (spec
--                                 2.167), "flat", "array" (data = {sub}) or "empty" (204)
--   delete_shape = "data"         "data" ({data.deleted}) or "empty" (204)
--   duplicate_status = 400        400 (PRAC PHP) or 409 (PRAC design doc)
--   unclassified_auth = "any"     follow.*, spaces.*: "any" or "user" (then a bearer
--                                 gets the 403 that asks for user context)
--   limit = 1500                  subscriptions per app (self-serve)
--   list_page = 100               default max_results
--   connections = 2               concurrent streams
--   keepalive_ms = 20000          blank line interval on idle streams (X: about 20 s)
--   stream_max_s = 600            an emulator stream ends after this long
--   payload_shape = "docs"        event payloads as event-payloads.mdx's samples show
--                                 them ("docs": includes.tweets, liked_tweet_author_id,
--                                 timestamp_ms a string, source = {data = user}) or as the
--                                 spec's schemas declare them ("spec": includes.posts,
--                                 tweet_author_id, timestamp_ms an integer, source = user)
local ngx = ngx -- a local: the stream handler sets ngx.status and headers
local util = require "account_activity.emulator.util"
local state = require "account_activity.emulator.state"
local respond = require "account_activity.emulator.respond"

local M = {}

local PROBLEM = respond.PROBLEM

local DEFAULTS = {
  shape = "data.subscription", delete_shape = "data", duplicate_status = 400,
  unclassified_auth = "any", limit = 1500, list_page = 100, connections = 2,
  keepalive_ms = 20000, stream_max_s = 600, payload_shape = "docs",
}

local function knobs(cfg)
  return util.merge(DEFAULTS, type(cfg.xaa) == "table" and cfg.xaa or {})
end
M.knobs = knobs

-- The event_type enum of x-openapi-2.167.json's CreateActivitySubscriptionRequest,
-- exactly. oauth.revoke (event-payloads.mdx) is in no enum: it cannot be
-- subscribed; X sends it to the app unasked (M.revoke_user).
local XAA_SPEC = require("account_activity.endpoints").xaa
local TYPES = {}
for _, t in ipairs(XAA_SPEC.event_types) do TYPES[t] = true end
M.TYPES = TYPES
-- "responses always use the canonical name" (the spec)
local ALIASES = XAA_SPEC.event_type_aliases

local function starts(s, p) return s:sub(1, #p) == p end

-- X's privacy classes (X-API.md 3.1 / 3.4).
local function privacy(et)
  for _, p in ipairs { "dm.", "chat.", "like.", "mute.", "block." } do
    if starts(et, p) then return "private" end
  end
  if et == "post.mention.create" or et == "post.reply.create" or et == "post.quote.create"
    or et == "post.repost.create" or et == "broadcast.chat" then return "private" end
  if starts(et, "profile.update.") or et == "post.create" or et == "post.delete"
    or et == "broadcast.start" or et == "broadcast.end" or et == "news.new" then return "public" end
  return "unclassified"
end
M.privacy = privacy

--- The OAuth 2.0 scope a subscription to `et` needs: the spec's rule (dm.read
-- for dm.* and chat.*, like.read, mute.read, block.read, tweet.read for the
-- rest), with broadcast.read for broadcast.chat as the docs' "Private events" say.
function M.scope_for(et)
  if starts(et, "dm.") or starts(et, "chat.") then return "dm.read" end
  if starts(et, "like.") then return "like.read" end
  if starts(et, "mute.") then return "mute.read" end
  if starts(et, "block.") then return "block.read" end
  if et == "broadcast.chat" then return "broadcast.read" end
  return "tweet.read"
end

local function invalid(msg)
  return 400, {
    errors = { { message = msg, parameters = {} } },
    title = "Invalid Request", detail = "One or more parameters to your request was invalid.",
    type = PROBLEM .. "invalid-request",
  }
end

local function not_found(id)
  return 404, { title = "Not Found Error", detail = "Could not find subscription with id: [" .. tostring(id) .. "].",
    type = PROBLEM .. "resource-not-found", resource_type = "subscription", resource_id = tostring(id), status = 404 }
end

local function forbidden(detail)
  return 403, { title = "Forbidden", detail = detail, type = PROBLEM .. "not-authorized-for-resource", status = 403 }
end

-- ---------------------------------------------------------------- records

local function d() return state.dict() end

local function filter_key(et, f)
  return table.concat({ et, f.user_id or "", f.keyword or "", f.direction or "" }, "|")
end

local function sub_object(rec)
  local f = {}
  for k, v in pairs(rec.filter or {}) do f[k] = v end
  return { subscription_id = rec.subscription_id, event_type = rec.event_type, filter = f, tag = rec.tag,
    webhook_id = rec.webhook_id, created_at = rec.created_at, updated_at = rec.updated_at }
end

function M.subscriptions()
  local out = {}
  for _, k in ipairs(state.keys_with_prefix("xaa:sub:")) do
    local r = state.get_json(k)
    if r then out[#out + 1] = r end
  end
  table.sort(out, function(a, b) return a.seq < b.seq end)
  return out
end

local function total() return d():get("cnt:xaa") or 0 end

local function one(status_ok, rec, k, extra_meta)
  local obj = sub_object(rec)
  if k.shape == "empty" then return 204, nil end
  if k.shape == "flat" then
    return status_ok, { data = obj, meta = util.merge({ total_subscriptions = total() }, extra_meta) }
  end
  if k.shape == "array" then
    return status_ok, { data = { obj }, meta = util.merge({ total_subscriptions = total() }, extra_meta) }
  end
  return status_ok, { data = { subscription = obj, total_subscriptions = total() } }
end

local function webhook_ok(id)
  if id == nil then return true end
  if type(id) ~= "string" or not id:match("^%d+$") then return false end
  local wh = state.webhook(id)
  return wh ~= nil and not wh.env
end

M.invalid, M.sub_object = invalid, sub_object

-- ---------------------------------------------------------------- handlers

local CREATE_KEYS = { event_type = true, filter = true, tag = true, webhook_id = true }
-- CreateActivitySubscriptionFilter: these three, additionalProperties false
local FILTER_KEYS = XAA_SPEC.filter_keys

function M.create(req)
  local k = knobs(req.cfg)
  local body = util.decode(req.body or "")
  if type(body) ~= "table" then return invalid("$: the request body must be a JSON object") end
  for key in pairs(body) do
    if not CREATE_KEYS[key] then return invalid("$." .. tostring(key) .. ": is not defined in the schema") end
  end
  local et = body.event_type
  if et == nil then return invalid("$.event_type: is missing but it is required") end
  if type(et) ~= "string" or not TYPES[et] then
    return invalid("$.event_type: does not have a value in the enumeration")
  end
  local f = body.filter
  if f == nil then return invalid("$.filter: is missing but it is required") end
  if type(f) ~= "table" then return invalid("$.filter: object expected") end
  for key in pairs(f) do
    if not FILTER_KEYS[key] then return invalid("$.filter." .. tostring(key) .. ": is not defined in the schema") end
  end
  if f.user_id ~= nil and (type(f.user_id) ~= "string" or not f.user_id:match("^%d+$") or #f.user_id > 19) then
    return invalid("$.filter.user_id: does not match the regex pattern ^[0-9]{1,19}$")
  end
  if f.keyword ~= nil and (type(f.keyword) ~= "string" or #f.keyword < 1 or #f.keyword > 150) then
    return invalid("$.filter.keyword: must be 1 to 150 characters")
  end
  if f.direction ~= nil and f.direction ~= "inbound" and f.direction ~= "outbound" then
    return invalid("$.filter.direction: does not have a value in the enumeration [inbound, outbound]")
  end
  et = ALIASES[et] or et
  if et == "news.new" and f.keyword == nil then return invalid("$.filter.keyword: news.new needs a keyword") end
  -- user_id is optional in the spec's filter (a keyword alone filters public
  -- events); private events are the consenting user's, so they name that user
  if f.user_id == nil and f.keyword == nil then
    return invalid("$.filter: needs a user_id or a keyword")
  end
  if f.user_id == nil and privacy(et) == "private" then
    return invalid("$.filter.user_id: is missing but it is required for " .. et)
  end
  if (starts(et, "mute.") or starts(et, "block.")) and f.direction ~= nil then
    return invalid("$.filter.direction: not supported for " .. et)
  end
  if body.tag ~= nil and (type(body.tag) ~= "string" or #body.tag < 1 or #body.tag > 200) then
    return invalid("$.tag: must be 1 to 200 characters")
  end
  local wh_id = body.webhook_id
  if wh_id ~= nil then
    wh_id = tostring(wh_id)
    if not webhook_ok(wh_id) then
      return respond.v2_reason("WebhookIdInvalid", "Webhook id " .. wh_id
        .. " does not exist or is associated with a different application.")
    end
  end

  -- Tokens: X-API.md 3.1 "which token works in practice".
  local class = privacy(et)
  local who = req.auth
  if who.kind == "oauth2" then
    local need = M.scope_for(et)
    local has = false
    for _, s in ipairs(who.scope or {}) do if s == need then has = true end end
    if not has then
      return forbidden("Your OAuth 2.0 token is missing the scope " .. need .. " that " .. et
        .. " subscriptions require.")
    end
  end
  if class == "private" or (class == "unclassified" and k.unclassified_auth == "user") then
    if who.kind ~= "oauth1" and who.kind ~= "oauth2" then
      return forbidden("OAuthAccessTokenRequired: subscribing to private events requires user context"
        .. " (an OAuth 2.0 or OAuth 1.0a token of the filtered user).")
    end
    if f.user_id and who.user_id ~= f.user_id then
      return forbidden("The filtered user " .. f.user_id .. " has not authorized your application"
        .. " (user context of that user required).")
    end
  end

  local filter = { user_id = f.user_id, keyword = f.keyword, direction = f.direction }
  local id = state.new_id("xaa")
  local key = "xaa:key:" .. filter_key(et, filter)
  if not d():add(key, id) then
    local what = "A subscription with event_type " .. et .. " and this filter already exists."
    if tonumber(k.duplicate_status) == 409 then
      return 409, { title = "Conflict", detail = "Duplicate subscription: " .. what, type = "about:blank", status = 409 }
    end
    return 400, { errors = { { message = "DuplicateSubscription: " .. what } }, title = "Invalid Request",
      detail = "Duplicate subscription", type = PROBLEM .. "invalid-request" }
  end
  local n = d():incr("cnt:xaa", 1, 0)
  if n > (tonumber(k.limit) or 1500) then
    d():incr("cnt:xaa", -1, 0)
    d():delete(key)
    return respond.v2_reason("SubscriptionLimitExceeded", "The subscription limit (" .. k.limit .. ") has been reached.")
  end
  local now = util.iso_ms(ngx.now())
  local rec = { subscription_id = id, event_type = et, filter = filter, tag = body.tag, webhook_id = wh_id,
    created_at = now, updated_at = now, seq = state.incr("seq:xaasub"), key = key }
  state.set_json("xaa:sub:" .. id, rec)
  return one(200, rec, k)
end

local function encode_token(offset) return string.format("%016x", offset) end
local function decode_token(t)
  if type(t) ~= "string" or not t:match("^%x+$") or #t < 16 then return nil end
  return tonumber(t, 16)
end

function M.list(req)
  local k = knobs(req.cfg)
  local max = req.query.max_results
  if max ~= nil then
    max = tonumber(max)
    if not max or max ~= math.floor(max) or max < 1 or max > 1000 then
      return invalid("$.max_results: must be an integer between 1 and 1000")
    end
  end
  max = max or tonumber(k.list_page) or 100
  local offset = 0
  if req.query.pagination_token ~= nil then
    offset = decode_token(req.query.pagination_token)
    if not offset then return invalid("$.pagination_token: is not a valid token") end
  end
  local all = M.subscriptions()
  local data = {}
  for i = offset + 1, math.min(offset + max, #all) do data[#data + 1] = sub_object(all[i]) end
  local meta = { result_count = #data }
  if offset + max < #all then meta.next_token = encode_token(offset + max) end
  return 200, { data = util.array(data), meta = meta }
end

local function find(id)
  if type(id) ~= "string" or not id:match("^%d+$") then return nil end
  return state.get_json("xaa:sub:" .. id)
end

function M.update(req)
  local k = knobs(req.cfg)
  local rec = find(req.captures[1])
  if not rec then return not_found(req.captures[1]) end
  local body = util.decode(req.body or "")
  if type(body) ~= "table" then return invalid("$: the request body must be a JSON object") end
  for key in pairs(body) do
    if key ~= "tag" and key ~= "webhook_id" then
      return invalid("$." .. tostring(key) .. ": is not defined in the schema")
    end
  end
  if body.tag ~= nil then
    if type(body.tag) ~= "string" or #body.tag < 1 or #body.tag > 200 then return invalid("$.tag: must be 1 to 200 characters") end
    rec.tag = body.tag
  end
  if body.webhook_id ~= nil then
    local wh_id = tostring(body.webhook_id)
    if not webhook_ok(wh_id) then
      return respond.v2_reason("WebhookIdInvalid", "Webhook id " .. wh_id
        .. " does not exist or is associated with a different application.")
    end
    rec.webhook_id = wh_id
  end
  rec.updated_at = util.iso_ms(ngx.now())
  state.set_json("xaa:sub:" .. rec.subscription_id, rec)
  return one(200, rec, k)
end

local function remove(rec)
  d():delete("xaa:sub:" .. rec.subscription_id)
  d():delete(rec.key)
  d():incr("cnt:xaa", -1, 0)
  state.touch()
end

--- Forget the user's subscriptions to private events (their consent is
-- gone). Returns how many.
function M.remove_private_of(user_id)
  local n = 0
  for _, rec in ipairs(M.subscriptions()) do
    if rec.filter and rec.filter.user_id == user_id and privacy(rec.event_type) == "private" then
      remove(rec)
      n = n + 1
    end
  end
  return n
end

function M.delete(req)
  local k = knobs(req.cfg)
  local rec = find(req.captures[1])
  if not rec then return not_found(req.captures[1]) end
  remove(rec)
  if k.delete_shape == "empty" then return 204, nil end
  return 200, { data = { deleted = true }, meta = { total_subscriptions = total() } }
end

function M.delete_many(req)
  local raw = req.query.ids
  if type(raw) == "table" then raw = table.concat(raw, ",") end
  if type(raw) ~= "string" or raw == "" then return invalid("$.ids: is missing but it is required") end
  local ids = {}
  for id in raw:gmatch("[^,]+") do ids[#ids + 1] = id end
  if #ids > 100 then return invalid("$.ids: must have at most 100 items") end
  local data, errs = {}, {}
  for _, id in ipairs(ids) do
    local rec = find(id)
    if rec then
      remove(rec)
      data[#data + 1] = { subscription_id = id, deleted = true }
    else
      errs[#errs + 1] = { subscription_id = id, reason = "SubscriptionNotFound",
        message = "Could not find subscription with id: [" .. id .. "]." }
    end
  end
  local out = { data = util.array(data), meta = { total_subscriptions = total() } }
  if #errs > 0 then out.errors = errs end
  return 200, out
end

M.PROBLEM = PROBLEM

--- Route rows for routes.lua (method, pattern, name, flavour, auth, handler).
local SEG = "([^/]+)"
-- Auth per operation as x-openapi-2.167.json's `security` lists it.
local B, ANY_TOKEN = { "bearer" }, { "oauth2", "user", "bearer" }
M.ROUTES = {
  { "POST", "^/2/activity/subscriptions$", "xaa.create", "v2", ANY_TOKEN, M.create },
  { "GET", "^/2/activity/subscriptions$", "xaa.list", "v2", ANY_TOKEN, M.list },
  { "DELETE", "^/2/activity/subscriptions$", "xaa.delete_many", "v2", B, M.delete_many },
  { "PUT", "^/2/activity/subscriptions/" .. SEG .. "$", "xaa.update", "v2", B, M.update },
  { "DELETE", "^/2/activity/subscriptions/" .. SEG .. "$", "xaa.delete", "v2", B, M.delete },
}

--- OAuth 2.0 scopes per route (the spec's OAuth2UserToken lists); create's
-- scope depends on the event type (M.scope_for).
M.ROUTE_SCOPES = { ["xaa.list"] = { "like.read", "tweet.read" } }

--- Rate limits per 15 minutes (X-API.md 3.1; bulk delete is not listed).
M.RATE_LIMITS = {
  ["xaa.create"] = 500, ["xaa.list"] = 500, ["xaa.update"] = 500, ["xaa.delete"] = 500,
  ["xaa.delete_many"] = 500, ["xaa.stream"] = 450,
}


return M
