--- What the CLI's local endpoint receives and how an event prints: the
-- endpoint itself (nginx + account_activity.nginx.serve, used by `events
-- tail`, `up`, the demo and the specs), the one-line summaries (also run
-- inside its nginx workers), and the reader of its event file.
local cjson = require "cjson.safe"
local E = {}
---------------------------------------------------------------------------
-- Events (also used inside nginx by `events tail` and the demo)
---------------------------------------------------------------------------

local function sn(u) return type(u) == "table" and (u.screen_name and ("@" .. u.screen_name) or u.id_str) or "?" end

local function short(s, n)
  s = tostring(s or ""):gsub("[\r\n]+", " ")
  n = n or 60
  if #s > n then s = s:sub(1, n - 3) .. "..." end
  return s
end

--- A one-line summary of an event's item.
function E.event_summary(ev)
  local it = type(ev.item) == "table" and ev.item or {}
  local t = ev.type
  if t == "tweet_create" or t == "favorite" and it.favorited_status then
    if t == "favorite" then
      return sn(it.user) .. " liked " .. tostring(it.favorited_status.id_str)
    end
    return sn(it.user) .. ": " .. short(it.text or it.full_text)
  elseif t == "favorite" then
    return sn(it.user) .. " liked a post"
  elseif t == "follow" or t == "unfollow" or t == "block" or t == "unblock" or t == "mute" or t == "unmute" then
    return sn(it.source) .. " -> " .. sn(it.target)
  elseif t == "direct_message" then
    local mc = it.message_create or {}
    local md = mc.message_data or {}
    return "from " .. tostring(mc.sender_id) .. ": " .. short(md.text)
  elseif t == "direct_message_indicate_typing" or t == "direct_message_mark_read" then
    return "from " .. tostring(it.sender_id) .. " to " .. tostring(it.target and it.target.recipient_id)
  elseif t == "tweet_delete" then
    return "post " .. tostring(it.status and it.status.id) .. " deleted"
  elseif t == "replay_job_status" then
    return "replay job " .. tostring(it.job_id) .. ": " .. tostring(it.job_state)
  elseif t == "user_event" then
    local r = it.revoke or {}
    return "revoke: user " .. tostring(r.source and r.source.user_id) .. " revoked the app"
  end
  return ""
end

--- One line for an event record {t, type, for_user_id, summary}.
function E.event_line(rec)
  local clock = rec.t and os.date("%H:%M:%S", math.floor(rec.t)) or "--:--:--"
  return string.format("%s  %-31s for %-12s %s", clock, tostring(rec.type), tostring(rec.for_user_id or "-"),
    rec.summary or "")
end

local function lit(s) return string.format("%q", s) end

--- Start a local webhook endpoint: nginx running account_activity.nginx.serve
-- with `secret`, appending one JSON line per event ({t, type, for_user_id,
-- summary}) to `file`. opts: secret, file, port, path ("/webhook").
-- Returns the nginx server (with .hook_url) | nil, err.
function E.start_endpoint(opts)
  local path = opts.path or "/webhook"
  if not path:match("^/[%w/_%-%.]*$") then return nil, "bad --path " .. path end
  return (function()
    local nginx_process = require "account_activity.nginx_process"
    local server, err = nginx_process.start {
      ports = 1, workers = 1, port = opts.port,
      http = function(ports)
        return table.concat({
          "init_by_lua_block {",
          "  local cjson = require 'cjson'",
          "  local cli = require 'account_activity.cli.events'",
          "  local OUT = " .. lit(opts.file),
          "  package.loaded.aa_cli_endpoint = {",
          "    consumer_secret = " .. lit(opts.secret) .. ",",
          "    log = function() end,",
          "    on_event = function(ev)",
          "      local f = io.open(OUT, 'ab')",
          "      if not f then return end",
          "      f:write(cjson.encode { t = ngx.now(), type = ev.type, for_user_id = ev.for_user_id,",
          "        summary = cli.event_summary(ev) }, '\\n')",
          "      f:close()",
          "    end,",
          "  }",
          "}",
          nginx_process.server_block { port = opts.port or ports[1], directives = { "client_max_body_size 4m;" },
            -- a prefix location: PATH/anything is a second URL on the same endpoint
            locations = { { match = path, directives = {
              "content_by_lua_block { require('account_activity.nginx').serve(package.loaded.aa_cli_endpoint) }" } } } },
        }, "\n")
      end,
    }
    if not server then return nil, err end
    local port = opts.port or server.port
    server.hook_url = "http://127.0.0.1:" .. port .. path
    return server
  end)()
end

--- A follower of a JSON-lines file: poll() -> array of new records.
function E.follow(file)
  local pos = 0
  return function()
    local f = io.open(file, "rb")
    if not f then return {} end
    f:seek("set", pos)
    local recs = {}
    for line in f:lines() do
      local r = cjson.decode(line)
      if type(r) == "table" then recs[#recs + 1] = r end
    end
    pos = f:seek()
    f:close()
    return recs
  end
end

return E
