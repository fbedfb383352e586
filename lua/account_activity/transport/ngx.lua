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

-- libcurl's limit on a response's header block (MAX_HTTP_RESP_HEADER_SIZE)
M.MAX_HEADER_BYTES = 300 * 1024
M.MAX_HEADER_LINES = 10000
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

local PIECE = 65536

local Reader = {}
Reader.__index = Reader

--- A reader over sock whose waits end at deadline_ms (ngx.now() * 1000;
-- the caller may move `reader.deadline` between reads).
function M._reader(sock, deadline_ms)
  return setmetatable({ sock = sock, deadline = deadline_ms, buf = "", pos = 1 }, Reader)
end

-- The next bytes from the socket: data | nil, "timeout" | err.
function Reader:recv()
  local left = self.deadline - ngx.now() * 1000
  if left < 1 then
    ngx.update_time()
    left = self.deadline - ngx.now() * 1000
    if left < 1 then return nil, "timeout" end
  end
  self.sock:settimeout(math.floor(left))
  return self.sock:receiveany(PIECE)
end

--- One line of at most `max` bytes (LF or CR LF ended, both dropped):
-- line, bytes used | nil, "too large" | nil, err. A longer line is refused
-- once max + 2 bytes of it are in.
function Reader:line(max)
  while true do
    local buf, pos = self.buf, self.pos
    local nl = buf:find("\n", pos, true)
    if nl then
      local stop = nl - 1
      if stop >= pos and buf:byte(stop) == 13 then stop = stop - 1 end
      if stop - pos + 1 > max then return nil, "too large" end
      self.pos = nl + 1
      return buf:sub(pos, stop), nl - pos + 1
    end
    if #buf - pos + 1 > max + 1 then return nil, "too large" end
    local data, err = self:recv()
    if not data then return nil, err end
    self.buf, self.pos = buf:sub(pos) .. data, 1
  end
end

--- Exactly n bytes: data | nil, err.
function Reader:bytes(n)
  local buf, pos = self.buf, self.pos
  local have = #buf - pos + 1
  if have >= n then
    self.pos = pos + n
    return buf:sub(pos, pos + n - 1)
  end
  local parts, got = { buf:sub(pos) }, have
  self.buf, self.pos = "", 1
  while got < n do
    local data, err = self:recv()
    if not data then return nil, err end
    if got + #data > n then
      parts[#parts + 1] = data:sub(1, n - got)
      self.buf = data:sub(n - got + 1)
      got = n
    else
      parts[#parts + 1] = data
      got = got + #data
    end
  end
  return table.concat(parts)
end

--- Up to max bytes, at least one unless the wait ends: data | nil, err.
function Reader:some(max)
  if self.pos > #self.buf then
    local data, err = self:recv()
    if not data then return nil, err end
    self.buf, self.pos = data, 1
  end
  local buf, pos = self.buf, self.pos
  local stop = math.min(#buf, pos + max - 1)
  self.pos = stop + 1
  return buf:sub(pos, stop)
end

--- Reads a status line and headers within M.MAX_HEADER_BYTES and
-- M.MAX_HEADER_LINES: status, headers (lowercased names; repeats joined with
-- ", " once, at the end), version | nil, err. The head is parsed once it is
-- all in (one pattern pass per line), not read line by line.
function M._read_head(reader)
  local budget = M.MAX_HEADER_BYTES
  while true do
    -- wait for the blank line that ends the head: each piece is searched
    -- once (with the two bytes before it) and the pieces joined once
    local first = reader.buf:sub(reader.pos)
    local stop, stop2 = first:find("\n\r?\n")
    local pieces, size, tail = { first }, #first, first:sub(-2)
    while not stop do
      if size > budget then
        return nil, "response headers larger than " .. M.MAX_HEADER_BYTES .. " bytes"
      end
      local data, err = reader:recv()
      if not data then
        reader.buf, reader.pos = table.concat(pieces), 1
        return nil, err
      end
      local probe = tail .. data
      local a, b = probe:find("\n\r?\n")
      if a then stop, stop2 = size - #tail + a, size - #tail + b end
      pieces[#pieces + 1] = data
      size = size + #data
      tail = probe:sub(-2)
    end
    local buf, pos = #pieces == 1 and first or table.concat(pieces), 1
    reader.buf = buf
    if stop2 > budget then
      return nil, "response headers larger than " .. M.MAX_HEADER_BYTES .. " bytes"
    end
    reader.pos = stop2 + 1
    local head = buf:sub(pos, stop)
    budget = budget - #head
    -- libcurl's answer to a NUL anywhere in the head, so the same here
    if head:find("\0", 1, true) then return nil, "NUL byte in a response header" end
    local version, status = head:match("^HTTP/(%d%.%d) (%d%d%d)")
    if not version then return nil, "malformed status line" end
    status = tonumber(status)
    if status >= 200 or status == 101 then
      local headers, parts, lines = {}, nil, -1
      -- positions and plain finds only: no pattern here backtracks, so a
      -- hostile 300 KB line costs what its bytes cost
      for line in head:gmatch("([^\n]*)\n") do
        lines = lines + 1
        if lines > M.MAX_HEADER_LINES then
          return nil, "more than " .. M.MAX_HEADER_LINES .. " response header lines"
        end
        local colon = lines > 0 and line:find(":", 1, true)
        if colon and colon > 1 then
          local name, value = line:sub(1, colon - 1):lower(), ""
          local first_byte = line:find("[^ \t]", colon + 1)
          if first_byte then
            local last = #line
            while last > first_byte do
              local c = line:byte(last)
              if c ~= 32 and c ~= 9 and c ~= 13 then break end
              last = last - 1
            end
            value = line:sub(first_byte, last)
            -- RFC 9112 2.2: a bare CR in a field is replaced by SP
            if value:find("\r", 1, true) then value = value:gsub("\r", " ") end
          end
          local seen = headers[name]
          if seen == nil then
            headers[name] = value
          else
            parts = parts or {}
            local list = parts[name]
            if not list then list = { seen }; parts[name] = list end
            list[#list + 1] = value
          end
        end
      end
      if parts then
        for name, list in pairs(parts) do headers[name] = table.concat(list, ", ") end
      end
      return status, headers, version
    end
    -- a 1xx before the answer: its headers are not the answer's
  end
end

local function too_big(max)
  return "response body larger than " .. max .. " bytes"
end

--- The size of the next chunk from its size line: n | nil, err.
function M._chunk_size(reader)
  local line, err = reader:line(1024)
  if not line then return nil, err == "too large" and "malformed chunk size" or err end
  local hex = line:match("^[ \t]*(%x+)")
  if not hex or #hex > 15 then return nil, "malformed chunk size" end
  return tonumber(hex, 16)
end

local function read_chunked(reader, max)
  local parts, total = {}, 0
  while true do
    local size, err = M._chunk_size(reader)
    if not size then return nil, err end
    if size == 0 then
      -- trailers, up to the empty line, within the header cap
      local budget = M.MAX_HEADER_BYTES
      repeat
        local t, used = reader:line(budget)
        if not t then return nil, used == "too large" and "response trailers too large" or used end
        budget = budget - used
      until t == ""
      break
    end
    if total + size > max then return nil, too_big(max) end
    local data, derr = reader:bytes(size)
    if not data then return nil, derr end
    total = total + size
    parts[#parts + 1] = data
    local crlf, cerr = reader:line(0)
    if not crlf then return nil, cerr == "too large" and "malformed chunk" or cerr end
  end
  return table.concat(parts)
end

-- A body that ends when the connection does.
local function read_to_close(reader, max)
  local parts, total = {}, 0
  while true do
    local data, err = reader:some(PIECE)
    if data then
      total = total + #data
      if total > max then return nil, too_big(max) end
      parts[#parts + 1] = data
    elseif err == "closed" then
      break
    else
      return nil, err
    end
  end
  return table.concat(parts)
end

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
