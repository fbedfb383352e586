-- luacheck configuration: the library runs under Lua 5.4 and LuaJIT/OpenResty.
std = "max"
max_line_length = 140
codes = true
ignore = { "212/self" }
exclude_files = { "bench/node/**", "build/**" }
files["lua/account_activity/nginx.lua"] = { read_globals = { "ngx" } }
files["lua/account_activity/transport/ngx.lua"] = { read_globals = { "ngx" } }
files["lua/account_activity/emulator/**"] = { read_globals = { "ngx" } }
files["lua/account_activity/stream.lua"] = { read_globals = { "ngx" } }
files["lua/account_activity/client.lua"] = { read_globals = { "ngx" } }
files["lua/account_activity/workflows.lua"] = { read_globals = { "ngx" } }
files["examples/**"] = { read_globals = { "ngx" } }
files["bench/**"] = { read_globals = { "ngx" } }
-- test vectors are long by nature
files["spec/**"] = { std = "+busted", read_globals = { "ngx" }, max_line_length = false }
files["bench/**"].max_line_length = false
