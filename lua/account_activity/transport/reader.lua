--- Reading an HTTP/1.1 answer from a cosocket, with every wait bounded by
-- a deadline and every part capped: the status line and headers (as the C
-- core caps them), chunked bodies, bodies that end with the connection.
-- transport/ngx.lua's requests and streams both read through here.
local R = {}

-- libcurl's limit on a response's header block (MAX_HTTP_RESP_HEADER_SIZE)
R.MAX_HEADER_BYTES = 300 * 1024
R.MAX_HEADER_LINES = 10000

R.PIECE = 65536
local PIECE = R.PIECE

local Reader = {}
Reader.__index = Reader

--- A reader over sock whose waits end at deadline_ms (ngx.now() * 1000;
-- the caller may move `reader.deadline` between reads).
function R.reader(sock, deadline_ms)
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

--- Reads a status line and headers within R.MAX_HEADER_BYTES and
-- R.MAX_HEADER_LINES: status, headers (lowercased names; repeats joined with
-- ", " once, at the end), version | nil, err. The head is parsed once it is
-- all in (one pattern pass per line), not read line by line.
function R.read_head(reader)
  local budget = R.MAX_HEADER_BYTES
  while true do
    -- wait for the blank line that ends the head: each piece is searched
    -- once (with the two bytes before it) and the pieces joined once
    local first = reader.buf:sub(reader.pos)
    local stop, stop2 = first:find("\n\r?\n")
    local pieces, size, tail = { first }, #first, first:sub(-2)
    while not stop do
      if size > budget then
        return nil, "response headers larger than " .. R.MAX_HEADER_BYTES .. " bytes"
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
      return nil, "response headers larger than " .. R.MAX_HEADER_BYTES .. " bytes"
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
        if lines > R.MAX_HEADER_LINES then
          return nil, "more than " .. R.MAX_HEADER_LINES .. " response header lines"
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

function R.too_big(max)
  return "response body larger than " .. max .. " bytes"
end

--- The size of the next chunk from its size line: n | nil, err.
function R.chunk_size(reader)
  local line, err = reader:line(1024)
  if not line then return nil, err == "too large" and "malformed chunk size" or err end
  local hex = line:match("^[ \t]*(%x+)")
  if not hex or #hex > 15 then return nil, "malformed chunk size" end
  return tonumber(hex, 16)
end

function R.read_chunked(reader, max)
  local parts, total = {}, 0
  while true do
    local size, err = R.chunk_size(reader)
    if not size then return nil, err end
    if size == 0 then
      -- trailers, up to the empty line, within the header cap
      local budget = R.MAX_HEADER_BYTES
      repeat
        local t, used = reader:line(budget)
        if not t then return nil, used == "too large" and "response trailers too large" or used end
        budget = budget - used
      until t == ""
      break
    end
    if total + size > max then return nil, R.too_big(max) end
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
function R.read_to_close(reader, max)
  local parts, total = {}, 0
  while true do
    local data, err = reader:some(PIECE)
    if data then
      total = total + #data
      if total > max then return nil, R.too_big(max) end
      parts[#parts + 1] = data
    elseif err == "closed" then
      break
    else
      return nil, err
    end
  end
  return table.concat(parts)
end


return R
