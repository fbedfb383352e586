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
local oauth2 = require "account_activity.oauth2"
local token_store = require "account_activity.token_store"

local M = {}

local core_mod
local function core()
  if not core_mod then core_mod = require "account_activity.core" end
  return core_mod
end

local function pe(s) return core().percent_encode(s) end

local function expiring(token, now)
  return type(token.expires_at) == "number" and token.expires_at - now <= oauth2.REFRESH_MARGIN
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
    local fresh, res = oauth2.internal.refresh_grant(client, from.refresh_token, fname)
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
        .. core().base64_encode(pe(s.client_id) .. ":" .. pe(s.client_secret))
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
    headers["Authorization"] = core().oauth1_header {
      method = call.method, url = url, params = call.form,
      consumer_key = s.consumer_key, consumer_secret = s.consumer_secret,
      token = token, token_secret = token_secret, timestamp = ts,
    }
  elseif auth == "basic" then
    headers["Authorization"] = "Basic "
      .. core().base64_encode(pe(s.consumer_key) .. ":" .. pe(s.consumer_secret))
  elseif auth ~= "none" then
    error("unknown auth " .. tostring(auth), 0)
  end
  return auth
end

return M
