/* The Session's response-header parser on arbitrary header blocks: names
 * lowercased, values trimmed, repeated names joined, only the last response
 * kept. Built with session.c itself, so its static helpers are the ones tested. */
#include <stdlib.h>
#include "fuzz_lua.h"
#include "../src/session.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lua_State *L = fuzz_state();
    transfer t;
    memset(&t, 0, sizeof t);
    if (size > 0 && !http_buf_append(&t.hdrs, (const char *)data, size)) return 0;
    http_push_headers(L, &t);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        size_t kl;
        const char *k = lua_tolstring(L, -2, &kl);
        for (size_t i = 0; i < kl; i++)
            if ((k[i] >= 'A' && k[i] <= 'Z') || k[i] == ':' || k[i] == '\n') abort();
        lua_pop(L, 1);
    }
    buf_free(&t.hdrs);
    lua_settop(L, 0);
    return 0;
}
