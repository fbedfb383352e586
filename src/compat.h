/* Lua 5.1/LuaJIT 2.1 .. 5.4 differences, in one place.
 * Everything here is static and prefixed aa_, so no Lua API name is ever
 * defined by us (LuaJIT 2.1 exports some 5.2 names itself; a second
 * definition breaks the link or, worse, silently wins). */
#ifndef AA_COMPAT_H
#define AA_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if defined(__GNUC__)
#define AA_EXPORT __attribute__((visibility("default")))
#define AA_UNUSED __attribute__((unused))
#else
#define AA_EXPORT
#define AA_UNUSED
#endif

#if LUA_VERSION_NUM < 502

#define aa_rawlen(L, i) lua_objlen((L), (i))

static AA_UNUSED void aa_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
    luaL_checkstack(L, nup + 1, "too many upvalues");
    for (; l->name != NULL; l++) {
        int i;
        for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
        lua_pushcclosure(L, l->func, nup);
        lua_setfield(L, -(nup + 2), l->name);
    }
    lua_pop(L, nup);
}

static AA_UNUSED void *aa_testudata(lua_State *L, int ud, const char *tname) {
    void *p = lua_touserdata(L, ud);
    if (p != NULL && lua_getmetatable(L, ud)) {
        luaL_getmetatable(L, tname);
        if (!lua_rawequal(L, -1, -2)) p = NULL;
        lua_pop(L, 2);
        return p;
    }
    return NULL;
}

static AA_UNUSED int aa_newmetatable(lua_State *L, const char *tname) {
    if (!luaL_newmetatable(L, tname)) return 0;
    lua_pushstring(L, tname);
    lua_setfield(L, -2, "__name");
    return 1;
}

#define aa_newlib(L, l) (lua_newtable(L), aa_setfuncs(L, l, 0))

#else

#define aa_rawlen(L, i) lua_rawlen((L), (i))
#define aa_setfuncs(L, l, n) luaL_setfuncs((L), (l), (n))
#define aa_testudata(L, ud, t) luaL_testudata((L), (ud), (t))
#define aa_newmetatable(L, t) luaL_newmetatable((L), (t))
#define aa_newlib(L, l) luaL_newlib((L), (l))

#endif

/* lua_getfield returns the type from 5.3 on; callers here want the type. */
static AA_UNUSED int aa_getfield(lua_State *L, int idx, const char *k) {
    lua_getfield(L, idx, k);
    return lua_type(L, -1);
}

#endif
