-- OAuth 2.0 user context end to end, on the emulator over libcurl (issue 12,
-- "Done when"): no OAuth 1.0a user token anywhere; the consent page fetched
-- and approved over HTTP, the code exchanged, XAA and AAA v2 subscriptions
-- with the user's Bearer token, an expiry from the control plane answered by
-- one refresh and a retry, the spent refresh token refused; two processes
-- refreshing one user send one refresh; a missing scope is "forbidden"; an
-- OAuth 2.0-only user on an OAuth 1.0a-only call raises before sending; the
-- CLI's auth login / list / refresh / revoke.
local aa = require "account_activity"
local core = require "account_activity.core"
local emulator = require "account_activity.emulator"
local hook_server = require "client_hook"
local cjson = require "cjson"

local INTERP = require "spec_lua"

local emu, hook, cfg
local seen = {} -- every error text, tostring and CLI output, checked for secrets at the end

-- dm.write: AAA v2 subscribe and check list it (with dm.read, tweet.read, users.read)
local ALL_SCOPES = { "tweet.read", "users.read", "dm.read", "dm.write", "like.read", "follows.read", "mute.read",
                     "block.read", "offline.access" }

local function tmpfile()
  local p = os.tmpname()
  os.remove(p)
  return p
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function control(method, path, body)
  local r, status = emu:control(method, path, body)
  assert.is_not_nil(r, tostring(status))
  assert.are.equal(200, status, cjson.encode(r))
  return r
end

local function refreshes(user_id)
  local st = control("GET", "/_emulator/oauth2/state")
  return tonumber((st.refreshes or {})[user_id]) or 0
end

-- A client with the app's credentials only: no OAuth 1.0a user (or owner) token.
local function client(store, extra)
  local o = {
    consumer_key = cfg.app.consumer_key, consumer_secret = cfg.app.consumer_secret,
    client_id = cfg.app.client_id, client_secret = cfg.app.client_secret,
    base_url = emu.url, api = "v2", token_store = store,
  }
  for k, v in pairs(extra or {}) do o[k] = v end
  local c = aa.new(o)
  seen[#seen + 1] = tostring(c)
  return c
end

local function html_unescape(s)
  return (s:gsub("&quot;", '"'):gsub("&#39;", "'"):gsub("&lt;", "<"):gsub("&gt;", ">"):gsub("&amp;", "&"))
end

-- What a person does in the browser: GET the consent page, submit its form
-- as `user_id` with Authorize; -> the Location X redirects to.
local function approve_over_http(url, user_id)
  local s = core.session { timeout = 10, connect_timeout = 5 }
  local page = assert(s:request { method = "GET", url = url })
  assert.are.equal(200, page.status, page.body)
  assert.matches("<form", page.body)
  local form = {}
  for name, value in page.body:gmatch('<input type="hidden" name="([^"]+)" value="([^"]*)">') do
    form[#form + 1] = core.percent_encode(name) .. "=" .. core.percent_encode(html_unescape(value))
  end
  assert.is_true(#form >= 5, "the consent page has its hidden fields")
  assert.matches('name="user_id"', page.body)
  form[#form + 1] = "user_id=" .. user_id
  form[#form + 1] = "action=authorize"
  local action = page.body:match('<form method="post" action="([^"]+)"')
  local res = assert(s:request { method = "POST", url = emu.url .. action,
    headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }, body = table.concat(form, "&") })
  s:close()
  assert.are.equal(302, res.status, res.body)
  return res.headers.location
end

local function login(c, user_id, scopes, redirect)
  local url, lg = c:oauth2_authorize_url { redirect_uri = redirect or "http://127.0.0.1:8765/callback",
    scopes = scopes or ALL_SCOPES }
  local location = approve_over_http(url, user_id)
  local token, err = c:oauth2_exchange(lg, location)
  assert(token, tostring(err))
  return token
end

local function secrets_of(store)
  local list = { cfg.app.consumer_secret, cfg.app.client_secret, cfg.app.bearer_token }
  for _, id in ipairs(store:list() or {}) do
    local t = store:get(id)
    list[#list + 1] = t.access_token
    list[#list + 1] = t.refresh_token
  end
  return list
end

local function assert_no_secret(s, list)
  s = tostring(s)
  for _, secret in ipairs(list) do
    if type(secret) == "string" and #secret >= 8 then
      assert.is_nil(s:find(secret, 1, true), "a secret leaked into: " .. s:sub(1, 300))
    end
  end
end

describe("OAuth 2.0 user context on the emulator", function()
  local store_path, store, c, webhook

  lazy_setup(function()
    local err
    emu, err = emulator.start {}
    assert(emu, err)
    cfg = emu.config
    hook, err = hook_server.start(emu)
    assert(hook, err)
  end)

  lazy_teardown(function()
    if hook then hook:stop() end
    if emu then emu:stop() end
  end)

  before_each(function()
    control("POST", "/_emulator/reset", {})
    store_path = tmpfile()
    store = aa.token_store.file(store_path)
    c = client(store)
    webhook = assert(c:register_webhook(hook.url .. "/hook"))
  end)

  after_each(function()
    for _, s in ipairs(seen) do assert_no_secret(s, secrets_of(store)) end
    os.remove(store_path)
    os.remove(store_path .. ".lock")
  end)

  it("login over HTTP, XAA + AAA v2 subscriptions, expiry -> one refresh and a retry, the old refresh token refused", function()
    local alice_id = cfg.users[1].user_id
    local token = login(c, alice_id)
    assert.are.equal(alice_id, token.user_id)
    assert.are.equal(alice_id, store:get(alice_id).user_id)
    local alice = { user_id = alice_id, oauth2 = true }

    for _, et in ipairs { "dm.received", "like.create", "post.mention.create" } do
      local sub, err = c:activity_subscribe { event_type = et, webhook_id = webhook.id, user = alice }
      assert(sub, tostring(err))
      assert.are.equal(et, sub.event_type)
      assert.are.equal(alice_id, sub.filter.user_id)
    end
    assert.is_true((assert(c:subscribe(webhook.id, alice))))
    assert.is_true((c:is_subscribed(webhook.id, alice)))
    local log = assert(emu:log())
    local bearer_calls = 0
    for _, e in ipairs(log) do
      if (e.path == "/2/activity/subscriptions" and e.method == "POST")
          or (e.path or ""):match("/subscriptions/all$") then
        assert.are.equal("oauth2", e.auth, cjson.encode(e))
        bearer_calls = bearer_calls + 1
      end
    end
    assert.is_true(bearer_calls >= 5)

    local before = store:get(alice_id)
    local n0 = refreshes(alice_id)
    control("POST", "/_emulator/oauth2/expire", { user_id = alice_id })
    local yes, err = c:is_subscribed(webhook.id, alice)
    assert.is_true(yes, tostring(err))
    assert.are.equal(n0 + 1, refreshes(alice_id))
    local after = store:get(alice_id)
    assert.are_not.equal(before.access_token, after.access_token)
    assert.are_not.equal(before.refresh_token, after.refresh_token)
    -- the rotated token is what the file holds, for any other process
    assert.are.equal(after.refresh_token, aa.token_store.file(store_path):get(alice_id).refresh_token)

    local t, rerr = c:oauth2_refresh { refresh_token = before.refresh_token, access_token = before.access_token }
    assert.is_nil(t)
    assert.are.equal("auth", rerr.kind)
    seen[#seen + 1] = tostring(rerr)
    assert_no_secret(rerr, { before.refresh_token, before.access_token })
    assert.is_true((c:is_subscribed(webhook.id, alice)))
    assert.are.equal(n0 + 1, refreshes(alice_id))
  end)

  it("two processes needing a refresh of one user at once send one refresh; both go on", function()
    local alice_id = cfg.users[2].user_id
    login(c, alice_id)
    local n0 = refreshes(alice_id)
    control("POST", "/_emulator/oauth2/expire", { user_id = alice_id })
    local go = tmpfile()
    local script = tmpfile() .. ".lua"
    local f = io.open(script, "w")
    f:write(([[
local aa = require "account_activity"
local core = require "account_activity.core"
local deadline = core.now() + 30
while not io.open(%q, "r") do
  if core.now() > deadline then io.write("no go\n") os.exit(3) end
  core.sleep(0.01)
end
local c = aa.new { consumer_key = %q, consumer_secret = %q, client_id = %q, client_secret = %q,
  base_url = %q, api = "v2", token_store = aa.token_store.file(%q) }
local yes, err = c:is_subscribed(%q, { user_id = %q, oauth2 = true })
local t = c.token_store:get(%q)
io.write(tostring(yes), " ", core.base64url_encode(core.sha256(t.access_token)), " ", tostring(err), "\n")
]]):format(go, cfg.app.consumer_key, cfg.app.consumer_secret, cfg.app.client_id, cfg.app.client_secret,
      emu.url, store_path, webhook.id, alice_id, alice_id))
    f:close()
    local procs = {}
    for i = 1, 2 do procs[i] = io.popen(INTERP .. " " .. script .. " 2>&1") end
    core.sleep(0.3) -- both started and waiting at the barrier
    io.open(go, "w"):close()
    local outs = {}
    for i = 1, 2 do
      outs[i] = procs[i]:read("*a")
      procs[i]:close()
      seen[#seen + 1] = outs[i]
    end
    os.remove(go)
    os.remove(script)
    local a1, h1 = outs[1]:match("^(%S+) (%S+)")
    local a2, h2 = outs[2]:match("^(%S+) (%S+)")
    assert.are.equal("false", a1, outs[1]) -- not subscribed, but authorised: the call went through
    assert.are.equal("false", a2, outs[2])
    assert.are.equal(h1, h2, "both use the one rotated token")
    assert.are.equal(n0 + 1, refreshes(alice_id))
    assert.are.equal(h1, core.base64url_encode(core.sha256(store:get(alice_id).access_token)))
  end)

  it("a missing scope is err.kind forbidden naming the scope", function()
    local bob_id = cfg.users[3].user_id
    login(c, bob_id, { "tweet.read", "users.read", "dm.read", "offline.access" })
    local sub, err = c:activity_subscribe { event_type = "like.create", webhook_id = webhook.id,
      user = { user_id = bob_id, oauth2 = true } }
    assert.is_nil(sub)
    seen[#seen + 1] = tostring(err)
    assert.are.equal("forbidden", err.kind)
    assert.matches("like%.read", tostring(err))
    assert.is_table((c:activity_subscribe { event_type = "dm.received", webhook_id = webhook.id,
      user = { user_id = bob_id, oauth2 = true } }))
  end)

  it("an OAuth 2.0-only user on an OAuth 1.0a-only endpoint raises before sending", function()
    local id = cfg.users[1].user_id
    login(c, id)
    local ent = client(store, { api = "enterprise" })
    local n = #assert(emu:log())
    local ok, err = pcall(ent.subscribe, ent, webhook.id, { user_id = id, oauth2 = true })
    assert.is_false(ok)
    assert.matches("bad argument 'user' to 'subscribe' %(subscribe takes only OAuth 1%.0a", err)
    assert.are.equal(n, #assert(emu:log()))
  end)

  it("mirror_user and sync_subscriptions with OAuth 2.0 users (curl_multi batch)", function()
    local ids = { cfg.users[1].user_id, cfg.users[2].user_id }
    for _, id in ipairs(ids) do login(c, id) end
    local n1, n2 = refreshes(ids[1]), refreshes(ids[2])
    local r = assert(c:mirror_user(webhook.id, { user_id = ids[1], oauth2 = true }))
    assert.are.same({}, r.failed)
    assert.is_true(#r.created >= 10)
    control("POST", "/_emulator/oauth2/expire", {})
    local users = {}
    for i, id in ipairs(ids) do users[i] = { user_id = id, oauth2 = true } end
    local rep = assert(c:sync_subscriptions(webhook.id, users, { progress = false, remove = false }))
    assert.are.same({}, rep.failed)
    assert.are.equal(2, #rep.added)
    assert.are.equal(n1 + 1, refreshes(ids[1]))
    assert.are.equal(n2 + 1, refreshes(ids[2]))
  end)
end)

describe("account-activity auth (CLI) on the emulator", function()
  local cfg_file, store_path

  local function cli(args)
    local out = tmpfile()
    local cmd = INTERP .. " bin/account-activity --config " .. cfg_file .. " --base-url " .. emu.url
      .. " --api v2 " .. args
      .. " >" .. out .. " 2>&1"
    local a, _, code = os.execute(cmd)
    local status = type(a) == "number" and math.floor(a / 256) or code
    local text = read(out) or ""
    os.remove(out)
    seen[#seen + 1] = text
    return status, text
  end

  lazy_setup(function()
    local err
    emu, err = emulator.start {}
    assert(emu, err)
    cfg = emu.config
    cfg_file = tmpfile()
    local f = io.open(cfg_file, "w")
    f:write(cjson.encode(emulator.credentials and emulator.credentials(cfg, emu.url) or cfg))
    f:close()
    store_path = tmpfile()
  end)

  lazy_teardown(function()
    if emu then emu:stop() end
    os.remove(cfg_file)
    os.remove(store_path)
    os.remove(store_path .. ".lock")
  end)

  it("login waits on the loopback receiver, checks state, stores; list, refresh, revoke show no token", function()
    local errfile = tmpfile()
    local p = io.popen(INTERP .. " bin/account-activity --config " .. cfg_file .. " --base-url " .. emu.url
      .. " auth login --no-browser --timeout 60 --port 0 --store " .. store_path
      .. " --scopes tweet.read,users.read,dm.read,dm.write,offline.access 2>" .. errfile)
    local url
    local deadline = core.now() + 30
    while core.now() < deadline do
      url = (read(errfile) or ""):match("(http://%S+/i/oauth2/authorize%?%S+)")
      if url then break end
      core.sleep(0.05)
    end
    assert(url, "auth login printed no URL: " .. tostring(read(errfile)))
    local q = require("account_activity.oauth2").internal.query_params(url)
    assert.matches("^http://127%.0%.0%.1:%d+/callback$", q.redirect_uri)
    -- the browser's part: consent (control shortcut), then the redirect to the CLI's receiver
    local s = core.session { timeout = 10 }
    local user_id = cfg.users[1].user_id
    local r = control("POST", "/_emulator/oauth2/consent", { user_id = user_id, client_id = q.client_id,
      redirect_uri = q.redirect_uri, scope = q.scope, state = q.state, code_challenge = q.code_challenge,
      code_challenge_method = q.code_challenge_method })
    local page = assert(s:request { method = "GET", url = r.redirect })
    assert.are.equal(200, page.status)
    local out = p:read("*a")
    p:close()
    local err_text = read(errfile) or ""
    os.remove(errfile)
    s:close()
    seen[#seen + 1] = out
    seen[#seen + 1] = err_text
    assert.matches("logged in user " .. user_id, out)

    local status, text = cli("auth list --store " .. store_path)
    assert.are.equal(0, status, text)
    assert.matches(user_id, text)
    assert.matches("dm%.read", text)
    local before = aa.token_store.file(store_path):get(user_id)
    assert_no_secret(text, { before.access_token, before.refresh_token, cfg.app.client_secret })
    assert_no_secret(out .. err_text, { before.access_token, before.refresh_token, cfg.app.client_secret })

    status, text = cli("auth refresh " .. user_id .. " --store " .. store_path)
    assert.are.equal(0, status, text)
    local after = aa.token_store.file(store_path):get(user_id)
    assert.are_not.equal(before.refresh_token, after.refresh_token)
    assert_no_secret(text, { after.access_token, after.refresh_token })

    local hookless = aa.new { consumer_key = cfg.app.consumer_key, consumer_secret = cfg.app.consumer_secret,
      base_url = emu.url, api = "v2" }
    local hs = assert(hook_server.start(emu))
    local wh = assert(hookless:register_webhook(hs.url .. "/hook"))
    status, text = cli("subs add " .. wh.id .. " --user-id " .. user_id
      .. " --store " .. store_path)
    assert.are.equal(0, status, text)
    assert.matches("added 1", text)
    local st2, text2 = cli("activity add dm.sent --user-id " .. user_id .. " --webhook " .. wh.id
      .. " --store " .. store_path)
    status, text = cli("activity mirror " .. user_id .. " --webhook " .. wh.id
      .. " --store " .. store_path .. " --json")
    hs:stop()
    assert.are.equal(0, st2, text2)
    assert.matches("created %d+ dm%.sent", text2)
    -- this login lacks like.read and the follow/mute/block scopes: those are refused (exit 1), dm.* made
    assert.are.equal(1, status, text)
    assert.matches('"created"', text)
    assert.matches("dm%.received", text)

    status, text = cli("auth revoke " .. user_id .. " --store " .. store_path)
    assert.are.equal(0, status, text)
    assert.is_nil(aa.token_store.file(store_path):get(user_id))
    status, text = cli("auth list --store " .. store_path)
    assert.are.equal(0, status, text)
    assert.matches("no OAuth 2.0 users", text)
  end)

  it("login opens a browser when there is a display, and refuses a redirect whose state is not ours", function()
    local bin = tmpfile()
    assert(os.execute("mkdir -p " .. bin))
    local opened = bin .. "/opened"
    local f = io.open(bin .. "/xdg-open", "w")
    f:write("#!/bin/sh\nprintf '%s' \"$1\" > " .. opened .. "\n")
    f:close()
    assert(os.execute("chmod +x " .. bin .. "/xdg-open"))
    local errfile = tmpfile()
    local p = io.popen("DISPLAY=:99 PATH=" .. bin .. ":$PATH " .. INTERP .. " bin/account-activity --config " .. cfg_file
      .. " --base-url " .. emu.url .. " auth login --timeout 60 --port 0 --store " .. store_path
      .. " 2>" .. errfile .. "; echo EXIT=$?")
    local url
    local deadline = core.now() + 30
    while core.now() < deadline do
      url = read(opened)
      if url and url ~= "" then break end
      core.sleep(0.05)
    end
    assert(url and url:match("/i/oauth2/authorize%?"), "no browser was opened: " .. tostring(read(errfile)))
    local s = core.session { timeout = 10 }
    local redirect_uri = require("account_activity.oauth2").internal.query_params(url).redirect_uri
    assert(s:request { method = "GET", url = redirect_uri .. "?code=forged&state=forged" })
    s:close()
    local out = p:read("*a")
    p:close()
    local err_text = read(errfile) or ""
    os.remove(errfile)
    os.execute("rm -rf " .. bin)
    seen[#seen + 1] = err_text
    assert.matches("EXIT=1", out)
    assert.matches("state", err_text)
    assert.is_nil(aa.token_store.file(store_path):list()[1])
  end)
end)

describe("README: Moving to the X Activity API", function()
  -- The section's Lua block runs as written, in a fresh Lua process, against
  -- the emulator: the environment holds the app's credentials, and the line
  -- it reads is the URL the browser was redirected to after the consent.
  local hook_ep, dir

  lazy_setup(function()
    local err
    emu, err = emulator.start {}
    assert(emu, err)
    cfg = emu.config
    hook_ep, err = hook_server.start(emu)
    assert(hook_ep, err)
    dir = tmpfile()
    assert(os.execute("mkdir -p " .. dir))
  end)

  lazy_teardown(function()
    if hook_ep then hook_ep:stop() end
    if emu then emu:stop() end
    if dir then os.execute("rm -rf " .. dir) end
  end)

  it("runs against the emulator", function()
    local readme = assert(read("README.md"))
    local section = readme:match("\n## Moving to the X Activity API\n(.-)\n## ")
    assert(section, "README has the section")
    local snippet = section:match("```lua\n(.-)```")
    assert(snippet, "the section has a Lua block")
    local f = io.open(dir .. "/snippet.lua", "w")
    f:write(snippet)
    f:close()
    local root = os.getenv("PWD") or "."
    local env = table.concat({
      "TWITTER_CONSUMER_KEY=" .. cfg.app.consumer_key, "TWITTER_CONSUMER_SECRET=" .. cfg.app.consumer_secret,
      "TWITTER_CLIENT_ID=" .. cfg.app.client_id, "TWITTER_CLIENT_SECRET=" .. cfg.app.client_secret,
      "TWITTER_API_BASE_URL=" .. emu.url, "WEBHOOK_URL=" .. hook_ep.url .. "/hook",
    }, " ")
    -- stdin: the reply file once the spec has written it (the "browser" step), within 30 s
    local feeder = "i=0; while [ ! -s reply ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; cat reply"
    local p = io.popen("cd " .. dir .. " && sh -c '" .. feeder .. "' | env " .. env .. " LUA_PATH='" .. root
      .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;' timeout 120 stdbuf -oL " .. INTERP
      .. " snippet.lua >out 2>&1; echo EXIT=$?")
    local url
    local deadline = core.now() + 30
    while core.now() < deadline do
      url = (read(dir .. "/out") or ""):match("open (%S+)")
      if url then break end
      core.sleep(0.05)
    end
    assert(url, "the snippet printed no URL: " .. tostring(read(dir .. "/out")))
    local location = approve_over_http(url, cfg.users[1].user_id)
    local r = io.open(dir .. "/reply.tmp", "w")
    r:write(location, "\n")
    r:close()
    os.rename(dir .. "/reply.tmp", dir .. "/reply")
    local status = p:read("*a")
    p:close()
    local out = read(dir .. "/out") or ""
    seen[#seen + 1] = out
    assert.matches("EXIT=0", status, out)
    assert.matches("%d+ XAA subscriptions, 0 failed", out)
    local store = aa.token_store.file(dir .. "/tokens.json")
    assert.same({ cfg.users[1].user_id }, store:list())
    assert_no_secret(out, secrets_of(store))
  end)
end)
