--- `account-activity webhooks | health | crc`: the webhooks, their health
-- (and our CRC answer at their URL), and a CRC answer computed locally.
local F = {}
local K = require "account_activity.cli.kit"
local usage_error, need, check_id, emit = K.usage_error, K.need, K.check_id, K.emit
local table_out, yesno = K.table_out, K.yesno
local PROG = K.PROG

local function webhook_rows(list)
  local rows = {}
  for _, w in ipairs(list) do
    rows[#rows + 1] = { w.id, w.url, yesno(w.valid), w.created_at or "", w.environment }
  end
  return rows
end

function F.webhooks(ctx, pos)
  local sub = table.remove(pos, 1)
  local c = ctx.client
  if sub == "list" then
    local e = need(pos, 0, "") if e then return e end
    local list, err = c:webhooks()
    if not list then return err end
    emit(ctx, list, function(out)
      if #list == 0 then out:write("no webhooks\n") return end
      table_out(out, { "ID", "URL", "VALID", "CREATED" }, webhook_rows(list))
    end)
  elseif sub == "add" or sub == "ensure" then
    local e = need(pos, 1, "URL") if e then return e end
    local wh, info
    if sub == "add" then
      wh, info = c:register_webhook(pos[1])
      info = wh and { action = "registered" } or info
    else
      wh, info = c:ensure_webhook(pos[1], { replace = ctx.o.replace })
    end
    if not wh then return info end
    emit(ctx, { webhook = wh, action = info.action, replaced = info.replaced }, function(out)
      out:write(info.action, " ", wh.id, " ", wh.url, " valid=", yesno(wh.valid), "\n")
      if info.replaced then out:write("deleted ", info.replaced.id, " ", info.replaced.url, "\n") end
    end)
  elseif sub == "validate" or sub == "rm" then
    local e = need(pos, 1, "ID") or check_id(pos[1], "ID") if e then return e end
    local ok, err
    if sub == "validate" then ok, err = c:validate_webhook(pos[1]) else ok, err = c:delete_webhook(pos[1]) end
    if not ok then return err end
    emit(ctx, { ok = true, id = pos[1], action = sub == "rm" and "deleted" or "validated" }, function(out)
      out:write(sub == "rm" and "deleted " or "validated ", pos[1], "\n")
    end)
  else
    return usage_error(sub and ("unknown webhooks command '" .. sub .. "'") or "missing webhooks command")
  end
end


function F.health(ctx, pos)
  local e = need(pos, 1, "ID or URL") if e then return e end
  local h = ctx.client:health(pos[1], { url = ctx.o.url })
  emit(ctx, h, function(out)
    local rows = {
      { "webhook", tostring(h.id or "?") .. " " .. tostring(h.url or "") },
      { "exists", yesno(h.exists) },
      { "valid", yesno(h.valid) },
      { "subscriptions", h.subscriptions or "?" },
    }
    if h.crc then
      rows[#rows + 1] = { "crc", h.crc.ok and "ok" or ("FAILED: " .. tostring(h.crc.reason)) }
      rows[#rows + 1] = { "crc latency", string.format("%.0f ms (budget %g s)", h.crc.latency * 1000, h.crc.budget) }
    end
    rows[#rows + 1] = { "healthy", yesno(h.ok) }
    table_out(out, { "CHECK", "RESULT" }, rows)
  end)
  if not h.ok then
    if not ctx.o.json then
      for _, p in ipairs(h.problems) do ctx.err:write(PROG, ": ", p, "\n") end
    end
    return "failed"
  end
end

function F.crc(ctx, pos)
  if #pos == 2 then
    return usage_error("crc takes only TOKEN: a secret on the command line is visible to every user of this"
      .. " machine (ps); give it with --config FILE or TWITTER_CONSUMER_SECRET")
  end
  local e = need(pos, 1, "TOKEN") if e then return e end
  local secret = ctx.secret
  if type(secret) ~= "string" or secret == "" then
    return usage_error("crc needs the consumer secret: --config FILE or TWITTER_CONSUMER_SECRET")
  end
  local token = require("account_activity.crc").response(secret, pos[1])
  emit(ctx, { response_token = token }, function(out) out:write(token, "\n") end)
end
return F
