--- Response bodies in X's shapes: v1.1 `{"errors":[{"code","message"}]}` and
-- v2 Problem objects whose errors[].message starts with the reason.
local util = require "account_activity.emulator.util"

local M = {}

--- send(status, body, headers): write an answer and end the request (body: a
-- table is JSON-encoded).
function M.send(status, body, headers)
  ngx.status = status
  for k, v in pairs(headers or {}) do ngx.header[k] = v end
  if body ~= nil and status ~= 204 then
    if type(body) == "table" then body = util.encode(body) end
    if not (headers and (headers["Content-Type"] or headers["content-type"])) then
      ngx.header["Content-Type"] = "application/json;charset=utf-8"
    end
    ngx.header["Content-Length"] = #body
    ngx.print(body)
  else
    ngx.header["Content-Length"] = 0
  end
  return ngx.exit(status)
end


function M.v1(status, code, message, extra)
  local e = { code = code, message = message }
  for k, v in pairs(extra or {}) do e[k] = v end
  return status, { errors = { e } }
end

M.NOT_FOUND_34 = "Sorry, that page does not exist."
M.WEBHOOK_34 = "Webhook does not exist or is associated with a different X application."

local PROBLEM = "https://api.x.com/2/problems/"
M.PROBLEM = PROBLEM

--- HTTP 400 "Invalid Request" whose errors[1].message is "<Reason>: <details>".
function M.v2_reason(reason, details)
  return 400, {
    errors = { { message = reason .. ": " .. details } },
    title = "Invalid Request",
    detail = "One or more parameters to your request was invalid.",
    type = PROBLEM .. "invalid-request",
  }
end

function M.v2_unauthorized()
  return 401, { title = "Unauthorized", type = "about:blank", status = 401, detail = "Unauthorized" }
end

function M.v2_unsupported_auth(allowed)
  return 403, {
    title = "Unsupported Authentication",
    detail = "Authenticating with " .. allowed.got .. " is forbidden for this endpoint.  Supported authentication types are ["
      .. allowed.want .. "].",
    type = PROBLEM .. "unsupported-authentication",
    status = 403,
  }
end

--- 403 for an OAuth 2.0 user token without the scopes a call needs.
function M.v2_missing_scopes(missing)
  return 403, {
    title = "Forbidden",
    detail = "Your OAuth 2.0 token is missing the scope" .. (#missing > 1 and "s " or " ")
      .. table.concat(missing, ", ") .. " that this request requires.",
    type = PROBLEM .. "not-authorized-for-resource",
    status = 403,
    missing_scopes = missing,
  }
end

function M.v2_not_found()
  return 404, { title = "Not Found Error", detail = "Sorry, that page does not exist.",
    type = PROBLEM .. "resource-not-found", status = 404 }
end

function M.v2_rate_limited()
  return 429, { title = "Too Many Requests", detail = "Too Many Requests", type = "about:blank", status = 429 }
end

return M
