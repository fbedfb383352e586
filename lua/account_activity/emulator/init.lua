--- The offline X Account Activity API emulator, served by a private nginx.
--
--   local emu = require("account_activity.emulator").start { users_count = ... }
--   emu.url, emu.port, emu.config            -- credentials in force
--   emu:control("POST", "/_emulator/deliver", { user_id = ..., type = "favorite", wait = true })
--   emu:log(); emu:stop()
--
-- Usable from Lua 5.4 and LuaJIT scripts (the nginx workers run LuaJIT).
local util = require "account_activity.emulator.util"
local config = require "account_activity.emulator.config"
local nginx_process = require "account_activity.nginx_process"

local M = {}

--- The built-in configuration (one app, its owner, a handful of users, limits).
function M.default_config()
  return config.normalize(nil)
end

--- The credentials of a config in the --print-config shape.
function M.credentials(cfg)
  return config.credentials(config.normalize(cfg))
end

local function q(s) return (tostring(s):gsub("\\", "\\\\"):gsub('"', '\\"')) end

--- The directives (inside http{}) that serve the emulator on `port`.
-- opts: config_path (required), state_dir, dict_size ("64m").
function M.nginx_http(port, opts)
  local ca = io.open("/etc/ssl/certs/ca-certificates.crt", "r")
  if ca then ca:close() end
  return table.concat({
    "lua_shared_dict aa_emulator " .. (opts.dict_size or "64m") .. ";",
    "lua_socket_log_errors off;",
    -- every failed delivery waits for its retry in a timer
    "lua_max_pending_timers 16384;",
    "lua_max_running_timers 4096;",
    ca and "lua_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;" or "",
    "lua_ssl_verify_depth 5;",
    ('init_by_lua_block { require("account_activity.emulator.server").init("%s", "%s") }')
      :format(q(opts.config_path), q(opts.state_dir or "")),
    'init_worker_by_lua_block { require("account_activity.emulator.server").init_worker() }',
    'exit_worker_by_lua_block { require("account_activity.emulator.server").exit_worker() }',
    nginx_process.server_block { port = port,
      directives = { "client_body_buffer_size 1m;", "client_max_body_size 16m;", "keepalive_requests 100000;" },
      locations = { { match = "/", directives = {
        'content_by_lua_block { require("account_activity.emulator.router").handle() }',
        'log_by_lua_block { require("account_activity.emulator.router").log() }' } } } },
  }, "\n")
end

local Emulator = {}
Emulator.__index = Emulator

function Emulator:__tostring()
  return string.format("emulator(%s, pid=%s)", self.url, tostring(self.server and self.server.pid))
end

local function session(self)
  if not self._session then
    self._session = require("account_activity.core").session { timeout = 30, connect_timeout = 5 }
  end
  return self._session
end

--- Call the control plane. Returns decoded_json, status | nil, err.
function Emulator:control(method, path, body)
  if type(method) ~= "string" then error("control: method must be a string", 2) end
  if type(path) ~= "string" then error("control: path must be a string", 2) end
  if body ~= nil and type(body) ~= "table" then error("control: body must be a table", 2) end
  if path:sub(1, 1) ~= "/" then path = "/_emulator/" .. path end
  local res, err = session(self):request {
    method = method:upper(), url = self.url .. path,
    headers = body and { ["Content-Type"] = "application/json" } or nil,
    body = body and util.encode(body) or nil,
  }
  if not res then return nil, err end
  local decoded = util.decode(res.body)
  if decoded == nil and res.body ~= "" then return nil, { kind = "decode", message = "control plane answered non-JSON" } end
  return decoded, res.status
end

--- The request log (array of { method, path, query, auth, status, ... }).
function Emulator:log(since)
  local r, status = self:control("GET", "/_emulator/log" .. (since and ("?since=" .. since) or ""))
  if not r then return nil, status end
  return r.entries
end

function Emulator:reset()
  return self:control("POST", "/_emulator/reset", {})
end

--- Stop nginx and remove its temporary prefix. Idempotent.
function Emulator:stop()
  if self._session then self._session:close(); self._session = nil end
  if self.server then self.server:stop(); self.server = nil end
  return true
end

function Emulator:error_log()
  return self.server and self.server:error_log() or ""
end

local function write(path, data)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  f:write(data)
  f:close()
  return true
end

--- Start an emulator.
-- opts: port (nil: a free one), config (table), config_file (JSON path),
-- state_dir (persist state there), workers (1), latency_ms (0).
-- Returns an Emulator or nil, err.
function M.start(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("start: opts must be a table", 2) end
  if opts.config ~= nil and type(opts.config) ~= "table" then error("start: opts.config must be a table", 2) end
  if opts.config_file ~= nil and type(opts.config_file) ~= "string" then
    error("start: opts.config_file must be a string", 2)
  end
  local cfg_in = opts.config
  if opts.config_file then
    local t, err = config.read_file(opts.config_file)
    if not t then return nil, err end
    cfg_in = util.merge(t, opts.config or {})
  end
  local ok, cfg = pcall(config.normalize, cfg_in)
  if not ok then return nil, tostring(cfg) end
  if opts.latency_ms then cfg.latency_ms = opts.latency_ms end
  local state_dir = opts.state_dir
  if state_dir then os.execute("mkdir -p '" .. state_dir:gsub("'", "'\\''") .. "'") end
  local config_path
  local server, err = nginx_process.start {
    workers = opts.workers or 1,
    ports = 1,
    port = opts.port,
    http = function(ports, srv)
      config_path = srv.prefix .. "/conf/emulator.json"
      write(config_path, util.encode(cfg))
      return M.nginx_http(opts.port or ports[1], { config_path = config_path, state_dir = state_dir })
    end,
  }
  if not server then return nil, err end
  local port = opts.port or server.port
  local url = "http://127.0.0.1:" .. port
  local emu = setmetatable({
    server = server, port = port, url = url,
    config = config.credentials(cfg, url), settings = cfg, prefix = server.prefix,
  }, Emulator)
  -- nginx listens once it has started; wait for a worker to answer.
  local last
  for _ = 1, 100 do
    local r, e = emu:control("GET", "/_emulator/health")
    if r and r.ok then return emu end
    last = e
    if server:wait(0.02) then break end -- nginx died: its log says why
  end
  local log = server:error_log()
  emu:stop()
  return nil, "emulator did not answer: " .. tostring(last and last.message or last) .. "\n" .. log
end

return M
