--- Realistic Account Activity payloads (X-API.md Part 1 section 6) for a
-- subscribed user. Every generator returns the whole envelope.
local core = require "account_activity.core"
local util = require "account_activity.emulator.util"

local M = {}

local function hex(n)
  return (core.random_bytes(n):gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local counter = 0
local function snowflake(t)
  counter = (counter + 1) % 4096
  -- 19 decimal digits; unique enough per emulator run
  return string.format("%013.0f%06d", t * 1000 - 1288834974657, (ngx.worker.pid() % 100) * 10000 + counter)
end

--- A v1.1 User object.
function M.user_object(u)
  return {
    id = tonumber(u.user_id), id_str = u.user_id, name = u.name or u.screen_name,
    screen_name = u.screen_name, location = "Emulator", description = "An emulated account",
    url = util.null, protected = false, verified = false,
    followers_count = 42, friends_count = 17, listed_count = 0, favourites_count = 3,
    statuses_count = 123, created_at = util.twitter_date(1262304000), -- 2010-01-01
    created_timestamp = util.ms_string(1262304000), utc_offset = util.null, time_zone = util.null,
    geo_enabled = false, lang = util.null, default_profile_image = true,
    profile_image_url = "http://pbs.twimg.com/profile_images/default_profile_normal.png",
    profile_image_url_https = "https://pbs.twimg.com/profile_images/default_profile_normal.png",
    following = false, follow_request_sent = false, notifications = false,
  }
end

local function entities()
  return { hashtags = util.empty_array, symbols = util.empty_array, user_mentions = util.empty_array,
    urls = util.empty_array }
end

local function tweet(author, t, text)
  local id = snowflake(t)
  return {
    created_at = util.twitter_date(t), id = tonumber(id), id_str = id,
    text = text, source = '<a href="https://example.invalid" rel="nofollow">emulator</a>',
    truncated = false, in_reply_to_status_id = util.null, in_reply_to_status_id_str = util.null,
    in_reply_to_user_id = util.null, in_reply_to_user_id_str = util.null,
    in_reply_to_screen_name = util.null, user = M.user_object(author, t), geo = util.null,
    coordinates = util.null, place = util.null, contributors = util.null, is_quote_status = false,
    quote_count = 0, reply_count = 0, retweet_count = 0, favorite_count = 0,
    entities = entities(), favorited = false, retweeted = false, filter_level = "low", lang = "en",
    timestamp_ms = util.ms_string(t),
  }
end

--- other(cfg, user, or_owner) -> the other party of an event: the next
-- configured user, else (or_owner) the app owner, else a synthetic one.
-- AAA and XAA payloads both take it from here.
function M.other(cfg, user, or_owner)
  for i, u in ipairs(cfg.users) do
    if u.user_id == user.user_id then
      local o = cfg.users[i % #cfg.users + 1]
      if o.user_id ~= user.user_id then return o end
    end
  end
  if or_owner and cfg.app.owner.user_id ~= user.user_id then return cfg.app.owner end
  return { user_id = "783214", screen_name = "emu_someone", name = "Someone Else" }
end
local other = M.other

local function relation(key, typ)
  return function(cfg, user, t, opts)
    local o = other(cfg, user)
    local src, dst = user, o
    if key == "follow_events" and not opts.outgoing then src, dst = o, user end
    local item = { type = typ, created_timestamp = util.ms_string(t),
      source = M.user_object(src, t), target = M.user_object(dst, t) }
    local k = key
    if opts.shape == "documented" and typ:sub(1, 2) == "un" then k = typ .. "_events" end
    return { for_user_id = user.user_id, [k] = { item } }
  end
end

local function users_map(list, t)
  local m = {}
  for _, u in ipairs(list) do
    local o = M.user_object(u, t)
    m[u.user_id] = {
      id = u.user_id, created_timestamp = o.created_timestamp, name = o.name, screen_name = o.screen_name,
      location = o.location, description = o.description, url = o.url, protected = o.protected,
      verified = o.verified, followers_count = o.followers_count, friends_count = o.friends_count,
      statuses_count = o.statuses_count, profile_image_url = o.profile_image_url,
      profile_image_url_https = o.profile_image_url_https,
    }
  end
  return m
end

M.generators = {
  tweet_create = function(_, user, t, opts)
    return { for_user_id = user.user_id,
      tweet_create_events = { tweet(user, t, opts.text or ("Hello from the emulator #" .. (opts.index or 1))) } }
  end,
  favorite = function(cfg, user, t, opts)
    local o = other(cfg, user)
    return { for_user_id = user.user_id, favorite_events = { {
      id = hex(16), created_at = util.twitter_date(t), timestamp_ms = math.floor(t * 1000),
      favorited_status = tweet(user, t, opts.text or "A post someone liked"), user = M.user_object(o, t),
    } } }
  end,
  follow = relation("follow_events", "follow"),
  unfollow = relation("follow_events", "unfollow"),
  block = relation("block_events", "block"),
  unblock = relation("block_events", "unblock"),
  mute = relation("mute_events", "mute"),
  unmute = relation("mute_events", "unmute"),
  user_event = function(cfg, user, t)
    return { user_event = { revoke = {
      date_time = os.date("!%Y-%m-%dT%H:%M:%S+00:00", math.floor(t)),
      target = { app_id = cfg.app.app_id }, source = { user_id = user.user_id },
    } } }
  end,
  direct_message = function(cfg, user, t, opts)
    local o = other(cfg, user)
    local sender, recipient = o, user
    if opts.outgoing then sender, recipient = user, o end
    return {
      for_user_id = user.user_id,
      direct_message_events = { {
        type = "message_create", id = snowflake(t), created_timestamp = util.ms_string(t),
        message_create = {
          target = { recipient_id = recipient.user_id }, sender_id = sender.user_id,
          source_app_id = cfg.app.app_id,
          message_data = { text = opts.text or "Hello there", entities = entities() },
        },
      } },
      apps = { [cfg.app.app_id] = { id = cfg.app.app_id, name = cfg.app.name or "emulator",
        url = "https://example.invalid" } },
      users = users_map({ sender, recipient }, t),
    }
  end,
  direct_message_indicate_typing = function(cfg, user, t)
    local o = other(cfg, user)
    return { for_user_id = user.user_id, direct_message_indicate_typing_events = { {
      created_timestamp = util.ms_string(t), sender_id = o.user_id, target = { recipient_id = user.user_id },
    } }, users = users_map({ o, user }, t) }
  end,
  direct_message_mark_read = function(cfg, user, t)
    local o = other(cfg, user)
    return { for_user_id = user.user_id, direct_message_mark_read_events = { {
      created_timestamp = util.ms_string(t), sender_id = o.user_id, target = { recipient_id = user.user_id },
      last_read_event_id = snowflake(t - 60),
    } }, users = users_map({ o, user }, t) }
  end,
  tweet_delete = function(_, user, t)
    return { for_user_id = user.user_id, tweet_delete_events = { {
      status = { id = snowflake(t - 3600), user_id = user.user_id }, timestamp_ms = util.ms_string(t),
    } } }
  end,
}

-- Accept the documented key names too ("follow_events", "unfollow_events", ...).
local ALIASES = {
  revoke = "user_event", dm = "direct_message", typing = "direct_message_indicate_typing",
  mark_read = "direct_message_mark_read",
}

--- Normalise a type name. Returns name, shape_override.
function M.resolve(name)
  if type(name) ~= "string" then return nil end
  if M.generators[name] then return name end
  if ALIASES[name] then return ALIASES[name] end
  local base = name:match("^(.-)_events$")
  if base and M.generators[base] then
    if base:sub(1, 2) == "un" then return base, "documented" end
    return base
  end
  return nil
end

function M.types()
  local out = {}
  for k in pairs(M.generators) do out[#out + 1] = k end
  table.sort(out)
  return out
end

function M.generate(name, cfg, user, t, opts)
  local base, shape = M.resolve(name)
  if not base then return nil, "unknown event type " .. tostring(name) end
  opts = opts or {}
  if shape and not opts.shape then opts = util.merge(opts, { shape = shape }) end
  return M.generators[base](cfg, user, t, opts)
end

function M.replay_status(wh_id, job_id, complete)
  return { replay_job_status = {
    webhook_id = wh_id, job_id = job_id,
    job_state = complete and "Complete" or "Incomplete",
    job_state_description = complete and "Job completed successfully"
      or "Job failed to deliver all events, please retry your replay job",
  } }
end

return M
