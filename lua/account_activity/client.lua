--- The Account Activity API client.
--
--   local client = require("account_activity").new { consumer_key = ..., ... }
--   local webhook, res = client:register_webhook("https://example.com/webhook")
--
-- One method per endpoint, generated from endpoints.lua; this file holds the
-- policy (auth, retries, ids, errors) and nothing about individual endpoints.
local endpoints = require "account_activity.endpoints"
local arg_checks = require "account_activity.args"
local errors = require "account_activity.errors"
local runtime = require "account_activity.runtime"
local pretty = require "account_activity.pretty"
local batch = require "account_activity.batch"
local perform = require "account_activity.perform"
local cjson_safe = require "cjson.safe"

local M = {}

local json = cjson_safe.new()
if json.encode_escape_forward_slash then json.encode_escape_forward_slash(false) end

local core = require "account_activity.core"

-- The version lives in one place (src/aa.h); the core reports it.
local function version() return core._VERSION end

-- Credentials live here, keyed by client, so that `pairs(client)`, an
-- inspector or a careless log line in a REPL never meets a secret.
-- A batch task's view of a client (batch.lua) finds the client's entry.
local secrets = setmetatable({}, { __mode = "k", __index = function(t, k)
  local c = batch.client_of(k)
  return c and rawget(t, c)
end })

local Client = {}
M.Client = Client

local argerror, show = arg_checks.argerror, arg_checks.show
-- Shared with the extension modules (workflows, activity): one wording for
-- every argument error.
M.argerror, M.show = argerror, show

-- Argument checks and dates live in args.lua; these names stay here too,
-- for code that took them from the client.
local check_id, check_user, need_oauth1 = arg_checks.check_id, arg_checks.check_user, arg_checks.need_oauth1
local check_webhook_url, check_date = arg_checks.check_webhook_url, arg_checks.check_date
local is_loopback = arg_checks.is_loopback
M.check_id, M.check_user, M.need_oauth1 = check_id, check_user, need_oauth1
M.utc_epoch = arg_checks.utc_epoch

---------------------------------------------------------------------------
-- Environment: sleep, clock, transport
---------------------------------------------------------------------------

local in_cosocket_phase = runtime.cosocket_phase
local default_sleep = runtime.sleep
local default_clock = runtime.clock

-- The transport as a plain function(request) -> response | nil, err.
local function resolve_transport(opts)
  local t = opts.transport
  if type(t) == "function" then return t, nil end
  if t == nil then t = in_cosocket_phase() and "ngx" or "curl" end
  if t ~= "curl" and t ~= "ngx" then
    argerror("new", "transport", "expected nil, \"curl\", \"ngx\" or a function, got " .. show(t), 3)
  end
  local mod = require("account_activity.transport." .. t)
  local obj = mod
  if type(mod) == "table" and type(mod.new) == "function" then obj = mod.new(opts) end
  if type(obj) == "function" then return obj, nil end
  if type(obj) == "table" and type(obj.request) == "function" then
    return function(req) return obj:request(req) end, obj
  end
  error("account_activity.transport." .. t .. " has no request function", 3)
end

---------------------------------------------------------------------------
-- Construction
---------------------------------------------------------------------------

local function opt_string(opts, name, required)
  local v = opts[name]
  if v == nil and not required then return nil end
  if type(v) ~= "string" or v == "" then
    argerror("new", name, (required and "required " or "") .. "string expected, got " .. type(v), 3)
  end
  if v:find("[\r\n]") then argerror("new", name, "contains CR or LF", 3) end
  return v
end

local function opt_number(opts, name, default, max)
  local v = opts[name]
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v < 0 or v > (max or 86400) then
    argerror("new", name, ("a number from 0 to %d expected, got %s"):format(max or 86400, show(v)), 3)
  end
  return v
end

local classes = {}

--- Build a client. See API.md "Client" for the options.
function M.new(opts)
  if type(opts) ~= "table" then argerror("new", "opts", "table expected, got " .. type(opts), 2) end
  local s = {
    consumer_key = opt_string(opts, "consumer_key", true),
    consumer_secret = opt_string(opts, "consumer_secret", true),
    access_token = opt_string(opts, "access_token"),
    access_token_secret = opt_string(opts, "access_token_secret"),
    bearer = opt_string(opts, "bearer_token"),
    client_id = opt_string(opts, "client_id"),
    client_secret = opt_string(opts, "client_secret"),
  }
  if s.client_secret and not s.client_id then
    argerror("new", "client_id", "client_secret needs its client_id", 2)
  end
  if (s.access_token == nil) ~= (s.access_token_secret == nil) then
    argerror("new", s.access_token and "access_token_secret" or "access_token",
      "access_token and access_token_secret go together", 2)
  end
  s.bearer_given = s.bearer ~= nil

  local api = opts.api or "enterprise"
  if not endpoints.FLAVOURS[api] then
    argerror("new", "api", "expected \"enterprise\", \"premium\" or \"v2\", got " .. show(api), 2)
  end
  local env_name = opts.env_name
  if endpoints[api].needs_env_name then
    if type(env_name) ~= "string" or env_name == "" then
      argerror("new", "env_name", "required with api = \"premium\" (the dev environment label)", 2)
    end
    if not env_name:match("^[%w_%-]+$") then
      argerror("new", "env_name", "expected letters, digits, '_' or '-', got " .. show(env_name), 2)
    end
  end

  local base_url = opts.base_url or "https://api.twitter.com"
  if type(base_url) ~= "string" or not base_url:match("^https?://[^/?#%s]+") or base_url:find("[%s%c?#]") then
    argerror("new", "base_url", "expected an http(s) URL without query, got " .. show(base_url), 2)
  end
  base_url = base_url:gsub("/+$", "")

  local retries = opt_number(opts, "retries", 2, 100)
  if retries ~= math.floor(retries) then argerror("new", "retries", "integer expected", 2) end
  for _, name in ipairs { "sleep", "clock" } do
    if opts[name] ~= nil and type(opts[name]) ~= "function" then
      argerror("new", name, "function expected, got " .. type(opts[name]), 2)
    end
  end
  if opts.user_agent ~= nil and opt_string(opts, "user_agent"):find("%c") then
    argerror("new", "user_agent", "contains control characters", 2)
  end
  for _, name in ipairs { "timeout", "connect_timeout" } do
    if opts[name] == 0 then argerror("new", name, "must be more than 0 seconds", 2) end
  end
  -- Only a real boolean turns TLS verification off: "false" and 0 are true in Lua.
  if opts.insecure ~= nil and type(opts.insecure) ~= "boolean" then
    argerror("new", "insecure", "boolean expected, got " .. show(opts.insecure), 2)
  end

  local self = {
    api = api,
    env_name = env_name,
    base_url = base_url,
    loopback = is_loopback(base_url),
    timeout = opt_number(opts, "timeout", 10),
    connect_timeout = opt_number(opts, "connect_timeout", 5),
    retries = retries,
    max_wait = opt_number(opts, "max_wait", 60),
    backoff = opt_number(opts, "backoff", 1),
    user_agent = opts.user_agent or ("lua-account-activity/" .. version()),
    insecure = opts.insecure == true,
  }
  if opts.authorize_url ~= nil then
    local u = opt_string(opts, "authorize_url")
    if not u:match("^https?://[^/?#%s]+") then
      argerror("new", "authorize_url", "expected an http(s) URL, got " .. show(u), 2)
    end
    self.authorize_url = u
  end
  if opts.token_store ~= nil then
    if not require("account_activity.token_store").is_store(opts.token_store) then
      argerror("new", "token_store", "expected a store with get, put, delete, list and lock", 2)
    end
    self.token_store = opts.token_store
  else
    self.token_store = require("account_activity.token_store").memory()
  end
  self.sleep = opts.sleep or default_sleep
  self.clock = opts.clock or default_clock
  local topts = {
    timeout = self.timeout, connect_timeout = self.connect_timeout,
    ca_file = opts.ca_file, ca_path = opts.ca_path, insecure = self.insecure,
    user_agent = self.user_agent, transport = opts.transport,
  }
  self.send, self.transport = resolve_transport(topts)
  self.transport_name = type(opts.transport) == "function" and "function"
    or opts.transport or (in_cosocket_phase() and "ngx" or "curl")
  setmetatable(self, classes[api])
  secrets[self] = s
  return self
end

--- Build a client from TWITTER_* environment variables.
function M.from_env(overrides)
  local function env(name)
    local v = os.getenv(name)
    if v == "" then return nil end
    return v
  end
  local opts = {
    consumer_key = env "TWITTER_CONSUMER_KEY",
    consumer_secret = env "TWITTER_CONSUMER_SECRET",
    access_token = env "TWITTER_ACCESS_TOKEN",
    access_token_secret = env "TWITTER_ACCESS_TOKEN_SECRET",
    bearer_token = env "TWITTER_BEARER_TOKEN",
    env_name = env "TWITTER_WEBHOOK_ENV",
    base_url = env "TWITTER_API_BASE_URL",
    api = env "TWITTER_API",
    client_id = env "TWITTER_CLIENT_ID",
    client_secret = env "TWITTER_CLIENT_SECRET",
  }
  if opts.api == nil and opts.env_name then opts.api = "premium" end
  if type(overrides) == "table" then
    for k, v in pairs(overrides) do opts[k] = v end
  end
  if not opts.consumer_key or not opts.consumer_secret then
    error("from_env: TWITTER_CONSUMER_KEY and TWITTER_CONSUMER_SECRET must be set", 2)
  end
  return M.new(opts)
end

---------------------------------------------------------------------------
-- Requests
---------------------------------------------------------------------------

local pe = core.percent_encode

function Client:_secret_values(extra)
  local s = secrets[self]
  local list = {}
  local function add(v) if type(v) == "string" then list[#list + 1] = v end end
  add(s.consumer_secret)
  add(s.access_token_secret)
  add(s.bearer)
  add(s.access_token)
  add(s.consumer_key)
  -- what goes out in Authorization: Basic when the bearer token is fetched
  add(pe(s.consumer_key) .. ":" .. pe(s.consumer_secret))
  add(s.client_secret)
  -- the token endpoint's Basic credentials of a confidential OAuth 2.0 client
  if s.client_secret then add(pe(s.client_id) .. ":" .. pe(s.client_secret)) end
  if type(extra) == "table" then
    add(extra.access_token)
    add(extra.access_token_secret)
    if type(extra.oauth2) == "table" then
      add(extra.oauth2.access_token)
      add(extra.oauth2.refresh_token)
    end
  end
  return list
end

function Client:_fail(err, call, attempts, history)
  err.attempts = attempts
  err.history = history
  err.endpoint = call.name
  local list = self:_secret_values(call.user)
  for _, v in ipairs(call.secrets or {}) do list[#list + 1] = v end
  if call.oauth2_sent then list[#list + 1] = call.oauth2_sent end
  return nil, errors.scrub(err, list)
end

function Client:_oauth2_client_id() return secrets[self].client_id end

-- Headers and body for one attempt (auth.lua; the credentials stay in this
-- file's `secrets` and are handed over per call).
function Client:_authorize(call, url, headers)
  return require("account_activity.auth").authorize(self, secrets[self], call, url, headers)
end

function Client:_perform(call)
  return perform.perform(self, secrets[self], call)
end

function Client:_backoff(n)
  return perform.backoff(self, n)
end

function Client:_bearer_for_call(call)
  local s = secrets[self]
  if s.bearer then return s.bearer end
  if call.name == "bearer_token" then
    return nil, errors.make("argument", "no bearer token", nil)
  end
  local token, err = self:bearer_token()
  if not token then return nil, err end
  return token
end

local function to_set(list)
  local set = {}
  for _, v in ipairs(list or {}) do set[v] = true end
  return set
end

-- Resolve an endpoint's parameter map against the checked arguments.
local function params(self, spec, map, args)
  if not map then return nil end
  local out = {}
  for name, source in pairs(map) do
    if spec.literal and spec.literal[name] then
      out[name] = source
    elseif source == "$bearer" then
      out[name] = secrets[self].bearer
    else
      out[name] = args[source]
    end
  end
  return out
end

-- How each decoder's value prints in a REPL (pretty.lua).
local RESULT_PRINTERS = {
  webhook = pretty.webhook_mt, webhook_by_id = pretty.webhook_mt,
  webhook_list = pretty.webhook_list_mt, count = pretty.count_mt,
}

--- Run one endpoint with already checked arguments -> value, response | nil, err.
function Client:_call(name, spec, args)
  local path = spec.path:gsub("{([%w_]+)}", function(k)
    if k == "env_name" then return self.env_name end
    return args[k]
  end)
  if spec.replay_window then
    local now = self.clock()
    local req = { method = spec.method, url = self.base_url .. path }
    if args.from_epoch >= args.to_epoch then
      return self:_fail(errors.make("argument", "replay: from (" .. args.from
        .. ") must be before to (" .. args.to .. ")", req), { name = name }, 0, {})
    end
    if now - args.from_epoch > spec.replay_window + 60 then
      return self:_fail(errors.make("argument", string.format(
        "replay: api %q replays reach back at most %d hours; from (%s UTC) is %.1f hours ago",
        self.api, spec.replay_window / 3600, args.from, (now - args.from_epoch) / 3600), req),
        { name = name }, 0, {})
    end
  end
  local jbody
  if spec.json then
    local t = params(self, spec, spec.json, args)
    jbody = next(t) == nil and "{}" or json.encode(t)
  end
  local res, err = self:_perform {
    name = name, method = spec.method, path = path,
    query = params(self, spec, spec.query, args),
    form = params(self, spec, spec.form, args),
    json = jbody, auth = spec.auth, user = args.user, oauth2 = spec.oauth2,
    success = to_set(spec.success), absent = to_set(spec.absent), absent_unless = spec.absent_unless,
  }
  if not res then return nil, err end
  pretty.mark(res, pretty.response_mt)
  if not to_set(spec.success)[res.status] then return false, res end
  local value, derr = endpoints.decoders[spec.decode](res.json, res, args)
  if value == nil then
    local req = { method = spec.method, url = self.base_url .. path }
    local e
    if type(derr) == "table" then
      -- A kind of its own ("not_found" from a list) is not an HTTP failure:
      -- the 200 that carried the list must not read as the problem.
      local kind = derr.kind or "decode"
      e = errors.make(kind, derr.message, req,
        { status = derr.status or (kind == "decode" and res.status or nil), rate_limit = res.rate_limit })
    else
      e = errors.make("decode", derr or "unexpected response",
        req, { status = res.status, rate_limit = res.rate_limit })
    end
    return self:_fail(e, { name = name }, res.attempts, res.history)
  end
  local mt = RESULT_PRINTERS[spec.decode]
  if mt then pretty.mark(value, mt) end
  if spec.decode == "webhook_list" then
    for _, w in ipairs(value) do pretty.mark(w, pretty.webhook_mt) end
  end
  return value, res
end

-- Check positional arguments against the endpoint's `args` list.
local function check_args(self, fname, spec, argv)
  local args = {}
  for i, a in ipairs(spec.args) do
    local aname, kind = a[1], a[2]
    local v = argv[i]
    if kind == "id" then
      args[aname] = check_id(fname, aname, v, 3)
    elseif kind == "user" then
      args[aname] = check_user(fname, aname, v, 3)
      if not spec.oauth2 and spec.auth == "subscriber" then need_oauth1(fname, aname, args[aname], 3) end
    elseif kind == "user_or_id" then
      if type(v) == "table" then
        local u = check_user(fname, aname, v, 3)
        if not spec.oauth2 and spec.auth == "subscriber" then need_oauth1(fname, aname, u, 3) end
        args.user = u
        args.user_id = u.user_id
      else
        args.user_id = check_id(fname, aname, v, 3)
      end
    elseif kind == "url" then
      args[aname] = check_webhook_url(fname, aname, v, self.loopback, 3)
    elseif kind == "date" then
      args[aname], args[aname .. "_epoch"] = check_date(fname, aname, v, 3)
    end
  end
  return args
end

local function make_method(name, entry, api)
  if entry == nil then
    return function()
      error(name .. " is not available with api = \"" .. api .. "\"", 2)
    end
  end
  if entry.dispatch == "user_or_id" then
    return function(self, ...)
      local argv = { ... }
      local spec = entry.id
      local oauth2_only = type(argv[2]) == "table" and argv[2].oauth2 ~= nil and argv[2].access_token == nil
      if type(argv[2]) == "table" then
        if entry.user and oauth2_only and argv[2].user_id ~= nil then
          -- X's user-context DELETE takes only OAuth 1.0a: remove by id, app-only
          spec = entry.id
        elseif entry.user then
          spec = entry.user
        elseif argv[2].user_id == nil then
          argerror(name, "user", "api \"" .. api .. "\" removes subscriptions by id: user.user_id is required", 2)
        end
      end
      local args = check_args(self, name, spec, argv)
      if spec == entry.id then args.user = nil end
      return self:_call(name, spec, args)
    end
  end
  return function(self, ...)
    local args = check_args(self, name, entry, { ... })
    return self:_call(name, entry, args)
  end
end

---------------------------------------------------------------------------
-- Methods that are more than one endpoint call
---------------------------------------------------------------------------

local special = {}

--- The app-only bearer token: the configured or cached one, else fetched.
function special.bearer_token(self)
  local s = secrets[self]
  if s.bearer then
    return s.bearer, { status = 200, cached = true, attempts = 0, history = {},
                       rate_limit = {}, headers = {} }
  end
  local spec = endpoints[self.api].bearer_token
  local token, res = self:_call("bearer_token", spec, {})
  if not token then return nil, res end
  s.bearer = token
  return token, res
end

function special.invalidate_bearer_token(self)
  local s = secrets[self]
  if not s.bearer then
    local token, err = special.bearer_token(self)
    if not token then return nil, err end
  end
  local ok, res = self:_call("invalidate_bearer_token", endpoints[self.api].invalidate_bearer_token, {})
  if not ok then return nil, res end
  s.bearer = nil
  s.bearer_given = false
  return true, res
end

local METHOD_OK = { GET = true, POST = true, PUT = true, DELETE = true, PATCH = true, HEAD = true }
local AUTH_OK = { user = true, app = true, subscriber = true, user_or_app = true, basic = true, none = true }

--- Any endpoint, signed: request(method, path, opts) -> response, response | nil, err.
function Client:request(method, path, opts)
  if type(method) ~= "string" or not METHOD_OK[method:upper()] then
    argerror("request", "method", "expected an HTTP method, got " .. show(method), 2)
  end
  method = method:upper()
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" or path:find("[%s%c]") then
    argerror("request", "path", "expected a path starting with '/', got " .. show(path), 2)
  end
  opts = opts or {}
  if type(opts) ~= "table" then argerror("request", "opts", "table expected", 2) end
  local user
  if opts.user ~= nil then user = check_user("request", "opts.user", opts.user, 2) end
  local auth = opts.auth or (user and "subscriber") or endpoints.auth_for(self.api, method, path) or "user_or_app"
  if auth == "user" and user then auth = "subscriber" end
  if not AUTH_OK[auth] then argerror("request", "opts.auth", "unknown auth " .. show(auth), 2) end
  if auth == "subscriber" and not user then
    argerror("request", "opts.user", "a user table is required with auth = \"subscriber\"", 2)
  end
  local jbody
  if type(opts.json) == "string" then
    jbody = opts.json
  elseif opts.json ~= nil then
    jbody = json.encode(opts.json)
  end
  local success = {}
  if opts.success then
    success = to_set(opts.success)
  else
    for st = 200, 299 do success[st] = true end
  end
  local res, err = self:_perform {
    name = "request", method = method, path = path, query = opts.query,
    form = opts.form, json = jbody, auth = auth, user = user, oauth2 = opts.oauth2 == true,
    headers = opts.headers, success = success, retries = opts.retries, timeout = opts.timeout,
  }
  if not res then return nil, err end
  return res, res
end

--- Release the transport's connection (the client stays usable).
function Client:close()
  if self.transport and self.transport.close then self.transport:close() end
end

function Client:__tostring()
  local s = secrets[self] or {}
  local creds = { "consumer key+secret" }
  if s.access_token then creds[#creds + 1] = "owner token+secret" end
  if s.bearer then creds[#creds + 1] = s.bearer_given and "bearer" or "bearer (cached)" end
  if s.client_id then creds[#creds + 1] = s.client_secret and "OAuth 2.0 client id+secret" or "OAuth 2.0 client id" end
  local env = self.env_name and (" env=" .. self.env_name) or ""
  return string.format("account_activity.client<%s %s%s; %s; %s%s>", self.api, self.base_url, env,
    table.concat(creds, ", "), self.transport_name or "curl",
    self.insecure and "; TLS verification OFF" or "")
end

--- Which credentials are set (names, never values).
function Client:credentials()
  local s = secrets[self]
  return {
    consumer_key = true, consumer_secret = true,
    access_token = s.access_token ~= nil, access_token_secret = s.access_token_secret ~= nil,
    bearer_token = s.bearer ~= nil,
    client_id = s.client_id ~= nil, client_secret = s.client_secret ~= nil,
  }
end

---------------------------------------------------------------------------
-- Batches: many calls at once (used by workflows.lua)
---------------------------------------------------------------------------

--- `"sha256=" .. base64(HMAC-SHA256(consumer_secret, s))` without handing out
-- the secret: what a webhook must answer to a CRC with token `s` (health()).
function Client:_crc_response(s)
  return require("account_activity.crc").sign(secrets[self].consumer_secret, s)
end

--- Run `tasks` (functions fn(client) -> ...) concurrently (batch.lua).
function Client:_batch(tasks, opts)
  return batch.run(self, tasks, opts)
end

-- One method table per flavour, generated from endpoints.lua. Anything a
-- class lacks falls through to the shared Client methods and then to the
-- extension modules (workflows, the X Activity API), each a separate file
-- loaded on first use and called as fn(client, ...).
local EXTENSIONS = { "account_activity.workflows", "account_activity.activity", "account_activity.oauth2" }
local extension_mods = {}
local function extension(modname)
  local m = extension_mods[modname]
  if m == nil then
    local ok, mod = pcall(require, modname)
    if ok then
      m = type(mod) == "table" and mod or false
    elseif tostring(mod):find("module '" .. modname .. "' not found", 1, true) then
      m = false
    else
      error(mod, 0) -- a broken extension must say so, not make methods vanish
    end
    extension_mods[modname] = m
  end
  return m
end

for api in pairs(endpoints.FLAVOURS) do
  local class = { __name = "account_activity.client", __tostring = Client.__tostring }
  local methods = {}
  for _, name in ipairs(endpoints.METHODS) do
    methods[name] = special[name] or make_method(name, endpoints[api][name], api)
  end
  class.methods = methods
  class.__index = function(_, k)
    local m = methods[k] or Client[k]
    if m ~= nil then return m end
    if type(k) == "string" and k:sub(1, 1) ~= "_" then
      for _, modname in ipairs(EXTENSIONS) do
        local ext = extension(modname)
        if ext and type(ext[k]) == "function" then return ext[k] end
      end
    end
    return nil
  end
  classes[api] = class
  arg_checks.client_classes[class] = true
end
M.classes = classes

--- Is `v` a client (or a batch task's view of one)?
M.is_client = arg_checks.is_client

return M
