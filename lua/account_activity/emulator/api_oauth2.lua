--- POST /oauth2/token and POST /oauth2/invalidate_token (app-only bearer).
local core = require "account_activity.core"
local util = require "account_activity.emulator.util"
local state = require "account_activity.emulator.state"
local respond = require "account_activity.emulator.respond"

local M = {}

local function new_token()
  return "AAAAAAAAAAAAAAAAAAAAA" .. util.det_string(core.base64_encode(core.random_bytes(24)), 20)
    .. "%2F" .. util.det_string(core.base64_encode(core.random_bytes(24)), 16)
    .. "%3D" .. util.det_string(core.base64_encode(core.random_bytes(24)), 42)
end

function M.token(req)
  if req.form.grant_type ~= "client_credentials" then
    return respond.v1(403, 170, "Missing required parameter: grant_type", { label = "forbidden_missing_parameter" })
  end
  local token = state.with_lock("bearer", function()
    local cur = state.bearer()
    if not cur then
      cur = new_token()
      state.set_bearer(cur)
    end
    return cur
  end)
  return 200, { token_type = "bearer", access_token = token }
end

function M.invalidate(req)
  local token = req.form.access_token or req.query.access_token
  local cur = state.bearer()
  if type(token) ~= "string" or not cur or not core.equal(token, cur) then
    return respond.v1(403, 99, "Unable to verify your credentials", { label = "authenticity_token_error" })
  end
  state.set_bearer(nil)
  return 200, { access_token = token }
end

return M
