-- Shared helpers for the hardening specs (faults matrix, bad input, secrets):
-- an emulator with a CRC-answering hook, clients with a fake clock, fault
-- injection, a normalised state snapshot, and a leak collector that names
-- where a secret showed up without printing it.
local aa = require "account_activity"
local emulator = require "account_activity.emulator"
local hook_server = require "client_hook"
local core = require "account_activity.core"
local cjson = require "cjson.safe"

local H = {}

H.METHODS = {
  "register_webhook", "webhooks", "webhook", "validate_webhook", "delete_webhook",
  "subscribe", "is_subscribed", "subscriptions", "unsubscribe_user", "unsubscribe_id",
  "subscription_count", "replay", "bearer_token", "invalidate_bearer_token",
}

--- An emulator (config table merged over the defaults) and a hook that
-- answers its CRCs with the app's consumer secret.
function H.start(config)
  local emu, err = emulator.start { config = config }
  assert(emu, err)
  local hook, herr = hook_server.start(emu)
  if not hook then emu:stop() end
  assert(hook, herr)
  local env = { emu = emu, hook = hook, cfg = emu.config }
  function env:stop()
    if self.hook then self.hook:stop() end
    if self.emu then self.emu:stop() end
  end
  function env:control(method, path, body)
    local r, status = self.emu:control(method, path, body)
    assert(r ~= nil and status == 200, "control " .. method .. " " .. path .. ": " .. tostring(status))
    return r
  end
  function env:reset() self:control("POST", "/_emulator/reset", {}) end
  function env:fault(f) self:control("POST", "/_emulator/faults", f) end
  function env:clear_faults() self:control("DELETE", "/_emulator/faults") end
  function env:log() return self.emu:log() or {} end
  function env:log_count() return #self:log() end
  function env:user(i)
    local u = self.cfg.users[i]
    return { user_id = u.user_id, access_token = u.access_token, access_token_secret = u.access_token_secret }
  end
  --- The state reduced to what a call changes: webhooks (url, valid,
  -- sorted subscriptions), replay job count per webhook url, bearer validity.
  function env:snapshot()
    local st = self:control("GET", "/_emulator/state")
    local url_of, hooks = {}, {}
    for _, w in ipairs(type(st.webhooks) == "table" and st.webhooks or {}) do
      url_of[w.id] = w.url
      local subs = {}
      for _, s in ipairs(type(w.subscriptions) == "table" and w.subscriptions or {}) do subs[#subs + 1] = s end
      table.sort(subs)
      hooks[#hooks + 1] = { url = w.url, valid = w.valid, subscriptions = subs }
    end
    table.sort(hooks, function(a, b) return a.url < b.url end)
    local jobs = {}
    for _, j in ipairs(type(st.replay_jobs) == "table" and st.replay_jobs or {}) do
      -- a job of a webhook gone with a reset is the emulator's timer
      -- finishing late (see faults_matrix_spec), not this case's doing
      local u = url_of[j.webhook_id]
      if u then jobs[u] = (jobs[u] or 0) + 1 end
    end
    return { webhooks = hooks, replay_jobs = jobs, bearer_valid = st.bearer_valid,
             subscriptions_count = st.subscriptions_count }
  end
  return env
end

--- A fake clock (epoch seconds, advanced by sleep) and a sleep that records.
function H.fake_time(start)
  local t = { now = start or os.time(), sleeps = {} }
  t.sleep = function(s)
    t.sleeps[#t.sleeps + 1] = s
    t.now = t.now + s
  end
  t.clock = function() return t.now end
  return t
end

--- A client for `env` (owner tokens; the app's bearer unless extra.bearer_token = false).
function H.client(env, api, extra)
  local app = env.cfg.app
  local opts = {
    consumer_key = app.consumer_key, consumer_secret = app.consumer_secret,
    access_token = app.owner.access_token, access_token_secret = app.owner.access_token_secret,
    bearer_token = app.bearer_token,
    base_url = env.emu.url, api = api or "enterprise",
    env_name = api == "premium" and "dev" or nil,
  }
  for k, v in pairs(extra or {}) do
    if v == false then opts[k] = nil else opts[k] = v end
  end
  return aa.new(opts)
end

--- Lua pattern for an endpoint's path (ids become %d+), anchored at the end.
function H.path_pattern(spec, env_name)
  local p = spec.path:gsub("{env_name}", env_name or "dev")
  p = p:gsub("[%%%.%-%+%*%?%[%]%^%$%(%)]", "%%%0")
  p = p:gsub("{[%w_]+}", "%%d+")
  return p .. "$"
end

--- pcall fn; it must raise a message naming `name` (a plain substring).
function H.raises(fn, name)
  local ok, msg = pcall(fn)
  if ok then return false, "did not raise" end
  msg = tostring(msg)
  if not msg:find(name, 1, true) then return false, "message does not name '" .. name .. "': " .. msg:sub(1, 200) end
  return true, msg
end

---------------------------------------------------------------------------
-- Leak collector
---------------------------------------------------------------------------

--- secrets: { label = value, ... }. Variants (percent-encoded, base64, and
-- the percent-encoding of the base64) are checked too.
local function needles_for(out, label, v)
  if type(v) ~= "string" or #v < 6 then return end
  out[#out + 1] = { label = label, v = v }
  local pe = core.percent_encode(v)
  if pe ~= v then out[#out + 1] = { label = label .. " (percent-encoded)", v = pe } end
  out[#out + 1] = { label = label .. " (base64)", v = core.base64_encode(v) }
  -- Inside a longer base64 text (Basic auth of "key:secret") the secret
  -- starts at one of three alignments; 12 bytes from each encode whole.
  for off = 0, 2 do
    if #v >= off + 12 then
      out[#out + 1] = { label = label .. " (base64, offset " .. off .. ")",
        v = core.base64_encode(v:sub(off + 1, off + 12)) }
    end
  end
end

function H.collector(secrets)
  local c = { items = {}, needles = {} }
  for label, v in pairs(secrets) do needles_for(c.needles, label, v) end
  function c:add_secret(label, v) needles_for(self.needles, label, v) end
  function c:add(where, s)
    if type(s) == "table" then s = cjson.encode(s) or tostring(s) end
    self.items[#self.items + 1] = { where = where, s = tostring(s) }
    return s
  end
  --- Leaks as lines "where: label at byte N", never the secret itself.
  function c:leaks()
    local out = {}
    for _, it in ipairs(self.items) do
      for _, n in ipairs(self.needles) do
        local at = it.s:find(n.v, 1, true)
        if at then out[#out + 1] = string.format("%s: %s at byte %d", it.where, n.label, at) end
      end
    end
    return out
  end
  function c:bytes()
    local n = 0
    for _, it in ipairs(self.items) do n = n + #it.s end
    return n
  end
  return c
end

--- A random printable token of n characters.
function H.token(prefix, n)
  local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
  local t = {}
  for i = 1, n do
    local k = math.random(1, #chars)
    t[i] = chars:sub(k, k)
  end
  return prefix .. table.concat(t)
end

return H
