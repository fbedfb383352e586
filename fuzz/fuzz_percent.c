/* percent_encode / percent_decode: round trip must be exact. */
#include <stdlib.h>
#include "fuzz_lua.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lua_State *L = fuzz_state();
    size_t n;
    const char *enc;
    lua_getglobal(L, "core");
    lua_getfield(L, -1, "percent_encode");
    lua_pushlstring(L, (const char *)data, size);
    lua_call(L, 1, 1);
    enc = lua_tolstring(L, -1, &n);
    for (size_t i = 0; i < n; i++)
        if (!(enc[i] == '%' || (enc[i] >= '0' && enc[i] <= '9') || (enc[i] >= 'A' && enc[i] <= 'Z') ||
              (enc[i] >= 'a' && enc[i] <= 'z') || strchr("-._~", enc[i])))
            abort();
    lua_getfield(L, 1, "percent_decode");
    lua_pushvalue(L, 2);
    lua_call(L, 1, 1);
    {
        size_t dn;
        const char *dec = lua_tolstring(L, -1, &dn);
        if (dn != size || memcmp(dec, data, size) != 0) abort();
    }
    /* decoding arbitrary input must not crash either, with and without '+' */
    lua_getfield(L, 1, "percent_decode");
    lua_pushlstring(L, (const char *)data, size);
    lua_pushboolean(L, size & 1);
    lua_call(L, 2, 1);
    lua_settop(L, 0);
    return 0;
}
