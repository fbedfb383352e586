/* account_activity.core: the C half of lua-account-activity.
 * Registers crypto.c, oauth1.c, session.c (with batch.c and stream.c), json.c and proc.c into one module table;
 * the file locks and private writes of the token store live here. */
/* flock() is BSD, not POSIX: glibc shows it with _DEFAULT_SOURCE. */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>
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

/* Monotonic seconds: every deadline of the core (streams, waits, locks). */
double aa_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Monotonic seconds, for rates and ETAs. */
static int l_now(lua_State *L) {
    lua_pushnumber(L, (lua_Number)aa_mono());
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

/* ---- advisory file locks (token_store.file) ----------------------------
 * flock, not fcntl: a flock belongs to the open file, so two stores in one
 * process exclude each other too, and closing some other descriptor of the
 * same file does not drop the lock. */

#define AA_LOCK_MT "account_activity.core.flock"

typedef struct { int fd; } aa_lock;

/* core.flock(path, timeout) -> lock | nil, err: an exclusive lock on path
 * (created 0600 when absent), waiting at most timeout seconds. */
static int l_flock(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    lua_Number timeout = luaL_optnumber(L, 2, 10);
    struct timespec pause = {0, 10 * 1000 * 1000};
    double deadline;
    aa_lock *lk;
    int fd;
    luaL_argcheck(L, timeout >= 0 && timeout <= 86400, 2, "must be between 0 and 86400 seconds");
    lk = (aa_lock *)lua_newuserdata(L, sizeof *lk);
    lk->fd = -1;
    luaL_getmetatable(L, AA_LOCK_MT);
    lua_setmetatable(L, -2);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "cannot open lock file %s: %s", path, strerror(errno));
        return 2;
    }
    lk->fd = fd;
    deadline = aa_mono() + (double)timeout;
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK && errno != EINTR) {
            int e = errno;
            close(fd);
            lk->fd = -1;
            lua_pushnil(L);
            lua_pushfstring(L, "cannot lock %s: %s", path, strerror(e));
            return 2;
        }
        if (aa_mono() >= deadline) {
            close(fd);
            lk->fd = -1;
            lua_pushnil(L);
            lua_pushfstring(L, "timed out waiting for the lock on %s", path);
            return 2;
        }
        nanosleep(&pause, NULL);
    }
    return 1;
}

/* Closing the descriptor releases the lock; idempotent (also the __gc). */
static int l_unlock(lua_State *L) {
    aa_lock *lk = (aa_lock *)luaL_checkudata(L, 1, AA_LOCK_MT);
    if (lk->fd >= 0) {
        close(lk->fd);
        lk->fd = -1;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_lock_tostring(lua_State *L) {
    aa_lock *lk = (aa_lock *)luaL_checkudata(L, 1, AA_LOCK_MT);
    lua_pushstring(L, lk->fd >= 0 ? "account_activity.core.flock<held>" : "account_activity.core.flock<released>");
    return 1;
}

/* core.write_private(path, data) -> true | nil, err: a new file (O_EXCL),
 * mode 0600 from its first byte (a token file must never be readable by
 * others, not even between a write and a chmod), synced before it returns so
 * a rename over the old file never leaves an empty one after a crash. */
static int l_write_private(lua_State *L) {
    size_t n, off = 0;
    const char *path = luaL_checkstring(L, 1);
    const char *data = luaL_checklstring(L, 2, &n);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) goto fail;
    while (off < n) {
        ssize_t w = write(fd, data + off, n - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            goto fail_close;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) goto fail_close;
    if (close(fd) != 0) {
        fd = -1;
        goto fail_unlink;
    }
    lua_pushboolean(L, 1);
    return 1;
fail_close: {
        int e = errno;
        close(fd);
        errno = e;
    }
fail_unlink: {
        int e = errno;
        unlink(path);
        errno = e;
    }
fail:
    lua_pushnil(L);
    lua_pushfstring(L, "cannot write %s: %s", path, strerror(errno));
    return 2;
}

/* One metatable per class: methods in __index (so metamethods are not
 * callable as methods), close doubling as __gc and __close, and a protected
 * __metatable so Lua code cannot swap the finalizer. */
void aa_new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc,
                  lua_CFunction close, lua_CFunction tostring) {
    if (aa_newmetatable(L, name)) {
        lua_newtable(L);
        aa_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, close);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushstring(L, name);
        lua_setfield(L, -2, "__metatable");
    }
    lua_pop(L, 1);
}

static const luaL_Reg lock_methods[] = {
    {"unlock", l_unlock},
    {NULL, NULL}};

static const luaL_Reg funcs[] = {
    {"version", l_version},
    {"sleep", l_sleep},
    {"now", l_now},
    {"time", l_time},
    {"flock", l_flock},
    {"write_private", l_write_private},
    {NULL, NULL}};

AA_EXPORT int luaopen_account_activity_core(lua_State *L) {
    aa_new_class(L, AA_LOCK_MT, lock_methods, l_unlock, l_unlock, l_lock_tostring);
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
