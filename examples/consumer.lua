-- consumer.lua: run as many as you like, on any host (lua5.4 or luajit)
local aa = require "account_activity"
local redis = require "account_activity.redis"

local host, port = redis.parse_address(os.getenv("REDIS") or "127.0.0.1:6379")
local done = assert(redis.connect { host = host, port = port })

local r = aa.router()
r:on("*", function(ev)
  -- At least once: an entry whose handler raised, or whose consumer died,
  -- comes back. The event id makes the handler idempotent.
  local key = "aa:done:" .. tostring(ev.for_user_id) .. ":" .. tostring(ev.id)
  if done:command { "EXISTS", key } == 1 then return end
  print(ev.type, ev.for_user_id, ev.id)      -- your work here
  assert(done:command { "SET", key, "1", "EX", 7 * 86400 })
end)

local consumer = aa.consumer { redis = { host = host, port = port }, stream = "aa:events",
  group = "workers", router = r }
consumer:run()   -- Ctrl-C or SIGTERM: finishes the batch in hand, then returns
io.stdout:flush()
