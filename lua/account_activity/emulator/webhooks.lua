--- Webhook and subscription operations shared by every API flavour; each
-- flavour maps the reasons returned here to its own error shapes.
local util = require "account_activity.emulator.util"
local state = require "account_activity.emulator.state"
local crc = require "account_activity.emulator.crc"

local M = {}

--- X's URL rules (https, no explicit port, at most 200 characters), except
-- that loopback http(s) URLs with a port are accepted so local endpoints work.
function M.check_url(url)
  if type(url) ~= "string" or url == "" then return nil, "no url given" end
  if #url > 200 then return nil, "url longer than 200 characters" end
  if url:find("[%s%c]") then return nil, "url contains white space" end
  local u = util.parse_url(url)
  if not u or u.host == "" then return nil, "url is not an absolute http(s) URL" end
  if util.is_loopback_host(u.host) then
    if u.scheme ~= "http" and u.scheme ~= "https" then return nil, "url must use https" end
    return true
  end
  if u.scheme ~= "https" then return nil, "url must use https" end
  if u.has_port then return nil, "url must not have a port" end
  return true
end

--- Register: reserve (duplicate/limit), run the CRC, keep or drop.
-- Returns wh | nil, reason ("url"|"duplicate"|"limit"|"crc"), detail.
function M.register(url, env, cfg)
  local ok, why = M.check_url(url)
  if not ok then return nil, "url", why end
  local wh, err = state.create_webhook(url, env, cfg.limits)
  if not wh then return nil, err end
  local r = crc.run(wh, cfg)
  if not r.ok then
    state.delete_webhook(wh)
    return nil, "crc", r
  end
  return state.webhook(wh.id) or wh
end

--- The webhook object as v1.1 returns it.
function M.v1_object(wh, cfg)
  local o = { id = wh.id, url = wh.url, valid = wh.valid == true }
  local field = cfg.webhook_time_field or "created_timestamp"
  if field == "created_timestamp" or field == "both" then o.created_timestamp = util.timestamp_plus(wh.created) end
  if field == "created_at" or field == "both" then o.created_at = util.iso(wh.created) end
  return o
end

function M.v2_object(wh)
  return { id = wh.id, url = wh.url, valid = wh.valid == true, created_at = util.iso_ms(wh.created) }
end

local function valid_date(s) return util.parse_yyyymmddhhmm(s) end

--- Replay date checks. mode = "v1" (from inclusive, to exclusive, 5 days) or
-- "v2" (both inclusive, 24 h). Returns from, to (epoch, to exclusive) or
-- nil, reason, message; reasons: "missing", "malformed", "future", "order", "age".
function M.replay_window(from_s, to_s, mode, cfg)
  if from_s == nil or from_s == "" then return nil, "missing", "from_date" end
  if to_s == nil or to_s == "" then return nil, "missing", "to_date" end
  local from, to = valid_date(from_s), valid_date(to_s)
  if not from then return nil, "malformed", "from_date" end
  if not to then return nil, "malformed", "to_date" end
  local now = ngx.time()
  local r = cfg.replay or {}
  -- Lenient by default (tests replay what they just delivered): a minute counts
  -- as "in the past" once it has started, and to_date (exclusive) may be the
  -- next minute; strict mode applies X's 31/10 minutes.
  local from_limit, to_limit = now, now + 60
  if r.strict then from_limit, to_limit = now - 31 * 60, now - 10 * 60 end
  if from > from_limit then return nil, "future", "from_date", from_s end
  if to > to_limit then return nil, "future", "to_date", to_s end
  if mode == "v2" then to = to + 60 end
  if from >= to then return nil, "order", "from_date must be before to_date." end
  local max_age = (mode == "v2") and ((r.v2_max_age_hours or 24) * 3600) or ((r.max_age_days or 5) * 86400)
  if from < now - max_age then
    return nil, "age", (mode == "v2") and "from_date must be within the past 24 hours."
      or "from_date must be within the past 5 days."
  end
  return from, to
end

return M
