--- One-line docs for every public function, kept as data so the REPL can
-- answer `aa.help()`, `aa.help("subscribe")` or `aa.help(client.subscribe)`.
-- luacheck: no max line length
local M = {}

-- { key, signature, one line }; key is how help() finds it by name.
M.entries = {
  -- module functions
  { "new", "aa.new(opts)", "Build a client: consumer_key/secret required; access_token(_secret), bearer_token, client_id, client_secret, token_store, authorize_url, api = \"enterprise\"|\"premium\"|\"v2\", env_name, base_url, timeout, connect_timeout, retries, max_wait, ca_file, ca_path, insecure, user_agent, transport, sleep, clock." },
  { "from_env", "aa.from_env([overrides])", "Build a client from TWITTER_CONSUMER_KEY, _SECRET, TWITTER_ACCESS_TOKEN(_SECRET), TWITTER_BEARER_TOKEN, TWITTER_WEBHOOK_ENV, TWITTER_API_BASE_URL, TWITTER_CLIENT_ID, TWITTER_CLIENT_SECRET." },
  { "token_store.memory", "aa.token_store.memory()", "An OAuth 2.0 token store for one process (the client's default): get/put/delete/list/lock." },
  { "token_store.file", "aa.token_store.file(path, {lock_timeout})", "An OAuth 2.0 token store in one JSON file (mode 0600, atomic rename), shared by processes; refreshes serialised with flock." },
  { "help", "aa.help([name or function])", "Print this list, or the doc line of one function (by name or by value)." },
  { "crc_response", "aa.crc_response(consumer_secret, crc_token)", "The CRC answer: \"sha256=\" .. base64(HMAC-SHA256(consumer_secret, crc_token))." },
  { "verify_signature", "aa.verify_signature(consumer_secret, raw_body, header_value)", "Constant-time check of x-twitter-webhooks-signature: true, or false and a reason." },
  { "parse_events", "aa.parse_events(raw_body_or_table)", "An AAA or XAA envelope -> array of events {type, for_user_id, item, envelope}." },
  { "router", "aa.router()", "An event router: r:on(type or \"*\", fn), r:for_user(id):on(...), r:dispatch(events or raw_body)." },
  { "webhook_handler", "aa.webhook_handler{consumer_secret, on_event or router}", "A pure handler(request) -> response: CRC on GET, signature check and dispatch on POST." },
  { "consumer", "aa.consumer{redis, stream, group, name, router, batch, block_ms, claim_idle_ms, max_attempts, dead_letter, on_error, log}", "A Redis Streams consumer: :run() until :stop()/SIGINT/SIGTERM, :step() -> {processed, failed, claimed, dead}, :stats() (+ pending); acks after every handler returned; on_error(err, entry_id, attempt) hears of each failure." },
  { "redis.connect", "require(\"account_activity.redis\").connect{host, port, password, db, timeout_ms}", "The Redis client of the durable hand-off (cosockets in nginx, hiredis elsewhere): :command(argv), :pipeline(cmds), :script(src, keys, args), :close()." },
  { "redis.options", "require(\"account_activity.redis\").options(opts)", "Check connect()'s options once (a caller that connects per request passes the result)." },
  { "redis.shared", "require(\"account_activity.redis\").shared(opts)", "Inside nginx: this worker's one connection for these options; the commands its requests have in flight go in one send (:command, :script; :close does nothing). nil outside nginx or without ngx.semaphore." },
  { "redis.parse_address", "require(\"account_activity.redis\").parse_address(s)", "\"host:port\", \"[v6]:port\" or \"host\" -> host, port (6379), or nil when malformed." },
  { "serve", "require(\"account_activity.nginx\").serve(opts)", "The webhook handler inside content_by_lua_block (never blocks the worker); sink = {redis, stream, maxlen, dedupe_ttl} persists to Redis before the 200; dedupe_dict, async, max_running_timers." },
  -- client methods
  { "register_webhook", "client:register_webhook(url)", "Register a webhook URL (X runs a CRC against it first) -> webhook {id, url, valid, created_at}." },
  { "webhooks", "client:webhooks()", "List this app's webhooks -> array of {id, url, valid, created_at}." },
  { "webhook", "client:webhook(id)", "One webhook by id, from the list -> webhook, or nil + err with kind \"not_found\"." },
  { "validate_webhook", "client:validate_webhook(id)", "Ask X to re-run the CRC and re-enable the webhook -> true (err kind \"invalid_webhook\" if it fails)." },
  { "delete_webhook", "client:delete_webhook(id)", "Remove a webhook -> true." },
  { "subscribe", "client:subscribe(webhook_id, user)", "Subscribe a user (their own tokens: {user_id, access_token, access_token_secret}) to all events -> true." },
  { "is_subscribed", "client:is_subscribed(webhook_id, user)", "Is this user (their tokens) subscribed? -> true or false." },
  { "subscriptions", "client:subscriptions(webhook_id)", "App-only list of subscribed user ids -> array of id strings (raw body in response.json)." },
  { "unsubscribe", "client:unsubscribe(webhook_id, user or user_id)", "Remove a subscription: a user table uses their tokens (v1.1), an id string the app bearer -> true." },
  { "subscription_count", "client:subscription_count()", "App-only count -> {all = n, direct_messages = n, provisioned = n, account_name = s}." },
  { "replay", "client:replay(webhook_id, from, to)", "Start a replay job; from/to are os.time() numbers or \"YYYYMMDDhhmm\" UTC -> {job_id, created_at}." },
  { "bearer_token", "client:bearer_token()", "The app-only bearer token: configured, cached, or fetched from /oauth2/token -> token string." },
  { "invalidate_bearer_token", "client:invalidate_bearer_token()", "Revoke the app-only bearer token (POST /oauth2/invalidate_token) and forget it -> true." },
  { "request", "client:request(method, path, opts)", "Any endpoint, signed: opts.auth = \"user\"|\"app\"|\"subscriber\", opts.query, opts.json, opts.form, opts.user (OAuth 1.0a, or OAuth 2.0 {user_id, oauth2}), opts.oauth2 (prefer OAuth 2.0 for a user with both) -> response." },
  { "close", "client:close()", "Drop the client's HTTP connection (it reconnects on next use)." },
  { "credentials", "client:credentials()", "Which credentials are set -> {consumer_key = true, access_token = bool, bearer_token = bool, ...} (never values)." },
  -- OAuth 2.0 user context (oauth2.lua)
  { "oauth2_authorize_url", "client:oauth2_authorize_url{redirect_uri, scopes, state}", "The consent URL (PKCE S256, client_id option) -> url, login {verifier, state, redirect_uri}: keep login until the redirect returns." },
  { "oauth2_exchange", "client:oauth2_exchange(login, code_or_callback_url)", "Code (or the whole callback URL: state checked) -> token {access_token, refresh_token, expires_at, scope, token_type, user_id}, stored in token_store." },
  { "oauth2_refresh", "client:oauth2_refresh(token_or_user_id)", "Rotate a user's tokens under the store's lock; the new token is stored before it returns -> token." },
  { "oauth2_revoke", "client:oauth2_revoke(token_or_user_id)", "Revoke the refresh and access tokens at X and drop them from token_store -> true." },
  -- workflows
  { "ensure_webhook", "client:ensure_webhook(url, opts)", "Idempotent: reuse, re-validate or register the webhook for url; opts.replace frees the last slot." },
  { "sync_subscriptions", "client:sync_subscriptions(webhook_id, users, opts)", "Make the subscribed set equal users, concurrently -> report {added, kept, removed, failed}." },
  { "subscribe_many", "client:subscribe_many(webhook_id, users, opts)", "Subscribe many users concurrently; \"already subscribed\" counts as success -> report." },
  { "migrate_webhook", "client:migrate_webhook(old_id, new_url, opts)", "Register new_url, move every subscription (opts.users), delete the old webhook; safe to re-run." },
  { "teardown", "client:teardown(webhook_id)", "Remove every subscription, then the webhook." },
  { "health", "client:health(webhook_id or url)", "Exists? valid? how many subscriptions? and our CRC answer and latency at the public URL." },
  -- X Activity API
  { "activity_subscribe", "client:activity_subscribe{event_type, filter, tag, webhook_id, user}", "Create one X Activity API subscription." },
  { "activity_subscriptions", "client:activity_subscriptions{max_results, pagination_token, all, user}", "List X Activity API subscriptions (all pages with all = true; user: with that user's tokens instead of the app bearer)." },
  { "activity_update", "client:activity_update(id, {tag, webhook_id})", "Update an X Activity API subscription." },
  { "activity_unsubscribe", "client:activity_unsubscribe(id)", "Delete an X Activity API subscription." },
  { "activity_unsubscribe_many", "client:activity_unsubscribe_many(ids)", "Delete many X Activity API subscriptions -> per-id report." },
  { "mirror_user", "client:mirror_user(webhook_id, user, opts)", "The XAA subscriptions covering what an AAA subscription delivered for the user." },
  { "unmirror_user", "client:unmirror_user(webhook_id, user, opts)", "Remove the XAA subscriptions mirror_user created." },
  { "stream", "client:stream{backfill_minutes, start_time, end_time}", "Iterator over GET /2/activity/stream events, reconnecting; :close()." },
  -- the C core (require "account_activity.core")
  { "core.hmac_sha1", "core.hmac_sha1(key, msg)", "HMAC-SHA1 -> raw 20 bytes." },
  { "core.hmac_sha256", "core.hmac_sha256(key, msg)", "HMAC-SHA256 -> raw 32 bytes." },
  { "core.base64_encode", "core.base64_encode(s)", "Standard base64 with padding." },
  { "core.base64_decode", "core.base64_decode(s)", "Strict base64 (padding required, no whitespace) -> bytes, or nil and an error." },
  { "core.hmac_sha256_check", "core.hmac_sha256_check(key, msg, b64, init)", "Constant-time check of a base64 HMAC-SHA256 (from byte init) -> true, or false and \"base64\" | \"length\" | \"mismatch\"." },
  { "core.base64_alphabet", "core.base64_alphabet(s)", "true when every byte of s is in the base64 or base64url alphabet (with =)." },
  { "core.json_decode", "core.json_decode(s, max_depth or opts)", "Strict RFC 8259 JSON -> the value lua-cjson would give (floats, cjson.null), or nil and \"<reason> at byte <n>\"; max_depth 1..1000 (default 1000); opts = { max_depth, lone_surrogates = \"replace\" (U+FFFD, default \"error\"), big_integers = \"string\" (integers past 2^53 as exact digits, default \"number\") }." },
  { "core.percent_encode", "core.percent_encode(s)", "RFC 3986: every byte but A-Za-z0-9-._~ as %XX (uppercase); space is %20." },
  { "core.percent_decode", "core.percent_decode(s, plus_is_space)", "Undo %XX escapes (invalid ones kept); '+' becomes a space when asked." },
  { "core.equal", "core.equal(a, b)", "Constant-time comparison of two strings (CRYPTO_memcmp) -> boolean." },
  { "core.oauth1_header", "core.oauth1_header{method, url, params, consumer_key, consumer_secret, token, token_secret, nonce, timestamp}", "The OAuth 1.0a Authorization header value (RFC 5849, HMAC-SHA1); nonce and timestamp made when absent." },
  { "core.oauth1_signature", "core.oauth1_signature{... as oauth1_header, nonce and timestamp required}", "The signature and the signature base string (for verifiers)." },
  { "core.nonce", "core.nonce()", "32 alphanumerics from OpenSSL's RAND_bytes." },
  { "core.random_bytes", "core.random_bytes(n)", "n bytes (0..2^20) from OpenSSL's RAND_bytes, or nil and an error when the generator fails." },
  { "core.sha256", "core.sha256(s)", "SHA-256 of s (32 raw bytes): the PKCE S256 challenge hashes the verifier with it." },
  { "core.base64url_encode", "core.base64url_encode(s)", "base64url without padding (RFC 4648 section 5): PKCE verifiers and challenges." },
  { "core.write_private", "core.write_private(path, data)", "Write data to a new file (must not exist) created mode 0600, fsynced -> true, or nil and an error." },
  { "core.flock", "core.flock(path, timeout)", "An exclusive flock on path (created 0600), waiting up to timeout s (default 10) -> lock with :unlock(), or nil and an error." },
  { "core.session", "core.session{timeout, connect_timeout, ca_file, ca_path, insecure, user_agent}", "A libcurl Session: keep-alive, HTTP/2, TLS verified by default." },
  { "session:request", "session:request{method, url, headers, body, timeout}", "One request -> {status, headers, body, http_version, time}, or nil and {kind, message, connect}." },
  { "session:perform", "session:perform(requests, {concurrency, on_done})", "A batch on curl_multi -> results in input order ({res} or {err}), callback errors." },
  { "session:stream", "session:stream{method, url, headers}", "A long response read line by line: -> stream, {status, headers}; stream:read_line(timeout), :read_all(max_bytes = 64 KiB, timeout = the session's) -> body [, \"truncated\" | \"timeout\"], :close()." },
  { "session:close", "session:close()", "Release the connections (idempotent; also on garbage collection and <close>)." },
  { "core.redis_connect", "core.redis_connect{host, port, timeout_ms, password, db}", "A blocking hiredis connection (scripts) -> conn with :command(argv), :pipeline({argv...}), :timeout(ms), :close(); or nil, message, kind." },
  { "core.redis_format", "core.redis_format(argv)", "A Redis command in RESP bytes (hiredis's redisFormatCommandArgv)." },
  { "core.redis_reader", "core.redis_reader()", "hiredis's reply parser: :feed(bytes), :get() -> reply, false (more bytes needed) or nil, err." },
  { "core.sleep", "core.sleep(seconds)", "Sleep (scripts; inside nginx use ngx.sleep)." },
  { "core.now", "core.now()", "Monotonic seconds, for rates and time-outs." },
  { "core.time", "core.time()", "Wall-clock epoch seconds with sub-second precision (os.time() has whole seconds)." },
  { "core.version", "core.version()", "{version, libcurl, libcurl_tls, openssl, http2, lua}." },
  { "core.signal_catch", "core.signal_catch{\"INT\", \"TERM\", ...}", "Catch these signals (scripts, not nginx): a handler only notes them; sleeps and reads they interrupt return -> true." },
  { "core.signal_pending", "core.signal_pending()", "The name of a caught signal not yet taken (and take it), or nil." },
  { "core.spawn", "core.spawn(argv, {pdeathsig, group, stdin, stdout, stderr})", "Run argv[1] (found on PATH, no shell) as a child; pdeathsig = \"TERM\" makes it die with us, group = true gives it its own process group -> pid, or nil and an error." },
  { "core.wait", "core.wait(pid, timeout_s, interruptible)", "Wait for a child -> true and its exit code or signal name; false and \"timeout\" (or \"signal\" when interruptible and a caught signal waits); nil and an error." },
  { "core.kill", "core.kill(pid, signal)", "Send \"TERM\" (default), \"KILL\", \"INT\", ... to pid (> 1) or to a process group (-pgid) -> true, or nil and an error." },
  { "core.signal_reset", "core.signal_reset([names])", "Put back the dispositions signal_catch replaced (all when names is nil) and drop arrivals not taken." },
}

local by_key = {}
for _, e in ipairs(M.entries) do by_key[e[1]] = e end
M.by_key = by_key

local function format(e)
  return e[2] .. "\n  " .. e[3]
end

-- The modules whose functions help(fn) can name, in lookup order.
local MODULES = {
  "account_activity", "account_activity.webhook", "account_activity.events",
  "account_activity.nginx", "account_activity.workflows",
}

local function name_of(fn)
  local client = package.loaded["account_activity.client"]
  if type(client) == "table" and client.classes then
    for _, class in pairs(client.classes) do
      for name, m in pairs(class.methods or {}) do
        if m == fn then return name end
      end
    end
    for name, m in pairs(client.Client or {}) do
      if m == fn then return name end
    end
    if client.new == fn then return "new" end
    if client.from_env == fn then return "from_env" end
  end
  for _, modname in ipairs(MODULES) do
    local mod = package.loaded[modname]
    if type(mod) == "table" then
      for name, f in pairs(mod) do
        if f == fn and by_key[name] then return name end
      end
    end
  end
  local webhook = package.loaded["account_activity.webhook"]
  if type(webhook) == "table" and webhook.handler == fn then return "webhook_handler" end
  local events = package.loaded["account_activity.events"]
  if type(events) == "table" and events.parse == fn then return "parse_events" end
  return nil
end

--- The doc text for one name or function (nil if unknown), or the whole list.
function M.text(x)
  if x == nil then
    local lines = { "lua-account-activity: aa.help(name) for one entry" }
    for _, e in ipairs(M.entries) do
      lines[#lines + 1] = string.format("  %-58s %s", e[2], e[3])
    end
    return table.concat(lines, "\n")
  end
  local key
  if type(x) == "function" then
    key = name_of(x)
  elseif type(x) == "string" then
    key = x:gsub("^aa[%.:]", ""):gsub("^client[%.:]", ""):gsub("%(.*$", "")
  else
    error("bad argument #1 to 'help' (expected a name or a function, got " .. type(x) .. ")", 3)
  end
  local e = key and by_key[key]
  if not e then return nil end
  return format(e)
end

--- Print the list, or one entry. With the default printer it returns
-- nothing: a REPL prints what a call returns, and returning the text
-- printed everything twice. Given `out`, it returns the text it wrote.
function M.help(x, out)
  local text = M.text(x)
  if not text then
    text = "no doc for " .. (type(x) == "string" and string.format("%q", x) or tostring(x))
      .. "; aa.help() lists everything"
  end
  if out == nil then
    print(text)
    return
  end
  out(text)
  return text
end

return M
