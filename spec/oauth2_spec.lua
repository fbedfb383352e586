-- OAuth 2.0 user context (Authorization Code with PKCE) over a fake X
-- token endpoint (spec/support/oauth2_fake.lua): authorize URL, exchange,
-- refresh (before expiry, once after a 401, under the store's lock),
-- revoke, and which calls send a user's Bearer token.
local aa = require "account_activity"
local core = require "account_activity.core"
local fakesrv = require "oauth2_fake"

local CREDS = { consumer_key = "ck", consumer_secret = "CS-secret" }
local REDIRECT = "http://127.0.0.1:8765/callback"
local SCOPES = { "tweet.read", "users.read", "dm.read", "offline.access" }

local function client_for(srv, extra)
  local o = { transport = srv.transport, api = "v2", client_id = srv.client_id,
              client_secret = srv.client_secret, retries = 0 }
  for k, v in pairs(CREDS) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return aa.new(o)
end

local function params(url) return require("account_activity.oauth2").internal.query_params(url) end

-- The whole consent: authorize URL -> code -> exchange.
local function login(srv, c)
  local url, l = c:oauth2_authorize_url { redirect_uri = REDIRECT, scopes = SCOPES }
  local p = params(url)
  local code = srv.approve(p.code_challenge, p.redirect_uri, p.scope)
  return assert(c:oauth2_exchange(l, REDIRECT .. "?state=" .. core.percent_encode(l.state) .. "&code=" .. code)), l
end

local function no_secret_in(s, srv)
  s = tostring(s)
  assert.is_nil(s:find("-secret", 1, true), "a secret in: " .. s)
  if srv.client_secret then assert.is_nil(s:find(srv.client_secret, 1, true)) end
end

local function count(srv, path) return srv.counts[path] or 0 end

describe("client:oauth2_authorize_url", function()
  it("builds X's authorize URL with an S256 challenge of a 43-character verifier", function()
    local c = aa.new { consumer_key = "ck", consumer_secret = "cs", client_id = "client-abc", transport = function() end }
    local url, l = c:oauth2_authorize_url { redirect_uri = REDIRECT, scopes = SCOPES }
    assert.matches("^https://x%.com/i/oauth2/authorize%?", url)
    local p = params(url)
    assert.are.equal("code", p.response_type)
    assert.are.equal("client-abc", p.client_id)
    assert.are.equal(REDIRECT, p.redirect_uri)
    assert.are.equal("tweet.read users.read dm.read offline.access", p.scope)
    assert.are.equal("S256", p.code_challenge_method)
    assert.are.equal(l.state, p.state)
    assert.are.equal(43, #l.verifier)
    assert.matches("^[%w%-_]+$", l.verifier)
    assert.are.equal(core.base64url_encode(core.sha256(l.verifier)), p.code_challenge)
    assert.are.equal(REDIRECT, l.redirect_uri)
    assert.is_nil(url:find(l.verifier, 1, true))
    assert.is_nil(tostring(l):find(l.verifier, 1, true))
    local _, l2 = c:oauth2_authorize_url { redirect_uri = REDIRECT, scopes = SCOPES }
    assert.are_not.equal(l.verifier, l2.verifier)
    assert.are_not.equal(l.state, l2.state)
    local _, l3 = c:oauth2_authorize_url { redirect_uri = REDIRECT, scopes = SCOPES, state = "mine" }
    assert.are.equal("mine", l3.state)
  end)

  it("uses base_url's own page off X (the emulator), and authorize_url when given", function()
    local c = aa.new { consumer_key = "ck", consumer_secret = "cs", client_id = "id", base_url = "http://127.0.0.1:9999",
                       transport = function() end }
    assert.matches("^http://127%.0%.0%.1:9999/i/oauth2/authorize%?",
      (c:oauth2_authorize_url { redirect_uri = REDIRECT, scopes = { "tweet.read" } }))
    local x = aa.new { consumer_key = "ck", consumer_secret = "cs", client_id = "id", base_url = "https://api.x.com",
                       transport = function() end }
    assert.matches("^https://x%.com/i/oauth2/authorize%?", (x:oauth2_authorize_url { redirect_uri = REDIRECT, scopes = { "a" } }))
    local o = aa.new { consumer_key = "ck", consumer_secret = "cs", client_id = "id", authorize_url = "https://auth.example/authz",
                       transport = function() end }
    assert.matches("^https://auth%.example/authz%?", (o:oauth2_authorize_url { redirect_uri = REDIRECT, scopes = { "a" } }))
  end)

  it("raises naming the argument", function()
    local c = aa.new { consumer_key = "ck", consumer_secret = "cs", client_id = "id", transport = function() end }
    assert.has_error(function() c:oauth2_authorize_url { scopes = SCOPES } end,
      "bad argument 'redirect_uri' to 'oauth2_authorize_url' (expected an absolute URL, got nil)")
    assert.has_error(function() c:oauth2_authorize_url { redirect_uri = REDIRECT, scopes = {} } end,
      "bad argument 'scopes' to 'oauth2_authorize_url' (expected a non-empty array of scope names)")
    assert.has_error(function() c:oauth2_authorize_url { redirect_uri = REDIRECT, scopes = { "a b" } } end)
    local none = aa.new { consumer_key = "ck", consumer_secret = "cs", transport = function() end }
    assert.has_error(function() none:oauth2_authorize_url { redirect_uri = REDIRECT, scopes = SCOPES } end,
      "bad argument 'client_id' to 'oauth2_authorize_url' (the client needs client_id (aa.new option or TWITTER_CLIENT_ID))")
  end)
end)

for _, kind in ipairs { "public", "confidential" } do
  describe("client:oauth2_exchange (" .. kind .. " client)", function()
    local srv, c
    before_each(function()
      srv = fakesrv.new { client_secret = kind == "confidential" and "CLIENT-secret-xyz" or nil }
      c = client_for(srv)
    end)

    it("exchanges a callback URL for a token, names its user and stores it", function()
      local token = login(srv, c)
      assert.matches("^AT%-secret%-", token.access_token)
      assert.matches("^RT%-secret%-", token.refresh_token)
      assert.are.equal("bearer", token.token_type)
      assert.same(SCOPES, token.scope)
      assert.are.equal("2244994945", token.user_id)
      assert.is_true(math.abs(token.expires_at - (os.time() + 7200)) <= 5)
      assert.same(token, c.token_store:get("2244994945"))
      local tok = srv.requests[1]
      assert.are.equal("/2/oauth2/token", tok.path)
      local form = fakesrv.form_of(tok.body)
      assert.are.equal("authorization_code", form.grant_type)
      assert.are.equal(REDIRECT, form.redirect_uri)
      if kind == "confidential" then
        assert.matches("^Basic ", tok.headers.Authorization)
        assert.is_nil(form.client_id)
      else
        assert.is_nil(tok.headers.Authorization)
        assert.are.equal("client-abc", form.client_id)
      end
      assert.are.equal("/2/users/me", srv.requests[2].path)
      assert.are.equal("Bearer " .. token.access_token, srv.requests[2].headers.Authorization)
    end)

    it("accepts the bare code too", function()
      local url, l = c:oauth2_authorize_url { redirect_uri = REDIRECT, scopes = SCOPES }
      local p = params(url)
      local code = srv.approve(p.code_challenge, REDIRECT, p.scope)
      assert.is_table((c:oauth2_exchange(l, code)))
    end)

    it("refuses a callback whose state differs, before any request", function()
      local url, l = c:oauth2_authorize_url { redirect_uri = REDIRECT, scopes = SCOPES }
      local code = srv.approve(params(url).code_challenge, REDIRECT, "tweet.read")
      local t, err = c:oauth2_exchange(l, REDIRECT .. "?state=forged&code=" .. code)
      assert.is_nil(t)
      assert.are.equal("auth", err.kind)
      assert.matches("state", err.message)
      local t2, err2 = c:oauth2_exchange(l, REDIRECT .. "?code=" .. code)
      assert.is_nil(t2)
      assert.matches("state", err2.message)
      assert.are.equal(0, #srv.requests)
    end)

    it("returns the callback's error= as nil, err", function()
      local _, l = c:oauth2_authorize_url { redirect_uri = REDIRECT, scopes = SCOPES }
      local t, err = c:oauth2_exchange(l, REDIRECT .. "?error=access_denied&state=" .. l.state)
      assert.is_nil(t)
      assert.are.equal("access_denied", err.reason)
      assert.matches("access_denied", tostring(err))
      assert.are.equal(0, #srv.requests)
    end)

    it("a refused code is err.kind auth, naming neither code, verifier nor secret", function()
      local url, l = c:oauth2_authorize_url { redirect_uri = REDIRECT, scopes = SCOPES }
      local code = srv.approve(params(url).code_challenge, "http://127.0.0.1:1/other", "tweet.read")
      local t, err = c:oauth2_exchange(l, REDIRECT .. "?state=" .. l.state .. "&code=" .. code)
      assert.is_nil(t)
      assert.are.equal("auth", err.kind)
      assert.are.equal(400, err.status)
      assert.are.equal("invalid_request", err.reason)
      no_secret_in(err, srv)
      assert.is_nil(tostring(err):find(l.verifier, 1, true))
      assert.is_nil(err.json)
    end)

    it("never shows the client secret in tostring or credentials", function()
      no_secret_in(tostring(c), srv)
      assert.matches("OAuth 2.0 client id", tostring(c))
      assert.are.equal(kind == "confidential", c:credentials().client_secret)
    end)
  end)
end

describe("OAuth 2.0 users on calls", function()
  local srv, c, token
  before_each(function()
    srv = fakesrv.new {}
    c = client_for(srv)
    token = login(srv, c)
    srv.requests, srv.counts = {}, {}
  end)

  it("v2 subscribe and is_subscribed send the user's Bearer token (given, or from the store)", function()
    assert.is_true((c:subscribe("1", { user_id = token.user_id, oauth2 = token })))
    assert.are.equal("Bearer " .. token.access_token, srv.requests[1].headers.Authorization)
    assert.is_true((c:is_subscribed("1", { user_id = token.user_id, oauth2 = true })))
    assert.are.equal("Bearer " .. token.access_token, srv.requests[2].headers.Authorization)
  end)

  it("a user with both kinds of tokens uses OAuth 2.0 on v2 and OAuth 1.0a on v1.1", function()
    local both = { user_id = token.user_id, oauth2 = true, access_token = "2244994945-ut", access_token_secret = "UTS-secret" }
    assert.is_true((c:subscribe("1", both)))
    assert.are.equal("Bearer " .. token.access_token, srv.requests[1].headers.Authorization)
    local seen
    local ent = aa.new { consumer_key = "ck", consumer_secret = "cs", api = "enterprise", client_id = "client-abc",
      token_store = c.token_store, retries = 0,
      transport = function(req) seen = req return { status = 204, headers = {}, body = "" } end }
    assert.is_true((ent:subscribe("1", both)))
    assert.matches("^OAuth ", seen.headers.Authorization)
  end)

  it("an OAuth 2.0-only user on an OAuth 1.0a-only call raises naming the call, before sending", function()
    local sent = 0
    local ent = aa.new { consumer_key = "ck", consumer_secret = "cs", api = "enterprise", client_id = "client-abc",
      token_store = c.token_store, transport = function() sent = sent + 1 end }
    local ok, err = pcall(ent.subscribe, ent, "1", { user_id = token.user_id, oauth2 = true })
    assert.is_false(ok)
    assert.matches("bad argument 'user' to 'subscribe' %(subscribe takes only OAuth 1%.0a user tokens", err)
    ok, err = pcall(ent.is_subscribed, ent, "1", { user_id = token.user_id, oauth2 = token })
    assert.is_false(ok)
    assert.matches("is_subscribed", err)
    assert.are.equal(0, sent)
  end)

  it("unsubscribe of an OAuth 2.0-only user on v1.1 removes it by id with the app bearer", function()
    local seen = {}
    local ent = aa.new { consumer_key = "ck", consumer_secret = "cs", api = "enterprise", bearer_token = "APP-bearer-x",
      transport = function(req) seen[#seen + 1] = req return { status = 204, headers = {}, body = "" } end }
    assert.is_true((ent:unsubscribe("1", { user_id = token.user_id, oauth2 = true })))
    assert.are.equal(1, #seen)
    assert.are.equal("DELETE", seen[1].method)
    assert.matches("/subscriptions/" .. token.user_id .. "/all%.json$", seen[1].url)
    assert.are.equal("Bearer APP-bearer-x", seen[1].headers.Authorization)
  end)

  it("request() with an OAuth 2.0 user sends its Bearer token; with both kinds, OAuth 1.0a unless opts.oauth2", function()
    local r = assert(c:request("GET", "/2/users/me", { user = { user_id = token.user_id, oauth2 = true } }))
    assert.are.equal(200, r.status)
    assert.are.equal("Bearer " .. token.access_token, srv.requests[#srv.requests].headers.Authorization)
    local both = { user_id = token.user_id, oauth2 = true, access_token = "2244994945-ut", access_token_secret = "UTS-secret" }
    c:request("GET", "/2/users/me", { user = both })
    assert.matches("^OAuth ", srv.requests[#srv.requests].headers.Authorization)
    c:request("GET", "/2/users/me", { user = both, oauth2 = true })
    assert.are.equal("Bearer " .. token.access_token, srv.requests[#srv.requests].headers.Authorization)
  end)

  it("activity_subscribe of a private event and activity_subscriptions{user} send the user's token", function()
    local sub = assert(c:activity_subscribe { event_type = "dm.received", webhook_id = "1",
      user = { user_id = token.user_id, oauth2 = true } })
    assert.are.equal("dm.received", sub.event_type)
    assert.are.equal(token.user_id, sub.filter.user_id)
    assert.are.equal("Bearer " .. token.access_token, srv.requests[#srv.requests].headers.Authorization)
    assert.is_table((c:activity_subscriptions { user = { user_id = token.user_id, oauth2 = true } }))
    assert.are.equal("Bearer " .. token.access_token, srv.requests[#srv.requests].headers.Authorization)
  end)

  it("mirror_user and subscribe_many take OAuth 2.0 users", function()
    local report = assert(c:mirror_user("1", { user_id = token.user_id, oauth2 = true },
      { event_types = { "dm.received", "like.create", "post.mention.create" } }))
    assert.are.equal(3, #report.created)
    assert.are.equal(0, #report.failed)
    local r = assert(c:subscribe_many("1", { { user_id = token.user_id, oauth2 = true } }))
    assert.are.equal(1, #r.added)
    assert.are.equal(0, #r.failed)
  end)

  it("sync_subscriptions adds OAuth 2.0 users with their Bearer tokens", function()
    local r = assert(c:sync_subscriptions("1", { { user_id = token.user_id, oauth2 = token } }, { progress = false }))
    assert.are.equal(1, #r.added)
    assert.are.equal(0, #r.failed)
    local last = srv.requests[#srv.requests]
    assert.are.equal("POST", last.method)
    assert.are.equal("Bearer " .. token.access_token, last.headers.Authorization)
  end)

  it("refreshes a token that expires within 60 s before the call, storing the rotated one", function()
    local t = c.token_store:get(token.user_id)
    t.expires_at = os.time() + 30
    c.token_store:put(token.user_id, t)
    assert.is_true((c:subscribe("1", { user_id = token.user_id, oauth2 = true })))
    assert.are.equal(1, count(srv, "/2/oauth2/token"))
    local fresh = c.token_store:get(token.user_id)
    assert.are_not.equal(token.access_token, fresh.access_token)
    assert.are_not.equal(token.refresh_token, fresh.refresh_token)
    assert.are.equal("Bearer " .. fresh.access_token, srv.requests[#srv.requests].headers.Authorization)
    assert.same(SCOPES, fresh.scope)
  end)

  it("refreshes once after a 401 and retries; a given token table is updated in place", function()
    srv.expire_all()
    local user = { user_id = token.user_id, oauth2 = token }
    local old_rt = token.refresh_token
    assert.is_true((c:subscribe("1", user)))
    assert.are.equal(1, count(srv, "/2/oauth2/token"))
    assert.are.equal(2, count(srv, "/2/account_activity/webhooks/1/subscriptions/all"))
    assert.are_not.equal(old_rt, token.refresh_token)
    assert.are.equal(token.access_token, c.token_store:get(token.user_id).access_token)
    -- the spent refresh token is refused now
    local t, err = c:oauth2_refresh { refresh_token = old_rt, access_token = "x" }
    assert.is_nil(t)
    assert.are.equal("auth", err.kind)
    no_secret_in(err, srv)
  end)

  it("a second 401 after the refresh is returned, not refreshed again", function()
    local real = srv.transport
    local user = { user_id = token.user_id, oauth2 = true }
    c = client_for(srv, { token_store = c.token_store, transport = function(req)
      if req.url:find("/subscriptions/all", 1, true) then
        real(req)
        return { status = 401, headers = { ["content-type"] = "application/json" }, body = '{"title":"Unauthorized"}' }
      end
      return real(req)
    end })
    local ok, err = c:subscribe("1", user)
    assert.is_nil(ok)
    assert.are.equal("auth", err.kind)
    assert.are.equal(1, count(srv, "/2/oauth2/token"))
    assert.are.equal(2, count(srv, "/2/account_activity/webhooks/1/subscriptions/all"))
    no_secret_in(err, srv)
  end)

  it("inside the lock, a token another process already rotated is used without a second refresh", function()
    -- Another process: refreshes with the same store while we hold the stale token.
    local other = client_for(srv, { token_store = c.token_store })
    local stale = c.token_store:get(token.user_id)
    assert.is_table((other:oauth2_refresh(token.user_id)))
    assert.are.equal(1, count(srv, "/2/oauth2/token"))
    stale.expires_at = os.time() -- ours looks expiring: a refresh is due
    assert.is_true((c:subscribe("1", { user_id = token.user_id, oauth2 = stale })))
    assert.are.equal(1, count(srv, "/2/oauth2/token"))
    assert.are.equal(c.token_store:get(token.user_id).access_token, stale.access_token)
  end)

  it("oauth2_refresh stores the rotated token before it returns", function()
    local inner = c.token_store
    local log = {}
    local spy = setmetatable({
      put = function(_, id, t) log[#log + 1] = "put " .. t.access_token return inner:put(id, t) end,
    }, { __index = function(_, k) return function(_, ...) return inner[k](inner, ...) end end })
    local c2 = client_for(srv, { token_store = spy })
    local fresh = assert(c2:oauth2_refresh(token.user_id))
    assert.same({ "put " .. fresh.access_token }, log)
    assert.are.equal(fresh.access_token, inner:get(token.user_id).access_token)
  end)

  it("oauth2_revoke revokes both tokens and forgets the user", function()
    assert.is_true((c:oauth2_revoke(token.user_id)))
    assert.are.equal(2, count(srv, "/2/oauth2/revoke"))
    assert.is_nil(c.token_store:get(token.user_id))
    local ok, err = c:subscribe("1", { user_id = token.user_id, oauth2 = token })
    assert.is_nil(ok)
    assert.are.equal("auth", err.kind)
  end)

  it("a user with oauth2 = true and nothing stored gets nil, err naming the user", function()
    local ok, err = c:subscribe("1", { user_id = "7", oauth2 = true })
    assert.is_nil(ok)
    assert.are.equal("auth", err.kind)
    assert.matches("no OAuth 2.0 token stored for user 7", err.message)
  end)

  it("raises on malformed OAuth 2.0 users", function()
    assert.has_error(function() c:subscribe("1", { oauth2 = true }) end,
      "bad argument 'user.user_id' to 'subscribe' (required with oauth2 = true (the token store is keyed by it))")
    assert.has_error(function() c:subscribe("1", { user_id = "1", oauth2 = "tok" }) end,
      "bad argument 'user.oauth2' to 'subscribe' (expected a token table or true, got string)")
  end)
end)

describe("aa.from_env and OAuth 2.0", function()
  it("reads TWITTER_CLIENT_ID and TWITTER_CLIENT_SECRET", function()
    local lua = os.getenv("AA_SPEC_LUA") or "lua5.4"
    local code = [[local c = require("account_activity").from_env { transport = function() end }
      local cr = c:credentials()
      io.write(tostring(cr.client_id), " ", tostring(cr.client_secret), " ", tostring(c))]]
    local p = io.popen("TWITTER_CONSUMER_KEY=ck TWITTER_CONSUMER_SECRET=cs TWITTER_CLIENT_ID=cid TWITTER_CLIENT_SECRET=ENV-secret-1 "
      .. lua .. " -e " .. string.format("%q", code))
    local out = p:read("*a")
    p:close()
    assert.matches("^true true ", out)
    assert.is_nil(out:find("ENV-secret-1", 1, true))
  end)
end)
