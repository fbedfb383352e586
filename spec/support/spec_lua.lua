-- The interpreter for the Lua child processes a spec starts (the CLI, the
-- examples): the one running the spec. spec/run sets AA_SPEC_LUA, e.g. to
-- the AddressSanitizer interpreter under `make asan`.
return os.getenv("AA_SPEC_LUA") or (rawget(_G, "jit") and "luajit" or "lua5.4")
