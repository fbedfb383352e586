--- The X Activity API (XAA), the successor of the Account Activity API.
--
--   local sub = assert(client:activity_subscribe {
--     event_type = "dm.received", filter = { user_id = "2244994945" },
--     webhook_id = "1146654567674912769", user = alice,     -- alice's own tokens
--   })
--   local report = client:mirror_user(webhook_id, alice)  -- AAA -> XAA for one user
--   for ev in client:stream{ backfill_minutes = 2 }:events() do ... end
--
-- Client extension: client.lua falls through to these functions for names a
-- client does not define, calling fn(client, ...), so they work with every
-- `api` flavour. Paths, limits, shapes and the token policy live in
-- endpoints.lua (`endpoints.xaa`).
local endpoints = require "account_activity.endpoints"
local errors = require "account_activity.errors"

local XAA = endpoints.xaa
local M = {}

-- The client's own argument checks, so both report bad arguments alike.
local arg_checks = require "account_activity.args"
local argerror, show = arg_checks.argerror, arg_checks.show
local check_id, check_user = arg_checks.check_id, arg_checks.check_user

local function check_text(fname, argname, v, max, level)
  level = (level or 1) + 1
  if type(v) ~= "string" or v == "" then
    argerror(fname, argname, "expected a non-empty string, got " .. show(v), level)
  end
  if v:find("[\r\n]") then argerror(fname, argname, "contains CR or LF", level) end
  if max and #v > max then
    argerror(fname, argname, "X accepts at most " .. max .. " characters, got " .. #v, level)
  end
  return v
end

local function check_table(fname, argname, v, level)
  if v == nil then return {} end
  if type(v) ~= "table" then argerror(fname, argname, "table expected, got " .. type(v), (level or 1) + 1) end
  return v
end

---------------------------------------------------------------------------
-- Token policy (data in endpoints.xaa.auth)
---------------------------------------------------------------------------

local function listed(list, event_type)
  for _, p in ipairs(list) do
    if p:sub(-1) == "." then
      if event_type:sub(1, #p) == p then return true end
    elseif event_type == p then
      return true
    end
  end
  return false
end

--- "app" (bearer), "user" (the filtered user's tokens) or nil (unclassified:
-- bearer first, the user's tokens after a 403 asking for user context).
local function auth_for(event_type)
  if listed(XAA.auth.private, event_type) then return "user" end
  if listed(XAA.auth.public, event_type) then return "app" end
  return nil
end

local function err_texts(err)
  local parts = { err.message }
  for _, e in ipairs(err.errors or {}) do
    parts[#parts + 1] = e.message
    parts[#parts + 1] = e.title
    parts[#parts + 1] = e.detail
    parts[#parts + 1] = e.reason
  end
  local j = type(err.json) == "table" and err.json or {}
  parts[#parts + 1] = type(j.title) == "string" and j.title or nil
  parts[#parts + 1] = type(j.detail) == "string" and j.detail or nil
  local out = {}
  for _, p in pairs(parts) do if type(p) == "string" then out[#out + 1] = p end end
  return table.concat(out, " | "):lower()
end

local function wants_user_context(err)
  if type(err) ~= "table" or err.status ~= 403 then return false end
  local text = err_texts(err)
  for _, hint in ipairs(XAA.auth.user_context_hints) do
    if text:find(hint, 1, true) then return true end
  end
  return false
end

local function is_duplicate(err)
  if type(err) ~= "table" or (err.status ~= 400 and err.status ~= 409) then return false end
  return err_texts(err):find("duplicate", 1, true) ~= nil
end

-- Non-function fields are not client methods (client.lua only forwards functions).
M.policy = { auth_for = auth_for, wants_user_context = wants_user_context, is_duplicate = is_duplicate }

---------------------------------------------------------------------------
-- Calls
---------------------------------------------------------------------------

local function spec_with(base, fields)
  local s = {}
  for k, v in pairs(base) do s[k] = v end
  for k, v in pairs(fields or {}) do s[k] = v end
  return s
end

local function int_string(n) return string.format("%d", n) end

local function same_filter(a, b)
  a, b = a or {}, b or {}
  return a.user_id == b.user_id and a.keyword == b.keyword and a.direction == b.direction
end

local list_all -- forward

-- Fill what a terse answer left out from what we sent.
local function complete(sub, sent)
  for _, k in ipairs { "event_type", "tag", "webhook_id" } do
    if sub[k] == nil then sub[k] = sent[k] end
  end
  if sub.filter == nil or next(sub.filter) == nil then
    local f = {}
    for k, v in pairs(sent.filter or {}) do f[k] = v end
    sub.filter = f
  end
  return sub
end

local FILTER_OK = XAA.filter_keys

--- client:activity_subscribe{ event_type, filter, tag, webhook_id, user, auth }
-- -> subscription, response | nil, err (a duplicate: err.kind == "conflict").
function M.activity_subscribe(self, opts)
  local fname = "activity_subscribe"
  if type(opts) ~= "table" then argerror(fname, "opts", "table expected, got " .. type(opts), 2) end
  local event_type = check_text(fname, "event_type", opts.event_type, nil, 2)
  -- other names stay open (X adds types); this one X sends unasked
  if event_type == "oauth.revoke" then
    argerror(fname, "event_type", "oauth.revoke is not in X's event_type enum: it cannot be subscribed"
      .. " (X sends it to the app's streams and webhooks unasked)", 2)
  end
  local user
  if opts.user ~= nil then user = check_user(fname, "user", opts.user, 2) end
  local filter = {}
  if opts.filter ~= nil then
    if type(opts.filter) ~= "table" then
      argerror(fname, "filter", "table expected, got " .. type(opts.filter), 2)
    end
    for k, v in pairs(opts.filter) do
      if not FILTER_OK[k] then
        argerror(fname, "filter." .. tostring(k), "unknown filter key (user_id, keyword, direction)", 2)
      end
      filter[k] = v
    end
    if filter.user_id ~= nil then filter.user_id = check_id(fname, "filter.user_id", filter.user_id, 2) end
    if filter.keyword ~= nil then check_text(fname, "filter.keyword", filter.keyword, XAA.keyword_max, 2) end
    if filter.direction ~= nil then check_text(fname, "filter.direction", filter.direction, nil, 2) end
  end
  if filter.user_id == nil and user and user.user_id and opts.filter == nil then
    filter.user_id = user.user_id
  end
  local tag = opts.tag
  if tag ~= nil then check_text(fname, "tag", tag, XAA.tag_max, 2) end
  local webhook_id
  if opts.webhook_id ~= nil then webhook_id = check_id(fname, "webhook_id", opts.webhook_id, 2) end
  local forced = opts.auth
  if forced ~= nil and forced ~= "app" and forced ~= "user" then
    argerror(fname, "auth", "expected \"app\" or \"user\", got " .. show(forced), 2)
  end

  local mode = forced or auth_for(event_type) or "app"
  local auth
  if mode == "user" then
    if user then
      auth = "subscriber"
    elseif self:credentials().access_token then
      auth = "user" -- the app owner subscribing to their own private events
    else
      argerror(fname, "user", "event_type " .. show(event_type)
        .. " is private: pass the filtered user's tokens as user = {access_token, access_token_secret}"
        .. " or user = {user_id, oauth2 = token | true} (or auth = \"app\")", 2)
    end
  else
    auth = "app"
  end

  local sent = { event_type = event_type, filter = filter, tag = tag, webhook_id = webhook_id }
  local args = { event_type = event_type, filter = filter, tag = tag, webhook_id = webhook_id, user = user }
  local base = spec_with(XAA.create, {
    json = { event_type = "event_type", filter = "filter", tag = "tag", webhook_id = "webhook_id" },
  })
  local value, res = self:_call(fname, spec_with(base, { auth = auth }), args)
  local retried = false
  if not value and auth == "app" and forced == nil and user and wants_user_context(res) then
    -- X answers "needs user context" for private events it did not list as
    -- such (follow.*, spaces.*, new types): once more with the user's tokens.
    retried = true
    value, res = self:_call(fname, spec_with(base, { auth = "subscriber" }), args)
  end
  if not value then
    if is_duplicate(res) then res.kind = "conflict" end
    res.auth_retried = retried or nil
    return nil, res
  end
  res.auth = retried and "user" or (auth == "app" and "app" or "user")
  if value.id == nil then
    -- 204 or a body without the object: find it in the list.
    local list = list_all(self)
    for _, s in ipairs(list or {}) do
      if s.event_type == event_type and same_filter(s.filter, filter) then
        value = s
        break
      end
    end
  end
  return complete(value, sent), res
end

local function list_page(self, max_results, token, user)
  local query = { max_results = max_results and int_string(max_results) or nil, pagination_token = token,
                  user = user }
  local spec = spec_with(XAA.list, { query = { max_results = "max_results", pagination_token = "pagination_token" },
                                     auth = user and "subscriber" or XAA.list.auth })
  return self:_call("activity_subscriptions", spec, query)
end

--- client:activity_subscriptions{ max_results, pagination_token, all, user }
-- (user: list with that user's tokens, OAuth 2.0 or 1.0a, instead of the app bearer)
-- -> array of subscriptions, response (response.next_token: the next page's
-- token when there is one and all ~= true; response.pages: pages read).
function M.activity_subscriptions(self, opts)
  local fname = "activity_subscriptions"
  opts = check_table(fname, "opts", opts, 2)
  local max = opts.max_results
  if max ~= nil then
    if type(max) ~= "number" or max ~= math.floor(max) or max < 1 or max > XAA.list.max_results then
      argerror(fname, "max_results", "expected an integer 1-" .. XAA.list.max_results .. ", got " .. show(max), 2)
    end
  end
  local token = opts.pagination_token
  if token ~= nil then check_text(fname, "pagination_token", token, nil, 2) end
  local user
  if opts.user ~= nil then user = check_user(fname, "user", opts.user, 2) end
  local out, seen, pages, last = {}, {}, 0
  while true do
    local page, res = list_page(self, max, token, user)
    if not page then return nil, res end
    pages = pages + 1
    last = res
    for _, s in ipairs(page) do out[#out + 1] = s end
    local meta = type(res.json) == "table" and type(res.json.meta) == "table" and res.json.meta or {}
    local nxt = type(meta.next_token) == "string" and meta.next_token ~= "" and meta.next_token or nil
    res.next_token = nxt
    if not opts.all or not nxt or seen[nxt] or pages >= XAA.list.max_pages then break end
    seen[nxt] = true
    token = nxt
  end
  last.pages = pages
  if opts.all then last.next_token = nil end
  return out, last
end

list_all = function(self)
  return M.activity_subscriptions(self, { all = true, max_results = XAA.list.max_results })
end

--- client:activity_update(id, { tag, webhook_id }) -> subscription, response.
-- X changes only these two; a new event_type or filter is delete + create.
function M.activity_update(self, id, opts)
  local fname = "activity_update"
  id = check_id(fname, "id", id, 2)
  if type(opts) ~= "table" then argerror(fname, "opts", "table expected, got " .. type(opts), 2) end
  for k in pairs(opts) do
    if k ~= "tag" and k ~= "webhook_id" then
      argerror(fname, "opts." .. tostring(k), "X updates only tag and webhook_id; delete and create to change "
        .. tostring(k), 2)
    end
  end
  if opts.tag == nil and opts.webhook_id == nil then
    argerror(fname, "opts", "give tag and/or webhook_id", 2)
  end
  if opts.tag ~= nil then check_text(fname, "tag", opts.tag, XAA.tag_max, 2) end
  local webhook_id
  if opts.webhook_id ~= nil then webhook_id = check_id(fname, "webhook_id", opts.webhook_id, 2) end
  local spec = spec_with(XAA.update, { json = { tag = "tag", webhook_id = "webhook_id" } })
  local value, res = self:_call(fname, spec, { id = id, tag = opts.tag, webhook_id = webhook_id })
  if not value then return nil, res end
  if value.id == nil then
    local list = list_all(self)
    for _, s in ipairs(list or {}) do
      if s.id == id then value = s break end
    end
  end
  value.id = value.id or id
  if opts.tag ~= nil then value.tag = value.tag or opts.tag end
  if webhook_id ~= nil then value.webhook_id = value.webhook_id or webhook_id end
  value.filter = value.filter or {}
  return value, res
end

--- client:activity_unsubscribe(id) -> true, response.
function M.activity_unsubscribe(self, id)
  id = check_id("activity_unsubscribe", "id", id, 2)
  return self:_call("activity_unsubscribe", XAA.delete, { id = id })
end

-- A per-id failure of a bulk delete as an error object.
local function item_error(item, req)
  local text = item.message or item.detail or item.title or "not deleted"
  if item.reason and not text:find(item.reason, 1, true) then text = item.reason .. ": " .. text end
  local e = errors.from_response({ status = 400, headers = {} }, req,
    { errors = { { message = text, title = item.title, type = item.type } } })
  e.status = nil -- a per-id verdict inside a 200, not an HTTP status
  e.id = item.id
  return e
end

--- client:activity_unsubscribe_many(ids) -> report, response
-- report = { deleted = { id, ... }, failed = { { id =, err = }, ... } }; X
-- takes 100 ids per call and keeps deleting past a bad one.
function M.activity_unsubscribe_many(self, ids)
  local fname = "activity_unsubscribe_many"
  if type(ids) ~= "table" then argerror(fname, "ids", "array of ids expected, got " .. type(ids), 2) end
  local list, seen = {}, {}
  for i, v in ipairs(ids) do
    local id = check_id(fname, "ids[" .. i .. "]", v, 2)
    if not seen[id] then
      seen[id] = true
      list[#list + 1] = id
    end
  end
  local report = { deleted = {}, failed = {} }
  local spec = spec_with(XAA.delete_many, { query = { ids = "ids" } })
  local per = XAA.delete_many.max_ids
  local last
  for first = 1, #list, per do
    local batch = {}
    for i = first, math.min(first + per - 1, #list) do batch[#batch + 1] = list[i] end
    local value, res = self:_call(fname, spec, { ids = table.concat(batch, ",") })
    if not value then
      for _, id in ipairs(batch) do report.failed[#report.failed + 1] = { id = id, err = res } end
      last = last or res
    else
      last = res
      local req = { method = spec.method, url = self.base_url .. spec.path }
      local failed, done = {}, {}
      for _, e in ipairs(value.errors) do
        if e.id and seen[e.id] then failed[e.id] = item_error(e, req) end
      end
      for _, d in ipairs(value.data or {}) do
        if d.deleted then done[d.id] = true
        elseif not failed[d.id] then
          failed[d.id] = errors.make("http", "X answered deleted = false for " .. d.id, req, { id = d.id })
        end
      end
      for _, id in ipairs(batch) do
        if failed[id] then
          report.failed[#report.failed + 1] = { id = id, err = failed[id] }
        elseif done[id] or value.data == nil then
          report.deleted[#report.deleted + 1] = id
        else
          report.failed[#report.failed + 1] = { id = id, err = errors.make("http",
            "X's answer did not mention subscription " .. id, req, { id = id }) }
        end
      end
      if value.total ~= nil then report.total_subscriptions = tonumber(value.total) end
    end
  end
  return report, last
end

---------------------------------------------------------------------------
-- AAA -> XAA for one user
---------------------------------------------------------------------------

local function mirror_tag(user_id) return "aa-mirror:" .. user_id end

local function mirror_entries(opts)
  local list = {}
  for _, e in ipairs(XAA.aaa_mirror) do list[#list + 1] = e end
  if opts.xchat then
    for _, e in ipairs(XAA.aaa_mirror_xchat) do list[#list + 1] = e end
  end
  if opts.event_types then
    local want = {}
    for _, t in ipairs(opts.event_types) do want[t] = true end
    local out = {}
    for _, e in ipairs(list) do if want[e.event_type] then out[#out + 1] = e end end
    list = out
  end
  return list
end

local function plain_user_filter(s, user_id)
  local f = s.filter or {}
  return f.user_id == user_id and f.keyword == nil and f.direction == nil
end

--- client:mirror_user(webhook_id, user, opts) -> report, response
-- Creates the XAA subscriptions that deliver what an AAA subscription
-- delivered for `user` (endpoints.xaa.aaa_mirror), tagged "aa-mirror:<id>".
-- Idempotent: lists first; existing ones and duplicates count as existing.
-- opts: tag, xchat (also chat.sent/chat.received), event_types (a subset).
-- report = { created = {sub...}, existing = {sub...}, failed = { {event_type, err} },
--            unmapped = { {aaa, reason} }, elsewhere = {sub...} (existing ones
--            whose events go to another webhook or only to the stream) }
function M.mirror_user(self, webhook_id, user, opts)
  local fname = "mirror_user"
  webhook_id = check_id(fname, "webhook_id", webhook_id, 2)
  user = check_user(fname, "user", user, 2, true)
  opts = check_table(fname, "opts", opts, 2)
  local tag = opts.tag
  if tag ~= nil then check_text(fname, "opts.tag", tag, XAA.tag_max, 2) else tag = mirror_tag(user.user_id) end
  if opts.event_types ~= nil and type(opts.event_types) ~= "table" then
    argerror(fname, "opts.event_types", "array of event types expected", 2)
  end
  local wanted = mirror_entries(opts)

  local report = { created = {}, existing = {}, failed = {}, unmapped = {}, elsewhere = {},
                   user_id = user.user_id, webhook_id = webhook_id, tag = tag }
  for i, u in ipairs(XAA.aaa_unmapped) do report.unmapped[i] = { aaa = u.aaa, reason = u.reason } end

  local current, res = list_all(self)
  if not current then return nil, res end
  local have = {}
  for _, s in ipairs(current) do
    if s.event_type and plain_user_filter(s, user.user_id) then have[s.event_type] = s end
  end
  local function keep(s)
    report.existing[#report.existing + 1] = s
    if s.webhook_id ~= webhook_id then report.elsewhere[#report.elsewhere + 1] = s end
  end

  local duplicates = {}
  for _, e in ipairs(wanted) do
    local s = have[e.event_type]
    if s then
      keep(s)
    else
      local sub, err = M.activity_subscribe(self, {
        event_type = e.event_type, filter = { user_id = user.user_id },
        tag = tag, webhook_id = webhook_id, user = user,
      })
      if sub then
        report.created[#report.created + 1] = sub
        res = err
      elseif err.kind == "conflict" then
        duplicates[#duplicates + 1] = { event_type = e.event_type, err = err }
      else
        report.failed[#report.failed + 1] = { event_type = e.event_type, err = err }
      end
    end
  end
  if #duplicates > 0 then
    -- Created meanwhile (or listed late): the list shows it now.
    local again = list_all(self) or {}
    local now = {}
    for _, s in ipairs(again) do
      if s.event_type and plain_user_filter(s, user.user_id) then now[s.event_type] = s end
    end
    for _, d in ipairs(duplicates) do
      if now[d.event_type] then keep(now[d.event_type])
      else report.failed[#report.failed + 1] = d end
    end
  end
  return report, res
end

--- client:unmirror_user(webhook_id, user) -> report, response
-- Deletes the subscriptions mirror_user made for `user` (a user table or a
-- user id) on that webhook (webhook_id nil: on any webhook), found by tag.
-- report = { deleted = { id... }, failed = { {id, err} } }.
function M.unmirror_user(self, webhook_id, user, opts)
  local fname = "unmirror_user"
  if webhook_id ~= nil then webhook_id = check_id(fname, "webhook_id", webhook_id, 2) end
  local user_id
  if type(user) == "table" then
    user_id = check_id(fname, "user.user_id", user.user_id, 2)
  else
    user_id = check_id(fname, "user", user, 2)
  end
  opts = check_table(fname, "opts", opts, 2)
  local tag = opts.tag
  if tag ~= nil then check_text(fname, "opts.tag", tag, XAA.tag_max, 2) else tag = mirror_tag(user_id) end
  local current, res = list_all(self)
  if not current then return nil, res end
  local ids = {}
  for _, s in ipairs(current) do
    if s.tag == tag and (webhook_id == nil or s.webhook_id == webhook_id) then ids[#ids + 1] = s.id end
  end
  if #ids == 0 then return { deleted = {}, failed = {} }, res end
  return M.activity_unsubscribe_many(self, ids)
end

---------------------------------------------------------------------------
-- The stream
---------------------------------------------------------------------------

--- client:stream{ backfill_minutes, start_time, end_time, ... } -> stream | nil, err
-- (see stream.lua).
function M.stream(self, opts)
  return require("account_activity.stream").open(self, opts)
end

return M
