--- Response bodies in X's shapes: v1.1 `{"errors":[{"code","message"}]}` and
-- v2 Problem objects whose errors[].message starts with the reason.
local M = {}

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
