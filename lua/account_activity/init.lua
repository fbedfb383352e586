--- lua-account-activity: the X (Twitter) Account Activity API and its webhooks.
--
--   local aa = require "account_activity"
--   local client = aa.new { consumer_key = ..., consumer_secret = ... }
--
-- This table only wires names to the modules that implement them; each
-- module is loaded on first use, so a webhook endpoint inside nginx never
-- loads the client, and a script never loads the nginx adapter.
local aa = {
  _NAME = "account_activity",
  -- one version, in src/aa.h: the core reports it
  _VERSION = require("account_activity.core")._VERSION,
}

local function forward(modname, fname)
  return function(...)
    return require(modname)[fname](...)
  end
end

aa.new            = forward("account_activity.client", "new")
aa.from_env       = forward("account_activity.client", "from_env")
aa.crc_response   = forward("account_activity.webhook", "crc_response")
aa.verify_signature = forward("account_activity.webhook", "verify_signature")
aa.webhook_handler = forward("account_activity.webhook", "handler")
aa.parse_events   = forward("account_activity.events", "parse")
aa.router         = forward("account_activity.events", "router")
aa.help           = forward("account_activity.docs", "help")
aa.consumer       = forward("account_activity.consumer", "new")
-- aa.token_store.memory(), aa.token_store.file(path): loaded on first use.
aa.token_store = setmetatable({}, { __index = function(_, k)
  return require("account_activity.token_store")[k]
end })

return aa
