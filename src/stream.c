/* HTTP on libcurl, streams: long-lived responses read line by line (see http.h). */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "http.h"

/* ---- pull-mode streams (long-lived responses read line by line) ---------
 * The caller drives libcurl from read_line(): curl_multi runs only inside
 * that call, the write callback only appends to the buffer (pausing the
 * transfer when the reader falls behind), and lines are pushed to Lua after
 * libcurl returns. */

#define STREAM_MT "account_activity.Stream"
#define STREAM_HIGH_WATER ((size_t)4 << 20)
/* read_all()'s default cap: an error answer's body is read for its message,
 * and past this it is a hostile or broken server */
#define STREAM_READ_ALL_MAX ((size_t)64 << 10)

typedef struct {
    transfer t; /* first: the callbacks get a transfer* that is a stream* */
    CURLM *multi;
    size_t consumed;
    long timeout_ms; /* the session's, read_all()'s default deadline */
    CURLcode result;
    int done, paused, headers_done, informational, closed;
} stream;

static size_t on_stream_body(char *p, size_t size, size_t n, void *ud) {
    stream *st = (stream *)ud;
    size_t len = size * n;
    if (st->t.body.len - st->consumed > STREAM_HIGH_WATER) {
        st->paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    }
    return http_buf_append(&st->t.body, p, len) ? len : 0;
}

static size_t on_stream_header(char *p, size_t size, size_t n, void *ud) {
    stream *st = (stream *)ud;
    size_t len = size * n;
    if (len >= 12 && memcmp(p, "HTTP/", 5) == 0) {
        const char *sp = memchr(p, ' ', len);
        st->informational = sp != NULL && sp + 1 < p + len && sp[1] == '1';
    } else if ((len == 2 && p[0] == '\r' && p[1] == '\n') || (len == 1 && p[0] == '\n')) {
        if (!st->informational) st->headers_done = 1;
    }
    return http_buf_append(&st->t.hdrs, p, len) ? len : 0;
}

static void stream_release(stream *st) {
    if (st->closed) return;
    st->closed = 1;
    if (st->multi && st->t.easy) curl_multi_remove_handle(st->multi, st->t.easy);
    http_transfer_free(&st->t);
    if (st->multi) curl_multi_cleanup(st->multi);
    st->multi = NULL;
}

/* One round of libcurl work, waiting at most wait_ms for activity. */
static void stream_pump(stream *st, int wait_ms) {
    int running = 0, q = 0;
    CURLMsg *m;
    if (st->done) return;
    if (st->paused && st->t.body.len - st->consumed < STREAM_HIGH_WATER / 2) {
        st->paused = 0;
        curl_easy_pause(st->t.easy, CURLPAUSE_CONT);
    }
    curl_multi_perform(st->multi, &running);
    while ((m = curl_multi_info_read(st->multi, &q)) != NULL) {
        if (m->msg == CURLMSG_DONE) {
            st->result = m->data.result;
            st->done = 1;
        }
    }
    if (!st->done && wait_ms > 0) curl_multi_poll(st->multi, NULL, 0, wait_ms, NULL);
}

static stream *check_stream(lua_State *L) {
    stream *st = (stream *)luaL_checkudata(L, 1, STREAM_MT);
    if (st->closed) luaL_argerror(L, 1, "the stream is closed");
    return st;
}

int http_stream_open(lua_State *L) {
    session *s = http_check_session(L, 1);
    stream *st;
    const char *bad;
    double deadline;
    luaL_checktype(L, 2, LUA_TTABLE);
    st = (stream *)lua_newuserdata(L, sizeof(stream));
    memset(st, 0, sizeof *st);
    luaL_getmetatable(L, STREAM_MT);
    lua_setmetatable(L, -2);
    bad = http_setup_transfer(L, s, &st->t, 2, 2, 1);
    if (bad) {
        stream_release(st);
        lua_pushnil(L);
        http_push_argument_error(L, bad);
        return 2;
    }
    /* a stream lives on its own connection and outlives nothing of the
     * session: no shared cache, no overall deadline unless asked for */
    curl_easy_setopt(st->t.easy, CURLOPT_SHARE, NULL);
    lua_getfield(L, 2, "timeout");
    if (lua_isnil(L, -1)) curl_easy_setopt(st->t.easy, CURLOPT_TIMEOUT_MS, 0L);
    lua_pop(L, 1);
    curl_easy_setopt(st->t.easy, CURLOPT_WRITEFUNCTION, on_stream_body);
    curl_easy_setopt(st->t.easy, CURLOPT_WRITEDATA, (void *)st);
    curl_easy_setopt(st->t.easy, CURLOPT_HEADERFUNCTION, on_stream_header);
    curl_easy_setopt(st->t.easy, CURLOPT_HEADERDATA, (void *)st);
    st->multi = curl_multi_init();
    if (st->multi == NULL || curl_multi_add_handle(st->multi, st->t.easy) != CURLM_OK) {
        stream_release(st);
        return luaL_error(L, "libcurl could not start a stream");
    }
    st->timeout_ms = s->timeout_ms;
    deadline = (aa_mono() * 1000.0) + (double)s->timeout_ms;
    while (!st->headers_done && !st->done) {
        double left = deadline - (aa_mono() * 1000.0);
        if (left <= 0) {
            stream_release(st);
            lua_pushnil(L);
            lua_pushliteral(L, "no response headers within the session timeout");
            http_push_err(L, "timeout", 0);
            return 2;
        }
        stream_pump(st, left > 200 ? 200 : (int)left + 1);
    }
    if (st->done && st->result != CURLE_OK && !st->headers_done) {
        lua_pushnil(L);
        http_push_error(L, &st->t, st->result);
        stream_release(st);
        return 2;
    }
    lua_createtable(L, 0, 3);
    {
        long status = 0;
        curl_easy_getinfo(st->t.easy, CURLINFO_RESPONSE_CODE, &status);
        lua_pushinteger(L, (lua_Integer)status);
        lua_setfield(L, -2, "status");
    }
    http_push_headers(L, &st->t);
    lua_setfield(L, -2, "headers");
    return 2;
}

static void push_stream_end(lua_State *L, stream *st) {
    size_t left = st->t.body.len - st->consumed;
    if (st->result != CURLE_OK) {
        http_push_error(L, &st->t, st->result);
    } else {
        lua_pushliteral(L, "the server ended the stream");
        http_push_err(L, "closed", 0);
    }
    /* a line cut off by the end of the stream is reported, never returned */
    lua_pushinteger(L, (lua_Integer)left);
    lua_setfield(L, -2, "partial_bytes");
}

static int l_stream_read_line(lua_State *L) {
    stream *st = check_stream(L);
    lua_Number timeout = luaL_optnumber(L, 2, 30);
    double deadline;
    luaL_argcheck(L, timeout >= 0 && timeout <= 86400, 2, "must be between 0 and 86400 seconds");
    deadline = (aa_mono() * 1000.0) + timeout * 1000.0;
    for (;;) {
        char *start = st->t.body.data ? st->t.body.data + st->consumed : NULL;
        size_t avail = st->t.body.len - st->consumed;
        char *nl = avail ? (char *)memchr(start, '\n', avail) : NULL;
        if (nl != NULL) {
            size_t linelen = (size_t)(nl - start);
            if (linelen > 0 && start[linelen - 1] == '\r') linelen--;
            lua_pushlstring(L, start, linelen);
            st->consumed += (size_t)(nl - start) + 1;
            if (st->consumed == st->t.body.len) {
                st->consumed = 0;
                st->t.body.len = 0;
            } else if (st->consumed > (64u << 10) && st->consumed * 2 > st->t.body.len) {
                memmove(st->t.body.data, st->t.body.data + st->consumed, st->t.body.len - st->consumed);
                st->t.body.len -= st->consumed;
                st->consumed = 0;
            }
            return 1;
        }
        if (st->done) {
            lua_pushnil(L);
            push_stream_end(L, st);
            return 2;
        }
        {
            double left = deadline - (aa_mono() * 1000.0);
            if (left <= 0) {
                lua_pushnil(L);
                lua_pushliteral(L, "no complete line within the timeout; the stream is still open");
                http_push_err(L, "timeout", 0);
                return 2;
            }
            stream_pump(st, left > 1000 ? 1000 : (int)left + 1);
        }
    }
}

/* st:read_all([max_bytes [, timeout]]) -> body [, "truncated" | "timeout"]
 * The rest of the body, for an error answer: at most max_bytes (default
 * 64 KiB; what is past it is dropped and the reading stops), within timeout
 * seconds (default the session's timeout). A body that never ends or never
 * stops cannot hold the caller, and the buffer stays below the high-water
 * mark, so the transfer is never paused with nobody left to resume it.
 * A transfer error: nil, err. */
static int l_stream_read_all(lua_State *L) {
    stream *st = check_stream(L);
    lua_Number max = luaL_optnumber(L, 2, (lua_Number)STREAM_READ_ALL_MAX);
    lua_Number timeout = luaL_optnumber(L, 3, (lua_Number)st->timeout_ms / 1000.0);
    const char *cut = NULL;
    size_t cap;
    double deadline;
    luaL_argcheck(L, max >= 0 && max <= (lua_Number)(STREAM_HIGH_WATER / 2), 2, "must be from 0 to 2 MiB");
    luaL_argcheck(L, timeout >= 0 && timeout <= 86400, 3, "must be between 0 and 86400 seconds");
    cap = (size_t)max;
    deadline = (aa_mono() * 1000.0) + timeout * 1000.0;
    for (;;) {
        double left;
        if (st->t.body.len - st->consumed >= cap && (!st->done || st->t.body.len - st->consumed > cap)) {
            st->t.body.len = st->consumed + cap;
            cut = "truncated";
            break;
        }
        if (st->done) break;
        left = deadline - (aa_mono() * 1000.0);
        if (left <= 0) {
            cut = "timeout";
            break;
        }
        stream_pump(st, left > 200 ? 200 : (int)left + 1);
    }
    if (cut == NULL && st->result != CURLE_OK) {
        lua_pushnil(L);
        http_push_error(L, &st->t, st->result);
        return 2;
    }
    lua_pushlstring(L, st->t.body.data ? st->t.body.data + st->consumed : "", st->t.body.len - st->consumed);
    st->consumed = st->t.body.len;
    if (cut == NULL) return 1;
    lua_pushstring(L, cut);
    return 2;
}

static int l_stream_close(lua_State *L) {
    stream_release((stream *)luaL_checkudata(L, 1, STREAM_MT));
    return 0;
}

static int l_stream_tostring(lua_State *L) {
    stream *st = (stream *)luaL_checkudata(L, 1, STREAM_MT);
    if (st->closed) lua_pushliteral(L, "account_activity.Stream (closed)");
    else
        lua_pushfstring(L, "account_activity.Stream (%s, %d bytes buffered)", st->done ? "ended" : "open",
                        (int)(st->t.body.len - st->consumed));
    return 1;
}

static const luaL_Reg stream_methods[] = {
    {"read_line", l_stream_read_line},
    {"read_all", l_stream_read_all},
    {"close", l_stream_close},
    {NULL, NULL}};

void http_open_stream(lua_State *L) {
    aa_new_class(L, STREAM_MT, stream_methods, l_stream_close, l_stream_close, l_stream_tostring);
}
