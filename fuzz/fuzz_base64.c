/* base64_decode on arbitrary input; whatever decodes must re-encode to the
 * same text (the decoder is strict), and encode/decode must round-trip. */
#include <stdlib.h>
#include "fuzz_lua.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lua_State *L = fuzz_state();
    lua_getglobal(L, "core");
    lua_getfield(L, 1, "base64_decode");
    lua_pushlstring(L, (const char *)data, size);
    lua_call(L, 1, 2);
    if (!lua_isnil(L, -2)) {
        lua_getfield(L, 1, "base64_encode");
        lua_pushvalue(L, -3);
        lua_call(L, 1, 1);
        {
            size_t n;
            const char *e = lua_tolstring(L, -1, &n);
            if (n != size || memcmp(e, data, size) != 0) abort();
        }
    }
    lua_settop(L, 1);
    lua_getfield(L, 1, "base64_encode");
    lua_pushlstring(L, (const char *)data, size);
    lua_call(L, 1, 1);
    lua_getfield(L, 1, "base64_decode");
    lua_insert(L, -2);
    lua_call(L, 1, 1);
    {
        size_t n;
        const char *d = lua_tolstring(L, -1, &n);
        if (d == NULL || n != size || memcmp(d, data, size) != 0) abort();
    }
    lua_settop(L, 0);
    return 0;
}
