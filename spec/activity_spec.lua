-- The X Activity API client methods (activity.lua) against function
-- transports: every response shape of X-API.md Part 2 3.3, the token policy
-- and its 403 fallback, duplicates, bulk delete reports, mirror_user.
local fake = require "client_fake"
local cjson = require "cjson"
local aa = require "account_activity"
local endpoints = require "account_activity.endpoints"

local res = fake.res
local USER = fake.USER
local BEARER = "AAAA-BEARER-unit"

local SUB = {
  subscription_id = "1940000000000000001", event_type = "post.create",
  filter = { user_id = "2244994945" }, tag = "t1", webhook_id = "1146654567674912769",
  created_at = "2026-07-24T21:05:48.000Z", updated_at = "2026-07-24T21:05:48.000Z",
}
local EXPECTED = {
  id = "1940000000000000001", event_type = "post.create", filter = { user_id = "2244994945" },
  tag = "t1", webhook_id = "1146654567674912769",
  created_at = "2026-07-24T21:05:48.000Z", updated_at = "2026-07-24T21:05:48.000Z",
}

local function client(script, opts, default)
  local o = { api = "v2", bearer_token = BEARER, retries = 0 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return fake.client(o, script, default)
end

local function path_of(req) return (req.url:match("^https?://[^/]+([^?]*)")) end
local function query_of(req) return req.url:match("%?(.*)$") end
local function auth_kind(req)
  local h = req.headers.Authorization or ""
  if h:match("^Bearer ") then return "app" end
  if h:match("^OAuth ") then return h:match('oauth_token="([^"]*)"') end
  return "none"
end

local function sub_args()
  return { event_type = "post.create", filter = { user_id = "2244994945" }, tag = "t1",
           webhook_id = "1146654567674912769" }
end

describe("activity_subscribe", function()
  it("refuses a user whose tokens hold control characters, naming the field, sending nothing", function()
    local c, t = client {}
    for _, field in ipairs { "access_token", "access_token_secret" } do
      local user = { user_id = "2244994945", access_token = "1-abc", access_token_secret = "def" }
      user[field] = user[field] .. "\r\nX-Injected: 1"
      local args = sub_args()
      args.event_type, args.user = "dm.received", user
      local ok, err = pcall(c.activity_subscribe, c, args)
      assert.is_false(ok)
      assert.matches("user%." .. field, tostring(err))
      assert.has_error(function() c:mirror_user("1146654567674912769", user) end)
    end
    assert.are.equal(0, #t.requests)
  end)

  it("parses every documented create shape to the same subscription", function()
    local shapes = {
      { data = { subscription = SUB } },                                          -- SPEC167
      { data = { subscription = SUB, total_subscriptions_for_instance_id = 3 },
        meta = { total_subscriptions = 3 } },                                     -- SPEC159
      { data = { SUB }, meta = { total_subscriptions = 1 } },                     -- DOCS (a)
      { data = SUB },                                                             -- DOCS (b), CXA
      SUB,                                                                        -- bare
    }
    for i, body in ipairs(shapes) do
      local c, t = client { res(i % 2 == 0 and 201 or 200, body) }
      local sub, r = c:activity_subscribe(sub_args())
      assert.are.same(EXPECTED, sub, "shape " .. i)
      assert.are.equal("POST", t.requests[1].method)
      assert.are.equal("/2/activity/subscriptions", path_of(t.requests[1]))
      assert.are.equal("app", auth_kind(t.requests[1]))
      assert.are.equal("app", r.auth)
      local sent = cjson.decode(t.requests[1].body)
      assert.are.same({ event_type = "post.create", filter = { user_id = "2244994945" }, tag = "t1",
        webhook_id = "1146654567674912769" }, sent)
    end
  end)

  it("looks the subscription up after an empty 204", function()
    local other = { subscription_id = "5", event_type = "post.create", filter = { user_id = "9" } }
    local c, t = client { res(204), res(200, { data = { other, SUB }, meta = { result_count = 2 } }) }
    local sub = assert(c:activity_subscribe(sub_args()))
    assert.are.same(EXPECTED, sub)
    assert.are.equal("GET", t.requests[2].method)
    assert.are.equal("/2/activity/subscriptions", path_of(t.requests[2]))
  end)

  it("keeps what it sent when a 204 subscription is not listed yet", function()
    local c = client { res(204), res(200, { data = {} }) }
    local sub = assert(c:activity_subscribe(sub_args()))
    assert.is_nil(sub.id)
    assert.are.equal("post.create", sub.event_type)
    assert.are.same({ user_id = "2244994945" }, sub.filter)
    assert.are.equal("t1", sub.tag)
  end)

  it("classifies duplicates (400 or 409, 'Duplicate' anywhere) as conflict", function()
    local bodies = {
      { 400, { errors = { { message = "Duplicate subscription for event_type post.create" } },
               title = "Invalid Request", type = "https://api.x.com/2/problems/invalid-request" } },
      { 409, { title = "Conflict", detail = "Duplicate: subscription already exists" } },
      { 409, { title = "DuplicateSubscription", type = "about:blank" } },
      { 400, { errors = { { message = "DuplicateSubscriptionFailed: already exists" } } } },
    }
    for i, b in ipairs(bodies) do
      local c = client { res(b[1], b[2]) }
      local v, err = c:activity_subscribe(sub_args())
      assert.is_nil(v)
      assert.are.equal("conflict", err.kind, "body " .. i)
      assert.are.equal(b[1], err.status)
    end
    local c = client { res(400, { errors = { { message = "$.filter.user_id: does not match the regex" } } }) }
    local _, err = c:activity_subscribe(sub_args())
    assert.are_not.equal("conflict", err.kind)
  end)

  it("keeps event_type an open string but refuses empty or CR/LF", function()
    local c = client({}, nil, res(200, { data = { subscription = { subscription_id = "1", event_type = "x.new.kind" } } }))
    assert.are.equal("1", c:activity_subscribe { event_type = "x.new.kind", filter = { user_id = "1" } }.id)
    assert.has_error(function() c:activity_subscribe { event_type = "" } end)
    assert.has_error(function() c:activity_subscribe { event_type = "post.create\r\nX: y" } end)
    assert.has_error(function() c:activity_subscribe { event_type = 5 } end)
    assert.has_error(function() c:activity_subscribe { event_type = "post.create", filter = { user_id = "12a" } } end)
    assert.has_error(function() c:activity_subscribe { event_type = "post.create", filter = { userid = "1" } } end)
    -- the spec's filter has user_id, keyword and direction only (additionalProperties: false)
    assert.has_error(function()
      c:activity_subscribe { event_type = "post.create", filter = { user_id = "1", qualifiers = { "a" } } }
    end, "bad argument 'filter.qualifiers' to 'activity_subscribe' (unknown filter key (user_id, keyword, direction))")
    -- X sends oauth.revoke unasked; its enum has no such type to subscribe to
    local ok, err = pcall(c.activity_subscribe, c, { event_type = "oauth.revoke", filter = {} })
    assert.is_false(ok)
    assert.matches("bad argument 'event_type' to 'activity_subscribe'", err)
    assert.has_error(function() c:activity_subscribe { event_type = "post.create", webhook_id = "x" } end)
    assert.has_error(function() c:activity_subscribe { event_type = "post.create", tag = string.rep("a", 201) } end)
    assert.has_error(function() c:activity_subscribe { event_type = "news.new", filter = { keyword = "" } } end)
    assert.has_error(function() c:activity_subscribe "post.create" end)
  end)
end)

describe("token choice", function()
  local ok_body = { data = { subscription = SUB } }

  it("uses the bearer for public events and the user's tokens for private ones", function()
    local public = { "post.create", "post.delete", "profile.update.bio", "profile.update.handle",
                     "broadcast.start", "broadcast.end", "news.new" }
    local private = { "dm.sent", "dm.received", "dm.read", "dm.indicate_typing", "chat.received",
                      "like.create", "mute.mute", "block.unblock", "post.mention.create",
                      "post.reply.create", "post.quote.create", "post.repost.create", "broadcast.chat" }
    for _, et in ipairs(public) do
      local c, t = client({}, nil, res(200, ok_body))
      assert(c:activity_subscribe { event_type = et, filter = { user_id = "1" }, user = USER })
      assert.are.equal("app", auth_kind(t.requests[1]), et)
    end
    for _, et in ipairs(private) do
      local c, t = client({}, nil, res(200, ok_body))
      local _, r = assert(c:activity_subscribe { event_type = et, user = USER })
      assert.are.equal(USER.access_token, auth_kind(t.requests[1]), et)
      assert.are.equal("user", r.auth)
      -- the user's id becomes the filter when none is given
      assert.are.same({ user_id = USER.user_id }, cjson.decode(t.requests[1].body).filter)
    end
  end)

  it("keeps the classification as data", function()
    local policy = require("account_activity.activity").policy
    assert.are.equal("user", policy.auth_for("dm.future_kind"))
    assert.are.equal("app", policy.auth_for("profile.update.anything"))
    assert.is_nil(policy.auth_for("follow.follow"))
    assert.is_table(endpoints.xaa.auth.public)
    assert.is_table(endpoints.xaa.auth.private)
  end)

  it("private without a user: the app owner's tokens, or a clear error", function()
    local c, t = client({}, nil, res(200, ok_body))
    assert(c:activity_subscribe { event_type = "dm.received", filter = { user_id = "1" } })
    assert.are.equal(fake.CREDS.access_token, auth_kind(t.requests[1]))
    local c2 = client({}, { unset = { "access_token", "access_token_secret" } }, res(200, ok_body))
    assert.has_error(function() c2:activity_subscribe { event_type = "dm.received", filter = { user_id = "1" } } end,
      "bad argument 'user' to 'activity_subscribe' (event_type \"dm.received\" is private: pass the filtered"
      .. " user's tokens as user = {access_token, access_token_secret} or user = {user_id, oauth2 = token | true}"
      .. " (or auth = \"app\"))")
  end)

  it("opts.auth overrides the classification", function()
    local c, t = client({}, nil, res(200, ok_body))
    assert(c:activity_subscribe { event_type = "dm.received", user = USER, auth = "app" })
    assert.are.equal("app", auth_kind(t.requests[1]))
    assert(c:activity_subscribe { event_type = "post.create", user = USER, auth = "user" })
    assert.are.equal(USER.access_token, auth_kind(t.requests[2]))
    assert.has_error(function() c:activity_subscribe { event_type = "post.create", auth = "bearer" } end)
  end)

  local hints = {
    { title = "Forbidden", detail = "OAuthAccessTokenRequired: this event type needs a user token" },
    { errors = { { message = "Subscribing to private events requires user context" } } },
    { title = "Forbidden", detail = "The user has not authorized your application" },
  }
  for i, body in ipairs(hints) do
    it("retries a 403 asking for user context with the user's tokens (" .. i .. ")", function()
      local c, t = client { res(403, body), res(200, ok_body) }
      local sub, r = assert(c:activity_subscribe { event_type = "follow.follow", user = USER })
      assert.are.equal(EXPECTED.id, sub.id)
      assert.are.equal("app", auth_kind(t.requests[1]))
      assert.are.equal(USER.access_token, auth_kind(t.requests[2]))
      assert.are.equal("user", r.auth)
      assert.are.equal(2, #t.requests)
    end)
  end

  it("does not retry other 403s, without a user, or with auth forced", function()
    local c, t = client { res(403, { title = "Client Forbidden", type = "https://api.twitter.com/2/problems/client-forbidden" }) }
    local _, err = c:activity_subscribe { event_type = "follow.follow", user = USER }
    assert.are.equal("forbidden", err.kind)
    assert.are.equal(1, #t.requests)
    c, t = client { res(403, hints[1]) }
    _, err = c:activity_subscribe { event_type = "follow.follow", filter = { user_id = "1" } }
    assert.are.equal(403, err.status)
    assert.are.equal(1, #t.requests)
    c, t = client { res(403, hints[1]) }
    _, err = c:activity_subscribe { event_type = "follow.follow", user = USER, auth = "app" }
    assert.are.equal(403, err.status)
    assert.are.equal(1, #t.requests)
    -- the retry's own failure is returned, once
    c, t = client { res(403, hints[1]), res(403, hints[3]) }
    _, err = c:activity_subscribe { event_type = "follow.follow", user = USER }
    assert.are.equal(2, #t.requests)
    assert.is_true(err.auth_retried)
    assert.is_nil(tostring(err):find(USER.access_token_secret, 1, true))
  end)
end)

describe("activity_subscriptions", function()
  it("reads one page, or follows meta.next_token with all = true", function()
    local s2 = { subscription_id = "2", event_type = "like.create", filter = { user_id = "7", direction = "inbound" } }
    local pages = {
      res(200, { data = { SUB }, meta = { next_token = "7140dibdnow9c7btw3w29grvxfcgvpb9n9coehpk7xz5i", result_count = 1 } }),
      res(200, { data = { s2 }, meta = { result_count = 1 } }),
    }
    local c, t = client { pages[1] }
    local list, r = assert(c:activity_subscriptions { max_results = 1 })
    assert.are.same({ EXPECTED }, list)
    assert.are.equal("7140dibdnow9c7btw3w29grvxfcgvpb9n9coehpk7xz5i", r.next_token)
    assert.are.equal("max_results=1", query_of(t.requests[1]))

    c, t = client { pages[1], pages[2] }
    list, r = assert(c:activity_subscriptions { all = true })
    assert.are.equal(2, #list)
    assert.are.equal("2", list[2].id)
    assert.are.same({ user_id = "7", direction = "inbound" }, list[2].filter)
    assert.are.equal(2, r.pages)
    assert.matches("pagination_token=7140dibdnow9c7btw3w29grvxfcgvpb9n9coehpk7xz5i", query_of(t.requests[2]))
  end)

  it("accepts the list without meta, with total_subscriptions, or without data", function()
    for _, body in ipairs {
      { data = { SUB } }, { data = { SUB }, meta = { total_subscriptions = 1 } },
    } do
      local c = client { res(200, body) }
      assert.are.same({ EXPECTED }, (c:activity_subscriptions { all = true }))
    end
    local c = client { res(200, { meta = { result_count = 0 } }) }
    assert.are.same({}, (c:activity_subscriptions()))
  end)

  it("stops when a server repeats a token", function()
    local page = res(200, { data = { SUB }, meta = { next_token = "sametokensametoken" } })
    local c, t = client({}, nil, page)
    local list = assert(c:activity_subscriptions { all = true })
    assert.are.equal(2, #t.requests)
    assert.are.equal(2, #list)
  end)

  it("checks its arguments", function()
    local c = client {}
    assert.has_error(function() c:activity_subscriptions { max_results = 0 } end)
    assert.has_error(function() c:activity_subscriptions { max_results = 1001 } end)
    assert.has_error(function() c:activity_subscriptions { max_results = 1.5 } end)
    assert.has_error(function() c:activity_subscriptions { pagination_token = "a\nb" } end)
  end)
end)

describe("activity_update and activity_unsubscribe", function()
  it("parses every update shape to the same subscription", function()
    for i, body in ipairs {
      { data = { subscription = SUB, total_subscriptions = 4 } },
      { data = SUB, meta = { total_subscriptions = 4 } },
      { data = { SUB } },
    } do
      local c, t = client { res(200, body) }
      local sub = assert(c:activity_update(SUB.subscription_id, { tag = "t1" }))
      assert.are.same(EXPECTED, sub, "shape " .. i)
      assert.are.equal("PUT", t.requests[1].method)
      assert.are.equal("/2/activity/subscriptions/" .. SUB.subscription_id, path_of(t.requests[1]))
      assert.are.same({ tag = "t1" }, cjson.decode(t.requests[1].body))
    end
    local c = client { res(204), res(200, { data = { SUB } }) }
    assert.are.same(EXPECTED, (c:activity_update(SUB.subscription_id, { webhook_id = SUB.webhook_id })))
  end)

  it("refuses to change event_type or filter", function()
    local c = client {}
    assert.has_error(function() c:activity_update("1", { event_type = "dm.sent" }) end)
    assert.has_error(function() c:activity_update("1", {}) end)
    assert.has_error(function() c:activity_update("abc", { tag = "x" }) end)
  end)

  it("deletes one: data.deleted or 204; deleted = false is an error", function()
    for _, r in ipairs { res(200, { data = { deleted = true }, meta = { total_subscriptions = 0 } }), res(204) } do
      local c, t = client { r }
      assert.is_true((c:activity_unsubscribe("42")))
      assert.are.equal("DELETE", t.requests[1].method)
      assert.are.equal("/2/activity/subscriptions/42", path_of(t.requests[1]))
      assert.are.equal("app", auth_kind(t.requests[1]))
    end
    local c = client { res(200, { data = { deleted = false } }) }
    local v, err = c:activity_unsubscribe("42")
    assert.is_nil(v)
    assert.are.equal("decode", err.kind)
    c = client { res(404, { title = "Not Found Error", type = "https://api.x.com/2/problems/resource-not-found",
                            detail = "Could not find subscription with id: [42]." }) }
    v, err = c:activity_unsubscribe("42")
    assert.is_nil(v)
    assert.are.equal("not_found", err.kind)
  end)
end)

describe("activity_unsubscribe_many", function()
  local function ids(n, from)
    local out = {}
    for i = 1, n do out[i] = tostring((from or 1000) + i) end
    return out
  end

  it("sends 100 ids per call and reports per id", function()
    local list = ids(250)
    local function answer(req)
      local q = query_of(req):match("ids=([^&]*)"):gsub("%%2C", ",")
      local data, errs = {}, {}
      for id in q:gmatch("[^,]+") do
        if id == "1007" then
          errs[#errs + 1] = { subscription_id = id, reason = "SubscriptionNotFound", message = "no such subscription" }
        elseif id == "1120" then
          data[#data + 1] = { subscription_id = id, deleted = false }
        elseif id ~= "1130" then
          data[#data + 1] = { subscription_id = id, deleted = true }
        end
      end
      return res(200, { data = data, errors = errs, meta = { total_subscriptions = 10 } })
    end
    local c, t = client({}, nil, answer)
    local report = c:activity_unsubscribe_many(list)
    assert.are.equal(3, #t.requests)
    for i, n in ipairs { 100, 100, 50 } do
      local q = query_of(t.requests[i]):match("ids=([^&]*)"):gsub("%%2C", ",")
      local count = select(2, q:gsub(",", ",")) + 1
      assert.are.equal(n, count)
      assert.are.equal("DELETE", t.requests[i].method)
      assert.are.equal("/2/activity/subscriptions", path_of(t.requests[i]))
    end
    assert.are.equal(247, #report.deleted)
    assert.are.equal(3, #report.failed)
    local by = {}
    for _, f in ipairs(report.failed) do by[f.id] = f.err end
    assert.are.equal("not_found", by["1007"].kind)
    assert.matches("SubscriptionNotFound", tostring(by["1007"]))
    assert.matches("deleted = false", tostring(by["1120"]))
    assert.matches("did not mention", tostring(by["1130"]))
    assert.are.equal(10, report.total_subscriptions)
  end)

  it("a failed call fails its batch only; a 204 deletes it", function()
    local c = client { res(204), res(503, { title = "Service Unavailable" }), res(200, { data = {
      { subscription_id = "1201", deleted = true } } }) }
    local report = c:activity_unsubscribe_many(ids(201))
    assert.are.equal(101, #report.deleted)
    assert.are.equal(100, #report.failed)
    assert.are.equal(503, report.failed[1].err.status)
    assert.are.equal("1101", report.failed[1].id)
  end)

  it("dedupes and validates ids", function()
    local c, t = client({}, nil, res(204))
    local report = c:activity_unsubscribe_many { "1", "1", 2 }
    assert.are.same({ "1", "2" }, report.deleted)
    assert.matches("ids=1%%2C2$", t.requests[1].url)
    assert.has_error(function() c:activity_unsubscribe_many { "1", "x" } end)
    assert.has_error(function() c:activity_unsubscribe_many "1" end)
  end)
end)

-- A small in-memory XAA server as a function transport.
local function xaa_server(opts)
  opts = opts or {}
  local srv = { subs = {}, order = {}, n = 0, creates = {}, hidden = {} }
  local function key(et, f) return et .. "|" .. tostring(f.user_id) .. "|" .. tostring(f.keyword) .. "|" .. tostring(f.direction) end
  function srv.add(et, f, tag, wh)
    srv.n = srv.n + 1
    local id = tostring(1000 + srv.n)
    local s = { subscription_id = id, event_type = et, filter = f, tag = tag, webhook_id = wh,
                created_at = "2026-07-24T21:05:48.000Z" }
    srv.subs[id] = s
    srv.order[#srv.order + 1] = id
    return s
  end
  function srv.fn(req)
    local path = path_of(req)
    if req.method == "GET" and path == "/2/activity/subscriptions" then
      local data = {}
      for _, id in ipairs(srv.order) do
        if srv.subs[id] and not srv.hidden[id] then data[#data + 1] = srv.subs[id] end
      end
      srv.hidden = {} -- lag: hidden ones appear on the next list
      return res(200, { data = data })
    elseif req.method == "POST" and path == "/2/activity/subscriptions" then
      local b = cjson.decode(req.body)
      srv.creates[#srv.creates + 1] = { event_type = b.event_type, auth = auth_kind(req) }
      if opts.fail and opts.fail[b.event_type] then return res(403, { title = "Client Forbidden" }) end
      for _, id in ipairs(srv.order) do
        local s = srv.subs[id]
        if s and key(s.event_type, s.filter) == key(b.event_type, b.filter) then
          return res(409, { title = "Conflict", detail = "Duplicate subscription" })
        end
      end
      return res(200, { data = { subscription = srv.add(b.event_type, b.filter, b.tag, b.webhook_id) } })
    elseif req.method == "DELETE" and path == "/2/activity/subscriptions" then
      local q = query_of(req):match("ids=([^&]*)"):gsub("%%2C", ",")
      local data = {}
      for id in q:gmatch("[^,]+") do
        srv.subs[id] = nil
        data[#data + 1] = { subscription_id = id, deleted = true }
      end
      return res(200, { data = data })
    end
    return res(404, { title = "Not Found Error" })
  end
  return srv
end

describe("mirror_user", function()
  local WH = "1146654567674912769"
  local function mirror_client(srv)
    return client({}, nil, srv.fn)
  end

  it("creates the AAA-equivalent set, tagged, with the right tokens", function()
    local srv = xaa_server()
    local c = mirror_client(srv)
    local report = assert(c:mirror_user(WH, USER))
    assert.are.equal(17, #report.created)
    assert.are.same({}, report.existing)
    assert.are.same({}, report.failed)
    assert.is_true(#report.unmapped >= 2)
    local texts = {}
    for _, u in ipairs(report.unmapped) do texts[#texts + 1] = u.aaa end
    assert.matches("retweets of quoted posts", table.concat(texts, ";"))
    assert.matches("user_has_blocked", table.concat(texts, ";"))
    local types = {}
    for _, s in ipairs(report.created) do
      types[#types + 1] = s.event_type
      assert.are.equal("aa-mirror:" .. USER.user_id, s.tag)
      assert.are.equal(WH, s.webhook_id)
      assert.are.same({ user_id = USER.user_id }, s.filter)
    end
    table.sort(types)
    assert.are.same({ "block.block", "block.unblock", "dm.indicate_typing", "dm.read", "dm.received", "dm.sent",
      "follow.follow", "follow.unfollow", "like.create", "mute.mute", "mute.unmute", "post.create", "post.delete",
      "post.mention.create", "post.quote.create", "post.reply.create", "post.repost.create" }, types)
    for _, cr in ipairs(srv.creates) do
      local expect = require("account_activity.activity").policy.auth_for(cr.event_type) == "user"
        and USER.access_token or "app"
      assert.are.equal(expect, cr.auth, cr.event_type)
    end
  end)

  it("is idempotent: a second run creates nothing", function()
    local srv = xaa_server()
    local c = mirror_client(srv)
    assert(c:mirror_user(WH, USER))
    local n = #srv.creates
    local report = assert(c:mirror_user(WH, USER))
    assert.are.equal(0, #report.created)
    assert.are.equal(17, #report.existing)
    assert.are.equal(n, #srv.creates)
  end)

  it("treats a duplicate answer as existing and reports real failures", function()
    local srv = xaa_server { fail = { ["dm.read"] = true } }
    local hidden = srv.add("like.create", { user_id = USER.user_id }, "someone-else", WH)
    srv.hidden[hidden.subscription_id] = true -- not in the first list: create says Duplicate
    local other_wh = srv.add("post.create", { user_id = USER.user_id }, "mine", "999")
    local c = mirror_client(srv)
    local report = assert(c:mirror_user(WH, USER))
    assert.are.equal(14, #report.created)
    assert.are.equal(2, #report.existing)
    assert.are.equal(1, #report.failed)
    assert.are.equal("dm.read", report.failed[1].event_type)
    assert.are.equal("forbidden", report.failed[1].err.kind)
    assert.are.equal(1, #report.elsewhere)
    assert.are.equal(other_wh.subscription_id, report.elsewhere[1].id)
  end)

  it("xchat and a subset of event types are options", function()
    local srv = xaa_server()
    local c = mirror_client(srv)
    local report = assert(c:mirror_user(WH, USER, { event_types = { "post.create", "chat.sent" }, xchat = true }))
    assert.are.equal(2, #report.created)
  end)

  it("unmirror_user deletes exactly the tagged ones", function()
    local srv = xaa_server()
    local c = mirror_client(srv)
    assert(c:mirror_user(WH, USER))
    local keep = srv.add("post.create", { user_id = "42" }, "other", WH)
    local report = assert(c:unmirror_user(WH, USER))
    assert.are.equal(17, #report.deleted)
    assert.are.same({}, report.failed)
    local left = {}
    for id in pairs(srv.subs) do left[#left + 1] = id end
    assert.are.same({ keep.subscription_id }, left)
    report = assert(c:unmirror_user(WH, USER.user_id))
    assert.are.same({}, report.deleted)
  end)

  it("needs a user with a user_id and tokens", function()
    local c = client {}
    assert.has_error(function() c:mirror_user(WH, { access_token = "a", access_token_secret = "b" }) end)
    assert.has_error(function() c:mirror_user("x", USER) end)
    assert.has_error(function() c:unmirror_user(WH, "abc") end)
  end)
end)

describe("every flavour", function()
  it("has the XAA methods", function()
    for _, api in ipairs { "enterprise", "premium", "v2" } do
      local c = client({ api = api, env_name = api == "premium" and "dev" or nil },
        nil, res(200, { data = { subscription = SUB } }))
      assert.are.equal("function", type(c.activity_subscribe))
      assert.are.equal("function", type(c.mirror_user))
      assert.are.equal("function", type(c.stream))
      assert.are.same(EXPECTED, (c:activity_subscribe(sub_args())))
    end
  end)
end)

describe("v2 replay", function()
  it("uses POST /2/webhooks/replay and refuses more than 24 h without a request", function()
    local c, t, _, clock = client { res(200, { data = { job_id = "77", created_at = "2026-01-01T00:00:00.000Z" } }) }
    local job = assert(c:replay("11", clock.now - 7200, clock.now - 3600))
    assert.are.equal("77", job.job_id)
    assert.are.equal("POST", t.requests[1].method)
    assert.are.equal("/2/webhooks/replay", path_of(t.requests[1]))
    local body = cjson.decode(t.requests[1].body)
    assert.are.equal("11", body.webhook_id)
    assert.matches("^%d%d%d%d%d%d%d%d%d%d%d%d$", body.from_date)
    local v, err = c:replay("11", clock.now - 30 * 3600, clock.now - 3600)
    assert.is_nil(v)
    assert.matches("at most 24 hours", tostring(err), nil, true)
    assert.are.equal(1, #t.requests)
  end)
end)

describe("one router for AAA and XAA", function()
  it("a follow handler receives the same user's follow from both envelopes", function()
    local aaa = {
      for_user_id = "2244994945",
      follow_events = { {
        type = "follow", created_timestamp = "1517588749178",
        source = { id = "3333333333", id_str = "3333333333", screen_name = "follower" },
        target = { id = "2244994945", id_str = "2244994945", screen_name = "XDevelopers" },
      } },
    }
    local xaa = { data = {
      event_uuid = "-2781149976877970683", event_type = "follow.follow",
      filter = { user_id = "2244994945" }, tag = "aa-mirror:2244994945",
      payload = {
        source = { data = { id = "3333333333", username = "follower" } },
        target = { data = { id = "2244994945", username = "XDevelopers" } },
      },
    } }
    local r = aa.router()
    local got, scoped = {}, {}
    r:on("follow", function(ev) got[#got + 1] = ev end)
    r:for_user("2244994945"):on("follow", function(ev) scoped[#scoped + 1] = ev.api end)
    assert.are.equal(1, (r:dispatch(cjson.encode(aaa))))
    assert.are.equal(1, (r:dispatch(cjson.encode(xaa))))
    assert.are.equal(2, #got)
    assert.are.same({ "aaa", "xaa" }, scoped)
    assert.are.equal("follow", got[1].type)
    assert.are.equal("follow.follow", got[2].type)
    assert.are.equal("2244994945", got[1].for_user_id)
    assert.are.equal("2244994945", got[2].for_user_id)
    -- the follower, whatever the envelope
    local function follower(ev)
      local src = ev.item.source
      return src.id_str or src.data.id
    end
    assert.are.equal(follower(got[1]), follower(got[2]))
  end)
end)
