--- The X Activity API stream: `GET /2/activity/stream`, events as they happen.
--
--   local st = assert(client:stream { backfill_minutes = 2 })
--   for ev in st:events() do print(ev.type, ev.for_user_id, ev.id) end
--   if st.err then print("stream ended: " .. tostring(st.err)) end
--   -- or: local ev, err = st:next(5)   -- err.kind == "timeout": nothing in 5 s, still open
--   st:close()
--
-- The wire: HTTP chunked, one JSON envelope per line (X-API.md Part 2, 3.5),
-- blank lines as keep-alives. Events come from events.parse, so a router
-- handles them exactly like webhook deliveries (`r:dispatch{ev}`).
--
-- Connections: X allows 2 concurrent stream connections per app and 450
-- connect requests per 15 minutes. A client object holds at most one open
-- stream (a second client:stream() answers kind = "conflict" until the
-- first is closed): a reconnect may briefly overlap the old connection on
-- X's side, and one stream per client keeps that inside the limit. Use two
-- client objects for two streams. Reconnects back off exponentially (1 s
-- doubling to 64 s, plus 0-25 % jitter, as X's XDK does), honour a 429's
-- reset time, and never exceed the connect-rate limit (counted per client
-- over a sliding 15-minute window). After a reconnect the stream asks for a
-- backfill covering the gap (at most 5 minutes, X's limit; `st.gaps` lists
-- longer outages) and drops events it already returned (by event_uuid).
--
-- Transport: the client's transport streams (transport/README.md): libcurl
-- in plain Lua, cosockets inside OpenResty (any phase that may yield);
-- with a client built on a function transport, that function's whole
-- response body is read as the stream (handy in tests). `opts.open` may
-- supply any opener: function(request) -> conn, head | nil, err with
-- conn:read_line(timeout), conn:read_all(), conn:close().
local args = require "account_activity.args"
local endpoints = require "account_activity.endpoints"
local errors = require "account_activity.errors"
local events = require "account_activity.events"
local runtime = require "account_activity.runtime"
local cjson = require("cjson.safe").new()

local SPEC = endpoints.xaa.stream
local M = {}

local argerror = args.argerror

-- At most one open stream per client; connect times per client.
local open_streams = setmetatable({}, { __mode = "k" })
local connect_log = setmetatable({}, { __mode = "k" })

local function pe(s)
  return (tostring(s):gsub("[^A-Za-z0-9%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

-- ISO-8601 UTC "YYYY-MM-DDTHH:MM:SS[.sss]Z" -> epoch.
local function parse_iso(s)
  local y, mo, d, h, mi, sec = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)")
  if not y then return nil end
  if not (s:match("Z$") or s:match("[+-]00:?00$")) then return nil end
  return args.utc_epoch(tonumber(y), tonumber(mo), tonumber(d),
    tonumber(h), tonumber(mi), tonumber(sec))
end

local function check_time(fname, name, v)
  if v == nil then return nil end
  if type(v) == "number" then
    if v ~= v or v < 0 or v == math.huge then argerror(fname, name, "expected an epoch time", 3) end
    return iso(v), math.floor(v)
  end
  if type(v) ~= "string" then
    argerror(fname, name, "expected os.time() or an ISO-8601 UTC string, got " .. type(v), 3)
  end
  local t = parse_iso(v)
  if not t then argerror(fname, name, "expected ISO-8601 UTC like 2026-07-24T21:05:48Z, got " .. v, 3) end
  return v, t
end

---------------------------------------------------------------------------
-- Openers: request -> conn, head | nil, err
---------------------------------------------------------------------------

-- The whole body of a plain transport answer, read line by line.
local function buffered_open(send)
  return function(req)
    local res, err = send(req)
    if not res then return nil, err end
    local body, pos = res.body or "", 1
    local conn = {}
    function conn.read_line()
      if pos > #body then return nil, { kind = "closed", message = "the server ended the stream" } end
      local nl = body:find("\n", pos, true)
      if not nl then
        -- a line cut off by the end of the body is reported, never returned
        local partial = #body - pos + 1
        pos = #body + 1
        return nil, { kind = "closed", message = "the server ended the stream", partial_bytes = partial }
      end
      local line = body:sub(pos, nl - 1):gsub("\r$", "")
      pos = nl + 1
      return line
    end
    function conn.read_all()
      local rest = body:sub(pos)
      pos = #body + 1
      return rest
    end
    function conn.close() pos = #body + 1 end
    return conn, { status = res.status, headers = res.headers or {} }
  end
end


-- The client's transport streams (transport/curl.lua: the C core's
-- pull-mode stream; transport/ngx.lua: cosockets). Inside nginx a client
-- built with libcurl still streams over cosockets, so the worker never
-- blocks; a transport function's whole answer is read as the stream.
local function default_open(client)
  local t = client.transport
  if runtime.cosocket_phase() and client.transport_name ~= "ngx" then
    local ngx_t = require("account_activity.transport.ngx").new {
      timeout = client.timeout, connect_timeout = client.connect_timeout, insecure = client.insecure,
    }
    return function(req) return ngx_t:stream(req) end
  end
  if client.transport_name == "function" then return buffered_open(client.send) end
  return function(req) return t:stream(req) end
end

---------------------------------------------------------------------------
-- The stream object
---------------------------------------------------------------------------

local Stream = {}
Stream.__index = Stream
Stream.__name = "account_activity.stream"
M.Stream = Stream

function Stream:__tostring()
  return string.format("account_activity.stream<%s; %d events, %d connects, %d reconnects%s>",
    self.closed and "closed" or (self.conn and "open" or "reconnecting"),
    self.count, self.connects, self.reconnects, self.err and ("; " .. tostring(self.err)) or "")
end

-- Seconds before reconnect number n (1-based): 1, 2, 4 ... 64, plus jitter.
function M.backoff(n, random)
  local d = math.min(SPEC.backoff_max, SPEC.backoff_min * 2 ^ (n - 1))
  return d * (1 + (random or math.random)() * SPEC.jitter)
end

local function fail(self, err)
  return nil, errors.scrub(err, self.client:_secret_values())
end

function Stream:_request(first)
  local q = {}
  if first then
    if self.backfill_minutes then q[#q + 1] = "backfill_minutes=" .. string.format("%d", self.backfill_minutes) end
    if self.start_time then q[#q + 1] = "start_time=" .. pe(self.start_time) end
  elseif self.last_seen_at then
    local gap = self.clock() - self.last_seen_at
    -- at least a minute: a clock with whole seconds sees a gap of 0 after
    -- a quick reconnect, and events of that second would be lost
    local minutes = math.max(1, math.ceil(gap / 60))
    if minutes > SPEC.max_backfill_minutes then
      self.pending_gap = { from = self.last_seen_at, to = self.clock(), seconds = gap }
      minutes = SPEC.max_backfill_minutes
    end
    q[#q + 1] = "backfill_minutes=" .. string.format("%d", minutes)
  elseif self.backfill_minutes then
    q[#q + 1] = "backfill_minutes=" .. string.format("%d", self.backfill_minutes)
  end
  if self.end_time then q[#q + 1] = "end_time=" .. pe(self.end_time) end
  local url = self.client.base_url .. SPEC.path
  if #q > 0 then url = url .. "?" .. table.concat(q, "&") end
  return url
end

-- Wait so that this connect stays within X's connect-rate limit.
function Stream:_rate_wait()
  local log = connect_log[self.client]
  if not log then log = {}; connect_log[self.client] = log end
  local now = self.clock()
  while log[1] and log[1] <= now - SPEC.connect_window do table.remove(log, 1) end
  if #log >= SPEC.connects then
    return log[1] + SPEC.connect_window - now
  end
  return 0
end

-- One connection attempt: true | nil, err, retryable, wait_hint.
function Stream:_connect(first)
  local token, terr = self.client:bearer_token()
  if not token then return nil, terr, terr.kind == "network" or terr.kind == "timeout" end
  local url = self:_request(first)
  local safe = { method = "GET", url = url }
  local log = connect_log[self.client]
  log[#log + 1] = self.clock()
  self.connects = self.connects + 1
  local conn, head = self.open {
    method = "GET", url = url,
    headers = { ["Authorization"] = "Bearer " .. token, ["User-Agent"] = self.client.user_agent,
                ["Accept"] = "application/json" },
  }
  if not conn then
    local err = errors.from_transport(head, safe)
    return nil, err, err.kind ~= "argument"
  end
  if head.status ~= 200 then
    local body = conn:read_all()
    conn:close()
    local res = { status = head.status, headers = head.headers or {}, body = type(body) == "string" and body or "" }
    local err = errors.from_response(res, safe)
    local wait
    if head.status == 429 then
      local h = res.headers
      wait = errors.header_number(h, "retry-after", "max")
      local reset = errors.rate_limit(h).reset
      if not wait and reset then wait = math.max(0, reset - self.clock() + 1) end
      err.retry_after = wait
    end
    return nil, err, head.status == 429 or head.status >= 500, wait
  end
  self.conn = conn
  self.idle = 0
  if self.pending_gap then
    -- recorded once per outage, when the stream is back
    self.gaps[#self.gaps + 1] = self.pending_gap
    if #self.gaps > 100 then table.remove(self.gaps, 1) end
  end
  self.pending_gap = nil
  if not first then self.reconnects = self.reconnects + 1 end
  return true
end

-- _reconnect's answer when the caller's deadline came first.
local DEADLINE = {}

-- Reconnect until connected, closed, a fatal answer, or `deadline`
-- (monotonic seconds, nil for none). At the deadline the rest of the
-- backoff wait is kept for the next call, so a caller polling with short
-- timeouts waits out the same backoff as one that blocks.
function Stream:_reconnect(deadline)
  while not self.closed do
    if self.wait_left == nil then
      if self.max_reconnects and self.reconnects >= self.max_reconnects then
        return nil, errors.make(self.last_error and self.last_error.kind or "network",
          "stream: gave up after " .. self.reconnects .. " reconnects; last: " .. tostring(self.last_error),
          { method = "GET", url = self.client.base_url .. SPEC.path })
      end
      if self.end_epoch and self.clock() >= self.end_epoch then
        return nil, nil -- the requested window is over
      end
      self.attempt = self.attempt + 1
      local wait = M.backoff(self.attempt, self.random)
      if self.hint then wait = math.max(wait, self.hint) end
      self.hint = nil
      wait = math.max(wait, self:_rate_wait())
      self.waits[#self.waits + 1] = wait
      if #self.waits > 100 then table.remove(self.waits, 1) end
      self.wait_left = wait
    end
    local wait = self.wait_left
    if deadline then
      local left = deadline - runtime.monotonic()
      if left < wait then
        if left > 0 then self.sleep(left) end
        self.wait_left = wait - math.max(left, 0)
        return nil, DEADLINE
      end
    end
    self.wait_left = nil
    self.sleep(wait)
    if self.closed then return nil, nil end
    local ok, err, retryable, hint = self:_connect(false)
    if ok then return true end
    self.last_error = err
    if not retryable then return nil, err end
    self.hint = hint
  end
  return nil, nil
end

function Stream:_drop(err)
  if self.conn then pcall(self.conn.close, self.conn) end
  self.conn = nil
  self.last_error = err
  if self.on_disconnect then pcall(self.on_disconnect, err, self) end
end

local function seen_before(self, id)
  if id == nil then return false end
  if self.seen[id] then return true end
  local pos = self.ring_pos % self.ring_size + 1
  local old = self.ring[pos]
  if old then self.seen[old] = nil end
  self.ring[pos], self.seen[id] = id, true
  self.ring_pos = pos
  return false
end

function Stream:_line(line)
  self.lines = self.lines + 1
  self.idle = 0
  self.last_seen_at = self.clock()
  if self.attempt > 0 then self.attempt = 0 end -- a healthy connection resets the backoff
  if line:match("^%s*$") then
    self.keepalives = self.keepalives + 1
    return
  end
  local body = cjson.decode(line)
  if type(body) ~= "table" then
    self.bad_lines = self.bad_lines + 1
    if self.on_error then pcall(self.on_error, { kind = "decode", message = "a stream line is not JSON" }, self) end
    return
  end
  if next(body) == nil then
    self.keepalives = self.keepalives + 1
    return
  end
  if body.data == nil and type(body.errors) == "table" then
    -- X reports stream-level problems in band, instead of data.
    self.stream_errors[#self.stream_errors + 1] = body.errors
    if #self.stream_errors > 100 then table.remove(self.stream_errors, 1) end
    if self.on_error then
      pcall(self.on_error, errors.from_response({ status = 200, headers = {} }, nil, body), self)
    end
    return
  end
  local list, perr = events.parse(body)
  if not list then
    self.bad_lines = self.bad_lines + 1
    if self.on_error then pcall(self.on_error, { kind = "decode", message = perr }, self) end
    return
  end
  for _, ev in ipairs(list) do
    if not seen_before(self, ev.id) then
      self.queue[#self.queue + 1] = ev
    else
      self.duplicates = self.duplicates + 1
    end
  end
end

--- st:next(timeout) -> event | nil, err
-- Blocks until an event arrives (reconnecting as needed). With `timeout`
-- (seconds), gives up after that long with err.kind == "timeout" and the
-- stream still open. nil, nil once closed or past end_time; nil, err on a
-- fatal answer (401, 403, ...), which also closes the stream.
function Stream:next(timeout)
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout < 0) then
    argerror("next", "timeout", "expected seconds >= 0", 2)
  end
  -- The deadline is wall-clock time: keep-alives arrive more often than
  -- any timeout, so counting only the reads that timed out never ends.
  -- `waited` still adds those up, for openers whose reads time out at once.
  local deadline = timeout and runtime.monotonic() + timeout
  local waited, read_once = 0, false
  local function timed_out()
    return nil, errors.make("timeout", "stream: no event within " .. timeout .. " s; the stream is still open")
  end
  while true do
    if self.qi <= #self.queue then
      local ev = self.queue[self.qi]
      self.queue[self.qi] = nil
      self.qi = self.qi + 1
      if self.qi > #self.queue then self.queue, self.qi = {}, 1 end
      self.count = self.count + 1
      return ev
    end
    if self.closed then return nil, self.err end
    if deadline and read_once and (waited >= timeout or runtime.monotonic() >= deadline) then
      return timed_out()
    end
    if not self.conn then
      local ok, err = self:_reconnect(deadline)
      if not ok then
        if err == DEADLINE then return timed_out() end
        self:close()
        if not err then return nil, nil end -- closed meanwhile, or past end_time
        self.err = errors.scrub(err, self.client:_secret_values())
        return nil, self.err
      end
    end
    local chunk = self.read_timeout - self.idle
    if deadline then chunk = math.min(chunk, timeout - waited, deadline - runtime.monotonic()) end
    chunk = math.max(chunk, 0)
    local line, err = self.conn:read_line(chunk)
    read_once = true
    if line then
      self:_line(line)
    elseif type(err) == "table" and err.kind == "timeout" then
      self.idle = self.idle + chunk
      waited = waited + chunk
      if self.idle >= self.read_timeout then
        -- Not even a keep-alive for read_timeout seconds: the connection is dead.
        self:_drop(errors.make("timeout", "stream: no data (not even a keep-alive) for "
          .. self.read_timeout .. " s; reconnecting"))
      elseif deadline and (waited >= timeout or runtime.monotonic() >= deadline) then
        return timed_out()
      end
    else
      self:_drop(errors.from_transport(type(err) == "table" and err or { kind = "network", message = tostring(err) },
        { method = "GET", url = self.client.base_url .. SPEC.path }))
      if type(err) == "table" and err.kind == "closed" then self.last_error.kind = "closed" end
    end
  end
end

--- for ev in st:events() do ... end   (ends when closed or on a fatal error: see st.err)
function Stream:events(timeout)
  return function()
    local ev = self:next(timeout)
    return ev
  end
end

--- Close the connection; the client may open a new stream afterwards.
function Stream:close()
  if self.conn then pcall(self.conn.close, self.conn) end
  self.conn = nil
  self.closed = true
  if open_streams[self.client] == self then open_streams[self.client] = nil end
  return true
end

Stream.__close = Stream.close
Stream.__gc = function(self) if not self.closed then self:close() end end

--- client:stream(opts) -> stream | nil, err.
-- opts: backfill_minutes (0-5), start_time, end_time (ISO-8601 UTC strings or
-- os.time() numbers), read_timeout (seconds without any line, keep-alives
-- included, before the connection counts as dead; default 30),
-- max_reconnects (default: no limit), on_error(err, st) (bad lines and
-- in-band errors), on_disconnect(err, st), sleep, clock, random (injectable;
-- default the client's), open (an opener, see the top of this file),
-- dedupe (how many event ids to remember; default 2000).
function M.open(client, opts)
  local fname = "stream"
  opts = opts or {}
  if type(opts) ~= "table" then argerror(fname, "opts", "table expected, got " .. type(opts), 2) end
  local b = opts.backfill_minutes
  if b ~= nil and (type(b) ~= "number" or b ~= math.floor(b) or b < 0 or b > SPEC.max_backfill_minutes) then
    argerror(fname, "backfill_minutes", "expected an integer 0-" .. SPEC.max_backfill_minutes, 2)
  end
  local start_time = check_time(fname, "start_time", opts.start_time)
  local end_time, end_epoch = check_time(fname, "end_time", opts.end_time)
  for _, k in ipairs { "sleep", "clock", "random", "open", "on_error", "on_disconnect" } do
    if opts[k] ~= nil and type(opts[k]) ~= "function" then argerror(fname, k, "function expected", 2) end
  end
  for _, k in ipairs { "read_timeout", "max_reconnects", "dedupe" } do
    if opts[k] ~= nil and (type(opts[k]) ~= "number" or opts[k] < 0) then
      argerror(fname, k, "non-negative number expected", 2)
    end
  end
  local cur = open_streams[client]
  if cur and not cur.closed then
    return nil, errors.make("conflict", "this client already has an open stream (X allows "
      .. SPEC.connections .. " connections per app); close it or use another client object",
      { method = "GET", url = client.base_url .. SPEC.path })
  end
  local self = setmetatable({
    client = client, backfill_minutes = b, start_time = start_time, end_time = end_time,
    end_epoch = end_epoch, read_timeout = opts.read_timeout or 30,
    max_reconnects = opts.max_reconnects,
    sleep = opts.sleep or client.sleep, clock = opts.clock or client.clock, random = opts.random,
    open = opts.open or default_open(client),
    on_error = opts.on_error, on_disconnect = opts.on_disconnect,
    queue = {}, qi = 1, count = 0, connects = 0, reconnects = 0, attempt = 0, idle = 0,
    lines = 0, keepalives = 0, bad_lines = 0, duplicates = 0,
    stream_errors = {}, gaps = {}, waits = {},
    seen = {}, ring = {}, ring_pos = 0, ring_size = math.max(1, math.floor(opts.dedupe or 2000)),
    closed = false,
  }, Stream)
  if self.read_timeout <= 0 then argerror(fname, "read_timeout", "must be > 0", 2) end
  if not connect_log[client] then connect_log[client] = {} end
  local wait = self:_rate_wait()
  if wait > 0 then self.sleep(wait) end
  local ok, err = self:_connect(true)
  if not ok then
    self.closed = true
    return fail(self, err)
  end
  open_streams[client] = self
  return self
end

return M
