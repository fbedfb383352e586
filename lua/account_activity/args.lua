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

local argerror, show = M.argerror, M.show


--- A webhook or user id as a decimal string of 1..19 digits, or raise.
local function check_id(fname, argname, v, level)
  level = (level or 1) + 1
  if type(v) == "number" then
    if v ~= v or v < 0 or v ~= math.floor(v) or v == math.huge then
      argerror(fname, argname, "expected a non-negative integer id, got " .. show(v), level)
    end
    if math.type and math.type(v) == "integer" then
      v = tostring(v)
    elseif v <= 2 ^ 53 then
      v = string.format("%.0f", v)
    else
      argerror(fname, argname, "ids above 2^53 lose digits as numbers; pass a string", level)
    end
  end
  if type(v) ~= "string" then
    argerror(fname, argname, "expected an id string, got " .. type(v), level)
  end
  if not v:match("^%d+$") or #v > 19 then
    argerror(fname, argname, "expected a decimal id of 1-19 digits, got " .. show(v), level)
  end
  return v
end
M.check_id = check_id

-- An OAuth 2.0 user: { user_id, oauth2 = token table | true (the store's) }.
local function check_oauth2(fname, argname, u, level)
  local t = u.oauth2
  if t == true then
    if u.user_id == nil then
      argerror(fname, argname .. ".user_id", "required with oauth2 = true (the token store is keyed by it)", level)
    end
  elseif type(t) == "table" then
    if type(t.access_token) ~= "string" and type(t.refresh_token) ~= "string" then
      argerror(fname, argname .. ".oauth2", "expected a token table {access_token, refresh_token, expires_at}", level)
    end
    for _, k in ipairs { "access_token", "refresh_token" } do
      if type(t[k]) == "string" and t[k]:find("%c") then
        argerror(fname, argname .. ".oauth2." .. k, "contains control characters", level)
      end
    end
  else
    argerror(fname, argname .. ".oauth2", "expected a token table or true, got " .. type(t), level)
  end
end

-- need_id: the user's user_id is required, not only checked when present.
local function check_user(fname, argname, u, level, need_id)
  level = (level or 1) + 1
  if type(u) ~= "table" then
    argerror(fname, argname, "expected a user table {user_id, access_token, access_token_secret}, got "
      .. type(u), level)
  end
  if u.oauth2 ~= nil and u.access_token == nil and u.access_token_secret == nil then
    check_oauth2(fname, argname, u, level)
    local id
    if u.user_id ~= nil or need_id then id = check_id(fname, argname .. ".user_id", u.user_id, level) end
    return { user_id = id, oauth2 = u.oauth2 }
  end
  if u.oauth2 ~= nil then check_oauth2(fname, argname, u, level) end
  if type(u.access_token) ~= "string" or u.access_token == "" then
    argerror(fname, argname .. ".access_token", "expected the user's access token string", level)
  end
  if type(u.access_token_secret) ~= "string" or u.access_token_secret == "" then
    argerror(fname, argname .. ".access_token_secret", "expected the user's token secret string", level)
  end
  for _, k in ipairs { "access_token", "access_token_secret" } do
    if u[k]:find("%c") then argerror(fname, argname .. "." .. k, "contains control characters", level) end
  end
  local id
  if u.user_id ~= nil or need_id then id = check_id(fname, argname .. ".user_id", u.user_id, level) end
  return { user_id = id, access_token = u.access_token, access_token_secret = u.access_token_secret,
           oauth2 = u.oauth2 }
end
M.check_user = check_user

-- A checked user that X must see through OAuth 1.0a: raise before sending
-- when all it has is an OAuth 2.0 token.
local function need_oauth1(fname, argname, user, level)
  if user and user.access_token == nil and user.oauth2 ~= nil then
    argerror(fname, argname, fname .. " takes only OAuth 1.0a user tokens at X (its spec lists no"
      .. " OAuth2UserToken); this user has only an OAuth 2.0 token", (level or 1) + 1)
  end
end
M.need_oauth1 = need_oauth1

function M.is_loopback(base_url)
  return base_url:match("^http://127%.0%.0%.1[:/]") ~= nil or base_url == "http://127.0.0.1"
    or base_url:match("^http://%[::1%]") ~= nil
    or base_url:match("^http://localhost[:/]") ~= nil or base_url == "http://localhost"
end

function M.check_webhook_url(fname, argname, url, loopback, level)
  level = (level or 1) + 1
  if type(url) ~= "string" then
    argerror(fname, argname, "expected a URL string, got " .. type(url), level)
  end
  if url:find("[%c%s]") then
    argerror(fname, argname, "URL contains whitespace or control characters", level)
  end
  if #url == 0 or #url > 200 then
    argerror(fname, argname, "X accepts webhook URLs of 1-200 characters, got " .. #url, level)
  end
  local scheme, authority = url:match("^(%a[%w+.-]*)://([^/?#]*)")
  if not scheme or authority == "" then
    argerror(fname, argname, "expected an absolute URL, got " .. show(url), level)
  end
  if loopback then
    if not scheme:lower():match("^https?$") then
      argerror(fname, argname, "expected an http(s) URL, got " .. show(url), level)
    end
    return url
  end
  if scheme:lower() ~= "https" then
    argerror(fname, argname, "X only calls https:// webhook URLs, got " .. show(url), level)
  end
  if authority:find("@", 1, true) then
    argerror(fname, argname, "webhook URLs may not carry user info", level)
  end
  if authority:match(":%d*$") and not authority:match("^%[[^%]]*%]$") then
    argerror(fname, argname, "X rejects webhook URLs with a port, got " .. show(url), level)
  end
  return url
end

local utc_epoch = M.utc_epoch

--- A replay bound: os.time() number or "YYYYMMDDhhmm" (UTC) -> string, epoch.
function M.check_date(fname, argname, v, level)
  level = (level or 1) + 1
  if type(v) == "number" then
    -- up to the end of year 9999: os.date fails (5.4) or wraps (LuaJIT) past it
    if v ~= v or v < 0 or v > 253402300799 then
      argerror(fname, argname, "expected an epoch time, got " .. show(v), level)
    end
    local t = math.floor(v)
    return os.date("!%Y%m%d%H%M", t), t - t % 60
  end
  if type(v) ~= "string" then
    argerror(fname, argname, "expected os.time() or a \"YYYYMMDDhhmm\" UTC string, got " .. type(v), level)
  end
  local y, mo, d, h, mi = v:match("^(%d%d%d%d)(%d%d)(%d%d)(%d%d)(%d%d)$")
  y, mo, d, h, mi = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi)
  if not y or mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 then
    argerror(fname, argname, "expected \"YYYYMMDDhhmm\" (UTC), got " .. show(v), level)
  end
  return v, utc_epoch(y, mo, d, h, mi)
end

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6,
                 Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }

-- An HTTP Date header ("Sun, 06 Nov 1994 08:49:37 GMT") -> epoch or nil.
function M.http_date(s)
  if type(s) ~= "string" then return nil end
  local d, mon, y, h, mi, sec = s:match("(%d%d?) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d)")
  if not d or not MONTHS[mon] then return nil end
  return utc_epoch(tonumber(y), MONTHS[mon], tonumber(d), tonumber(h), tonumber(mi), tonumber(sec))
end


local USERS_SHAPE = "an array of user tables {user_id, access_token, access_token_secret}"

--- user_problem(u) -> why one user entry cannot be used, or nil. An entry must say who it is
-- (user_id, or a token with X's numeric prefix) and nothing may be of the
-- wrong type: a mistyped file must stop a job before anything is sent,
-- never read as "nobody", which a sync would answer by removing everyone.
function M.user_problem(u)
  if type(u) ~= "table" then return "expected a user table, got " .. type(u) end
  local id = u.user_id
  if type(id) == "number" then
    if id ~= math.floor(id) or id < 0 or id >= 2 ^ 53 then
      return "user_id " .. tostring(id) .. " is not an exact integer; write ids as strings"
    end
  elseif id ~= nil and (type(id) ~= "string" or not id:match("^%d+$") or #id > 20) then
    return "user_id must be a string of digits, got " .. (type(id) == "string" and string.format("%q", id) or type(id))
  end
  for _, k in ipairs { "access_token", "access_token_secret" } do
    local v = u[k]
    if v ~= nil and (type(v) ~= "string" or v == "" or v:find("[%c ]")) then
      return k .. " must be a non-empty string without spaces or control characters"
    end
  end
  if (u.access_token == nil) ~= (u.access_token_secret == nil) then
    return "access_token and access_token_secret go together"
  end
  local o2 = u.oauth2
  if o2 ~= nil and o2 ~= true and type(o2) ~= "table" then
    return "oauth2 must be a token table or true, got " .. type(o2)
  end
  if M.user_id_of(u) == nil then
    local keys = {}
    for k in pairs(u) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    return "no user_id (and no access token that names one); keys found: "
      .. (#keys > 0 and table.concat(keys, ", ") or "none")
  end
  return nil
end

--- check_users(fname, argname, users) -> users; raises naming the first bad entry.
-- Also what the CLI runs over a --users file, so both word it the same.
function M.check_users(fname, argname, users, level)
  level = (level or 1) + 2
  local function bad(msg) error(string.format("bad argument '%s' to '%s' (%s)", argname, fname, msg), level) end
  if type(users) ~= "table" then bad("expected " .. USERS_SHAPE .. ", got " .. type(users)) end
  local n = #users
  for k in pairs(users) do
    if type(k) ~= "number" or k < 1 or k > n or k ~= math.floor(k) then
      bad("expected " .. USERS_SHAPE .. ", got a table with key " .. string.format("%q", tostring(k)))
    end
  end
  for i = 1, n do
    local why = M.user_problem(users[i])
    if why then
      argname = argname .. "[" .. i .. "]"
      bad(why)
    end
  end
  return users
end

--- The user id of a user table: user_id, else the numeric prefix X puts on
-- access tokens ("12345-abc..."). nil when neither is there.
function M.user_id_of(u)
  if type(u) ~= "table" then return nil end
  local id = u.user_id
  if type(id) == "number" then id = string.format("%.0f", id) end
  if type(id) == "string" and id:match("^%d+$") then return id end
  if type(u.access_token) == "string" then return u.access_token:match("^(%d+)%-") end
  return nil
end

--- Is `v` a client? Client classes (and the view a batch task gets of a
-- client) register here, so modules low in the house can ask without
-- requiring the client.
M.client_classes = setmetatable({}, { __mode = "k" })
function M.is_client(v)
  return type(v) == "table" and M.client_classes[getmetatable(v)] == true
end

return M
