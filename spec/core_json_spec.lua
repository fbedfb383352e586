-- core.json_decode: the webhook's decoder. The rest of the code was written
-- against lua-cjson, so on valid JSON its values must be exactly cjson's; its
-- grammar is RFC 8259's (stricter than cjson) and failures name the byte.
local core = require "account_activity.core"
local cjson = require "cjson.safe"

local decode = core.json_decode
local mtype = math.type -- nil under LuaJIT, where every number is a double

-- A key or value, printable: control and non-ASCII bytes as \ddd.
local function show(v)
  if type(v) ~= "string" then return tostring(v) end
  return '"' .. (v:gsub("[%c\128-\255]", function(c) return ("\\%d"):format(c:byte()) end)) .. '"'
end

-- nil when a and b are the same JSON value, else the path of the first
-- difference. Numbers must agree in value, in sign of zero and (5.4) subtype.
local function diff(a, b, path)
  path = path or "$"
  if type(a) ~= type(b) then return ("%s: %s vs %s"):format(path, type(a), type(b)) end
  if type(a) == "table" then
    if getmetatable(a) ~= getmetatable(b) then return path .. ": metatables differ" end
    for k, v in pairs(a) do
      local d = diff(v, b[k], path .. "[" .. show(k) .. "]")
      if d then return d end
    end
    for k in pairs(b) do
      if a[k] == nil then return path .. "[" .. show(k) .. "]: missing" end
    end
  elseif type(a) == "number" then
    if mtype and mtype(a) ~= mtype(b) then return ("%s: %s vs %s"):format(path, mtype(a), mtype(b)) end
    if a ~= b or (a == 0 and 1 / a ~= 1 / b) then
      return ("%s: %.17g vs %.17g"):format(path, a, b)
    end
  elseif a ~= b then
    return ("%s: %s vs %s"):format(path, show(a), show(b))
  end
  return nil
end

local function same_as_cjson(s)
  local want = cjson.decode(s)
  assert(want ~= nil, "cjson rejected the test input: " .. s:sub(1, 200))
  local got, err = decode(s)
  assert(got ~= nil, ("core rejected valid JSON (%s): %s"):format(tostring(err), s:sub(1, 200)))
  local d = diff(got, want)
  assert(d == nil, ("%s\nin: %s"):format(tostring(d), s:sub(1, 300)))
end

-- Shapes X posts to the webhook (ids as numbers past 2^53, escapes, maps).
local bodies = {
  [[{"for_user_id":"2244994945","tweet_create_events":[{"created_at":"Wed Oct 10 20:19:24 +0000 2018","id":1050118621198921728,"id_str":"1050118621198921728","text":"To make room for more expression, we will now count all emojis as equal\u2014including those with gender\u200d\u200d and skin t\u00f3ne modifiers \ud83d\udc4d\ud83c\udffb\ud83d\udc4d\ud83c\udffd. https:\/\/t.co\/MkGjXf9aXm","source":"<a href=\"http:\/\/twitter.com\" rel=\"nofollow\">Twitter Web Client<\/a>","truncated":false,"in_reply_to_status_id":null,"user":{"id":6253282,"id_str":"6253282","name":"Twitter API","screen_name":"TwitterAPI","location":"San Francisco, CA","description":"The Real Twitter API.\nTweets about \"API\" changes.","verified":true,"followers_count":6133636,"utc_offset":-25200,"created_at":"Wed May 23 06:01:13 +0000 2007"},"entities":{"hashtags":[],"urls":[{"url":"https:\/\/t.co\/MkGjXf9aXm","expanded_url":"https:\/\/twittercommunity.com\/t\/114607","indices":[117,140]}],"user_mentions":[],"symbols":[]},"coordinates":null,"quote_count":0,"favorite_count":0,"favorited":false,"filter_level":"low","lang":"en","timestamp_ms":"1539202764522"}]}]],
  [[{"for_user_id":"4337869213","direct_message_events":[{"type":"message_create","id":"954491830116155396","created_timestamp":"1516403560557","message_create":{"target":{"recipient_id":"4337869213"},"sender_id":"3001969357","source_app_id":"13090192","message_data":{"text":"Hello World! \\o\/ \"quoted\" tab\there","entities":{"hashtags":[],"symbols":[],"user_mentions":[],"urls":[]},"quick_reply_response":{"type":"options","metadata":"external_id_2"}}}}],"apps":{"13090192":{"id":"13090192","name":"FuriousCamperTestApp1","url":"https:\/\/twitter.com\/furiouscamper"}},"users":{"3001969357":{"id":"3001969357","created_timestamp":"1422556069340","name":"Jordan Brinks","screen_name":"furiouscamper","location":"Boulder, CO","protected":false,"verified":false,"followers_count":22,"friends_count":45,"statuses_count":494,"profile_image_url_https":"https:\/\/pbs.twimg.com\/profile_images\/851526626785480705\/cW4WTi7C_normal.jpg"},"4337869213":{"id":"4337869213","created_timestamp":"1448312972328","name":"Harrison Test","screen_name":"Harris_0ff","location":"Burlington, MA","protected":false,"verified":false,"followers_count":8,"friends_count":8,"statuses_count":240}}}]],
  [[{"for_user_id":"3001969357","follow_events":[{"type":"follow","created_timestamp":"1517588749178","target":{"id":"3001969357","name":"Jordan Brinks","screen_name":"furiouscamper","followers_count":22,"friends_count":45},"source":{"id":"4337869213","name":"Harrison Test","screen_name":"Harris_0ff"}},{"type":"unfollow","created_timestamp":"1517588749179","target":{"id":"3001969357"},"source":{"id":"4337869213"}}]}]],
  [[{"for_user_id":"2244994945","favorite_events":[{"id":"a7ba59eab0bfcba386f7acedac279542","created_at":"Mon Mar 26 16:33:26 +0000 2018","timestamp_ms":1522082006140,"favorited_status":{"id":977965063281827841,"id_str":"977965063281827841","text":"caf\u00E9 \u00e9t\u00E9 \\ \/ \"","score":1.5e-7,"ratio":-0.25,"big":1E+2},"user":{"id":2244994945,"id_str":"2244994945","name":"TwitterDev","default_profile_image":false}}]}]],
  [[ {"user_event":{"revoke":{"date_time":"2018-05-24T09:48:12+00:00","target":{"app_id":"13090192"},"source":{"user_id":"63046977"}}}} ]],
}

describe("core.json_decode agrees with lua-cjson", function()
  it("on X webhook bodies", function()
    for _, body in ipairs(bodies) do same_as_cjson(body) end
    local t = decode(bodies[1])
    assert.are.equal("1050118621198921728", t.tweet_create_events[1].id_str)
    assert.are.equal(cjson.null, t.tweet_create_events[1].in_reply_to_status_id)
  end)

  it("on thousands of random documents", function()
    math.randomseed(8259)
    local R = math.random
    local spaces = { "", "", " ", "\n", "\t", "\r\n  " }
    local function ws() return spaces[R(#spaces)] end
    local numbers = { "0", "-0", "1e5", "1E+2", "123.456e-7", "12345678901234567890", "-0.0",
      "1050118621198921728", "1.5e-7", "9007199254740993", "123456789012345", "1234567890123456",
      "-1e400", "4.9e-324", "2.2250738585072014e-308", "1.7976931348623157e308", "0e0", "-9E-3", "-1e-400",
      "0." .. ("0"):rep(70) .. "1", ("9"):rep(70) } -- 64+ characters: parsed via the scratch buffer
    local function bytes(max) -- every byte 0..255 may appear; cjson.encode makes it valid JSON
      local t = {}
      for i = 1, R(0, max) do t[i] = string.char(R(0, 255)) end
      return cjson.encode(table.concat(t))
    end
    local function escapes() -- \u escapes in either case, surrogate pairs, \u0000
      local t = { '"' }
      for _ = 1, R(0, 6) do
        local r = R(4)
        if r == 1 then t[#t + 1] = "ab/\\\\\\n"
        elseif r == 2 then
          local cp = R(0, 0xFFFF)
          if cp >= 0xD800 and cp <= 0xDFFF then cp = 0 end
          t[#t + 1] = (R(2) == 1 and "\\u%04x" or "\\u%04X"):format(cp)
        elseif r == 3 then t[#t + 1] = ("\\u%04x\\u%04X"):format(R(0xD800, 0xDBFF), R(0xDC00, 0xDFFF))
        else t[#t + 1] = "\\u0000" end
      end
      return table.concat(t) .. '"'
    end
    local keys = { '""', '"id"', '"id_str"', '"a\\"b"', '"\\u00e9t\\u00E9"', '"\\/x"',
      '"' .. ("k"):rep(40) .. '"', '"' .. ("k"):rep(41) .. '"' } -- few keys, so some repeat
    local function value(depth)
      local r = R(depth > 0 and 10 or 7)
      if r == 1 then return ({ "null", "true", "false" })[R(3)]
      elseif r == 2 then return numbers[R(#numbers)]
      elseif r == 3 then return ("%.17g"):format((R() - 0.5) * 10 ^ R(-30, 30))
      elseif r == 4 then return ("%d"):format(R(-1e9, 1e9))
      elseif r <= 6 then return bytes(R(2) == 1 and 8 or 80)
      elseif r == 7 then return escapes() end
      local n = R(10) == 1 and R(60, 140) or R(0, 6) -- now and then past a 64-member chunk
      local t = {}
      for i = 1, n do
        local k = R(3) == 1 and bytes(12) or keys[R(#keys)]
        t[i] = r <= 8 and ws() .. value(depth - 1) .. ws()
          or ws() .. k .. ws() .. ":" .. ws() .. value(depth - 1) .. ws()
      end
      if r <= 8 then return "[" .. ws() .. table.concat(t, ",") .. "]" end
      return "{" .. ws() .. table.concat(t, ",") .. "}"
    end
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    same_as_cjson(cjson.encode({ s = table.concat(all), [table.concat(all)] = 1 }))
    for _ = 1, 3000 do same_as_cjson(ws() .. value(R(0, 4)) .. ws()) end
  end)
end)

describe("core.json_decode values", function()
  it("are floats, cjson.null, empty tables, last-repeated keys, as in cjson", function()
    local one = decode("1")
    assert.are.equal(1, one)
    if mtype then assert.are.equal("float", mtype(one)) end
    assert.are.equal(cjson.null, decode("null"))
    assert.are.equal(cjson.null, decode("[null]")[1])
    assert.are.same({}, decode("[]"))
    assert.are.same({}, decode("{}"))
    assert.are.equal(3, decode('{"a":1,"a":2,"a":3}').a)
    assert.are.equal(-math.huge, 1 / decode("-0"))
    assert.are.equal(false, decode(" false "))
    assert.are.equal(1, select("#", decode("true")))
    assert.are.equal("\255\254\192\128", decode('"\255\254\192\128"')) -- invalid UTF-8 kept
  end)

  it("decodes every escape", function()
    assert.are.equal('"\\/\b\f\n\r\t', decode([["\"\\\/\b\f\n\r\t"]]))
    assert.are.equal("\195\169\195\169\226\130\172", decode([["\u00e9\u00E9\u20aC"]]))
    assert.are.equal("A\0B", decode([["\u0041\u0000\u0042"]]))
    assert.are.equal("\240\159\152\128", decode([["\ud83d\ude00"]]))
    assert.are.equal("\240\157\132\158", decode([["\uD834\uDD1E"]]))
    assert.are.equal("\244\143\191\191", decode([["\uDBFF\uDFFF"]]))
    assert.are.equal("x", decode([[{"\u006b\u0065\u0079":"x"}]]).key)
  end)

  it("accepts space, tab, CR and LF around every token, and nothing else", function()
    local w = " \t\r\n"
    local s = table.concat({ "", "{", '"a"', ":", "[", "1", ",", '"b"', "]", ",", '"c"', ":", "null", "}", "" }, w)
    assert.are.same({ a = { 1, "b" }, c = cjson.null }, decode(s))
    assert.are.same({ nil, "unexpected character at byte 1" }, { decode("\f1") })
    assert.are.same({ nil, "unexpected character at byte 2" }, { decode("[\v1]") })
  end)
end)

describe("core.json_decode rejects what RFC 8259 rejects", function()
  -- Positions worked out by hand: the offending byte, or the opening
  -- quote/bracket of whatever was left unterminated.
  local cases = {
    { "01", "leading zero in number at byte 1" },
    { "[1, 01]", "leading zero in number at byte 5" },
    { "0x10", "unexpected data after the value at byte 2" },
    { "1.", "invalid number at byte 1" },
    { ".5", "unexpected character at byte 1" },
    { "NaN", "unexpected character at byte 1" },
    { "[Infinity]", "unexpected character at byte 2" },
    { "-Infinity", "invalid number at byte 1" },
    { "[1,2,]", "unexpected character at byte 6" },
    { '{"a":1,}', "expected a string key at byte 8" },
    { '"a\tb"', "control character in string at byte 3" },
    { '"a\\n\nb"', "control character in string at byte 5" },
    { [["\ud800"]], "unpaired UTF-16 surrogate at byte 2" },
    { [["\udc00"]], "unpaired UTF-16 surrogate at byte 2" },
    { [["ab\ud800\u0041"]], "unpaired UTF-16 surrogate at byte 4" },
    { [["\x41"]], "invalid escape in string at byte 2" },
    { "[1] 2", "unexpected data after the value at byte 5" },
    { "", "unexpected end of input at byte 1" },
    { " \n ", "unexpected end of input at byte 4" },
    { '"abc', "unterminated string at byte 1" },
    { '{"a":[1,2', "unterminated array at byte 6" },
    { '{"a":1', "unterminated object at byte 1" },
    { "tru", "invalid literal at byte 1" },
    { '{"a" 1}', "expected ':' at byte 6" },
    { "[1 2]", "expected ',' or ']' at byte 4" },
  }
  for _, c in ipairs(cases) do
    it(show(c[1]), function()
      assert.are.same({ nil, c[2] }, { decode(c[1]) })
    end)
  end
end)

describe("core.json_decode depth", function()
  local function nest(n) return ("["):rep(n) .. "1" .. ("]"):rep(n) end

  it("allows 1000 levels by default and fails at 1001", function()
    local t = decode(nest(1000))
    for _ = 1, 999 do t = t[1] end
    assert.are.same({ 1 }, t)
    assert.are.same({ nil, "nested too deeply at byte 1001" }, { decode(nest(1001)) })
    assert.is_table(decode(('{"a":'):rep(1000) .. "1" .. ("}"):rep(1000)))
  end)

  it("honours max_depth", function()
    assert.are.same({ nil, "nested too deeply at byte 3" }, { decode("[[[1]]]", 2) })
    assert.are.same({ { { 1 } } }, decode("[[[1]]]", 3))
    assert.are.equal(5, decode("5", 1))
    assert.are.same({ nil, "nested too deeply at byte 7" }, { decode('{"a":[{}]}', 2) })
    assert.is_table(decode(nest(1000), 1000))
  end)
end)

describe("core.json_decode containers of any size", function()
  it("decodes chunk-boundary, 10,000-key and 100,000-element containers", function()
    for _, n in ipairs { 63, 64, 65, 128, 129, 100000 } do
      local parts = {}
      for i = 1, n do parts[i] = tostring(i) end
      local t = decode("[" .. table.concat(parts, ",") .. "]")
      assert.are.equal(n, #t)
      for i = 1, n do if t[i] ~= i then assert.are.equal(i, t[i]) end end
    end
    local parts = {}
    for i = 1, 10000 do parts[i] = ('"key%d":%d'):format(i, i) end
    parts[#parts + 1] = '"key1":"last"' -- a repeat in a later chunk still wins
    local t, n = decode("{" .. table.concat(parts, ",") .. "}"), 0
    for _ in pairs(t) do n = n + 1 end
    assert.are.equal(10000, n)
    assert.are.equal("last", t.key1)
    for i = 2, 10000 do if t["key" .. i] ~= i then assert.are.equal(i, t["key" .. i]) end end
  end)

  -- Each level holds 63 members on the stack before descending; LuaJIT caps
  -- a C function's stack at 8000 slots, which 900 such levels would pass.
  it("decodes 900 levels of 63-key objects", function()
    local parts = {}
    for level = 1, 900 do
      parts[#parts + 1] = "{"
      for k = 1, 63 do parts[#parts + 1] = ('"k%d":%d,'):format(k, level) end
      parts[#parts + 1] = '"next":'
    end
    parts[#parts + 1] = "null" .. ("}"):rep(900)
    local t, err = decode(table.concat(parts))
    assert.is_nil(err)
    for level = 1, 900 do
      local n = 0
      for _ in pairs(t) do n = n + 1 end
      assert.are.equal(64, n)
      assert.are.equal(level, t.k1)
      assert.are.equal(level, t.k63)
      t = t.next
    end
    assert.are.equal(cjson.null, t)
  end)

  it("decodes 900 levels of arrays with members before and after the nested one", function()
    local head, tail = ("0,"):rep(63), (",2"):rep(70)
    local s = ("[" .. head):rep(900) .. "1" .. (tail .. "]"):rep(900)
    local t, err = decode(s)
    assert.is_nil(err)
    for _ = 1, 900 do
      assert.are.equal(134, #t)
      assert.are.equal(0, t[63])
      assert.are.equal(2, t[134])
      t = t[64]
    end
    assert.are.equal(1, t) -- the innermost array's 64th member
  end)
end)

describe("core.json_decode key cache", function()
  -- Keys of 1..40 bytes share a slot when length and first, middle and last
  -- bytes agree; the cache must hand back the right string regardless.
  local unpack = table.unpack or unpack
  local function colliding(len)
    local keys, mid = {}, math.floor(len / 2) + 1 -- the C code's start[n / 2]
    for i = 1, 26 do
      for j = 1, 26 do
        local k = { ("m"):rep(len):byte(1, -1) }
        k[2], k[len - 1] = 96 + i, 96 + j -- the varying bytes
        k[1], k[mid], k[len] = 70, 77, 90 -- the hashed bytes, fixed last
        keys[#keys + 1] = string.char(unpack(k))
      end
    end
    return keys
  end

  for _, len in ipairs { 5, 17, 40 } do
    it(("gives the right keys when %d-byte keys collide"):format(len), function()
      local keys, parts = colliding(len), {}
      for i, k in ipairs(keys) do parts[i] = ('"%s":%d'):format(k, i) end
      local s = "{" .. table.concat(parts, ",") .. "}"
      for _ = 1, 3 do
        local t, n = decode(s), 0
        for _ in pairs(t) do n = n + 1 end
        assert.are.equal(#keys, n)
        for i, k in ipairs(keys) do assert.are.equal(i, t[k]) end
        -- two colliding keys back to back, in both orders
        assert.are.same({ [keys[2]] = 1, [keys[1]] = 2 }, decode(('{"%s":1,"%s":2}'):format(keys[2], keys[1])))
        assert.are.same({ [keys[1]] = 1, [keys[1] .. "x"] = 2 }, decode(('{"%s":1,"%sx":2}'):format(keys[1], keys[1])))
      end
    end)
  end
end)

describe("core.json_decode arguments", function()
  it("raises on a non-string document", function()
    for _, v in ipairs { false, {}, print } do
      assert.has_error(function() decode(v) end)
    end
    assert.has_error(function() decode() end)
  end)
  it("takes a number as its text, as Lua's string functions do", function()
    assert.are.equal(123, decode(123))
  end)

  it("raises on a max_depth outside 1..1000 or not a number", function()
    for _, d in ipairs { 0, -1, 1001, 2 ^ 40 } do
      assert.has_error(function() decode("[]", d) end)
    end
    assert.has_error(function() decode("[]", "deep") end)
  end)
  -- A fractional max_depth follows each interpreter's luaL_optinteger: Lua
  -- 5.4 refuses it, LuaJIT truncates it (1.5 is 1).
  if mtype then
    it("raises on a fractional max_depth (Lua 5.4)", function()
      assert.has_error(function() decode("[]", 1.5) end)
      assert.has_error(function() decode("[]", 999.9) end)
    end)
  else
    it("truncates a fractional max_depth (LuaJIT)", function()
      assert.is_nil(decode("[[1]]", 1.5))
      assert.is_table(decode("[1]", 1.5))
    end)
  end
end)

-- The delivery path's opt-in departures (events.parse): X has sent texts cut
-- inside a surrogate pair, and ids as JSON numbers past 2^53.
describe("core.json_decode delivery options", function()
  local LENIENT = { lone_surrogates = "replace", big_integers = "string" }
  local FFFD = "\239\191\189"

  it("decode a lone surrogate escape as U+FFFD when asked, and refuse it by default", function()
    local cases = {
      { [["\ud800"]], FFFD },
      { [["\udc00"]], FFFD },
      { [["ab\ud800\u0041"]], "ab" .. FFFD .. "A" },
      { [["\ud800\ud800\udc00"]], FFFD .. "\240\144\128\128" }, -- a high half, then a pair
      { [["\udbff"]], FFFD },
      { [["x\ud83d"]], "x" .. FFFD },                           -- a text cut after the high half
      { [["\ud83d\ude00\udc00\ud83d"]], "\240\159\152\128" .. FFFD .. FFFD },
      { [["\ud800\n"]], FFFD .. "\n" },
    }
    for _, c in ipairs(cases) do
      assert.are.equal(c[2], decode(c[1], LENIENT), c[1])
      assert.are.equal(c[2], decode(c[1], { lone_surrogates = "replace" }), c[1])
      local v, err = decode(c[1])
      assert.is_nil(v, c[1])
      assert.matches("unpaired UTF%-16 surrogate", err)
      assert.is_nil((decode(c[1], { lone_surrogates = "error" })))
    end
    -- every other refusal stands
    assert.are.same({ nil, "invalid \\u escape at byte 2" }, { decode([["\ud80"]], LENIENT) })
    assert.are.same({ nil, "leading zero in number at byte 1" }, { decode("01", LENIENT) })
  end)

  it("keep integers past 2^53 as their exact digits when asked", function()
    local t = assert(decode([[{"for_user_id": 1234567890123456789012, "a": 9007199254740993,
      "b": 9007199254740992, "c": -9007199254740993, "d": 1050118621198921728, "e": 1.5,
      "f": 12345678901234567890.5, "g": 1e300, "h": 2244994945, "i": [18446744073709551617]}]], LENIENT))
    assert.are.equal("1234567890123456789012", t.for_user_id)
    assert.are.equal("9007199254740993", t.a)
    assert.are.equal(9007199254740992, t.b) -- 2^53 itself is exact: a number, as cjson gives it
    assert.are.equal("-9007199254740993", t.c)
    assert.are.equal("1050118621198921728", t.d)
    assert.are.equal(1.5, t.e)
    assert.is_number(t.f) -- not an integer literal: cjson's double
    assert.are.equal(1e300, t.g)
    assert.are.equal(2244994945, t.h)
    assert.are.equal("18446744073709551617", t.i[1]) -- past 2^64, where the digit count decides
    assert.is_number(decode("9007199254740993")) -- the default is cjson's double
    assert.is_number(decode("9007199254740993", { big_integers = "number" }))
  end)

  it("give cjson's values on everything the options do not touch", function()
    for _, body in ipairs(bodies) do
      local got = assert(decode(body, LENIENT))
      local want = cjson.decode(body)
      -- the one departure in these bodies: tweet ids past 2^53
      want.tweet_create_events = want.tweet_create_events and got.tweet_create_events
      want.favorite_events = want.favorite_events and got.favorite_events
      assert.is_nil(diff(got, want))
    end
    local got = decode(bodies[1], LENIENT).tweet_create_events[1]
    assert.are.equal(got.id_str, got.id)
    assert.is_nil(diff(decode(bodies[2], LENIENT), cjson.decode(bodies[2])))
  end)

  it("check their arguments", function()
    local ok, err = pcall(decode, "1", { lone_surrogates = "yes" })
    assert.is_false(ok)
    assert.matches("bad argument #2 to '[^']*' %(field 'lone_surrogates' must be \"error\" or \"replace\"%)", err)
    assert.has_error(function() decode("1", { big_integers = true }) end)
    assert.has_error(function() decode("[]", { max_depth = 0 }) end)
    assert.has_error(function() decode("[]", { max_depth = "deep" }) end)
    assert.is_nil((decode("[[1]]", { max_depth = 1 })))
    assert.is_table(decode("[[1]]", { max_depth = 2 }))
  end)
end)
