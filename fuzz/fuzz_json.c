/* core.json_decode against lua-cjson on the same bytes. The core's decoder
 * is stricter (RFC 8259), so: whatever it accepts cjson must accept too, and
 * both must give the same value (numbers, strings, null, nesting). The
 * delivery options may accept more only where a surrogate was refused, and
 * change a value only from a number past 2^53 to its digits. */
#include <stdio.h>
#include <stdlib.h>
#include "fuzz_lua.h"

static const char *compare_src =
    "local cjson = require 'cjson.safe'\n"
    "cjson.decode_max_depth(1000)\n"
    "local function same(a, b, path)\n"
    "  if type(a) ~= type(b) then return false, path .. ': ' .. type(a) .. ' vs ' .. type(b) end\n"
    "  if type(a) == 'number' then\n"
    "    if math.type and math.type(a) ~= math.type(b) then return false, path .. ': number kind' end\n"
    "    if a ~= b and not (a ~= a and b ~= b) then return false, path .. ': ' .. a .. ' vs ' .. b end\n"
    "    return true\n"
    "  end\n"
    "  if type(a) ~= 'table' then\n"
    "    if a ~= b then return false, path .. ': values differ' end\n"
    "    return true\n"
    "  end\n"
    "  for k, v in pairs(a) do\n"
    "    local ok, where = same(v, b[k], path .. '/' .. tostring(k))\n"
    "    if not ok then return false, where end\n"
    "  end\n"
    "  for k in pairs(b) do\n"
    "    if a[k] == nil then return false, path .. '/' .. tostring(k) .. ': missing' end\n"
    "  end\n"
    "  return true\n"
    "end\n"
    "local LENIENT = { lone_surrogates = 'replace', big_integers = 'string' }\n"
    "local function exact(a, b)\n"
    "  if type(a) == 'string' and type(b) == 'number' then\n"
    "    assert(a:find('^%-?[1-9]%d+$') and #a >= 16, 'a string for a number: ' .. a)\n"
    "    assert(tonumber(a) == b or math.abs(tonumber(a) - b) <= math.abs(b) * 2^-52, 'digits ' .. a .. ' vs ' .. b)\n"
    "    return true\n"
    "  end\n"
    "  if type(a) ~= 'table' or type(b) ~= 'table' then return a == b end\n"
    "  for k, v in pairs(a) do if not exact(v, b[k]) then return false end end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "return function(s)\n"
    "  local ours, err = core.json_decode(s)\n"
    "  local lenient, lerr = core.json_decode(s, LENIENT)\n"
    "  if ours == nil then\n"
    "    assert(type(err) == 'string' and err:find(' at byte %d+$'), 'no position in: ' .. tostring(err))\n"
    "    if lenient == nil then\n"
    "      assert(type(lerr) == 'string' and lerr:find(' at byte %d+$'), 'no position in: ' .. tostring(lerr))\n"
    "    else\n"
    "      assert(err:find('surrogate', 1, true), 'the options accepted more than surrogates: ' .. err)\n"
    "    end\n"
    "    return\n"
    "  end\n"
    "  if lenient == nil then error('the options refused what the default accepts: ' .. tostring(lerr)) end\n"
    "  if not exact(lenient, ours) then error('the options changed more than big integers') end\n"
    "  local theirs, cerr = cjson.decode(s)\n"
    "  if theirs == nil then error('accepted what cjson refuses (' .. tostring(cerr) .. ')') end\n"
    "  local ok, where = same(ours, theirs, '')\n"
    "  if not ok then error('differs from cjson at ' .. where) end\n"
    "end\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lua_State *L = fuzz_state();
    static int ref = LUA_NOREF;
    if (ref == LUA_NOREF) {
        if (luaL_loadstring(L, compare_src) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) abort();
        ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "json_decode: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_settop(L, 0);
    static unsigned calls;
    if (++calls % 4096 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
