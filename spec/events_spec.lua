-- events.parse and events.router: every AAA event type, both follow/block/mute
-- shapes, DM maps, unknown keys, XAA envelopes, aliases, per-user handlers.
local events = require "account_activity.events"
local aa = require "account_activity"
local cjson = require "cjson"

-- Payloads shaped after X's samples (X-API.md Part 1 §6, Part 2 §5).
local USER_A = [[{"id":2244994945,"id_str":"2244994945","name":"TwitterDev","screen_name":"TwitterDev"}]]
local USER_B = [[{"id":6253282,"id_str":"6253282","name":"Twitter API","screen_name":"TwitterAPI"}]]

local AAA = {
  tweet_create = [[{"for_user_id":"2244994945","user_has_blocked":"false","tweet_create_events":[
    {"created_at":"Wed Oct 10 20:19:24 +0000 2018","id":1050118621198921728,
     "id_str":"1050118621198921728","text":"To make room for more expression",
     "user":]] .. USER_A .. [[}]}]],
  favorite = [[{"for_user_id":"2244994945","favorite_events":[{"id":"a7ba59eab0bfcba386f7acedac279542",
    "created_at":"Mon Mar 26 16:33:26 +0000 2018","timestamp_ms":1522082006140,
    "favorited_status":{"id_str":"1050118621198921728","text":"x"},"user":]] .. USER_B .. [[}]}]],
  follow = [[{"for_user_id":"2244994945","follow_events":[
    {"type":"follow","created_timestamp":"1517588749178","target":]] .. USER_A .. [[,"source":]] .. USER_B .. [[},
    {"type":"unfollow","created_timestamp":"1517588749179","target":]] .. USER_A .. [[,"source":]] .. USER_B .. [[}]}]],
  unfollow_key = [[{"for_user_id":"2244994945","unfollow_events":[
    {"created_timestamp":"1517588749180","target":]] .. USER_A .. [[,"source":]] .. USER_B .. [[}]}]],
  block = [[{"for_user_id":"2244994945","block_events":[
    {"type":"block","created_timestamp":"1518127020304","source":]] .. USER_A .. [[,"target":]] .. USER_B .. [[},
    {"type":"unblock","created_timestamp":"1518127020305","source":]] .. USER_A .. [[,"target":]] .. USER_B .. [[}]}]],
  unblock_key = [[{"for_user_id":"2244994945","unblock_events":[
    {"type":"unblock","created_timestamp":"1518127020306","source":]] .. USER_A .. [[,"target":]] .. USER_B .. [[}]}]],
  mute = [[{"for_user_id":"2244994945","mute_events":[
    {"type":"mute","created_timestamp":"1518127020304","source":]] .. USER_A .. [[,"target":]] .. USER_B .. [[},
    {"type":"unmute","created_timestamp":"1518127020305","source":]] .. USER_A .. [[,"target":]] .. USER_B .. [[}]}]],
  unmute_key = [[{"for_user_id":"2244994945","unmute_events":[
    {"created_timestamp":"1518127020307","source":]] .. USER_A .. [[,"target":]] .. USER_B .. [[}]}]],
  user_event = [[{"user_event":{"revoke":{"date_time":"2018-05-24T09:48:12+00:00",
    "target":{"app_id":"13090192"},"source":{"user_id":"63046977"}}}}]],
  direct_message = [[{"for_user_id":"4337869213","direct_message_events":[{"type":"message_create",
    "id":"954491830116155396","created_timestamp":"1516403560557","message_create":{
    "target":{"recipient_id":"4337869213"},"sender_id":"3001969357","source_app_id":"13090192",
    "message_data":{"text":"Hello World!","entities":{"hashtags":[],"symbols":[],"user_mentions":[],"urls":[]}}}}],
    "apps":{"13090192":{"id":"13090192","name":"FuriousCamperTestApp1","url":"https://twitter.com/furiouscamper"}},
    "users":{"3001969357":{"id":"3001969357","created_timestamp":"1422556069340","name":"Jordan Brinks",
      "screen_name":"furiouscamper"},"4337869213":{"id":"4337869213","name":"Harrison Test",
      "screen_name":"Harris_0ff"}}}]],
  direct_message_indicate_typing = [[{"for_user_id":"4337869213","direct_message_indicate_typing_events":[
    {"created_timestamp":"1518127183443","sender_id":"3284025577","target":{"recipient_id":"3001969357"}}],
    "users":{"3284025577":{"id":"3284025577","screen_name":"bogus"}}}]],
  direct_message_mark_read = [[{"for_user_id":"4337869213","direct_message_mark_read_events":[
    {"created_timestamp":"1518452444662","sender_id":"199566737","target":{"recipient_id":"1"},
     "last_read_event_id":"963085315333238788"}],
    "users":{"199566737":{"id":"199566737","screen_name":"Sachin"}}}]],
  tweet_delete = [[{"for_user_id":"930524282358325248","tweet_delete_events":[
    {"status":{"id":"1045405559317569537","user_id":"930524282358325248"},"timestamp_ms":"1432228155593"}]}]],
  replay_job_status = [[{"replay_job_status":{"webhook_id":"1234567890","job_state":"Complete",
    "job_state_description":"All events delivered","job_id":"9876543210"}}]],
}

local function one(body)
  local list = assert(events.parse(body))
  assert.are.equal(1, #list)
  return list[1]
end

describe("events.parse (AAA)", function()
  it("tweet_create: id from id_str, exactly (never through a double)", function()
    local ev = one(AAA.tweet_create)
    assert.are.equal("tweet_create", ev.type)
    assert.are.equal("2244994945", ev.for_user_id)
    assert.are.equal("1050118621198921728", ev.id)
    assert.are.equal("To make room for more expression", ev.item.text)
    assert.are.equal("false", ev.user_has_blocked)
    assert.are.equal("aaa", ev.api)
    assert.are.equal("2244994945", ev.envelope.for_user_id)
  end)

  it("favorite: the opaque hex id", function()
    local ev = one(AAA.favorite)
    assert.are.equal("favorite", ev.type)
    assert.are.equal("a7ba59eab0bfcba386f7acedac279542", ev.id)
    assert.are.equal("TwitterAPI", ev.item.user.screen_name)
  end)

  it("follow_events carries follow and unfollow, typed by the item", function()
    local list = assert(events.parse(AAA.follow))
    assert.are.equal(2, #list)
    assert.are.equal("follow", list[1].type)
    assert.are.equal("unfollow", list[2].type)
    assert.are.equal("1517588749178", list[1].item.created_timestamp)
    assert.are.equal("2244994945", list[2].for_user_id)
  end)

  it("the separate unfollow/unblock/unmute keys of the documented list", function()
    assert.are.equal("unfollow", one(AAA.unfollow_key).type)
    assert.are.equal("unblock", one(AAA.unblock_key).type)
    assert.are.equal("unmute", one(AAA.unmute_key).type)
  end)

  it("block_events and mute_events carry both directions", function()
    local b = assert(events.parse(AAA.block))
    assert.are.same({ "block", "unblock" }, { b[1].type, b[2].type })
    local m = assert(events.parse(AAA.mute))
    assert.are.same({ "mute", "unmute" }, { m[1].type, m[2].type })
  end)

  it("user_event revoke is an object; for_user_id comes from the revoking user", function()
    local ev = one(AAA.user_event)
    assert.are.equal("user_event", ev.type)
    assert.are.equal("63046977", ev.for_user_id)
    assert.are.equal("13090192", ev.item.revoke.target.app_id)
    assert.is_string(ev.id)
  end)

  it("direct_message attaches the users and apps maps", function()
    local ev = one(AAA.direct_message)
    assert.are.equal("direct_message", ev.type)
    assert.are.equal("954491830116155396", ev.id)
    assert.are.equal("furiouscamper", ev.users["3001969357"].screen_name)
    assert.are.equal("FuriousCamperTestApp1", ev.apps["13090192"].name)
    assert.are.equal("Hello World!", ev.item.message_create.message_data.text)
  end)

  it("typing and read receipts, with their users map", function()
    local t = one(AAA.direct_message_indicate_typing)
    assert.are.equal("direct_message_indicate_typing", t.type)
    assert.are.equal("bogus", t.users["3284025577"].screen_name)
    local r = one(AAA.direct_message_mark_read)
    assert.are.equal("direct_message_mark_read", r.type)
    assert.are.equal("963085315333238788", r.item.last_read_event_id)
    assert.are.equal("Sachin", r.users["199566737"].screen_name)
  end)

  it("tweet_delete and replay_job_status (an object)", function()
    local d = one(AAA.tweet_delete)
    assert.are.equal("tweet_delete", d.type)
    assert.are.equal("1045405559317569537", d.item.status.id)
    local j = one(AAA.replay_job_status)
    assert.are.equal("replay_job_status", j.type)
    assert.are.equal("Complete", j.item.job_state)
    assert.is_nil(j.for_user_id)
  end)

  it("every documented type parses to its name", function()
    local want = {
      tweet_create = { "tweet_create" }, favorite = { "favorite" },
      follow = { "follow", "unfollow" }, unfollow_key = { "unfollow" },
      block = { "block", "unblock" }, unblock_key = { "unblock" },
      mute = { "mute", "unmute" }, unmute_key = { "unmute" }, user_event = { "user_event" },
      direct_message = { "direct_message" },
      direct_message_indicate_typing = { "direct_message_indicate_typing" },
      direct_message_mark_read = { "direct_message_mark_read" },
      tweet_delete = { "tweet_delete" }, replay_job_status = { "replay_job_status" },
    }
    for name, body in pairs(AAA) do
      local list = assert(events.parse(body))
      local got = {}
      for i, ev in ipairs(list) do
        got[i] = ev.type
        assert.is_string(ev.id)
        assert.is_true(#ev.id > 0)
      end
      assert.are.same(want[name], got, name)
    end
  end)

  it("hashed ids are stable across key order and differ across items", function()
    local a = one([[{"for_user_id":"1",
      "tweet_delete_events":[{"status":{"id":"5","user_id":"1"},"timestamp_ms":"9"}]}]])
    local b = one([[{"tweet_delete_events":[{"timestamp_ms":"9","status":{"user_id":"1","id":"5"}}],
      "for_user_id":"1"}]])
    local c = one([[{"for_user_id":"1",
      "tweet_delete_events":[{"status":{"id":"6","user_id":"1"},"timestamp_ms":"9"}]}]])
    local d = one([[{"for_user_id":"2",
      "tweet_delete_events":[{"status":{"id":"5","user_id":"1"},"timestamp_ms":"9"}]}]])
    assert.are.equal(a.id, b.id)
    assert.are_not.equal(a.id, c.id)
    assert.are_not.equal(a.id, d.id)
    assert.matches("^%x+$", a.id)
    -- follow vs unfollow of the same pair at the same instant are different events
    local f = assert(events.parse([[{"for_user_id":"1","follow_events":[
      {"type":"follow","source":{"id":"2"},"target":{"id":"1"}},
      {"type":"unfollow","source":{"id":"2"},"target":{"id":"1"}}]}]]))
    assert.are_not.equal(f[1].id, f[2].id)
  end)

  it("a numeric id past 2^53 without id_str keeps its exact digits", function()
    local ev = one([[{"for_user_id":"1","tweet_create_events":[{"id":1050118621198921733,"text":"t"}]}]])
    assert.are.equal("1050118621198921733", ev.id)
    assert.are.equal("1050118621198921733", ev.item.id)
  end)

  it("a lossy numeric id (an already decoded table) is hashed, never used", function()
    local ev = one(cjson.decode([[{"for_user_id":"1","tweet_create_events":[{"id":1050118621198921733,"text":"t"}]}]]))
    assert.is_string(ev.id)
    assert.are_not.equal("1050118621198921733", ev.id)
    assert.matches("^%x+$", ev.id)
  end)

  it("a for_user_id sent as a number past 2^53 routes by its exact digits", function()
    for _, digits in ipairs { "1234567890123456789", "1234567890123456789012", "9007199254740993" } do
      local body = ([[{"for_user_id":%s,"favorite_events":[{"id":"ab"}]}]]):format(digits)
      assert.are.equal(digits, one(body).for_user_id)
      local hit
      local r = events.router()
      r:for_user(digits):on("favorite", function() hit = true end)
      r:dispatch(body)
      assert.is_true(hit, digits)
    end
  end)

  it("a lone surrogate escape in a delivery decodes as U+FFFD", function()
    local ev = one([[{"for_user_id":"1","favorite_events":[{"id":"ab","text":"x\ud800y\udfff"}]}]])
    assert.are.equal("x\239\191\189y\239\191\189", ev.item.text)
  end)

  it("a numeric for_user_id becomes a string", function()
    local ev = one([[{"for_user_id":2244994945,"favorite_events":[{"id":"ab"}]}]])
    assert.are.equal("2244994945", ev.for_user_id)
  end)

  it("unknown keys become events named after the key, never dropped", function()
    local list = assert(events.parse([[{"for_user_id":"7","zebra_events":[{"id":"z1"},{"id":"z2"}],
      "alpha_events":[{"id":"a1"}],"lonely":{"x":1}}]]))
    local got = {}
    for i, ev in ipairs(list) do got[i] = ev.type .. ":" .. ev.id end
    -- several event keys come out sorted by key, items in order
    assert.are.equal("alpha:a1", got[1])
    assert.are.equal("lonely", list[2].type)
    assert.are.equal(1, list[2].item.x)
    assert.are.equal("zebra:z1", got[3])
    assert.are.equal("zebra:z2", got[4])
    assert.are.equal("7", list[4].for_user_id)
  end)

  it("a DM item's own type (message_create) does not rename the event", function()
    assert.are.equal("direct_message", one(AAA.direct_message).type)
  end)

  it("an empty array gives no event; accepts a decoded table", function()
    assert.are.same({}, assert(events.parse([[{"for_user_id":"2244994945","favorite_events":[]}]])))
    local ev = one(cjson.decode(AAA.favorite))
    assert.are.equal("favorite", ev.type)
  end)

  it("invalid input: nil, err; wrong argument types raise", function()
    local list, err = events.parse("{not json")
    assert.is_nil(list)
    assert.matches("invalid JSON", err)
    list, err = events.parse("[1,2]")
    assert.is_nil(list)
    assert.matches("object", err)
    list, err = events.parse('"str"')
    assert.is_nil(list)
    assert.matches("object", err)
    assert.has_error(function() events.parse(42) end,
      "bad argument #1 to 'parse' (string or table expected, got number)")
    assert.has_error(function() events.parse() end)
  end)
end)

local XAA_FOLLOW = [[{"data":{"event_uuid":"-2781149976877970683","event_type":"follow.follow",
  "filter":{"user_id":"1883993925438169089"},"tag":"my follows",
  "payload":{"source":{"data":{"id":"1","username":"a"}},
             "target":{"data":{"id":"1883993925438169089","username":"b"}}}}}]]

local function xaa(event_type, uuid, user_id, payload)
  return cjson.encode { data = { event_uuid = uuid, event_type = event_type,
    filter = { user_id = user_id }, payload = payload or { id = "p" .. uuid } } }
end

describe("events.parse (XAA envelope)", function()
  it("one event: dotted type, event_uuid id, filter user, tag, payload", function()
    local ev = one(XAA_FOLLOW)
    assert.are.equal("follow.follow", ev.type)
    assert.are.equal("-2781149976877970683", ev.id)
    assert.are.equal("1883993925438169089", ev.for_user_id)
    assert.are.equal("my follows", ev.tag)
    assert.are.equal("a", ev.item.source.data.username)
    assert.are.equal("xaa", ev.api)
  end)

  it("includes, and data as an array", function()
    local body = [[{"data":[{"event_uuid":"1","event_type":"post.create","filter":{"user_id":"9"},
      "payload":{"id":"100","text":"hi","author_id":"9"},"includes":{"users":[{"id":"9","username":"nine"}]}},
      {"event_uuid":"2","event_type":"like.create","filter":{"user_id":"9","direction":"inbound"},
      "payload":{"id":"abc","liked_tweet_id":"100"}}]}]]
    local list = assert(events.parse(body))
    assert.are.equal(2, #list)
    assert.are.equal("post.create", list[1].type)
    assert.are.equal("nine", list[1].includes.users[1].username)
    assert.are.equal("like.create", list[2].type)
    assert.are.equal("2", list[2].id)
    assert.are.equal("inbound", list[2].filter.direction)
  end)

  it("the posts of includes under either name, as the docs (tweets) or the spec (posts) send them", function()
    local docs = events.parse('{"data":{"event_uuid":"1","event_type":"like.create","filter":{"user_id":"7"},'
      .. '"payload":{"liked_tweet_id":"5","liked_tweet_author_id":"7"},"includes":{"tweets":[{"id":"5"}]}}}')
    local spec = events.parse('{"data":{"event_uuid":"2","event_type":"like.create","filter":{"user_id":"7"},'
      .. '"payload":{"liked_tweet_id":"5","tweet_author_id":"7"},"includes":{"posts":[{"id":"5"}]}}}')
    for _, list in ipairs { docs, spec } do
      assert.are.equal("5", list[1].includes.tweets[1].id)
      assert.are.equal("5", list[1].includes.posts[1].id)
      assert.are.equal("7", list[1].for_user_id)
    end
    -- the raw envelope is left as X sent it
    assert.is_nil(spec[1].envelope.data.includes.tweets)
  end)

  it("oauth.revoke with an empty filter, and a missing event_uuid", function()
    local ev = one([[{"data":{"event_uuid":"55","event_type":"oauth.revoke","filter":{},
      "payload":{"date_time":"2026-01-01T00:00:00+00:00","user_id":"3","app_id":"4"}}}]])
    assert.are.equal("oauth.revoke", ev.type)
    assert.is_nil(ev.for_user_id)
    assert.is_nil(ev.tag)
    local nouuid = one([[{"data":{"event_type":"profile.update.bio","filter":{"user_id":"3"},
      "payload":{"before":"a","after":"b"}}}]])
    assert.matches("^%x+$", nouuid.id)
  end)

  it("dm.* payloads expose their users map", function()
    local ev = one([[{"data":{"event_uuid":"8","event_type":"dm.received","filter":{"user_id":"3"},
      "payload":{"direct_message_events":[{"id":"77","type":"message_create"}],
      "users":{"5":{"data":{"id":"5","username":"five"}}}}}}]])
    assert.are.equal("five", ev.users["5"].data.username)
  end)
end)

describe("events.router", function()
  it("runs several handlers per type in order, then '*'; returns the count", function()
    local r = events.router()
    local seen = {}
    r:on("follow", function(ev) seen[#seen + 1] = "f1:" .. ev.type end)
     :on("follow", function(ev) seen[#seen + 1] = "f2:" .. ev.type end)
     :on("*", function(ev) seen[#seen + 1] = "*:" .. ev.type end)
    local n, errs = r:dispatch(AAA.follow)
    assert.are.equal(2, n) -- the unfollow still reached "*"
    assert.is_nil(errs)
    assert.are.same({ "f1:follow", "f2:follow", "*:follow", "*:unfollow" }, seen)
  end)

  it("hands the router to the handler and counts only handled events", function()
    local r = events.router()
    local got
    r:on("favorite", function(_, router) got = router end)
    assert.are.equal(1, r:dispatch(AAA.favorite))
    assert.are.equal(r, got)
    assert.are.equal(0, r:dispatch(AAA.mute))
  end)

  it("dispatches an events array, an envelope table or a raw body", function()
    local r = events.router()
    local count = 0
    r:on("mute", function() count = count + 1 end)
    r:dispatch(assert(events.parse(AAA.mute)))
    r:dispatch(cjson.decode(AAA.mute))
    r:dispatch(AAA.mute)
    assert.are.equal(3, count)
    local n, err = r:dispatch("{oops")
    assert.is_nil(n)
    assert.matches("invalid JSON", err)
    assert.are.equal(0, r:dispatch({}))
  end)

  it("per-user handlers only see their user's events", function()
    local r = events.router()
    local mine, all = {}, 0
    r:on("*", function() all = all + 1 end)
    r:for_user("2244994945"):on("tweet_create", function(ev) mine[#mine + 1] = ev.id end)
    r:for_user("999"):on("tweet_create", function() error("wrong user") end)
    local n, errs = r:dispatch(AAA.tweet_create)
    assert.are.equal(1, n)
    assert.is_nil(errs)
    assert.are.same({ "1050118621198921728" }, mine)
    -- the same scope comes back for the same id
    assert.are.equal(r:for_user("999"), r:for_user("999"))
    r:dispatch(xaa("post.create", "u1", "2244994945"))
    assert.are.equal(2, #mine)
    assert.are.equal(2, all)
  end)

  it("aliases: AAA handlers receive the XAA event types", function()
    local expect = {
      ["follow.follow"] = "follow", ["follow.unfollow"] = "unfollow",
      ["block.block"] = "block", ["block.unblock"] = "unblock",
      ["mute.mute"] = "mute", ["mute.unmute"] = "unmute",
      ["post.create"] = "tweet_create", ["post.mention.create"] = "tweet_create",
      ["post.reply.create"] = "tweet_create", ["post.quote.create"] = "tweet_create",
      ["post.repost.create"] = "tweet_create", ["like.create"] = "favorite",
      ["post.delete"] = "tweet_delete", ["dm.sent"] = "direct_message",
      ["dm.received"] = "direct_message", ["dm.indicate_typing"] = "direct_message_indicate_typing",
      ["dm.read"] = "direct_message_mark_read", ["oauth.revoke"] = "user_event",
    }
    assert.are.same(expect, events.ALIASES)
    local r = events.router()
    local got = {}
    for _, aaa_type in pairs(expect) do
      if not got[aaa_type] then
        got[aaa_type] = {}
        r:on(aaa_type, function(ev) table.insert(got[aaa_type], ev.type) end)
      end
    end
    local i = 0
    for xaa_type in pairs(expect) do
      i = i + 1
      assert.are.equal(1, r:dispatch(xaa(xaa_type, tostring(i), "3")), xaa_type)
    end
    for xaa_type, aaa_type in pairs(expect) do
      local found = false
      for _, t in ipairs(got[aaa_type]) do found = found or t == xaa_type end
      assert.is_true(found, xaa_type .. " -> " .. aaa_type)
    end
    -- an XAA type without an AAA twin reaches only its own handlers
    assert.are.equal(0, r:dispatch(xaa("profile.update.bio", "z", "3")))
  end)

  it("both the dotted name and the alias run, dotted first", function()
    local r = events.router()
    local seen = {}
    r:on("follow", function() seen[#seen + 1] = "follow" end)
    r:on("follow.follow", function() seen[#seen + 1] = "follow.follow" end)
    r:dispatch(XAA_FOLLOW)
    assert.are.same({ "follow.follow", "follow" }, seen)
  end)

  it("exact mode turns aliases off", function()
    local r = events.router { exact = true }
    local seen = {}
    r:on("follow", function(ev) seen[#seen + 1] = ev.type end)
    r:on("follow.follow", function() seen[#seen + 1] = "dotted" end)
    assert.are.equal(1, r:dispatch(XAA_FOLLOW))
    assert.are.same({ "dotted" }, seen)
    r:dispatch(AAA.follow)
    assert.are.same({ "dotted", "follow" }, seen)
  end)

  it("a raising handler never stops the others: errors list or on_error", function()
    local r = events.router()
    local ran = {}
    r:on("follow", function() error("boom") end)
    r:on("follow", function(ev) ran[#ran + 1] = ev.type end)
    r:on("unfollow", function(ev) ran[#ran + 1] = ev.type end)
    local n, errs = r:dispatch(AAA.follow)
    assert.are.equal(2, n)
    assert.are.same({ "follow", "unfollow" }, ran)
    assert.are.equal(1, #errs)
    assert.matches("boom", errs[1].err)
    assert.are.equal("follow", errs[1].event.type)

    local reported = {}
    local r2 = events.router { on_error = function(err, ev) reported[#reported + 1] = { err, ev.type } end }
    r2:on("*", function(ev) if ev.type == "unfollow" then error({ code = 7 }) end end)
    local n2, errs2 = r2:dispatch(AAA.follow)
    assert.are.equal(2, n2)
    assert.is_nil(errs2)
    assert.are.equal(1, #reported)
    assert.are.equal(7, reported[1][1].code)
    assert.are.equal("unfollow", reported[1][2])
  end)

  it("dedupe(n) skips repeats of the last n (for_user_id, id)", function()
    local r = events.router():dedupe(2)
    local ids = {}
    r:on("*", function(ev) ids[#ids + 1] = ev.id end)
    local function fav(id, user)
      return cjson.encode { for_user_id = user or "1", favorite_events = { { id = id } } }
    end
    assert.are.equal(1, r:dispatch(fav("a")))
    assert.are.equal(0, r:dispatch(fav("a")))       -- X's retry
    assert.are.equal(1, r:dispatch(fav("a", "2")))  -- same like, other subscribed user
    assert.are.equal(1, r:dispatch(fav("b")))
    assert.are.equal(1, r:dispatch(fav("a")))       -- "a"/1 fell out of a window of 2
    assert.are.same({ "a", "a", "b", "a" }, ids)
    -- XAA retries are the same event_uuid
    assert.are.equal(1, r:dispatch(XAA_FOLLOW))
    assert.are.equal(0, r:dispatch(XAA_FOLLOW))
    r:dedupe(false)
    assert.are.equal(1, r:dispatch(XAA_FOLLOW))
    assert.are.equal(1, events.router({ dedupe = 5 }):on("*", function() end):dispatch(XAA_FOLLOW))
  end)

  it("names the argument on misuse", function()
    local r = events.router()
    assert.has_error(function() r:on(nil, function() end) end,
      "bad argument #1 to 'on' (event type string or \"*\" expected, got nil)")
    assert.has_error(function() r:on("follow", "nope") end,
      "bad argument #2 to 'on' (function expected, got string)")
    assert.has_error(function() r:for_user({}) end,
      "bad argument #1 to 'for_user' (user id string expected, got table)")
    assert.has_error(function() r:dispatch(5) end)
    assert.has_error(function() r:dedupe(-1) end)
    assert.has_error(function() events.router("x") end)
    assert.matches("account_activity.router%(1 handlers%)",
      tostring(r:on("*", function() end)))
  end)

  it("is reachable as aa.parse_events and aa.router", function()
    assert.are.equal("favorite", aa.parse_events(AAA.favorite)[1].type)
    local n = 0
    aa.router():on("favorite", function() n = n + 1 end):dispatch(AAA.favorite)
    assert.are.equal(1, n)
  end)
end)

