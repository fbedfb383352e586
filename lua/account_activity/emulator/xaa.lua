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

-- ---------------------------------------------------------------- payloads (X-API.md 5.2)

local snowflake = state.snowflake

local function hex(n)
  local out = {}
  for i = 1, n do out[i] = string.format("%x", math.random(0, 15)) end
  return table.concat(out)
end

local function v2_user(u)
  return {
    id = u.user_id, name = u.name or u.screen_name, username = u.screen_name,
    created_at = "2010-01-01T00:00:00.000Z", description = "An emulated account", location = "Emulator",
    protected = false, verified = false, verified_type = "none", is_identity_verified = false,
    profile_image_url = "https://pbs.twimg.com/profile_images/default_profile_normal.png",
    public_metrics = { followers_count = 42, following_count = 17, tweet_count = 123, listed_count = 0,
      like_count = 3, media_count = 0 },
  }
end

local function other(cfg, user)
  for i, u in ipairs(cfg.users) do
    if u.user_id == user.user_id then
      local o = cfg.users[i % #cfg.users + 1]
      if o.user_id ~= user.user_id then return o end
    end
  end
  if cfg.app.owner.user_id ~= user.user_id then return cfg.app.owner end
  return { user_id = "783214", screen_name = "emu_someone", name = "Someone Else" }
end

local function metrics()
  local m = {}
  for _, n in ipairs { "retweet_count", "reply_count", "like_count", "quote_count", "bookmark_count", "impression_count" } do
    m[n], m[n .. "_str"] = 0, "0"
  end
  return m
end

local function post(author, t, text, extra)
  local id = snowflake(t)
  local p = {
    id = id, text = text, author_id = author.user_id, created_at = util.iso_ms(t), conversation_id = id,
    lang = "en", reply_settings = "everyone", possibly_sensitive = false, paid_partnership = false,
    display_text_range = { 0, #text }, edit_history_tweet_ids = { id },
    edit_controls = { edits_remaining = 5, edits_remaining_str = "5", is_edit_eligible = true,
      editable_until = util.iso_ms(t + 3600) },
    public_metrics = metrics(),
  }
  for k, v in pairs(extra or {}) do p[k] = v end
  return p
end

local function mention(u, at)
  local s, e = at, at + #u.screen_name + 1
  return { start = s, ["end"] = e, start_str = tostring(s), end_str = tostring(e), username = u.screen_name, id = u.user_id }
end

-- generator(cfg, user, t, opts) -> payload, includes
local G = {}

G["post.create"] = function(_, user, t, o)
  local p = post(user, t, o.text or ("Hello from the emulator #" .. (o.index or 1)))
  return p, { users = { v2_user(user) }, tweets = { util.deep_copy(p) } }
end
G["post.mention.create"] = function(cfg, user, t, o) -- luacheck: ignore 212
  local a = other(cfg, user)
  local text = "@" .. user.screen_name .. " " .. (o.text or "have a look")
  local p = post(a, t, text, { entities = { mentions = { mention(user, 0) } } })
  return p, { users = { v2_user(a), v2_user(user) }, tweets = { util.deep_copy(p) } }
end
local function referencing(kind, prefix)
  return function(cfg, user, t, o)
    local a = other(cfg, user)
    local orig = snowflake(t - 600)
    local text = prefix(user) .. (o.text or "indeed")
    local extra = { referenced_tweets = { { type = kind, id = orig } } }
    if kind == "replied_to" then
      extra.in_reply_to_user_id = user.user_id
      extra.in_reply_to_tweet_id = orig
      extra.conversation_id = orig
      extra.entities = { mentions = { mention(user, 0) } }
    end
    local p = post(a, t, text, extra)
    local original = post(user, t - 600, "the original post")
    original.id = orig
    return p, { users = { v2_user(a), v2_user(user) }, tweets = { util.deep_copy(p), original } }
  end
end
G["post.reply.create"] = referencing("replied_to", function(u) return "@" .. u.screen_name .. " " end)
G["post.quote.create"] = referencing("quoted", function() return "" end)
G["post.repost.create"] = referencing("retweeted", function(u) return "RT @" .. u.screen_name .. ": " end)
G["post.delete"] = function(_, user, t)
  return { id = snowflake(t - 3600), author_id = user.user_id }, { users = { { data = v2_user(user) } } }
end
G["like.create"] = function(cfg, user, t, o)
  local a = other(cfg, user)
  local liker, author = a, user -- inbound: someone likes the user's post
  if o.direction == "outbound" then liker, author = user, a end
  local liked = post(author, t - 600, "a post worth a like")
  return { id = hex(32), liked_tweet_id = liked.id, liked_tweet_author_id = author.user_id,
    created_at = liked.created_at, timestamp_ms = util.ms_string(t) },
    { users = { v2_user(liker), v2_user(author) }, tweets = { liked } }
end
local function pair(actor_is_user_default)
  return function(cfg, user, _, o)
    local a = other(cfg, user)
    local src, dst = a, user
    if actor_is_user_default or o.direction == "outbound" then src, dst = user, a end
    return { source = { data = v2_user(src) }, target = { data = v2_user(dst) } }
  end
end
G["follow.follow"] = pair(false)
G["follow.unfollow"] = pair(false)
for _, et in ipairs { "block.block", "block.unblock", "mute.mute", "mute.unmute" } do G[et] = pair(true) end
G["news.new"] = function(_, _, t, o)
  local id = snowflake(t)
  return { id = id, name = "Emulated headline about " .. (o.keyword or "news"), category = "Technology",
    hook = "Something happened", summary = "A short emulated summary.", disclaimer = "Emulated content.",
    updated_at = util.iso_ms(t),
    contexts = { entities = { events = util.empty_array, organizations = { "Emulator Inc" },
      people = util.empty_array, places = util.empty_array, products = util.empty_array },
      topics = { "Technology" }, finance = { tickers = util.empty_array }, sports = { teams = util.empty_array } },
    cluster_posts_results = { { post_id = snowflake(t - 60) } } }
end
local function spaces(inner)
  return function(_, user)
    return { user = { data = v2_user(user) }, broadcast_id = "1OdJr" .. hex(8), event_type = inner }
  end
end
G["spaces.start"] = spaces("spaces_start")
G["spaces.end"] = spaces("spaces_end")
local function broadcast(running)
  return function(_, user, t)
    local ms = math.floor(t * 1000)
    local p = { user = { data = v2_user(user) }, broadcast_id = "1Mnx" .. hex(8), title = "Emulated live",
      language = "en", broadcast_state = running and "Running" or "Ended",
      event_timestamp_ms = ms, event_timestamp_ms_str = string.format("%d", ms),
      created_timestamp_ms = ms - 60000, created_timestamp_ms_str = string.format("%d", ms - 60000),
      updated_timestamp_ms = ms, updated_timestamp_ms_str = string.format("%d", ms),
      thumbnail_url = "https://pbs.twimg.com/emulated.jpg", available_for_replay = true }
    if not running then p.duration_ms, p.duration_ms_str = 60000, "60000" end
    return p
  end
end
G["broadcast.start"] = broadcast(true)
G["broadcast.end"] = broadcast(false)
G["broadcast.chat"] = function(cfg, user, t, o)
  local a = other(cfg, user)
  return { broadcast_id = "1Mnx" .. hex(8), message_id = snowflake(t), message = o.text or "hello from chat",
    author = { data = v2_user(a) } }
end
local function chat(sent)
  return function(cfg, user, t)
    local a = other(cfg, user)
    local sender = sent and user or a
    local ids = { user.user_id, a.user_id }
    table.sort(ids)
    return { id = hex(8) .. "-" .. hex(4) .. "-" .. hex(4) .. "-" .. hex(4) .. "-" .. hex(12),
      sender_id = sender.user_id, conversation_id = ids[1] .. ":" .. ids[2],
      created_at_msec = util.ms_string(t), conversation_key_version = "1",
      conversation_token = "eyJhbGciOiJFUzI1NiJ9." .. hex(32) .. "." .. hex(32),
      encoded_event = "AAAAAQ" .. hex(40), message_event_signature = { public_key_version = "1",
        signature = hex(64), signature_version = "1", signing_public_key = hex(66) } }
  end
end
G["chat.sent"] = chat(true)
G["chat.received"] = chat(false)
local function users_map(list)
  local m = {}
  for _, u in ipairs(list) do m[u.user_id] = { data = v2_user(u) } end
  return m
end
local function dm(sent)
  return function(cfg, user, t, o)
    local a = other(cfg, user)
    local s, r = a, user
    if sent then s, r = user, a end
    return { direct_message_events = { {
      type = "message_create", id = snowflake(t), created_timestamp = util.ms_string(t),
      message_create = { sender_id = s.user_id, target = { recipient_id = r.user_id },
        message_data = { text = o.text or "Hello there", entities = { hashtags = util.empty_array,
          symbols = util.empty_array, user_mentions = util.empty_array, urls = util.empty_array } } },
    } }, users = users_map { s, r } }
  end
end
G["dm.sent"] = dm(true)
G["dm.received"] = dm(false)
G["dm.indicate_typing"] = function(cfg, user, t)
  local a = other(cfg, user)
  return { direct_message_indicate_typing_events = { { created_timestamp = util.ms_string(t),
    sender_id = a.user_id, target = { recipient_id = user.user_id } } }, users = users_map { a, user } }
end
G["dm.read"] = function(cfg, user, t)
  local a = other(cfg, user)
  return { direct_message_mark_read_events = { { created_timestamp = util.ms_string(t),
    sender_id = a.user_id, target = { recipient_id = user.user_id }, last_read_event_id = snowflake(t - 60) } },
    users = users_map { a, user } }
end
G["oauth.revoke"] = function(cfg, user, t)
  return { date_time = os.date("!%Y-%m-%dT%H:%M:%S+00:00", math.floor(t)), user_id = user.user_id,
    app_id = cfg.app.app_id }
end
local function profile(field)
  return function(_, user)
    return { before = "old " .. field .. " of " .. user.screen_name, after = "new " .. field .. " of " .. user.screen_name }
  end
end
for et in pairs(TYPES) do
  local field = et:match("^profile%.update%.(.+)$")
  if field then G[et] = profile(field) end
end
M.generators = G

function M.payload(et, cfg, user, t, o)
  local g = G[et]
  if not g then return { id = snowflake(t) } end -- types without a sample
  return g(cfg, user, t, o or {})
end

-- ---------------------------------------------------------------- streams and delivery

local function open_streams()
  local out = {}
  for _, key in ipairs(state.keys_with_prefix("xaa:stream:")) do out[#out + 1] = key:sub(12) end
  table.sort(out)
  return out
end
M.open_streams = open_streams

local function push_line(line)
  local n = 0
  for _, sid in ipairs(open_streams()) do
    d():rpush("xaa:q:" .. sid, line)
    n = n + 1
  end
  return n
end

local function record_line(line, t)
  local n = state.incr("seq:xaaev")
  d():set("xaa:ev:" .. n, util.encode { t = t, line = line })
  if n > 5000 then d():delete("xaa:ev:" .. (n - 5000)) end
end

local function matches(rec, spec)
  if rec.event_type ~= (ALIASES[spec.event_type] or spec.event_type) then return false end
  local f = rec.filter or {}
  if spec.user_id ~= nil and f.user_id ~= nil and f.user_id ~= tostring(spec.user_id) then return false end
  if f.user_id ~= nil and spec.user_id == nil then return false end
  if f.direction ~= nil and spec.direction ~= nil and f.direction ~= spec.direction then return false end
  if f.keyword ~= nil then
    -- the keyword of a news item, or a word of the post's text
    local hay = spec.keyword or spec.text
    if hay == nil or not tostring(hay):lower():find(f.keyword:lower(), 1, true) then return false end
  end
  return true
end

--- Payloads as the spec's schemas declare them (payload_shape = "spec"):
-- includes.posts, tweet_author_id, an integer timestamp_ms, users not
-- wrapped in {data = ...}, news' headline.
local function unwrap(v)
  if type(v) == "table" and type(v.data) == "table" and next(v, next(v)) == nil then return v.data end
  return v
end
local function spec_shape(et, payload, includes)
  if type(payload) == "table" then
    payload = util.deep_copy(payload)
    for _, k in ipairs { "source", "target", "user", "author" } do payload[k] = unwrap(payload[k]) end
    if et == "like.create" then
      payload.tweet_author_id, payload.liked_tweet_author_id = payload.liked_tweet_author_id, nil
      payload.timestamp_ms = tonumber(payload.timestamp_ms)
    elseif et == "news.new" then
      payload = { category = payload.category, headline = payload.name, hook = payload.hook, summary = payload.summary }
    end
  end
  if type(includes) == "table" then
    includes = util.deep_copy(includes)
    if includes.tweets then includes.posts, includes.tweets = includes.tweets, nil end
    for i, u in ipairs(includes.users or {}) do includes.users[i] = unwrap(u) end
  end
  return payload, includes
end
M.spec_shape = spec_shape

--- Control: deliver events of one type for one user to every subscription
-- that matches (its webhook, signed, and every open stream).
-- body: { event_type, user_id, count, direction, keyword, text, payload, raw, wait }
function M.control_deliver(body)
  local cfg = state.config()
  if body.raw ~= nil then
    if type(body.raw) ~= "string" then return 400, { error = "raw must be a string" } end
    return 200, { streams = push_line(body.raw) }
  end
  local et = body.event_type
  if type(et) ~= "string" then return 400, { error = "event_type is required" } end
  local user = body.user_id and cfg._by_id[tostring(body.user_id)]
  if body.user_id ~= nil and not user then
    user = { user_id = tostring(body.user_id), screen_name = "user_" .. tostring(body.user_id) }
  end
  user = user or cfg.app.owner
  local subs = {}
  if et == "oauth.revoke" then
    -- not subscribable: X sends it to the app, every stream once and every
    -- webhook its XAA subscriptions deliver to
    local seen = {}
    for _, rec in ipairs(M.subscriptions()) do
      if rec.webhook_id and not seen[rec.webhook_id] then
        seen[rec.webhook_id] = true
        subs[#subs + 1] = { event_type = et, filter = {}, webhook_id = rec.webhook_id, no_stream = #subs > 0 }
      end
    end
    if #subs == 0 then subs[1] = { event_type = et, filter = {} } end
  else
    for _, rec in ipairs(M.subscriptions()) do
      if matches(rec, body) then subs[#subs + 1] = rec end
    end
  end
  local spec_payloads = knobs(cfg).payload_shape == "spec"
  local count = math.max(1, math.min(tonumber(body.count) or 1, 10000))
  ngx.update_time()
  local t = ngx.now()
  local posts, streamed = {}, 0
  local delivery = require "account_activity.emulator.delivery"
  for _, rec in ipairs(subs) do
    for i = 1, count do
      local payload, includes = body.payload, body.includes
      if payload == nil then
        payload, includes = M.payload(et, cfg, user, t, { index = i, text = body.text, direction = body.direction,
          keyword = body.keyword })
        if spec_payloads then payload, includes = spec_shape(et, payload, includes) end
      end
      local filter = util.deep_copy(rec.filter or {})
      if et == "like.create" and body.direction and not filter.direction then filter.direction = body.direction end
      local data = { event_uuid = snowflake(t), event_type = et, filter = filter, tag = rec.tag,
        payload = payload, includes = includes }
      if et == "oauth.revoke" then data.filter, data.tag = {}, nil end
      local line = util.encode { data = data }
      if not rec.no_stream then
        streamed = streamed + push_line(line)
        record_line(line, t)
      end
      local wh = rec.webhook_id and state.webhook(rec.webhook_id)
      if wh then
        state.record_event { t = t, webhook_id = wh.id, user_id = user.user_id, body = line }
        if wh.valid then posts[#posts + 1] = { wh = wh, body = line } end
      end
    end
  end
  local function post_all()
    local reports = {}
    for _, p in ipairs(posts) do reports[#reports + 1] = delivery.post(p.wh, p.body, cfg) end
    state.incr("stats:delivered", #reports)
    return reports
  end
  local out = { matched = #subs, events = #subs * count, streamed = streamed }
  if body.wait then
    local reports = post_all()
    local ok = 0
    for _, r in ipairs(reports) do if r.ok then ok = ok + 1 end end
    out.deliveries, out.delivered, out.failed = util.array(reports), ok, #reports - ok
    return 200, out
  end
  out.queued = #posts
  if #posts > 0 then
    local ok, err = ngx.timer.at(0, function(premature)
      if premature then return end
      local pok, perr = pcall(post_all)
      if not pok then ngx.log(ngx.ERR, "emulator xaa delivery failed: ", perr) end
    end)
    if not ok then return 500, { error = "cannot start a delivery timer: " .. tostring(err) } end
  end
  return 202, out
end

--- Control: end open streams. body: { action = "close" (clean end) | "cut"
-- (send the first `bytes` of `fragment`, or half an event line, then drop
-- the connection), stream_id = nil (all) }
function M.control_stream(body)
  local action = body.action or "close"
  if action ~= "close" and action ~= "cut" then return 400, { error = "action must be close or cut" } end
  local ids = open_streams()
  if body.stream_id ~= nil then ids = { tostring(body.stream_id) } end
  for _, sid in ipairs(ids) do
    d():set("xaa:cut:" .. sid, util.encode { action = action, fragment = body.fragment })
  end
  return 200, { streams = #ids, stream_ids = util.array(ids) }
end

function M.control_state()
  local subs = {}
  for i, rec in ipairs(M.subscriptions()) do subs[i] = sub_object(rec) end
  local ids = open_streams()
  return 200, { subscriptions = util.array(subs), streams = #ids, stream_ids = util.array(ids),
    connections = d():get("xaa:streams") or 0, knobs = knobs(state.config()) }
end

-- ISO-8601 UTC -> epoch, or nil.
local function parse_iso(s)
  if type(s) ~= "string" then return nil end
  local y, mo, dd, h, mi, sec = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)")
  if not y then return nil end
  local base = util.parse_yyyymmddhhmm(y .. mo .. dd .. h .. mi)
  return base and base + tonumber(sec)
end

--- GET /2/activity/stream: every event of every subscription of the app,
-- one JSON line each, blank lines while idle. Ends the response itself.
function M.stream(req)
  local k = knobs(req.cfg)
  local q = req.query
  local backfill = q.backfill_minutes
  if backfill ~= nil then
    backfill = tonumber(backfill)
    if not backfill or backfill ~= math.floor(backfill) or backfill < 0 or backfill > 5 then
      return invalid("$.backfill_minutes: must be an integer between 0 and 5")
    end
  end
  local start_t, end_t
  if q.start_time ~= nil then
    start_t = parse_iso(q.start_time)
    if not start_t then return invalid("$.start_time: must be an ISO-8601 date-time") end
  end
  if q.end_time ~= nil then
    end_t = parse_iso(q.end_time)
    if not end_t then return invalid("$.end_time: must be an ISO-8601 date-time") end
  end
  local limit = tonumber(k.connections) or 2
  if d():incr("xaa:streams", 1, 0) > limit then
    d():incr("xaa:streams", -1, 0)
    return 429, { title = "ConnectionException",
      detail = "This stream has too many connections. Maximum of " .. limit .. " concurrent connections allowed.",
      connection_issue = "TooManyConnections", type = PROBLEM .. "streaming-connection" }
  end
  local sid = string.format("%08d", state.incr("seq:xaastream"))
  d():set("xaa:stream:" .. sid, ngx.now())
  local function finish()
    if d():get("xaa:stream:" .. sid) ~= nil then d():incr("xaa:streams", -1, 0) end
    d():delete("xaa:stream:" .. sid)
    d():delete("xaa:q:" .. sid)
    d():delete("xaa:cut:" .. sid)
  end

  local abort = false
  local ok, perr = pcall(function()
    ngx.status = 200
    ngx.header["Content-Type"] = "application/json; charset=utf-8"
    ngx.header["x-emulator-stream-id"] = sid
    ngx.send_headers()
    if not ngx.flush(true) then return end
    -- backfill from the event record
    local from
    if start_t then from = start_t elseif backfill and backfill > 0 then from = ngx.now() - backfill * 60 end
    if from then
      local last = d():get("seq:xaaev") or 0
      for n = math.max(1, last - 4999), last do
        local e = state.get_json("xaa:ev:" .. n)
        if e and e.t >= from and (not end_t or e.t <= end_t) then ngx.print(e.line, "\r\n") end
      end
      if not ngx.flush(true) then return end
    end
    local started, last_write = ngx.now(), ngx.now()
    local keepalive = (tonumber(k.keepalive_ms) or 1000) / 1000
    while true do
      local cut = d():get("xaa:cut:" .. sid)
      if cut then
        cut = util.decode(cut) or {}
        if cut.action == "cut" then
          local frag = cut.fragment
          if frag == nil then
            local line = d():lpop("xaa:q:" .. sid) or '{"data":{"event_uuid":"1","event_type":"post.create","filter":{}}}'
            frag = line:sub(1, math.max(1, math.floor(#line / 2)))
          end
          ngx.print(frag)
          ngx.flush(true)
          abort = true
        end
        return
      end
      local line = d():lpop("xaa:q:" .. sid)
      if line then
        ngx.print(line, "\r\n")
        if not ngx.flush(true) then return end
        last_write = ngx.now()
      else
        ngx.update_time()
        local now = ngx.now()
        if end_t and now >= end_t then return end
        if now - started > (tonumber(k.stream_max_s) or 600) then return end
        if now - last_write >= keepalive then
          ngx.print("\r\n")
          if not ngx.flush(true) then return end
          last_write = now
        end
        ngx.sleep(0.01)
      end
    end
  end)
  finish()
  if not ok then ngx.log(ngx.ERR, "emulator xaa stream failed: ", perr) end
  if abort then return ngx.exit(ngx.ERROR) end
  ngx.eof()
  return ngx.exit(ngx.HTTP_OK)
end

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
  { "GET", "^/2/activity/stream$", "xaa.stream", "v2", B, M.stream },
}

--- OAuth 2.0 scopes per route (the spec's OAuth2UserToken lists); create's
-- scope depends on the event type (M.scope_for).
M.ROUTE_SCOPES = { ["xaa.list"] = { "like.read", "tweet.read" } }

--- Rate limits per 15 minutes (X-API.md 3.1; bulk delete is not listed).
M.RATE_LIMITS = {
  ["xaa.create"] = 500, ["xaa.list"] = 500, ["xaa.update"] = 500, ["xaa.delete"] = 500,
  ["xaa.delete_many"] = 500, ["xaa.stream"] = 450,
}

--- Control-plane handlers: name -> fn(body) -> status, body.
M.CONTROL = {
  ["POST xaa/deliver"] = M.control_deliver,
  ["POST xaa/stream"] = M.control_stream,
  ["GET xaa/state"] = function() return M.control_state() end,
}

return M
