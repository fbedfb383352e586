-- luacheck configuration: the library runs under Lua 5.4 and LuaJIT/OpenResty.
std = "max"
max_line_length = 140
codes = true
ignore = { "212/self" }
exclude_files = { "bench/node/**", "build/**" }
files["lua/account_activity/nginx.lua"] = { globals = { "ngx" } }
files["lua/account_activity/transport/ngx.lua"] = { globals = { "ngx" } }
files["lua/account_activity/transport/reader.lua"] = { globals = { "ngx" } }
files["lua/account_activity/emulator/**"] = { globals = { "ngx" } }
files["lua/account_activity/stream.lua"] = { globals = { "ngx" } }
files["lua/account_activity/client.lua"] = { globals = { "ngx" } }
files["lua/account_activity/workflows.lua"] = { globals = { "ngx" } }
files["examples/**"] = { globals = { "ngx" } }
files["bench/**"] = { globals = { "ngx" } }
-- test vectors are long by nature
files["spec/**"] = { std = "+busted", globals = { "ngx" }, max_line_length = false }
files["bench/**"].max_line_length = false
