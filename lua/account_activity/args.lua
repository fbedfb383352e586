--- Argument checks and dates, low in the house: the one wording of every
-- argument error, and UTC date arithmetic without os.time's local zone.
-- The client, the jobs, the X Activity API and the stream all word their
-- argument errors through here, so they cannot drift apart.
local M = {}

local format = string.format

--- argerror(fname, argname, msg, level): raise "bad argument 'argname' to 'fname' (msg)".
-- level 1 (the default) blames the caller of the function that calls argerror.
function M.argerror(fname, argname, msg, level)
  error(format("bad argument '%s' to '%s' (%s)", argname, fname, msg), (level or 1) + 1)
end

--- show(v) -> v for an error message: strings quoted and cut at 40 characters.
function M.show(v)
  if type(v) == "string" then
    local s = v
    if #s > 40 then s = s:sub(1, 40) .. "..." end
    return (format("%q", s):gsub("\\\n", "\\n"))
  end
  return tostring(v)
end

--- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
-- algorithm), so UTC dates convert without os.time's local time zone.
function M.days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end
local days_from_civil = M.days_from_civil

--- utc_epoch(y, mo, d, h, mi, s) -> epoch seconds of that UTC time.
function M.utc_epoch(y, mo, d, h, mi, s)
  return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + (s or 0)
end

return M
