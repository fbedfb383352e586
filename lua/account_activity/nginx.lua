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
--     lua_max_running_timers, and are lost if the worker exits first. nginx
--     drops a timer that fires while lua_max_running_timers are running (it
--     only logs it), so no timer is asked for once running + pending ones
--     reach opts.max_running_timers (default 256, nginx's default: set it to
--     your lua_max_running_timers); then, and when no timer can be created,
--     the events are dispatched in the request, logged, and on_error told.
--   sink = {...}: verify, de-duplicate, persist to a Redis stream, and answer
--     200 only once Redis has the delivery (503 otherwise, so X retries);
--     the handlers run in account_activity.consumer, elsewhere. See
--     account_activity.sink.redis.
--   dedupe_dict = "name" (without a sink): a lua_shared_dict that drops a
--     delivery seen before by any worker of this nginx (key: the signature,
--     kept dedupe_ttl seconds, default 3600).
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
-- serve()'s own state per handler (sink, de-duplication, timer budget)
local serving = setmetatable({}, { __mode = "k" })

local LEVELS
local function ngx_log(level, msg)
  if not LEVELS then
    LEVELS = { debug = ngx.DEBUG, info = ngx.INFO, warn = ngx.WARN, error = ngx.ERR }
  end
  ngx.log(LEVELS[level] or ngx.NOTICE, "account_activity.webhook: ", msg)
end

-- With a sink the handlers run in the consumer: the Webhook only answers CRCs
-- and checks signatures, and needs no router of its own.
local NO_ROUTER = { dispatch = function() return 0 end }

local function build(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'serve' (options table expected, got " .. type(opts) .. ")", 3)
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  if o.log == nil then o.log = ngx_log end
  o.async, o.sink, o.dedupe_dict, o.dedupe_ttl, o.max_running_timers = nil, nil, nil, nil, nil
  local sink
  if opts.sink ~= nil then
    sink = require("account_activity.sink.redis").new(opts.sink)
    if o.router == nil and o.on_event == nil then o.router = NO_ROUTER end
  end
  local dict
  if opts.dedupe_dict ~= nil then
    dict = type(opts.dedupe_dict) == "string" and ngx.shared[opts.dedupe_dict]
    if not dict then
      error("bad argument 'dedupe_dict' to 'serve' (the name of a lua_shared_dict expected, got "
        .. tostring(opts.dedupe_dict) .. ")", 3)
    end
  end
  local wh = webhook.new(o, "serve")
  -- what serve() adds to the handler lives here, not in the webhook object
  serving[wh] = { sink = sink, dedupe_dict = dict, dedupe_ttl = opts.dedupe_ttl or 3600,
    max_timers = opts.max_running_timers or 256 }
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
    wh:log("warn", "worker exiting: " .. #list .. " event(s) not dispatched")
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
  headers = setmetatable({}, webhook.LOWERCASE_HEADERS), body = nil }

local function sig_headers(wh)
  local var, h = ngx.var, request.headers
  h["x-twitter-webhooks-signature"] = var.http_x_twitter_webhooks_signature
  h["x-twitter-webhooks-signature-oauth2"] =
    wh:checks_oauth2_header() and var.http_x_twitter_webhooks_signature_oauth2 or nil
  return h
end

-- The signature that verified (the de-duplication key).
local function signature_of(h)
  return h["x-twitter-webhooks-signature"] or h["x-twitter-webhooks-signature-oauth2"]
end

-- Redis failures, in the log at most once a second per worker (with how many were not).
local last_sink_log, unlogged = -1, 0

local function sink_failed(wh, err)
  local now = ngx.now()
  if now - last_sink_log >= 1 then
    wh:log("error", "delivery not persisted, answered 503: " .. tostring(err)
      .. (unlogged > 0 and (" (and " .. unlogged .. " more since the last line)") or ""))
    last_sink_log, unlogged = now, 0
  else
    unlogged = unlogged + 1
  end
end

local ANSWER_OK = { status = 200, headers = {}, body = "" }
local ANSWER_DOWN = { status = 503, headers = { ["Content-Type"] = "text/plain" }, body = "try again later\n" }
local ANSWER_FORGED = { status = 401, headers = { ["Content-Type"] = "text/plain" }, body = "invalid signature\n" }

-- read body -> verify -> de-duplicate + persist (one round trip) -> answer.
local function serve_sink(wh, st, body)
  local h = sig_headers(wh)
  if not wh.insecure then
    local ok, reason = wh:verify(h, body)
    if not ok then
      wh:log("warn", "POST refused: " .. reason)
      return send(ANSWER_FORGED)
    end
  end
  local sig = signature_of(h) or ("unsigned:" .. ngx.md5(body))
  local stored, err = st.sink:store(body, sig, ngx.req.start_time())
  if not stored then
    sink_failed(wh, err)
    return send(ANSWER_DOWN)
  end
  return send(ANSWER_OK)
end

-- true when another worker (or this one) took this delivery already.
local function seen_in_dict(wh, st)
  local sig = signature_of(request.headers)
  if not sig then return false end
  local ok, err = st.dedupe_dict:add(sig, true, st.dedupe_ttl)
  if ok then return false end
  if err == "exists" then return true end
  wh:log("warn", "dedupe_dict: " .. tostring(err) .. "; dispatching without the check")
  return false
end

-- No timer to be had: the events are dispatched here, and nobody is left
-- guessing (nginx would only log a dropped timer, never run it).
local function dispatch_inline(wh, list, why)
  wh:log("warn", why .. "; dispatching " .. #list .. " event(s) in the request")
  for i = 1, #list do
    wh:report("async dispatch fell back to the request: " .. why, list[i], false)
  end
  wh:dispatch(list)
end

local EMPTY = setmetatable({}, { __newindex = function() error("read-only table", 2) end })

--- serve(opts): answer the current request (CRC GET or event POST).
-- opts = webhook.handler's options + async = true|false (see above).
function M.serve(opts)
  local wh = cache[opts] or build(opts)
  local st = serving[wh]
  local method = ngx.req.get_method()
  local body
  if method == "POST" then
    local err
    body, err = read_body()
    if not body then
      wh:log("error", err)
      return ngx.exit(500)
    end
    if st.sink then return serve_sink(wh, st, body) end
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
  if st.dedupe_dict and seen_in_dict(wh, st) then return end
  ngx.eof()
  if opts.async then
    local timer = ngx.timer
    if timer.running_count() + timer.pending_count() >= st.max_timers then
      return dispatch_inline(wh, list, "max_running_timers (" .. st.max_timers .. ") timers busy")
    end
    local ok, terr = timer.at(0, timer_dispatch, wh, list)
    if ok then return end
    return dispatch_inline(wh, list, "ngx.timer.at failed (" .. tostring(terr) .. ")")
  end
  wh:dispatch(list)
end

--- The Webhook serve() uses for this opts table (built on first use).
function M.webhook(opts)
  return cache[opts] or build(opts)
end

return M
