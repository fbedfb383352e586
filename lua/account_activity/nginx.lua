--- The webhook handler inside OpenResty / nginx (`content_by_lua_block`).
--
--   location = /webhooks/twitter {
--     content_by_lua_block {
--       require("account_activity.nginx").serve(require("my_app.webhook_opts"))
--     }
--   }
--
-- `opts` are webhook.handler's options plus `async`. Build the opts table
-- ONCE (in a module, as above, or in init_by_lua): serve() caches the
-- handler per opts table, so a table literal written inside the block would
-- build a new handler on every request.
--
-- When is the event handler run? X only needs the 200 (and retries when it
-- is late or missing), so the response always goes out first:
--   async = false (default): answer, ngx.eof(), then dispatch in the same
--     request. The 200 is not delayed, handlers may still use ngx.req/ngx.var
--     and cosockets, and errors are logged against the request; but the
--     connection (and its keep-alive reuse) is held until handlers return.
--   async = true: answer, then dispatch in ngx.timer.at(0, ...). The request
--     is done at once; handlers run in a timer context (no ngx.req/ngx.var,
--     cosockets allowed), count against lua_max_pending_timers /
--     lua_max_running_timers, and are lost if the worker exits first. When no
--     timer can be created the dispatch falls back to the synchronous path.
-- Nothing here blocks: the body is read with ngx.req.read_body(), and a body
-- nginx spooled to disk (larger than client_body_buffer_size) is read from
-- its temporary file, which is a local file read.
-- luacheck: globals ngx
local webhook = require "account_activity.webhook"

local ngx = ngx
local type, pairs, setmetatable, tostring = type, pairs, setmetatable, tostring
local io_open = io.open

local M = {}

-- opts table -> Webhook. Weak keys: dropping the opts table drops the handler
-- (the Webhook never points back at opts, so LuaJIT can collect it too).
local cache = setmetatable({}, { __mode = "k" })

local LEVELS
local function ngx_log(level, msg)
  if not LEVELS then
    LEVELS = { debug = ngx.DEBUG, info = ngx.INFO, warn = ngx.WARN, error = ngx.ERR }
  end
  ngx.log(LEVELS[level] or ngx.NOTICE, "account_activity.webhook: ", msg)
end

local function build(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'serve' (options table expected, got " .. type(opts) .. ")", 3)
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  if o.log == nil then o.log = ngx_log end
  o.async = nil
  local wh = webhook.new(o, "serve")
  cache[opts] = wh
  return wh
end

local function read_body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body then return body end
  local path = ngx.req.get_body_file()
  if not path then return "" end
  -- Spooled to disk: the bytes as sent, which is what the signature covers.
  local f, err = io_open(path, "rb")
  if not f then return nil, "cannot open the spooled request body: " .. tostring(err) end
  local data = f:read("*a")
  f:close()
  return data or ""
end

local function timer_dispatch(premature, wh, list)
  if premature then
    wh:_log("warn", "worker exiting: " .. #list .. " event(s) not dispatched")
    return
  end
  wh:dispatch(list)
end

-- The handler answers with at most the two headers send() names. Naming
-- them, rather than walking the table, keeps the request compiled: any loop
-- on this path aborts LuaJIT's trace of the whole request.
local function send(res)
  ngx.status = res.status
  local h, rh = ngx.header, res.headers
  local ctype, allow = rh["Content-Type"], rh.Allow
  if ctype ~= nil then h["Content-Type"] = ctype end
  if allow ~= nil then h.Allow = allow end
  local body = res.body
  h["Content-Length"] = #body
  if body ~= "" then ngx.print(body) end
end

-- The two headers the handler reads, straight from nginx's variables:
-- building the whole header table (get_headers) costs more than the HMAC.
-- (With several copies of a header, nginx 1.22 gives the first one.)
-- The request and header tables are reused: a worker runs one serve() at a
-- time up to wh:process (which never yields), and nothing keeps them after.
local request = { method = nil, raw_query = nil, query = nil,
  headers = setmetatable({}, webhook._LOWERCASE_HEADERS), body = nil }

local function sig_headers(wh)
  local var, h = ngx.var, request.headers
  h["x-twitter-webhooks-signature"] = var.http_x_twitter_webhooks_signature
  h["x-twitter-webhooks-signature-oauth2"] =
    wh._secret2 and var.http_x_twitter_webhooks_signature_oauth2 or nil
  return h
end

local EMPTY = setmetatable({}, { __newindex = function() error("read-only table", 2) end })

--- serve(opts): answer the current request (CRC GET or event POST).
-- opts = webhook.handler's options + async = true|false (see above).
function M.serve(opts)
  local wh = cache[opts] or build(opts)
  local method = ngx.req.get_method()
  local body
  if method == "POST" then
    local err
    body, err = read_body()
    if not body then
      wh:_log("error", err)
      return ngx.exit(500)
    end
  end
  -- The handler reads crc_token from raw_query itself (keeping a literal
  -- '+'), so the decoded query table is not needed.
  request.method = method
  request.raw_query = ngx.var.args
  request.query = EMPTY
  request.headers = sig_headers(wh)
  request.body = body
  local res, list = wh:process(request)
  request.body = nil -- no reference to a large body past this request
  send(res)
  if not list then return end
  ngx.eof()
  if opts.async then
    local ok, terr = ngx.timer.at(0, timer_dispatch, wh, list)
    if ok then return end
    wh:_log("warn", "ngx.timer.at failed (" .. tostring(terr) .. "); dispatching in the request")
  end
  wh:dispatch(list)
end

--- The Webhook serve() uses for this opts table (built on first use).
function M.webhook(opts)
  return cache[opts] or build(opts)
end

return M
