--- What every command of the CLI shares: usage errors, output (tables for
-- people, JSON for machines, with no secret), the users file and the words
-- of the command line. cli.lua and each family in cli/ require this; it
-- requires none of them.
local K = {}

K.PROG = "account-activity"
local PROG = K.PROG

local function usage_error(msg)
  return { usage = true, message = msg }
end


---------------------------------------------------------------------------
-- Output
---------------------------------------------------------------------------

local cjson = require "cjson.safe"
local json = cjson.new()
if json.encode_escape_forward_slash then json.encode_escape_forward_slash(false) end

-- Debian's lua-cjson 2.1.0 encodes {} as an object and escapes '/':
-- empty arrays go out as a marker replaced afterwards.
local EMPTY = "@@aa_cli_empty_array@@"
local function array(t)
  if next(t) == nil then return EMPTY end
  return t
end

local function encode(v)
  local s = json.encode(v)
  s = s:gsub('"' .. EMPTY .. '"', "[]")
  s = s:gsub("(\\+)/", function(bs)
    if #bs % 2 == 1 then return bs:sub(2) .. "/" end
  end)
  return s
end
K.encode = encode

-- Tables as JSON: errors become {kind, status, code, message, text}; user
-- tables lose their tokens.
local function plain(v, depth)
  depth = depth or 0
  if type(v) ~= "table" or depth > 8 then
    if type(v) == "function" or type(v) == "userdata" or type(v) == "thread" then return nil end
    return v
  end
  local errors = require "account_activity.errors"
  if errors.is_error(v) then
    return { kind = v.kind, status = v.status, code = v.code, message = v.message, text = tostring(v) }
  end
  local out = {}
  local n = #v
  if n > 0 or next(v) == nil then
    for i = 1, n do out[i] = plain(v[i], depth + 1) end
    return array(out)
  end
  for k, val in pairs(v) do
    if k ~= "user" and k ~= "access_token" and k ~= "access_token_secret" and type(k) == "string" then
      out[k] = plain(val, depth + 1)
    end
  end
  return out
end
K.plain = plain

local function table_out(out, headers, rows)
  local w = {}
  for i, h in ipairs(headers) do w[i] = #h end
  for _, r in ipairs(rows) do
    for i = 1, #headers do
      r[i] = r[i] == nil and "" or tostring(r[i])
      if #r[i] > w[i] then w[i] = #r[i] end
    end
  end
  local function line(cells)
    local parts = {}
    for i = 1, #headers do
      parts[i] = i == #headers and cells[i] or (cells[i] .. string.rep(" ", w[i] - #cells[i]))
    end
    out:write((table.concat(parts, "  "):gsub("%s+$", "")), "\n")
  end
  line(headers)
  for _, r in ipairs(rows) do line(r) end
end

local function yesno(b)
  if b == nil then return "?" end
  return b and "yes" or "no"
end

---------------------------------------------------------------------------
-- Configuration
---------------------------------------------------------------------------

local function read_json(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, "cannot read " .. path .. ": " .. tostring(err):gsub("^[^:]*: ", "") end
  local s = f:read("*a")
  f:close()
  local v, derr = cjson.decode(s)
  if v == nil then return nil, path .. " is not JSON: " .. tostring(derr) end
  return v
end

--- Users from FILE: a JSON array of user tables or an emulator config ({users = [...]}).
-- The whole file is checked before any command sends anything: a mistyped
-- file must never read as "no users" (a sync would remove everyone).
function K.read_users(path)
  local v, err = read_json(path)
  if not v then return nil, err end
  local shape = path .. ": expected a JSON array of users (or an object with a \"users\" array)"
  if type(v) ~= "table" then return nil, shape end
  if v.users ~= nil or next(v) ~= nil and v[1] == nil then
    if type(v.users) ~= "table" then return nil, shape end
    v = v.users
  end
  local n = #v
  for k in pairs(v) do
    if type(k) ~= "number" or k < 1 or k > n then return nil, shape end
  end
  local wf = require "account_activity.workflows"
  local users = {}
  for i = 1, n do
    local why = wf.user_problem(v[i])
    if why then return nil, path .. ": user #" .. i .. ": " .. why end
    local u = v[i]
    users[i] = { user_id = u.user_id and wf.user_id_of({ user_id = u.user_id }), access_token = u.access_token,
      access_token_secret = u.access_token_secret, oauth2 = u.oauth2 }
  end
  return users
end

-- The library names Lua arguments; a command line user knows flags and files.
local FLAG_OF = {
  api = "--api", env_name = "--env", base_url = "--base-url", ["opts.concurrency"] = "--concurrency",
  consumer_key = "the consumer key (app.consumer_key in --config, or TWITTER_CONSUMER_KEY)",
  consumer_secret = "the consumer secret (app.consumer_secret in --config, or TWITTER_CONSUMER_SECRET)",
  access_token = "the owner's access token (app.owner.access_token, or TWITTER_ACCESS_TOKEN)",
  access_token_secret = "the owner's token secret (app.owner.access_token_secret, or TWITTER_ACCESS_TOKEN_SECRET)",
  bearer_token = "the bearer token (app.bearer_token, or TWITTER_BEARER_TOKEN)",
  webhook_id = "ID", id = "ID", user = "the user (USER_ID / --users FILE)", url = "URL",
}

--- speak(msg) -> the same error in the words of the command line.
function K.speak(msg)
  msg = tostring(msg)
  local arg, fn, why = msg:match("^bad argument '([^']+)' to '([^']+)' %((.*)%)$")
  if not arg then
    local f, w = msg:match("^bad argument #%d+ to '([^']+)' %((.*)%)$")
    if not f then return msg end
    return (f:gsub("_", " ")) .. ": " .. w
  end
  local flag = FLAG_OF[arg]
  if flag then return flag .. ": " .. why end
  return (fn:gsub("_", " ")) .. ": " .. arg .. ": " .. why
end


local function need(pos, n, what)
  if #pos < n then return usage_error("missing " .. what) end
  if #pos > n then return usage_error("unexpected argument '" .. pos[n + 1] .. "'") end
  return nil
end

local function check_id(s, what)
  if type(s) ~= "string" or not s:match("^%d+$") or #s > 19 then
    return usage_error(what .. " must be a decimal id, got '" .. tostring(s) .. "'")
  end
end

-- USER_ID's tokens: its entry in --users FILE, else an OAuth 2.0 user of
-- the token store, else nil (-> user, or nil and a usage error).
local function user_for(c, o, user_id)
  if o.users then
    local users, uerr = K.read_users(o.users)
    if not users then return nil, usage_error(uerr) end
    for _, u in ipairs(users) do
      if u.user_id == user_id and (u.access_token or u.oauth2 ~= nil) then return u end
    end
  end
  if c.token_store:get(user_id) then return { user_id = user_id, oauth2 = true } end
  return nil
end

local function emit(ctx, value, human)
  if ctx.o.json then
    ctx.out:write(encode(plain(value)), "\n")
  else
    human(ctx.out)
  end
end

local function fail_report(ctx, report)
  if ctx.o.json then return end
  for _, f in ipairs(report.failed or {}) do
    ctx.err:write(PROG, ": ", f.action or "?", " ", f.user_id or "", ": ", tostring(f.err), "\n")
  end
end

local function report_line(r)
  local parts = {}
  for _, k in ipairs { "added", "kept", "removed", "failed" } do
    parts[#parts + 1] = k .. " " .. #(r[k] or {})
  end
  local s = table.concat(parts, ", ")
  if r.elapsed then s = s .. string.format(" in %.2f s", r.elapsed) end
  if r.waited and r.waited > 0 then s = s .. string.format(" (%.0f s of it waiting for the rate limit)", r.waited) end
  return s
end

---------------------------------------------------------------------------

K.usage_error, K.need, K.check_id, K.user_for, K.emit = usage_error, need, check_id, user_for, emit
K.fail_report, K.report_line, K.table_out, K.yesno, K.read_json, K.array = fail_report, report_line, table_out, yesno, read_json, array

return K
