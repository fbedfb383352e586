--- Small helpers shared by the emulator modules (pure Lua; works in Lua 5.4,
-- LuaJIT and inside nginx).
local cjson = require "cjson.safe"

local M = {}

-- Debian's lua-cjson 2.1.0 has no empty_array, and the API must answer `[]`
-- (an empty subscription list, no webhooks), so empty arrays are marked with
-- a sentinel string that no real value can contain and patched after encoding.
local EMPTY = "@@aa_emulator_empty_array@@"
M.empty_array = setmetatable({}, { __name = "empty_array" })

local function mark(v)
  if type(v) ~= "table" then return v end
  if v == M.empty_array then return EMPTY end
  local out = {}
  for k, x in pairs(v) do out[k] = mark(x) end
  return out
end

function M.array(t)
  if t == nil or next(t) == nil then return M.empty_array end
  return t
end

function M.encode(v)
  local s = cjson.encode(mark(v))
  if not s then return nil end
  return (s:gsub('"' .. EMPTY .. '"', "[]"))
end

function M.decode(s)
  if type(s) ~= "string" then return nil, "not a string" end
  return cjson.decode(s)
end

M.null = cjson.null

function M.deep_copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = M.deep_copy(x) end
  return out
end

local function is_array(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t and (n > 0 or getmetatable(t) == nil)
end

--- Merge `src` into a copy of `dst`: tables merge key by key, arrays and
-- scalars replace.
function M.merge(dst, src)
  local out = M.deep_copy(dst or {})
  for k, v in pairs(src or {}) do
    if type(v) == "table" and type(out[k]) == "table" and not is_array(v) and not is_array(out[k]) then
      out[k] = M.merge(out[k], v)
    else
      out[k] = M.deep_copy(v)
    end
  end
  return out
end

-- Park-Miller generator: exact in doubles (LuaJIT) and integers (5.4), so the
-- generated credentials are the same under every interpreter.
local ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
function M.det_string(seed_text, len)
  local x = 7
  for i = 1, #seed_text do x = (x * 31 + seed_text:byte(i)) % 2147483647 end
  if x == 0 then x = 1 end
  local out = {}
  for i = 1, len do
    x = (x * 48271) % 2147483647
    local j = x % #ALNUM + 1
    out[i] = ALNUM:sub(j, j)
  end
  return table.concat(out)
end

function M.url_decode(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

function M.url_encode(s)
  return (tostring(s):gsub("[^A-Za-z0-9%-%._~]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end

--- Parse "a=1&b=2" into { a = "1", b = "2" } (repeated names become arrays).
function M.parse_query(q)
  local out = {}
  if not q or q == "" then return out end
  for pair in q:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k, v = M.url_decode(k), M.url_decode(v)
    local cur = out[k]
    if cur == nil then out[k] = v
    elseif type(cur) == "table" then cur[#cur + 1] = v
    else out[k] = { cur, v } end
  end
  return out
end

--- "http(s)://host[:port]/path?q" -> { scheme, host, port, path, query, has_port }
function M.parse_url(url)
  if type(url) ~= "string" then return nil end
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil end
  scheme = scheme:lower()
  local authority, path = rest:match("^([^/?#]*)(.*)$")
  if not authority or authority == "" or authority:find("@", 1, true) then return nil end
  local host, port = authority:match("^%[([^%]]+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]+):?(%d*)$") end
  if not host then return nil end
  local has_port = port ~= nil and port ~= ""
  port = has_port and tonumber(port) or (scheme == "https" and 443 or 80)
  path = path:gsub("#.*$", "")
  local p, q = path:match("^([^?]*)%??(.*)$")
  if p == "" then p = "/" end
  return { scheme = scheme, host = host:lower(), port = port, path = p, query = q, has_port = has_port }
end

function M.is_loopback_host(host)
  return host == "127.0.0.1" or host == "localhost" or host == "::1" or (host or ""):match("^127%.%d+%.%d+%.%d+$") ~= nil
end

-- Time formats X uses.
local MONTHS = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" }
local DAYS = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }

function M.iso(t)            -- 2016-06-02T23:54:02Z
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end
function M.iso_ms(t)         -- 2025-01-15T12:00:00.000Z
  local s = math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. string.format(".%03dZ", math.floor((t - s) * 1000))
end
function M.timestamp_plus(t) -- 2019-09-13 12:34:47 +0000
  return os.date("!%Y-%m-%d %H:%M:%S +0000", math.floor(t))
end
function M.twitter_date(t)   -- Mon Mar 26 16:33:26 +0000 2018
  local d = os.date("!*t", math.floor(t))
  return string.format("%s %s %02d %02d:%02d:%02d +0000 %d", DAYS[d.wday], MONTHS[d.month],
    d.day, d.hour, d.min, d.sec, d.year)
end
function M.ms_string(t)
  return string.format("%.0f", math.floor(t * 1000))
end

-- UTC "yyyymmddhhmm" -> epoch seconds, or nil (the library's date
-- arithmetic: one copy of days-from-civil).
local utc_epoch = require("account_activity.args").utc_epoch
function M.parse_yyyymmddhhmm(s)
  if type(s) ~= "string" or not s:match("^%d%d%d%d%d%d%d%d%d%d%d%d$") then return nil end
  local y, mo, d, h, mi = tonumber(s:sub(1, 4)), tonumber(s:sub(5, 6)), tonumber(s:sub(7, 8)),
    tonumber(s:sub(9, 10)), tonumber(s:sub(11, 12))
  if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 then return nil end
  return utc_epoch(y, mo, d, h, mi)
end
function M.format_yyyymmddhhmm(t)
  return os.date("!%Y%m%d%H%M", math.floor(t))
end

return M
