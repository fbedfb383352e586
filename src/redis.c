/* Redis over hiredis: a blocking connection for scripts (Lua 5.4, LuaJIT)
 * and hiredis's protocol pieces (command formatting, a reply reader) for the
 * cosocket client inside nginx, so both sides share one maintained parser.
 *
 * Replies in Lua: bulk string -> string, integer -> integer, status ->
 * { ok = "OK" }, error -> { err = "..." } inside arrays and pipelines (a
 * lone command's error reply is nil, message, "redis"), nil -> redis_null
 * (a NULL light userdata: equal to cjson.null and ngx.null).
 *
 * Rule: nothing that can raise runs while hiredis holds memory we did not
 * park somewhere a later call or __gc frees: a reply being turned into Lua
 * values sits in `held` until it is done. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <hiredis/hiredis.h>
#include "aa.h"

#define CONN_MT "account_activity.RedisConnection"
#define READER_MT "account_activity.RedisReader"
#define MAX_ARGS 1000000
/* A reply nests arrays: XREADGROUP's is 4 deep, XAUTOCLAIM's 5; hiredis
 * itself stops at 7. */
#define MAX_DEPTH 16

typedef struct {
    redisContext *c;
    redisReply *held;
    char host[256];
    int port, db;
    long timeout_ms;
    int out_of_sync; /* replies left unread after a raise: the connection is unusable */
} conn;

typedef struct {
    redisReader *r;
    redisReply *held;
} reader;

/* ---- replies -> Lua ----------------------------------------------------- */

static void push_reply(lua_State *L, const redisReply *r, int depth) {
    size_t i;
    luaL_checkstack(L, 4, "redis reply too deep");
    switch (r->type) {
    case REDIS_REPLY_STRING:
        lua_pushlstring(L, r->str, r->len);
        break;
    case REDIS_REPLY_INTEGER:
        lua_pushinteger(L, (lua_Integer)r->integer);
        break;
    case REDIS_REPLY_STATUS:
        lua_createtable(L, 0, 1);
        lua_pushlstring(L, r->str, r->len);
        lua_setfield(L, -2, "ok");
        break;
    case REDIS_REPLY_ERROR:
        lua_createtable(L, 0, 1);
        lua_pushlstring(L, r->str, r->len);
        lua_setfield(L, -2, "err");
        break;
    case REDIS_REPLY_ARRAY:
        if (depth >= MAX_DEPTH) {
            lua_pushnil(L);
            break;
        }
        lua_createtable(L, r->elements > 0x7fffffff ? 0 : (int)r->elements, 0);
        for (i = 0; i < r->elements; i++) {
            push_reply(L, r->element[i], depth + 1);
            lua_rawseti(L, -2, (int)i + 1);
        }
        break;
    default: /* REDIS_REPLY_NIL */
        lua_pushlightuserdata(L, NULL);
        break;
    }
}

/* ---- argv from Lua ------------------------------------------------------ */

typedef struct {
    int argc;
    const char **argv;
    size_t *lens;
} argv_t;

/* Reads the array at idx (strings or numbers) into C arrays owned by Lua
 * userdata left on the stack, with numbers turned into strings kept alive in
 * a scratch table (also left on the stack): two values pushed. */
static void check_argv(lua_State *L, int idx, const char *fname, argv_t *out) {
    int n, i;
    if (lua_type(L, idx) != LUA_TTABLE)
        luaL_error(L, "bad argument 'argv' to '%s' (table expected, got %s)", fname, luaL_typename(L, idx));
    n = (int)aa_rawlen(L, idx);
    if (n < 1 || n > MAX_ARGS)
        luaL_error(L, "bad argument 'argv' to '%s' (a non-empty array of strings expected)", fname);
    out->argc = n;
    out->argv = (const char **)lua_newuserdata(L, sizeof(char *) * (size_t)n + sizeof(size_t) * (size_t)n);
    out->lens = (size_t *)(void *)(out->argv + n);
    lua_newtable(L); /* keeps converted numbers alive */
    for (i = 1; i <= n; i++) {
        int t;
        lua_rawgeti(L, idx, i);
        t = lua_type(L, -1);
        if (t == LUA_TSTRING) {
            out->argv[i - 1] = lua_tolstring(L, -1, &out->lens[i - 1]); /* the table keeps it */
            lua_pop(L, 1);
        } else if (t == LUA_TNUMBER) {
            out->argv[i - 1] = lua_tolstring(L, -1, &out->lens[i - 1]);
            lua_rawseti(L, -2, i);
        } else {
            luaL_error(L, "bad argument 'argv' to '%s' (element %d: string or number expected, got %s)",
                       fname, i, lua_typename(L, t));
        }
    }
}

/* ---- the connection ------------------------------------------------------ */

static conn *check_conn(lua_State *L, int idx) {
    return (conn *)luaL_checkudata(L, idx, CONN_MT);
}

static void conn_release(conn *c) {
    if (c->held) freeReplyObject(c->held);
    c->held = NULL;
    if (c->c) redisFree(c->c);
    c->c = NULL;
}

static struct timeval ms_tv(long ms) {
    struct timeval tv;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

/* nil, message, kind ("timeout" | "network"); the connection is dropped,
 * since a half-read reply leaves it out of step with the server. */
static int io_failure(lua_State *L, conn *c, const char *what) {
    int timed_out = c->c && c->c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK);
    lua_pushnil(L);
    if (timed_out)
        lua_pushfstring(L, "redis %s:%d: %s timed out after %d ms", c->host, c->port, what, (int)c->timeout_ms);
    else
        lua_pushfstring(L, "redis %s:%d: %s failed: %s", c->host, c->port, what,
                        c->c && c->c->errstr[0] ? c->c->errstr : "connection closed");
    lua_pushstring(L, timed_out ? "timeout" : "network");
    conn_release(c);
    return 3;
}

static int conn_ready(lua_State *L, conn *c) {
    if (c->held) {
        freeReplyObject(c->held);
        c->held = NULL;
    }
    if (c->out_of_sync) conn_release(c);
    if (c->c == NULL) {
        lua_pushnil(L);
        lua_pushfstring(L, "redis %s:%d: the connection is closed", c->host, c->port);
        lua_pushliteral(L, "network");
        return 3;
    }
    return 0;
}

/* One round trip for argc commands appended already; pushes the replies
 * (as_array: in a table, else the one reply). */
static int read_replies(lua_State *L, conn *c, int count, int as_array) {
    int i;
    if (as_array) lua_createtable(L, count, 0);
    c->out_of_sync = 1;
    for (i = 1; i <= count; i++) {
        void *r = NULL;
        if (redisGetReply(c->c, &r) != REDIS_OK || r == NULL) return io_failure(L, c, "read");
        c->held = (redisReply *)r;
        if (!as_array && c->held->type == REDIS_REPLY_ERROR) {
            lua_pushnil(L);
            lua_pushlstring(L, c->held->str, c->held->len);
            lua_pushliteral(L, "redis");
            freeReplyObject(c->held);
            c->held = NULL;
            c->out_of_sync = 0;
            return 3;
        }
        push_reply(L, c->held, 0);
        freeReplyObject(c->held);
        c->held = NULL;
        if (as_array) lua_rawseti(L, -2, i);
    }
    c->out_of_sync = 0;
    return 1;
}

static int l_conn_command(lua_State *L) {
    conn *c = check_conn(L, 1);
    argv_t a;
    int rc;
    check_argv(L, 2, "command", &a);
    if ((rc = conn_ready(L, c)) != 0) return rc;
    if (redisAppendCommandArgv(c->c, a.argc, a.argv, a.lens) != REDIS_OK) return io_failure(L, c, "write");
    return read_replies(L, c, 1, 0);
}

static int l_conn_pipeline(lua_State *L) {
    conn *c = check_conn(L, 1);
    int n, i, rc;
    luaL_checktype(L, 2, LUA_TTABLE);
    n = (int)aa_rawlen(L, 2);
    if (n < 1) return luaL_argerror(L, 2, "a non-empty array of commands expected");
    if ((rc = conn_ready(L, c)) != 0) return rc;
    for (i = 1; i <= n; i++) {
        argv_t a;
        int top = lua_gettop(L);
        lua_rawgeti(L, 2, i);
        check_argv(L, lua_gettop(L), "pipeline", &a);
        rc = redisAppendCommandArgv(c->c, a.argc, a.argv, a.lens);
        lua_settop(L, top);
        if (rc != REDIS_OK) return io_failure(L, c, "write");
    }
    return read_replies(L, c, n, 1);
}

/* conn:timeout(ms): the deadline of every later read and write (a blocking
 * XREADGROUP wants more than its BLOCK time). */
static int l_conn_timeout(lua_State *L) {
    conn *c = check_conn(L, 1);
    lua_Integer ms = luaL_checkinteger(L, 2);
    luaL_argcheck(L, ms > 0 && ms <= 86400000, 2, "must be between 1 and 86400000 ms");
    c->timeout_ms = (long)ms;
    if (c->c && redisSetTimeout(c->c, ms_tv(c->timeout_ms)) != REDIS_OK) return io_failure(L, c, "setting the timeout");
    lua_pushvalue(L, 1);
    return 1;
}

static int l_conn_close(lua_State *L) {
    conn_release(check_conn(L, 1));
    return 0;
}

static int l_conn_tostring(lua_State *L) {
    conn *c = check_conn(L, 1);
    lua_pushfstring(L, "account_activity.redis(%s:%d db %d, %s)", c->host, c->port, c->db,
                    c->c ? "open" : "closed");
    return 1;
}

/* One command during connect (AUTH, SELECT): NULL or the error text. */
static const char *setup_command(conn *c, int argc, const char **argv, char *err, size_t errlen) {
    redisReply *r = (redisReply *)redisCommandArgv(c->c, argc, argv, NULL);
    if (r == NULL) {
        snprintf(err, errlen, "%s", c->c->errstr[0] ? c->c->errstr : "no reply");
        return err;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "%.*s", (int)(r->len > 200 ? 200 : r->len), r->str);
        freeReplyObject(r);
        return err;
    }
    freeReplyObject(r);
    return NULL;
}

static long opt_int(lua_State *L, const char *name, long def, long lo, long hi) {
    long v = def;
    int t = aa_getfield(L, 1, name);
    if (t != LUA_TNIL) {
        if (t != LUA_TNUMBER) luaL_error(L, "bad argument '%s' to 'redis_connect' (number expected, got %s)", name, lua_typename(L, t));
        v = (long)lua_tointeger(L, -1);
        if (v < lo || v > hi) luaL_error(L, "bad argument '%s' to 'redis_connect' (must be between %d and %d)", name, (int)lo, (int)hi);
    }
    lua_pop(L, 1);
    return v;
}

/* core.redis_connect{host, port, timeout_ms, password, db} -> conn | nil, err, kind */
static int l_redis_connect(lua_State *L) {
    conn *c;
    const char *host = "127.0.0.1", *password = NULL;
    size_t hostlen = 9, pwlen = 0;
    char err[256];
    const char *why;
    int t;
    luaL_checktype(L, 1, LUA_TTABLE);
    t = aa_getfield(L, 1, "host");
    if (t != LUA_TNIL) {
        if (t != LUA_TSTRING) return luaL_error(L, "bad argument 'host' to 'redis_connect' (string expected, got %s)", lua_typename(L, t));
        host = lua_tolstring(L, -1, &hostlen);
        if (hostlen == 0 || hostlen >= 256 || strlen(host) != hostlen)
            return luaL_error(L, "bad argument 'host' to 'redis_connect' (a host name or address expected)");
    }
    t = aa_getfield(L, 1, "password");
    if (t != LUA_TNIL) {
        if (t != LUA_TSTRING) return luaL_error(L, "bad argument 'password' to 'redis_connect' (string expected, got %s)", lua_typename(L, t));
        password = lua_tolstring(L, -1, &pwlen);
    }
    c = (conn *)lua_newuserdata(L, sizeof(conn));
    memset(c, 0, sizeof *c);
    luaL_getmetatable(L, CONN_MT);
    lua_setmetatable(L, -2);
    memcpy(c->host, host, hostlen + 1);
    c->port = (int)opt_int(L, "port", 6379, 1, 65535);
    c->db = (int)opt_int(L, "db", 0, 0, 1000000);
    c->timeout_ms = opt_int(L, "timeout_ms", 1000, 1, 86400000);
    c->c = redisConnectWithTimeout(c->host, c->port, ms_tv(c->timeout_ms));
    if (c->c == NULL || c->c->err) {
        lua_pushnil(L);
        lua_pushfstring(L, "redis %s:%d: cannot connect: %s", c->host, c->port,
                        c->c ? c->c->errstr : "out of memory");
        lua_pushliteral(L, "network");
        conn_release(c);
        return 3;
    }
    if (redisSetTimeout(c->c, ms_tv(c->timeout_ms)) != REDIS_OK) return io_failure(L, c, "setting the timeout");
    if (password) {
        const char *argv[2];
        size_t lens[2];
        redisReply *r;
        argv[0] = "AUTH";
        argv[1] = password;
        lens[0] = 4;
        lens[1] = pwlen;
        r = (redisReply *)redisCommandArgv(c->c, 2, argv, lens);
        if (r == NULL) return io_failure(L, c, "AUTH");
        if (r->type == REDIS_REPLY_ERROR) {
            /* The server's words only: they never echo the password. */
            lua_pushnil(L);
            lua_pushfstring(L, "redis %s:%d: AUTH refused: %s", c->host, c->port,
                            r->len > 200 ? "(long error)" : r->str);
            lua_pushliteral(L, "auth");
            freeReplyObject(r);
            conn_release(c);
            return 3;
        }
        freeReplyObject(r);
    }
    if (c->db != 0) {
        char num[24];
        const char *argv[2];
        snprintf(num, sizeof num, "%d", c->db);
        argv[0] = "SELECT";
        argv[1] = num;
        if ((why = setup_command(c, 2, argv, err, sizeof err)) != NULL) {
            lua_pushnil(L);
            lua_pushfstring(L, "redis %s:%d: SELECT %d failed: %s", c->host, c->port, c->db, why);
            lua_pushliteral(L, "network");
            conn_release(c);
            return 3;
        }
    }
    return 1;
}

/* ---- protocol pieces for the cosocket client ---------------------------- */

/* core.redis_format(argv) -> the command in RESP bytes */
static int l_redis_format(lua_State *L) {
    argv_t a;
    char *out = NULL;
    int n;
    check_argv(L, 1, "redis_format", &a);
    n = redisFormatCommandArgv(&out, a.argc, a.argv, a.lens);
    if (n < 0 || out == NULL) return luaL_error(L, "redis_format: out of memory");
    lua_pushlstring(L, out, (size_t)n); /* may raise (memory): out is lost then, as with any OOM */
    redisFreeCommand(out);
    return 1;
}

static reader *check_reader(lua_State *L, int idx) {
    reader *r = (reader *)luaL_checkudata(L, idx, READER_MT);
    if (r->r == NULL) luaL_argerror(L, idx, "the reader is closed");
    return r;
}

static int l_reader_gc(lua_State *L) {
    reader *r = (reader *)luaL_checkudata(L, 1, READER_MT);
    if (r->held) freeReplyObject(r->held);
    r->held = NULL;
    if (r->r) redisReaderFree(r->r);
    r->r = NULL;
    return 0;
}

static int l_redis_reader(lua_State *L) {
    reader *r = (reader *)lua_newuserdata(L, sizeof(reader));
    memset(r, 0, sizeof *r);
    luaL_getmetatable(L, READER_MT);
    lua_setmetatable(L, -2);
    r->r = redisReaderCreate();
    if (r->r == NULL) return luaL_error(L, "redis_reader: out of memory");
    return 1;
}

static int l_reader_feed(lua_State *L) {
    reader *r = check_reader(L, 1);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    if (redisReaderFeed(r->r, s, n) != REDIS_OK) {
        lua_pushnil(L);
        lua_pushstring(L, r->r->errstr[0] ? r->r->errstr : "redis reader: cannot buffer the input");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* reader:get() -> reply | false (more bytes needed) | nil, protocol error */
static int l_reader_get(lua_State *L) {
    reader *r = check_reader(L, 1);
    void *reply = NULL;
    if (r->held) {
        freeReplyObject(r->held);
        r->held = NULL;
    }
    if (redisReaderGetReply(r->r, &reply) != REDIS_OK) {
        lua_pushnil(L);
        lua_pushfstring(L, "redis protocol error: %s", r->r->errstr);
        return 2;
    }
    if (reply == NULL) {
        lua_pushboolean(L, 0);
        return 1;
    }
    r->held = (redisReply *)reply;
    push_reply(L, r->held, 0);
    freeReplyObject(r->held);
    r->held = NULL;
    return 1;
}

static int l_reader_tostring(lua_State *L) {
    reader *r = (reader *)luaL_checkudata(L, 1, READER_MT);
    lua_pushfstring(L, "account_activity.redis_reader(%s)", r->r ? "open" : "closed");
    return 1;
}

static const luaL_Reg conn_methods[] = {
    {"command", l_conn_command},
    {"pipeline", l_conn_pipeline},
    {"timeout", l_conn_timeout},
    {"close", l_conn_close},
    {NULL, NULL}};

static const luaL_Reg reader_methods[] = {
    {"feed", l_reader_feed},
    {"get", l_reader_get},
    {"close", l_reader_gc},
    {NULL, NULL}};

static const luaL_Reg funcs[] = {
    {"redis_connect", l_redis_connect},
    {"redis_format", l_redis_format},
    {"redis_reader", l_redis_reader},
    {NULL, NULL}};

void aa_open_redis(lua_State *L) {
    aa_new_class(L, CONN_MT, conn_methods, l_conn_close, l_conn_close, l_conn_tostring);
    aa_new_class(L, READER_MT, reader_methods, l_reader_gc, l_reader_gc, l_reader_tostring);
    aa_setfuncs(L, funcs, 0);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "redis_null");
}
