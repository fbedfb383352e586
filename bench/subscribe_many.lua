-- 5,000 subscriptions against the emulator with 20 ms added latency per
-- request: concurrent subscribe_many (curl_multi, 16 in flight) against the
-- same calls made one after another. The sequential rate is measured on a
-- sample (300 calls by default) and extrapolated to 5,000: it says so.
--   lua5.4 bench/subscribe_many.lua [N] [SAMPLE] [CONCURRENCY]
local here = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "."
local root = here .. "/.."
local interp = rawget(_G, "jit") and "luajit" or "lua5.4"
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = root .. "/build/" .. interp .. "/?.so;" .. package.cpath

local aa = require "account_activity"
local core = require "account_activity.core"
local emulator = require "account_activity.emulator"
local cli = require "account_activity.cli"

local N = tonumber(arg[1]) or 5000
local SAMPLE = tonumber(arg[2]) or 300
local CONC = tonumber(arg[3]) or 16
local LATENCY_MS = 20

local emu = assert(emulator.start { config = { users_count = N + SAMPLE, latency_ms = LATENCY_MS } })
local file = os.tmpname()
local ep
local ok, err = pcall(function()
  ep = assert(cli.start_endpoint { secret = emu.config.app.consumer_secret, file = file })
  local cfg = emu.config
  local client = aa.new {
    consumer_key = cfg.app.consumer_key, consumer_secret = cfg.app.consumer_secret,
    access_token = cfg.app.owner.access_token, access_token_secret = cfg.app.owner.access_token_secret,
    bearer_token = cfg.app.bearer_token, base_url = emu.url,
  }
  local wh = assert(client:ensure_webhook(ep.hook_url))
  local users = {}
  for i = 1, N do users[i] = cfg.users[i] end

  -- warm-up: connections, code paths
  client:subscribe(wh.id, cfg.users[N + 1])

  local t0 = core.now()
  local r = client:subscribe_many(wh.id, users, { concurrency = CONC, check = false, progress = true })
  local t_conc = core.now() - t0
  assert(r.ok and #r.added == N, "subscribe_many failed: " .. #r.failed .. " failures")

  local t1 = core.now()
  local done = 0
  for i = N + 2, N + SAMPLE do
    assert(client:subscribe(wh.id, cfg.users[i]))
    done = done + 1
  end
  local t_sample = core.now() - t1
  local t_seq = t_sample / done * N
  local ideal = N * LATENCY_MS / 1000 / CONC

  print(string.format("subscribe %d users, %d ms added latency per request, %s", N, LATENCY_MS, interp))
  print(string.format("  concurrent subscribe_many (%d in flight): %6.2f s  %7.0f/s", CONC, t_conc, N / t_conc))
  print(string.format("  one after another: %d calls in %.2f s -> %.0f/s; extrapolated to %d: %6.2f s",
    done, t_sample, done / t_sample, N, t_seq))
  print(string.format("  speed-up: %.1fx (target >= 12x)", t_seq / t_conc))
  print(string.format("  ideal %d x %d ms / %d = %.2f s; ours is %.2fx the ideal (target <= 1.5x)",
    N, LATENCY_MS, CONC, ideal, t_conc / ideal))
  -- machine-readable lines for bench/run's summary (rates: higher is better)
  print(("@@ subscribe_many %d users, +%d ms, %d in flight|%.1f|sequential calls (extrapolated)|%.1f|subs/s|%.2fx|>= 12x")
    :format(N, LATENCY_MS, CONC, N / t_conc, N / t_seq, t_seq / t_conc))
  print(("@@ subscribe_many %d users, +%d ms, %d in flight|%.1f|ideal %d x %d ms / %d|%.1f|subs/s|%.2fx|>= 0.67x (within 1.5x)")
    :format(N, LATENCY_MS, CONC, N / t_conc, N, LATENCY_MS, CONC, N / ideal, ideal / t_conc))
end)
if ep then ep:stop() end
emu:stop()
os.remove(file)
if not ok then io.stderr:write(tostring(err), "\n") os.exit(1) end
