-- The emulator as an OAuth 2.0 server like X's: the consent page fetched and
-- posted like a browser would, the token endpoint (PKCE, single-use codes,
-- rotation), revoke, /2/users/me, expiry, and where a user token is accepted.
local H = require "emulator_helper"
local core = require "account_activity.core"
local cjson = require "cjson.safe"

-- base64url(SHA-256(s)) without padding, the S256 challenge (RFC 7636).
local function s256(verifier)
  local raw
  if core.sha256 then
    raw = core.sha256(verifier)
  else
    local tmp = os.tmpname()
    local f = assert(io.open(tmp, "wb"))
    f:write(verifier)
    f:close()
    local p = assert(io.popen("openssl dgst -sha256 -binary < '" .. tmp .. "'", "r"))
    raw = p:read("*a")
    p:close()
    os.remove(tmp)
  end
  assert(#raw == 32, "sha256 failed")
  return (core.base64_encode(raw):gsub("=+$", ""):gsub("+", "-"):gsub("/", "_"))
end

local function query_of(url)
  local out = {}
  for k, v in (url:match("%?(.*)$") or ""):gmatch("([^&=]+)=([^&]*)") do out[k] = core.percent_decode(v) end
  return out
end

local function html_unescape(s)
  return (s:gsub("&quot;", '"'):gsub("&#39;", "'"):gsub("&lt;", "<"):gsub("&gt;", ">"):gsub("&amp;", "&"))
end

-- The <form> of a consent page as a browser sees it: action, hidden inputs,
-- the user options and the buttons.
local function parse_form(html)
  local form = { hidden = {}, users = {}, buttons = {} }
  form.method, form.action = html:match('<form method="(%w+)" action="([^"]+)"')
  for tag in html:gmatch("<input[^>]*>") do
    local name, value = tag:match('name="([^"]+)"'), tag:match('value="([^"]*)"')
    if tag:find('type="hidden"', 1, true) then form.hidden[name] = html_unescape(value) end
  end
  for value in html:gmatch('<option value="([^"]+)"') do form.users[#form.users + 1] = value end
  for name, value, label in html:gmatch('<button type="submit" name="([^"]+)" value="([^"]+)">([^<]*)</button>') do
    form.buttons[value] = { name = name, label = label }
  end
  form.scopes = {}
  for s in (html:match('<ul class="scopes">(.-)</ul>') or ""):gmatch("<li>([^<]*)</li>") do
    form.scopes[#form.scopes + 1] = s
  end
  return form
end

describe("emulator OAuth 2.0 user context", function()
  local emu, c, cfg
  local REDIRECT = "http://127.0.0.1:8765/callback"
  local ALL = { "tweet.read", "users.read", "dm.read", "dm.write", "like.read", "offline.access" }

  setup(function()
    emu = H.start { workers = 2 }
    c = H.client(emu)
    cfg = emu.config
  end)
  teardown(function() if emu then emu:stop() end end)
  before_each(function() assert(emu:reset()) end)
  -- a reset keeps the config: put the OAuth 2.0 knobs back
  after_each(function()
    assert(c:control("POST", "/_emulator/config", { oauth2 = { loopback_redirects = true, redirect_uris = {},
      code_ttl = 30, access_ttl = 7200, require_client_secret = false } }))
  end)

  local function bearer(token) return { header = "Bearer " .. token } end

  local function consent(o)
    o = o or {}
    local verifier = o.verifier or ("v" .. string.rep("x", 50) .. tostring(math.random(1e6)))
    local r, status = c:control("POST", "/_emulator/oauth2/consent", {
      user_id = o.user_id or cfg.users[1].user_id, client_id = cfg.app.client_id,
      redirect_uri = o.redirect_uri or REDIRECT, scope = o.scope or ALL, state = o.state or "st-1",
      code_challenge = o.method == "plain" and verifier or s256(verifier),
      code_challenge_method = o.method or "S256" })
    assert.equal(200, status, cjson.encode(r))
    local q = query_of(r.redirect)
    return q.code, verifier, r.redirect
  end

  local function exchange(code, verifier, o)
    o = o or {}
    local form = { grant_type = "authorization_code", code = code, redirect_uri = o.redirect_uri or REDIRECT,
      code_verifier = verifier }
    local auth = "none"
    if o.basic then
      auth = { header = "Basic " .. core.base64_encode(cfg.app.client_id .. ":" .. (o.secret or cfg.app.client_secret)) }
    else
      form.client_id = o.client_id or cfg.app.client_id
    end
    return c:call("POST", "/2/oauth2/token", { auth = auth, form = form })
  end

  local function login(o)
    local code, verifier = consent(o)
    local res = exchange(code, verifier, o)
    assert.equal(200, res.status, res.body)
    return res.json
  end

  local function refresh(rt)
    return c:call("POST", "/2/oauth2/token", { auth = "none",
      form = { grant_type = "refresh_token", refresh_token = rt, client_id = cfg.app.client_id } })
  end

  local function me(token)
    return c:call("GET", "/2/users/me", { auth = bearer(token) })
  end

  it("serves a consent page a browser can approve, and the code exchanges for X's token shape", function()
    local verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    local res = c:call("GET", "/i/oauth2/authorize", { auth = "none", query = {
      response_type = "code", client_id = cfg.app.client_id, redirect_uri = REDIRECT,
      scope = "tweet.read users.read offline.access", state = "xyz", code_challenge = s256(verifier),
      code_challenge_method = "S256" } })
    assert.equal(200, res.status, res.body)
    assert.matches("^text/html", res.headers["content-type"])
    assert.truthy(res.body:find("account-activity-emulator", 1, true), "the app's name")
    local form = parse_form(res.body)
    assert.equal("post", form.method)
    assert.equal("/i/oauth2/authorize", form.action)
    assert.same({ "tweet.read", "users.read", "offline.access" }, form.scopes)
    assert.equal(#cfg.users + 1, #form.users) -- every user, and the owner
    assert.equal(cfg.users[1].user_id, form.users[1])
    assert.truthy(form.buttons.authorize and form.buttons.cancel)

    -- the browser posts the hidden fields, the picked user and the button
    local post = {}
    for k, v in pairs(form.hidden) do post[k] = v end
    post.user_id = cfg.users[2].user_id
    post[form.buttons.authorize.name] = "authorize"
    local sub = c:call("POST", form.action, { auth = "none", form = post })
    assert.equal(302, sub.status, sub.body)
    local location = sub.headers["location"]
    assert.equal(REDIRECT .. "?", location:sub(1, #REDIRECT + 1))
    local q = query_of(location)
    assert.equal("xyz", q.state)
    assert.truthy(q.code and #q.code > 20)

    local tok = exchange(q.code, verifier)
    assert.equal(200, tok.status, tok.body)
    assert.equal("bearer", tok.json.token_type)
    assert.equal(7200, tok.json.expires_in)
    assert.equal("tweet.read users.read offline.access", tok.json.scope)
    assert.is_string(tok.json.access_token)
    assert.is_string(tok.json.refresh_token)

    local who = me(tok.json.access_token)
    assert.equal(200, who.status, who.body)
    assert.same({ id = cfg.users[2].user_id, name = cfg.users[2].screen_name, username = cfg.users[2].screen_name },
      who.json.data)
  end)

  it("redirects with error=access_denied when the user cancels", function()
    local res = c:call("POST", "/i/oauth2/authorize", { auth = "none", form = {
      response_type = "code", client_id = cfg.app.client_id, redirect_uri = REDIRECT, scope = "tweet.read",
      state = "s 1", code_challenge = "abc", code_challenge_method = "plain", user_id = cfg.users[1].user_id,
      action = "cancel" } })
    assert.equal(302, res.status)
    local q = query_of(res.headers["location"])
    assert.equal("access_denied", q.error)
    assert.equal("s 1", q.state)
    assert.is_nil(q.code)
  end)

  it("shows an error page, never a redirect, for a bad authorization request", function()
    local good = { response_type = "code", client_id = cfg.app.client_id, redirect_uri = REDIRECT,
      scope = "tweet.read", state = "s", code_challenge = "abc", code_challenge_method = "plain" }
    local function with(k, v)
      local q = {}
      for a, b in pairs(good) do q[a] = b end
      q[k] = v
      return q
    end
    local cases = {
      { with("client_id", "nope"), "unknown client_id" },
      { with("redirect_uri", "https://evil.example/cb"), "redirect_uri" },
      { with("redirect_uri", ""), "redirect_uri is missing" },
      { with("scope", "tweet.read root.access"), "unknown scope root.access" },
      { with("code_challenge", ""), "code_challenge" },
      { with("code_challenge_method", "S512"), "code_challenge_method" },
    }
    for _, case in ipairs(cases) do
      for _, method in ipairs { "GET", "POST" } do
        local o = { auth = "none" }
        if method == "GET" then o.query = case[1] else o.form = case[1]; case[1].action = "authorize" end
        local res = c:call(method, "/i/oauth2/authorize", o)
        assert.equal(400, res.status, method .. " " .. case[2])
        assert.is_nil(res.headers["location"])
        assert.truthy(res.body:find(case[2], 1, true), res.body)
      end
    end
  end)

  it("HTML-escapes what it echoes", function()
    local evil = '"><script>alert(1)</script>'
    local res = c:call("GET", "/i/oauth2/authorize", { auth = "none", query = {
      response_type = "code", client_id = cfg.app.client_id, redirect_uri = REDIRECT .. "?x=" .. evil,
      scope = "tweet.read", state = evil, code_challenge = evil, code_challenge_method = "plain" } })
    assert.equal(200, res.status)
    assert.falsy(res.body:find("<script>", 1, true))
    assert.equal(evil, parse_form(res.body).hidden.state)
    local bad = c:call("GET", "/i/oauth2/authorize", { auth = "none", query = {
      client_id = cfg.app.client_id, redirect_uri = REDIRECT, scope = "<b>x</b>", code_challenge = "a" } })
    assert.equal(400, bad.status)
    assert.falsy(bad.body:find("<b>", 1, true))
    assert.truthy(bad.body:find("&lt;b&gt;", 1, true))
  end)

  it("accepts any loopback redirect by default, registered ones only when told so", function()
    consent { redirect_uri = "http://localhost:5555/cb" }
    assert(c:control("POST", "/_emulator/config", { oauth2 = { loopback_redirects = false,
      redirect_uris = { "https://app.example/cb" } } }))
    local r, status = c:control("POST", "/_emulator/oauth2/consent", { user_id = cfg.users[1].user_id,
      redirect_uri = REDIRECT, scope = "tweet.read", code_challenge = "a" })
    assert.equal(400, status)
    assert.matches("redirect_uri", r.error)
    consent { redirect_uri = "https://app.example/cb" }
  end)

  it("checks PKCE (S256 and plain), the redirect_uri and uses a code once", function()
    local code, verifier = consent()
    assert.equal(400, exchange(code, verifier .. "x").status)
    -- a failed attempt spends the code too
    assert.equal(400, exchange(code, verifier).status)

    code, verifier = consent()
    local res = exchange(code, verifier, { redirect_uri = "http://127.0.0.1:8765/other" })
    assert.equal(400, res.status)
    assert.equal("invalid_request", res.json.error)

    code, verifier = consent { method = "plain" }
    assert.equal(200, exchange(code, verifier).status)
    local again = exchange(code, verifier)
    assert.equal(400, again.status)
    assert.equal("invalid_request", again.json.error)

    code, verifier = consent()
    assert.equal(401, exchange(code, verifier, { client_id = "someone-else" }).status)
  end)

  it("lets codes expire (oauth2.code_ttl)", function()
    assert(c:control("POST", "/_emulator/config", { oauth2 = { code_ttl = 0.2 } }))
    local code, verifier = consent()
    H.sleep(0.5)
    local res = exchange(code, verifier)
    assert.equal(400, res.status)
    assert.equal("Value passed for the authorization code was invalid.", res.json.error_description)
  end)

  it("authenticates confidential clients with HTTP Basic", function()
    local code, verifier = consent()
    local bad = exchange(code, verifier, { basic = true, secret = "wrong" })
    assert.equal(401, bad.status)
    assert.equal("unauthorized_client", bad.json.error)
    code, verifier = consent()
    assert.equal(200, exchange(code, verifier, { basic = true }).status)
    assert(c:control("POST", "/_emulator/config", { oauth2 = { require_client_secret = true } }))
    code, verifier = consent()
    assert.equal(401, exchange(code, verifier).status)
  end)

  it("rotates refresh tokens, refuses a spent one like X and counts refreshes per user", function()
    local t = login()
    local r1 = refresh(t.refresh_token)
    assert.equal(200, r1.status, r1.body)
    assert.are_not.equal(t.access_token, r1.json.access_token)
    assert.are_not.equal(t.refresh_token, r1.json.refresh_token)
    assert.equal(t.scope, r1.json.scope)
    local spent = refresh(t.refresh_token)
    assert.equal(400, spent.status)
    assert.same({ error = "invalid_request", error_description = "Value passed for the token was invalid." }, spent.json)
    assert.equal(200, me(r1.json.access_token).status)
    assert.equal(200, refresh(r1.json.refresh_token).status)
    local st = c:control("GET", "/_emulator/oauth2/state")
    assert.equal(2, st.refreshes[cfg.users[1].user_id])
    assert.equal(1, st.exchanges[cfg.users[1].user_id])
    assert.is_nil(st.refreshes[cfg.users[2].user_id])
  end)

  it("issues a refresh token only with offline.access", function()
    local t = login { scope = { "tweet.read", "users.read" } }
    assert.is_nil(t.refresh_token)
    assert.equal("tweet.read users.read", t.scope)
  end)

  it("revokes access and refresh tokens, seen by every worker", function()
    local t = login()
    local rv = c:call("POST", "/2/oauth2/revoke", { auth = "none",
      form = { token = t.access_token, token_type_hint = "access_token", client_id = cfg.app.client_id } })
    assert.equal(200, rv.status)
    assert.same({ revoked = true }, rv.json)
    for _ = 1, 6 do assert.equal(401, me(t.access_token).status) end -- two workers, each asked
    local basic = { header = "Basic " .. core.base64_encode(cfg.app.client_id .. ":" .. cfg.app.client_secret) }
    rv = c:call("POST", "/2/oauth2/revoke", { auth = basic, form = { token = t.refresh_token } })
    assert.equal(200, rv.status)
    assert.equal(400, refresh(t.refresh_token).status)
  end)

  it("expires access tokens after oauth2.access_ttl and on /_emulator/oauth2/expire", function()
    local a, b = login(), login { user_id = cfg.users[2].user_id }
    local r, status = c:control("POST", "/_emulator/oauth2/expire", { user_id = cfg.users[1].user_id })
    assert.equal(200, status)
    assert.is_true(r.expired >= 1)
    local res = me(a.access_token)
    assert.equal(401, res.status)
    assert.equal("Unauthorized", res.json.title)
    assert.equal(200, me(b.access_token).status)
    assert.equal(200, refresh(a.refresh_token).status) -- the refresh token outlives it
    c:control("POST", "/_emulator/oauth2/expire", {})
    assert.equal(401, me(b.access_token).status)

    assert(c:control("POST", "/_emulator/config", { oauth2 = { access_ttl = 1 } }))
    local short = login()
    assert.equal(1, short.expires_in)
    assert.equal(200, me(short.access_token).status)
    assert.truthy(H.wait_for(function() return me(short.access_token).status == 401 end, 3))
  end)

  it("hands every user a ready token set in its config, valid in the running emulator", function()
    assert.equal(emu.url, cfg.base_url)
    assert.is_string(cfg.app.client_id)
    assert.is_string(cfg.app.client_secret)
    for _, u in ipairs(cfg.users) do
      local o = u.oauth2
      assert.equal("bearer", o.token_type)
      assert.equal(u.user_id, o.user_id)
      assert.truthy(o.expires_at > os.time() + 3600)
      assert.truthy(#o.scope > 10)
      local res = me(o.access_token)
      assert.equal(200, res.status, res.body)
      assert.equal(u.user_id, res.json.data.id)
    end
    -- the seed rotates like any refresh token
    local u = cfg.users[3]
    assert.equal(200, refresh(u.oauth2.refresh_token).status)
    assert.equal(400, refresh(u.oauth2.refresh_token).status)
    c:control("POST", "/_emulator/oauth2/expire", { user_id = u.user_id })
    assert.equal(401, me(u.oauth2.access_token).status)
    assert.equal(200, me(cfg.users[4].oauth2.access_token).status)
    local creds = c:control("GET", "/_emulator/credentials")
    assert.equal(emu.url, creds.base_url)
    assert.equal(cfg.users[1].oauth2.access_token, creds.users[1].oauth2.access_token)
  end)

  it("answers /2/users/me for OAuth 1.0a users too, and needs tweet.read and users.read", function()
    local res = c:call("GET", "/2/users/me", { auth = cfg.users[1] })
    assert.equal(200, res.status, res.body)
    assert.equal(cfg.users[1].user_id, res.json.data.id)
    local t = login { scope = { "tweet.read" } }
    res = me(t.access_token)
    assert.equal(403, res.status)
    assert.truthy(res.json.detail:find("users.read", 1, true), res.body)
    assert.equal(403, c:call("GET", "/2/users/me").status) -- an app bearer
  end)

  it("never logs a token, code or verifier", function()
    local code, verifier = consent()
    local tok = exchange(code, verifier).json
    me(tok.access_token)
    refresh(tok.refresh_token)
    c:call("GET", "/2/users/me", { auth = "none", query = { access_token = tok.access_token, code = code } })
    local log = cjson.encode(emu:log())
    for _, secret in ipairs { tok.access_token, tok.refresh_token, code, verifier, cfg.app.client_secret,
      cfg.users[1].oauth2.access_token } do
      assert.falsy(log:find(secret, 1, true))
    end
    assert.truthy(log:find('"auth":"oauth2"', 1, true))
  end)

  describe("where X's spec takes OAuth2UserToken", function()
    local rcv
    setup(function() rcv = H.receiver(cfg.app.consumer_secret) end)
    teardown(function() if rcv then rcv:stop() end end)

    local function webhook()
      local res = c:call("POST", "/2/webhooks", { json = { url = rcv:hook("ok") } })
      assert.equal(200, res.status, res.body)
      return res.json.data.id
    end

    it("subscribes and checks on AAA v2 with the spec's four scopes, naming a missing one", function()
      local id = webhook()
      local path = "/2/account_activity/webhooks/" .. id .. "/subscriptions/all"
      local full = login()
      local res = c:call("POST", path, { auth = bearer(full.access_token) })
      assert.equal(200, res.status, res.body)
      assert.is_true(res.json.data.subscribed)
      res = c:call("GET", path, { auth = bearer(full.access_token) })
      assert.is_true(res.json.data.subscribed)
      local st = c:control("GET", "/_emulator/state")
      assert.same({ cfg.users[1].user_id }, st.webhooks[1].subscriptions)

      local partial = login { user_id = cfg.users[2].user_id,
        scope = { "tweet.read", "users.read", "dm.read", "offline.access" } }
      res = c:call("POST", path, { auth = bearer(partial.access_token) })
      assert.equal(403, res.status)
      assert.truthy(res.json.detail:find("dm.write", 1, true), res.body)
    end)

    it("refuses a user token on app-only endpoints, like X (v2 problem, v1.1 code 220)", function()
      local id = webhook()
      local tok = bearer(cfg.users[1].oauth2.access_token)
      local AA = "/2/account_activity/webhooks/" .. id
      for _, call in ipairs {
        { "GET", "/2/webhooks" }, { "POST", "/2/webhooks" }, { "PUT", "/2/webhooks/" .. id },
        { "DELETE", "/2/webhooks/" .. id }, { "POST", "/2/webhooks/replay" },
        { "GET", AA .. "/subscriptions/all/list" }, { "DELETE", AA .. "/subscriptions/" .. cfg.users[1].user_id .. "/all" },
        { "GET", "/2/account_activity/subscriptions/count" }, { "GET", "/2/activity/stream" },
        { "DELETE", "/2/activity/subscriptions?ids=1" }, { "PUT", "/2/activity/subscriptions/1" },
        { "DELETE", "/2/activity/subscriptions/1" },
      } do
        local res = c:call(call[1], call[2], { auth = tok, json = {} })
        assert.equal(403, res.status, call[1] .. " " .. call[2] .. " " .. res.body)
        assert.equal("Unsupported Authentication", res.json.title, call[2])
        assert.truthy(res.json.detail:find("OAuth 2.0 User Context is forbidden", 1, true), res.body)
      end
      for _, call in ipairs {
        { "GET", "/1.1/account_activity/webhooks.json" },
        { "POST", "/1.1/account_activity/webhooks/" .. id .. "/subscriptions/all.json" },
        { "GET", "/1.1/account_activity/all/dev/subscriptions.json" },
      } do
        local res = c:call(call[1], call[2], { auth = tok })
        assert.equal(403, res.status, call[2])
        assert.equal(220, res.json.errors[1].code, call[2])
      end
    end)

    it("subscribes private XAA events with the scope each family needs, naming the missing one", function()
      local uid = cfg.users[1].user_id
      local function create(token, et, filter)
        return c:call("POST", "/2/activity/subscriptions", { auth = bearer(token),
          json = { event_type = et, filter = filter or { user_id = uid } } })
      end
      local all = cfg.users[1].oauth2.access_token
      for _, et in ipairs { "dm.received", "like.create", "post.mention.create", "mute.mute", "block.block",
        "chat.received", "post.create" } do
        local res = create(all, et)
        assert.equal(200, res.status, et .. " " .. res.body)
      end
      local narrow = login { scope = { "users.read" } }.access_token
      for et, scope in pairs { ["dm.received"] = "dm.read", ["chat.sent"] = "dm.read", ["like.create"] = "like.read",
        ["post.reply.create"] = "tweet.read", ["mute.unmute"] = "mute.read", ["block.unblock"] = "block.read",
        ["broadcast.chat"] = "broadcast.read", ["profile.update.bio"] = "tweet.read" } do
        local res = create(narrow, et)
        assert.equal(403, res.status, et)
        assert.truthy(res.json.detail:find(scope, 1, true), et .. ": " .. res.body)
      end
      -- another user's private events need that user's consent
      local res = create(all, "dm.sent", { user_id = cfg.users[2].user_id })
      assert.equal(403, res.status)
    end)

    it("lists XAA subscriptions with like.read and tweet.read", function()
      assert.equal(200, c:call("GET", "/2/activity/subscriptions",
        { auth = bearer(cfg.users[1].oauth2.access_token) }).status)
      local t = login { scope = { "tweet.read", "users.read" } }
      local res = c:call("GET", "/2/activity/subscriptions", { auth = bearer(t.access_token) })
      assert.equal(403, res.status)
      assert.truthy(res.json.detail:find("like.read", 1, true))
    end)

    it("updates and deletes XAA subscriptions with the app bearer only", function()
      local uid = cfg.users[1].user_id
      local res = c:call("POST", "/2/activity/subscriptions",
        { json = { event_type = "post.create", filter = { user_id = uid } } })
      local id = res.json.data.subscription.subscription_id
      for _, who in ipairs { cfg.users[1], "owner" } do
        assert.equal(403, c:call("PUT", "/2/activity/subscriptions/" .. id, { auth = who, json = { tag = "x" } }).status)
        assert.equal(403, c:call("DELETE", "/2/activity/subscriptions/" .. id, { auth = who }).status)
      end
      assert.equal(200, c:call("PUT", "/2/activity/subscriptions/" .. id, { json = { tag = "x" } }).status)
      assert.equal(200, c:call("DELETE", "/2/activity/subscriptions/" .. id).status)
    end)
  end)
end)
