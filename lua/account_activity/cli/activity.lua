--- `account-activity activity ...`: the X Activity API (list, add, rm,
-- mirror, stream).
local events = require "account_activity.cli.events"
local F = {}
local K = require "account_activity.cli.kit"
local usage_error, need, check_id, user_for = K.usage_error, K.need, K.check_id, K.user_for
local emit, table_out, encode = K.emit, K.table_out, K.encode

local function activity_missing(c, name)
  if type(c[name]) ~= "function" then
    return "activity: this build has no X Activity API support (client:" .. name
      .. " is missing; lua/account_activity/activity.lua not installed)"
  end
end

function F.activity(ctx, pos)
  local sub = table.remove(pos, 1)
  local c, o = ctx.client, ctx.o
  local function call(fn, ...)
    local ok, a, b = pcall(fn, c, ...)
    if not ok then return nil, usage_error(K.speak((tostring(a):gsub("^[^:]*:%d+: ", "")))) end
    return a, b
  end
  if sub == "list" then
    local m = activity_missing(c, "activity_subscriptions") if m then return m end
    local list, err = call(c.activity_subscriptions, { all = o.all or nil })
    if not list then return err end
    emit(ctx, list, function(out)
      local rows = {}
      for _, s in ipairs(list) do
        local f = s.filter or {}
        rows[#rows + 1] = { s.id, s.event_type, f.user_id or f.keyword or "", s.tag or "", s.webhook_id or "" }
      end
      table_out(out, { "ID", "EVENT_TYPE", "FILTER", "TAG", "WEBHOOK" }, rows)
    end)
  elseif sub == "add" then
    local e = need(pos, 1, "EVENT_TYPE") if e then return e end
    local m = activity_missing(c, "activity_subscribe") if m then return m end
    local filter = { user_id = o["user-id"], keyword = o.keyword }
    local user
    if o["user-id"] then
      local uerr
      user, uerr = user_for(c, o, o["user-id"])
      if uerr then return uerr end
    end
    local s, err = call(c.activity_subscribe, { event_type = pos[1], filter = filter, tag = o.tag,
      webhook_id = o.webhook, user = user })
    if not s then return err end
    emit(ctx, s, function(out) out:write("created ", tostring(s.id), " ", tostring(s.event_type), "\n") end)
  elseif sub == "rm" then
    local e = need(pos, 1, "ID") if e then return e end
    local m = activity_missing(c, "activity_unsubscribe") if m then return m end
    local ok, err = call(c.activity_unsubscribe, pos[1])
    if not ok then return err end
    emit(ctx, { ok = true, id = pos[1] }, function(out) out:write("deleted ", pos[1], "\n") end)
  elseif sub == "mirror" then
    local e = need(pos, 1, "USER_ID") or check_id(pos[1], "USER_ID") if e then return e end
    if not o.webhook then return usage_error("activity mirror needs --webhook ID") end
    local m = activity_missing(c, "mirror_user") if m then return m end
    local user, uerr = user_for(c, o, pos[1])
    if uerr then return uerr end
    user = user or { user_id = pos[1] }
    local r, err = call(c.mirror_user, o.webhook, user, {})
    if not r then return err end
    emit(ctx, r, function(out)
      out:write(string.format("created %d, existing %d, failed %d\n", #(r.created or {}), #(r.existing or {}),
        #(r.failed or {})))
    end)
    if r.failed and #r.failed > 0 then return "failed" end
  elseif sub == "stream" then
    local e = need(pos, 0, "") if e then return e end
    local m = activity_missing(c, "stream") if m then return m end
    local st, err = call(c.stream, { backfill_minutes = tonumber(o.backfill) })
    if not st then return err end
    local count, n = tonumber(o.count), 0
    local ok, perr = pcall(function()
      for ev in st:events() do
        n = n + 1
        local rec = { t = os.time(), type = ev.type, for_user_id = ev.for_user_id, summary = ev.id and ("id " .. ev.id) or "" }
        if o.json then ctx.out:write(encode(rec), "\n") else ctx.out:write(events.event_line(rec), "\n") end
        ctx.out:flush()
        if count and n >= count then break end
      end
    end)
    local serr = st.err
    st:close()
    if not ok and not tostring(perr):find("interrupted", 1, true) then return tostring(perr) end
    if serr and not (count and n >= count) then return serr end
  else
    return usage_error(sub and ("unknown activity command '" .. sub .. "'") or "missing activity command")
  end
end
return F
