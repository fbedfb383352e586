/* HTTP on libcurl, the session: a Session userdata with a shared connection
 * cache, one-request calls on a reused easy handle, the request setup, and
 * the results and errors that batch.c and stream.c build too (http.h). */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "http.h"

/* ---- buffers (no Lua calls: they run inside libcurl callbacks) ---------- */

int http_buf_append(buf *b, const char *p, size_t n) {
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
    return http_buf_append(&t->body, p, len) ? len : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
    transfer *t = (transfer *)ud;
    size_t len = size * n;
    return http_buf_append(&t->hdrs, p, len) ? len : 0;
}

void http_transfer_reset(transfer *t) {
    if (t->headers) {
        curl_slist_free_all(t->headers);
        t->headers = NULL;
    }
    buf_reset(&t->body);
    buf_reset(&t->hdrs);
    t->errbuf[0] = '\0';
    t->too_big = 0;
}

void http_transfer_free(transfer *t) {
    if (t->headers) curl_slist_free_all(t->headers);
    t->headers = NULL;
    if (t->easy) curl_easy_cleanup(t->easy);
    t->easy = NULL;
    buf_free(&t->body);
    buf_free(&t->hdrs);
}

/* ---- session ------------------------------------------------------------ */

session *http_check_session(lua_State *L, int idx) {
    session *s = (session *)luaL_checkudata(L, idx, SESSION_MT);
    if (s->closed) luaL_argerror(L, idx, "the session is closed");
    return s;
}

static void session_release(session *s) {
    int i;
    if (s->closed) return;
    s->closed = 1;
    http_transfer_free(&s->single);
    for (i = 0; i < s->nslots; i++) http_transfer_free(&s->slots[i]);
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

static int is_token(const char *s, size_t n) {
    size_t i;
    if (n == 0) return 0;
    for (i = 0; i < n; i++)
        if (!aa_is_tchar((unsigned char)s[i])) return 0;
    return 1;
}

/* Sets up t from the request table at ri. Raises on wrong types (naming
 * argument argn); returns NULL on success or a message for a value that must
 * not be sent (the caller returns it as an "argument" error). Anything
 * allocated is stored in t at once, so a raise leaves nothing unowned. */
const char *http_setup_transfer(lua_State *L, session *s, transfer *t, int ri, int argn, int copy_body) {
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
    http_transfer_reset(t);
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

void http_push_headers(lua_State *L, transfer *t) {
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

void http_push_response(lua_State *L, transfer *t) {
    long status = 0, ver = 0;
    double total = 0;
    const char *vs;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(t->easy, CURLINFO_HTTP_VERSION, &ver);
    curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME, &total);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)status);
    lua_setfield(L, -2, "status");
    http_push_headers(L, t);
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

/* The one shape of a transport error, {kind, message, connect}, built from
 * the message string on top of the stack (which it replaces). Every error
 * of the session, the batch and the stream comes out of here. */
void http_push_err(lua_State *L, const char *kind, int connect) {
    lua_createtable(L, 0, 4);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "message");
    lua_pushboolean(L, connect);
    lua_setfield(L, -2, "connect");
    lua_remove(L, -2);
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

void http_push_error(lua_State *L, transfer *t, CURLcode rc) {
    int connect;
    const char *kind = error_kind(rc, &connect);
    curl_off_t pre = 0;
    if (rc == CURLE_OPERATION_TIMEDOUT && t->easy) {
        /* timed out before the request could be written: nothing was sent */
        curl_easy_getinfo(t->easy, CURLINFO_PRETRANSFER_TIME_T, &pre);
        if (pre == 0) connect = 1;
    }
    if (t->too_big)
        lua_pushliteral(L, "response body larger than 256 MiB");
    else if (t->errbuf[0])
        lua_pushfstring(L, "%s: %s", curl_easy_strerror(rc), t->errbuf);
    else
        lua_pushstring(L, curl_easy_strerror(rc));
    http_push_err(L, kind, connect);
    lua_pushinteger(L, (lua_Integer)rc);
    lua_setfield(L, -2, "curl_code");
}

void http_push_argument_error(lua_State *L, const char *msg) {
    lua_pushfstring(L, "request refused before sending: %s", msg);
    http_push_err(L, "argument", 1);
}

static int l_request(lua_State *L) {
    session *s = http_check_session(L, 1);
    const char *bad;
    CURLcode rc;
    luaL_checktype(L, 2, LUA_TTABLE);
    bad = http_setup_transfer(L, s, &s->single, 2, 2, 0);
    if (bad) {
        lua_pushnil(L);
        http_push_argument_error(L, bad);
        return 2;
    }
    rc = curl_easy_perform(s->single.easy);
    if (rc != CURLE_OK) {
        lua_pushnil(L);
        http_push_error(L, &s->single, rc);
        return 2;
    }
    http_push_response(L, &s->single);
    /* drop what the headers list and buffers hold until the next call */
    http_transfer_reset(&s->single);
    return 1;
}

static const luaL_Reg session_methods[] = {
    {"request", l_request},
    {"stream", http_stream_open},
    {"perform", http_perform},
    {"close", l_session_close},
    {NULL, NULL}};

static const luaL_Reg funcs[] = {
    {"session", l_session_new},
    {NULL, NULL}};

void aa_open_http(lua_State *L) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    aa_new_class(L, SESSION_MT, session_methods, l_session_gc, l_session_close, l_session_tostring);
    http_open_stream(L);
    aa_setfuncs(L, funcs, 0);
}
