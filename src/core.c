/* account_activity.core: the C half of lua-account-activity.
 * Registers crypto.c, oauth1.c, session.c (with batch.c and stream.c), json.c and proc.c into one module table. */
#include <errno.h>
#include <time.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include "aa.h"

/* The version table stays a plain table; this only makes it print. */
static int l_version_tostring(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "version");
    lua_getfield(L, 1, "libcurl");
    lua_getfield(L, 1, "libcurl_tls");
    lua_getfield(L, 1, "openssl");
    lua_getfield(L, 1, "http2");
    lua_getfield(L, 1, "lua");
    lua_pushfstring(L, "lua-account-activity %s (libcurl %s, %s; %s; HTTP/2 %s; %s)",
                    luaL_optstring(L, 2, "?"), luaL_optstring(L, 3, "?"), luaL_optstring(L, 4, "?"),
                    luaL_optstring(L, 5, "?"), lua_toboolean(L, 6) ? "yes" : "no", luaL_optstring(L, 7, "?"));
    return 1;
}

static int l_version(lua_State *L) {
    const curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    lua_createtable(L, 0, 5);
    if (luaL_newmetatable(L, "account_activity.version")) {
        lua_pushliteral(L, "account_activity.version");
        lua_setfield(L, -2, "__name");
        lua_pushcfunction(L, l_version_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_setmetatable(L, -2);
    lua_pushliteral(L, AA_VERSION);
    lua_setfield(L, -2, "version");
    lua_pushstring(L, cv->version);
    lua_setfield(L, -2, "libcurl");
    lua_pushstring(L, cv->ssl_version ? cv->ssl_version : "none");
    lua_setfield(L, -2, "libcurl_tls");
    lua_pushstring(L, OpenSSL_version(OPENSSL_VERSION));
    lua_setfield(L, -2, "openssl");
    lua_pushboolean(L, (cv->features & CURL_VERSION_HTTP2) != 0);
    lua_setfield(L, -2, "http2");
    lua_pushstring(L, LUA_RELEASE);
    lua_setfield(L, -2, "lua");
    return 1;
}

/* Blocking sleep for scripts (retry back-off); inside nginx use ngx.sleep.
 * A signal caught by core.signal_catch (arrived or still untaken) ends it
 * early, so a script's Ctrl-C is answered at once. */
static int l_sleep(lua_State *L) {
    lua_Number secs = luaL_checknumber(L, 1);
    struct timespec ts, rem;
    luaL_argcheck(L, secs >= 0 && secs <= 86400, 1, "must be between 0 and 86400 seconds");
    ts.tv_sec = (time_t)secs;
    ts.tv_nsec = (long)((secs - (lua_Number)ts.tv_sec) * 1e9);
    while (!aa_signal_any_pending() && nanosleep(&ts, &rem) != 0 && errno == EINTR) ts = rem;
    return 0;
}

/* Monotonic seconds, for rates and ETAs. */
static int l_now(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

/* Wall-clock epoch seconds with sub-second precision: os.time() has whole
 * seconds, which turns a quick reconnect's gap into zero. */
static int l_time(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

static const luaL_Reg funcs[] = {
    {"version", l_version},
    {"sleep", l_sleep},
    {"now", l_now},
    {"time", l_time},
    {NULL, NULL}};

AA_EXPORT int luaopen_account_activity_core(lua_State *L) {
    aa_newlib(L, funcs);
    aa_open_crypto(L);
    aa_open_oauth1(L);
    aa_open_http(L);
    aa_open_json(L);
    aa_open_redis(L);
    aa_open_proc(L);
    lua_pushliteral(L, AA_VERSION);
    lua_setfield(L, -2, "_VERSION");
    return 1;
}
