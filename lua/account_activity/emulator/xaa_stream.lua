--- The X Activity API's delivery in the emulator: events sent to the
-- webhooks named by subscriptions and to every open stream, and
-- GET /2/activity/stream itself (chunked NDJSON, blank keep-alive lines,
-- backfill from the event record, disconnect on demand).
local ngx = ngx -- a local: the stream handler sets ngx.status and headers
local util = require "account_activity.emulator.util"
local state = require "account_activity.emulator.state"
local xaa = require "account_activity.emulator.xaa"
local payloads = require "account_activity.emulator.xaa_payloads"

local M = {}

local PROBLEM = xaa.PROBLEM
local knobs, invalid, sub_object = xaa.knobs, xaa.invalid, xaa.sub_object
local snowflake = state.snowflake
local ALIASES = require("account_activity.endpoints").xaa.event_type_aliases
local function d() return state.dict() end


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
    for _, rec in ipairs(xaa.subscriptions()) do
      if rec.webhook_id and not seen[rec.webhook_id] then
        seen[rec.webhook_id] = true
        subs[#subs + 1] = { event_type = et, filter = {}, webhook_id = rec.webhook_id, no_stream = #subs > 0 }
      end
    end
    if #subs == 0 then subs[1] = { event_type = et, filter = {} } end
  else
    for _, rec in ipairs(xaa.subscriptions()) do
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
        payload, includes = payloads.payload(et, cfg, user, t, { index = i, text = body.text, direction = body.direction,
          keyword = body.keyword })
        if spec_payloads then payload, includes = payloads.spec_shape(et, payload, includes) end
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
  for i, rec in ipairs(xaa.subscriptions()) do subs[i] = sub_object(rec) end
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


--- Route rows for routes.lua: the stream.
local B = { "bearer" }
M.ROUTES = {
  { "GET", "^/2/activity/stream$", "xaa.stream", "v2", B, M.stream },
}

--- Control-plane handlers: name -> fn(body) -> status, body.
M.CONTROL = {
  ["POST xaa/deliver"] = M.control_deliver,
  ["POST xaa/stream"] = M.control_stream,
  ["GET xaa/state"] = function() return M.control_state() end,
}

return M
