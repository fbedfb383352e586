-- Bad input to every core function: wrong types raise an error naming the
-- argument; odd but well-typed values give a result or nil, err; nothing crashes.
local core = require "account_activity.core"

local big = ("\0\255x%"):rep(10 * 1024 * 1024 / 4) -- 10 MB with NULs and high bytes
local wrong = { nil, true, {}, function() end, 1.5, coroutine.create(function() end) }

local function raises_naming(fn, pattern)
  local ok, err = pcall(fn)
  assert.is_false(ok)
  assert.matches(pattern, tostring(err))
end

describe("core functions with bad input", function()
  it("raise on wrong types, naming the argument", function()
    for _, name in ipairs { "hmac_sha1", "hmac_sha256" } do
      for i = 1, #wrong do
        if type(wrong[i]) ~= "number" then
          raises_naming(function() core[name](wrong[i], "m") end, "#1")
          raises_naming(function() core[name]("k", wrong[i]) end, "#2")
        end
      end
    end
    for _, name in ipairs { "base64_encode", "base64_decode", "percent_encode", "percent_decode" } do
      raises_naming(function() core[name]() end, "#1")
      raises_naming(function() core[name]({}) end, "#1")
    end
    raises_naming(function() core.equal("a") end, "#2")
    raises_naming(function() core.equal(nil, "a") end, "#1")
    raises_naming(function() core.oauth1_header() end, "#1")
    raises_naming(function() core.oauth1_header("x") end, "#1")
    raises_naming(function() core.session("x") end, "#1")
    raises_naming(function() core.sleep("x") end, "#1")
    raises_naming(function() core.random_bytes(-1) end, "#1")
  end)

  it("handle 10 MB strings with NULs and high bytes", function()
    assert.are.equal(20, #core.hmac_sha1(big, big))
    assert.are.equal(32, #core.hmac_sha256(big, big))
    local b64 = core.base64_encode(big)
    assert.are.equal(big, core.base64_decode(b64))
    local pct = core.percent_encode(big)
    assert.are.equal(#big / 4 * 10, #pct) -- 3 of every 4 bytes are escaped
    assert.are.equal(big, core.percent_decode(pct))
    assert.is_true(core.equal(big, big))
    assert.is_false(core.equal(big, big:sub(2) .. "x"))
    local h = core.oauth1_header { method = "POST", url = "https://a.example/p", params = { k = big },
      consumer_key = big:sub(1, 1000), consumer_secret = big, token = "t", token_secret = big }
    assert.matches("^OAuth ", h)
    assert.is_nil(core.base64_decode(big))
  end)

  it("oauth1_header names the bad field", function()
    local base = { method = "GET", url = "https://a.example/", consumer_key = "k", consumer_secret = "s" }
    local function with(k, v)
      local t = {}
      for a, b in pairs(base) do t[a] = b end
      t[k] = v
      return t
    end
    raises_naming(function() core.oauth1_header(with("method", nil)) end, "method")
    raises_naming(function() core.oauth1_header(with("method", "G ET")) end, "method")
    raises_naming(function() core.oauth1_header(with("method", "")) end, "method")
    raises_naming(function() core.oauth1_header(with("url", 5)) end, "url")
    raises_naming(function() core.oauth1_header(with("url", "no-scheme")) end, "url")
    raises_naming(function() core.oauth1_header(with("url", "https://")) end, "url")
    raises_naming(function() core.oauth1_header(with("url", "https://h:8x/")) end, "port")
    raises_naming(function() core.oauth1_header(with("consumer_key", nil)) end, "consumer_key")
    raises_naming(function() core.oauth1_header(with("consumer_secret", {})) end, "consumer_secret")
    raises_naming(function() core.oauth1_header(with("token", 1)) end, "token")
    raises_naming(function() core.oauth1_header(with("timestamp", -1)) end, "timestamp")
    raises_naming(function() core.oauth1_header(with("timestamp", 0 / 0)) end, "timestamp")
    raises_naming(function() core.oauth1_header(with("timestamp", 1e300)) end, "timestamp")
    raises_naming(function() core.oauth1_header(with("timestamp", "12a")) end, "timestamp")
    raises_naming(function() core.oauth1_header(with("params", "a=b")) end, "params")
    raises_naming(function() core.oauth1_header(with("params", { [1] = "x" })) end, "params")
    raises_naming(function() core.oauth1_header(with("params", { a = true })) end, "params")
    raises_naming(function() core.oauth1_header(with("params", { a = { {} } })) end, "params")
    raises_naming(function() core.oauth1_header(with("oauth_params", { x = "y" })) end, "oauth_params")
    raises_naming(function() core.oauth1_header(with("oauth_params", { oauth_signature = "y" })) end, "oauth_params")
    raises_naming(function() core.oauth1_signature(base) end, "nonce")
    -- still fine after all that
    assert.matches("^OAuth ", core.oauth1_header(base))
  end)

  it("session options and requests name the bad field", function()
    raises_naming(function() core.session { timeout = "5" } end, "timeout")
    raises_naming(function() core.session { timeout = -1 } end, "timeout")
    raises_naming(function() core.session { timeout = 0 / 0 } end, "timeout")
    raises_naming(function() core.session { connect_timeout = 1e9 } end, "connect_timeout")
    raises_naming(function() core.session { ca_file = 1 } end, "ca_file")
    raises_naming(function() core.session { user_agent = "a\r\nb" } end, "user_agent")
    raises_naming(function() core.session { insecure = "yes" } end, "insecure")
    local s = core.session()
    raises_naming(function() s:request() end, "#1")
    raises_naming(function() s:request { url = "http://127.0.0.1:1/" } end, "method")
    raises_naming(function() s:request { method = "GET" } end, "url")
    raises_naming(function() s:request { method = "GET", url = "http://127.0.0.1:1/", body = {} } end, "body")
    raises_naming(function() s:request { method = "GET", url = "http://127.0.0.1:1/", headers = "x" } end, "headers")
    raises_naming(function() s:request { method = "GET", url = "http://127.0.0.1:1/", headers = { [1] = "x" } } end, "header names")
    raises_naming(function() s:request { method = "GET", url = "http://127.0.0.1:1/", headers = { a = {} } } end, "header values")
    raises_naming(function() s:request { method = "GET", url = "http://127.0.0.1:1/", timeout = "1" } end, "timeout")
    raises_naming(function() s:perform("x") end, "#1")
    raises_naming(function() s:perform({ 1 }) end, "requests%[1%]")
    raises_naming(function() s:perform({}, { concurrency = 0 }) end, "concurrency")
    raises_naming(function() s:perform({}, { concurrency = 2.5 }) end, "concurrency")
    raises_naming(function() s:perform({}, { on_done = 1 }) end, "on_done")
    raises_naming(function() core.session().request(nil, {}) end, "Session")
    raises_naming(function() s.request({}, {}) end, "Session")
    local res, err = s:request { method = "GET", url = "http://127.0.0.1:1/" .. ("a"):rep(1e6) }
    assert.is_nil(res)
    assert.is_string(err.kind)
  end)
end)
