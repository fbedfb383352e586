-- HMAC (RFC 4231, RFC 2202), base64 (RFC 4648), percent-encoding (RFC 3986 /
-- X's examples), constant-time equality, and X's CRC / signature vectors.
local core = require "account_activity.core"

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end
local function unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

describe("core.hmac_sha256 (RFC 4231)", function()
  local cases = {
    { key = ("\11"):rep(20), data = "Hi There",
      mac = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
    { key = "Jefe", data = "what do ya want for nothing?",
      mac = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
    { key = ("\170"):rep(20), data = ("\221"):rep(50),
      mac = "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe" },
    { key = unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"), data = ("\205"):rep(50),
      mac = "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b" },
    { key = ("\170"):rep(131), data = "Test Using Larger Than Block-Size Key - Hash Key First",
      mac = "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
    { key = ("\170"):rep(131),
      data = "This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
      mac = "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2" },
  }
  for i, c in ipairs(cases) do
    it("test case " .. i, function()
      assert.are.equal(c.mac, hex(core.hmac_sha256(c.key, c.data)))
    end)
  end
  it("test case 5 truncated to 128 bits", function()
    local mac = core.hmac_sha256(("\12"):rep(20), "Test With Truncation")
    assert.are.equal("a3b6167473100ee06e0c796c2955552b", hex(mac):sub(1, 32))
  end)
end)

describe("core.hmac_sha1 (RFC 2202)", function()
  it("matches the published digests", function()
    assert.are.equal("b617318655057264e28bc0b6fb378c8ef146be00", hex(core.hmac_sha1(("\11"):rep(20), "Hi There")))
    assert.are.equal("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79", hex(core.hmac_sha1("Jefe", "what do ya want for nothing?")))
    assert.are.equal("aa4ae5e15272d00e95705637ce8a3b55ed402112",
      hex(core.hmac_sha1(("\170"):rep(80), "Test Using Larger Than Block-Size Key - Hash Key First")))
  end)
  it("handles empty keys and messages and embedded NULs", function()
    assert.are.equal("fbdb1d1b18aa6c08324b7d64b71fb76370690e1d", hex(core.hmac_sha1("", "")))
    assert.are_not.equal(core.hmac_sha1("k", "a\0b"), core.hmac_sha1("k", "a"))
  end)
end)

describe("core HMAC at the block boundaries, against the openssl command", function()
  -- The core hashes with its own HMAC construction over the digests; the
  -- openssl command goes through OpenSSL's HMAC. Keys and messages around
  -- the 64-byte block and the 55/56-byte padding edge.
  local function openssl_hmac(alg, key, msg)
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(msg)
    f:close()
    local p = assert(io.popen(("openssl dgst -%s -mac HMAC -macopt hexkey:%s -r %s 2>&1")
      :format(alg, hex(key), path)))
    local out = p:read("*a")
    p:close()
    os.remove(path)
    return out:match("^(%x+)")
  end
  local key_lengths = { 1, 20, 63, 64, 65, 131, 200 }
  local msg_lengths = { 0, 1, 55, 56, 63, 64, 65, 119, 120, 1000 }
  for _, alg in ipairs { "sha1", "sha256" } do
    it(alg .. ": keys of 1 to 200 bytes, messages of 0 to 1000", function()
      local fn = core["hmac_" .. alg]
      for _, kl in ipairs(key_lengths) do
        for _, ml in ipairs(msg_lengths) do
          local key = ("k\0\255"):rep(kl):sub(1, kl)
          local msg = ("message "):rep(ml):sub(1, ml)
          local want = openssl_hmac(alg, key, msg)
          assert(want, "the openssl command printed no digest")
          assert.are.equal(want, hex(fn(key, msg)), ("key %d bytes, message %d bytes"):format(kl, ml))
        end
      end
    end)
  end
end)

describe("core.hmac_sha256_check", function()
  local key, msg = "kAHyQ5xqbyOF9NCCTxThzL6RLz0BEzMKe1vgp6KoB2ZrmcL5xj", '{"for_user_id":"1"}'
  local mac = core.base64_encode(core.hmac_sha256(key, msg))
  it("accepts the genuine base64 MAC, from any starting byte", function()
    assert.is_true(core.hmac_sha256_check(key, msg, mac))
    assert.is_true(core.hmac_sha256_check(key, msg, "sha256=" .. mac, 8))
  end)
  it("names why anything else fails", function()
    local function why(b64, init) return select(2, core.hmac_sha256_check(key, msg, b64, init)) end
    local flipped = (mac:sub(1, 1) == "A" and "B" or "A") .. mac:sub(2)
    assert.are.equal("mismatch", why(flipped))
    assert.are.equal("mismatch", why(core.base64_encode(core.hmac_sha256(key, msg .. " "))))
    assert.are.equal("mismatch", why(core.base64_encode(core.hmac_sha256(key .. "x", msg))))
    assert.are.equal("base64", why(mac:sub(1, -2) .. "!"))
    assert.are.equal("base64", why(mac:sub(1, -2)))           -- padding cut: not a multiple of 4
    assert.are.equal("base64", why(mac:sub(1, 42) .. "B="))   -- leftover bits before the padding
    assert.are.equal("length", why(core.base64_encode(("\0"):rep(31))))
    assert.are.equal("length", why(core.base64_encode(("\0"):rep(33))))
    assert.are.equal("length", why(""))
    assert.are.equal("length", why(("A"):rep(260)))
    assert.are.equal("mismatch", why("sha256=" .. flipped, 8))
  end)
  it("raises on bad arguments", function()
    assert.has_error(function() core.hmac_sha256_check(key, msg, mac, 0) end)
    assert.has_error(function() core.hmac_sha256_check(key, msg, mac, #mac + 2) end)
    assert.has_error(function() core.hmac_sha256_check(key, nil, mac) end)
  end)
end)

describe("core.base64_alphabet", function()
  it("accepts exactly the base64 and base64url characters and '='", function()
    local ok = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_="
    assert.is_true(core.base64_alphabet(ok))
    assert.is_true(core.base64_alphabet(""))
    for b = 0, 255 do
      local c = string.char(b)
      assert.are.equal(ok:find(c, 1, true) ~= nil, core.base64_alphabet("abc" .. c .. "def"),
        ("byte %d"):format(b))
    end
  end)
  it("raises on a non-string", function()
    assert.has_error(function() core.base64_alphabet({}) end)
  end)
end)

describe("core.base64 (RFC 4648 section 10)", function()
  local vectors = { { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
    { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" } }
  for _, v in ipairs(vectors) do
    it(("%q <-> %q"):format(v[1], v[2]), function()
      assert.are.equal(v[2], core.base64_encode(v[1]))
      assert.are.equal(v[1], core.base64_decode(v[2]))
    end)
  end
  it("round-trips every byte value", function()
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    local s = table.concat(all)
    for n = 0, 6 do
      assert.are.equal(s:sub(1, 250 + n), core.base64_decode(core.base64_encode(s:sub(1, 250 + n))))
    end
  end)
  it("rejects malformed input with nil, err", function()
    for _, bad in ipairs { "Zg", "Zg=", "Z===", "Zm9v\n", " Zm9v", "Zm9=", "Zh==", "Zm-v", "Zm_v", "====", "Zm9vYg=a", "Zg==Zg==" } do
      local v, err = core.base64_decode(bad)
      assert.is_nil(v, bad)
      assert.matches("^invalid base64", err)
    end
  end)
end)

describe("core.percent_encode", function()
  it("follows X's examples", function()
    assert.are.equal("Ladies%20%2B%20Gentlemen", core.percent_encode("Ladies + Gentlemen"))
    assert.are.equal("An%20encoded%20string%21", core.percent_encode("An encoded string!"))
    assert.are.equal("Dogs%2C%20Cats%20%26%20Mice", core.percent_encode("Dogs, Cats & Mice"))
    assert.are.equal("%E2%98%83", core.percent_encode("☃"))
  end)
  it("keeps exactly the unreserved set", function()
    for i = 0, 255 do
      local c = string.char(i)
      local e = core.percent_encode(c)
      if c:match("[A-Za-z0-9%-%._~]") then
        assert.are.equal(c, e)
      else
        assert.are.equal(("%%%02X"):format(i), e)
      end
    end
    assert.are.equal("%21%2A%27%28%29", core.percent_encode("!*'()"))
  end)
  it("decodes what it encodes", function()
    local s = "a b+c%/☃\0"
    assert.are.equal(s, core.percent_decode(core.percent_encode(s)))
    assert.are.equal("a b", core.percent_decode("a+b", true))
    assert.are.equal("a+b", core.percent_decode("a+b"))
    assert.are.equal("%zz%4", core.percent_decode("%zz%4"))
  end)
end)

describe("core.equal", function()
  it("compares contents and lengths", function()
    assert.is_true(core.equal("", ""))
    assert.is_true(core.equal("abc", "abc"))
    assert.is_false(core.equal("abc", "abd"))
    assert.is_false(core.equal("abc", "ab"))
    assert.is_false(core.equal("a\0b", "a\0c"))
    assert.is_true(core.equal(("x"):rep(1e6), ("x"):rep(1e6)))
  end)
end)

describe("X's CRC and signature vectors (X-API.md sections 4 and 5)", function()
  local secret = "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw"
  local function sig(key, msg) return "sha256=" .. core.base64_encode(core.hmac_sha256(key, msg)) end
  it("answers CRC tokens", function()
    assert.are.equal("sha256=KGwPHQJPaVoxk5RWMCZXvu7ppQqe20ugPzzV9ed1O3o=", sig(secret, "foo"))
    assert.are.equal("286c0f1d024f695a31939456302657beeee9a50a9edb4ba03f3cd5f5e7753b7a", hex(core.hmac_sha256(secret, "foo")))
    assert.are.equal("sha256=nlBfoc+sYi739ivT57rTKKl7OQM8PcJSNybJqfjoBUk=", sig(secret, "challenge_string"))
    assert.are.equal("sha256=LYFsEAukJGVNXNeNkIVcZNKLcQVgw1Idl7QWrkbW8Pg=", sig(secret, "crc_token=foo&nonce=bar"))
    assert.are.equal("sha256=HlU5y5rWhNi1SHftUCyOxuT6JRuDqeVBKWp1yvldR04=", sig("test", "foo"))
    assert.are.equal("sha256=DA2Y9+PZ1F5y6Id7wbEEMn77nAexjy/+ztdtgTB/H/8=", sig("", "foo"))
  end)
  it("signs event bodies", function()
    assert.are.equal("sha256=25Cu3iwbbiqBTwQRzcKJZwisjf736V2Q8UaTlkfLSoc=", sig("test", "test=1&other_test=2"))
    assert.are.equal("sha256=YWHphPn/JFq43jkF0y4/w8R/SelmLjvpunhVFY8JhlI=", sig("test", '{"test_number":1,"test_string":"two"}'))
    assert.are.equal("sha256=J4E+/lSquEMT10wTvp8Imws3sqLjM5lEIDHA6uYc5nA=",
      sig(secret, '{"for_user_id":"2244994945","favorite_events":[]}'))
  end)
  it("builds the bearer credentials of X's example", function()
    local cred = core.percent_encode("xvz1evFS4wEEPTGEFPHBog") .. ":" .. core.percent_encode("L8qq9PZyRg6ieKGEKhZolGC0vJWLw8iEJ88DRdyOg")
    assert.are.equal("eHZ6MWV2RlM0d0VFUFRHRUZQSEJvZzpMOHFxOVBaeVJnNmllS0dFS2hab2xHQzB2SldMdzhpRUo4OERSZHlPZw==",
      core.base64_encode(cred))
  end)
end)

describe("core.version", function()
  it("names the module, libcurl and OpenSSL", function()
    local v = core.version()
    assert.are.equal("0.1.0", v.version)
    assert.matches("^%d+%.%d+%.%d+", v.libcurl)
    assert.matches("OpenSSL", v.openssl)
    assert.are.equal(core._VERSION, v.version)
  end)
end)

describe("PKCE primitives (RFC 7636)", function()
  it("core.sha256 hashes FIPS 180-2's 'abc' to its known digest", function()
    assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", hex(core.sha256("abc")))
    assert.are.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", hex(core.sha256("")))
  end)
  it("Appendix B: the verifier's octets encode to the verifier, and S256 gives the challenge", function()
    local octets = string.char(116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173,
      187, 186, 22, 212, 37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121)
    local verifier = core.base64url_encode(octets)
    assert.are.equal("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", verifier)
    assert.are.equal("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", core.base64url_encode(core.sha256(verifier)))
  end)
  it("base64url drops padding and uses - and _", function()
    assert.are.equal("", core.base64url_encode(""))
    assert.are.equal("Zg", core.base64url_encode("f"))
    assert.are.equal("Zm8", core.base64url_encode("fo"))
    assert.are.equal("Zm9v", core.base64url_encode("foo"))
    assert.are.equal("-_8", core.base64url_encode("\251\255"))
    for n = 0, 40 do
      local s = core.random_bytes(n + 1)
      local b = core.base64_encode(s):gsub("=", ""):gsub("+", "-"):gsub("/", "_")
      assert.are.equal(b, core.base64url_encode(s))
    end
  end)
  it("random_bytes gives n fresh bytes and refuses sizes out of range", function()
    local a, b = core.random_bytes(32), core.random_bytes(32)
    assert.are.equal(32, #a)
    assert.are_not.equal(a, b)
    assert.are.equal(43, #core.base64url_encode(a))
    assert.are.equal("", core.random_bytes(0))
    assert.has_error(function() core.random_bytes(-1) end)
    assert.has_error(function() core.random_bytes(2 ^ 20 + 1) end)
    assert.has_error(function() core.random_bytes("x") end)
  end)
end)

describe("core.flock", function()
  local path = os.tmpname()
  after_each(function() os.remove(path) end)
  it("excludes a second holder until the first unlocks, and times out meanwhile", function()
    local a = assert(core.flock(path, 1))
    local t0 = core.now()
    local b, err = core.flock(path, 0.2)
    assert.is_nil(b)
    assert.matches("timed out", err)
    assert.is_true(core.now() - t0 >= 0.19)
    a:unlock()
    local c = assert(core.flock(path, 0))
    c:unlock()
    c:unlock() -- idempotent
  end)
  it("another process waits for the lock", function()
    local lua = os.getenv("AA_SPEC_LUA") or "lua5.4"
    local a = assert(core.flock(path, 1))
    local code = ("local c = require 'account_activity.core'; local l, e = c.flock(%q, 0.3); io.write(l and 'got' or e)"):format(path)
    local p = io.popen(lua .. " -e " .. string.format("%q", code))
    local out = p:read("*a")
    p:close()
    assert.matches("timed out", out)
    a:unlock()
    p = io.popen(lua .. " -e " .. string.format("%q", code))
    out = p:read("*a")
    p:close()
    assert.are.equal("got", out)
  end)
  it("creates the lock file 0600 and returns nil, err for an unusable path", function()
    os.remove(path)
    local l = assert(core.flock(path, 0))
    local p = io.popen("stat -c %a " .. path)
    local mode = p:read("*l")
    p:close()
    assert.are.equal("600", mode)
    l:unlock()
    local none, err = core.flock("/nonexistent-dir/x.lock", 0)
    assert.is_nil(none)
    assert.matches("cannot open lock file", err)
  end)
end)
