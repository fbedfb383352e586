-- The house as DESIGN.md draws it: who may require whom among
-- lua/account_activity/**. Every require counts, lazy ones inside functions
-- too (a lazy require only hides a circle), and so do the module names the
-- client loads by string (its extensions).
local ROOT = "lua/account_activity"

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function modname(path)
  return (path:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", "."))
end

-- Source without comments and long strings, so prose naming a module is no edge.
local function code_of(src)
  src = src:gsub("%-%-%[(=*)%[.-%]%1%]", "")
  src = src:gsub("%-%-[^\n]*", "")
  return src
end

local function graph()
  local edges, mods = {}, {}
  local p = io.popen("find " .. ROOT .. " -name '*.lua' | sort")
  for path in p:lines() do
    local m = modname(path)
    mods[#mods + 1] = m
    local code = code_of(read(path))
    local deps = {}
    for dep in code:gmatch("require%s*%(?%s*[\"']([%w_%.]+)[\"']") do deps[dep] = true end
    -- modules loaded by name from a list (client.lua's EXTENSIONS)
    local list = code:match("EXTENSIONS%s*=%s*(%b{})")
    if list then for dep in list:gmatch("[\"']([%w_%.]+)[\"']") do deps[dep] = true end end
    deps[m], deps["account_activity.core"] = nil, nil
    edges[m] = {}
    for dep in pairs(deps) do
      if dep:match("^account_activity") then edges[m][#edges[m] + 1] = dep end
    end
    table.sort(edges[m])
  end
  p:close()
  return edges, mods
end

-- Groups of modules that require each other, directly or through others
-- (the strongly connected components with more than one member), each as
-- "a <-> b <-> c" in sorted order.
local function circles(edges)
  local reach = {}
  local function reachable(from)
    if reach[from] then return reach[from] end
    local seen, stack = {}, { from }
    while #stack > 0 do
      local m = table.remove(stack)
      for _, d in ipairs(edges[m] or {}) do
        if not seen[d] then seen[d] = true; stack[#stack + 1] = d end
      end
    end
    reach[from] = seen
    return seen
  end
  local names = {}
  for m in pairs(edges) do names[#names + 1] = m end
  table.sort(names)
  local placed, out = {}, {}
  for _, a in ipairs(names) do
    if not placed[a] and reachable(a)[a] then
      local group = {}
      for _, b in ipairs(names) do
        if reachable(a)[b] and reachable(b)[a] then group[#group + 1] = b; placed[b] = true end
      end
      out[#out + 1] = table.concat(group, " <-> ")
    end
  end
  table.sort(out)
  return out
end

-- Circles allowed: none. (Kept as a table so the spec can name one that
-- is gone but still listed, should one ever have to be tolerated again.)
local KNOWN = {}

local HIGH = { "account_activity", "account_activity.client", "account_activity.workflows",
  "account_activity.activity", "account_activity.stream", "account_activity.cli" }

-- module (or prefix ending in ".") -> the modules it must never require
local RULES = {
  { "account_activity.emulator.", HIGH, "the emulator is a client of nothing but the core and crc.lua" },
  { "account_activity.args", HIGH, "a lower layer" },
  { "account_activity.errors", HIGH, "a lower layer" },
  { "account_activity.runtime", HIGH, "a lower layer" },
  { "account_activity.pretty", HIGH, "a lower layer" },
  { "account_activity.crc", HIGH, "a lower layer" },
  { "account_activity.events", HIGH, "a lower layer" },
  { "account_activity.endpoints", HIGH, "data" },
  { "account_activity.transport.", HIGH, "a lower layer" },
  { "account_activity.webhook", HIGH, "the receiving side never loads the client" },
  { "account_activity.nginx", HIGH, "the receiving side never loads the client" },
}

describe("the house", function()
  local edges = graph()

  it("has no require circle but the ones still listed for removal", function()
    local found, new = circles(edges), {}
    local present = {}
    for _, c in ipairs(found) do
      present[c] = true
      if not KNOWN[c] then new[#new + 1] = c end
    end
    assert.are.same({}, new)
    for c in pairs(KNOWN) do
      assert.is_true(present[c] == true, c .. " is gone: take it off the KNOWN list")
    end
  end)

  it("never has a lower layer require a higher one", function()
    local bad = {}
    for m, deps in pairs(edges) do
      for _, rule in ipairs(RULES) do
        local who = rule[1]
        local applies = who:sub(-1) == "." and m:sub(1, #who) == who or m == who
        if applies then
          for _, d in ipairs(deps) do
            for _, banned in ipairs(rule[2]) do
              if d == banned then bad[#bad + 1] = m .. " requires " .. d .. " (" .. rule[3] .. ")" end
            end
          end
        end
      end
    end
    table.sort(bad)
    assert.are.same({}, bad)
  end)

  it("has both transports implement the written contract (transport/README.md)", function()
    local curl = require("account_activity.transport.curl").new {}
    local ngx_t = require("account_activity.transport.ngx").new {}
    for _, m in ipairs { "request", "perform", "stream", "close" } do
      assert.is_function(curl[m], "transport.curl lacks " .. m)
    end
    for _, m in ipairs { "request", "stream", "close" } do
      assert.is_function(ngx_t[m], "transport.ngx lacks " .. m)
    end
    -- the stream asks the transport: no HTTP client of its own
    local src = code_of(read("lua/account_activity/stream.lua"))
    assert.is_nil(src:find("ngx.socket", 1, true))
    assert.is_nil(src:find("session:stream", 1, true))
  end)

  it("has the nginx adapter use the webhook's public surface only", function()
    local src = code_of(read("lua/account_activity/nginx.lua"))
    assert.is_nil(src:match("wh[%.:]_[%w_]+"), "nginx.lua reads a webhook private")
    assert.is_nil(src:match("webhook%._[%w_]+"), "nginx.lua reads a webhook module private")
  end)

  it("sees the requires it is meant to see (the spec can fail)", function()
    local function has(m, d)
      for _, x in ipairs(edges[m] or {}) do if x == d then return true end end
      return false
    end
    assert.is_true(has("account_activity.webhook", "account_activity.crc"))
    assert.is_true(has("account_activity.client", "account_activity.workflows")) -- by name, from EXTENSIONS
    assert.is_true(has("account_activity.activity", "account_activity.args")) -- a module-level require
    assert.are.same({ "x <-> y <-> z" }, circles { x = { "y" }, y = { "z" }, z = { "x" }, w = { "x" } })
  end)
end)
