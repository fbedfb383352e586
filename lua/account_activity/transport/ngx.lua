--- HTTP/1.1 client over nginx cosockets (ngx.socket.tcp): never blocks a
-- worker. Same request/response/failure shapes as the C core's Session:
--   request  = { method, url, headers = {name = value}, body, timeout (s) }
--   response = { status, headers = {lowercased = value}, body, http_version, time }
--   failure  = nil, { kind = "timeout"|"network"|"tls"|"argument", message }
-- TLS certificates are verified unless `insecure = true` (verification needs
-- `lua_ssl_trusted_certificate` in nginx.conf); host names need `resolver`.
--
-- What the C core refuses, this refuses too, before anything is sent: a
-- method that is not an HTTP token, a URL with a space or a control byte, a
-- header name that is not a token, a value with CR, LF or NUL. Answers are
-- capped as libcurl caps them: 300 KB of status line and headers (and at
-- most 10,000 header lines), a body of at most `max_body` bytes (default
-- 256 MiB, the C core's limit; a larger Content-Length is refused unread).
-- A bare CR in a header value becomes a space and a NUL fails the answer,
-- as in the C core.
-- Proxy variables (http_proxy, https_proxy, no_proxy, ALL_PROXY), which
-- libcurl honours, are ignored here: cosockets connect straight to the host.
local M = {}

local wire = require "account_activity.transport.reader"

-- libcurl's limit on a response's header block (MAX_HTTP_RESP_HEADER_SIZE)
M.MAX_HEADER_BYTES, M.MAX_HEADER_LINES = wire.MAX_HEADER_BYTES, wire.MAX_HEADER_LINES
M._reader, M._read_head, M._chunk_size = wire.reader, wire.read_head, wire.chunk_size
local read_chunked, read_to_close, too_big = wire.read_chunked, wire.read_to_close, wire.too_big
M.MAX_BODY = 256 * 1024 * 1024 -- the C core's MAX_BODY

local DEFAULTS = {
  timeout = 10,           -- seconds, whole request
  connect_timeout = 5,    -- seconds
  keepalive_timeout = 60, -- seconds a pooled connection may idle
  pool_size = 32,
  insecure = false,
  user_agent = "lua-account-activity (ngx)",
  max_body = M.MAX_BODY,  -- bytes of response body; past it the answer fails
}

local function fail(kind, message, connect)
  return nil, setmetatable({ kind = kind, message = message, connect = connect }, {
    __tostring = function(e) return e.kind .. ": " .. e.message end,
  })
end

local function kind_of(err)
  err = tostring(err or "")
  if err:find("timeout", 1, true) then return "timeout" end
  if err:find("handshake", 1, true) or err:find("certificate", 1, true) or err:find("ssl", 1, true) then
    return "tls"
  end
  return "network"
end

local function parse_url(url)
  local scheme, authority, path = url:match("^(%a[%w+.-]*)://([^/?#]+)([^#]*)")
  if not scheme then return nil end
  scheme = scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then return nil end
  local host, port = authority:match("^%[([^%]]+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:@]+):?(%d*)$") end
  if not host then return nil end
  local default_port = scheme == "https" and 443 or 80
  port = (port ~= "" and tonumber(port)) or default_port
  if path == "" then path = "/" elseif path:sub(1, 1) == "?" then path = "/" .. path end
  local host_header = (port == default_port) and host or (host .. ":" .. port)
  if authority:sub(1, 1) == "[" then
    host_header = (port == default_port) and ("[" .. host .. "]") or ("[" .. host .. "]:" .. port)
  end
  return { scheme = scheme, host = host, port = port, target = path, host_header = host_header }
end

-- HTTP's token characters (RFC 9110 5.6.2): what a method or a header name
-- may hold. The same set as src/http.c's is_tchar.
local function is_token(s)
  return s ~= "" and not s:find("[^%w!#$%%&'*+%-.^_`|~]")
end

--- The reason a request must not be sent (the C core's wording), or nil.
-- Raises on wrong types, as the C core does.
function M._refusal(method, url, headers)
  if not is_token(method) then return "the method is not an HTTP token" end
  -- libcurl refuses every control character in a URL (a TAB, a DEL too)
  if url:find("[%c ]") then return "the URL contains a space, CR, LF, NUL or another control character" end
  for name, value in pairs(headers or {}) do
    if type(name) ~= "string" then error("bad argument 'request.headers' to 'request' (header names must be strings)", 3) end
    local tv = type(value)
    if tv ~= "string" and tv ~= "number" then
      error("bad argument 'request.headers' to 'request' (header values must be strings or numbers)", 3)
    end
    if not is_token(name) then return "a header name is not an HTTP token" end
    if tv == "string" and value:find("[\r\n%z]") then return "a header value contains CR, LF or NUL" end
  end
  return nil
end

---------------------------------------------------------------------------
-- Reading: a buffer over the cosocket. Every wait ends at the reader's
-- deadline (receiveany returns as soon as bytes arrive, so a server that
-- trickles bytes cannot stretch it, as it could a receive() whose timer
-- restarts on every packet), and no read holds more than its cap plus one
-- 64 KiB piece. Bytes read past what a call needed stay for the next one.

local Transport = {}
Transport.__index = Transport

function Transport:__tostring()
  return string.format("transport.ngx(timeout=%s, insecure=%s)", tostring(self.opts.timeout),
    tostring(self.opts.insecure))
end

local function once(self, req, u, deadline_ms, method)
  local opts = self.opts
  local sock = ngx.socket.tcp()
  local connect_ms = math.floor(math.min(opts.connect_timeout, req.timeout or opts.timeout) * 1000)
  local total_ms = math.floor((req.timeout or opts.timeout) * 1000)
  sock:settimeouts(connect_ms, total_ms, total_ms)
  local pool = table.concat({ u.scheme, u.host, u.port, tostring(opts.insecure) }, ":")
  -- without a `resolver` nginx cannot look up "localhost"; it is loopback anyway
  local addr = (u.host == "localhost") and "127.0.0.1" or u.host
  local ok, err = sock:connect(addr, u.port, { pool = pool })
  if not ok then return nil, kind_of(err), "connect to " .. u.host .. ":" .. u.port .. " failed: " .. tostring(err) end
  local reused = sock:getreusedtimes() or 0
  if u.scheme == "https" and reused == 0 then
    local sess, serr = sock:sslhandshake(nil, u.host, not opts.insecure)
    if not sess then
      sock:close()
      return nil, (tostring(serr):find("timeout", 1, true) and "timeout" or "tls"),
        "TLS handshake with " .. u.host .. " failed: " .. tostring(serr)
    end
  end
  -- the remaining budget for sending and reading
  local left = deadline_ms - ngx.now() * 1000
  if left < 1 then left = 1 end
  sock:settimeouts(connect_ms, left, left)

  local lines = { method .. " " .. u.target .. " HTTP/1.1" }
  local has = {}
  for name, value in pairs(req.headers or {}) do
    has[name:lower()] = true
    lines[#lines + 1] = name .. ": " .. tostring(value)
  end
  if not has["host"] then lines[#lines + 1] = "Host: " .. u.host_header end
  if not has["user-agent"] and opts.user_agent then lines[#lines + 1] = "User-Agent: " .. opts.user_agent end
  local body = req.body
  if body ~= nil and not has["content-length"] then
    lines[#lines + 1] = "Content-Length: " .. #body
  elseif body == nil and not has["content-length"] and (method == "POST" or method == "PUT" or method == "PATCH") then
    lines[#lines + 1] = "Content-Length: 0"
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = body or ""
  local sent, serr = sock:send(table.concat(lines, "\r\n"))
  if not sent then
    sock:close()
    return nil, kind_of(serr), "send failed: " .. tostring(serr), reused > 0
  end
  local reader = M._reader(sock, deadline_ms)
  local status, headers, version = M._read_head(reader)
  if not status then
    sock:close()
    -- only a pooled connection the server closed is worth a fresh attempt
    return nil, kind_of(headers), "reading the response failed: " .. tostring(headers),
      reused > 0 and (headers == "closed" or tostring(headers):find("reset", 1, true) ~= nil)
  end
  local rbody, berr = "", nil
  local te = headers["transfer-encoding"]
  local keep = version == "1.1" and not (headers["connection"] or ""):lower():find("close", 1, true)
  if method == "HEAD" or status == 204 or status == 304 or (status >= 100 and status < 200) then
    rbody = ""
  elseif te and te:lower():find("chunked", 1, true) then
    rbody, berr = read_chunked(reader, opts.max_body)
  elseif headers["content-length"] then
    local cl = headers["content-length"]
    local n = cl:find("^%d+$") and tonumber(cl)
    if not n then rbody, berr = nil, "bad content-length"
    elseif n > opts.max_body then rbody, berr = nil, too_big(opts.max_body) -- refused unread
    elseif n > 0 then
      rbody, berr = reader:bytes(n)
    end
  else
    keep = false
    rbody, berr = read_to_close(reader, opts.max_body)
  end
  if not rbody then
    sock:close()
    return nil, kind_of(berr), "reading the body failed: " .. tostring(berr)
  end
  if keep then
    sock:setkeepalive(opts.keepalive_timeout * 1000, opts.pool_size)
  else
    sock:close()
  end
  return { status = status, headers = headers, body = rbody, http_version = version, reused = reused }
end

--- Send one request. Returns response | nil, err.
function Transport:request(req)
  if type(req) ~= "table" then error("request: table expected, got " .. type(req), 2) end
  if type(req.url) ~= "string" then error("request.url: string expected", 2) end
  if req.body ~= nil and type(req.body) ~= "string" then error("request.body: string expected", 2) end
  if req.headers ~= nil and type(req.headers) ~= "table" then error("request.headers: table expected", 2) end
  if req.method ~= nil and type(req.method) ~= "string" then error("request.method: string expected", 2) end
  local method = (req.method or "GET"):upper()
  local refusal = M._refusal(method, req.url, req.headers)
  if refusal then return fail("argument", "request refused before sending: " .. refusal, true) end
  local u = parse_url(req.url)
  if not u then
    return fail("argument", "request refused before sending: the URL must start with http:// or https://", true)
  end
  ngx.update_time()
  local start = ngx.now()
  local deadline_ms = (start + (req.timeout or self.opts.timeout)) * 1000
  local res, kind, msg, stale = once(self, req, u, deadline_ms, method)
  if not res and stale and ngx.now() * 1000 < deadline_ms then
    -- A pooled connection the server had already closed: one fresh attempt.
    res, kind, msg = once(self, req, u, deadline_ms, method)
  end
  if not res then return fail(kind, msg) end
  ngx.update_time()
  res.time = ngx.now() - start
  return res
end

-- read_all()'s cap: an error answer's body is read for its message; past
-- this it is a hostile or broken server (the C core's stream has the same).
local ERROR_BODY_MAX = 64 * 1024

--- stream(req) -> conn, head | nil, err: a GET whose answer is read line by
-- line as it arrives (the X Activity API stream), chunked or not; the one
-- cosocket HTTP client serves it too. conn: read_line(timeout) -> line |
-- nil, err (kind "timeout": still open; "closed" or "network": ended, with
-- partial_bytes of a cut line), read_all(max_bytes, timeout) -> body [,
-- "truncated" | "timeout"] (an error answer's body), close().
function Transport:stream(req)
  local opts = self.opts
  local ngx = rawget(_G, "ngx")
  local refusal = M._refusal("GET", req.url, req.headers)
  if refusal then
    return nil, { kind = "argument", connect = true, message = "request refused before sending: " .. refusal }
  end
  local scheme, authority, target = req.url:match("^(https?)://([^/?#]+)([^#]*)")
  if not scheme then return nil, { kind = "argument", message = "unsupported URL" } end
  local host, port = authority:match("^([^:]+):?(%d*)$")
  if not host then return nil, { kind = "argument", message = "unsupported URL" } end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  if target == "" then target = "/" end
  local sock = ngx.socket.tcp()
  local ct = math.floor((opts.connect_timeout or 5) * 1000)
  local rt = math.floor((opts.timeout or 10) * 1000)
  sock:settimeouts(ct, rt, rt)
  local ok, err = sock:connect(host == "localhost" and "127.0.0.1" or host, port)
  if not ok then
    return nil, { kind = tostring(err):find("timeout", 1, true) and "timeout" or "network", connect = true,
                  message = "connect to " .. host .. ":" .. port .. " failed: " .. tostring(err) }
  end
  if scheme == "https" then
    local s, serr = sock:sslhandshake(nil, host, not opts.insecure)
    if not s then
      sock:close()
      return nil, { kind = "tls", connect = true, message = "TLS handshake with " .. host .. " failed: " .. tostring(serr) }
    end
  end
  local lines = { "GET " .. target .. " HTTP/1.1", "Host: " .. authority }
  for k, v in pairs(req.headers or {}) do lines[#lines + 1] = k .. ": " .. tostring(v) end
  lines[#lines + 1] = "Connection: close"
  lines[#lines + 1] = ""
  lines[#lines + 1] = ""
  local sent, serr = sock:send(table.concat(lines, "\r\n"))
  if not sent then
    sock:close()
    return nil, { kind = "network", message = "send failed: " .. tostring(serr) }
  end
  ngx.update_time()
  local reader = M._reader(sock, ngx.now() * 1000 + rt)
  local status, headers = M._read_head(reader)
  if not status then
    sock:close()
    return nil, { kind = tostring(headers):find("timeout", 1, true) and "timeout" or "network",
                  message = "reading the response head failed: " .. tostring(headers) }
  end
  local chunked = (headers["transfer-encoding"] or ""):lower():find("chunked", 1, true) ~= nil
  local remaining = tonumber(headers["content-length"]) -- nil: until close
  local chunk_left = 0 -- bytes left in the current chunk
  local after_chunk = false -- the CRLF that ends a chunk is still to read
  local buf, ended, failure = "", false, nil

  local function end_err()
    if failure then return failure end
    return { kind = "closed", message = "the server ended the stream" }
  end

  local function cut(e)
    ended, failure = true, { kind = "network", message = "stream cut: " .. tostring(e) }
    return true
  end

  -- Read more bytes into buf within ms; false on timeout (still open).
  -- Bytes that came before a timeout stay in the reader, never lost.
  local function fill(ms)
    ngx.update_time()
    reader.deadline = ngx.now() * 1000 + ms
    if chunked then
      if after_chunk then
        local crlf, e = reader:line(0)
        if not crlf then
          if e == "timeout" then return false end
          return cut(e == "too large" and "malformed chunk" or e)
        end
        after_chunk = false
      end
      if chunk_left == 0 then
        local size, e = M._chunk_size(reader)
        if not size then
          if e == "timeout" then return false end
          return cut(e)
        end
        if size == 0 then ended = true return true end
        chunk_left = size
      end
      -- a chunk is read in pieces: its announced size may be anything
      local data, e = reader:some(math.min(chunk_left, 65536))
      if data then
        buf = buf .. data
        chunk_left = chunk_left - #data
        after_chunk = chunk_left == 0
        return true
      end
      if e == "timeout" then return false end
      return cut(e)
    end
    if remaining == 0 then ended = true return true end
    local data, e = reader:some(remaining and math.min(remaining, 65536) or 65536)
    if data then
      buf = buf .. data
      if remaining then remaining = remaining - #data end
      return true
    end
    if e == "timeout" then return false end
    ended = true
    if remaining then failure = { kind = "network", message = "stream cut: " .. tostring(e) } end
    return true
  end

  local conn = {}
  function conn.read_line(_, timeout)
    local deadline = ngx.now() + (timeout or 30)
    while true do
      local nl = buf:find("\n", 1, true)
      if nl then
        local line = buf:sub(1, nl - 1):gsub("\r$", "")
        buf = buf:sub(nl + 1)
        return line
      end
      if ended then
        local e = end_err()
        e.partial_bytes = #buf
        buf = ""
        return nil, e
      end
      ngx.update_time()
      local left = deadline - ngx.now()
      if left <= 0 or not fill(math.max(1, math.floor(left * 1000))) then
        ngx.update_time()
        if ngx.now() >= deadline then
          return nil, { kind = "timeout", message = "no complete line within the timeout; the stream is still open" }
        end
      end
    end
  end
  -- The rest of an error answer's body, as the C core's stream:read_all:
  -- at most max_bytes (default 64 KiB; the rest is dropped unread) within
  -- timeout seconds (default the transport's timeout) -> body [, "truncated"
  -- | "timeout"]. A body that never ends cannot hold the caller.
  function conn.read_all(_, max_bytes, timeout)
    max_bytes = max_bytes or ERROR_BODY_MAX
    ngx.update_time()
    local deadline = ngx.now() + (timeout or rt / 1000)
    local why
    while not ended do
      if #buf >= max_bytes then why = "truncated" break end
      ngx.update_time()
      local left = deadline - ngx.now()
      if left <= 0 then why = "timeout" break end
      fill(math.max(1, math.floor(left * 1000)))
    end
    if #buf > max_bytes then why = "truncated" end
    local rest = buf:sub(1, max_bytes)
    buf = ""
    return rest, why
  end
  function conn.close()
    ended = true
    sock:close()
  end
  return conn, { status = status, headers = headers }
end

--- close(): nothing to release: request() hands each connection back to
-- the worker's pool (setkeepalive), and a stream's conn closes its own.
function Transport:close() end

--- A transport with its own options (timeout, connect_timeout, insecure,
-- keepalive_timeout, pool_size, user_agent, max_body).
function M.new(opts)
  if opts ~= nil and type(opts) ~= "table" then error("opts: table expected", 2) end
  local o = {}
  for k, v in pairs(DEFAULTS) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  -- not (x >= 0) is true for NaN too
  if type(o.max_body) ~= "number" or not (o.max_body >= 0) then -- luacheck: ignore 581
    error("bad argument 'max_body' to 'new' (a number of bytes expected)", 2)
  end
  return setmetatable({ opts = o }, Transport)
end

local default
--- request(req) with the default options.
function M.request(req)
  default = default or M.new()
  return default:request(req)
end

-- Usable as a client transport function: `transport = require("account_activity.transport.ngx")`.
setmetatable(M, { __call = function(_, req) return M.request(req) end })

return M
