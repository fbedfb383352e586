-- Docs that cannot drift: every public function has its one-line doc in
-- docs.lua (what aa.help prints), and every doc names something that exists.
local aa = require "account_activity"
local core = require "account_activity.core"
local docs = require "account_activity.docs"
local endpoints = require "account_activity.endpoints"

local function public(mod)
  local names = {}
  for k, v in pairs(mod) do
    if type(v) == "function" and type(k) == "string" and k:sub(1, 1) ~= "_" then names[#names + 1] = k end
  end
  table.sort(names)
  return names
end

describe("aa.help", function()
  it("documents every function of the module table", function()
    for _, name in ipairs(public(aa)) do
      assert.is_string(docs.text(name), "aa." .. name .. " has no doc line")
    end
  end)

  it("documents every client method of every flavour", function()
    for _, name in ipairs(endpoints.METHODS) do
      assert.is_string(docs.text(name), "client:" .. name .. " has no doc line")
    end
    for _, name in ipairs { "request", "close", "credentials" } do
      assert.is_string(docs.text(name), "client:" .. name .. " has no doc line")
    end
  end)

  it("documents the workflows and the X Activity API methods", function()
    local undocumented_helpers = { user_id_of = true, parse_time = true, crc_check = true, replay_last = true,
      check_users = true, user_problem = true }
    for _, modname in ipairs { "account_activity.workflows", "account_activity.activity", "account_activity.oauth2" } do
      for _, name in ipairs(public(require(modname))) do
        if not undocumented_helpers[name] then
          assert.is_string(docs.text(name), modname .. "." .. name .. " has no doc line")
        end
      end
    end
  end)

  it("documents every function of the C core and every Session method", function()
    for _, name in ipairs(public(core)) do
      assert.is_string(docs.text("core." .. name), "core." .. name .. " has no doc line")
    end
    local s = core.session()
    for _, name in ipairs { "request", "perform", "stream", "close" } do
      assert.is_function(s[name])
      assert.is_string(docs.text("session:" .. name), "session:" .. name .. " has no doc line")
    end
  end)

  it("names only what exists", function()
    local s = core.session()
    for _, e in ipairs(docs.entries) do
      local key = e[1]
      local ok
      if key:match("^core%.") then ok = core[key:sub(6)] ~= nil
      elseif key:match("^session:") then ok = s[key:sub(9)] ~= nil
      elseif key == "serve" then ok = require("account_activity.nginx").serve ~= nil
      elseif key:match("^redis%.") then ok = require("account_activity.redis")[key:sub(7)] ~= nil
      elseif key:match("^token_store%.") then ok = type(aa.token_store[key:sub(13)]) == "function"
      else
        local c = aa.new { consumer_key = "k", consumer_secret = "s" }
        ok = aa[key] ~= nil or c[key] ~= nil
      end
      assert.is_true(ok, key .. " is documented but does not exist")
    end
  end)
end)
