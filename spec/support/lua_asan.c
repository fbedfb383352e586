/* A minimal `lua5.4 script args...` built with AddressSanitizer, so `make
 * asan` runs busted in an instrumented process without LD_PRELOAD (which
 * would leak into every child the specs start: nginx, python, the CLI). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

static int traceback(lua_State *L) {
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
}

/* `lua_asan [-e chunk]... [script [args]]`, like lua5.4 for what the specs use */
int main(int argc, char **argv) {
    lua_State *L;
    int i, first = 1, status = LUA_OK;
    if (argc < 2) {
        fprintf(stderr, "usage: %s [-e chunk]... [script [args]]\n", argv[0]);
        return 2;
    }
    L = luaL_newstate();
    luaL_openlibs(L);
    while (first < argc && strcmp(argv[first], "-e") == 0 && first + 1 < argc) first += 2;
    /* arg[0] is the script (or the interpreter when there is none) */
    lua_createtable(L, argc, 1);
    for (i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - (first < argc ? first : 0));
    }
    lua_setglobal(L, "arg");
    lua_pushcfunction(L, traceback);
    for (i = 1; i < first && status == LUA_OK; i += 2) {
        status = luaL_loadbuffer(L, argv[i + 1], strlen(argv[i + 1]), "=(command line)");
        if (status == LUA_OK) status = lua_pcall(L, 0, 0, 1);
    }
    if (status == LUA_OK && first < argc) {
        status = luaL_loadfile(L, argv[first]);
        if (status == LUA_OK) {
            for (i = first + 1; i < argc; i++) lua_pushstring(L, argv[i]);
            status = lua_pcall(L, argc - first - 1, 0, 1);
        }
    }
    if (status != LUA_OK) fprintf(stderr, "%s\n", lua_tostring(L, -1));
    lua_close(L);
    return status == LUA_OK ? 0 : 1;
}
