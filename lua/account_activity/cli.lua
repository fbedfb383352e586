--- `account-activity`: the command line over the client and the workflows.
--
--   account-activity [--config FILE] [--api NAME] [--env NAME] [--base-url URL] [--json] COMMAND ...
--
-- main(argv, out, err) returns the exit status: 0 success, 1 an API error (or
-- a job with failures), 2 a usage error. Errors are one line on stderr;
-- no secret is ever printed (reports are stripped of the users' tokens).
-- Loads under Lua 5.4 and LuaJIT (nginx workers use event_line()).
local M = {}

local kit = require "account_activity.cli.kit"
local usage_error, encode, read_json = kit.usage_error, kit.encode, kit.read_json
M.read_users, M.speak = kit.read_users, kit.speak

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
-- Commands
---------------------------------------------------------------------------

local C = {}
-- main
---------------------------------------------------------------------------

local FAMILY = { webhooks = "webhooks", health = "webhooks", crc = "webhooks", subs = "subs", replay = "subs",
  events = "up", up = "up", activity = "activity" }
for cmd, file in pairs(FAMILY) do
  C[cmd] = function(ctx, pos) return require("account_activity.cli." .. file)[cmd](ctx, pos) end
end

function C.auth(ctx, pos)
  return require("account_activity.cli.auth").run(ctx, pos, M)
end
-- what cli/auth.lua is handed (and older callers found here)
for k, v in pairs(kit) do if M[k] == nil then M[k] = v end end
-- the endpoint and event lines, where callers have always found them
local events = require "account_activity.cli.events"
M.event_summary, M.event_line, M.start_endpoint, M.follow =
  events.event_summary, events.event_line, events.start_endpoint, events.follow

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
