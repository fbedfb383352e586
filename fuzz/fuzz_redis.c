/* core.redis_reader over bytes from the network: fed whole and then in
 * pieces of a few bytes, it must give the same replies, never crash, leak,
 * or raise; and core.redis_format of the pieces must read back as the same
 * array of strings. */
#include <stdio.h>
#include <stdlib.h>
#include "fuzz_lua.h"

static const char *check_src =
    "local function drain(r, out)\n"
    "  while true do\n"
    "    local v, err = r:get()\n"
    "    if v == nil then out[#out + 1] = 'error'; return false end\n"
    "    if v == false then return true end\n"
    "    out[#out + 1] = v\n"
    "  end\n"
    "end\n"
    "local function dump(v)\n"
    "  if type(v) ~= 'table' then return type(v) .. ':' .. tostring(v) end\n"
    "  local parts = {}\n"
    "  for k, x in pairs(v) do parts[#parts + 1] = tostring(k) .. '=' .. dump(x) end\n"
    "  table.sort(parts)\n"
    "  return '{' .. table.concat(parts, ',') .. '}'\n"
    "end\n"
    "return function(s)\n"
    "  local whole, cut = {}, {}\n"
    "  local r = core.redis_reader()\n"
    "  r:feed(s)\n"
    "  drain(r, whole)\n"
    "  local r2 = core.redis_reader()\n"
    "  local step = #s % 7 + 1\n"
    "  for i = 1, #s, step do\n"
    "    r2:feed(s:sub(i, i + step - 1))\n"
    "    if not drain(r2, cut) then break end\n"
    "  end\n"
    "  local argv = {}\n"
    "  for piece in (s .. '\\1'):gmatch('(.-)\\1') do argv[#argv + 1] = piece end\n"
    "  local r3 = core.redis_reader()\n"
    "  r3:feed(core.redis_format(argv))\n"
    "  local back = r3:get()\n"
    "  assert(type(back) == 'table' and #back == #argv, 'format/read round trip')\n"
    "  for i = 1, #argv do assert(back[i] == argv[i], 'format/read round trip: element ' .. i) end\n"
    "  assert(dump(whole) == dump(cut), 'fed in pieces, the replies differ')\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lua_State *L = fuzz_state();
    static int ref = LUA_NOREF;
    if (ref == LUA_NOREF) {
        if (luaL_loadstring(L, check_src) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) abort();
        ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "redis_reader: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_settop(L, 0);
    static unsigned calls;
    if (++calls % 4096 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
