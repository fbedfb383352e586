/* oauth1_header / oauth1_signature with random methods, URLs, credentials and
 * parameter sets (fields separated by \x01). The header must never contain
 * CR, LF or NUL, whatever went in. */
#include <stdlib.h>
#include "fuzz_lua.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lua_State *L = fuzz_state();
    const char *p[16];
    size_t n[16];
    int k = fuzz_split(data, size, p, n, 16), i;
    static const char *fields[] = {"method", "url", "consumer_key", "consumer_secret", "token", "token_secret", "nonce", "realm"};
    lua_getglobal(L, "core");
    lua_getfield(L, 1, "oauth1_header");
    lua_createtable(L, 0, 12);
    for (i = 0; i < k && i < 8; i++) {
        lua_pushlstring(L, p[i], n[i]);
        lua_setfield(L, -2, fields[i]);
    }
    if (k > 8) {
        lua_newtable(L);
        for (i = 8; i + 1 < k; i += 2) {
            lua_pushlstring(L, p[i], n[i]);
            if (n[i + 1] > 0 && p[i + 1][0] == '[') {
                lua_createtable(L, 2, 0);
                lua_pushlstring(L, p[i + 1] + 1, n[i + 1] - 1);
                lua_rawseti(L, -2, 1);
                lua_pushlstring(L, p[i + 1], n[i + 1]);
                lua_rawseti(L, -2, 2);
            } else {
                lua_pushlstring(L, p[i + 1], n[i + 1]);
            }
            lua_settable(L, -3);
        }
        lua_setfield(L, -2, "params");
    }
    lua_pushinteger(L, 1318622958);
    lua_setfield(L, -2, "timestamp");
    if (lua_pcall(L, 1, 1, 0) == 0) {
        size_t hl;
        const char *h = lua_tolstring(L, -1, &hl);
        for (size_t j = 0; j < hl; j++)
            if (h[j] == '\r' || h[j] == '\n' || h[j] == '\0') abort();
    }
    lua_settop(L, 0);
    return 0;
}
