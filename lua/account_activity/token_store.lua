--- Where OAuth 2.0 user tokens live between calls and between processes.
--
--   local store = aa.token_store.file("tokens.json")   -- or aa.token_store.memory()
--   local client = aa.new { ..., client_id = ..., token_store = store }
--
-- The interface (any table with these methods can be a store: Redis, a
-- database, a secrets manager):
--   store:get(user_id)          -> token | nil            (nil, err on failure)
--   store:put(user_id, token)   -> true                   (nil, err on failure)
--   store:delete(user_id)       -> true                   (nil, err on failure)
--   store:list()                -> { user_id, ... }       (nil, err on failure)
--   store:lock(user_id, fn)     -> fn's results: runs fn while no other
--                                  holder of the same user's lock (in any
--                                  process) runs; nil, err when the lock
--                                  cannot be had in time
-- A token is { access_token, refresh_token, expires_at = <epoch s>,
-- scope = { ... }, token_type = "bearer", user_id = "..." }. get() returns a
-- copy, so a caller changing it changes nothing stored.
local errors = require "account_activity.errors"
local args = require "account_activity.args"
local cjson_safe = require "cjson.safe"

local M = {}

local json = cjson_safe.new()
if json.encode_escape_forward_slash then json.encode_escape_forward_slash(false) end

-- blames the caller of the function that raises
local function argerror(fname, argname, msg) args.argerror(fname, argname, msg, 3) end

local function check_user_id(fname, v)
  if type(v) ~= "string" or not v:match("^%d+$") or #v > 19 then
    argerror(fname, "user_id", "expected a decimal id string, got " .. type(v))
  end
  return v
end

local FIELDS = { "access_token", "refresh_token", "expires_at", "token_type", "user_id" }

local function copy_token(t)
  local c = {}
  for _, k in ipairs(FIELDS) do c[k] = t[k] end
  if type(t.scope) == "table" then
    c.scope = {}
    for i, s in ipairs(t.scope) do c.scope[i] = s end
  end
  return c
end
M.copy_token = copy_token

local function check_token(fname, token)
  if type(token) ~= "table" then argerror(fname, "token", "table expected, got " .. type(token)) end
  if type(token.access_token) ~= "string" or token.access_token == "" then
    argerror(fname, "token.access_token", "expected the access token string")
  end
  if token.refresh_token ~= nil and type(token.refresh_token) ~= "string" then
    argerror(fname, "token.refresh_token", "string expected, got " .. type(token.refresh_token))
  end
  if token.expires_at ~= nil and type(token.expires_at) ~= "number" then
    argerror(fname, "token.expires_at", "epoch seconds expected, got " .. type(token.expires_at))
  end
  return copy_token(token)
end

local function check_fn(fname, fn)
  if type(fn) ~= "function" then argerror(fname, "fn", "function expected, got " .. type(fn)) end
end

local function sorted_ids(map)
  local ids = {}
  for id in pairs(map) do ids[#ids + 1] = id end
  table.sort(ids)
  return ids
end

local function describe(kind, where, n)
  return string.format("account_activity.token_store.%s<%s%d token%s>", kind, where, n, n == 1 and "" or "s")
end

local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local unpack = table.unpack or unpack

-- Runs fn and releases whatever `release` frees whether fn returns or
-- raises; a raise goes on to the caller.
local function guarded(release, fn, ...)
  local r = pack(pcall(fn, ...))
  release()
  if not r[1] then error(r[2], 0) end
  return unpack(r, 2, r.n)
end

---------------------------------------------------------------------------
-- Memory: one process, nothing on disk
---------------------------------------------------------------------------

local Memory = {}
Memory.__index = Memory
Memory.__name = "account_activity.token_store.memory"

-- Tokens are kept outside the object, so pairs(store) or an inspector
-- shows none.
local memory_tokens = setmetatable({}, { __mode = "k" })

--- aa.token_store.memory() -> a store for one process (the client's default).
function M.memory()
  local self = setmetatable({ kind = "memory" }, Memory)
  memory_tokens[self] = {}
  return self
end

function Memory:get(user_id)
  check_user_id("get", user_id)
  local t = memory_tokens[self][user_id]
  return t and copy_token(t) or nil
end

function Memory:put(user_id, token)
  check_user_id("put", user_id)
  memory_tokens[self][user_id] = check_token("put", token)
  return true
end

function Memory:delete(user_id)
  check_user_id("delete", user_id)
  memory_tokens[self][user_id] = nil
  return true
end

function Memory:list() return sorted_ids(memory_tokens[self]) end

-- One process: in a plain script nothing runs between a refresh's read and
-- its write (the client's refresh does not yield even inside a batch).
-- Inside nginx a refresh waits on a cosocket, so another light thread of the
-- same worker could start a second refresh of the same user: it waits here
-- for its turn, then runs `fn` through `enter` (the file store's flock).
local busy_users = setmetatable({}, { __mode = "k" })

local function one_at_a_time(store, user_id, enter, fn)
  local busy = busy_users[store] or {}
  busy_users[store] = busy
  local runtime = require "account_activity.runtime"
  local me = coroutine.running() or true
  if busy[user_id] and busy[user_id] ~= me and runtime.cosocket_phase() then
    local deadline = runtime.monotonic() + (store.lock_timeout or 30)
    while busy[user_id] do
      if runtime.monotonic() > deadline then
        return nil, errors.make("store", "timed out waiting for the lock on user " .. user_id, nil)
      end
      runtime.sleep(0.01)
    end
  end
  local outer = busy[user_id]
  busy[user_id] = me
  return guarded(function() busy[user_id] = outer end, enter, fn)
end

function Memory:lock(user_id, fn)
  check_user_id("lock", user_id)
  check_fn("lock", fn)
  return one_at_a_time(self, user_id, function(f) return f() end, fn)
end

function Memory:__tostring()
  return describe("memory", "", #sorted_ids(memory_tokens[self]))
end

---------------------------------------------------------------------------
-- File: one JSON file shared by every process on the host
---------------------------------------------------------------------------

local File = {}
File.__index = File
File.__name = "account_activity.token_store.file"

local core = require "account_activity.core"

local function store_error(message)
  return errors.make("store", message, nil)
end

--- aa.token_store.file(path, { lock_timeout = 30 }) -> a store in one JSON
-- file (mode 0600, replaced by an atomic rename), locked with flock on
-- path .. ".lock".
function M.file(path, opts)
  if type(path) ~= "string" or path == "" or path:find("%c") then
    argerror("token_store.file", "path", "expected a file path string, got " .. type(path))
  end
  opts = opts or {}
  if type(opts) ~= "table" then argerror("token_store.file", "opts", "table expected") end
  -- long enough for another process's refresh (one token request, within
  -- the client's own timeouts) to finish
  local timeout = opts.lock_timeout or 30
  if type(timeout) ~= "number" or timeout < 0 or timeout > 86400 then
    argerror("token_store.file", "opts.lock_timeout", "expected seconds from 0 to 86400")
  end
  return setmetatable({ kind = "file", path = path, lock_path = path .. ".lock",
                        lock_timeout = timeout, held = 0 }, File)
end

-- Always read from disk: another process may have rotated a token since.
function File:_read()
  local f, oerr, code = io.open(self.path, "rb")
  if not f then
    if code == 2 then return {} end -- ENOENT: no token stored yet
    return nil, store_error("cannot read the token file: " .. tostring(oerr))
  end
  local text = f:read("*a")
  f:close()
  if text == nil or text:match("^%s*$") then return {} end
  local doc = json.decode(text)
  if type(doc) ~= "table" or type(doc.tokens) ~= "table" then
    -- The file's content is not echoed: it would be tokens.
    return nil, store_error("the token file " .. self.path .. " is not a token store (expected {\"tokens\": {...}})")
  end
  local tokens = {}
  for id, t in pairs(doc.tokens) do
    if type(id) == "string" and type(t) == "table" and type(t.access_token) == "string" then
      tokens[id] = copy_token(t)
    end
  end
  return tokens
end

function File:_write(tokens)
  local doc = { version = 1, tokens = {} }
  for id, t in pairs(tokens) do doc.tokens[id] = t end
  local text = json.encode(doc)
  local rnd = core.random_bytes(6) or tostring(os.time())
  local tmp = string.format("%s.%s.tmp", self.path, (rnd:gsub(".", function(c)
    return string.format("%02x", c:byte()) end)))
  local ok, err = core.write_private(tmp, text)
  if not ok then return nil, store_error(err) end
  local renamed, rerr = os.rename(tmp, self.path)
  if not renamed then
    os.remove(tmp)
    return nil, store_error("cannot replace the token file: " .. tostring(rerr))
  end
  return true
end

-- The flock is per open file, so a nested lock of this same store (put
-- inside lock) counts up instead of waiting for itself.
function File:_locked(fn, ...)
  if self.held > 0 then
    self.held = self.held + 1
    return guarded(function() self.held = self.held - 1 end, fn, ...)
  end
  local lk, err = core.flock(self.lock_path, self.lock_timeout)
  if not lk then return nil, store_error(err) end
  self.held = 1
  return guarded(function()
    self.held = 0
    lk:unlock()
  end, fn, ...)
end

function File:get(user_id)
  check_user_id("get", user_id)
  local tokens, err = self:_read()
  if not tokens then return nil, err end
  return tokens[user_id]
end

function File:put(user_id, token)
  check_user_id("put", user_id)
  local t = check_token("put", token)
  return self:_locked(function()
    local tokens, err = self:_read()
    if not tokens then return nil, err end
    tokens[user_id] = t
    return self:_write(tokens)
  end)
end

function File:delete(user_id)
  check_user_id("delete", user_id)
  return self:_locked(function()
    local tokens, err = self:_read()
    if not tokens then return nil, err end
    if tokens[user_id] == nil then return true end
    tokens[user_id] = nil
    return self:_write(tokens)
  end)
end

function File:list()
  local tokens, err = self:_read()
  if not tokens then return nil, err end
  return sorted_ids(tokens)
end

-- One lock file for the whole store: refreshes are rare, and a put of one
-- user rewrites the file that holds all of them anyway.
function File:lock(user_id, fn)
  check_user_id("lock", user_id)
  check_fn("lock", fn)
  return one_at_a_time(self, user_id, function(f) return self:_locked(f) end, fn)
end

function File:__tostring()
  local tokens = self:_read()
  return describe("file", self.path .. "; ", tokens and #sorted_ids(tokens) or 0)
end

--- Is v usable as a store (every method of the interface)?
function M.is_store(v)
  if type(v) ~= "table" and type(v) ~= "userdata" then return false end
  for _, m in ipairs { "get", "put", "delete", "list", "lock" } do
    local ok, f = pcall(function() return v[m] end)
    if not ok or type(f) ~= "function" then return false end
  end
  return true
end

return M
