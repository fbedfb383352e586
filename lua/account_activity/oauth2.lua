--- OAuth 2.0 user context: Authorization Code with PKCE (RFC 6749, RFC 7636).
--
--   local url, login = client:oauth2_authorize_url { redirect_uri = "http://127.0.0.1:8765/callback",
--     scopes = { "tweet.read", "users.read", "dm.read", "offline.access" } }
--   -- send the user to url; X redirects to redirect_uri?code=...&state=...
--   local token = assert(client:oauth2_exchange(login, callback_url))
--   client:subscribe(webhook_id, { user_id = token.user_id, oauth2 = true })
--
-- Policy only: SHA-256, base64url and the random bytes come from the C core,
-- the token endpoint's grants from auth.lua, the HTTP from the client's own
-- request path (client:_perform), and the client secret never leaves the
-- credentials client.lua hands auth.lua per call (auth = "oauth2_client").
local errors = require "account_activity.errors"
local args = require "account_activity.args"
local auth = require "account_activity.auth"

local M = {}

local core = require "account_activity.core"

-- blames the caller of the function that raises
local function argerror(fname, argname, msg) args.argerror(fname, argname, msg, 3) end

M.ME_PATH = "/2/users/me"
M.X_AUTHORIZE_URL = "https://x.com/i/oauth2/authorize"

-- The API hosts of X itself: their consent page lives on x.com, not on the
-- API host. Any other base_url (the emulator) serves the page itself.
local X_API_HOSTS = { ["api.twitter.com"] = true, ["api.x.com"] = true }

--- The authorize endpoint for this client: opts.authorize_url, else X's, else
-- base_url's own (the emulator).
local function authorize_base(base_url, override)
  if override then return override end
  local host = base_url:match("^https?://([^/:]+)")
  if host and X_API_HOSTS[host:lower()] then return M.X_AUTHORIZE_URL end
  return base_url .. "/i/oauth2/authorize"
end

local pe = core.percent_encode

local function random_b64url(n)
  local bytes, err = core.random_bytes(n)
  if not bytes then return nil, errors.make("argument", err, nil) end
  return core.base64url_encode(bytes)
end

--- A PKCE pair: verifier (32 random bytes, base64url: 43 characters) and its S256 challenge.
local function pkce()
  local verifier, err = random_b64url(32)
  if not verifier then return nil, err end
  return verifier, core.base64url_encode(core.sha256(verifier))
end

-- A login holds the verifier: printing it shows neither.
local Login = {
  __name = "account_activity.oauth2_login",
  __tostring = function(l) return "account_activity.oauth2_login<" .. tostring(rawget(l, "redirect_uri")) .. ">" end,
}

local SCOPE_PATTERN = "^[%w%.%-_:]+$"

--- client:oauth2_authorize_url{ redirect_uri, scopes, state } -> url, login
function M.oauth2_authorize_url(self, opts)
  local fname = "oauth2_authorize_url"
  if type(opts) ~= "table" then argerror(fname, "opts", "table expected, got " .. type(opts)) end
  local client_id = self:_oauth2_client_id()
  if not client_id then
    argerror(fname, "client_id", "the client needs client_id (aa.new option or TWITTER_CLIENT_ID)")
  end
  local redirect_uri = opts.redirect_uri
  if type(redirect_uri) ~= "string" or not redirect_uri:match("^%a[%w+.-]*://[^%s]+$") or redirect_uri:find("%c") then
    argerror(fname, "redirect_uri", "expected an absolute URL, got " .. type(redirect_uri))
  end
  local scopes = opts.scopes
  if type(scopes) ~= "table" or #scopes == 0 then
    argerror(fname, "scopes", "expected a non-empty array of scope names")
  end
  for i, s in ipairs(scopes) do
    if type(s) ~= "string" or not s:match(SCOPE_PATTERN) then
      argerror(fname, "scopes[" .. i .. "]", "expected a scope name like \"tweet.read\"")
    end
  end
  local state = opts.state
  if state ~= nil and (type(state) ~= "string" or state == "" or #state > 500 or state:find("[%c%s]")) then
    argerror(fname, "state", "expected a non-empty string without spaces")
  end
  if state == nil then
    local s, err = random_b64url(16)
    if not s then return nil, err end
    state = s
  end
  local verifier, challenge = pkce()
  if not verifier then return nil, challenge end
  local base = authorize_base(self.base_url, self.authorize_url)
  local query = {
    "response_type=code",
    "client_id=" .. pe(client_id),
    "redirect_uri=" .. pe(redirect_uri),
    "scope=" .. pe(table.concat(scopes, " ")),
    "state=" .. pe(state),
    "code_challenge=" .. challenge,
    "code_challenge_method=S256",
  }
  local url = base .. (base:find("?", 1, true) and "&" or "?") .. table.concat(query, "&")
  return url, setmetatable({ verifier = verifier, state = state, redirect_uri = redirect_uri }, Login)
end

--- The query parameters of a URL (or of a bare query string), decoded.
local function query_params(url)
  local q = url:match("%?([^#]*)") or (not url:find("://", 1, true) and url) or ""
  local out = {}
  for pair in q:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    out[core.percent_decode(k, true)] = core.percent_decode(v, true)
  end
  return out
end

-- GET /2/users/me with a fresh access token: who consented.
local function whoami(self, access_token)
  local res, err = self:_perform {
    name = "oauth2_exchange", method = "GET", path = M.ME_PATH, auth = "oauth2_token",
    bearer = access_token, success = { [200] = true }, direct = true, secrets = { access_token },
  }
  if not res then return nil, err end
  local data = type(res.json) == "table" and type(res.json.data) == "table" and res.json.data or {}
  local id = data.id
  if type(id) == "number" then id = string.format("%.0f", id) end
  if type(id) ~= "string" or not id:match("^%d+$") then
    return nil, errors.make("decode", "GET /2/users/me answered without data.id",
      { method = "GET", url = self.base_url .. M.ME_PATH }, { status = res.status })
  end
  return id
end

local function auth_error(fname, message)
  return errors.make("auth", fname .. ": " .. message, nil)
end

--- client:oauth2_exchange(login, code_or_callback_url) -> token, response
-- The token is stored in the client's token_store under its user_id.
function M.oauth2_exchange(self, login, code)
  local fname = "oauth2_exchange"
  if type(login) ~= "table" then argerror(fname, "login", "the login table from oauth2_authorize_url expected, got " .. type(login)) end
  for _, k in ipairs { "verifier", "redirect_uri" } do
    if type(login[k]) ~= "string" or login[k] == "" then
      argerror(fname, "login." .. k, "expected the string oauth2_authorize_url returned")
    end
  end
  if type(code) ~= "string" or code == "" or code:find("%c") then
    argerror(fname, "code_or_callback_url", "expected the code or the callback URL string, got " .. type(code))
  end
  if code:find("?", 1, true) or code:match("^%a[%w+.-]*://") then
    local q = query_params(code)
    if q.error then
      local e = auth_error(fname, "the authorization was refused: " .. q.error
        .. (q.error_description and (" (" .. q.error_description .. ")") or ""))
      e.reason = q.error
      e.kind = auth.OAUTH_ERROR_KIND[q.error] or "auth"
      return nil, e
    end
    if type(login.state) ~= "string" or type(q.state) ~= "string" or not core.equal(q.state, login.state) then
      return nil, auth_error(fname, "the callback's state does not match the login's (a forged or stale redirect)")
    end
    if type(q.code) ~= "string" or q.code == "" then
      return nil, auth_error(fname, "the callback URL has no code")
    end
    code = q.code
  end
  local token, res = auth.grant(self, fname, {
    grant_type = "authorization_code", code = code, redirect_uri = login.redirect_uri,
    code_verifier = login.verifier,
  }, { code, login.verifier })
  if not token then return nil, res end
  local user_id, merr = whoami(self, token.access_token)
  if not user_id then return nil, merr end
  token.user_id = user_id
  local ok, serr = self.token_store:put(user_id, token)
  if not ok then return nil, serr end
  return token, res
end

-- A token table or a user id -> user_id, token (the store's for an id).
local function resolve(self, fname, v)
  if type(v) == "table" then
    if type(v.access_token) ~= "string" and type(v.refresh_token) ~= "string" then
      argerror(fname, "token_or_user_id", "expected a token table {access_token, refresh_token, user_id} or a user id")
    end
    local id = v.user_id
    if id ~= nil and (type(id) ~= "string" or not id:match("^%d+$")) then
      argerror(fname, "token.user_id", "expected a decimal id string")
    end
    return id, v
  end
  if type(v) == "number" and v == math.floor(v) and v >= 0 then v = string.format("%.0f", v) end
  if type(v) ~= "string" or not v:match("^%d+$") or #v > 19 then
    argerror(fname, "token_or_user_id", "expected a token table or a decimal user id, got " .. type(v))
  end
  local t, err = self.token_store:get(v)
  if err then return nil, nil, err end
  if not t then return nil, nil, auth_error(fname, "no OAuth 2.0 token stored for user " .. v) end
  return v, t
end

--- client:oauth2_refresh(token_or_user_id) -> token, response
-- Always rotates; the new token is in the token_store before this returns
-- (under the store's lock for that user, reading the latest refresh token
-- there first: another process may have rotated it).
function M.oauth2_refresh(self, v)
  local fname = "oauth2_refresh"
  local user_id, token, err = resolve(self, fname, v)
  if err then return nil, err end
  return auth.refresh(self, user_id, token, nil, fname)
end

--- client:oauth2_revoke(token_or_user_id) -> true, response
-- Revokes the refresh token and the access token, then forgets the user's token.
function M.oauth2_revoke(self, v)
  local fname = "oauth2_revoke"
  local user_id, token, err = resolve(self, fname, v)
  if err then return nil, err end
  if user_id then
    local stored = self.token_store:get(user_id)
    if stored and stored.refresh_token then token = stored end
  end
  local last
  for _, pair in ipairs { { token.refresh_token, "refresh_token" }, { token.access_token, "access_token" } } do
    if type(pair[1]) == "string" and pair[1] ~= "" then
      local res, rerr = auth.token_post(self, fname, auth.REVOKE_PATH,
        { token = pair[1], token_type_hint = pair[2] }, { pair[1] })
      if not res then return nil, rerr end
      last = res
    end
  end
  if user_id then
    local ok, serr = self.token_store:delete(user_id)
    if not ok then return nil, serr end
  end
  return true, last
end

-- Helpers for auth.lua, the CLI and specs; a table, so the client does not
-- offer them as methods (it forwards only functions).
M.internal = { authorize_base = authorize_base, pkce = pkce, query_params = query_params }

return M
