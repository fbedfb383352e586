--- The worker side of the durable hand-off: a Redis Streams consumer group
-- feeding a router, at least once.
--
--   local consumer = aa.consumer { redis = { host = "127.0.0.1", port = 6379 },
--     stream = "aa:events", group = "workers", name = nil, router = r,
--     batch = 64, block_ms = 2000, claim_idle_ms = 60000,
--     max_attempts = 5, dead_letter = "aa:events:dead" }
--   consumer:run()   -- until consumer:stop(), SIGINT or SIGTERM (the batch in hand is finished)
--
-- Each round: entries pending longer than claim_idle_ms in the group (this
-- consumer's own failures and those of consumers that died) are claimed
-- (XAUTOCLAIM), then new ones read (XREADGROUP). An entry is parsed,
-- dispatched through the router, and XACKed only once every handler
-- returned. A handler that raises leaves it pending, to be claimed again;
-- the try that reaches max_attempts moves it to dead_letter (with the error
-- and the original fields) and acks it. A body that does not parse goes
-- there at once: no retry can fix it.
local core = require "account_activity.core"
local redis = require "account_activity.redis"
local events = require "account_activity.events"

local type, tostring, error, pcall, setmetatable, format = type, tostring, error, pcall, setmetatable, string.format
local tonumber, os_time, pairs, ipairs = tonumber, os.time, pairs, ipairs
local ngx = rawget(_G, "ngx")

local M = {}

local Consumer = {}
Consumer.__index = Consumer

local function read_line(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("*l")
  f:close()
  return s
end

local function default_name()
  local host = read_line("/proc/sys/kernel/hostname") or os.getenv("HOSTNAME") or "localhost"
  local stat = read_line("/proc/self/stat")
  return host .. ":" .. (stat and stat:match("^(%d+)") or tostring(os_time()))
end

local function opt(opts, name, kind, default)
  local v = opts[name]
  if v == nil then return default end
  if type(v) ~= kind then
    error(format("bad argument '%s' to 'consumer' (%s expected, got %s)", name, kind, type(v)), 3)
  end
  return v
end

--- consumer.new(opts) -> Consumer (aa.consumer)
function M.new(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'consumer' (options table expected, got " .. type(opts) .. ")", 2)
  end
  local router = opts.router
  if type(router) ~= "table" or type(router.dispatch) ~= "function" then
    error("bad argument 'router' to 'consumer' (router expected, got " .. type(router) .. ")", 2)
  end
  local self = setmetatable({
    redis_opts = opt(opts, "redis", "table", {}),
    stream = opt(opts, "stream", "string", "aa:events"),
    group = opt(opts, "group", "string", "workers"),
    name = opt(opts, "name", "string", nil) or default_name(),
    router = router,
    batch = opt(opts, "batch", "number", 64),
    block_ms = opt(opts, "block_ms", "number", 2000),
    claim_idle_ms = opt(opts, "claim_idle_ms", "number", 60000),
    max_attempts = opt(opts, "max_attempts", "number", 5),
    dead_letter = opt(opts, "dead_letter", "string", nil),
    on_error = opt(opts, "on_error", "function", nil),
    log = opt(opts, "log", "function", nil),
    counts = { processed = 0, failed = 0, claimed = 0, dead = 0 },
    _last_claim = -math.huge,
    _stopping = false,
    -- This consumer's own pending entries are read once more (from this id)
    -- at start and after a lost connection: an ack that never reached Redis
    -- leaves its entries here, and claim_idle_ms may be long.
    _recover = "0",
  }, Consumer)
  self.dead_letter = self.dead_letter or (self.stream .. ":dead")
  return self
end

function Consumer:_log(level, msg)
  if self.log then
    self.log(level, msg)
  elseif level == "error" or level == "warn" then
    io.stderr:write("account_activity.consumer [", level, "] ", msg, "\n")
  end
end

function Consumer:_conn()
  if self._redis then return self._redis end
  local o = {}
  for k, v in pairs(self.redis_opts) do o[k] = v end
  local base = o.timeout_ms or 1000
  local c, err = redis.connect(o)
  if not c then return nil, err end
  -- A blocking read must outlast its BLOCK time.
  c:timeout(self.block_ms + base)
  self._redis = c
  return c
end

function Consumer:_command(argv)
  local c, err = self:_conn()
  if not c then return nil, err end
  local r
  r, err = c:command(argv)
  if r == nil and err.kind ~= "redis" then
    c:close()
    self._redis = nil
    self._recover = "0"
  end
  return r, err
end

function Consumer:_ensure_group()
  if self._group_ok then return true end
  -- From "0": entries persisted before the first consumer started count too.
  local r, err = self:_command { "XGROUP", "CREATE", self.stream, self.group, "0", "MKSTREAM" }
  if r == nil and not (err.kind == "redis" and err.message:find("BUSYGROUP", 1, true)) then
    return nil, err
  end
  self._group_ok = true
  return true
end

-- The value of one field of an entry's { f1, v1, f2, v2 } list.
local function field(list, name)
  if type(list) ~= "table" then return nil end
  for i = 1, #list - 1, 2 do
    if list[i] == name then return list[i + 1] end
  end
  return nil
end

-- Parse and dispatch one entry: true, or false and the first error.
function Consumer:_handle(id, body)
  local list, perr = events.parse(body or "")
  if not list then return false, "cannot parse: " .. tostring(perr), true end
  for i = 1, #list do list[i].stream_id = id end
  local router = self.router
  local user_on_error = router.on_error
  if user_on_error == nil then
    -- without an on_error the router hands the errors back: no wrapper to build
    local ok, n, errs = pcall(router.dispatch, router, list)
    if not ok then return false, n end
    if errs and errs[1] then return false, errs[1].err end
    return true
  end
  local first
  router.on_error = function(err, ev)
    if first == nil then first = err end
    pcall(user_on_error, err, ev)
  end
  local ok, n = pcall(router.dispatch, router, list)
  router.on_error = user_on_error
  if not ok then return false, n end
  if first ~= nil then return false, first end
  return true
end

-- Runs a batch of entries ({ id, fieldlist }) and acks / dead-letters in one
-- pipeline. attempts: id -> delivery count (nil: first delivery).
function Consumer:_process(entries, attempts, out)
  local acks = { "XACK", self.stream, self.group }
  local cmds = {}
  for i = 1, #entries do
    local e = entries[i]
    local id, fields = e[1], e[2]
    local tries = attempts and attempts[id] or 1
    local ok, err, permanent
    if tries > self.max_attempts then
      ok, err, permanent = false, "delivered " .. tries - 1 .. " times without an answer (consumer died?)", true
    else
      ok, err, permanent = self:_handle(id, field(fields, "body"))
    end
    if ok then
      acks[#acks + 1] = id
      out.processed = out.processed + 1
    else
      out.failed = out.failed + 1
      local msg = tostring(err)
      if self.on_error then pcall(self.on_error, msg, id, tries) end
      if permanent or tries >= self.max_attempts then
        local dl = { "XADD", self.dead_letter, "*", "id", id, "error", msg, "attempts", tries,
          "consumer", self.name, "failed_at", os_time() }
        if type(fields) == "table" then
          for j = 1, #fields - 1, 2 do dl[#dl + 1] = fields[j]; dl[#dl + 1] = fields[j + 1] end
        end
        cmds[#cmds + 1] = dl
        acks[#acks + 1] = id
        out.dead = out.dead + 1
        self:_log("warn", format("entry %s moved to %s after %d attempt(s): %s", id, self.dead_letter, tries, msg))
      else
        self:_log("warn", format("entry %s failed (attempt %d of %d), left pending: %s", id, tries, self.max_attempts, msg))
      end
    end
  end
  if #acks > 3 then cmds[#cmds + 1] = acks end
  if #cmds == 0 then return true end
  local c, err = self:_conn()
  if not c then return nil, err end
  local replies
  replies, err = c:pipeline(cmds)
  if not replies then
    c:close()
    self._redis = nil
    self._recover = "0"
    return nil, err
  end
  for i = 1, #replies do
    if type(replies[i]) == "table" and replies[i].err then
      return nil, require("account_activity.errors").make("redis", replies[i].err)
    end
  end
  return true
end

-- XAUTOCLAIM what has idled past claim_idle_ms; the delivery counts from XPENDING.
function Consumer:_claim(out)
  local r, err = self:_command { "XAUTOCLAIM", self.stream, self.group, self.name,
    self.claim_idle_ms, self._cursor or "0-0", "COUNT", self.batch }
  if not r then return nil, err end
  self._cursor = r[1]
  local list = {}
  for _, e in ipairs(r[2] or {}) do
    -- an entry trimmed away (MAXLEN) comes back without fields: nothing to run
    if type(e) == "table" and type(e[2]) == "table" then list[#list + 1] = e end
  end
  if #list == 0 then return true end
  local attempts
  attempts, err = self:_attempts(list)
  if not attempts then return nil, err end
  out.claimed = out.claimed + #list
  return self:_process(list, attempts, out)
end

-- id -> delivery count of entries pending for this consumer.
function Consumer:_attempts(list)
  local p, err = self:_command { "XPENDING", self.stream, self.group, list[1][1], list[#list][1],
    #list * 2, self.name }
  if not p then return nil, err end
  local attempts = {}
  for _, row in ipairs(p) do attempts[row[1]] = tonumber(row[4]) end
  return attempts
end

-- One pass over this consumer's own pending entries, a batch per round.
function Consumer:_recover_own(out)
  local r, err = self:_command { "XREADGROUP", "GROUP", self.group, self.name, "COUNT", self.batch,
    "STREAMS", self.stream, self._recover }
  if r == nil then return nil, err end
  local entries = r ~= redis.null and r[1] and r[1][2] or {}
  if #entries == 0 then
    self._recover = nil
    return true
  end
  self._recover = entries[#entries][1]
  local list, gone = {}, { "XACK", self.stream, self.group }
  for _, e in ipairs(entries) do
    -- trimmed away (MAXLEN) while pending: nothing left to run
    if type(e[2]) == "table" then list[#list + 1] = e else gone[#gone + 1] = e[1] end
  end
  if #gone > 3 then
    local _, aerr = self:_command(gone)
    if aerr then return nil, aerr end
  end
  if #list == 0 then return true end
  local attempts
  attempts, err = self:_attempts(list)
  if not attempts then return nil, err end
  out.claimed = out.claimed + #list
  return self:_process(list, attempts, out)
end

--- consumer:step() -> { processed, failed, claimed, dead } | nil, err: one round.
function Consumer:step()
  local ok, err = self:_ensure_group()
  if not ok then return nil, err end
  local out = { processed = 0, failed = 0, claimed = 0, dead = 0 }
  if self._recover then
    ok, err = self:_recover_own(out)
    if not ok then return nil, err end
    if out.claimed > 0 then
      local c = self.counts
      for k, v in pairs(out) do c[k] = c[k] + v end
      return out
    end
  end
  local now = core.now()
  -- Claims are looked for a few times per claim_idle_ms, not every round.
  if (now - self._last_claim) * 1000 >= self.claim_idle_ms / 4 then
    self._last_claim = now
    ok, err = self:_claim(out)
    if not ok then return nil, err end
  end
  local argv = { "XREADGROUP", "GROUP", self.group, self.name, "COUNT", self.batch }
  if out.claimed == 0 and not self._stopping then
    argv[#argv + 1] = "BLOCK"
    argv[#argv + 1] = self.block_ms
  end
  argv[#argv + 1] = "STREAMS"
  argv[#argv + 1] = self.stream
  argv[#argv + 1] = ">"
  local r
  r, err = self:_command(argv)
  if r == nil then
    if err.kind == "redis" and err.message:find("NOGROUP", 1, true) then self._group_ok = nil end
    return nil, err
  end
  if r ~= redis.null and r[1] then
    ok, err = self:_process(r[1][2], nil, out)
    if not ok then return nil, err end
  end
  local c = self.counts
  for k, v in pairs(out) do c[k] = c[k] + v end
  return out
end

--- consumer:stats() -> { processed, failed, claimed, dead, pending }
function Consumer:stats()
  local c = self.counts
  local s = { processed = c.processed, failed = c.failed, claimed = c.claimed, dead = c.dead }
  local r = self:_command { "XPENDING", self.stream, self.group }
  s.pending = type(r) == "table" and tonumber(r[1]) or nil
  return s
end

--- consumer:stop(): run() returns after the batch in hand.
function Consumer:stop()
  self._stopping = true
end

local SIGNALS = { "INT", "TERM" }

--- consumer:run(): step until stop(), SIGINT or SIGTERM; Redis failures are
-- logged and retried with a back-off (up to 2 s).
function Consumer:run()
  self._stopping = false
  local catch = core.signal_catch
  if catch then catch(SIGNALS) end
  local backoff = 0.1
  while not self._stopping do
    local r, err = self:step()
    if core.signal_pending and core.signal_pending() then self._stopping = true end
    if r then
      backoff = 0.1
    elseif not self._stopping then
      self:_log("error", "consumer round failed: " .. tostring(err))
      local sleep = ngx and ngx.sleep or core.sleep
      sleep(backoff)
      backoff = math.min(backoff * 2, 2)
    end
  end
  if catch and core.signal_reset then core.signal_reset(SIGNALS) end
  local stats = self:stats()
  self:close()
  return stats
end

function Consumer:close()
  if self._redis then self._redis:close() end
  self._redis = nil
end

function Consumer:__tostring()
  return format("account_activity.consumer(%s, group %s, name %s)", self.stream, self.group, self.name)
end

return M
