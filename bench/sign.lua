#!/usr/bin/env lua5.4
--- Signing benchmark (issue: foundation). Signs X-API.md 8.3's "Subscribe"
-- request with a fresh nonce each time and prints headers/s for our C core
-- (called from this Lua), python3-oauthlib and Node's oauth-1.0a, measured in
-- this run, plus the C floor (HMAC-SHA1 alone over the same base string).
-- Targets: >= 20x oauthlib and >= 3x Node.
local lib = dofile((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/lib.lua")
local core = require "account_activity.core"

local seconds = tonumber(arg and arg[1]) or 2
local req = {
  method = "POST",
  url = "https://api.twitter.com/1.1/account_activity/webhooks/1234567890/subscriptions/all.json",
  consumer_key = "xvz1evFS4wEEPTGEFPHBog",
  consumer_secret = "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
  token = "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
  token_secret = "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
}
local sign = core.oauth1_header
local ours = lib.rate(function() sign(req) end, seconds)

local oauthlib = tonumber((lib.capture(("/usr/bin/python3 %s/bench/sign_oauthlib.py %s"):format(lib.root, seconds))))
local node
if lib.npm("oauth-1.0a") then
  node = tonumber((lib.capture(("node %s/bench/node/sign.js %s"):format(lib.root, seconds))))
end
local floor
local bin = lib.build_c("sign_floor", "libcrypto")
if bin then floor = tonumber((lib.capture(bin .. " " .. seconds))) end

local rows = {
  { "lua-account-activity core.oauth1_header (Lua 5.4)", ours, "headers/s" },
  { "python3-oauthlib Client.sign", oauthlib or "unavailable", "headers/s", "ours: " .. lib.ratio(ours, oauthlib) .. " (target >= 20x)" },
  { "node oauth-1.0a authorize+toHeader", node or "unavailable", "headers/s", "ours: " .. lib.ratio(ours, node) .. " (target >= 3x)" },
  { "C floor: HMAC-SHA1 only over the base string", floor or "unavailable", "ops/s", "ours at " .. lib.ratio(ours, floor) .. " of the floor" },
}
lib.result("sign: oauth1_header, Lua 5.4", ours, "python3-oauthlib", oauthlib, "headers/s", ">= 20x")
lib.result("sign: oauth1_header, Lua 5.4", ours, "node oauth-1.0a", node, "headers/s", ">= 3x")
lib.result("sign: oauth1_header, Lua 5.4", ours, "C floor (HMAC only)", floor, "headers/s", "reference")
lib.print_table("OAuth 1.0a signing, X-API.md 8.3 Subscribe request (fresh nonce each)", rows)
return { rows = rows, ours = ours, oauthlib = oauthlib, node = node, floor = floor }
