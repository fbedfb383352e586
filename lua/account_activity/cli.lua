--- `account-activity`: the command line over the client and the workflows.
--
--   account-activity [--config FILE] [--api NAME] [--env NAME] [--base-url URL] [--json] COMMAND ...
--
-- main(argv, out, err) returns the exit status: 0 success, 1 an API error (or
-- a job with failures), 2 a usage error. Errors are one line on stderr;
-- no secret is ever printed (reports are stripped of the users' tokens).
-- Loads under Lua 5.4 and LuaJIT (nginx workers use event_line()).
local M = {}

local PROG = "account-activity"

local GLOBAL_HELP = [=[
usage: account-activity [options] COMMAND [ARGS]

commands:
  webhooks list | add URL | ensure URL [--replace] | validate ID | rm ID
  subs list ID | add ID [--users FILE] | check ID [--users FILE] | rm ID USER_ID | count
  subs sync ID FILE [--dry-run] [--keep-others] [--allow-removals]
  replay ID FROM TO            FROM/TO: YYYYMMDDhhmm (UTC), epoch, now, -90m, -2h, -1d
  health ID|URL [--url PUBLIC_URL]
  crc TOKEN                    print the response_token a webhook must answer (secret: --config or env)
  events tail [--port P] [--path /webhook] [--count N] [--timeout S]
  up [--url PUBLIC_URL] [--users FILE]   endpoint + webhook + subscriptions + tail; Ctrl-C tears down
  events consume --redis HOST:PORT --group G | pending --group G | dead   (the Redis hand-off)
  activity list|add|rm|mirror|stream   the X Activity API (successor of AAA)
  auth login|list|refresh|revoke       OAuth 2.0 user login and the token store
  emulator [...]               run the offline emulator (see: emulator --help)

options:
  --config FILE     credentials JSON (the emulator's --print-config shape); default:
                    the TWITTER_* environment variables (TWITTER_CONSUMER_KEY, ...)
  --api NAME        enterprise (default) | premium | v2
  --env NAME        premium environment name (TWITTER_WEBHOOK_ENV)
  --base-url URL    API base URL (TWITTER_API_BASE_URL), e.g. the emulator's
  --json            machine-readable output on stdout
  --concurrency N   requests in flight for jobs (default 16)
  --no-progress     no progress bar (there is none anyway when stderr is not a terminal)
  -h, --help        help; COMMAND --help for one command
  --version         the program's, libcurl's and OpenSSL's versions

exit status: 0 success, 1 API error or failures in a job, 2 usage error
]=]

local HELP = {
  webhooks = [=[
usage: account-activity webhooks list
       account-activity webhooks add URL          register (X runs a CRC against URL first)
       account-activity webhooks ensure URL [--replace [ID|URL]]
                                                  reuse, re-validate or register (idempotent)
       account-activity webhooks validate ID      ask X to re-run the CRC and re-enable it
       account-activity webhooks rm ID            delete
]=],
  subs = [=[
usage: account-activity subs list ID              subscribed user ids (app-only)
       account-activity subs add ID [--users FILE | --user-id ID]
                      subscribe the configured user (access token), or every user in FILE
                      (OAuth 2.0 users: {"user_id": ..., "oauth2": {...} or true}), or
                      the OAuth 2.0 user ID of the token store (see auth --help)
       account-activity subs check ID [--users FILE]
       account-activity subs rm ID USER_ID        unsubscribe by user id (app-only)
       account-activity subs count                subscriptions of the app
       account-activity subs sync ID FILE [--dry-run] [--keep-others] [--allow-removals]
                      make the subscribed set equal the users in FILE: a JSON array of
                      {user_id, access_token, access_token_secret} or an emulator config;
                      the whole file is checked first (exit 2 naming a bad entry); removing
                      more than half of the subscriptions (and more than 10), or syncing to
                      an empty FILE, needs --allow-removals
]=],
  replay = [=[
usage: account-activity replay ID FROM TO
  FROM, TO: YYYYMMDDhhmm (UTC), an epoch, "now" (end of this minute) or -90m / -2h / -1d
]=],
  health = [=[
usage: account-activity health ID|URL [--url PUBLIC_URL]
  Does the webhook exist, is it valid, how many subscriptions; then a CRC as X
  runs it against its URL (or PUBLIC_URL) and the latency against X's 3 s budget.
]=],
  crc = [=[
usage: account-activity crc TOKEN [--config FILE]
  Print the response_token a webhook must answer for crc_token TOKEN:
  sha256=base64(HMAC-SHA256(consumer secret, TOKEN)). The consumer secret comes
  from --config FILE (app.consumer_secret) or TWITTER_CONSUMER_SECRET, never from
  the command line, where every user of the machine can read it (ps).
]=],
  events = [=[
usage: account-activity events tail [--port P] [--path /webhook] [--count N] [--timeout S]
  Start a local webhook endpoint (nginx + account_activity.nginx.serve) that
  answers CRCs and checks signatures with the configured consumer secret, and
  print each event it receives on one line (PATH/anything is served too). Stops after N events, S seconds,
  or Ctrl-C.
       account-activity events consume --redis HOST:PORT --group G [--stream S] [--name N] [--batch N]
                                     [--handler FILE] [--count N] [--timeout S]
  Consume the stream that serve{ sink = ... } fills: print each event, and run the handlers FILE adds
  (it returns function(router)); ack after they returned. Ctrl-C / SIGTERM finish the batch and stop.
       account-activity events pending --redis HOST:PORT --group G [--stream S] [--count N]
  Entries read but not acked: per consumer, idle time, deliveries.
       account-activity events dead --redis HOST:PORT [--stream S] [--count N]
  The dead-letter stream, newest first, with each entry's error and attempts.
  Redis's password, if any, comes from AA_REDIS_PASSWORD.
]=],
  up = [=[
usage: account-activity up [--url PUBLIC_URL] [--users FILE] [--port P] [--path /webhook]
                          [--count N] [--timeout S] [--keep]
  One command for a working webhook, like autohook: start a local endpoint
  (nginx + account_activity.nginx.serve, checking signatures with the consumer
  secret), ensure the webhook for PUBLIC_URL (the https URL X reaches, which
  your tunnel or proxy routes to 127.0.0.1:P; default: the local URL itself,
  which only the emulator can reach), subscribe the users in FILE (or the
  configured owner), print each event on one line; on Ctrl-C, SIGTERM or
  SIGHUP, after N events or S seconds: undo what it did (a webhook it
  registered is deleted; on a webhook that was already there only the
  subscriptions it added are removed) unless --keep.
]=],
  activity = [=[
usage: account-activity activity list [--all]
       account-activity activity add EVENT_TYPE [--user-id ID [--users FILE]] [--keyword K] [--tag T] [--webhook ID]
                      a private event takes ID's tokens from FILE or the OAuth 2.0 token store
       account-activity activity rm ID
       account-activity activity mirror USER_ID --webhook ID [--users FILE]
       account-activity activity stream [--backfill MINUTES] [--count N]
]=],
  auth = require("account_activity.cli.auth").HELP,
  emulator = [=[
usage: account-activity emulator [--port P] [--state DIR] [--config FILE] [--print-config]
]=],
}

-- Options taking a value, and flags.
local VALUED = {
  config = true, api = true, env = true, ["base-url"] = true, concurrency = true, users = true,
  url = true, port = true, path = true, count = true, timeout = true, ["user-id"] = true,
  keyword = true, tag = true, webhook = true, backfill = true, secret = true,
  redis = true, group = true, name = true, stream = true, batch = true, handler = true,
  scopes = true, store = true,
}
local FLAGS = {
  json = true, help = true, ["dry-run"] = true, ["keep-others"] = true, all = true,
  ["no-progress"] = true, force = true, ["allow-removals"] = true, version = true, keep = true,
  ["no-browser"] = true,
}

local function usage_error(msg)
  return { usage = true, message = msg }
end

local function parse(argv)
  local o, pos = {}, {}
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "-h" then
      o.help = true
    elseif a == "--" then
      for j = i + 1, #argv do pos[#pos + 1] = argv[j] end
      break
    elseif a:sub(1, 2) == "--" then
      local name, inline = a:match("^%-%-([%w-]+)=(.*)$")
      name = name or a:sub(3)
      if name == "replace" then
        -- optional value: --replace ID|URL
        if inline then o.replace = inline
        elseif argv[i + 1] and not argv[i + 1]:match("^%-") and #pos >= 2 then
          o.replace = argv[i + 1]; i = i + 1
        else o.replace = true end
      elseif FLAGS[name] then
        if inline then return nil, usage_error("--" .. name .. " takes no value") end
        o[name] = true
      elseif VALUED[name] then
        local v = inline
        if v == nil then
          i = i + 1
          v = argv[i]
          if v == nil then return nil, usage_error("--" .. name .. " needs a value") end
        end
        o[name] = v
      else
        return nil, usage_error("unknown option --" .. name)
      end
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return o, pos
end

---------------------------------------------------------------------------
-- Output
---------------------------------------------------------------------------

local cjson = require "cjson.safe"
local json = cjson.new()
if json.encode_escape_forward_slash then json.encode_escape_forward_slash(false) end

-- Debian's lua-cjson 2.1.0 encodes {} as an object and escapes '/':
-- empty arrays go out as a marker replaced afterwards.
local EMPTY = "@@aa_cli_empty_array@@"
local function array(t)
  if next(t) == nil then return EMPTY end
  return t
end

local function encode(v)
  local s = json.encode(v)
  s = s:gsub('"' .. EMPTY .. '"', "[]")
  s = s:gsub("(\\+)/", function(bs)
    if #bs % 2 == 1 then return bs:sub(2) .. "/" end
  end)
  return s
end
M.encode = encode

-- Tables as JSON: errors become {kind, status, code, message, text}; user
-- tables lose their tokens.
local function plain(v, depth)
  depth = depth or 0
  if type(v) ~= "table" or depth > 8 then
    if type(v) == "function" or type(v) == "userdata" or type(v) == "thread" then return nil end
    return v
  end
  local errors = require "account_activity.errors"
  if errors.is_error(v) then
    return { kind = v.kind, status = v.status, code = v.code, message = v.message, text = tostring(v) }
  end
  local out = {}
  local n = #v
  if n > 0 or next(v) == nil then
    for i = 1, n do out[i] = plain(v[i], depth + 1) end
    return array(out)
  end
  for k, val in pairs(v) do
    if k ~= "user" and k ~= "access_token" and k ~= "access_token_secret" and type(k) == "string" then
      out[k] = plain(val, depth + 1)
    end
  end
  return out
end
M.plain = plain

local function table_out(out, headers, rows)
  local w = {}
  for i, h in ipairs(headers) do w[i] = #h end
  for _, r in ipairs(rows) do
    for i = 1, #headers do
      r[i] = r[i] == nil and "" or tostring(r[i])
      if #r[i] > w[i] then w[i] = #r[i] end
    end
  end
  local function line(cells)
    local parts = {}
    for i = 1, #headers do
      parts[i] = i == #headers and cells[i] or (cells[i] .. string.rep(" ", w[i] - #cells[i]))
    end
    out:write((table.concat(parts, "  "):gsub("%s+$", "")), "\n")
  end
  line(headers)
  for _, r in ipairs(rows) do line(r) end
end

local function yesno(b)
  if b == nil then return "?" end
  return b and "yes" or "no"
end

---------------------------------------------------------------------------
-- Configuration
---------------------------------------------------------------------------

local function read_json(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, "cannot read " .. path .. ": " .. tostring(err):gsub("^[^:]*: ", "") end
  local s = f:read("*a")
  f:close()
  local v, derr = cjson.decode(s)
  if v == nil then return nil, path .. " is not JSON: " .. tostring(derr) end
  return v
end

--- Users from FILE: a JSON array of user tables or an emulator config ({users = [...]}).
-- The whole file is checked before any command sends anything: a mistyped
-- file must never read as "no users" (a sync would remove everyone).
function M.read_users(path)
  local v, err = read_json(path)
  if not v then return nil, err end
  local shape = path .. ": expected a JSON array of users (or an object with a \"users\" array)"
  if type(v) ~= "table" then return nil, shape end
  if v.users ~= nil or next(v) ~= nil and v[1] == nil then
    if type(v.users) ~= "table" then return nil, shape end
    v = v.users
  end
  local n = #v
  for k in pairs(v) do
    if type(k) ~= "number" or k < 1 or k > n then return nil, shape end
  end
  local wf = require "account_activity.workflows"
  local users = {}
  for i = 1, n do
    local why = wf.user_problem(v[i])
    if why then return nil, path .. ": user #" .. i .. ": " .. why end
    local u = v[i]
    users[i] = { user_id = u.user_id and wf.user_id_of({ user_id = u.user_id }), access_token = u.access_token,
      access_token_secret = u.access_token_secret, oauth2 = u.oauth2 }
  end
  return users
end

-- The library names Lua arguments; a command line user knows flags and files.
local FLAG_OF = {
  api = "--api", env_name = "--env", base_url = "--base-url", ["opts.concurrency"] = "--concurrency",
  consumer_key = "the consumer key (app.consumer_key in --config, or TWITTER_CONSUMER_KEY)",
  consumer_secret = "the consumer secret (app.consumer_secret in --config, or TWITTER_CONSUMER_SECRET)",
  access_token = "the owner's access token (app.owner.access_token, or TWITTER_ACCESS_TOKEN)",
  access_token_secret = "the owner's token secret (app.owner.access_token_secret, or TWITTER_ACCESS_TOKEN_SECRET)",
  bearer_token = "the bearer token (app.bearer_token, or TWITTER_BEARER_TOKEN)",
  webhook_id = "ID", id = "ID", user = "the user (USER_ID / --users FILE)", url = "URL",
}

--- speak(msg) -> the same error in the words of the command line.
function M.speak(msg)
  msg = tostring(msg)
  local arg, fn, why = msg:match("^bad argument '([^']+)' to '([^']+)' %((.*)%)$")
  if not arg then
    local f, w = msg:match("^bad argument #%d+ to '([^']+)' %((.*)%)$")
    if not f then return msg end
    return (f:gsub("_", " ")) .. ": " .. w
  end
  local flag = FLAG_OF[arg]
  if flag then return flag .. ": " .. why end
  return (fn:gsub("_", " ")) .. ": " .. arg .. ": " .. why
end

local function build_client(o)
  local aa = require "account_activity"
  local endpoints = require "account_activity.endpoints"
  if o.api and not endpoints.FLAVOURS[o.api] then
    return nil, usage_error("--api must be enterprise, premium or v2, not " .. string.format("%q", o.api))
  end
  if o.api == "premium" and not o.env and not os.getenv("TWITTER_WEBHOOK_ENV") then
    return nil, usage_error("--api premium needs --env NAME (the dev environment label) or TWITTER_WEBHOOK_ENV")
  end
  local overrides = { api = o.api, env_name = o.env, base_url = o["base-url"] }
  local opts
  if o.config then
    local cfg, err = read_json(o.config)
    if not cfg then return nil, usage_error(err) end
    local app = type(cfg.app) == "table" and cfg.app or cfg
    local owner = type(app.owner) == "table" and app.owner or {}
    opts = {
      consumer_key = app.consumer_key, consumer_secret = app.consumer_secret,
      bearer_token = app.bearer_token, access_token = owner.access_token,
      access_token_secret = owner.access_token_secret,
      base_url = cfg.base_url or cfg.url or os.getenv("TWITTER_API_BASE_URL"),
      env_name = os.getenv("TWITTER_WEBHOOK_ENV"),
      client_id = app.client_id or os.getenv("TWITTER_CLIENT_ID"),
      client_secret = app.client_secret or os.getenv("TWITTER_CLIENT_SECRET"),
    }
    if type(opts.consumer_key) ~= "string" or type(opts.consumer_secret) ~= "string" then
      return nil, usage_error(o.config .. ": no app.consumer_key / app.consumer_secret")
    end
  else
    if not os.getenv("TWITTER_CONSUMER_KEY") or not os.getenv("TWITTER_CONSUMER_SECRET") then
      return nil, usage_error("no credentials: set TWITTER_CONSUMER_KEY and TWITTER_CONSUMER_SECRET"
        .. " or pass --config FILE")
    end
    opts = {}
  end
  for k, v in pairs(overrides) do if v ~= nil then opts[k] = v end end
  opts.token_store = aa.token_store.file(require("account_activity.cli.auth").store_path(o))
  local ok, c = pcall(function()
    if o.config then return aa.new(opts) end
    return aa.from_env(opts)
  end)
  if not ok then
    return nil, usage_error(M.speak((tostring(c):gsub("^[^:]*:%d+: ", ""))))
  end
  local owner
  if opts.access_token and opts.access_token_secret then
    owner = { access_token = opts.access_token, access_token_secret = opts.access_token_secret }
  elseif not o.config and os.getenv("TWITTER_ACCESS_TOKEN") and os.getenv("TWITTER_ACCESS_TOKEN_SECRET") then
    owner = { access_token = os.getenv("TWITTER_ACCESS_TOKEN"),
      access_token_secret = os.getenv("TWITTER_ACCESS_TOKEN_SECRET") }
  end
  return c, owner
end

---------------------------------------------------------------------------
-- Events (also used inside nginx by `events tail` and the demo)
---------------------------------------------------------------------------

local function sn(u) return type(u) == "table" and (u.screen_name and ("@" .. u.screen_name) or u.id_str) or "?" end

local function short(s, n)
  s = tostring(s or ""):gsub("[\r\n]+", " ")
  n = n or 60
  if #s > n then s = s:sub(1, n - 3) .. "..." end
  return s
end

--- A one-line summary of an event's item.
function M.event_summary(ev)
  local it = type(ev.item) == "table" and ev.item or {}
  local t = ev.type
  if t == "tweet_create" or t == "favorite" and it.favorited_status then
    if t == "favorite" then
      return sn(it.user) .. " liked " .. tostring(it.favorited_status.id_str)
    end
    return sn(it.user) .. ": " .. short(it.text or it.full_text)
  elseif t == "favorite" then
    return sn(it.user) .. " liked a post"
  elseif t == "follow" or t == "unfollow" or t == "block" or t == "unblock" or t == "mute" or t == "unmute" then
    return sn(it.source) .. " -> " .. sn(it.target)
  elseif t == "direct_message" then
    local mc = it.message_create or {}
    local md = mc.message_data or {}
    return "from " .. tostring(mc.sender_id) .. ": " .. short(md.text)
  elseif t == "direct_message_indicate_typing" or t == "direct_message_mark_read" then
    return "from " .. tostring(it.sender_id) .. " to " .. tostring(it.target and it.target.recipient_id)
  elseif t == "tweet_delete" then
    return "post " .. tostring(it.status and it.status.id) .. " deleted"
  elseif t == "replay_job_status" then
    return "replay job " .. tostring(it.job_id) .. ": " .. tostring(it.job_state)
  elseif t == "user_event" then
    local r = it.revoke or {}
    return "revoke: user " .. tostring(r.source and r.source.user_id) .. " revoked the app"
  end
  return ""
end

--- One line for an event record {t, type, for_user_id, summary}.
function M.event_line(rec)
  local clock = rec.t and os.date("%H:%M:%S", math.floor(rec.t)) or "--:--:--"
  return string.format("%s  %-31s for %-12s %s", clock, tostring(rec.type), tostring(rec.for_user_id or "-"),
    rec.summary or "")
end

local function lit(s) return string.format("%q", s) end

--- Start a local webhook endpoint: nginx running account_activity.nginx.serve
-- with `secret`, appending one JSON line per event ({t, type, for_user_id,
-- summary}) to `file`. opts: secret, file, port, path ("/webhook").
-- Returns the nginx server (with .hook_url) | nil, err.
function M.start_endpoint(opts)
  local path = opts.path or "/webhook"
  if not path:match("^/[%w/_%-%.]*$") then return nil, "bad --path " .. path end
  return (function()
    local nginx_process = require "account_activity.nginx_process"
    local server, err = nginx_process.start {
      ports = 1, workers = 1, port = opts.port,
      http = function(ports)
        return table.concat({
          "init_by_lua_block {",
          "  local cjson = require 'cjson'",
          "  local cli = require 'account_activity.cli'",
          "  local OUT = " .. lit(opts.file),
          "  package.loaded.aa_cli_endpoint = {",
          "    consumer_secret = " .. lit(opts.secret) .. ",",
          "    log = function() end,",
          "    on_event = function(ev)",
          "      local f = io.open(OUT, 'ab')",
          "      if not f then return end",
          "      f:write(cjson.encode { t = ngx.now(), type = ev.type, for_user_id = ev.for_user_id,",
          "        summary = cli.event_summary(ev) }, '\\n')",
          "      f:close()",
          "    end,",
          "  }",
          "}",
          "server {",
          "  listen 127.0.0.1:" .. (opts.port or ports[1]) .. ";",
          "  client_max_body_size 4m;",
          -- a prefix location: PATH/anything is a second URL on the same endpoint
          "  location " .. path .. " {",
          "    content_by_lua_block { require('account_activity.nginx').serve(package.loaded.aa_cli_endpoint) }",
          "  }",
          "}",
        }, "\n")
      end,
    }
    if not server then return nil, err end
    local port = opts.port or server.port
    server.hook_url = "http://127.0.0.1:" .. port .. path
    return server
  end)()
end

--- A follower of a JSON-lines file: poll() -> array of new records.
function M.follow(file)
  local pos = 0
  return function()
    local f = io.open(file, "rb")
    if not f then return {} end
    f:seek("set", pos)
    local recs = {}
    for line in f:lines() do
      local r = cjson.decode(line)
      if type(r) == "table" then recs[#recs + 1] = r end
    end
    pos = f:seek()
    f:close()
    return recs
  end
end

---------------------------------------------------------------------------
-- Commands
---------------------------------------------------------------------------

local C = {}

local function need(pos, n, what)
  if #pos < n then return usage_error("missing " .. what) end
  if #pos > n then return usage_error("unexpected argument '" .. pos[n + 1] .. "'") end
  return nil
end

local function check_id(s, what)
  if type(s) ~= "string" or not s:match("^%d+$") or #s > 19 then
    return usage_error(what .. " must be a decimal id, got '" .. tostring(s) .. "'")
  end
end

-- USER_ID's tokens: its entry in --users FILE, else an OAuth 2.0 user of
-- the token store, else nil (-> user, or nil and a usage error).
local function user_for(c, o, user_id)
  if o.users then
    local users, uerr = M.read_users(o.users)
    if not users then return nil, usage_error(uerr) end
    for _, u in ipairs(users) do
      if u.user_id == user_id and (u.access_token or u.oauth2 ~= nil) then return u end
    end
  end
  if c.token_store:get(user_id) then return { user_id = user_id, oauth2 = true } end
  return nil
end

local function emit(ctx, value, human)
  if ctx.o.json then
    ctx.out:write(encode(plain(value)), "\n")
  else
    human(ctx.out)
  end
end

local function fail_report(ctx, report)
  if ctx.o.json then return end
  for _, f in ipairs(report.failed or {}) do
    ctx.err:write(PROG, ": ", f.action or "?", " ", f.user_id or "", ": ", tostring(f.err), "\n")
  end
end

local function report_line(r)
  local parts = {}
  for _, k in ipairs { "added", "kept", "removed", "failed" } do
    parts[#parts + 1] = k .. " " .. #(r[k] or {})
  end
  local s = table.concat(parts, ", ")
  if r.elapsed then s = s .. string.format(" in %.2f s", r.elapsed) end
  if r.waited and r.waited > 0 then s = s .. string.format(" (%.0f s of it waiting for the rate limit)", r.waited) end
  return s
end

local function webhook_rows(list)
  local rows = {}
  for _, w in ipairs(list) do
    rows[#rows + 1] = { w.id, w.url, yesno(w.valid), w.created_at or "", w.environment }
  end
  return rows
end

function C.webhooks(ctx, pos)
  local sub = table.remove(pos, 1)
  local c = ctx.client
  if sub == "list" then
    local e = need(pos, 0, "") if e then return e end
    local list, err = c:webhooks()
    if not list then return err end
    emit(ctx, list, function(out)
      if #list == 0 then out:write("no webhooks\n") return end
      table_out(out, { "ID", "URL", "VALID", "CREATED" }, webhook_rows(list))
    end)
  elseif sub == "add" or sub == "ensure" then
    local e = need(pos, 1, "URL") if e then return e end
    local wh, info
    if sub == "add" then
      wh, info = c:register_webhook(pos[1])
      info = wh and { action = "registered" } or info
    else
      wh, info = c:ensure_webhook(pos[1], { replace = ctx.o.replace })
    end
    if not wh then return info end
    emit(ctx, { webhook = wh, action = info.action, replaced = info.replaced }, function(out)
      out:write(info.action, " ", wh.id, " ", wh.url, " valid=", yesno(wh.valid), "\n")
      if info.replaced then out:write("deleted ", info.replaced.id, " ", info.replaced.url, "\n") end
    end)
  elseif sub == "validate" or sub == "rm" then
    local e = need(pos, 1, "ID") or check_id(pos[1], "ID") if e then return e end
    local ok, err
    if sub == "validate" then ok, err = c:validate_webhook(pos[1]) else ok, err = c:delete_webhook(pos[1]) end
    if not ok then return err end
    emit(ctx, { ok = true, id = pos[1], action = sub == "rm" and "deleted" or "validated" }, function(out)
      out:write(sub == "rm" and "deleted " or "validated ", pos[1], "\n")
    end)
  else
    return usage_error(sub and ("unknown webhooks command '" .. sub .. "'") or "missing webhooks command")
  end
end

function C.subs(ctx, pos)
  local sub = table.remove(pos, 1)
  local c, o = ctx.client, ctx.o
  if sub == "list" then
    local e = need(pos, 1, "ID") or check_id(pos[1], "ID") if e then return e end
    local ids, err = c:subscriptions(pos[1])
    if not ids then return err end
    emit(ctx, { webhook_id = pos[1], user_ids = array(ids) }, function(out)
      out:write("USER_ID\n")
      for _, id in ipairs(ids) do out:write(id, "\n") end
      out:write(#ids, " subscription", #ids == 1 and "" or "s", "\n")
    end)
  elseif sub == "count" then
    local e = need(pos, 0, "") if e then return e end
    local n, err = c:subscription_count()
    if not n then return err end
    emit(ctx, n, function(out)
      table_out(out, { "ALL", "DIRECT_MESSAGES", "ACCOUNT" }, { { n.all, n.direct_messages, n.account_name } })
    end)
  elseif sub == "rm" then
    local e = need(pos, 2, "ID USER_ID") or check_id(pos[1], "ID") or check_id(pos[2], "USER_ID")
    if e then return e end
    local ok, err = c:unsubscribe(pos[1], pos[2])
    if not ok then return err end
    emit(ctx, { ok = true, webhook_id = pos[1], user_id = pos[2] }, function(out)
      out:write("unsubscribed ", pos[2], " from ", pos[1], "\n")
    end)
  elseif sub == "add" or sub == "check" then
    local e = need(pos, 1, "ID") or check_id(pos[1], "ID") if e then return e end
    local users
    if o.users then
      local err
      users, err = M.read_users(o.users)
      if not users then return usage_error(err) end
    elseif o["user-id"] then
      local e2 = check_id(o["user-id"], "--user-id") if e2 then return e2 end
      users = { { user_id = o["user-id"], oauth2 = true } } -- from the token store
    end
    if sub == "add" then
      if users then
        -- the file names who is subscribed: the configured owner is not in it
        local r = c:subscribe_many(pos[1], users, ctx.job_opts)
        emit(ctx, r, function(out) out:write(report_line(r), "\n") end)
        fail_report(ctx, r)
        if not r.ok then return "failed" end
        return
      end
      if not ctx.owner then
        return usage_error("subs add needs the user's access token (TWITTER_ACCESS_TOKEN/_SECRET), --users FILE"
          .. " (OAuth 2.0 users too) or, on api v2, --user-id ID of a user in the token store")
      end
      local ok, err = c:subscribe(pos[1], ctx.owner)
      if not ok and err.kind ~= "conflict" then return err end
      emit(ctx, { ok = true, webhook_id = pos[1], already = not ok }, function(out)
        out:write(ok and "subscribed\n" or "already subscribed\n")
      end)
    else
      if not users then
        if not ctx.owner then
          return usage_error("subs check needs the user's access token (TWITTER_ACCESS_TOKEN/_SECRET) or --users FILE")
        end
        local yes, err = c:is_subscribed(pos[1], ctx.owner)
        if yes == nil then return err end
        emit(ctx, { webhook_id = pos[1], subscribed = yes }, function(out)
          out:write(yes and "subscribed\n" or "not subscribed\n")
        end)
        return
      end
      local rows, list = {}, {}
      for _, u in ipairs(users) do
        local yes, err = c:is_subscribed(pos[1], u)
        if yes == nil then return err end
        rows[#rows + 1] = { u.user_id or "?", yesno(yes) }
        list[#list + 1] = { user_id = u.user_id, subscribed = yes }
      end
      emit(ctx, list, function(out) table_out(out, { "USER_ID", "SUBSCRIBED" }, rows) end)
    end
  elseif sub == "sync" then
    local e = need(pos, 2, "ID FILE") or check_id(pos[1], "ID") if e then return e end
    local users, err = M.read_users(pos[2])
    if not users then return usage_error(err) end
    if #users == 0 and not o["allow-removals"] then
      return usage_error(pos[2] .. " holds no users: a sync to nobody removes every subscription"
        .. " (pass --allow-removals if that is meant)")
    end
    local jo = {}
    for k, v in pairs(ctx.job_opts) do jo[k] = v end
    jo.dry_run, jo.remove = o["dry-run"] == true, not o["keep-others"]
    jo.allow_removals = o["allow-removals"] == true
    local r, rerr = c:sync_subscriptions(pos[1], users, jo)
    if not r and rerr.kind == "refused" then
      return usage_error(rerr.message:gsub("Pass opts%.allow_removals = true", "Pass --allow-removals") .. "")
    end
    if not r then return rerr end
    emit(ctx, r, function(out)
      out:write(r.dry_run and "dry run: would have " or "", report_line(r), "\n")
    end)
    fail_report(ctx, r)
    if not r.ok then return "failed" end
  else
    return usage_error(sub and ("unknown subs command '" .. sub .. "'") or "missing subs command")
  end
end

function C.replay(ctx, pos)
  local e = need(pos, 3, "ID FROM TO") or check_id(pos[1], "ID") if e then return e end
  local wf = require "account_activity.workflows"
  local from, ferr = wf.parse_time(pos[2])
  if not from then return usage_error("FROM: " .. ferr) end
  local to, terr = wf.parse_time(pos[3])
  if not to then return usage_error("TO: " .. terr) end
  local ok, job, err = pcall(ctx.client.replay, ctx.client, pos[1], from, to)
  if not ok then return usage_error((tostring(job):gsub("^[^:]*:%d+: ", ""))) end
  if not job then return err end
  emit(ctx, job, function(out) out:write("replay job ", tostring(job.job_id), " created ", tostring(job.created_at), "\n") end)
end

function C.health(ctx, pos)
  local e = need(pos, 1, "ID or URL") if e then return e end
  local h = ctx.client:health(pos[1], { url = ctx.o.url })
  emit(ctx, h, function(out)
    local rows = {
      { "webhook", tostring(h.id or "?") .. " " .. tostring(h.url or "") },
      { "exists", yesno(h.exists) },
      { "valid", yesno(h.valid) },
      { "subscriptions", h.subscriptions or "?" },
    }
    if h.crc then
      rows[#rows + 1] = { "crc", h.crc.ok and "ok" or ("FAILED: " .. tostring(h.crc.reason)) }
      rows[#rows + 1] = { "crc latency", string.format("%.0f ms (budget %g s)", h.crc.latency * 1000, h.crc.budget) }
    end
    rows[#rows + 1] = { "healthy", yesno(h.ok) }
    table_out(out, { "CHECK", "RESULT" }, rows)
  end)
  if not h.ok then
    if not ctx.o.json then
      for _, p in ipairs(h.problems) do ctx.err:write(PROG, ": ", p, "\n") end
    end
    return "failed"
  end
end

function C.crc(ctx, pos)
  if #pos == 2 then
    return usage_error("crc takes only TOKEN: a secret on the command line is visible to every user of this"
      .. " machine (ps); give it with --config FILE or TWITTER_CONSUMER_SECRET")
  end
  local e = need(pos, 1, "TOKEN") if e then return e end
  local secret = ctx.secret
  if type(secret) ~= "string" or secret == "" then
    return usage_error("crc needs the consumer secret: --config FILE or TWITTER_CONSUMER_SECRET")
  end
  local token = require("account_activity.crc").response(secret, pos[1])
  emit(ctx, { response_token = token }, function(out) out:write(token, "\n") end)
end

local function sleep(s)
  local ok, core = pcall(require, "account_activity.core")
  if ok and core.sleep then return core.sleep(s) end
  os.execute("sleep " .. s)
end

function C.events(ctx, pos)
  local sub = table.remove(pos, 1)
  if sub == "consume" or sub == "pending" or sub == "dead" then
    local e = need(pos, 0, "") if e then return e end
    return require("account_activity.cli.durable")[sub](ctx,
      { encode = encode, event_line = M.event_line, event_summary = M.event_summary })
  end
  if sub ~= "tail" then return usage_error("usage: events tail | consume | pending | dead (see events --help)") end
  local e = need(pos, 0, "") if e then return e end
  local secret = ctx.secret
  if not secret then return usage_error("events tail needs the consumer secret (--config FILE or TWITTER_CONSUMER_SECRET)") end
  local count = tonumber(ctx.o.count)
  local timeout = tonumber(ctx.o.timeout)
  local file = os.tmpname()
  -- TERM and HUP, like Ctrl-C, stop the endpoint before we exit.
  local core = require "account_activity.core"
  local STOP_SIGNALS = { "INT", "TERM", "HUP" }
  core.signal_catch(STOP_SIGNALS)
  local server, err = M.start_endpoint { secret = secret, file = file, port = tonumber(ctx.o.port), path = ctx.o.path }
  if not server then
    core.signal_reset(STOP_SIGNALS)
    os.remove(file)
    return "cannot start the endpoint: " .. (type(err) == "table" and err.message or tostring(err))
  end
  ctx.err:write("listening on ", server.hook_url, " (Ctrl-C stops)\n")
  local poll = M.follow(file)
  local seen = 0
  local ok, perr = pcall(function()
    local t0 = os.time()
    while true do
      for _, r in ipairs(poll()) do
        seen = seen + 1
        if ctx.o.json then ctx.out:write(encode(r), "\n") else ctx.out:write(M.event_line(r), "\n") end
        ctx.out:flush()
        if count and seen >= count then return end
      end
      if timeout and os.time() - t0 >= timeout then return end
      if core.signal_pending() then return end
      sleep(0.1)
    end
  end)
  server:stop()
  core.signal_reset(STOP_SIGNALS)
  os.remove(file)
  if not ok and not tostring(perr):find("interrupted", 1, true) then return tostring(perr) end
end

-- Ctrl-C ends a blocking loop through lua.c's "interrupted!" error; SIGTERM
-- and SIGHUP need the C core's flags (caught where the core has them).
local function catch_stop_signals()
  local ok, core = pcall(require, "account_activity.core")
  if ok and type(core.signal_catch) == "function" then
    core.signal_catch { "INT", "TERM", "HUP" }
    return function() return core.signal_pending() end,
      function() core.signal_reset { "INT", "TERM", "HUP" } end
  end
  return function() return nil end, function() end
end

function C.up(ctx, pos)
  local e = need(pos, 0, "") if e then return e end
  local c, o = ctx.client, ctx.o
  local secret = ctx.secret
  if not secret then return usage_error("up needs the consumer secret (--config FILE or TWITTER_CONSUMER_SECRET)") end
  local users
  if o.users then
    local uerr
    users, uerr = M.read_users(o.users)
    if not users then return usage_error(uerr) end
  elseif ctx.owner then
    users = { ctx.owner }
  else
    users = {}
  end
  if o.url and not tostring(o.url):match("^https?://[^%s]+$") then
    return usage_error("--url must be an http(s) URL, got " .. tostring(o.url))
  end
  local count, timeout = tonumber(o.count), tonumber(o.timeout)
  local file = os.tmpname()
  local server, serr = M.start_endpoint { secret = secret, file = file, port = tonumber(o.port), path = o.path }
  if not server then os.remove(file) return "cannot start the endpoint: " .. tostring(serr) end
  local pending_signal, reset_signals = catch_stop_signals()
  local wh, info, added = nil, nil, {}
  local function undo()
    reset_signals()
    if wh and not o.keep then
      if info and info.action == "registered" then
        local r = c:teardown(wh.id)
        ctx.err:write("up: deleted webhook ", wh.id, r and r.ok and "" or (" (not all: " .. tostring(r) .. ")"), "\n")
      else
        for _, id in ipairs(added) do c:unsubscribe(wh.id, id) end
        ctx.err:write("up: removed the ", #added, " subscriptions it added; webhook ", wh.id, " kept\n")
      end
    end
    server:stop()
    os.remove(file)
  end
  local ok, perr = pcall(function()
    local url = o.url or server.hook_url
    local werr
    wh, info = c:ensure_webhook(url)
    if not wh then werr = info; info = nil; error({ api = werr }) end
    local report = c:subscribe_many(wh.id, users, ctx.job_opts)
    added = report.added
    ctx.err:write(string.format("up: webhook %s %s for %s; %s; listening on %s (Ctrl-C tears down)\n",
      wh.id, info.action, url, report_line(report), server.hook_url))
    fail_report(ctx, report)
    local poll, seen, t0 = M.follow(file), 0, os.time()
    while true do
      for _, r in ipairs(poll()) do
        seen = seen + 1
        if o.json then ctx.out:write(encode(r), "\n") else ctx.out:write(M.event_line(r), "\n") end
        ctx.out:flush()
        if count and seen >= count then return end
      end
      if timeout and os.time() - t0 >= timeout then return end
      local sig = pending_signal()
      if sig then ctx.err:write("up: ", sig == "INT" and "interrupted" or ("SIG" .. sig), ", tearing down\n") return end
      sleep(0.1)
    end
  end)
  undo()
  if not ok then
    if type(perr) == "table" and perr.api then return perr.api end
    if not tostring(perr):find("interrupted", 1, true) then return tostring(perr) end
  end
end

local function activity_missing(c, name)
  if type(c[name]) ~= "function" then
    return "activity: this build has no X Activity API support (client:" .. name
      .. " is missing; lua/account_activity/activity.lua not installed)"
  end
end

function C.activity(ctx, pos)
  local sub = table.remove(pos, 1)
  local c, o = ctx.client, ctx.o
  local function call(fn, ...)
    local ok, a, b = pcall(fn, c, ...)
    if not ok then return nil, usage_error(M.speak((tostring(a):gsub("^[^:]*:%d+: ", "")))) end
    return a, b
  end
  if sub == "list" then
    local m = activity_missing(c, "activity_subscriptions") if m then return m end
    local list, err = call(c.activity_subscriptions, { all = o.all or nil })
    if not list then return err end
    emit(ctx, list, function(out)
      local rows = {}
      for _, s in ipairs(list) do
        local f = s.filter or {}
        rows[#rows + 1] = { s.id, s.event_type, f.user_id or f.keyword or "", s.tag or "", s.webhook_id or "" }
      end
      table_out(out, { "ID", "EVENT_TYPE", "FILTER", "TAG", "WEBHOOK" }, rows)
    end)
  elseif sub == "add" then
    local e = need(pos, 1, "EVENT_TYPE") if e then return e end
    local m = activity_missing(c, "activity_subscribe") if m then return m end
    local filter = { user_id = o["user-id"], keyword = o.keyword }
    local user
    if o["user-id"] then
      local uerr
      user, uerr = user_for(c, o, o["user-id"])
      if uerr then return uerr end
    end
    local s, err = call(c.activity_subscribe, { event_type = pos[1], filter = filter, tag = o.tag,
      webhook_id = o.webhook, user = user })
    if not s then return err end
    emit(ctx, s, function(out) out:write("created ", tostring(s.id), " ", tostring(s.event_type), "\n") end)
  elseif sub == "rm" then
    local e = need(pos, 1, "ID") if e then return e end
    local m = activity_missing(c, "activity_unsubscribe") if m then return m end
    local ok, err = call(c.activity_unsubscribe, pos[1])
    if not ok then return err end
    emit(ctx, { ok = true, id = pos[1] }, function(out) out:write("deleted ", pos[1], "\n") end)
  elseif sub == "mirror" then
    local e = need(pos, 1, "USER_ID") or check_id(pos[1], "USER_ID") if e then return e end
    if not o.webhook then return usage_error("activity mirror needs --webhook ID") end
    local m = activity_missing(c, "mirror_user") if m then return m end
    local user, uerr = user_for(c, o, pos[1])
    if uerr then return uerr end
    user = user or { user_id = pos[1] }
    local r, err = call(c.mirror_user, o.webhook, user, {})
    if not r then return err end
    emit(ctx, r, function(out)
      out:write(string.format("created %d, existing %d, failed %d\n", #(r.created or {}), #(r.existing or {}),
        #(r.failed or {})))
    end)
    if r.failed and #r.failed > 0 then return "failed" end
  elseif sub == "stream" then
    local e = need(pos, 0, "") if e then return e end
    local m = activity_missing(c, "stream") if m then return m end
    local st, err = call(c.stream, { backfill_minutes = tonumber(o.backfill) })
    if not st then return err end
    local count, n = tonumber(o.count), 0
    local ok, perr = pcall(function()
      for ev in st:events() do
        n = n + 1
        local rec = { t = os.time(), type = ev.type, for_user_id = ev.for_user_id, summary = ev.id and ("id " .. ev.id) or "" }
        if o.json then ctx.out:write(encode(rec), "\n") else ctx.out:write(M.event_line(rec), "\n") end
        ctx.out:flush()
        if count and n >= count then break end
      end
    end)
    local serr = st.err
    st:close()
    if not ok and not tostring(perr):find("interrupted", 1, true) then return tostring(perr) end
    if serr and not (count and n >= count) then return serr end
  else
    return usage_error(sub and ("unknown activity command '" .. sub .. "'") or "missing activity command")
  end
end

---------------------------------------------------------------------------
-- main
---------------------------------------------------------------------------

function C.auth(ctx, pos)
  return require("account_activity.cli.auth").run(ctx, pos, M)
end
-- for the command families in cli/
M.need, M.check_id, M.emit, M.table_out = need, check_id, emit, table_out

local NO_CLIENT = { crc = true }

--- main(argv, out, err) -> exit status
function M.main(argv, out, errout)
  out, errout = out or io.stdout, errout or io.stderr
  argv = argv or {}
  local cmd = argv[1]
  if cmd == "emulator" then
    local rest = {}
    for i = 2, #argv do rest[#rest + 1] = argv[i] end
    return require("account_activity.emulator.cli").main(rest, out, errout)
  end
  local o, pos = parse(argv)
  local function die(e)
    local usage = type(e) == "table" and e.usage
    if o and o.json then
      -- a script reading --json output gets its errors as JSON too
      local rec = { ok = false, usage = usage or nil }
      if usage then
        rec.error = { kind = "usage", message = e.message }
      elseif type(e) == "table" then
        rec.error = { kind = e.kind, status = e.status, code = e.code, message = (tostring(e):gsub("[\r\n]+", " ")) }
      else
        rec.error = { kind = "error", message = (tostring(e):gsub("[\r\n]+", " ")) }
      end
      errout:write(encode(rec), "\n")
      return usage and 2 or 1
    end
    if usage then
      errout:write(PROG, ": ", e.message, " (see --help)\n")
      return 2
    end
    errout:write(PROG, ": ", (tostring(e):gsub("[\r\n]+", " ")), "\n")
    return 1
  end
  if not o then return die(pos) end
  if o.version then
    local v = require("account_activity.core").version()
    out:write(PROG, " ", v.version, " (libcurl ", v.libcurl, ", ", v.openssl, ", ", v.lua, ")\n")
    return 0
  end
  cmd = table.remove(pos, 1)
  if not cmd then
    if o.help then out:write(GLOBAL_HELP) return 0 end
    return die(usage_error("missing command"))
  end
  if cmd == "help" then
    local topic = pos[1]
    out:write(topic and HELP[topic] or GLOBAL_HELP)
    return 0
  end
  if not C[cmd] then return die(usage_error("unknown command '" .. cmd .. "'")) end
  if o.help then
    out:write(HELP[cmd] or GLOBAL_HELP)
    return 0
  end
  local conc = o.concurrency and tonumber(o.concurrency)
  if o.concurrency and (not conc or conc < 1 or conc > 1024 or conc ~= math.floor(conc)) then
    return die(usage_error("--concurrency must be an integer from 1 to 1024"))
  end
  local ctx = { o = o, out = out, err = errout,
    job_opts = { concurrency = conc, progress = not o["no-progress"] and not o.json } }
  if not NO_CLIENT[cmd] and cmd ~= "events" then
    local c, cerr = build_client(o)
    if not c then return die(cerr) end
    ctx.client, ctx.owner = c, cerr
  end
  if cmd == "events" or cmd == "crc" or cmd == "up" then
    if o.config then
      local cfg, err = read_json(o.config)
      if not cfg then return die(usage_error(err)) end
      ctx.secret = type(cfg.app) == "table" and cfg.app.consumer_secret or cfg.consumer_secret
    else
      ctx.secret = os.getenv("TWITTER_CONSUMER_SECRET")
    end
  end
  local ok, r = pcall(C[cmd], ctx, pos)
  if ctx.client then ctx.client:close() end
  if not ok then
    local msg = tostring(r):gsub("^[^:]*:%d+: ", "")
    -- The library raises on bad arguments: the command line was wrong.
    if msg:find("^bad argument") then return die(usage_error(M.speak(msg))) end
    return die(msg)
  end
  if r == nil then return 0 end
  if r == "failed" then return 1 end
  return die(r)
end

return M
