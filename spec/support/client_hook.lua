-- A private nginx for the client's emulator specs:
--   /hook    answers X's CRC with the app's consumer secret (and 200 to POSTs)
--   /nocrc   404, for CRC failures
--   /probe   builds a client inside nginx (cosocket transport chosen by
--            itself) against the emulator and reports what it saw, as JSON
local nginx_process = require "account_activity.nginx_process"

local M = {}

local function lit(s) return string.format("%q", s) end

function M.start(emu)
  local app = emu.config.app
  local server, err = nginx_process.start {
    ports = 1, workers = 1,
    http = function(ports)
      return table.concat({
        "server {",
        "  listen 127.0.0.1:" .. ports[1] .. ";",
        "  location = /hook {",
        "    content_by_lua_block {",
        "      local core = require 'account_activity.core'",
        "      local token = ngx.req.get_uri_args().crc_token",
        "      if ngx.req.get_method() == 'GET' and token then",
        "        ngx.header['Content-Type'] = 'application/json'",
        "        ngx.print('{\"response_token\":\"sha256=' .. core.base64_encode(core.hmac_sha256("
          .. lit(app.consumer_secret) .. ", token)) .. '\"}')",
        "        return",
        "      end",
        "      ngx.req.discard_body()",
        "      ngx.exit(200)",
        "    }",
        "  }",
        "  location = /nocrc { return 404; }",
        "  location = /probe {",
        "    content_by_lua_block {",
        "      local cjson = require 'cjson'",
        "      local aa = require 'account_activity'",
        "      local c = aa.new { consumer_key = " .. lit(app.consumer_key) .. ",",
        "        consumer_secret = " .. lit(app.consumer_secret) .. ",",
        "        base_url = " .. lit(emu.url) .. " }",
        "      local t0 = ngx.now()",
        "      local list, err = c:webhooks()",
        "      local n, r = c:subscription_count()",
        "      ngx.say(cjson.encode { transport = c.transport_name, webhooks = list and #list or -1,",
        "        err = err and tostring(err) or cjson.null, all = n and n.all or -1,",
        "        attempts = r and r.attempts or -1, client = tostring(c) })",
        "    }",
        "  }",
        "}",
      }, "\n")
    end,
  }
  if not server then return nil, err end
  server.hook_url = server.url .. "/hook"
  return server
end

return M
