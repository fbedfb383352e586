--- HTTP/1.1 client over nginx cosockets (ngx.socket.tcp): never blocks a
-- worker. Same request/response/failure shapes as the C core's Session:
--   request  = { method, url, headers = {name = value}, body, timeout (s) }
--   response = { status, headers = {lowercased = value}, body, http_version, time }
--   failure  = nil, { kind = "timeout"|"network"|"tls"|"argument", message }
-- TLS certificates are verified unless `insecure = true` (verification needs
-- `lua_ssl_trusted_certificate` in nginx.conf); host names need `resolver`.
local M = {}

local DEFAULTS = {
  timeout = 10,           -- seconds, whole request
  connect_timeout = 5,    -- seconds
  keepalive_timeout = 60, -- seconds a pooled connection may idle
  pool_size = 32,
  insecure = false,
  user_agent = "lua-account-activity (ngx)",
}

local function fail(kind, message)
  return nil, setmetatable({ kind = kind, message = message }, {
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

local function read_headers(sock)
  local status_line, err = sock:receive("*l")
  if not status_line then return nil, err end
  local version, status = status_line:match("^HTTP/(%d%.%d) (%d%d%d)")
  if not version then return nil, "malformed status line" end
  local headers = {}
  while true do
    local line, lerr = sock:receive("*l")
    if not line then return nil, lerr end
    if line == "" then break end
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name then
      name = name:lower()
      if headers[name] then headers[name] = headers[name] .. ", " .. value else headers[name] = value end
    end
  end
  return tonumber(status), headers, version
end

local function read_chunked(sock)
  local parts = {}
  while true do
    local line, err = sock:receive("*l")
    if not line then return nil, err end
    local size = tonumber(line:match("^%s*(%x+)"), 16)
    if not size then return nil, "malformed chunk size" end
    if size == 0 then
      -- trailers, up to the empty line
      repeat
        local t, terr = sock:receive("*l")
        if not t then return nil, terr end
      until t == ""
      break
    end
    local data, derr = sock:receive(size)
    if not data then return nil, derr end
    parts[#parts + 1] = data
    local crlf, cerr = sock:receive(2)
    if not crlf then return nil, cerr end
  end
  return table.concat(parts)
end

local Transport = {}
Transport.__index = Transport

function Transport:__tostring()
  return string.format("transport.ngx(timeout=%s, insecure=%s)", tostring(self.opts.timeout),
    tostring(self.opts.insecure))
end

local function once(self, req, u, deadline_ms)
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

  local method = (req.method or "GET"):upper()
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
  local status, headers, version = read_headers(sock)
  if not status then
    sock:close()
    return nil, kind_of(headers), "reading the response failed: " .. tostring(headers), reused > 0
  end
  local rbody, berr = "", nil
  local te = headers["transfer-encoding"]
  local keep = version == "1.1" and not (headers["connection"] or ""):lower():find("close", 1, true)
  if method == "HEAD" or status == 204 or status == 304 or (status >= 100 and status < 200) then
    rbody = ""
  elseif te and te:lower():find("chunked", 1, true) then
    rbody, berr = read_chunked(sock)
  elseif headers["content-length"] then
    local n = tonumber(headers["content-length"])
    if not n then berr = "bad content-length"
    elseif n > 0 then rbody, berr = sock:receive(n) end
  else
    keep = false
    rbody, berr = sock:receive("*a")
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
  local u = parse_url(req.url)
  if not u then return fail("argument", "unsupported URL (http:// or https:// expected)") end
  for name, value in pairs(req.headers or {}) do
    if type(name) ~= "string" or tostring(name):find("[%c: ]") or tostring(value):find("[\r\n]") then
      return fail("argument", "header " .. tostring(name) .. " contains CR, LF or an invalid character")
    end
  end
  ngx.update_time()
  local start = ngx.now()
  local deadline_ms = (start + (req.timeout or self.opts.timeout)) * 1000
  local res, kind, msg, stale = once(self, req, u, deadline_ms)
  if not res and stale and ngx.now() * 1000 < deadline_ms then
    -- A pooled connection the server had already closed: one fresh attempt.
    res, kind, msg = once(self, req, u, deadline_ms)
  end
  if not res then return fail(kind, msg) end
  ngx.update_time()
  res.time = ngx.now() - start
  return res
end

--- A transport with its own options (timeout, connect_timeout, insecure,
-- keepalive_timeout, pool_size, user_agent).
function M.new(opts)
  if opts ~= nil and type(opts) ~= "table" then error("opts: table expected", 2) end
  local o = {}
  for k, v in pairs(DEFAULTS) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
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
