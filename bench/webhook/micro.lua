--- verify + decode + dispatch of a 2 KB event, in the interpreter running
-- this file. Prints one line: "<ops/s>". Used by bench/webhook.lua.
--   lua5.4 bench/webhook/micro.lua BODYFILE SECONDS
local core = require "account_activity.core"
local webhook = require "account_activity.webhook"
local events = require "account_activity.events"

local path, seconds = arg[1], tonumber(arg[2] or "1")
local f = assert(io.open(path, "rb"))
local body = f:read("*a")
f:close()
local secret = require("webhook.body").SECRET
local sig = "sha256=" .. core.base64_encode(core.hmac_sha256(secret, body))

local count = 0
local r = events.router()
r:on("tweet_create", function(ev) if ev.id then count = count + 1 end end)

local verify, dispatch = webhook.verify_signature, r.dispatch
local function once()
  assert(verify(secret, body, sig))
  dispatch(r, body)
end

for _ = 1, 2000 do once() end -- warm up (and let LuaJIT compile)
local now = core.now
local n, t0 = 0, now()
local deadline = t0 + seconds
repeat
  for _ = 1, 500 do once() end
  n = n + 500
until now() >= deadline
local ops = n / (now() - t0)
assert(count == n + 2000)
print(string.format("%.0f", ops))
