--- Options for account_activity.nginx.serve with the Redis sink (see
-- examples/nginx/durable.conf). The handlers are not here: they run in
-- consumers (examples/consumer.lua), on any host, at their own pace.
local consumer_secret = os.getenv("TWITTER_CONSUMER_SECRET")
if not consumer_secret or consumer_secret == "" then
  error("TWITTER_CONSUMER_SECRET is not set: add `env TWITTER_CONSUMER_SECRET;` to nginx.conf")
end

return {
  consumer_secret = consumer_secret,
  sink = {
    redis = {
      host = os.getenv("AA_REDIS_HOST") or "127.0.0.1",
      port = tonumber(os.getenv("AA_REDIS_PORT") or "") or 6379,
      password = os.getenv("AA_REDIS_PASSWORD") ~= "" and os.getenv("AA_REDIS_PASSWORD") or nil,
      -- past it the delivery is answered 503 and X retries (3 s, 27 s, 242 s later)
      timeout_ms = 500,
    },
    stream = "aa:events",
    maxlen = 1000000,   -- approximate cap (MAXLEN ~): size it to hold what consumers may lag by
    dedupe_ttl = 3600,  -- a retry or replay of the same signed bytes within the hour is stored once
  },
}
