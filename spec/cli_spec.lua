-- bin/account-activity against the emulator: every command family, exit
-- codes (0 / 1 API error / 2 usage), --json, --help, and no secret in any
-- output. The commands run as real processes under this spec's interpreter.
local emulator = require "account_activity.emulator"
local cli = require "account_activity.cli"
local cjson = require "cjson"

local INTERP = require "spec_lua"

local emu, ep, cfg, cfg_file, users_file, events_file
local outputs = {}

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

-- Run the CLI; returns status, stdout, stderr.
local function run(args, env)
  local out, err = os.tmpname(), os.tmpname()
  local cmd = (env or "") .. " " .. INTERP .. " bin/account-activity " .. args .. " >" .. out .. " 2>" .. err
  local a, _, c = os.execute(cmd)
  local status = type(a) == "number" and math.floor(a / 256) or c
  local o, e = read(out), read(err)
  os.remove(out)
  os.remove(err)
  outputs[#outputs + 1] = o .. e
  return status, o, e
end

local function with_config(args)
  return "--config " .. q(cfg_file) .. " --base-url " .. emu.url .. " " .. args
end

local function webhook_id()
  local st = emu:control("GET", "/_emulator/state")
  return st.webhooks[1] and st.webhooks[1].id
end

describe("account-activity CLI", function()
  lazy_setup(function()
    local err
    emu, err = emulator.start { config = { users_count = 12 } }
    assert(emu, err)
    cfg = emu.config
    cfg_file = os.tmpname()
    local f = io.open(cfg_file, "w")
    f:write(cjson.encode(cfg))
    f:close()
    users_file = os.tmpname()
    f = io.open(users_file, "w")
    local list = {}
    for i = 1, 8 do list[i] = cfg.users[i] end
    f:write(cjson.encode(list))
    f:close()
    events_file = os.tmpname()
    ep, err = cli.start_endpoint { secret = cfg.app.consumer_secret, file = events_file }
    assert(ep, err)
  end)

  lazy_teardown(function()
    if ep then ep:stop() end
    if emu then emu:stop() end
    for _, p in ipairs { cfg_file, users_file, events_file } do if p then os.remove(p) end end
  end)

  it("prints help for the program and every command (exit 0)", function()
    local st, out = run("--help")
    assert.are.equal(0, st)
    assert.matches("usage: account%-activity", out)
    for _, cmd in ipairs { "webhooks", "subs", "replay", "health", "crc", "events", "activity" } do
      local s, o = run(cmd .. " --help")
      assert.are.equal(0, s, cmd)
      assert.matches("usage: account%-activity " .. cmd, o)
    end
    local s, o = run("emulator --help")
    assert.are.equal(0, s)
    assert.matches("emulator", o)
  end)

  it("reaches the emulator with --config FILE alone (the README's first line)", function()
    -- the emulator's printed config names its URL; without it the CLI would go to X
    assert.are.equal(emu.url, cfg.base_url)
    local before = #emu:log()
    local st, out, err = run("--config " .. q(cfg_file) .. " webhooks list", "env -u TWITTER_API_BASE_URL")
    assert.are.equal(0, st, err)
    assert.is_string(out)
    local seen = false
    for i, e in ipairs(emu:log()) do
      if i > before and e.path == "/1.1/account_activity/webhooks.json" and e.method == "GET" then seen = true end
    end
    assert.is_true(seen)
  end)

  it("exits 2 on usage errors, with one line on stderr", function()
    for _, args in ipairs { "", "bogus", "webhooks", "webhooks frob", "subs list", "subs list abc",
                            "crc", "crc mysecret token", "--concurrency 0 subs count", "webhooks list --nope",
                            "--api v3 webhooks list", "--api premium webhooks list" } do
      local st, out, err = run(with_config(args))
      assert.are.equal(2, st, args)
      assert.are.equal("", out, args)
      local _, lines = err:gsub("\n", "")
      assert.are.equal(1, lines, args .. ": " .. err)
      assert.matches("^account%-activity: ", err)
    end
    -- no credentials at all
    local st, _, err = run("webhooks list", "env -u TWITTER_CONSUMER_KEY -u TWITTER_CONSUMER_SECRET")
    assert.are.equal(2, st)
    assert.matches("TWITTER_CONSUMER_KEY", err)
  end)

  it("manages webhooks: ensure (idempotent), list, validate, rm; API errors exit 1", function()
    local st, out = run(with_config("webhooks ensure " .. ep.hook_url))
    assert.are.equal(0, st)
    assert.matches("^registered %d+ ", out)
    local st2, out2 = run(with_config("webhooks ensure " .. ep.hook_url .. " --json"))
    assert.are.equal(0, st2)
    local j = cjson.decode(out2)
    assert.are.equal("reused", j.action)
    assert.are.equal(ep.hook_url, j.webhook.url)
    local st3, out3 = run(with_config("webhooks list"))
    assert.are.equal(0, st3)
    assert.matches("ID%s+URL%s+VALID", out3)
    assert.matches(j.webhook.id, out3, 1, true)
    local st4, out4 = run(with_config("webhooks list --json"))
    assert.are.equal(0, st4)
    assert.are.equal(j.webhook.id, cjson.decode(out4)[1].id)
    assert.are.equal(0, (run(with_config("webhooks validate " .. j.webhook.id))))
    local st5, out5, err5 = run(with_config("webhooks rm 999999"))
    assert.are.equal(1, st5)
    assert.are.equal("", out5)
    assert.matches("^account%-activity: HTTP 404 .*%[34%]", err5)
  end)

  it("syncs, lists, counts, checks, adds and removes subscriptions", function()
    if not webhook_id() then run(with_config("webhooks ensure " .. ep.hook_url .. " --json")) end
    local id = webhook_id()
    local st, out = run(with_config("subs sync " .. id .. " " .. q(users_file)))
    assert.are.equal(0, st)
    assert.matches("added 8, kept 0, removed 0, failed 0", out)
    local st2, out2 = run(with_config("subs sync " .. id .. " " .. q(users_file) .. " --json"))
    assert.are.equal(0, st2)
    local r = cjson.decode(out2)
    assert.are.equal(8, #r.kept)
    assert.are.same({}, r.added)
    assert.is_true(r.ok)
    -- the emulator's whole config is a users file too (12 users: 4 more)
    local st3, out3 = run(with_config("subs sync " .. id .. " " .. q(cfg_file) .. " --dry-run"))
    assert.are.equal(0, st3)
    assert.matches("dry run: would have added 4, kept 8", out3)
    local st4, out4 = run(with_config("subs list " .. id .. " --json"))
    assert.are.equal(0, st4)
    assert.are.equal(8, #cjson.decode(out4).user_ids)
    local st5, out5 = run(with_config("subs count --json"))
    assert.are.equal(0, st5)
    assert.are.equal(8, cjson.decode(out5).all)
    -- the configured user (the app owner) subscribes itself
    assert.are.equal("not subscribed\n", select(2, run(with_config("subs check " .. id))))
    assert.are.equal("subscribed\n", select(2, run(with_config("subs add " .. id))))
    assert.are.equal("already subscribed\n", select(2, run(with_config("subs add " .. id))))
    local st6, out6 = run(with_config("subs check " .. id .. " --users " .. q(users_file) .. " --json"))
    assert.are.equal(0, st6)
    assert.is_true(cjson.decode(out6)[1].subscribed)
    local st7 = run(with_config("subs rm " .. id .. " " .. cfg.users[1].user_id))
    assert.are.equal(0, st7)
    local _, out8 = run(with_config("subs list " .. id))
    assert.is_nil(out8:find(cfg.users[1].user_id .. "\n", 1, true))
  end)

  it("exits 1 when a job has failures, and reports them on stderr", function()
    local id = webhook_id()
    emu:control("POST", "/_emulator/faults", { method = "POST", path = "/subscriptions/all%.json$", status = 403, count = 2 })
    local st, out, err = run(with_config("subs sync " .. id .. " " .. q(cfg_file)))
    emu:control("DELETE", "/_emulator/faults")
    assert.are.equal(1, st, err)
    assert.matches("failed 2", out)
    assert.matches("subscribe %d+: HTTP 403", err)
    local _, out2 = run(with_config("subs sync " .. id .. " " .. q(cfg_file) .. " --json"))
    assert.is_true(cjson.decode(out2).ok)
  end)

  it("checks health (exit 0 healthy, 1 not) and starts a replay", function()
    local id = webhook_id()
    local st, out = run(with_config("health " .. id))
    assert.are.equal(0, st, out)
    assert.matches("crc%s+ok", out)
    local st2, out2 = run(with_config("health " .. id .. " --json"))
    assert.are.equal(0, st2)
    local h = cjson.decode(out2)
    assert.is_true(h.ok)
    assert.is_true(h.crc.within_budget)
    local st3, _, err3 = run(with_config("health " .. id .. " --url " .. ep.url .. "/nothing-here"))
    assert.are.equal(1, st3)
    assert.matches("CRC", err3)
    local st4, out4 = run(with_config("replay " .. id .. " -30m now --json"))
    assert.are.equal(0, st4)
    assert.is_string(cjson.decode(out4).job_id)
    assert.are.equal(2, (run(with_config("replay " .. id .. " yesterday now"))))
  end)

  it("computes a CRC answer with the secret from the environment or --config, never from argv", function()
    local token = "ZDRiNDY0ZDgtNzdkMi00NWEzLWI1ZjQtNjk2N2NmMzM5YzBh"
    local st, out = run("crc " .. token, "env TWITTER_CONSUMER_SECRET=mysecret")
    assert.are.equal(0, st)
    local want = require("account_activity.webhook").crc_response("mysecret", token)
    assert.are.equal(want .. "\n", out)
    local _, j = run("crc " .. token .. " --json", "env TWITTER_CONSUMER_SECRET=mysecret")
    assert.are.equal(want, cjson.decode(j).response_token)
    local _, c = run("--config " .. q(cfg_file) .. " crc " .. token)
    assert.are.equal(require("account_activity.webhook").crc_response(cfg.app.consumer_secret, token) .. "\n", c)
    local st2, out2, err2 = run("crc mysecret " .. token)
    assert.are.equal(2, st2)
    assert.are.equal("", out2)
    assert.matches("visible to every user", err2, 1, true)
    local st3, _, err3 = run("crc " .. token, "env -u TWITTER_CONSUMER_SECRET")
    assert.are.equal(2, st3)
    assert.matches("TWITTER_CONSUMER_SECRET", err3, 1, true)
  end)

  it("speaks in flags and files, not Lua; --version; errors under --json are JSON", function()
    local st, _, err = run(with_config("--api v3 webhooks list"))
    assert.are.equal(2, st)
    assert.matches("--api must be enterprise, premium or v2", err, 1, true)
    st, _, err = run(with_config("--api premium webhooks list"), "env -u TWITTER_WEBHOOK_ENV")
    assert.are.equal(2, st)
    assert.matches("--api premium needs --env NAME", err, 1, true)
    st, _, err = run(with_config("--base-url ftp://nowhere webhooks list"))
    assert.are.equal(2, st)
    assert.matches("--base-url: expected an http(s) URL", err, 1, true)
    for _, e in ipairs { err } do
      assert.is_nil(e:find("bad argument", 1, true))
      assert.is_nil(e:find("to 'new'", 1, true))
    end
    local vst, vout = run("--version")
    assert.are.equal(0, vst)
    assert.matches("^account%-activity %d+%.%d+%.%d+ %(libcurl ", vout)
    -- --json: a usage error and an API error, each one JSON line on stderr
    local jst, jout, jerr = run(with_config("--json subs list abc"))
    assert.are.equal(2, jst)
    assert.are.equal("", jout)
    local rec = cjson.decode(jerr)
    assert.are.equal("usage", rec.error.kind)
    assert.is_false(rec.ok)
    local ast, _, aerr = run(with_config("--json webhooks rm 999"))
    assert.are.equal(1, ast)
    rec = cjson.decode(aerr)
    assert.are.equal(404, rec.error.status)
    assert.matches("HTTP 404", rec.error.message)
  end)

  it("activity commands reach the X Activity API, and say clearly when it is missing", function()
    local st, out, err = run(with_config("activity list --json"))
    if st == 0 then
      assert.is_table(cjson.decode(out))
    else
      assert.are.equal(1, st)
      assert.matches("^account%-activity: [^\n]*\n$", err)
    end
    assert.are.equal(2, (run(with_config("activity mirror 123"))))
    -- a build without activity.lua: the client has no such methods
    local saved = package.loaded["account_activity.activity"]
    package.loaded["account_activity.activity"] = {}
    local o, e = {}, {}
    local sink = function(t) return { write = function(_, ...) for _, v in ipairs { ... } do t[#t + 1] = v end end,
      flush = function() end } end
    local status = cli.main({ "--config", cfg_file, "--base-url", emu.url, "activity", "list" }, sink(o), sink(e))
    package.loaded["account_activity.activity"] = saved
    assert.are.equal(1, status)
    assert.are.equal("", table.concat(o))
    assert.matches("no X Activity API support", table.concat(e))
  end)

  it("events tail prints the events an endpoint receives, one line each", function()
    local id = webhook_id()
    local wh_file = os.tmpname()
    -- tail in the background on a fixed free port, register it, deliver, collect
    local port
    local probe = require("account_activity.nginx_process")
    local s = assert(probe.start { ports = 1, http = function(p) return "server { listen 127.0.0.1:" .. p[1] .. "; }" end })
    port = s.port
    s:stop()
    local out = os.tmpname()
    os.execute(INTERP .. " bin/account-activity " .. with_config("events tail --port " .. port
      .. " --count 3 --timeout 20") .. " >" .. out .. " 2>/dev/null &")
    local url = "http://127.0.0.1:" .. port .. "/webhook"
    local core = require "account_activity.core"
    local ok, new_id
    for _ = 1, 100 do
      local st, o = run(with_config("webhooks ensure " .. url .. " --json"))
      if st == 0 then ok, new_id = true, cjson.decode(o).webhook.id break end
      core.sleep(0.05)
    end
    assert.is_true(ok)
    assert.are.equal(0, (run(with_config("subs add " .. new_id .. " --users " .. q(users_file)))))
    for _, typ in ipairs { "follow", "favorite", "tweet_create" } do
      emu:control("POST", "/_emulator/deliver", { user_id = cfg.users[2].user_id, type = typ, wait = true })
    end
    local text
    for _ = 1, 100 do
      text = read(out)
      local _, n = text:gsub("\n", "")
      if n >= 3 then break end
      core.sleep(0.05)
    end
    for _ = 1, 100 do -- the tail exits after 3 events and stops its nginx
      if not os.execute("curl -s -o /dev/null http://127.0.0.1:" .. port .. "/ 2>/dev/null") then break end
      core.sleep(0.05)
    end
    os.remove(out)
    os.remove(wh_file)
    assert.matches("follow%s+for " .. cfg.users[2].user_id, text)
    assert.matches("favorite", text)
    assert.matches("tweet_create.*Hello", text)
    local _ = id
  end)

  it("checks a users file whole before a sync: a mistyped one exits 2 naming the entry, nothing removed", function()
    if not webhook_id() then run(with_config("webhooks ensure " .. ep.hook_url .. " --json")) end
    local id = webhook_id()
    run(with_config("subs sync " .. id .. " " .. q(users_file)))
    local before = select(2, run(with_config("subs list " .. id .. " --json")))
    assert.is_true(#cjson.decode(before).user_ids > 0)
    local cases = {
      { '[{"id":"1"}]', "user #1: no user_id" },
      { '{"a":1}', "expected a JSON array of users" },
      { '{"users":"oops"}', "expected a JSON array of users" },
      { '[{"user_id":"7"},{"user_id":"x1"}]', "user #2: user_id must be a string of digits" },
      { '[]', "holds no users" },
      { '{}', "holds no users" },
    }
    for _, case in ipairs(cases) do
      local path = os.tmpname()
      local f = io.open(path, "w")
      f:write(case[1])
      f:close()
      for _, flags in ipairs { "", " --dry-run", " --json" } do
        local st, out, err = run(with_config("subs sync " .. id .. " " .. q(path) .. flags))
        assert.are.equal(2, st, case[1] .. flags .. ": " .. out .. err)
        assert.are.equal("", out)
        assert.matches(case[2], err, 1, true)
        assert.is_nil(err:find("traceback", 1, true))
      end
      os.remove(path)
    end
    assert.are.same(cjson.decode(before), cjson.decode((select(2, run(with_config("subs list " .. id .. " --json"))))))
  end)

  it("refuses a sync that removes most subscriptions unless --allow-removals", function()
    local id = webhook_id()
    run(with_config("subs sync " .. id .. " " .. q(cfg_file))) -- all 12 users
    local few = os.tmpname()
    local f = io.open(few, "w")
    f:write(cjson.encode { cfg.users[1] })
    f:close()
    local st, out, err = run(with_config("subs sync " .. id .. " " .. q(few)))
    assert.are.equal(2, st)
    assert.are.equal("", out)
    assert.matches("would remove 11 of the 12", err, 1, true)
    assert.matches("--allow-removals", err, 1, true)
    assert.are.equal(12, #cjson.decode((select(2, run(with_config("subs list " .. id .. " --json"))))).user_ids)
    local st2, out2, err2 = run(with_config("subs sync " .. id .. " " .. q(few) .. " --allow-removals"))
    assert.are.equal(0, st2, err2)
    assert.matches("removed 11", out2)
    run(with_config("subs sync " .. id .. " " .. q(users_file) .. " --allow-removals"))
    os.remove(few)
  end)

  it("subs add --users FILE subscribes exactly the users in the file, not the configured owner", function()
    local id = webhook_id()
    run(with_config("subs rm " .. id .. " " .. cfg.app.owner.user_id))
    run(with_config("subs rm " .. id .. " " .. cfg.users[10].user_id))
    local one = os.tmpname()
    local f = io.open(one, "w")
    f:write(cjson.encode { cfg.users[10] })
    f:close()
    local st, out = run(with_config("subs add " .. id .. " --users " .. q(one)))
    assert.are.equal(0, st)
    assert.matches("added 1", out)
    assert.is_nil(out:find("subscribed\n", 1, true))
    local ids = cjson.decode((select(2, run(with_config("subs list " .. id .. " --json"))))).user_ids
    local set = {}
    for _, u in ipairs(ids) do set[u] = true end
    assert.is_true(set[cfg.users[10].user_id])
    assert.is_nil(set[cfg.app.owner.user_id])
    os.remove(one)
  end)

  it("up: endpoint, webhook, subscriptions and a tail in one command; Ctrl-C undoes what it did", function()
    local core = require "account_activity.core"
    local one = os.tmpname()
    local f = io.open(one, "w")
    f:write(cjson.encode { cfg.users[11] })
    f:close()
    local out, err = os.tmpname(), os.tmpname()
    local pid = io.popen(INTERP .. " bin/account-activity " .. with_config("up --users " .. q(one) .. " --timeout 60")
      .. " >" .. out .. " 2>" .. err .. " & echo $!"):read("*l")
    local function wait(file, pattern)
      local deadline = core.now() + 20
      repeat
        local text = read(file)
        if text:find(pattern) then return text end
        core.sleep(0.05)
      until core.now() > deadline
      return read(file)
    end
    local banner = wait(err, "listening on")
    local wh_id = banner:match("up: webhook (%d+) registered for ")
    assert.is_string(wh_id, banner)
    assert.matches("added 1, kept 0", banner)
    local st = emu:control("GET", "/_emulator/state")
    local mine
    for _, w in ipairs(st.webhooks) do if w.id == wh_id then mine = w end end
    assert.is_table(mine)
    emu:control("POST", "/_emulator/deliver", { user_id = cfg.users[11].user_id, type = "follow", wait = true })
    local text = wait(out, "follow%s+for " .. cfg.users[11].user_id)
    assert.matches("follow%s+for " .. cfg.users[11].user_id, text)
    os.execute("kill -INT " .. pid)
    local gone = wait(err, "deleted webhook")
    assert.matches("up: deleted webhook " .. wh_id, gone)
    -- the process is gone, and so is its webhook
    local function alive()
      local a = os.execute("kill -0 " .. pid .. " 2>/dev/null")
      return a == true or a == 0
    end
    local deadline = core.now() + 10
    while core.now() < deadline and alive() do core.sleep(0.05) end
    assert.is_false(alive())
    st = emu:control("GET", "/_emulator/state")
    for _, w in ipairs(st.webhooks) do assert.are_not.equal(wh_id, w.id) end
    for _, p in ipairs { one, out, err } do os.remove(p) end
  end)

  it("up on a webhook that already exists removes only the subscriptions it added", function()
    local id = webhook_id()
    local before = cjson.decode((select(2, run(with_config("subs list " .. id .. " --json"))))).user_ids
    local st = emu:control("GET", "/_emulator/state")
    local url
    for _, w in ipairs(st.webhooks) do if w.id == id then url = w.url end end
    local one = os.tmpname()
    local f = io.open(one, "w")
    f:write(cjson.encode { cfg.users[12] })
    f:close()
    local code, _, err = run(with_config("up --url " .. q(url) .. " --users " .. q(one) .. " --timeout 1"))
    assert.are.equal(0, code, err)
    assert.matches("up: webhook " .. id .. " reused", err)
    assert.matches("removed the 1 subscriptions it added; webhook " .. id .. " kept", err)
    local after = cjson.decode((select(2, run(with_config("subs list " .. id .. " --json"))))).user_ids
    table.sort(before)
    table.sort(after)
    assert.are.same(before, after)
    os.remove(one)
  end)

  it("never prints a secret", function()
    local secrets = { cfg.app.consumer_secret, cfg.app.bearer_token, cfg.app.owner.access_token_secret,
      cfg.app.owner.access_token }
    for _, u in ipairs(cfg.users) do
      secrets[#secrets + 1] = u.access_token_secret
      secrets[#secrets + 1] = u.access_token
    end
    assert.is_true(#outputs > 20)
    for _, o in ipairs(outputs) do
      for _, s in ipairs(secrets) do
        assert.is_nil(o:find(s, 1, true), "a secret in: " .. o:sub(1, 200))
      end
    end
  end)
end)
