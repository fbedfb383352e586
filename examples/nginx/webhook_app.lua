--- Options for account_activity.nginx.serve (see examples/nginx/webhook.conf).
-- Loaded once per worker by `require("webhook_app")`; serve() caches the
-- handler it builds for this table.
-- luacheck: globals ngx
local events = require "account_activity.events"

local consumer_secret = os.getenv("TWITTER_CONSUMER_SECRET")
if not consumer_secret or consumer_secret == "" then
  -- Fail loudly at the first request rather than answer CRCs wrongly.
  error("TWITTER_CONSUMER_SECRET is not set: add `env TWITTER_CONSUMER_SECRET;` to nginx.conf")
end

local r = events.router():dedupe(10000) -- X retries; replays re-deliver too

-- One handler serves AAA (`follow_events`) and XAA (`follow.follow`) alike.
r:on("follow", function(ev)
  ngx.log(ngx.INFO, "follow for ", ev.for_user_id, " (", ev.api, ")")
end)

r:on("direct_message", function(ev)
  -- AAA: ev.item is the message_create event, ev.users / ev.apps the maps.
  -- XAA (dm.sent / dm.received): ev.item is the payload.
  ngx.log(ngx.INFO, "direct message for ", ev.for_user_id)
end)

r:on("user_event", function(ev)
  -- AAA `user_event.revoke` / XAA `oauth.revoke`: the user removed the app,
  -- and their subscription is gone.
  ngx.log(ngx.WARN, "authorization revoked by ", tostring(ev.for_user_id))
end)

return {
  consumer_secret = consumer_secret,
  oauth2_client_secret = os.getenv("TWITTER_OAUTH2_CLIENT_SECRET") ~= ""
    and os.getenv("TWITTER_OAUTH2_CLIENT_SECRET") or nil,
  router = r,
  -- Handlers run in ngx.timer.at(0) after the 200 is sent: the request is
  -- over at once, but handlers cannot use ngx.req / ngx.var there, and
  -- pending events are lost if the worker exits. See account_activity/nginx.lua.
  async = true,
  on_error = function(err, ev)
    ngx.log(ngx.ERR, "handler failed for ", ev.type, " ", ev.id, ": ", tostring(err))
  end,
}
