--- Account Activity deliveries -> typed events, and a router for them.
--
--   local events = require "account_activity.events"
--   local list = assert(events.parse(raw_body))
--   local r = events.router()
--   r:on("follow", function(ev) print(ev.item.source.screen_name) end)
--   r:for_user("2244994945"):on("direct_message", handle_dm)
--   r:dispatch(raw_body)
--
-- One parser serves both envelopes X delivers to a webhook: the Account
-- Activity API's (`for_user_id` plus one `*_events` key) and the X Activity
-- API's (`{"data": {event_uuid, event_type, filter, payload, ...}}`).
local core = require "account_activity.core"
local pretty = require "account_activity.pretty"

local type, pairs, ipairs, next, tostring = type, pairs, ipairs, next, tostring
local pcall, error, setmetatable = pcall, error, setmetatable
local sort, concat = table.sort, table.concat
local format, gsub = string.format, string.gsub
local getmetatable = getmetatable

local M = {}

-- Nesting deeper than this is pathological for a webhook body (events nest
-- fewer than 20 levels); the decoders' default of 1000 lets a hostile body
-- recurse far.
local MAX_DEPTH = 200
-- Deliveries are decoded by the core's decoder (src/json.c): the same values
-- as cjson's at about twice the speed, and this is the webhook's hot path.
local json_decode = core.json_decode
-- A delivery refused is an event lost (X retries the same bytes), so two
-- things the strict default refuses or rounds are taken as X sends them:
-- a lone surrogate escape (a text cut inside an emoji) becomes U+FFFD, and
-- an integer past 2^53 (an id sent as a number, `for_user_id` included)
-- stays its exact digit string, so it routes to the right user. Integers up
-- to 2^53 and everything else decode as cjson would.
local DELIVERY = { max_depth = MAX_DEPTH, lone_surrogates = "replace", big_integers = "string" }

local null = require("cjson").null -- the value both decoders give JSON null

--- Aliases: an XAA `event_type` -> the AAA type whose handlers also receive it.
-- `r:on("follow", fn)` then serves both APIs during the AAA -> XAA migration;
-- `events.router{ exact = true }` turns this off. (README table:)
--
-- | AAA type (r:on name)            | also receives these XAA event types                |
-- | ------------------------------- | -------------------------------------------------- |
-- | tweet_create                    | post.create, post.mention.create, post.reply.create, |
-- |                                 | post.quote.create, post.repost.create              |
-- | tweet_delete                    | post.delete                                        |
-- | favorite                        | like.create                                        |
-- | follow / unfollow               | follow.follow / follow.unfollow                    |
-- | block / unblock                 | block.block / block.unblock                        |
-- | mute / unmute                   | mute.mute / mute.unmute                            |
-- | direct_message                  | dm.sent, dm.received                               |
-- | direct_message_indicate_typing  | dm.indicate_typing                                 |
-- | direct_message_mark_read        | dm.read                                            |
-- | user_event                      | oauth.revoke                                       |
--
-- The payload keeps its XAA shape (`event.item` is the v2 `payload`; check
-- `event.api == "xaa"`); only the routing is shared.
M.ALIASES = {
  ["post.create"]         = "tweet_create",
  ["post.mention.create"] = "tweet_create",
  ["post.reply.create"]   = "tweet_create",
  ["post.quote.create"]   = "tweet_create",
  ["post.repost.create"]  = "tweet_create",
  ["post.delete"]         = "tweet_delete",
  ["like.create"]         = "favorite",
  ["follow.follow"]       = "follow",
  ["follow.unfollow"]     = "unfollow",
  ["block.block"]         = "block",
  ["block.unblock"]       = "unblock",
  ["mute.mute"]           = "mute",
  ["mute.unmute"]         = "unmute",
  ["dm.sent"]             = "direct_message",
  ["dm.received"]         = "direct_message",
  ["dm.indicate_typing"]  = "direct_message_indicate_typing",
  ["dm.read"]             = "direct_message_mark_read",
  ["oauth.revoke"]        = "user_event",
}

-- Envelope keys that describe the delivery rather than carry events.
local META = { for_user_id = true, users = true, apps = true,
               user_has_blocked = true, is_blocked_by = true }

-- Keys whose value is one object, not an array of items.
local SINGLE = { user_event = true, replay_job_status = true }

-- Keys whose items name their own type (`follow_events` carries unfollows).
local TYPED_ITEMS = {
  follow_events = true, unfollow_events = true, block_events = true,
  unblock_events = true, mute_events = true, unmute_events = true,
}

-- Precomputed key -> type, so the hot path does no string surgery for the
-- documented keys.
local KEY_TYPE = {}
for _, t in ipairs { "tweet_create", "favorite", "follow", "unfollow", "block",
  "unblock", "mute", "unmute", "direct_message", "direct_message_indicate_typing",
  "direct_message_mark_read", "tweet_delete" } do
  KEY_TYPE[t .. "_events"] = t
end
KEY_TYPE.user_event = "user_event"
KEY_TYPE.replay_job_status = "replay_job_status"

local function key_type(key)
  local t = KEY_TYPE[key]
  if t then return t end
  t = key:match("^(.+)_events$") or key
  return t
end

---------------------------------------------------------------------------
-- Stable ids for items that carry none (follow, block, typing, ...).

local HEX = {}
for i = 0, 255 do HEX[string.char(i)] = format("%02x", i) end

local function to_hex(s) return (gsub(s, ".", HEX)) end

-- Keys sort by type first so arrays (number keys) and objects never compare
-- a number with a string.
local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  return a < b
end

-- Canonical bytes of a decoded JSON value: sorted keys, length-prefixed
-- strings, %.17g numbers. The same item gives the same bytes in Lua 5.4 and
-- LuaJIT, whatever the key order of the table or of the original body.
local function canon(v, buf)
  local tv = type(v)
  if tv == "string" then
    buf[#buf + 1] = "s" .. #v .. ":"
    buf[#buf + 1] = v
  elseif tv == "number" then
    buf[#buf + 1] = format("n%.17g;", v)
  elseif tv == "boolean" then
    buf[#buf + 1] = v and "T" or "F"
  elseif tv == "table" then
    local keys, n = {}, 0
    for k in pairs(v) do n = n + 1; keys[n] = k end
    sort(keys, key_less)
    buf[#buf + 1] = "{"
    for i = 1, n do
      local k = keys[i]
      canon(k, buf)
      canon(v[k], buf)
    end
    buf[#buf + 1] = "}"
  else
    buf[#buf + 1] = "N" -- cjson.null and anything JSON cannot hold
  end
end

local HASH_KEY = "account_activity.events/id/v1"

local function hash_id(item, typ, for_user_id)
  local buf = { typ, "\0", for_user_id or "", "\0" }
  canon(item, buf)
  return to_hex(core.hmac_sha256(HASH_KEY, concat(buf)))
end

-- 19-digit ids do not survive a double, so only strings are trusted; a
-- numeric `id` without `id_str` falls back to the content hash.
local function item_id(item, typ, for_user_id)
  if type(item) == "table" then
    local id = item.id_str
    if type(id) == "string" and id ~= "" then return id end
    id = item.id
    if type(id) == "string" and id ~= "" then return id end
  end
  return hash_id(item, typ, for_user_id)
end

local function id_string(v)
  if type(v) == "string" then return v end
  if type(v) == "number" then return format("%.0f", v) end
  return nil
end

---------------------------------------------------------------------------
-- Parsing

local function is_array(t)
  return t[1] ~= nil or next(t) == nil
end

-- Events stay plain tables; the metatable only makes them print in a REPL.
local EVENT_MT, EVENT_LIST_MT = pretty.event_mt, pretty.event_list_mt

local function aaa_event(out, body, key, item, typ, for_user_id)
  if TYPED_ITEMS[key] and type(item) == "table" and type(item.type) == "string" then
    typ = item.type
  end
  local ev = setmetatable({
    type = typ, for_user_id = for_user_id, item = item, envelope = body,
    id = item_id(item, typ, for_user_id), api = "aaa",
    users = body.users, apps = body.apps,
  }, EVENT_MT)
  local uhb = body.user_has_blocked
  if uhb ~= nil then ev.user_has_blocked = uhb end
  out[#out + 1] = ev
end

local function aaa_key(out, body, key, for_user_id)
  local value = body[key]
  local typ = key_type(key)
  if key == "user_event" and for_user_id == nil and type(value) == "table" then
    -- A revoke carries no for_user_id; the revoking user is the source.
    local revoke = value.revoke
    local src = type(revoke) == "table" and revoke.source
    for_user_id = type(src) == "table" and id_string(src.user_id) or nil
  end
  if type(value) == "table" and not SINGLE[key] and is_array(value) then
    for j = 1, #value do aaa_event(out, body, key, value[j], typ, for_user_id) end
  else
    aaa_event(out, body, key, value, typ, for_user_id)
  end
end

local function parse_aaa(body, out)
  local for_user_id = id_string(body.for_user_id)
  -- Normally exactly one event key; sort only when there are more, so the
  -- order of events never depends on hash order.
  local first, keys
  for k in pairs(body) do
    if not META[k] then
      if first == nil then first = k
      else
        keys = keys or { first }
        keys[#keys + 1] = k
      end
    end
  end
  if keys then
    for i = 1, #keys do keys[i] = tostring(keys[i]) end
    sort(keys)
    for i = 1, #keys do aaa_key(out, body, keys[i], for_user_id) end
  elseif first ~= nil then
    aaa_key(out, body, first, for_user_id)
  end
  return out
end

-- X's docs and its spec name the posts of `includes` differently (tweets,
-- posts): a handler finds them under either name, whichever X sent.
local function both_names(includes)
  if type(includes) ~= "table" then return includes end
  local t, p = includes.tweets, includes.posts
  if (t == nil) == (p == nil) then return includes end
  local copy = {}
  for k, v in pairs(includes) do copy[k] = v end
  copy.tweets, copy.posts = t or p, p or t
  return copy
end

local function xaa_event(out, body, data)
  if type(data) ~= "table" then return end
  local typ = data.event_type
  typ = type(typ) == "string" and typ or "unknown"
  local filter = type(data.filter) == "table" and data.filter or nil
  local for_user_id = filter and id_string(filter.user_id) or nil
  local payload = data.payload
  local id = id_string(data.event_uuid) or hash_id(payload, typ, for_user_id)
  local ev = setmetatable({
    type = typ, for_user_id = for_user_id, item = payload, envelope = body,
    id = id, api = "xaa", tag = data.tag, includes = both_names(data.includes), filter = filter,
  }, EVENT_MT)
  if type(payload) == "table" and type(payload.users) == "table" then
    ev.users = payload.users -- dm.*: the id -> {data = User} map
  end
  out[#out + 1] = ev
end

local function is_xaa(body)
  local data = body.data
  if type(data) ~= "table" then return false end
  if data.event_type ~= nil then return true end
  local d1 = data[1]
  return type(d1) == "table" and d1.event_type ~= nil
end

--- Turn one delivery into an array of events.
-- `body` is the raw JSON string or an already decoded table. Each event is
-- `{ type, for_user_id, item, envelope, id, api = "aaa"|"xaa" }` plus
-- `users`/`apps` (DM envelopes), `user_has_blocked` (mentions) and, for XAA,
-- `tag`, `includes`, `filter`. Returns nil, err for invalid JSON.
function M.parse(body)
  local tb = type(body)
  if tb == "string" then
    local decoded, err = json_decode(body, DELIVERY)
    if decoded == nil then
      return nil, "invalid JSON: " .. tostring(err)
    end
    body = decoded
  elseif tb ~= "table" then
    error("bad argument #1 to 'parse' (string or table expected, got " .. tb .. ")", 2)
  end
  if type(body) ~= "table" or (body[1] ~= nil) then
    return nil, "invalid envelope: expected a JSON object"
  end
  local out = setmetatable({}, EVENT_LIST_MT)
  if is_xaa(body) then
    local data = body.data
    if data.event_type ~= nil then
      xaa_event(out, body, data)
    else
      for i = 1, #data do xaa_event(out, body, data[i]) end
    end
    return out
  end
  return parse_aaa(body, out)
end

M.null = null

---------------------------------------------------------------------------
-- Router

local Router = {}
Router.__index = Router

local Scope = {}
Scope.__index = Scope

local function add_handler(map, typ, fn, fname)
  if type(typ) ~= "string" or typ == "" then
    error("bad argument #1 to '" .. fname .. "' (event type string or \"*\" expected, got "
      .. type(typ) .. ")", 3)
  end
  if type(fn) ~= "function" and not (type(fn) == "table" and getmetatable(fn)
      and getmetatable(fn).__call) then
    error("bad argument #2 to '" .. fname .. "' (function expected, got " .. type(fn) .. ")", 3)
  end
  local list = map[typ]
  if not list then list = {}; map[typ] = list end
  list[#list + 1] = fn
end

--- r:on(type or "*", fn): fn(event, router) runs for every event of that type
-- (and of its XAA aliases unless the router is exact). Returns r.
function Router:on(typ, fn)
  add_handler(self.handlers, typ, fn, "on")
  return self
end

--- r:for_user(id) -> a scope whose :on(type, fn) only sees events delivered
-- for that user (`for_user_id`, or `filter.user_id` for XAA).
function Router:for_user(id)
  if type(id) == "number" then id = format("%.0f", id) end
  if type(id) ~= "string" or id == "" then
    error("bad argument #1 to 'for_user' (user id string expected, got " .. type(id) .. ")", 2)
  end
  local scope = self.users[id]
  if not scope then
    scope = setmetatable({ handlers = {}, router = self, user_id = id }, Scope)
    self.users[id] = scope
  end
  return scope
end

function Scope:on(typ, fn)
  add_handler(self.handlers, typ, fn, "on")
  return self
end

function Scope:__tostring()
  return "account_activity.router scope for user " .. self.user_id
end

--- r:dedupe(n): remember the ids of the last n events (per for_user_id: a DM
-- delivered once per participant is not a duplicate) and skip repeats, such
-- as X's retries. n = 0 or false turns it off. Returns r.
function Router:dedupe(n)
  if n == nil or n == false or n == 0 then
    self.seen, self.ring = nil, nil
    return self
  end
  if type(n) ~= "number" or n ~= n or n < 1 or n == math.huge then
    error("bad argument #1 to 'dedupe' (positive number expected, got " .. tostring(n) .. ")", 2)
  end
  self.seen, self.ring, self.ring_size, self.ring_pos = {}, {}, math.floor(n), 0
  return self
end

-- true when this event was seen already; records it otherwise.
local function seen_before(self, ev)
  local id = ev.id
  if id == nil then return false end
  local key = (ev.for_user_id or "") .. "\0" .. id
  local seen = self.seen
  if seen[key] then return true end
  local pos = self.ring_pos % self.ring_size + 1
  local ring = self.ring
  local old = ring[pos]
  if old then seen[old] = nil end
  ring[pos], seen[key] = key, true
  self.ring_pos = pos
  return false
end

local function run_list(self, list, ev, errs)
  if not list then return 0, errs end
  for i = 1, #list do
    local ok, err = pcall(list[i], ev, self)
    if not ok then
      local on_error = self.on_error
      if on_error then
        pcall(on_error, err, ev)
      else
        errs = errs or {}
        errs[#errs + 1] = { err = err, event = ev }
      end
    end
  end
  return #list, errs
end

local function run_map(self, map, ev, typ, alias, errs)
  local n, m
  n, errs = run_list(self, map[typ], ev, errs)
  if alias then
    m, errs = run_list(self, map[alias], ev, errs)
    n = n + m
  end
  m, errs = run_list(self, map["*"], ev, errs)
  return n + m, errs
end

--- r:dispatch(events or raw_body or envelope table) -> count, errors
-- count = events that reached at least one handler (duplicates skipped by
-- :dedupe do not count). A handler's error never stops the others: it goes
-- to opts.on_error(err, event) when the router has one, else into `errors`
-- (an array of { err = ..., event = ... }, nil when there were none).
-- Bad input (invalid JSON, not an envelope) -> nil, err.
function Router:dispatch(list)
  local tl = type(list)
  if tl == "string" then
    local err
    list, err = M.parse(list)
    if not list then return nil, err end
  elseif tl ~= "table" then
    error("bad argument #1 to 'dispatch' (events, envelope table or raw body expected, got "
      .. tl .. ")", 2)
  elseif list[1] == nil and next(list) ~= nil then
    local err
    list, err = M.parse(list) -- an envelope table
    if not list then return nil, err end
  end
  local count, errs = 0, nil
  local aliases = self.aliases
  local users = self.users
  local handlers = self.handlers
  for i = 1, #list do
    local ev = list[i]
    if type(ev) == "table" and not (self.seen and seen_before(self, ev)) then
      local typ = ev.type
      local alias = aliases and aliases[typ]
      local n
      n, errs = run_map(self, handlers, ev, typ, alias, errs)
      local fuid = ev.for_user_id
      local scope = fuid and users[fuid]
      if scope then
        local m
        m, errs = run_map(self, scope.handlers, ev, typ, alias, errs)
        n = n + m
      end
      if n > 0 then count = count + 1 end
    end
  end
  return count, errs
end

function Router:__tostring()
  local n = 0
  for _, list in pairs(self.handlers) do n = n + #list end
  return format("account_activity.router(%d handlers%s%s)", n,
    self.aliases and "" or ", exact", self.seen and ", dedupe " .. self.ring_size or "")
end

--- events.router(opts) -> Router.
-- opts.exact = true: no AAA <-> XAA aliases (see events.ALIASES).
-- opts.on_error = function(err, event): where handler errors go.
-- opts.dedupe = n: same as r:dedupe(n).
function M.router(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #1 to 'router' (table or nil expected, got " .. type(opts) .. ")", 2)
  end
  opts = opts or {}
  if opts.on_error ~= nil and type(opts.on_error) ~= "function" then
    error("bad argument 'on_error' to 'router' (function expected, got "
      .. type(opts.on_error) .. ")", 2)
  end
  local r = setmetatable({
    handlers = {}, users = {}, on_error = opts.on_error,
    aliases = not opts.exact and M.ALIASES or nil,
  }, Router)
  if opts.dedupe then r:dedupe(opts.dedupe) end
  return r
end

M.Router = Router

-- Exposed for the specs and the bench (stable id of an arbitrary item).
M._hash_id = hash_id

return M
