--- Many client calls at once, for the jobs (workflows.lua): a scheduler on
-- curl_multi (every task a coroutine whose requests go out together, rate
-- limits learnt from the answers and shared by all tasks), light threads
-- inside nginx, or one after another with a transport function.
--
-- A task is fn(client) -> ...; it runs against its own view of the client
-- (M.view): every field and method reads through to the client, writes go
-- to the client, and only send/sleep are the scheduler's. The client is
-- never modified while a batch runs.
local args = require "account_activity.args"
local errors = require "account_activity.errors"
local runtime = require "account_activity.runtime"

local argerror, show = args.argerror, args.show

local M = {}

local VIEW_CLIENT = {} -- the key of a view's client
local VIEW_MT = {
  __name = "account_activity.client (batch task view)",
  __index = function(v, k) return rawget(v, VIEW_CLIENT)[k] end,
  __newindex = function(v, k, val) rawget(v, VIEW_CLIENT)[k] = val end,
  __tostring = function(v) return tostring(rawget(v, VIEW_CLIENT)) end,
}

args.client_classes[VIEW_MT] = true

--- view(client, own) -> a table that is `client` but for the fields in `own`.
function M.view(client, own)
  local v = { [VIEW_CLIENT] = client }
  for k, val in pairs(own) do v[k] = val end
  return setmetatable(v, VIEW_MT)
end

--- client_of(v) -> the client a view stands for, or nil for anything else.
function M.client_of(v)
  if type(v) == "table" and getmetatable(v) == VIEW_MT then return rawget(v, VIEW_CLIENT) end
  return nil
end

local function pack(...) return { n = select("#", ...), ... } end
local unpack = table.unpack or unpack

local YIELD_SEND, YIELD_SLEEP = {}, {}

-- Rate-limit state is kept per endpoint, not per URL: ids are folded.
local function rate_key(req)
  local path = req.url:gsub("^%a+://[^/]*", ""):gsub("[?#].*$", "")
  return req.method .. " " .. path:gsub("%d+", "{id}")
end

local function raised(msg)
  return errors.make("argument", (tostring(msg):gsub("[\r\n].*", "")), nil)
end

-- curl_multi: every task runs in a coroutine whose send() yields its request;
-- the requests of all live tasks go out together through Session:perform,
-- `concurrency` in flight. sleep() yields too, so a task waiting for a
-- rate-limit reset parks instead of blocking the others.
local function batch_multi(self, tasks, conc, finish, on_wait)
  local n = #tasks
  local window = math.max(conc * 16, 64)
  local orig_send, orig_sleep = self.send, self.sleep
  local live, nlive, next_i = {}, 0, 1
  local pending, sleepers, limits = {}, {}, {}

  -- Each task sees the client through its own view, whose send() and
  -- sleep() yield to this scheduler; the client itself is left alone, so
  -- code outside the batch (another light thread, a token refresh that must
  -- go straight out: _unbatched_send) keeps the real ones.
  local function yielding_send(req)
    local co = coroutine.running()
    if co and live[co] then return coroutine.yield(YIELD_SEND, req) end
    return orig_send(req)
  end
  local function yielding_sleep(s)
    local co = coroutine.running()
    if co and live[co] then return coroutine.yield(YIELD_SLEEP, s) end
    return orig_sleep(s)
  end
  local view = M.view(self, { send = yielding_send, sleep = yielding_sleep,
    _unbatched_send = orig_send, _unbatched_sleep = orig_sleep })

  local function step(co, ...)
    local r = pack(coroutine.resume(co, ...))
    if coroutine.status(co) == "dead" then
      local i = live[co]
      live[co], nlive = nil, nlive - 1
      if r[1] then finish(i, pack(unpack(r, 2, r.n))) else finish(i, { n = 2, nil, raised(r[2]) }) end
    elseif r[2] == YIELD_SEND then
      pending[#pending + 1] = { co = co, req = r[3], key = rate_key(r[3]) }
    elseif r[2] == YIELD_SLEEP then
      sleepers[#sleepers + 1] = { co = co, wake = self.clock() + (tonumber(r[3]) or 0) }
    else
      local i = live[co]
      live[co], nlive = nil, nlive - 1
      finish(i, { n = 2, nil, raised("a batch task yielded on its own") })
    end
  end

  -- What the responses say about the endpoint's window.
  local function note(key, res, now)
    local h = res.headers or {}
    local rl = errors.rate_limit(h)
    local remaining, reset = rl.remaining, rl.reset
    local st = limits[key] or {}
    limits[key] = st
    st.seen = true
    st.limit = rl.limit or st.limit
    if not remaining and not st.limit then st.unlimited = true end
    if reset and reset > now then
      if st.reset ~= reset then st.reset, st.remaining = reset, remaining
      elseif remaining and (not st.remaining or remaining < st.remaining) then st.remaining = remaining end
    end
    if res.status == 429 then
      local wait = errors.header_number(h, "retry-after", "max") or (reset and reset - now + 1)
      if wait and wait <= self.max_wait then st.pause_until = math.max(st.pause_until or 0, now + wait) end
    end
  end

  local function wake_due(t)
    local due, rest = {}, {}
    for _, s in ipairs(sleepers) do
      if s.wake <= t then due[#due + 1] = s else rest[#rest + 1] = s end
    end
    sleepers = rest
    for _, s in ipairs(due) do step(s.co) end
  end

  local ok, err = pcall(function()
    while true do
      while nlive < window and next_i <= n do
        local fn = tasks[next_i]
        local co = coroutine.create(function() return fn(view) end)
        live[co], nlive = next_i, nlive + 1
        next_i = next_i + 1
        step(co)
      end
      if #pending == 0 and #sleepers == 0 then break end
      local now = self.clock()
      local go, hold, used = {}, {}, {}
      for _, p in ipairs(pending) do
        local st = limits[p.key]
        if not st then
          st = {}
          limits[p.key] = st
        end
        local allow = true
        local spent = used[p.key] or 0
        if st.pause_until and st.pause_until > now then
          allow = false
        elseif st.reset and st.reset > now and st.remaining then
          -- Spend no more than the window has left; wait for its reset when that is allowed.
          if spent >= st.remaining and st.reset - now + 1 <= self.max_wait then
            st.pause_until = st.reset + 1
            allow = false
          end
        elseif not st.unlimited then
          -- Limits not known yet (first contact) or a new window not yet
          -- seen: one wave, or one window's worth, then learn from the answers.
          allow = spent < math.max(1, st.seen and st.limit or conc)
        end
        if allow then
          used[p.key] = (used[p.key] or 0) + 1
          go[#go + 1] = p
        else
          hold[#hold + 1] = p
        end
      end
      pending = hold
      if #go == 0 then
        local wake = math.huge
        for _, s in ipairs(sleepers) do wake = math.min(wake, s.wake) end
        for _, p in ipairs(pending) do wake = math.min(wake, limits[p.key].pause_until or now) end
        local wait = math.max(0, wake - now)
        -- Every task is parked on a rate limit: say so instead of freezing.
        if on_wait and wait >= 1 and wait < math.huge then on_wait(wait) end
        orig_sleep(wait)
        -- Time as the sleep function sees it (a test's fake sleep returns at once).
        for _, st in pairs(limits) do
          if st.pause_until and st.pause_until <= wake then st.pause_until, st.remaining = nil, nil end
        end
        wake_due(wake)
      else
        local reqs = {}
        for i, p in ipairs(go) do reqs[i] = p.req end
        local results = self.transport:perform(reqs, { concurrency = math.min(conc, #reqs) })
        local t = self.clock()
        for i, p in ipairs(go) do
          local r = results[i] or {}
          if r.res then note(p.key, r.res, t) end
          step(p.co, r.res, r.err)
        end
        wake_due(self.clock())
      end
    end
  end)
  if not ok then error(err, 0) end
end

--- Run `tasks` (functions fn(client) -> ...) concurrently; returns their
-- results in input order, each packed as { n = count, ... }. A task that
-- raises gives { n = 2, nil, err(kind = "argument") } and stops nothing else.
-- opts: concurrency (16), on_done = fn(i, packed, done, total), on_wait =
-- fn(seconds) when every task is parked on a rate limit.
-- libcurl: Session:perform (curl_multi); inside nginx: ngx.thread.spawn;
-- a user transport function: one after another.
function M.run(self, tasks, opts)
  opts = opts or {}
  local conc = opts.concurrency or 16
  if type(conc) ~= "number" or conc < 1 or conc ~= math.floor(conc) or conc > 1024 then
    argerror("_batch", "opts.concurrency", "expected an integer from 1 to 1024, got " .. show(conc), 2)
  end
  local n, results, done = #tasks, {}, 0
  local function finish(i, packed)
    results[i] = packed
    done = done + 1
    if opts.on_done then opts.on_done(i, packed, done, n) end
  end
  local function run_one(i)
    local r = pack(pcall(tasks[i], self))
    if r[1] then finish(i, pack(unpack(r, 2, r.n))) else finish(i, { n = 2, nil, raised(r[2]) }) end
  end
  local ngx = rawget(_G, "ngx")
  if runtime.cosocket_phase() and type(ngx.thread) == "table" and conc > 1 and n > 1 then
    local next_i = 0
    local function worker()
      while next_i < n do
        next_i = next_i + 1
        run_one(next_i)
      end
    end
    local threads = {}
    for k = 1, math.min(conc, n) do
      local th = ngx.thread.spawn(worker)
      if th then threads[k] = th end
    end
    for _, th in ipairs(threads) do ngx.thread.wait(th) end
    worker()
  elseif self.transport and type(self.transport.perform) == "function" and n > 1
      and not self._batching then
    self._batching = true
    local ok, err = pcall(batch_multi, self, tasks, conc, finish, opts.on_wait)
    self._batching = nil
    if not ok then error(err, 0) end
  else
    for i = 1, n do run_one(i) end
  end
  return results
end


return M
