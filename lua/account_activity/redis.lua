--- The one small Redis client the durable hand-off uses.
--
--   local redis = require "account_activity.redis"
--   local conn = assert(redis.connect { host = "127.0.0.1", port = 6379, timeout_ms = 500 })
--   conn:command { "XADD", "s", "*", "k", "v" }            -> reply | nil, err
--   conn:pipeline { { "INCR", "a" }, { "GET", "a" } }      -> { replies } | nil, err
--   conn:script(LUA_SOURCE, { key... }, { arg... })        -> reply | nil, err
--   conn:close()     -- inside nginx: back to the keep-alive pool
--   redis.shared(opts)  -- inside nginx: the worker's one connection, which
--                       -- batches the commands its requests have in flight
--
-- Two implementations behind it, chosen once per connect: inside nginx a
-- cosocket (the worker never blocks) with the C core's hiredis reader as the
-- parser; elsewhere the C core's hiredis connection. Nothing above knows which.
--
-- Replies: string, integer, { ok = "OK" } for a status, redis.null for nil,
-- arrays as tables; an error reply is `nil, err` (kind "redis") for a command
-- and `{ err = "..." }` in a pipeline's list. Run-time failures are `nil, err`
-- with kind "network", "timeout" or "auth"; a failed connection is dropped
-- and the next call connects again.
-- luacheck: globals ngx
local core = require "account_activity.core"
local errors = require "account_activity.errors"

local type, pairs, setmetatable, getmetatable, tostring, error = type, pairs, setmetatable, getmetatable, tostring, error
local format, sub = string.format, string.sub
local concat = table.concat
local ngx = rawget(_G, "ngx")

local M = {}

--- redis.null: the nil reply (a NULL light userdata, equal to cjson.null and ngx.null).
M.null = core.redis_null

local function redis_error(kind, msg)
  return errors.make(kind or "network", msg)
end

-- Options already checked (redis.options): connect() takes them as they are.
local CHECKED = {}

local function check_opts(opts, fname)
  if getmetatable(opts) == CHECKED then return opts end
  if type(opts) ~= "table" then
    error(format("bad argument #1 to '%s' (options table expected, got %s)", fname, type(opts)), 3)
  end
  local o = { host = opts.host or "127.0.0.1", port = opts.port or 6379, db = opts.db or 0,
    password = opts.password, timeout_ms = opts.timeout_ms or 1000,
    keepalive_ms = opts.keepalive_ms or 60000, pool_size = opts.pool_size or 64 }
  if type(o.host) ~= "string" or o.host == "" then
    error(format("bad argument 'host' to '%s' (string expected, got %s)", fname, type(o.host)), 3)
  end
  for _, k in pairs { "port", "db", "timeout_ms", "keepalive_ms", "pool_size" } do
    if type(o[k]) ~= "number" then
      error(format("bad argument '%s' to '%s' (number expected, got %s)", k, fname, type(o[k])), 3)
    end
  end
  if o.password ~= nil and type(o.password) ~= "string" then
    error(format("bad argument 'password' to '%s' (string expected, got %s)", fname, type(o.password)), 3)
  end
  -- Pooled and shared connections are found by name, worked out once here.
  -- A connection that ran SELECT and AUTH must never serve another database
  -- or password, so the name carries both (a digest, never the password).
  local auth_tag = o.password and sub(core.base64url_encode(core.sha256(o.password)), 1, 22) or ""
  o.pool = format("aa-redis:%s:%d:%d:%s", o.host, o.port, o.db, auth_tag)
  o.shared_key = o.pool .. ":" .. o.timeout_ms -- the shared loop's reads take this deadline
  return setmetatable(o, CHECKED)
end

--- redis.options(opts[, fname]) -> the options checked once, for a caller that connects per request.
function M.options(opts, fname)
  return check_opts(opts, fname or "options")
end

-- Script sources -> SHA1 as Redis knows them (SCRIPT LOAD's answer), per process.
local shas = {}

-- EVALSHA, and EVAL when the server does not know the script (a restart, a
-- SCRIPT FLUSH, a new server behind the same address).
local function script(self, src, keys, args)
  local nkeys = keys and #keys or 0
  local argv = { "EVALSHA", shas[src] or "", nkeys }
  for i = 1, nkeys do argv[#argv + 1] = keys[i] end
  if args then for i = 1, #args do argv[#argv + 1] = args[i] end end
  if shas[src] then
    local r, err = self:command(argv)
    if r ~= nil or err.kind ~= "redis" or sub(err.message, 1, 8) ~= "NOSCRIPT" then return r, err end
  end
  local sha, err = self:command { "SCRIPT", "LOAD", src }
  if not sha then return nil, err end
  shas[src] = sha
  argv[2] = sha
  return self:command(argv)
end

---------------------------------------------------------------------------
-- The C core's connection (scripts: Lua 5.4, LuaJIT)

local CConn = {}
CConn.__index = CConn
CConn.script = script

local function c_connect(o)
  local c, msg, kind = core.redis_connect { host = o.host, port = o.port, db = o.db,
    password = o.password, timeout_ms = o.timeout_ms }
  if not c then return nil, redis_error(kind, msg) end
  return c
end

function CConn:_conn()
  local c = self._c
  if c then return c end
  local err
  c, err = c_connect(self._opts)
  if not c then return nil, err end
  if self._timeout then c:timeout(self._timeout) end
  self._c = c
  return c
end

local function c_result(self, r, msg, kind)
  if r ~= nil then return r end
  if kind ~= "redis" then self._c = nil end -- the core dropped it: reconnect next time
  return nil, redis_error(kind, msg)
end

function CConn:command(argv)
  local c, err = self:_conn()
  if not c then return nil, err end
  return c_result(self, c:command(argv))
end

function CConn:pipeline(cmds)
  local c, err = self:_conn()
  if not c then return nil, err end
  return c_result(self, c:pipeline(cmds))
end

--- conn:timeout(ms): deadline of later reads (a blocking XREADGROUP needs more than BLOCK).
function CConn:timeout(ms)
  self._timeout = ms
  if self._c then self._c:timeout(ms) end
  return self
end

function CConn:close()
  if self._c then self._c:close() end
  self._c = nil
end

function CConn:__tostring()
  local o = self._opts
  return format("account_activity.redis(%s:%d db %d, hiredis, %s)", o.host, o.port, o.db,
    self._c and "open" or "closed")
end
CConn.__close = CConn.close
CConn.__gc = CConn.close

---------------------------------------------------------------------------
-- Cosockets (inside nginx)

local NConn = {}
NConn.__index = NConn
NConn.script = script

-- Readers are reused: a worker runs many requests at once (each yields on
-- its socket), so each connection takes its own from this free list.
local free_readers = {}

local function take_reader()
  local n = #free_readers
  if n > 0 then
    local r = free_readers[n]
    free_readers[n] = nil
    return r
  end
  return core.redis_reader()
end

local redis_format = core.redis_format

-- Sends the bytes, reads `count` replies. Returns the replies (one, or a
-- list when as_list) or nil, err; on failure the socket is closed.
local function roundtrip(self, bytes, count, as_list)
  local sock = self._sock
  if not sock then return nil, redis_error("network", "the connection is closed") end
  local _, err = sock:send(bytes)
  local reader = self._reader
  local out = as_list and {} or nil
  local got = 0
  while not err and got < count do
    local reply, perr = reader:get()
    if reply == false then
      local data
      data, err = sock:receiveany(65536)
      if data then reader:feed(data) end
    elseif reply == nil then
      err = perr
    else
      got = got + 1
      if as_list then out[got] = reply else out = reply end
    end
  end
  if err then
    sock:close()
    self._sock = nil
    local o = self._opts
    local kind = err == "timeout" and "timeout" or "network"
    return nil, redis_error(kind, format("redis %s:%d: %s", o.host, o.port,
      kind == "timeout" and "no answer within " .. o.timeout_ms .. " ms" or tostring(err)))
  end
  return out
end

-- A command's reply as command() gives it: an error reply is nil, err.
local function command_reply(r, err)
  if r == nil then return nil, err end
  if type(r) == "table" and r.err then return nil, redis_error("redis", r.err) end
  return r
end

function NConn:command(argv)
  return command_reply(roundtrip(self, redis_format(argv), 1, false))
end

function NConn:pipeline(cmds)
  local parts = {}
  for i = 1, #cmds do parts[i] = redis_format(cmds[i]) end
  return roundtrip(self, concat(parts), #cmds, true)
end

function NConn:timeout(ms)
  if self._sock then self._sock:settimeouts(ms, ms, ms) end
  return self
end

--- Back to the pool when the connection is sound, else closed.
function NConn:close()
  local sock = self._sock
  if sock then
    local o = self._opts
    local ok = sock:setkeepalive(o.keepalive_ms, o.pool_size)
    if not ok then sock:close() end
    self._sock = nil
  end
  local r = self._reader
  if r then
    free_readers[#free_readers + 1] = r
    self._reader = nil
  end
end

function NConn:__tostring()
  local o = self._opts
  return format("account_activity.redis(%s:%d db %d, cosocket, %s)", o.host, o.port, o.db,
    self._sock and "open" or "closed")
end

local function ngx_connect(o)
  local sock = ngx.socket.tcp()
  sock:settimeouts(o.timeout_ms, o.timeout_ms, o.timeout_ms)
  local ok, err = sock:connect(o.host, o.port, { pool = o.pool })
  if not ok then
    return nil, redis_error(err == "timeout" and "timeout" or "network",
      format("redis %s:%d: cannot connect: %s", o.host, o.port, tostring(err)))
  end
  local self = setmetatable({ _sock = sock, _opts = o, _reader = take_reader() }, NConn)
  if sock:getreusedtimes() == 0 then
    if o.password then
      local _, aerr = self:command { "AUTH", o.password }
      if aerr then
        if aerr.kind == "redis" then aerr.kind = "auth" end
        self._sock:close()
        self._sock = nil
        return nil, aerr
      end
    end
    if o.db ~= 0 then
      local _, serr = self:command { "SELECT", o.db }
      if serr then
        if self._sock then self._sock:close() end
        self._sock = nil
        return nil, serr
      end
    end
  end
  return self
end

---------------------------------------------------------------------------
-- One connection a worker shares (inside nginx)
--
-- A request's cosocket belongs to that request, so requests cannot share
-- one. A timer owns this connection instead: requests queue their encoded
-- command and wait on a semaphore; the timer writes everything queued in one
-- send and reads the replies in order (what node-redis calls auto
-- pipelining). Per delivery that saves a pool lookup, a send, a receive and
-- their epoll changes in nginx, and a read and a write in Redis.

local Shared = {}
Shared.__index = Shared

-- Most commands, and bytes, one send carries; the rest go in the next.
local SHARED_BATCH, SHARED_BATCH_BYTES = 256, 1048576
-- The timer ends after this many seconds without work (a new command starts
-- another); idle, it looks at ngx.worker.exiting() every SHARED_TICK_S.
local SHARED_IDLE_S, SHARED_TICK_S = 10, 0.2
-- A timer at(0) runs within the event loop's next turn; one that has not
-- within this long was dropped.
local SHARED_START_S = 0.05

local shared_by_key = {}

local function fail_slots(slots, err)
  for i = 1, #slots do
    local slot = slots[i]
    slot.err = err
    slot.sema:post(1)
  end
end

-- Up to SHARED_BATCH commands (or SHARED_BATCH_BYTES, but always one) off
-- the queue in order, leaving out those whose
-- request stopped waiting (it answered 503 already; X will send it again).
local function take_batch(self)
  local queue, batch, rest, bytes = self.queue, {}, {}, 0
  for i = 1, #queue do
    local slot = queue[i]
    if not slot.abandoned then
      local size = #slot.bytes
      if #rest == 0 and #batch < SHARED_BATCH and (bytes + size <= SHARED_BATCH_BYTES or #batch == 0) then
        batch[#batch + 1] = slot
        bytes = bytes + size
      else
        rest[#rest + 1] = slot
      end
    end
  end
  self.queue = rest
  return batch
end

-- One batch: a send and the replies in order; nil when the connection failed.
local function send_batch(self, conn, batch)
  local err
  if not conn then conn, err = ngx_connect(self.opts) end
  if not conn then
    fail_slots(batch, err)
    return nil
  end
  local parts = {}
  for i = 1, #batch do parts[i] = batch[i].bytes end
  self.batches, self.sent = self.batches + 1, self.sent + #batch
  local replies
  replies, err = roundtrip(conn, concat(parts), #batch, true)
  if not replies then -- roundtrip closed it
    fail_slots(batch, err)
    return nil
  end
  for i = 1, #batch do
    local slot = batch[i]
    slot.reply = replies[i]
    slot.sema:post(1)
  end
  return conn
end

-- The timer's loop: one batch in flight at a time.
local function run_shared(premature, self)
  local conn, idle = nil, 0
  while true do
    if #self.queue == 0 then
      if premature or ngx.worker.exiting() then break end
      -- Short waits: a graceful quit or reload waits for this timer, and
      -- nginx has no event for "exiting" to wake it with.
      self.waiting = true
      local woke = self.wake:wait(SHARED_TICK_S)
      self.waiting = false
      if woke then idle = 0 else idle = idle + SHARED_TICK_S end
      if idle >= SHARED_IDLE_S and #self.queue == 0 then break end
    else
      local batch = take_batch(self)
      if #batch > 0 then conn = send_batch(self, conn, batch) end
    end
  end
  self.running = false
  if conn then conn:close() end
  -- Anything queued while the loop was ending gets a loop of its own.
  if #self.queue > 0 then self:_start() end
end

local function shared_loop(premature, self)
  self.loop_started = true
  local ok, err = pcall(run_shared, premature, self)
  if ok then return end
  -- A loop that died must not leave the worker waiting on it: what is queued
  -- fails now (a batch in flight times out), and the next command starts anew.
  self.running = false
  local q = self.queue
  self.queue = {}
  fail_slots(q, redis_error("network", "the shared Redis connection failed: " .. tostring(err)))
  ngx.log(ngx.ERR, "account_activity.redis: the shared connection's loop failed: ", tostring(err))
end

function Shared:_start()
  local ok, err = ngx.timer.at(0, shared_loop, self)
  if ok then
    self.running, self.loop_started = true, false
    return true
  end
  local q = self.queue
  self.queue = {}
  local e = redis_error("network", "no timer for the shared Redis connection: " .. tostring(err))
  e.no_shared = true
  fail_slots(q, e)
  return false
end

local semaphore_new
-- A slot's semaphore goes back here once its wait ended with the post (its
-- count is 0 again); one whose wait timed out may still get a late post.
local free_semas = {}

local function take_sema()
  local n = #free_semas
  if n == 0 then return semaphore_new() end
  local sema = free_semas[n]
  free_semas[n] = nil
  return sema
end

-- Sends one encoded command through the worker's connection; the reply, or
-- nil, err (a timeout after timeout_ms: the command may still have run).
function Shared:_call(bytes)
  local slot = { bytes = bytes, sema = take_sema(), reply = nil, err = nil }
  local q = self.queue
  q[#q + 1] = slot
  if not self.running then
    if not self:_start() then return nil, slot.err end
  elseif self.waiting then
    self.waiting = false
    self.wake:post(1)
  end
  local o = self.opts
  local timeout = o.timeout_ms / 1000
  local first = timeout < SHARED_START_S and timeout or SHARED_START_S
  local ok = slot.sema:wait(first)
  if not ok and not self.loop_started then
    -- The timer never ran: nginx drops one that fires past
    -- lua_max_running_timers and only logs it. The caller connects itself.
    slot.abandoned = true
    self.running = false
    local err = redis_error("network", "the shared Redis connection's timer did not run (lua_max_running_timers?)")
    err.no_shared = true
    return nil, err
  end
  if not ok then ok = slot.sema:wait(timeout - first) end
  if not ok then
    slot.abandoned = true
    return nil, redis_error("timeout", format("redis %s:%d: no answer within %d ms", o.host, o.port, o.timeout_ms))
  end
  free_semas[#free_semas + 1] = slot.sema
  if slot.err then return nil, slot.err end
  return slot.reply
end

function Shared:command(argv)
  return command_reply(self:_call(redis_format(argv)))
end

Shared.script = script

--- redis.shared(opts) -> this worker's shared connection for these options,
-- or nil where there is none (outside nginx, or without ngx.semaphore): the
-- caller connects per request then. It has command() and script(); close()
-- is a no-op (the connection outlives requests). An error with no_shared set
-- means nginx gave it no timer: connect() and send the command yourself.
function M.shared(opts)
  if not ngx or not ngx.timer or ngx.worker.exiting() then return nil end
  local o = check_opts(opts, "shared")
  local self = shared_by_key[o.shared_key]
  if self then return self end
  if semaphore_new == nil then
    local ok, sema = pcall(require, "ngx.semaphore")
    semaphore_new = ok and sema.new or false
  end
  if not semaphore_new then return nil end
  self = setmetatable({ opts = o, queue = {}, running = false, waiting = false, wake = semaphore_new(),
    batches = 0, sent = 0 }, Shared)
  shared_by_key[o.shared_key] = self
  return self
end

function Shared:close() end

function Shared:__tostring()
  local o = self.opts
  return format("account_activity.redis(%s:%d db %d, shared by this worker's requests, %d queued, %d sent in %d batches)",
    o.host, o.port, o.db, #self.queue, self.sent, self.batches)
end

---------------------------------------------------------------------------

-- Cosockets exist in nginx's request, timer and ssl phases; not in init.
local function cosockets()
  if not ngx or not ngx.socket then return false end
  local phase = ngx.get_phase()
  return phase ~= "init" and phase ~= "init_worker" and phase ~= "log"
    and phase ~= "header_filter" and phase ~= "body_filter" and phase ~= "set"
end

--- redis.connect(opts) -> conn | nil, err
-- opts: host ("127.0.0.1"), port (6379), password, db (0), timeout_ms (1000:
-- connect, each write, each read), keepalive_ms and pool_size (nginx's pool).
function M.connect(opts)
  local o = check_opts(opts, "connect")
  if cosockets() then return ngx_connect(o) end
  local c, err = c_connect(o)
  if not c then return nil, err end
  return setmetatable({ _c = c, _opts = o }, CConn)
end

--- "host:port", "[v6]:port" or "host" (port 6379) -> host, port; nil when malformed (the CLI's --redis).
function M.parse_address(s)
  s = tostring(s)
  local host, port = s:match("^%[([^%]]+)%]:(%d+)$")
  if not host then host, port = s:match("^([^:]+):(%d+)$") end
  if not host then
    if s == "" or s:find(":", 1, true) then return nil end
    host, port = s, 6379
  end
  return host, tonumber(port)
end

return M
