--- Small helpers shared by the benchmarks: timing, running peers, the table.
local core = require "account_activity.core"
local M = {}

M.root = (debug.getinfo(1, "S").source:match("^@(.*)/bench/lib%.lua$")) or "."

--- Calls fn repeatedly for about `seconds`, returns calls per second.
function M.rate(fn, seconds, batch)
  batch = batch or 1000
  for _ = 1, batch do fn() end -- warm up (and JIT)
  local n, t0 = 0, core.now()
  local elapsed
  repeat
    for _ = 1, batch do fn() end
    n = n + batch
    elapsed = core.now() - t0
  until elapsed >= (seconds or 2)
  return n / elapsed
end

--- Runs a shell command, returns its stdout (trimmed) or nil, reason.
function M.capture(cmd)
  local p = io.popen(cmd .. " 2>/dev/null")
  if not p then return nil, "cannot run " .. cmd end
  local out = p:read("*a") or ""
  local ok = p:close()
  out = out:gsub("%s+$", "")
  if not ok or out == "" then return nil, "failed: " .. cmd end
  return out
end

--- Compiles bench/c/NAME.c into /tmp and returns the binary path.
function M.build_c(name, libs)
  local bin = "/tmp/aa-bench-" .. name
  local ok = os.execute(("cc -O2 -o %s %s/bench/c/%s.c $(pkg-config --cflags --libs %s) 2>&1"):format(
    bin, M.root, name, libs))
  if ok == true or ok == 0 then return bin end
  return nil, "could not compile bench/c/" .. name .. ".c"
end

--- Makes sure an npm package is installed under bench/node (the npm registry is
-- reachable here; node_modules is not committed).
function M.npm(pkg)
  local dir = M.root .. "/bench/node"
  local f = io.open(dir .. "/node_modules/" .. pkg .. "/package.json")
  if f then f:close() return dir end
  local ok = os.execute(("cd %s && npm install --no-audit --no-fund --silent >/dev/null 2>&1"):format(dir))
  if ok == true or ok == 0 then return dir end
  return nil, "npm install failed in bench/node"
end

--- Prints rows { name, value, unit, note } as an aligned table.
function M.print_table(title, rows)
  print(("\n%s"):format(title))
  print(("%-52s %20s  %s"):format("measurement", "value", "note"))
  print(("-"):rep(100))
  for _, r in ipairs(rows) do
    local v = type(r[2]) == "number" and ("%.1f %s"):format(r[2], r[3] or "") or tostring(r[2])
    print(("%-52s %20s  %s"):format(r[1], v, r[4] or ""))
  end
end

--- One machine-readable line for bench/run's summary table:
-- "@@ measurement|ours|peer|peer value|unit|ratio|target".
function M.result(measurement, ours, peer, peer_value, unit, target)
  local function num(v) return type(v) == "number" and ("%.1f"):format(v) or "n/a" end
  print(("@@ %s|%s|%s|%s|%s|%s|%s"):format(measurement, num(ours), peer or "", num(peer_value), unit or "",
    M.ratio(ours, peer_value), target or ""))
end

function M.ratio(a, b)
  if type(a) ~= "number" or type(b) ~= "number" or b == 0 then return "n/a" end
  return ("%.2fx"):format(a / b)
end

return M
