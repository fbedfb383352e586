--- How a request is authorised: OAuth 1.0a (the owner's or the user's
-- tokens), the app bearer, Basic, and OAuth 2.0 user context: which access
-- token a user's call sends, and the refresh (before expiry, and once
-- after a 401).
--
-- A user is { user_id, oauth2 = token } or { user_id, oauth2 = true } (the
-- token comes from client.token_store). Refreshes of one user run under
-- store:lock(user_id), and read the store again inside it: when another
-- process already rotated the token, that token is used and no second
-- refresh is sent (the old refresh token is spent: X refuses it).
local errors = require "account_activity.errors"
local args = require "account_activity.args"
local token_store = require "account_activity.token_store"

local M = {}

M.TOKEN_PATH, M.REVOKE_PATH = "/2/oauth2/token", "/2/oauth2/revoke"
-- Refresh this long before expiry, so a token never expires in flight.
M.REFRESH_MARGIN = 60

local core = require "account_activity.core"

local pe = core.percent_encode

---------------------------------------------------------------------------
-- The token endpoint (RFC 6749 grants; the client secret, when there is
-- one, goes in the Basic header M.authorize builds for "oauth2_client")
---------------------------------------------------------------------------

local function split_scope(s)
  local out = {}
  if type(s) == "string" then
    for w in s:gmatch("%S+") do out[#out + 1] = w end
  elseif type(s) == "table" then
    for _, w in ipairs(s) do out[#out + 1] = tostring(w) end
  end
  return out
end

-- The token endpoint's answer -> a token table, or nil and the reason.
local function token_from(json, now)
  if type(json) ~= "table" or type(json.access_token) ~= "string" or json.access_token == "" then
    return nil, "the token endpoint's answer has no access_token"
  end
  local ttl = tonumber(json.expires_in)
  return {
    access_token = json.access_token,
    refresh_token = type(json.refresh_token) == "string" and json.refresh_token ~= "" and json.refresh_token or nil,
    expires_at = ttl and math.floor(now + ttl) or nil,
    scope = split_scope(json.scope),
    token_type = type(json.token_type) == "string" and json.token_type:lower() or "bearer",
  }
end

M.OAUTH_ERROR_KIND = { invalid_scope = "forbidden", access_denied = "forbidden" }

-- An RFC 6749 error body ({error, error_description}) into err: the reason
-- and a message, and no copy of the body (it is the token endpoint's).
local function oauth_error(err)
  local j = type(err.json) == "table" and err.json or nil
  if j and type(j.error) == "string" then
    err.reason = j.error
    err.message = type(j.error_description) == "string" and (j.error .. ": " .. j.error_description) or j.error
    err.kind = M.OAUTH_ERROR_KIND[j.error] or ((err.status == 400 or err.status == 401) and "auth") or err.kind
  elseif err.status == 400 then
    err.kind = "auth"
  end
  err.json = nil
  return err
end

-- POST to the token (or revoke) endpoint; `secrets` are scrubbed from any error.
function M.token_post(self, fname, path, form, secrets)
  if not self:_oauth2_client_id() then
    args.argerror(fname, "client_id", "the client needs client_id (aa.new option or TWITTER_CLIENT_ID)", 3)
  end
  local res, err = self:_perform {
    name = fname, method = "POST", path = path, form = form, auth = "oauth2_client",
    success = { [200] = true }, direct = true, secrets = secrets,
  }
  if not res then return nil, oauth_error(err) end
  return res
end

-- One grant at the token endpoint -> token, response.
function M.grant(self, fname, form, secrets)
  local res, err = M.token_post(self, fname, M.TOKEN_PATH, form, secrets)
  if not res then return nil, err end
  local token, why = token_from(res.json, self.clock())
  if not token then
    return nil, errors.make("decode", why, { method = "POST", url = self.base_url .. M.TOKEN_PATH },
      { status = res.status })
  end
  return token, res
end

--- The grant itself: refresh_token -> a new token, response (not stored;
-- auth.lua stores it under the user's lock).
function M.refresh_grant(self, refresh_token, fname)
  return M.grant(self, fname or "oauth2_refresh",
    { grant_type = "refresh_token", refresh_token = refresh_token }, { refresh_token })
end

---------------------------------------------------------------------------
-- A user's access token on a call
---------------------------------------------------------------------------

local function expiring(token, now)
  return type(token.expires_at) == "number" and token.expires_at - now <= M.REFRESH_MARGIN
end

local function auth_error(fname, message)
  return errors.make("auth", fname .. ": " .. message, nil)
end

-- A refreshed token goes back into the table the caller handed us, so a
-- `{ oauth2 = token }` user keeps working with the rotated one.
local function adopt(into, token)
  if type(into) ~= "table" or into == token then return end
  for k, v in pairs(token_store.copy_token(token)) do into[k] = v end
  into.refresh_token = token.refresh_token
end

--- The token a user's call starts from: the given table, else the store's.
function M.current(client, user, fname)
  local given = type(user.oauth2) == "table" and user.oauth2 or nil
  if given then return given end
  if not user.user_id then
    return nil, auth_error(fname, "an OAuth 2.0 user with oauth2 = true needs user_id")
  end
  local t, err = client.token_store:get(user.user_id)
  if err then return nil, err end
  if not t then
    return nil, auth_error(fname, "no OAuth 2.0 token stored for user " .. user.user_id
      .. " (run oauth2_exchange, or `account-activity auth login`)")
  end
  return t
end

--- Refresh under the user's lock -> token, response | nil, err.
-- `rejected`: the access token X just refused (or that is expiring): when
-- the store holds a different, valid one, another process refreshed
-- meanwhile and that one is returned without a refresh. nil: always refresh.
function M.refresh(client, user_id, token, rejected, fname)
  fname = fname or "oauth2_refresh"
  local function run()
    local stored
    if user_id then
      local err
      stored, err = client.token_store:get(user_id)
      if err then return nil, err end
    end
    if rejected and stored and stored.access_token ~= rejected and not expiring(stored, client.clock()) then
      adopt(token, stored)
      return stored, { status = 200, reused = true, headers = {}, attempts = 0, history = {} }
    end
    -- The store's refresh token is the newest: ours may be spent already.
    local from = (stored and stored.refresh_token) and stored or token
    if type(from) ~= "table" or type(from.refresh_token) ~= "string" or from.refresh_token == "" then
      return nil, auth_error(fname, "the token" .. (user_id and (" of user " .. user_id) or "")
        .. " has no refresh_token (ask for the offline.access scope), and it has expired or was refused")
    end
    local fresh, res = M.refresh_grant(client, from.refresh_token, fname)
    if not fresh then return nil, res end
    fresh.user_id = user_id or from.user_id
    if #fresh.scope == 0 and type(from.scope) == "table" then fresh.scope = from.scope end
    if user_id then
      -- Stored before anyone uses it: the old refresh token is spent now.
      local ok, serr = client.token_store:put(user_id, fresh)
      if not ok then return nil, serr end
    end
    adopt(token, fresh)
    return fresh, res
  end
  if not user_id then return run() end
  local r1, r2, r3 = client.token_store:lock(user_id, run)
  -- a store's lock failure is (nil, err) from lock itself
  return r1, r2, r3
end

--- The access token for one attempt of a user's call -> token string | nil, err.
-- Refreshes first when it expires within REFRESH_MARGIN seconds.
function M.bearer_for(client, user, fname)
  local token, err = M.current(client, user, fname)
  if not token then return nil, err end
  if expiring(token, client.clock()) then
    local fresh, ferr = M.refresh(client, user.user_id or token.user_id, token, token.access_token, fname)
    if not fresh then return nil, ferr end
    token = fresh
  end
  if type(token.access_token) ~= "string" or token.access_token == "" then
    return nil, auth_error(fname, "the OAuth 2.0 token has no access_token")
  end
  return token.access_token
end

--- After a 401 on a call that sent `sent`: refresh once -> true | nil, err.
function M.after_401(client, user, sent, fname)
  local token, err = M.current(client, user, fname)
  if not token then return nil, err end
  local fresh, ferr = M.refresh(client, user.user_id or token.user_id, token, sent, fname)
  if not fresh then return nil, ferr end
  return true
end

--- The Authorization header of one attempt -> the auth used | nil, err.
-- `s` holds the client's credentials (client.lua keeps them out of reach of
-- pairs(client)); the app bearer is fetched when needed. A user call goes
-- out with OAuth 2.0 where X accepts it (call.oauth2, from endpoints.lua) or
-- when the user has nothing else, else with the user's OAuth 1.0a tokens.
function M.authorize(self, s, call, url, headers)
  local auth = call.auth
  if auth == "user_or_app" then auth = s.access_token and "user" or "app" end
  if auth == "subscriber" and call.user.oauth2 ~= nil and (call.oauth2 or call.user.access_token == nil) then
    -- X takes OAuth 2.0 here (or the user has nothing else: request() lets the caller decide)
    auth = "oauth2_user"
  end
  if auth == "oauth2_user" then
    local token, err = M.bearer_for(self, call.user, call.name)
    if not token then return nil, err end
    call.oauth2_sent = token
    headers["Authorization"] = "Bearer " .. token
  elseif auth == "oauth2_token" then
    headers["Authorization"] = "Bearer " .. call.bearer
  elseif auth == "oauth2_client" then
    -- RFC 6749 2.3.1: a confidential client authenticates with Basic; a
    -- public one names itself in the body.
    if s.client_secret then
      headers["Authorization"] = "Basic "
        .. core.base64_encode(pe(s.client_id) .. ":" .. pe(s.client_secret))
    end
  elseif auth == "app" then
    local token, err = self:_bearer_for_call(call)
    if not token then return nil, err end
    headers["Authorization"] = "Bearer " .. token
  elseif auth == "user" or auth == "subscriber" then
    local token, token_secret
    if auth == "user" then
      if not s.access_token then
        error(call.name .. ": needs the app owner's access_token and access_token_secret (client options)", 0)
      end
      token, token_secret = s.access_token, s.access_token_secret
    else
      token, token_secret = call.user.access_token, call.user.access_token_secret
    end
    local ts
    if self.skew then ts = tostring(math.floor(os.time() + self.skew)) end
    headers["Authorization"] = core.oauth1_header {
      method = call.method, url = url, params = call.form,
      consumer_key = s.consumer_key, consumer_secret = s.consumer_secret,
      token = token, token_secret = token_secret, timestamp = ts,
    }
  elseif auth == "basic" then
    headers["Authorization"] = "Basic "
      .. core.base64_encode(pe(s.consumer_key) .. ":" .. pe(s.consumer_secret))
  elseif auth ~= "none" then
    error("unknown auth " .. tostring(auth), 0)
  end
  return auth
end

return M
