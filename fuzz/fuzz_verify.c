/* Signature verification: strip "sha256=", base64-decode strictly, compare
 * in constant time with HMAC-SHA256(secret, body), both from the pieces and
 * with core.hmac_sha256_check (what the webhook calls), which must agree.
 * Input: secret \x01 body \x01 header. A header made from the right HMAC must
 * verify; any other must not. Also core.equal on the raw pieces. */
#include <stdlib.h>
#include "fuzz_lua.h"

static int verify(lua_State *L, const char *secret, size_t sl, const char *body, size_t bl, const char *hdr, size_t hl) {
    int ok = 0;
    lua_settop(L, 1);
    if (hl < 7 || memcmp(hdr, "sha256=", 7) != 0) return 0;
    lua_getfield(L, 1, "base64_decode");
    lua_pushlstring(L, hdr + 7, hl - 7);
    lua_call(L, 1, 1);
    if (lua_isnil(L, -1)) return 0;
    lua_getfield(L, 1, "hmac_sha256");
    lua_pushlstring(L, secret, sl);
    lua_pushlstring(L, body, bl);
    lua_call(L, 2, 1);
    lua_getfield(L, 1, "equal");
    lua_insert(L, -3);
    lua_call(L, 2, 1);
    ok = lua_toboolean(L, -1);
    lua_settop(L, 1);
    return ok;
}

/* The same check in one call (core.hmac_sha256_check, from byte 8). */
static int check(lua_State *L, const char *secret, size_t sl, const char *body, size_t bl, const char *hdr, size_t hl) {
    int ok;
    if (hl < 7 || memcmp(hdr, "sha256=", 7) != 0) return 0;
    lua_getfield(L, 1, "hmac_sha256_check");
    lua_pushlstring(L, secret, sl);
    lua_pushlstring(L, body, bl);
    lua_pushlstring(L, hdr, hl);
    lua_pushinteger(L, 8);
    lua_call(L, 4, 1);
    ok = lua_toboolean(L, -1);
    lua_settop(L, 1);
    return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    lua_State *L = fuzz_state();
    const char *p[3] = {"", "", ""};
    size_t n[3] = {0, 0, 0};
    fuzz_split(data, size, p, n, 3);
    lua_getglobal(L, "core");
    if (verify(L, p[0], n[0], p[1], n[1], p[2], n[2]) != check(L, p[0], n[0], p[1], n[1], p[2], n[2]))
        abort();
    /* the genuine header verifies */
    lua_getfield(L, 1, "hmac_sha256");
    lua_pushlstring(L, p[0], n[0]);
    lua_pushlstring(L, p[1], n[1]);
    lua_call(L, 2, 1);
    lua_getfield(L, 1, "base64_encode");
    lua_insert(L, -2);
    lua_call(L, 1, 1);
    lua_pushliteral(L, "sha256=");
    lua_insert(L, -2);
    lua_concat(L, 2);
    {
        size_t gl;
        const char *g = lua_tolstring(L, -1, &gl);
        char copy[64];
        if (gl >= sizeof copy) abort();
        memcpy(copy, g, gl);
        if (!verify(L, p[0], n[0], p[1], n[1], copy, gl)) abort();
        if (!check(L, p[0], n[0], p[1], n[1], copy, gl)) abort();
        if (n[2] != gl || memcmp(p[2], copy, gl) != 0) {
            /* a different header verifies only if it decodes to the same MAC,
             * which the strict decoder makes impossible */
            if (verify(L, p[0], n[0], p[1], n[1], p[2], n[2])) abort();
        }
    }
    lua_settop(L, 1);
    lua_getfield(L, 1, "equal");
    lua_pushlstring(L, p[0], n[0]);
    lua_pushlstring(L, p[1], n[1]);
    lua_call(L, 2, 1);
    if (lua_toboolean(L, -1) != (n[0] == n[1] && memcmp(p[0], p[1], n[0]) == 0)) abort();
    lua_settop(L, 0);
    return 0;
}
