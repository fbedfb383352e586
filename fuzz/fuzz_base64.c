/* base64_decode on arbitrary input, and base64url_encode against base64_encode; whatever decodes must re-encode to the
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
    /* base64url is base64 with - and _ and without the padding */
    lua_settop(L, 1);
    lua_getfield(L, 1, "base64url_encode");
    lua_pushlstring(L, (const char *)data, size);
    lua_call(L, 1, 1);
    lua_getfield(L, 1, "base64_encode");
    lua_pushlstring(L, (const char *)data, size);
    lua_call(L, 1, 1);
    {
        size_t nu, nb, i;
        const char *u = lua_tolstring(L, -2, &nu);
        const char *b = lua_tolstring(L, -1, &nb);
        while (nb > 0 && b[nb - 1] == '=') nb--;
        if (nu != nb) abort();
        for (i = 0; i < nu; i++) {
            char want = b[i] == '+' ? '-' : b[i] == '/' ? '_' : b[i];
            if (u[i] != want) abort();
        }
    }
    lua_settop(L, 0);
    return 0;
}
