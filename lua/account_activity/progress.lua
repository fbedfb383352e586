--- Progress reporting for the workflows.
--
--   local progress = require "account_activity.progress"
--   local tick = progress.new(opts.progress, "subscribe")   -- nil: report nothing
--   if tick then tick(done, total) end
--
-- `opts.progress = true` draws a one-line bar on stderr (count, rate, ETA)
-- only when stderr is a terminal, so logs and pipes never fill with
-- carriage returns; a function receives (done, total, info) instead, where
-- info, when given, is { waiting = seconds } for a wait on a rate limit.
local M = {}

local tty -- nil: not asked yet

--- Is stderr a terminal? Asked once per process (AA_PROGRESS=1/0 overrides).
function M.stderr_is_tty()
  local force = os.getenv("AA_PROGRESS")
  if force == "1" then return true end
  if force == "0" then return false end
  if tty == nil then
    local a, _, c = os.execute("test -t 2")
    if type(a) == "number" then tty = (a == 0) else tty = (a == true and (c == nil or c == 0)) end
  end
  return tty
end

local function now()
  local ok, core = pcall(require, "account_activity.core")
  if ok and type(core) == "table" and core.now then return core.now() end
  return os.time()
end

local function duration(s)
  if s ~= s or s == math.huge then return "?" end
  s = math.floor(s + 0.5)
  if s < 60 then return s .. "s" end
  local floor = math.floor
  if s < 3600 then return string.format("%dm%02ds", floor(s / 60), s % 60) end
  return string.format("%dh%02dm", floor(s / 3600), floor((s % 3600) / 60))
end

M.duration = duration

--- A bar writer: function(done, total, info) drawing on `out` (default io.stderr).
-- info.waiting = seconds: the job is parked on a rate limit, and says so.
function M.bar(label, out, width)
  out = out or io.stderr
  width = width or 30
  local t0, last, finished, shown = now(), -1, false, 0
  return function(done, total, info)
    if finished then return end
    local t = now()
    local waiting = type(info) == "table" and info.waiting
    -- Redraw at most ten times a second, and always at the end or for a wait.
    if done < total and t - last < 0.1 and not waiting then return end
    last = t
    local frac = total > 0 and done / total or 1
    local fill = math.floor(frac * width + 0.5)
    local elapsed = t - t0
    local rate = elapsed > 0 and done / elapsed or 0
    local eta = rate > 0 and (total - done) / rate or math.huge
    local tail
    if waiting then
      tail = "waiting " .. (waiting < 60 and string.format("%d s", math.floor(waiting + 0.5)) or M.duration(waiting))
        .. " for the rate limit"
    else
      tail = string.format("%5.1f/s ETA %s", rate, done >= total and "0s" or M.duration(eta))
    end
    local line = string.format("%s [%s%s] %d/%d %s", label or "",
      string.rep("#", fill), string.rep(".", width - fill), done, total, tail)
    -- A shorter line than the last would leave its tail on screen ("ETA 0s  s").
    local pad = shown > #line and string.rep(" ", shown - #line) or ""
    shown = #line
    out:write("\r", line, pad)
    if done >= total and not waiting then
      out:write("\n")
      finished = true
    end
    if out.flush then out:flush() end
  end
end

--- new(spec, label) -> function(done, total) | nil.
-- spec: true (a bar when stderr is a terminal), a function, or nil/false.
function M.new(spec, label)
  if spec == nil or spec == false then return nil end
  if type(spec) == "function" then return spec end
  if spec == true then
    if not M.stderr_is_tty() then return nil end
    return M.bar(label)
  end
  error("bad argument 'opts.progress' (true, false or a function(done, total) expected, got "
    .. type(spec) .. ")", 3)
end

return M
