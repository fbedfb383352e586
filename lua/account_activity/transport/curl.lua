--- The default transport: one libcurl Session (C core) per client.
--
-- The session is created on first use, so building a client costs nothing
-- and a client that is never used never loads libcurl; it is then reused so
-- every call shares the keep-alive connection.
local M = {}

local Transport = {}
Transport.__index = Transport
Transport.__name = "account_activity.transport.curl"

local SESSION_OPTS = { "timeout", "connect_timeout", "ca_file", "ca_path", "insecure", "user_agent" }

--- new(opts) with the session options of core.session.
function M.new(opts)
  local o = {}
  for _, k in ipairs(SESSION_OPTS) do o[k] = opts and opts[k] end
  return setmetatable({ opts = o, session = nil }, Transport)
end

function Transport:get_session()
  if not self.session then
    local core = require "account_activity.core"
    self.session = core.session(self.opts)
  end
  return self.session
end

--- request(req) -> response | nil, {kind, message[, connect]}
function Transport:request(req)
  return self:get_session():request(req)
end

--- perform({req, ...}, opts) -> { {res = ..., err = ...}, ... } (curl_multi)
function Transport:perform(reqs, opts)
  return self:get_session():perform(reqs, opts)
end

--- stream(req) -> conn, head | nil, err: a GET read line by line as it
-- arrives, on a connection of its own (the C core's session:stream).
-- conn: read_line(timeout), read_all(max_bytes, timeout), close().
function Transport:stream(req)
  local st, head = self:get_session():stream(req)
  if not st then return nil, head end
  local conn = {}
  function conn.read_line(_, t) return st:read_line(t) end
  function conn.read_all(_, max_bytes, t) return st:read_all(max_bytes, t) end
  function conn.close() return st:close() end
  return conn, head
end

function Transport:close()
  if self.session then
    self.session:close()
    self.session = nil
  end
end

function Transport:__tostring()
  return "account_activity.transport.curl (" .. (self.session and "open" or "idle") .. ")"
end

return M
