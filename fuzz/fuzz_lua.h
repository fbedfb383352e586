/* Shared by the libFuzzer targets: one Lua state with the core loaded, and a
 * protected call of a core function on strings cut from the fuzzer's input.
 * Errors raised by the core (argument errors) are expected outcomes; crashes,
 * leaks and sanitizer reports are what the fuzzer looks for. */
#ifndef AA_FUZZ_LUA_H
#define AA_FUZZ_LUA_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

int luaopen_account_activity_core(lua_State *L);

static lua_State *fuzz_state(void) {
    static lua_State *L;
    if (L == NULL) {
        L = luaL_newstate();
        luaL_openlibs(L);
        luaL_requiref(L, "account_activity.core", luaopen_account_activity_core, 0);
        lua_setglobal(L, "core");
    }
    lua_settop(L, 0);
    return L;
}

/* Splits data at '\x01' into at most max pieces; returns how many. */
static int fuzz_split(const uint8_t *data, size_t size, const char **p, size_t *n, int max) {
    int k = 0;
    size_t start = 0, i;
    for (i = 0; i <= size && k < max; i++) {
        if (i == size || data[i] == 1) {
            p[k] = (const char *)data + start;
            n[k] = i - start;
            k++;
            start = i + 1;
        }
    }
    return k;
}

static void fuzz_call(lua_State *L, const char *fname, int nargs) {
    lua_getglobal(L, "core");
    lua_getfield(L, -1, fname);
    lua_remove(L, -2);
    lua_insert(L, -(nargs + 1));
    lua_pcall(L, nargs, 1, 0);
    lua_settop(L, 0);
    static unsigned calls;
    if (++calls % 4096 == 0) lua_gc(L, LUA_GCCOLLECT, 0);
}
#endif
