--- How the library's plain result tables print in a REPL: a metatable with
-- __name and __tostring, nothing else, so they stay plain tables for pairs,
-- #, cjson and user code. Printers show ids, counts and states, never a
-- token, a secret or a body (a response body can hold a bearer token).
local M = {}

local format, concat = string.format, table.concat

local function count(t) return type(t) == "table" and #t or 0 end

local function list_of(name, item_mt, limit)
  return {
    __name = name,
    __tostring = function(t)
      local lines = { format("%s: %d", name, #t) }
      for i = 1, math.min(#t, limit or 20) do
        local v = t[i]
        lines[#lines + 1] = "  " .. (type(v) == "table" and getmetatable(v) == item_mt and tostring(v) or tostring(v))
      end
      if #t > (limit or 20) then lines[#lines + 1] = format("  ... %d more", #t - (limit or 20)) end
      return concat(lines, "\n")
    end,
  }
end

M.webhook_mt = {
  __name = "account_activity.webhook_info",
  __tostring = function(w)
    return format("webhook %s %s (%s%s)", tostring(w.id), tostring(w.url),
      w.valid and "valid" or "INVALID", w.created_at and (", created " .. tostring(w.created_at)) or "")
  end,
}
M.webhook_list_mt = list_of("webhooks", M.webhook_mt)

M.count_mt = {
  __name = "account_activity.subscription_count",
  __tostring = function(c)
    local parts = {}
    for _, k in ipairs { "all", "direct_messages", "provisioned" } do
      if c[k] ~= nil then parts[#parts + 1] = k .. " " .. tostring(c[k]) end
    end
    return "subscriptions: " .. concat(parts, ", ") .. (c.account_name and (" (" .. c.account_name .. ")") or "")
  end,
}

M.response_mt = {
  __name = "account_activity.response",
  __tostring = function(r)
    local rl = r.rate_limit
    return format("HTTP %s%s, %d bytes%s%s%s", tostring(r.status),
      r.request and (" on " .. tostring(r.request.method) .. " " .. tostring(r.request.url)) or "",
      type(r.body) == "string" and #r.body or 0,
      r.time and format(", %.0f ms", r.time * 1000) or "",
      r.attempts and format(", %d attempt%s", r.attempts, r.attempts == 1 and "" or "s") or "",
      rl and rl.remaining and format(", rate limit %s/%s", tostring(rl.remaining), tostring(rl.limit)) or "")
  end,
}

M.report_mt = {
  __name = "account_activity.report",
  __tostring = function(r)
    local head = format("%s%s: added %d, kept %d, removed %d, failed %d", r.dry_run and "dry run " or "",
      r.ok and "ok" or "NOT ok", count(r.added), count(r.kept), count(r.removed), count(r.failed))
    if r.elapsed then head = head .. format(" in %.2f s", r.elapsed) end
    if r.waited and r.waited > 0 then head = head .. format(" (%.0f s of it waiting for the rate limit)", r.waited) end
    local lines = { head }
    for i = 1, math.min(count(r.failed), 10) do
      local f = r.failed[i]
      lines[#lines + 1] = format("  %s %s: %s", tostring(f.action or "?"), tostring(f.user_id or "?"), tostring(f.err))
    end
    if count(r.failed) > 10 then lines[#lines + 1] = format("  ... %d more failures", count(r.failed) - 10) end
    return concat(lines, "\n")
  end,
}

M.health_mt = {
  __name = "account_activity.health",
  __tostring = function(h)
    local parts = { h.ok and "healthy" or "NOT healthy" }
    if h.id or h.url then parts[#parts + 1] = "webhook " .. tostring(h.id or h.url) end
    if h.exists ~= nil then parts[#parts + 1] = h.exists and "exists" or "missing" end
    if h.valid ~= nil then parts[#parts + 1] = h.valid and "valid" or "invalid" end
    if h.subscriptions ~= nil then parts[#parts + 1] = tostring(h.subscriptions) .. " subscriptions" end
    if h.crc then
      parts[#parts + 1] = "CRC " .. (h.crc.ok and "ok" or "FAILED")
        .. (h.crc.latency and format(" in %.0f ms", h.crc.latency * 1000) or "")
    end
    local s = concat(parts, ", ")
    if count(h.problems) > 0 then s = s .. "\n  " .. concat(h.problems, "\n  ") end
    return s
  end,
}

M.event_mt = {
  __name = "account_activity.event",
  __tostring = function(e)
    return format("event %s%s%s", tostring(e.type), e.for_user_id and (" for " .. tostring(e.for_user_id)) or "",
      e.id and (" (id " .. tostring(e.id) .. ")") or "")
  end,
}
M.event_list_mt = list_of("events", M.event_mt)

--- Attach `mt` to t when t is a plain table without a metatable; returns t.
function M.mark(t, mt)
  if type(t) == "table" and getmetatable(t) == nil then setmetatable(t, mt) end
  return t
end

return M
