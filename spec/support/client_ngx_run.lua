-- Runs inside nginx (content_by_lua): the client's checks over the cosocket
-- transport, for every flavour, against the emulator. Returns
-- { checks = n, failures = { "name: detail", ... }, transport = ... }.
-- Used by spec/client_ngx_spec.lua, which asserts the result.
return function(args)
  local aa = require "account_activity"
  local ngx_transport = require "account_activity.transport.ngx"
  local cjson = require "cjson"
  local cfg, base, hook_url = args.config, args.emulator_url, args.hook_url

  local checks, failures = 0, {}
  local function check(name, cond, detail)
    checks = checks + 1
    if not cond then
      local d = type(detail) == "table" and (detail.kind and tostring(detail) or cjson.encode(detail)) or tostring(detail)
      failures[#failures + 1] = name .. ": " .. d
    end
    return cond
  end
  local function control(method, path, body)
    local res = ngx_transport.request { method = method, url = base .. path,
      headers = { ["Content-Type"] = "application/json" }, body = body and cjson.encode(body) or nil }
    return res and cjson.decode(res.body)
  end
  local function user(i)
    local u = cfg.users[i]
    return { user_id = u.user_id, access_token = u.access_token, access_token_secret = u.access_token_secret }
  end
  local sleeps = {}
  local function client(api, extra)
    local opts = {
      consumer_key = cfg.app.consumer_key, consumer_secret = cfg.app.consumer_secret,
      access_token = cfg.app.owner.access_token, access_token_secret = cfg.app.owner.access_token_secret,
      base_url = base, api = api, env_name = api == "premium" and "dev" or nil,
      sleep = function(s) sleeps[#sleeps + 1] = s end,
    }
    for k, v in pairs(extra or {}) do opts[k] = v end
    return aa.new(opts)
  end

  local transport
  for _, api in ipairs { "enterprise", "premium", "v2" } do
    control("POST", "/_emulator/reset", {})
    local c = client(api)
    transport = c.transport_name
    check(api .. " transport", c.transport_name == "ngx", c.transport_name)
    local url = hook_url .. "/" .. api
    local wh, err = c:register_webhook(url)
    if check(api .. " register_webhook", wh and wh.id and wh.valid == true, err) then
      local list = c:webhooks()
      check(api .. " webhooks", list and #list == 1 and list[1].url == url, cjson.encode(list or {}))
      local one = c:webhook(wh.id)
      check(api .. " webhook(id)", one and one.id == wh.id, one)
      local _, nf = c:webhook("999")
      check(api .. " webhook(unknown) not_found", nf and nf.kind == "not_found", nf)
      check(api .. " validate_webhook", c:validate_webhook(wh.id) == true, select(2, c:validate_webhook(wh.id)))
      local ok, serr = c:subscribe(wh.id, user(1))
      check(api .. " subscribe", ok == true, serr)
      local _, dup = c:subscribe(wh.id, user(1))
      check(api .. " subscribe twice is a conflict", dup and dup.kind == "conflict", dup)
      check(api .. " is_subscribed", c:is_subscribed(wh.id, user(1)) == true, "not subscribed")
      check(api .. " is_subscribed (no)", c:is_subscribed(wh.id, user(2)) == false, "subscribed?")
      assert(c:subscribe(wh.id, user(2)))
      local subs = c:subscriptions(wh.id)
      check(api .. " subscriptions", subs and #subs == 2, cjson.encode(subs or {}))
      local count = c:subscription_count()
      check(api .. " subscription_count", count and count.all == 2 and type(count.all) == "number", cjson.encode(count or {}))
      check(api .. " unsubscribe by id", c:unsubscribe(wh.id, user(2).user_id) == true, "failed")
      if api ~= "v2" then
        check(api .. " unsubscribe with user tokens", c:unsubscribe(wh.id, user(1)) == true, "failed")
      end
      if api ~= "premium" then
        local now = os.time()
        local job, rerr = c:replay(wh.id, now - 3600, now - 600)
        check(api .. " replay", job and job.job_id, rerr)
      end
      check(api .. " delete_webhook", c:delete_webhook(wh.id) == true, "failed")
    end
  end

  control("POST", "/_emulator/reset", {})
  local c = client("enterprise")
  local token = c:bearer_token()
  check("bearer_token", type(token) == "string" and #token > 0, token)
  check("invalidate_bearer_token", c:invalidate_bearer_token() == true, "failed")

  -- faults: 429 with a reset honoured and capped, 5xx retried, reset, invalid JSON
  local reset_at = os.time() + 3
  control("POST", "/_emulator/faults", { method = "GET", path = "/webhooks%.json$", count = 1, status = 429,
    headers = { ["x-rate-limit-reset"] = tostring(reset_at) } })
  sleeps = {}
  local list, res = c:webhooks()
  check("429 then success", list ~= nil and res.attempts == 2, res)
  check("429 wait honours the reset", sleeps[1] and sleeps[1] >= 1 and sleeps[1] <= 5, sleeps[1])
  control("POST", "/_emulator/faults", { method = "GET", path = "/webhooks%.json$", count = 5, status = 429,
    headers = { ["x-rate-limit-reset"] = tostring(os.time() + 3600) } })
  local _, rl = c:webhooks()
  check("429 past max_wait returns at once", rl and rl.kind == "rate_limit" and rl.attempts == 1, rl)
  control("DELETE", "/_emulator/faults")
  control("POST", "/_emulator/faults", { method = "GET", path = "/webhooks%.json$", count = 5, status = 503 })
  local _, e5 = c:webhooks()
  check("5xx retried then surfaced", e5 and e5.status == 503 and e5.attempts == 3, e5)
  control("DELETE", "/_emulator/faults")
  control("POST", "/_emulator/faults", { method = "GET", path = "/count%.json$", count = 10, action = "reset" })
  local _, en = c:subscription_count()
  check("connection reset -> network", en and en.kind == "network", en)
  control("DELETE", "/_emulator/faults")
  control("POST", "/_emulator/faults", { method = "GET", path = "/count%.json$", count = 1, action = "invalid_json" })
  local _, ed = c:subscription_count()
  check("invalid JSON -> decode", ed and ed.kind == "decode", ed)
  control("DELETE", "/_emulator/faults")

  -- a workflow inside nginx runs on light threads
  local wh = assert(c:register_webhook(hook_url .. "/flow"))
  local users = {}
  for i = 1, 20 do users[i] = user(i) end
  local report = c:sync_subscriptions(wh.id, users, { concurrency = 8 })
  check("sync_subscriptions inside nginx", report and #report.added == 20 and #report.failed == 0,
    report and cjson.encode(report.failed))
  local again = c:sync_subscriptions(wh.id, users)
  check("sync_subscriptions re-run keeps all", again and #again.kept == 20 and #again.added == 0, again)
  local td = c:teardown(wh.id)
  check("teardown inside nginx", td and #td.removed == 20 and td.webhook_deleted, td and cjson.encode(td.failed))

  return { checks = checks, failures = failures, transport = transport }
end
