rockspec_format = "3.0"
package = "lua-account-activity"
version = "scm-1"
source = {
   url = "git+https://github.com/lua-account-activity/lua-account-activity.git",
   branch = "main",
}
description = {
   summary = "X (Twitter) Account Activity API and webhooks: subscriptions, CRC, signed events",
   detailed = [[
Register, list, re-validate and delete webhooks; add, check, list, count and
remove subscriptions; replay; answer Challenge-Response Checks; verify the
signature of every event X posts and dispatch it by type. A C core (OpenSSL,
libcurl) does the signing, crypto and HTTP; works in Lua 5.1-5.4 scripts and
inside OpenResty/nginx (LuaJIT), where it uses cosockets. Ships an offline
emulator of the API for tests and demos.
]],
   homepage = "https://github.com/lua-account-activity/lua-account-activity",
   license = "MIT",
   labels = { "twitter", "x", "webhooks", "oauth", "openresty" },
}
dependencies = {
   "lua >= 5.1",
   "lua-cjson",
}
external_dependencies = {
   -- library only: Debian keeps curl.h under a multiarch include folder that
   -- the compiler searches but LuaRocks's header probe does not
   CURL = { library = "curl" },
   OPENSSL = { header = "openssl/evp.h", library = "crypto" },
}
build = {
   -- The Makefile builds two cores: one for the rock's Lua, and one for
   -- LuaJIT, which the emulator's nginx workers load (so a 5.4 tree alone
   -- runs the emulator). It installs every module under lua/ as is
   -- (spec/package_spec.lua checks that none is left out).
   type = "make",
   build_target = "rock",
   build_variables = { CC = "$(CC)", CFLAGS = "$(CFLAGS)", LUA_INCDIR = "$(LUA_INCDIR)" },
   install_target = "install-rock",
   install_variables = { LUADIR = "$(LUADIR)", LIBDIR = "$(LIBDIR)", BINDIR = "$(BINDIR)", LUA_INCDIR = "$(LUA_INCDIR)" },
   copy_directories = { "examples" },
}
test = {
   type = "command",
   command = "make test",
}
