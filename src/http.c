/* HTTP on libcurl: a Session userdata with a shared connection cache,
 * one-request calls on a reused easy handle, and batches on curl_multi.
 *
 * Rule: no Lua API call that can raise runs while libcurl is on the stack.
 * The write/header callbacks only append to C buffers owned by the session
 * (or by a batch userdata); Lua values are built after libcurl returns. */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>
#include "aa.h"

#define SESSION_MT "account_activity.Session"
#define MAX_BODY ((size_t)256 << 20)

typedef struct {
    char *data;
    size_t len, cap;
} buf;

typedef struct {
    CURL *easy;
    struct curl_slist *headers;
    buf body, hdrs;
    char errbuf[CURL_ERROR_SIZE];
    int index; /* 1-based position in the batch; 0 when idle */
    int too_big;
} transfer;

typedef struct {
    CURLSH *share;
    CURLM *multi;
    transfer single;
    transfer *slots; /* perform(): malloc'd, nslots long */
    int nslots;
    long timeout_ms, connect_timeout_ms;
    char *ca_file, *ca_path, *user_agent;
    int insecure, closed, busy;
    unsigned long requests;
} session;

/* ---- buffers (no Lua calls: they run inside libcurl callbacks) ---------- */

static int buf_append(buf *b, const char *p, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 4096;
        char *nd;
        while (ncap < b->len + n + 1) ncap *= 2;
        nd = (char *)realloc(b->data, ncap);
        if (nd == NULL) return 0;
        b->data = nd;
        b->cap = ncap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 1;
}

static void buf_reset(buf *b) {
    /* keep a modest buffer for the next request; give big ones back */
    if (b->cap > (1u << 20)) {
        free(b->data);
        b->data = NULL;
        b->cap = 0;
    }
    b->len = 0;
}

static void buf_free(buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
    transfer *t = (transfer *)ud;
    size_t len = size * n;
    if (t->body.len + len > MAX_BODY) {
        t->too_big = 1;
        return 0;
    }
    return buf_append(&t->body, p, len) ? len : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
    transfer *t = (transfer *)ud;
    size_t len = size * n;
    return buf_append(&t->hdrs, p, len) ? len : 0;
}

static void transfer_reset(transfer *t) {
    if (t->headers) {
        curl_slist_free_all(t->headers);
        t->headers = NULL;
    }
    buf_reset(&t->body);
    buf_reset(&t->hdrs);
    t->errbuf[0] = '\0';
    t->too_big = 0;
}

static void transfer_free(transfer *t) {
    if (t->headers) curl_slist_free_all(t->headers);
    t->headers = NULL;
    if (t->easy) curl_easy_cleanup(t->easy);
    t->easy = NULL;
    buf_free(&t->body);
    buf_free(&t->hdrs);
}

/* ---- session ------------------------------------------------------------ */

static session *check_session(lua_State *L, int idx) {
    session *s = (session *)luaL_checkudata(L, idx, SESSION_MT);
    if (s->closed) luaL_argerror(L, idx, "the session is closed");
    return s;
}

static void session_release(session *s) {
    int i;
    if (s->closed) return;
    s->closed = 1;
    transfer_free(&s->single);
    for (i = 0; i < s->nslots; i++) transfer_free(&s->slots[i]);
    free(s->slots);
    s->slots = NULL;
    s->nslots = 0;
    if (s->multi) curl_multi_cleanup(s->multi);
    if (s->share) curl_share_cleanup(s->share);
    s->multi = NULL;
    s->share = NULL;
    free(s->ca_file);
    free(s->ca_path);
    free(s->user_agent);
    s->ca_file = s->ca_path = s->user_agent = NULL;
}

static int l_session_close(lua_State *L) {
    session *s = (session *)luaL_checkudata(L, 1, SESSION_MT);
    if (s->busy) return luaL_error(L, "session is busy: close() called from inside perform()");
    session_release(s);
    return 0;
}

static int l_session_gc(lua_State *L) {
    session *s = (session *)luaL_checkudata(L, 1, SESSION_MT);
    session_release(s);
    return 0;
}

static int l_session_tostring(lua_State *L) {
    session *s = (session *)luaL_checkudata(L, 1, SESSION_MT);
    if (s->closed) {
        lua_pushliteral(L, "account_activity.Session (closed)");
        return 1;
    }
    lua_pushfstring(L, "account_activity.Session (timeout=%ds, connect_timeout=%ds, tls=%s%s%s%s%s, requests=%d)",
                    (int)(s->timeout_ms / 1000), (int)(s->connect_timeout_ms / 1000),
                    s->insecure ? "INSECURE: certificate verification off" : "verified",
                    s->ca_file ? ", ca_file=" : "", s->ca_file ? s->ca_file : "",
                    s->ca_path ? ", ca_path=" : "", s->ca_path ? s->ca_path : "", (int)s->requests);
    return 1;
}

static char *dup_string(lua_State *L, const char *s, size_t n) {
    char *d = (char *)malloc(n + 1);
    if (d == NULL) luaL_error(L, "out of memory");
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static long opt_ms(lua_State *L, int t, const char *field, long dflt) {
    int ty = aa_getfield(L, t, field);
    lua_Number v;
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        return dflt;
    }
    if (ty != LUA_TNUMBER) {
        lua_pushfstring(L, "field '%s' must be a number of seconds", field);
        luaL_argerror(L, t, lua_tostring(L, -1));
    }
    v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (!(v > 0 && v <= 86400)) {
        lua_pushfstring(L, "field '%s' must be between 0 and 86400 seconds", field);
        luaL_argerror(L, t, lua_tostring(L, -1));
    }
    return (long)(v * 1000 + 0.5) < 1 ? 1 : (long)(v * 1000 + 0.5);
}

static int has_crlf(const char *s, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return 1;
    return 0;
}

static char *opt_path(lua_State *L, int t, const char *field) {
    int ty = aa_getfield(L, t, field);
    size_t n;
    const char *s;
    char *r;
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        return NULL;
    }
    if (ty != LUA_TSTRING) {
        lua_pushfstring(L, "field '%s' must be a string", field);
        luaL_argerror(L, t, lua_tostring(L, -1));
    }
    s = lua_tolstring(L, -1, &n);
    if (has_crlf(s, n)) {
        lua_pushfstring(L, "field '%s' must not contain CR, LF or NUL", field);
        luaL_argerror(L, t, lua_tostring(L, -1));
    }
    r = dup_string(L, s, n);
    lua_pop(L, 1);
    return r;
}

static int l_session_new(lua_State *L) {
    session *s;
    int has_opts = !lua_isnoneornil(L, 1);
    if (has_opts) luaL_checktype(L, 1, LUA_TTABLE);
    s = (session *)lua_newuserdata(L, sizeof(session));
    memset(s, 0, sizeof *s);
    s->closed = 1; /* until fully built, so __gc on an error frees nothing twice */
    luaL_getmetatable(L, SESSION_MT);
    lua_setmetatable(L, -2);
    s->closed = 0;
    s->timeout_ms = 30000;
    s->connect_timeout_ms = 10000;
    if (has_opts) {
        s->timeout_ms = opt_ms(L, 1, "timeout", 30000);
        s->connect_timeout_ms = opt_ms(L, 1, "connect_timeout", 10000);
        s->ca_file = opt_path(L, 1, "ca_file");
        s->ca_path = opt_path(L, 1, "ca_path");
        s->user_agent = opt_path(L, 1, "user_agent");
        lua_getfield(L, 1, "insecure");
        if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
            luaL_argerror(L, 1, "field 'insecure' must be a boolean");
        s->insecure = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    s->share = curl_share_init();
    s->multi = curl_multi_init();
    if (s->share == NULL || s->multi == NULL) return luaL_error(L, "libcurl could not create a session");
    /* One connection cache (and DNS cache) for request() and perform(). */
    curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
    curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    return 1;
}

/* ---- request setup ------------------------------------------------------ */

static int is_tchar(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int is_token(const char *s, size_t n) {
    size_t i;
    if (n == 0) return 0;
    for (i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i])) return 0;
    return 1;
}

/* Sets up t from the request table at ri. Raises on wrong types (naming
 * argument argn); returns NULL on success or a message for a value that must
 * not be sent (the caller returns it as an "argument" error). Anything
 * allocated is stored in t at once, so a raise leaves nothing unowned. */
static const char *setup_transfer(lua_State *L, session *s, transfer *t, int ri, int argn, int copy_body) {
    size_t ml, ul, bl = 0;
    const char *method, *url, *body = NULL;
    long timeout_ms = s->timeout_ms;
    int ty, fresh = 0;
    CURL *e;

    ty = aa_getfield(L, ri, "method");
    if (ty != LUA_TSTRING) luaL_argerror(L, argn, "field 'method' must be a string");
    method = lua_tolstring(L, -1, &ml);
    lua_pop(L, 1);
    ty = aa_getfield(L, ri, "url");
    if (ty != LUA_TSTRING) luaL_argerror(L, argn, "field 'url' must be a string");
    url = lua_tolstring(L, -1, &ul);
    lua_pop(L, 1);
    ty = aa_getfield(L, ri, "body");
    if (ty == LUA_TSTRING) body = lua_tolstring(L, -1, &bl);
    else if (ty != LUA_TNIL) luaL_argerror(L, argn, "field 'body' must be a string or nil");
    lua_pop(L, 1);
    ty = aa_getfield(L, ri, "timeout");
    lua_pop(L, 1);
    if (ty != LUA_TNIL) timeout_ms = opt_ms(L, ri, "timeout", s->timeout_ms);
    ty = aa_getfield(L, ri, "headers");
    if (ty != LUA_TNIL && ty != LUA_TTABLE) luaL_argerror(L, argn, "field 'headers' must be a table or nil");
    lua_pop(L, 1);

    if (!is_token(method, ml)) return "the method is not an HTTP token";
    if (has_crlf(url, ul) || memchr(url, ' ', ul) != NULL) return "the URL contains a space, CR, LF or NUL";
    if (!(ul > 7 && (strncmp(url, "http://", 7) == 0 || (ul > 8 && strncmp(url, "https://", 8) == 0))))
        return "the URL must start with http:// or https://";

    if (t->easy == NULL) {
        t->easy = curl_easy_init();
        if (t->easy == NULL) luaL_error(L, "libcurl could not create a handle");
        fresh = 1;
    }
    /* What is the same for every request of the session is set once per
     * handle; a handle is reused with only the per-request options changed
     * (curl_easy_reset and twenty setopts per call cost more than the
     * request parsing itself on a keep-alive connection). */
    if (fresh) {
        e = t->easy;
        curl_easy_setopt(e, CURLOPT_SHARE, s->share);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
        curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)t);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)t);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
        curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)t);
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
        curl_easy_setopt(e, CURLOPT_USERAGENT, s->user_agent ? s->user_agent : "lua-account-activity/" AA_VERSION);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, s->insecure ? 0L : 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, s->insecure ? 0L : 2L);
        if (s->ca_file) curl_easy_setopt(e, CURLOPT_CAINFO, s->ca_file);
        if (s->ca_path) curl_easy_setopt(e, CURLOPT_CAPATH, s->ca_path);
    }
    transfer_reset(t);
    e = t->easy;

    ty = aa_getfield(L, ri, "headers");
    if (ty == LUA_TTABLE) {
        int ht = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, ht)) {
            size_t kl, vl;
            const char *k, *v;
            char *line;
            struct curl_slist *nl;
            if (lua_type(L, -2) != LUA_TSTRING) luaL_argerror(L, argn, "header names must be strings");
            if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
                luaL_argerror(L, argn, "header values must be strings or numbers");
            k = lua_tolstring(L, -2, &kl);
            lua_pushvalue(L, -1);
            v = lua_tolstring(L, -1, &vl); /* a copy: never convert a number in a table in place */
            if (!is_token(k, kl)) {
                lua_pop(L, 4);
                return "a header name is not an HTTP token";
            }
            if (has_crlf(v, vl)) {
                lua_pop(L, 4);
                return "a header value contains CR, LF or NUL";
            }
            line = (char *)malloc(kl + vl + 3);
            if (line == NULL) luaL_error(L, "out of memory");
            memcpy(line, k, kl);
            if (vl == 0) {
                line[kl] = ';'; /* libcurl's way to send an empty header */
                line[kl + 1] = '\0';
            } else {
                line[kl] = ':';
                line[kl + 1] = ' ';
                memcpy(line + kl + 2, v, vl);
                line[kl + 2 + vl] = '\0';
            }
            nl = curl_slist_append(t->headers, line);
            free(line);
            if (nl == NULL) luaL_error(L, "out of memory");
            t->headers = nl;
            lua_pop(L, 2);
        }
    }
    lua_pop(L, 1);
    if (body != NULL && bl > 1024) {
        /* no 100-continue round trip for large bodies */
        struct curl_slist *nl = curl_slist_append(t->headers, "Expect:");
        if (nl == NULL) luaL_error(L, "out of memory");
        t->headers = nl;
    }

    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, s->connect_timeout_ms < timeout_ms ? s->connect_timeout_ms : timeout_ms);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    /* back to a plain GET before this request's method is applied */
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
    curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);

    if (ml == 4 && memcmp(method, "HEAD", 4) == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (ml == 3 && memcmp(method, "GET", 3) == 0 && body == NULL) {
        /* already a GET */
    } else {
        if (body != NULL || (ml == 4 && memcmp(method, "POST", 4) == 0)) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)bl);
            /* perform() runs user callbacks while transfers are in flight,
             * so its bodies are copied; request() runs none. */
            if (copy_body) curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body ? body : "");
            else curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : "");
        }
        if (!(ml == 4 && memcmp(method, "POST", 4) == 0)) {
            lua_pushlstring(L, method, ml); /* NUL-terminated copy for libcurl, which copies it again */
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    }
    s->requests++;
    return NULL;
}

/* ---- results ------------------------------------------------------------ */

/* Joins the values of each repeated name with ", " in one pass: the parts
 * wait in a side table until the end, so thousands of repeats cost what
 * their bytes cost (joining as they come copied the growing value each time:
 * 50,000 repeats took a second within libcurl's 300 KB of headers). */
static void join_repeated(lua_State *L, int parts, int h) {
    lua_pushnil(L);
    while (lua_next(L, parts)) {
        int list = lua_gettop(L), i, n = (int)aa_rawlen(L, list);
        luaL_Buffer b;
        lua_pushvalue(L, list - 1);
        luaL_buffinit(L, &b);
        for (i = 1; i <= n; i++) {
            if (i > 1) luaL_addlstring(&b, ", ", 2);
            lua_rawgeti(L, list, i);
            luaL_addvalue(&b);
        }
        luaL_pushresult(&b);
        lua_rawset(L, h);
        lua_pop(L, 1);
    }
}

static void push_headers(lua_State *L, transfer *t) {
    char *p = t->hdrs.data, *end;
    int parts = lua_gettop(L) + 1, h = parts + 1;
    /* batches call this deep in perform(): room for the tables, a name,
     * its values and join_repeated's buffer */
    luaL_checkstack(L, 12, "no room for the response headers");
    lua_pushnil(L);            /* name -> { value, ... } of repeated names, made on need */
    lua_createtable(L, 0, 12); /* typical API responses: a dozen headers, no rehash */
    end = p ? p + t->hdrs.len : p;
    while (p < end) {
        char *eol = memchr(p, '\n', (size_t)(end - p));
        char *line_end = eol ? eol : end, *colon, *v, *ve, *c;
        if (line_end > p && line_end[-1] == '\r') line_end--;
        if (line_end - p >= 5 && memcmp(p, "HTTP/", 5) == 0) {
            /* a new response (after 1xx or a proxy CONNECT): keep only the last */
            lua_createtable(L, 0, 12);
            lua_replace(L, h);
            lua_pushnil(L);
            lua_replace(L, parts);
        } else if ((colon = memchr(p, ':', (size_t)(line_end - p))) != NULL && colon > p) {
            for (c = p; c < colon; c++)
                if (*c >= 'A' && *c <= 'Z') *c = (char)(*c + 32);
            /* a bare CR is invalid in a field value; RFC 9112 2.2 lets a
             * recipient replace it with a space, which keeps it out of logs
             * and of headers passed on (transport/ngx.lua does the same; a
             * NUL, libcurl refuses before we see it, and so does ngx.lua) */
            for (c = colon + 1; c < line_end; c++)
                if (*c == '\r') *c = ' ';
            v = colon + 1;
            while (v < line_end && (*v == ' ' || *v == '\t')) v++;
            ve = line_end;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            lua_pushlstring(L, p, (size_t)(colon - p));
            lua_pushvalue(L, -1);
            lua_rawget(L, h);
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                lua_pushlstring(L, v, (size_t)(ve - v));
                lua_rawset(L, h);
            } else {
                /* name, first value */
                if (lua_isnil(L, parts)) {
                    lua_newtable(L);
                    lua_replace(L, parts);
                }
                lua_pushvalue(L, -2);
                lua_rawget(L, parts);
                if (lua_isnil(L, -1)) {
                    lua_pop(L, 1);
                    lua_createtable(L, 4, 0);
                    lua_pushvalue(L, -2);
                    lua_rawseti(L, -2, 1);
                    lua_pushvalue(L, -3);
                    lua_pushvalue(L, -2);
                    lua_rawset(L, parts);
                }
                lua_pushlstring(L, v, (size_t)(ve - v));
                lua_rawseti(L, -2, (int)aa_rawlen(L, -2) + 1);
                lua_pop(L, 3);
            }
        }
        if (!eol) break;
        p = eol + 1;
    }
    if (!lua_isnil(L, parts)) join_repeated(L, parts, h);
    lua_remove(L, parts);
}

static void push_response(lua_State *L, transfer *t) {
    long status = 0, ver = 0;
    double total = 0;
    const char *vs;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(t->easy, CURLINFO_HTTP_VERSION, &ver);
    curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME, &total);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)status);
    lua_setfield(L, -2, "status");
    push_headers(L, t);
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, t->body.data ? t->body.data : "", t->body.len);
    lua_setfield(L, -2, "body");
    switch (ver) {
    case CURL_HTTP_VERSION_1_0: vs = "1.0"; break;
    case CURL_HTTP_VERSION_2_0: vs = "2"; break;
#ifdef CURL_HTTP_VERSION_3
    case CURL_HTTP_VERSION_3: vs = "3"; break;
#endif
    default: vs = "1.1"; break;
    }
    lua_pushstring(L, vs);
    lua_setfield(L, -2, "http_version");
    lua_pushnumber(L, total);
    lua_setfield(L, -2, "time");
}

static const char *error_kind(CURLcode rc, int *connect) {
    *connect = 0;
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT: return "timeout";
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
        *connect = 1;
        return "network";
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        *connect = 1;
        return "argument";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_USE_SSL_FAILED:
        *connect = 1;
        return "tls";
    default: return "network";
    }
}

static void push_error(lua_State *L, transfer *t, CURLcode rc) {
    int connect;
    const char *kind = error_kind(rc, &connect);
    curl_off_t pre = 0;
    if (rc == CURLE_OPERATION_TIMEDOUT && t->easy) {
        /* timed out before the request could be written: nothing was sent */
        curl_easy_getinfo(t->easy, CURLINFO_PRETRANSFER_TIME_T, &pre);
        if (pre == 0) connect = 1;
    }
    lua_createtable(L, 0, 4);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    if (t->too_big)
        lua_pushliteral(L, "response body larger than 256 MiB");
    else if (t->errbuf[0])
        lua_pushfstring(L, "%s: %s", curl_easy_strerror(rc), t->errbuf);
    else
        lua_pushstring(L, curl_easy_strerror(rc));
    lua_setfield(L, -2, "message");
    lua_pushinteger(L, (lua_Integer)rc);
    lua_setfield(L, -2, "curl_code");
    lua_pushboolean(L, connect);
    lua_setfield(L, -2, "connect");
}

static void push_argument_error(lua_State *L, const char *msg) {
    lua_createtable(L, 0, 3);
    lua_pushliteral(L, "argument");
    lua_setfield(L, -2, "kind");
    lua_pushfstring(L, "request refused before sending: %s", msg);
    lua_setfield(L, -2, "message");
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "connect");
}

static int l_request(lua_State *L) {
    session *s = check_session(L, 1);
    const char *bad;
    CURLcode rc;
    luaL_checktype(L, 2, LUA_TTABLE);
    bad = setup_transfer(L, s, &s->single, 2, 2, 0);
    if (bad) {
        lua_pushnil(L);
        push_argument_error(L, bad);
        return 2;
    }
    rc = curl_easy_perform(s->single.easy);
    if (rc != CURLE_OK) {
        lua_pushnil(L);
        push_error(L, &s->single, rc);
        return 2;
    }
    push_response(L, &s->single);
    /* drop what the headers list and buffers hold until the next call */
    transfer_reset(&s->single);
    return 1;
}

/* ---- batches on curl_multi ---------------------------------------------- */

/* perform's work runs under lua_pcall (perform_body) so that whatever
 * happens (an error in our own code, out of memory), perform() can take
 * every handle out of the multi and clear `busy` before re-raising. */

typedef struct {
    session *s;
    int n, concurrency, active, next;
    int results, on_done, cberrs; /* stack indices inside perform_body */
} batch;

static void finish_one(lua_State *L, batch *b, int index, int ok_response, transfer *t, CURLcode rc, const char *argmsg) {
    lua_createtable(L, 0, 2);
    if (argmsg) {
        push_argument_error(L, argmsg);
        lua_setfield(L, -2, "err");
    } else if (ok_response) {
        push_response(L, t);
        lua_setfield(L, -2, "res");
    } else {
        push_error(L, t, rc);
        lua_setfield(L, -2, "err");
    }
    lua_pushvalue(L, -1);
    lua_rawseti(L, b->results, index);
    if (b->on_done) {
        lua_pushvalue(L, b->on_done);
        lua_pushinteger(L, index);
        lua_getfield(L, -3, "res");
        lua_getfield(L, -4, "err");
        if (lua_pcall(L, 3, 0, 0) != 0) {
            lua_createtable(L, 0, 2);
            lua_pushinteger(L, index);
            lua_setfield(L, -2, "index");
            lua_pushvalue(L, -2);
            if (!lua_isstring(L, -1)) {
                lua_pop(L, 1);
                lua_pushliteral(L, "(error object is not a string)");
            }
            lua_setfield(L, -2, "message");
            lua_rawseti(L, b->cberrs, (int)aa_rawlen(L, b->cberrs) + 1);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

/* Starts requests until the window is full; returns after queuing at least
 * nothing more can be queued. */
static void fill(lua_State *L, batch *b) {
    session *s = b->s;
    int i;
    for (i = 0; i < s->nslots && b->next <= b->n; i++) {
        transfer *t = &s->slots[i];
        const char *bad;
        int idx;
        if (t->index != 0) continue;
        idx = b->next++;
        lua_rawgeti(L, 2, idx);
        bad = setup_transfer(L, s, t, lua_gettop(L), 2, 1);
        lua_pop(L, 1);
        if (bad) {
            finish_one(L, b, idx, 0, t, CURLE_OK, bad);
            i--; /* the slot is still free */
            continue;
        }
        if (curl_multi_add_handle(s->multi, t->easy) != CURLM_OK) {
            finish_one(L, b, idx, 0, t, CURLE_OUT_OF_MEMORY, NULL);
            i--;
            continue;
        }
        t->index = idx;
        b->active++;
    }
}

static int perform_body(lua_State *L) {
    batch *b = (batch *)lua_touserdata(L, lua_upvalueindex(1));
    session *s = b->s;
    lua_createtable(L, b->n, 0);
    b->results = lua_gettop(L);
    lua_newtable(L);
    b->cberrs = lua_gettop(L);
    fill(L, b);
    while (b->active > 0) {
        int running = 0, q = 0;
        CURLMsg *m;
        CURLMcode mc = curl_multi_perform(s->multi, &running);
        if (mc != CURLM_OK) return luaL_error(L, "curl_multi_perform: %s", curl_multi_strerror(mc));
        while ((m = curl_multi_info_read(s->multi, &q)) != NULL) {
            transfer *t = NULL;
            int idx;
            if (m->msg != CURLMSG_DONE) continue;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
            {
                CURLcode rc = m->data.result;
                curl_multi_remove_handle(s->multi, t->easy); /* invalidates m */
                idx = t->index;
                b->active--;
                finish_one(L, b, idx, rc == CURLE_OK, t, rc, NULL);
                t->index = 0;
                transfer_reset(t);
            }
        }
        fill(L, b);
        if (b->active > 0 && running > 0) {
            mc = curl_multi_poll(s->multi, NULL, 0, 1000, NULL);
            if (mc != CURLM_OK) return luaL_error(L, "curl_multi_poll: %s", curl_multi_strerror(mc));
        }
    }
    lua_pushvalue(L, b->results);
    if (aa_rawlen(L, b->cberrs) > 0) lua_pushvalue(L, b->cberrs);
    else lua_pushnil(L);
    return 2;
}

static int l_perform(lua_State *L) {
    session *s = check_session(L, 1);
    batch *b;
    int n, i, conc = 16, status, on_done = 0;
    luaL_checktype(L, 2, LUA_TTABLE);
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_getfield(L, 3, "concurrency");
        if (!lua_isnil(L, -1)) {
            lua_Number c = lua_tonumber(L, -1);
            if (lua_type(L, -1) != LUA_TNUMBER || !(c >= 1 && c <= 1024) || c != (int)c)
                luaL_argerror(L, 3, "field 'concurrency' must be an integer from 1 to 1024");
            conc = (int)c;
        }
        lua_pop(L, 1);
        lua_getfield(L, 3, "on_done");
        if (!lua_isnil(L, -1) && !lua_isfunction(L, -1))
            luaL_argerror(L, 3, "field 'on_done' must be a function");
        if (lua_isfunction(L, -1)) on_done = 1;
        else lua_pop(L, 1);
    }
    if (s->busy) return luaL_error(L, "session is busy: perform() called from inside perform()");
    n = (int)aa_rawlen(L, 2);
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        if (lua_type(L, -1) != LUA_TTABLE) {
            lua_pushfstring(L, "requests[%d] must be a table", i);
            luaL_argerror(L, 2, lua_tostring(L, -1));
        }
        lua_pop(L, 1);
    }
    if (conc > n) conc = n > 0 ? n : 1;
    if (s->nslots < conc) {
        transfer *ns = (transfer *)realloc(s->slots, (size_t)conc * sizeof(transfer));
        if (ns == NULL) return luaL_error(L, "out of memory");
        memset(ns + s->nslots, 0, (size_t)(conc - s->nslots) * sizeof(transfer));
        /* the handles set up earlier point into the old array */
        for (i = 0; i < s->nslots; i++) {
            transfer *t = &ns[i];
            if (t->easy == NULL) continue;
            curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, (void *)t);
            curl_easy_setopt(t->easy, CURLOPT_HEADERDATA, (void *)t);
            curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->errbuf);
            curl_easy_setopt(t->easy, CURLOPT_PRIVATE, (void *)t);
        }
        s->slots = ns;
        s->nslots = conc;
    }
    b = (batch *)lua_newuserdata(L, sizeof(batch));
    memset(b, 0, sizeof *b);
    b->s = s;
    b->n = n;
    b->concurrency = conc;
    b->next = 1;
    b->on_done = on_done ? lua_gettop(L) - 1 : 0;
    /* perform_body sees the same arguments at 1..3 and the callback at its index */
    lua_pushcclosure(L, perform_body, 1);
    lua_insert(L, 1);
    s->busy = 1;
    {
        /* only use up to conc slots this time */
        int saved = s->nslots;
        s->nslots = conc;
        status = lua_pcall(L, lua_gettop(L) - 1, 2, 0);
        s->nslots = saved;
    }
    for (i = 0; i < s->nslots; i++) {
        transfer *t = &s->slots[i];
        if (t->index != 0) {
            curl_multi_remove_handle(s->multi, t->easy);
            t->index = 0;
        }
        transfer_reset(t);
    }
    s->busy = 0;
    if (status != 0) return lua_error(L);
    return 2;
}


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
    return buf_append(&st->t.body, p, len) ? len : 0;
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
    return buf_append(&st->t.hdrs, p, len) ? len : 0;
}

static void stream_release(stream *st) {
    if (st->closed) return;
    st->closed = 1;
    if (st->multi && st->t.easy) curl_multi_remove_handle(st->multi, st->t.easy);
    transfer_free(&st->t);
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

static double mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static stream *check_stream(lua_State *L) {
    stream *st = (stream *)luaL_checkudata(L, 1, STREAM_MT);
    if (st->closed) luaL_argerror(L, 1, "the stream is closed");
    return st;
}

static int l_stream_open(lua_State *L) {
    session *s = check_session(L, 1);
    stream *st;
    const char *bad;
    double deadline;
    luaL_checktype(L, 2, LUA_TTABLE);
    st = (stream *)lua_newuserdata(L, sizeof(stream));
    memset(st, 0, sizeof *st);
    luaL_getmetatable(L, STREAM_MT);
    lua_setmetatable(L, -2);
    bad = setup_transfer(L, s, &st->t, 2, 2, 1);
    if (bad) {
        stream_release(st);
        lua_pushnil(L);
        push_argument_error(L, bad);
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
    deadline = mono_ms() + (double)s->timeout_ms;
    while (!st->headers_done && !st->done) {
        double left = deadline - mono_ms();
        if (left <= 0) {
            stream_release(st);
            lua_pushnil(L);
            lua_createtable(L, 0, 3);
            lua_pushliteral(L, "timeout");
            lua_setfield(L, -2, "kind");
            lua_pushliteral(L, "no response headers within the session timeout");
            lua_setfield(L, -2, "message");
            lua_pushboolean(L, 0);
            lua_setfield(L, -2, "connect");
            return 2;
        }
        stream_pump(st, left > 200 ? 200 : (int)left + 1);
    }
    if (st->done && st->result != CURLE_OK && !st->headers_done) {
        lua_pushnil(L);
        push_error(L, &st->t, st->result);
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
    push_headers(L, &st->t);
    lua_setfield(L, -2, "headers");
    return 2;
}

static void push_stream_end(lua_State *L, stream *st) {
    size_t left = st->t.body.len - st->consumed;
    if (st->result != CURLE_OK) {
        push_error(L, &st->t, st->result);
    } else {
        lua_createtable(L, 0, 3);
        lua_pushliteral(L, "closed");
        lua_setfield(L, -2, "kind");
        lua_pushliteral(L, "the server ended the stream");
        lua_setfield(L, -2, "message");
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
    deadline = mono_ms() + timeout * 1000.0;
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
            double left = deadline - mono_ms();
            if (left <= 0) {
                lua_pushnil(L);
                lua_createtable(L, 0, 2);
                lua_pushliteral(L, "timeout");
                lua_setfield(L, -2, "kind");
                lua_pushliteral(L, "no complete line within the timeout; the stream is still open");
                lua_setfield(L, -2, "message");
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
    deadline = mono_ms() + timeout * 1000.0;
    for (;;) {
        double left;
        if (st->t.body.len - st->consumed >= cap && (!st->done || st->t.body.len - st->consumed > cap)) {
            st->t.body.len = st->consumed + cap;
            cut = "truncated";
            break;
        }
        if (st->done) break;
        left = deadline - mono_ms();
        if (left <= 0) {
            cut = "timeout";
            break;
        }
        stream_pump(st, left > 200 ? 200 : (int)left + 1);
    }
    if (cut == NULL && st->result != CURLE_OK) {
        lua_pushnil(L);
        push_error(L, &st->t, st->result);
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

static const luaL_Reg session_methods[] = {
    {"request", l_request},
    {"stream", l_stream_open},
    {"perform", l_perform},
    {"close", l_session_close},
    {NULL, NULL}};

static const luaL_Reg funcs[] = {
    {"session", l_session_new},
    {NULL, NULL}};

/* One metatable per class: methods in __index (so metamethods are not
 * callable as methods), close doubling as __gc and __close, and a protected
 * __metatable so Lua code cannot swap the finalizer. */
static void new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc,
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

void aa_open_http(lua_State *L) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    new_class(L, SESSION_MT, session_methods, l_session_gc, l_session_close, l_session_tostring);
    new_class(L, STREAM_MT, stream_methods, l_stream_close, l_stream_close, l_stream_tostring);
    aa_setfuncs(L, funcs, 0);
}
