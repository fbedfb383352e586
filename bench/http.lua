#!/usr/bin/env lua5.4
--- HTTP benchmark (issue: foundation). 2000 sequential GETs through one
-- Session to a local nginx (`return 200` with a small JSON body, keep-alive)
-- against a bare C libcurl loop on one easy handle and python's http.client,
-- measured in this run (targets: >= 80% of bare C, >= 1.3x http.client); and
-- `perform` at 32 in flight against a location that adds 20 ms (target: >= 90%
-- of the ideal 32 / 20 ms = 1600 requests/s).
local lib = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/lib.lua")
local core = require "account_activity.core"
local nginx_process = require "account_activity.nginx_process"

local N = tonumber(arg and arg[1]) or 2000
local ROUNDS = tonumber(arg and arg[2]) or 5
-- The machine is shared and small: nginx's worker gets CPU 1 and the
-- clients CPU 0 (taskset), and each client runs ROUNDS times, interleaved
-- with the others; the best round of each counts.
local server = assert(nginx_process.start { main = "worker_cpu_affinity 10;", http = function(ports)
  return ([[
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:%d;
    location /json { default_type application/json; return 200 '{"ok":true,"id":"1234567890"}'; }
    location /slow { content_by_lua_block { ngx.sleep(0.02) ngx.print('{"ok":true}') } }
  }]]):format(ports[1])
end })
local stat = io.open("/proc/self/stat")
os.execute("taskset -p -c 0 " .. stat:read("*n") .. " >/dev/null 2>&1")
stat:close()

local url = server.url .. "/json"
local s = core.session()
local req = { method = "GET", url = url }
for _ = 1, 50 do assert(s:request(req)) end
local bin = lib.build_c("http_floor", "libcurl")
local ours, bare, py = 0, nil, nil
for _ = 1, ROUNDS do
  local t0 = core.now()
  for _ = 1, N do
    local res = s:request(req)
    assert(res and res.status == 200)
  end
  ours = math.max(ours, N / (core.now() - t0))
  if bin then
    local b = tonumber((lib.capture(("taskset -c 0 %s %s %d"):format(bin, url, N))))
    if b then bare = math.max(bare or 0, b) end
  end
  local p = tonumber((lib.capture(("taskset -c 0 /usr/bin/python3 %s/bench/http_client.py %d %d"):format(lib.root, server.port, N))))
  if p then py = math.max(py or 0, p) end
end

-- 32 in flight, 20 ms each
local reqs = {}
for i = 1, 1600 do reqs[i] = { method = "GET", url = server.url .. "/slow?i=" .. i } end
s:perform({ reqs[1], reqs[2] }, { concurrency = 32 })
local t0 = core.now()
local results = s:perform(reqs, { concurrency = 32 })
local batch_rate = #reqs / (core.now() - t0)
for i = 1, #results do assert(results[i].res and results[i].res.status == 200) end
local ideal = 32 / 0.020
server:stop()

local rows = {
  { ("Session:request, %d sequential GETs, keep-alive (best of %d)"):format(N, ROUNDS), ours, "req/s" },
  { "bare C libcurl loop, one easy handle", bare or "unavailable", "req/s", "ours at " .. lib.ratio(ours, bare) .. " (target >= 0.80x)" },
  { "python http.client, one connection", py or "unavailable", "req/s", "ours: " .. lib.ratio(ours, py) .. " (target >= 1.3x)" },
  { "Session:perform, 32 in flight, +20 ms server", batch_rate, "req/s", ("%.0f%% of ideal %.0f/s (target >= 90%%)"):format(100 * batch_rate / ideal, ideal) },
}
lib.result("http: Session:request sequential", ours, "bare C libcurl", bare, "req/s", ">= 0.8x")
lib.result("http: Session:request sequential", ours, "python http.client", py, "req/s", ">= 1.3x")
lib.result("http: Session:perform 32 x 20 ms", batch_rate, "ideal 32/20ms", ideal, "req/s", ">= 0.9x")
lib.print_table("HTTP through core.session against local nginx", rows)
return { rows = rows }
