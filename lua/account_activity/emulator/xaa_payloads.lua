--- X Activity API event payloads for the emulator (X-API.md 5.2), in the
-- shape of event-payloads.mdx's samples or, with payload_shape = "spec",
-- of the OpenAPI schemas (M.spec_shape).
local util = require "account_activity.emulator.util"
local state = require "account_activity.emulator.state"
local aaa_events = require "account_activity.emulator.events"

local M = {}


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

-- the next configured user, else the owner, else a synthetic one
local function other(cfg, user) return aaa_events.other(cfg, user, true) end

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
for _, et in ipairs(require("account_activity.endpoints").xaa.event_types) do
  local field = et:match("^profile%.update%.(.+)$")
  if field then G[et] = profile(field) end
end
M.generators = G

function M.payload(et, cfg, user, t, o)
  local g = G[et]
  if not g then return { id = snowflake(t) } end -- types without a sample
  return g(cfg, user, t, o or {})
end


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

return M
