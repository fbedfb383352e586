/* A minimal `lua5.4 script args...` built with AddressSanitizer, so `make
 * asan` runs busted in an instrumented process without LD_PRELOAD (which
 * would leak into every child the specs start: nginx, python, the CLI). */
#include <stdio.h>
#include <stdlib.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

static int traceback(lua_State *L) {
    luaL_traceback(L, L, lua_tostring(L, 1), 1);
    return 1;
}

int main(int argc, char **argv) {
    lua_State *L;
    int i, status;
    if (argc < 2) {
        fprintf(stderr, "usage: %s script [args]\n", argv[0]);
        return 2;
    }
    L = luaL_newstate();
    luaL_openlibs(L);
    lua_createtable(L, argc, 1);
    for (i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - 1);
    }
    lua_setglobal(L, "arg");
    lua_pushcfunction(L, traceback);
    status = luaL_loadfile(L, argv[1]);
    if (status == LUA_OK) {
        for (i = 2; i < argc; i++) lua_pushstring(L, argv[i]);
        status = lua_pcall(L, argc - 2, 0, 1);
    }
    if (status != LUA_OK) fprintf(stderr, "%s\n", lua_tostring(L, -1));
    lua_close(L);
    return status == LUA_OK ? 0 : 1;
}
