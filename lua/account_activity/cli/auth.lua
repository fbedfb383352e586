--- `account-activity auth ...`: OAuth 2.0 user login and the token store.
--
--   auth login [--scopes a,b] [--port P] [--store FILE] [--no-browser] [--timeout S]
--   auth list | refresh USER_ID | revoke USER_ID
--
-- The login waits for X's redirect on a loopback receiver (nginx, as
-- `events tail` runs it: the C core has no server) that writes the callback's
-- query to a private file; the state is checked by oauth2_exchange. No
-- token is ever printed: list shows ids, scopes and expiry only.
local M = {}

M.HELP = [=[
usage: account-activity auth login [--scopes a,b] [--port P] [--store FILE] [--no-browser] [--timeout S]
                      print the authorize URL, wait on http://127.0.0.1:P/callback (P: 8765;
                      0: any free port, for the emulator) for the redirect, check its
                      state, exchange the code, store the tokens
       account-activity auth list [--store FILE]       user ids, scopes and expiry (never a token)
       account-activity auth refresh USER_ID [--store FILE]
       account-activity auth revoke USER_ID [--store FILE]
  The OAuth 2.0 client: app.client_id / app.client_secret in --config, or
  TWITTER_CLIENT_ID / TWITTER_CLIENT_SECRET. FILE (default $TWITTER_TOKEN_STORE,
  else ~/.account-activity-tokens.json) is also where activity/subs find
  OAuth 2.0 users.
]=]

-- What X's private events and AAA v2 subscribe need, and a refresh token.
-- (AAA v2 subscribe and check list dm.write too.)
M.DEFAULT_SCOPES = { "tweet.read", "users.read", "dm.read", "dm.write", "like.read", "follows.read", "mute.read",
                     "block.read", "offline.access" }
M.DEFAULT_PORT = 8765

--- The token file the CLI uses: --store, else $TWITTER_TOKEN_STORE, else ~/.
function M.store_path(o)
  if o.store then return o.store end
  local env = os.getenv("TWITTER_TOKEN_STORE")
  if env and env ~= "" then return env end
  return (os.getenv("HOME") or ".") .. "/.account-activity-tokens.json"
end

local function usage(msg) return { usage = true, message = msg } end

local function sleep(s)
  local ok, core = pcall(require, "account_activity.core")
  if ok and core.sleep then return core.sleep(s) end
  os.execute("sleep " .. s)
end

local function lit(s) return string.format("%q", s) end

--- A one-shot loopback receiver: nginx on 127.0.0.1:port whose /callback
-- writes the request's query to server.callback_file (inside nginx's own
-- mode-0700 prefix: the code is for us only) and answers a page;
-- -> server | nil, err.
function M.start_receiver(port)
  local nginx_process = require "account_activity.nginx_process"
  local server, err = nginx_process.start {
    ports = 1, workers = 1,
    http = function(ports, srv)
      srv.callback_file = srv.prefix .. "/callback"
      local file = srv.callback_file
      return nginx_process.server_block { port = port or ports[1],
        locations = { { match = "= /callback", directives = {
          "default_type text/html;",
          "content_by_lua_block {",
          "  local f = io.open(" .. lit(file) .. ", 'wb')",
          "  if f then f:write(ngx.var.args or '') f:close() end",
          "  local ok = ngx.var.arg_error == nil",
          "  ngx.say(ok and '<p>Authorized. You can close this window.</p>'",
          "    or '<p>Not authorized. You can close this window.</p>')",
          "}" } } } }
    end,
  }
  if not server then return nil, err end
  server.redirect_uri = "http://127.0.0.1:" .. (port or server.port) .. "/callback"
  return server
end


local function has_display()
  local d, w = os.getenv("DISPLAY"), os.getenv("WAYLAND_DISPLAY")
  return (d ~= nil and d ~= "") or (w ~= nil and w ~= "")
end

local function split_scopes(s)
  local out = {}
  for w in s:gmatch("[^,%s]+") do out[#out + 1] = w end
  return out
end

local function expiry(t)
  if type(t.expires_at) ~= "number" then return "?" end
  local left = t.expires_at - os.time()
  local when = os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t.expires_at))
  if left <= 0 then return when .. " (expired)" end
  return string.format("%s (in %dm)", when, math.floor(left / 60))
end

-- What may be shown of a token: never the token itself.
local function summary(user_id, t)
  return { user_id = user_id, scope = t.scope or {}, expires_at = t.expires_at,
           refreshable = type(t.refresh_token) == "string" }
end

local function login(ctx, cli)
  local c, o = ctx.client, ctx.o
  local port = o.port and tonumber(o.port)
  if o.port and (not port or port < 0 or port > 65535 or port ~= math.floor(port)) then
    return usage("--port must be a port number (0: any free one)")
  end
  port = port or M.DEFAULT_PORT
  -- 0: a free port picked by the receiver; only for a server that takes any
  -- loopback callback (the emulator); X wants the registered one
  if port == 0 then port = nil end
  local timeout = tonumber(o.timeout or 300)
  if not timeout or timeout <= 0 then return usage("--timeout must be a number of seconds") end
  local scopes = o.scopes and split_scopes(o.scopes) or M.DEFAULT_SCOPES
  if #scopes == 0 then return usage("--scopes needs at least one scope") end
  local server, serr = M.start_receiver(port)
  if not server then
    return "cannot start the redirect receiver on 127.0.0.1:" .. (port or "?") .. ": " .. tostring(serr)
  end
  local file = server.callback_file
  local result
  local ok, perr = pcall(function()
    local url, lg = c:oauth2_authorize_url { redirect_uri = server.redirect_uri, scopes = scopes }
    if not url then result = lg return end
    ctx.err:write("open this URL to authorize the app:\n", url, "\n")
    ctx.err:write("waiting for the redirect on ", server.redirect_uri, " (", timeout, " s)\n")
    ctx.err:flush()
    if has_display() and not o["no-browser"] then
      os.execute("xdg-open " .. string.format("'%s'", url:gsub("'", "'\\''")) .. " >/dev/null 2>&1 &")
    end
    local deadline = os.time() + timeout
    local query
    while os.time() <= deadline do
      query = require("account_activity.nginx_process").read_file(file)
      if query and query ~= "" then break end
      query = nil
      sleep(0.1)
    end
    if not query then result = "no redirect reached " .. server.redirect_uri .. " within " .. timeout .. " s" return end
    local token, err = c:oauth2_exchange(lg, server.redirect_uri .. "?" .. query)
    if not token then result = err return end
    local s = summary(token.user_id, token)
    s.store = M.store_path(o)
    cli.emit(ctx, s, function(out)
      out:write("logged in user ", token.user_id, " (", table.concat(token.scope, " "), "); tokens stored in ",
        s.store, "\n")
    end)
  end)
  server:stop()
  if not ok then return tostring(perr) end
  return result
end

--- auth SUBCOMMAND -> nil (success) | usage table | error
function M.run(ctx, pos, cli)
  local sub = table.remove(pos, 1)
  local c = ctx.client
  if sub == "login" then
    local e = cli.need(pos, 0, "") if e then return e end
    return login(ctx, cli)
  elseif sub == "list" then
    local e = cli.need(pos, 0, "") if e then return e end
    local ids, err = c.token_store:list()
    if not ids then return err end
    local list, rows = {}, {}
    for _, id in ipairs(ids) do
      local t = c.token_store:get(id)
      if t then
        list[#list + 1] = summary(id, t)
        rows[#rows + 1] = { id, table.concat(t.scope or {}, " "), expiry(t), t.refresh_token and "yes" or "no" }
      end
    end
    cli.emit(ctx, list, function(out)
      if #rows == 0 then out:write("no OAuth 2.0 users in ", M.store_path(ctx.o), "\n") return end
      cli.table_out(out, { "USER_ID", "SCOPES", "EXPIRES", "REFRESHABLE" }, rows)
    end)
  elseif sub == "refresh" or sub == "revoke" then
    local e = cli.need(pos, 1, "USER_ID") or cli.check_id(pos[1], "USER_ID") if e then return e end
    if sub == "refresh" then
      local t, err = c:oauth2_refresh(pos[1])
      if not t then return err end
      cli.emit(ctx, summary(pos[1], t), function(out)
        out:write("refreshed ", pos[1], ", expires ", expiry(t), "\n")
      end)
    else
      local ok, err = c:oauth2_revoke(pos[1])
      if not ok then return err end
      cli.emit(ctx, { ok = true, user_id = pos[1], action = "revoked" }, function(out)
        out:write("revoked ", pos[1], "\n")
      end)
    end
  else
    return usage(sub and ("unknown auth command '" .. sub .. "'") or "missing auth command")
  end
end

return M
