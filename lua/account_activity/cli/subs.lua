--- `account-activity subs | replay`: subscriptions (list, add, check, rm,
-- count, sync) and replay jobs.
local F = {}
local K = require "account_activity.cli.kit"
local usage_error, need, check_id, emit = K.usage_error, K.need, K.check_id, K.emit
local fail_report, report_line, table_out, yesno = K.fail_report, K.report_line, K.table_out, K.yesno
local array = K.array

function F.subs(ctx, pos)
  local sub = table.remove(pos, 1)
  local c, o = ctx.client, ctx.o
  if sub == "list" then
    local e = need(pos, 1, "ID") or check_id(pos[1], "ID") if e then return e end
    local ids, err = c:subscriptions(pos[1])
    if not ids then return err end
    emit(ctx, { webhook_id = pos[1], user_ids = array(ids) }, function(out)
      out:write("USER_ID\n")
      for _, id in ipairs(ids) do out:write(id, "\n") end
      out:write(#ids, " subscription", #ids == 1 and "" or "s", "\n")
    end)
  elseif sub == "count" then
    local e = need(pos, 0, "") if e then return e end
    local n, err = c:subscription_count()
    if not n then return err end
    emit(ctx, n, function(out)
      table_out(out, { "ALL", "DIRECT_MESSAGES", "ACCOUNT" }, { { n.all, n.direct_messages, n.account_name } })
    end)
  elseif sub == "rm" then
    local e = need(pos, 2, "ID USER_ID") or check_id(pos[1], "ID") or check_id(pos[2], "USER_ID")
    if e then return e end
    local ok, err = c:unsubscribe(pos[1], pos[2])
    if not ok then return err end
    emit(ctx, { ok = true, webhook_id = pos[1], user_id = pos[2] }, function(out)
      out:write("unsubscribed ", pos[2], " from ", pos[1], "\n")
    end)
  elseif sub == "add" or sub == "check" then
    local e = need(pos, 1, "ID") or check_id(pos[1], "ID") if e then return e end
    local users
    if o.users then
      local err
      users, err = K.read_users(o.users)
      if not users then return usage_error(err) end
    elseif o["user-id"] then
      local e2 = check_id(o["user-id"], "--user-id") if e2 then return e2 end
      users = { { user_id = o["user-id"], oauth2 = true } } -- from the token store
    end
    if sub == "add" then
      if users then
        -- the file names who is subscribed: the configured owner is not in it
        local r = c:subscribe_many(pos[1], users, ctx.job_opts)
        emit(ctx, r, function(out) out:write(report_line(r), "\n") end)
        fail_report(ctx, r)
        if not r.ok then return "failed" end
        return
      end
      if not ctx.owner then
        return usage_error("subs add needs the user's access token (TWITTER_ACCESS_TOKEN/_SECRET), --users FILE"
          .. " (OAuth 2.0 users too) or, on api v2, --user-id ID of a user in the token store")
      end
      local ok, err = c:subscribe(pos[1], ctx.owner)
      if not ok and err.kind ~= "conflict" then return err end
      emit(ctx, { ok = true, webhook_id = pos[1], already = not ok }, function(out)
        out:write(ok and "subscribed\n" or "already subscribed\n")
      end)
    else
      if not users then
        if not ctx.owner then
          return usage_error("subs check needs the user's access token (TWITTER_ACCESS_TOKEN/_SECRET) or --users FILE")
        end
        local yes, err = c:is_subscribed(pos[1], ctx.owner)
        if yes == nil then return err end
        emit(ctx, { webhook_id = pos[1], subscribed = yes }, function(out)
          out:write(yes and "subscribed\n" or "not subscribed\n")
        end)
        return
      end
      local rows, list = {}, {}
      for _, u in ipairs(users) do
        local yes, err = c:is_subscribed(pos[1], u)
        if yes == nil then return err end
        rows[#rows + 1] = { u.user_id or "?", yesno(yes) }
        list[#list + 1] = { user_id = u.user_id, subscribed = yes }
      end
      emit(ctx, list, function(out) table_out(out, { "USER_ID", "SUBSCRIBED" }, rows) end)
    end
  elseif sub == "sync" then
    local e = need(pos, 2, "ID FILE") or check_id(pos[1], "ID") if e then return e end
    local users, err = K.read_users(pos[2])
    if not users then return usage_error(err) end
    if #users == 0 and not o["allow-removals"] then
      return usage_error(pos[2] .. " holds no users: a sync to nobody removes every subscription"
        .. " (pass --allow-removals if that is meant)")
    end
    local jo = {}
    for k, v in pairs(ctx.job_opts) do jo[k] = v end
    jo.dry_run, jo.remove = o["dry-run"] == true, not o["keep-others"]
    jo.allow_removals = o["allow-removals"] == true
    local r, rerr = c:sync_subscriptions(pos[1], users, jo)
    if not r and rerr.kind == "refused" then
      return usage_error(rerr.message:gsub("Pass opts%.allow_removals = true", "Pass --allow-removals") .. "")
    end
    if not r then return rerr end
    emit(ctx, r, function(out)
      out:write(r.dry_run and "dry run: would have " or "", report_line(r), "\n")
    end)
    fail_report(ctx, r)
    if not r.ok then return "failed" end
  else
    return usage_error(sub and ("unknown subs command '" .. sub .. "'") or "missing subs command")
  end
end

function F.replay(ctx, pos)
  local e = need(pos, 3, "ID FROM TO") or check_id(pos[1], "ID") if e then return e end
  local wf = require "account_activity.workflows"
  local from, ferr = wf.parse_time(pos[2])
  if not from then return usage_error("FROM: " .. ferr) end
  local to, terr = wf.parse_time(pos[3])
  if not to then return usage_error("TO: " .. terr) end
  local ok, job, err = pcall(ctx.client.replay, ctx.client, pos[1], from, to)
  if not ok then return usage_error((tostring(job):gsub("^[^:]*:%d+: ", ""))) end
  if not job then return err end
  emit(ctx, job, function(out) out:write("replay job ", tostring(job.job_id), " created ", tostring(job.created_at), "\n") end)
end
return F
