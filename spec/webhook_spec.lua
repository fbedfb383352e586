-- The webhook side: CRC vectors, signature vectors and every rejection
-- reason, the CRC oracle, and the pure handler request -> response.
local webhook = require "account_activity.webhook"
local events = require "account_activity.events"
local core = require "account_activity.core"
local aa = require "account_activity"
local cjson = require "cjson"

-- X's documentation consumer secret (X-API.md §4, §8).
local X_SECRET = "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw"
local OAUTH2_SECRET = "oauth2-client-secret-for-the-spec-0123456789"
local TOKEN = "ZDRiNDY0ZDgtNzdkMi00NWEzLWI1ZjQtNjk2N2NmMzM5YzBh" -- base64 of a UUID, as X sends

local function sign(secret, body)
  return "sha256=" .. core.base64_encode(core.hmac_sha256(secret, body))
end

local FAV = [[{"for_user_id":"2244994945","favorite_events":[{"id":"a7ba59eab0bfcba386f7acedac279542"}]}]]

describe("crc_response", function()
  it("matches the computed vectors of X-API.md §4", function()
    assert.are.equal("sha256=KGwPHQJPaVoxk5RWMCZXvu7ppQqe20ugPzzV9ed1O3o=",
      webhook.crc_response(X_SECRET, "foo"))
    assert.are.equal("sha256=nlBfoc+sYi739ivT57rTKKl7OQM8PcJSNybJqfjoBUk=",
      webhook.crc_response(X_SECRET, "challenge_string"))
    assert.are.equal("sha256=HlU5y5rWhNi1SHftUCyOxuT6JRuDqeVBKWp1yvldR04=",
      webhook.crc_response("test", "foo"))
    assert.are.equal(webhook.crc_response(X_SECRET, "foo"), aa.crc_response(X_SECRET, "foo"))
  end)

  it("names the argument on misuse and refuses an empty secret", function()
    assert.has_error(function() webhook.crc_response(nil, "foo") end,
      "bad argument 'consumer_secret' to 'crc_response' (non-empty string expected, got nil)")
    assert.has_error(function() webhook.crc_response("", "foo") end,
      "bad argument 'consumer_secret' to 'crc_response' (non-empty string expected, got empty string)")
    assert.has_error(function() webhook.crc_response("s", 5) end,
      "bad argument 'crc_token' to 'crc_response' (string expected, got number)")
  end)
end)

describe("verify_signature", function()
  it("accepts autohook's vectors and the computed one (X-API.md §5)", function()
    assert.is_true(webhook.verify_signature("test", "test=1&other_test=2",
      "sha256=25Cu3iwbbiqBTwQRzcKJZwisjf736V2Q8UaTlkfLSoc="))
    assert.is_true(webhook.verify_signature("test", '{"test_number":1,"test_string":"two"}',
      "sha256=YWHphPn/JFq43jkF0y4/w8R/SelmLjvpunhVFY8JhlI="))
    assert.is_true(webhook.verify_signature(X_SECRET, '{"for_user_id":"2244994945","favorite_events":[]}',
      "sha256=J4E+/lSquEMT10wTvp8Imws3sqLjM5lEIDHA6uYc5nA="))
    -- the CRC GET signature over the query string
    assert.is_true(aa.verify_signature(X_SECRET, "crc_token=foo&nonce=bar",
      "sha256=LYFsEAukJGVNXNeNkIVcZNKLcQVgw1Idl7QWrkbW8Pg="))
  end)

  it("gives a reason for each rejection", function()
    local body = "test=1&other_test=2"
    local good = "sha256=25Cu3iwbbiqBTwQRzcKJZwisjf736V2Q8UaTlkfLSoc="
    local cases = {
      { nil, "missing signature header" },
      { "", "missing signature header" },
      { "25Cu3iwbbiqBTwQRzcKJZwisjf736V2Q8UaTlkfLSoc=", "signature lacks the sha256= prefix" },
      { "sha1=25Cu3iwbbiqBTwQRzcKJZwisjf736V2Q8UaTlkfLSoc=", "signature lacks the sha256= prefix" },
      { "sha256=not base64!!", "signature is not valid base64" },
      { "sha256=" .. core.base64_encode(("x"):rep(20)), "signature has the wrong length" },
      { "sha256=" .. ("A"):rep(400), "signature has the wrong length" },
      { "sha256=" .. core.base64_encode(("x"):rep(32)), "signature does not match" },
      { "sha256=35Cu3iwbbiqBTwQRzcKJZwisjf736V2Q8UaTlkfLSoc=", "signature does not match" },
    }
    for _, c in ipairs(cases) do
      local ok, reason = webhook.verify_signature("test", body, c[1])
      assert.is_false(ok, tostring(c[1]))
      assert.are.equal(c[2], reason, tostring(c[1]))
    end
    -- the right signature under another secret, and a body changed by one byte
    assert.are.same({ false, "signature does not match" },
      { webhook.verify_signature("tesT", body, good) })
    assert.are.same({ false, "signature does not match" },
      { webhook.verify_signature("test", body .. " ", good) })
  end)

  it("names the argument on misuse", function()
    assert.has_error(function() webhook.verify_signature(nil, "b", "sha256=") end,
      "bad argument 'consumer_secret' to 'verify_signature' (non-empty string expected, got nil)")
    assert.has_error(function() webhook.verify_signature("s", nil, "sha256=") end,
      "bad argument 'raw_body' to 'verify_signature' (string expected, got nil)")
    assert.has_error(function() webhook.verify_signature("s", "b", { "sha256=" }) end,
      "bad argument 'header_value' to 'verify_signature' (string or nil expected, got table)")
  end)
end)

-- A handler whose events, errors and log lines the tests can read.
local function make(extra)
  local got = { events = {}, errors = {}, logs = {} }
  local opts = {
    consumer_secret = X_SECRET,
    on_event = function(ev) got.events[#got.events + 1] = ev end,
    on_error = function(err, ev) got.errors[#got.errors + 1] = { err = err, event = ev } end,
    log = function(level, msg) got.logs[#got.logs + 1] = level .. ": " .. msg end,
  }
  for k, v in pairs(extra or {}) do
    if v == false then opts[k] = nil else opts[k] = v end
  end
  return webhook.handler(opts), got
end

local function post(h, body, headers)
  return h { method = "POST", path = "/webhook", headers = headers or {}, body = body }
end

describe("webhook.handler: CRC", function()
  it("answers a well-formed token with the JSON response_token", function()
    local h = make()
    local res = h { method = "GET", path = "/webhook",
      query = { crc_token = TOKEN, nonce = "MTcwMDAwMDAwMDAwMA" }, headers = {} }
    assert.are.equal(200, res.status)
    assert.are.equal("application/json", res.headers["Content-Type"])
    assert.are.same({ response_token = webhook.crc_response(X_SECRET, TOKEN) }, cjson.decode(res.body))
  end)

  it("keeps a '+' of the token from the raw query; repairs one a form decoder made a space", function()
    local h = make()
    local token = "ab+cd/ef+gh=ij_kl-mn+op=="
    local res = h { method = "GET", raw_query = "nonce=x&crc_token=" .. token:gsub("/", "%%2F"), query = {} }
    assert.are.equal(200, res.status)
    assert.are.equal(webhook.crc_response(X_SECRET, token), cjson.decode(res.body).response_token)
    res = h { method = "GET", query = { crc_token = token:gsub("%+", " ") } }
    assert.are.equal(webhook.crc_response(X_SECRET, token), cjson.decode(res.body).response_token)
  end)

  it("takes the query in the raw forms servers hand over: a string, or still in the path", function()
    local h = make()
    local token = "ab+cd/ef+gh=ij_kl-mn+op=="
    local qs = "crc_token=" .. token:gsub("/", "%%2F") .. "&nonce=MTcwMDAwMDAwMDAwMA"
    local want = webhook.crc_response(X_SECRET, token)
    for _, req in ipairs {
      { method = "GET", path = "/webhook", query = qs },
      { method = "GET", path = "/webhook", query = "?" .. qs },
      { method = "GET", path = "/webhook?" .. qs },
      { method = "GET", path = "/webhook?" .. qs, query = {} },
      { method = "GET", path = "/webhook", raw_query = "?" .. qs },
    } do
      local res = h(req)
      assert.are.equal(200, res.status, res.body)
      assert.are.equal(want, cjson.decode(res.body).response_token)
    end
    -- the signature of a CRC GET is checked over that same string
    local signed = h { method = "GET", path = "/webhook?" .. qs,
      headers = { ["x-twitter-webhooks-signature"] = sign(X_SECRET, qs) } }
    assert.are.equal(200, signed.status)
    local forged = h { method = "GET", query = qs, headers = { ["x-twitter-webhooks-signature"] = sign("x", qs) } }
    assert.are.equal(401, forged.status)
    assert.are.equal(400, h { method = "GET", path = "/webhook?" }.status)
    assert.are.equal(400, h { method = "GET", query = "nonce=1" }.status)
  end)

  it("refuses a missing, repeated, short, long or oddly shaped token with 400", function()
    local h = make()
    local function status(req) req.method = "GET"; return h(req).status end
    assert.are.equal(400, status { query = {} })
    assert.are.equal(400, status {})
    assert.are.equal(400, status { query = { crc_token = "" } })
    assert.are.equal(400, status { query = { crc_token = { TOKEN, TOKEN } } })
    assert.are.equal(400, status { raw_query = "crc_token=" .. TOKEN .. "&crc_token=" .. TOKEN })
    assert.are.equal(400, status { query = { crc_token = "short" } })
    assert.are.equal(400, status { query = { crc_token = ("a"):rep(129) } })
    assert.are.equal(200, status { query = { crc_token = ("a"):rep(128) } })
    assert.are.equal(200, status { query = { crc_token = ("a"):rep(16) } })
    assert.are.equal(400, status { query = { crc_token = "abcdefghijklmnop\n" } })
    assert.are.equal(400, status { query = { crc_token = "abcdefghijklmnop.q" } })
    assert.are.equal(400, status { raw_query = "xcrc_token=" .. TOKEN })
  end)

  it("is no signing oracle: a forged event body as crc_token gets 400, never its signature", function()
    local h, got = make()
    local forged = '{"for_user_id":"1","direct_message_events":[{"id":"1","type":"message_create"}]}'
    local res = h { method = "GET", query = { crc_token = forged } }
    assert.are.equal(400, res.status)
    local stolen = sign(X_SECRET, forged)
    assert.is_nil(res.body:find(stolen:sub(8), 1, true))
    -- had it been answered, the stolen value would pass as a delivery signature:
    assert.are.equal(200, post(h, forged, { ["x-twitter-webhooks-signature"] = stolen }).status)
    -- ...so the shape check is what keeps it out. Percent-encoded too:
    res = h { method = "GET", raw_query = "crc_token=" .. core.percent_encode(forged) }
    assert.are.equal(400, res.status)
    assert.is_nil(res.body:find("sha256", 1, true))
    assert.are.equal(1, #got.events) -- only the one we signed ourselves above
  end)

  it("checks a signature on the CRC GET over the raw query string, nonce included", function()
    local h = make()
    local qs = "crc_token=" .. TOKEN .. "&nonce=MTcwMDAwMDAwMDAwMA"
    local ok = h { method = "GET", raw_query = qs, query = {},
      headers = { ["X-Twitter-Webhooks-Signature"] = sign(X_SECRET, qs) } }
    assert.are.equal(200, ok.status)
    local bad = h { method = "GET", raw_query = qs, query = {},
      headers = { ["x-twitter-webhooks-signature"] = sign("other", qs) } }
    assert.are.equal(401, bad.status)
    assert.is_nil(bad.body:find("response_token", 1, true))
    -- without raw_query the string is rebuilt from the parsed query
    local rebuilt = h { method = "GET", query = { crc_token = TOKEN, nonce = "MTcwMDAwMDAwMDAwMA" },
      headers = { ["x-twitter-webhooks-signature"] = sign(X_SECRET, qs) } }
    assert.are.equal(200, rebuilt.status)
  end)
end)

describe("webhook.handler: deliveries", function()
  it("verifies, answers 200 and dispatches; header name in any case", function()
    local h, got = make()
    for _, name in ipairs { "x-twitter-webhooks-signature", "X-Twitter-Webhooks-Signature",
      "X-TWITTER-WEBHOOKS-SIGNATURE" } do
      local res = post(h, FAV, { [name] = sign(X_SECRET, FAV), ["content-type"] = "application/json" })
      assert.are.equal(200, res.status, name)
    end
    assert.are.equal(3, #got.events)
    assert.are.equal("favorite", got.events[1].type)
    assert.are.equal("a7ba59eab0bfcba386f7acedac279542", got.events[1].id)
  end)

  it("answers 401 and dispatches nothing for a bad or missing signature", function()
    local h, got = make()
    local cases = {
      {},
      { ["x-twitter-webhooks-signature"] = sign("wrong secret", FAV) },
      { ["x-twitter-webhooks-signature"] = sign(X_SECRET, FAV .. " ") },
      { ["x-twitter-webhooks-signature"] = sign(X_SECRET, FAV):sub(8) },
      { ["x-twitter-webhooks-signature"] = "sha256=@@@@" },
      { ["x-twitter-webhooks-signature"] = { sign(X_SECRET, FAV), sign(X_SECRET, FAV) } },
      -- the OAuth 2.0 header counts only when its secret is configured
      { ["x-twitter-webhooks-signature-oauth2"] = sign(OAUTH2_SECRET, FAV) },
    }
    for i, headers in ipairs(cases) do
      local res = post(h, FAV, headers)
      assert.are.equal(401, res.status, "case " .. i)
    end
    assert.are.equal(0, #got.events)
    assert.are.equal(#cases, #got.logs)
  end)

  it("accepts the OAuth 2.0 header when oauth2_client_secret is set", function()
    local h, got = make { oauth2_client_secret = OAUTH2_SECRET }
    assert.are.equal(200, post(h, FAV, { ["X-Twitter-Webhooks-Signature-OAuth2"] = sign(OAUTH2_SECRET, FAV) }).status)
    -- a wrong consumer-secret header does not sink a good OAuth 2.0 one
    assert.are.equal(200, post(h, FAV, {
      ["x-twitter-webhooks-signature"] = sign("nope", FAV),
      ["x-twitter-webhooks-signature-oauth2"] = sign(OAUTH2_SECRET, FAV) }).status)
    assert.are.equal(200, post(h, FAV, { ["x-twitter-webhooks-signature"] = sign(X_SECRET, FAV) }).status)
    assert.are.equal(401, post(h, FAV, { ["x-twitter-webhooks-signature-oauth2"] = sign(X_SECRET, FAV) }).status)
    assert.are.equal(3, #got.events)
  end)

  it("answers 400 to malformed JSON with a good signature", function()
    local h, got = make()
    local body = '{"for_user_id":"1",'
    local res = post(h, body, { ["x-twitter-webhooks-signature"] = sign(X_SECRET, body) })
    assert.are.equal(400, res.status)
    assert.are.equal(0, #got.events)
  end)

  -- X has delivered texts cut inside a surrogate pair; a 400 makes X retry
  -- the same bytes until it gives up, and the event is lost.
  it("accepts a signed delivery with a lone surrogate escape, as U+FFFD", function()
    local h, got = make()
    local body = [[{"for_user_id":"2244994945","tweet_create_events":[{"id_str":"1050118621198921728",]]
      .. [["text":"cut here \ud83d","quoted":{"text":"\udc4d and \ud83d\ud83d"}}]}]]
    local res = post(h, body, { ["x-twitter-webhooks-signature"] = sign(X_SECRET, body) })
    assert.are.equal(200, res.status)
    assert.are.equal(1, #got.events)
    assert.are.equal("cut here \239\191\189", got.events[1].item.text)
    assert.are.equal("\239\191\189 and \239\191\189\239\191\189", got.events[1].item.quoted.text)
  end)

  it("routes a for_user_id sent as a number past 2^53 by its exact digits", function()
    local seen = {}
    local r = aa.router()
    r:for_user("1234567890123456789"):on("favorite", function(ev) seen[#seen + 1] = ev.for_user_id end)
    r:for_user("1234567890123456768"):on("favorite", function(ev) seen[#seen + 1] = "wrong " .. ev.for_user_id end)
    local h = make { router = r, on_event = false }
    local body = [[{"for_user_id":1234567890123456789,"favorite_events":[{"id":"ab"}]}]]
    assert.are.equal(200, post(h, body, { ["x-twitter-webhooks-signature"] = sign(X_SECRET, body) }).status)
    assert.are.same({ "1234567890123456789" }, seen)
  end)

  it("still answers 200 when a user handler raises, and reports it", function()
    local reported = {}
    local r = events.router()
    local after = 0
    r:on("follow", function() error("handler bug") end)
    r:on("*", function() after = after + 1 end)
    local h = webhook.handler { consumer_secret = X_SECRET, router = r,
      on_error = function(err, ev) reported[#reported + 1] = { err = err, ev = ev } end }
    local body = [[{"for_user_id":"1","follow_events":[{"type":"follow","source":{"id":"2"},"target":{"id":"1"}},
      {"type":"unfollow","source":{"id":"2"},"target":{"id":"1"}}]}]]
    local res = post(h, body, { ["x-twitter-webhooks-signature"] = sign(X_SECRET, body) })
    assert.are.equal(200, res.status)
    assert.are.equal(2, after)
    assert.are.equal(1, #reported)
    assert.matches("handler bug", reported[1].err)
    assert.are.equal("follow", reported[1].ev.type)
    -- with on_event, and no on_error: the log gets it
    local logs = {}
    local h2 = webhook.handler { consumer_secret = X_SECRET, on_event = function() error("again") end,
      log = function(level, msg) logs[#logs + 1] = level .. ": " .. msg end }
    assert.are.equal(200, post(h2, FAV, { ["x-twitter-webhooks-signature"] = sign(X_SECRET, FAV) }).status)
    assert.are.equal(1, #logs)
    assert.matches("^error: event handler failed %(favorite a7ba59eab0bfcba386f7acedac279542%): .*again", logs[1])
  end)

  it("dedupe drops X's retries", function()
    local h, got = make { dedupe = 10 }
    local headers = { ["x-twitter-webhooks-signature"] = sign(X_SECRET, FAV) }
    assert.are.equal(200, post(h, FAV, headers).status)
    assert.are.equal(200, post(h, FAV, headers).status)
    assert.are.equal(1, #got.events)
  end)

  it("answers 405 with Allow to other methods; accepts lowercase methods", function()
    local h = make()
    for _, m in ipairs { "PUT", "DELETE", "HEAD", "PATCH" } do
      local res = h { method = m, headers = {}, body = "" }
      assert.are.equal(405, res.status)
      assert.are.equal("GET, POST", res.headers.Allow)
    end
    assert.are.equal(200, h { method = "get", query = { crc_token = TOKEN } }.status)
    assert.are.equal(200, post(h, FAV, { ["x-twitter-webhooks-signature"] = sign(X_SECRET, FAV) }).status)
  end)

  it("insecure_skip_verify accepts unsigned bodies and says so in every log line", function()
    local h, got = make { insecure_skip_verify = true }
    assert.are.equal(200, post(h, FAV, {}).status)
    assert.are.equal(200, post(h, FAV, { ["x-twitter-webhooks-signature"] = "sha256=junk" }).status)
    assert.are.equal(400, post(h, "{", {}).status)
    assert.are.equal(2, #got.events)
    assert.is_true(#got.logs >= 4)
    for _, line in ipairs(got.logs) do
      assert.matches("insecure_skip_verify", line, 1, true)
    end
    assert.matches("INSECURE", tostring(webhook.new { consumer_secret = X_SECRET,
      on_event = print, insecure_skip_verify = true, log = function() end }))
  end)

  it("never logs or prints a secret or a signature", function()
    local h, got = make { oauth2_client_secret = OAUTH2_SECRET }
    local sig = sign(X_SECRET, FAV)
    post(h, FAV .. "x", { ["x-twitter-webhooks-signature"] = sig })
    post(h, FAV, { ["x-twitter-webhooks-signature"] = sig:sub(8) })
    post(h, FAV, { ["x-twitter-webhooks-signature"] = "sha256=" .. ("A"):rep(44) })
    h { method = "GET", query = { crc_token = TOKEN }, raw_query = "crc_token=" .. TOKEN,
      headers = { ["x-twitter-webhooks-signature"] = sig } }
    assert.is_true(#got.logs >= 4)
    local wh = webhook.new { consumer_secret = X_SECRET, oauth2_client_secret = OAUTH2_SECRET,
      on_event = print }
    local all = table.concat(got.logs, "\n") .. tostring(wh)
    for _, secret in ipairs { X_SECRET, OAUTH2_SECRET, sig, sig:sub(8), sig:sub(8, 20) } do
      assert.is_nil(all:find(secret, 1, true))
    end
  end)

  it("raises at construction for missing or wrong options, naming them", function()
    assert.has_error(function() webhook.handler { on_event = print } end,
      "bad argument 'consumer_secret' to 'handler' (non-empty string expected, got nil)")
    assert.has_error(function() aa.webhook_handler { consumer_secret = "", on_event = print } end,
      "bad argument 'consumer_secret' to 'handler' (non-empty string expected, got empty string)")
    assert.has_error(function() webhook.handler { consumer_secret = "s" } end,
      "bad argument 'on_event' to 'handler' (on_event or router required)")
    assert.has_error(function() webhook.handler { consumer_secret = "s", on_event = 1 } end,
      "bad argument 'on_event' to 'handler' (function expected, got number)")
    assert.has_error(function() webhook.handler { consumer_secret = "s", router = {} } end,
      "bad argument 'router' to 'handler' (router expected, got table)")
    assert.has_error(function() webhook.handler { consumer_secret = "s", on_event = print,
      oauth2_client_secret = 5 } end,
      "bad argument 'oauth2_client_secret' to 'handler' (non-empty string expected, got number)")
    assert.has_error(function() webhook.handler() end,
      "bad argument #1 to 'handler' (options table expected, got nil)")
    local h = make()
    assert.has_error(function() h(nil) end)
    assert.has_error(function() h { method = "POST", body = 5 } end)
  end)

  it("is a plain function reachable as aa.webhook_handler", function()
    local n = 0
    local h = aa.webhook_handler { consumer_secret = X_SECRET, on_event = function() n = n + 1 end }
    assert.is_function(h)
    assert.are.equal(200, post(h, FAV, { ["x-twitter-webhooks-signature"] = sign(X_SECRET, FAV) }).status)
    assert.are.equal(1, n)
  end)
end)
