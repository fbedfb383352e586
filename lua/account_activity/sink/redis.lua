--- The nginx side of the durable hand-off: a verified delivery goes to a
-- Redis stream before X gets its 200.
--
--   serve { consumer_secret = s, sink = { redis = { host, port, password, db, timeout_ms },
--           stream = "aa:events", maxlen = 1000000, dedupe_ttl = 3600 } }
--
-- One round trip per delivery (batched with the worker's others): a script
-- that sets the de-duplication key (the signature: a retry or a replay of
-- the same bytes signs the same) with SET NX EX and, when it was new, XADDs
-- the raw body with its metadata. The body is not decoded here; the
-- consumer parses it.
local redis = require "account_activity.redis"

local type, error, format, sub = type, error, string.format, string.sub

local M = {}

-- KEYS: dedupe key, stream. ARGV: ttl, maxlen, body, sig, received_at, api.
-- Returns the entry id, or nil (false) for a delivery seen before. When the
-- XADD fails the key is taken back, or X's retry would be dropped as a repeat.
M.STORE = [[
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return false end
local id = redis.pcall('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
  'body', ARGV[3], 'sig', ARGV[4], 'received_at', ARGV[5], 'api', ARGV[6])
if type(id) == 'table' and id.err then
  redis.call('DEL', KEYS[1])
  return id
end
return id
]]

local Sink = {}
Sink.__index = Sink

local function check(opts, name, kind, default)
  local v = opts[name]
  if v == nil then return default end
  if type(v) ~= kind then
    error(format("bad argument 'sink.%s' to 'serve' (%s expected, got %s)", name, kind, type(v)), 4)
  end
  return v
end

--- sink.new(opts) -> Sink (opts: see the top of this file).
function M.new(opts)
  if type(opts) ~= "table" then
    error("bad argument 'sink' to 'serve' (table expected, got " .. type(opts) .. ")", 3)
  end
  local r = check(opts, "redis", "table", {})
  local self = setmetatable({
    redis = redis.options({ host = r.host, port = r.port, password = r.password, db = r.db,
      timeout_ms = r.timeout_ms or 500, keepalive_ms = r.keepalive_ms, pool_size = r.pool_size }, "serve"),
    stream = check(opts, "stream", "string", "aa:events"),
    maxlen = check(opts, "maxlen", "number", 1000000),
    dedupe_ttl = check(opts, "dedupe_ttl", "number", 3600),
  }, Sink)
  self.seen_prefix = self.stream .. ":seen:"
  return self
end

-- XAA deliveries are {"data": ...}; AAA ones never start with that key. A
-- byte check, not a decode: the consumer parses.
function M.api_of(body)
  local head = sub(body, 1, 32)
  if head:match('^%s*{%s*"data"%s*:') then return "xaa" end
  return "aaa"
end

--- sink:store(body, sig, received_at) -> "stored", id | "duplicate" | nil, err
function Sink:store(body, sig, received_at)
  -- The worker's shared connection batches the deliveries in flight; a
  -- connection of the request's own where there is none.
  local keys = { self.seen_prefix .. sig, self.stream }
  local args = { self.dedupe_ttl, self.maxlen, body, sig, received_at, M.api_of(body) }
  local conn = redis.shared(self.redis)
  local id, err
  if conn then id, err = conn:script(M.STORE, keys, args) end
  if not conn or (id == nil and err.no_shared) then
    conn, err = redis.connect(self.redis)
    if not conn then return nil, err end
    id, err = conn:script(M.STORE, keys, args)
    conn:close()
  end
  if id == nil then return nil, err end
  if id == redis.null then return "duplicate" end
  return "stored", id
end

function Sink:__tostring()
  local r = self.redis
  return format("account_activity.sink.redis(%s:%d db %d, stream %s)", r.host, r.port, r.db, self.stream)
end

return M
