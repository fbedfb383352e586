/* OAuth 1.0a (RFC 5849) HMAC-SHA1 signing: parameter collection and
 * normalisation, the signature base string, and the Authorization header. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/rand.h>
#include "aa.h"

typedef struct {
    const char *k, *v;
    size_t kl, vl;
} pair;

typedef struct {
    pair *items;
    size_t n, cap;
} pairs;

static void pairs_push(aa_arena *a, pairs *ps, const char *k, size_t kl, const char *v, size_t vl) {
    if (ps->n == ps->cap) {
        size_t ncap = ps->cap ? ps->cap * 2 : 16;
        pair *ni = (pair *)aa_arena_alloc(a, ncap * sizeof(pair));
        if (ps->n) memcpy(ni, ps->items, ps->n * sizeof(pair));
        ps->items = ni;
        ps->cap = ncap;
    }
    ps->items[ps->n].k = k;
    ps->items[ps->n].kl = kl;
    ps->items[ps->n].v = v;
    ps->items[ps->n].vl = vl;
    ps->n++;
}

/* Encode raw bytes into the arena. */
static const char *enc(aa_arena *a, const char *s, size_t n, size_t *outl) {
    char *d = (char *)aa_arena_alloc(a, n * 3 + 1);
    *outl = aa_pct_encode(d, s, n);
    return d;
}

static void push_encoded(aa_arena *a, pairs *ps, const char *k, size_t kl, const char *v, size_t vl) {
    size_t ekl, evl;
    const char *ek = enc(a, k, kl, &ekl);
    const char *ev = enc(a, v, vl, &evl);
    pairs_push(a, ps, ek, ekl, ev, evl);
}

static int bytes_cmp(const char *a, size_t al, const char *b, size_t bl) {
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c) return c;
    return al < bl ? -1 : al > bl;
}

static int pair_cmp(const void *x, const void *y) {
    const pair *a = (const pair *)x, *b = (const pair *)y;
    int c = bytes_cmp(a->k, a->kl, b->k, b->kl);
    return c ? c : bytes_cmp(a->v, a->vl, b->v, b->vl);
}

/* Query and form strings: '&'-separated, '+' is a space, a name without '='
 * has the empty value (RFC 5849 3.4.1.3.1). */
static void push_form_string(aa_arena *a, pairs *ps, const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t j = i, eq = (size_t)-1;
        while (j < n && s[j] != '&') {
            if (s[j] == '=' && eq == (size_t)-1) eq = j;
            j++;
        }
        if (j > i) {
            size_t kend = eq == (size_t)-1 ? j : eq;
            const char *vs = eq == (size_t)-1 ? s + j : s + eq + 1;
            size_t vn = eq == (size_t)-1 ? 0 : j - eq - 1;
            char *k = (char *)aa_arena_alloc(a, kend - i + 1);
            char *v = (char *)aa_arena_alloc(a, vn + 1);
            size_t kl = aa_pct_decode(k, s + i, kend - i, 1);
            size_t vl = aa_pct_decode(v, vs, vn, 1);
            push_encoded(a, ps, k, kl, v, vl);
        }
        i = j + 1;
    }
}

static const char *opt_string(lua_State *L, int t, const char *field, size_t *len, int required) {
    int ty = aa_getfield(L, t, field);
    const char *s;
    if (ty == LUA_TNIL && !required) {
        lua_pop(L, 1);
        *len = 0;
        return NULL;
    }
    if (ty != LUA_TSTRING) {
        lua_pushfstring(L, "field '%s' must be a string%s", field, required ? "" : " or nil");
        luaL_argerror(L, 1, lua_tostring(L, -1));
    }
    s = lua_tolstring(L, -1, len);
    lua_pop(L, 1); /* the table still references it */
    return s;
}

/* A form value: a string or a number (formatted as Lua does). */
static const char *param_value(lua_State *L, int idx, size_t *len, const char *name) {
    int ty = lua_type(L, idx);
    if (ty == LUA_TSTRING) return lua_tolstring(L, idx, len);
    if (ty == LUA_TNUMBER) {
        lua_pushvalue(L, idx);
        lua_tolstring(L, -1, len); /* converts the copy in place */
        lua_replace(L, idx);
        return lua_tolstring(L, idx, len);
    }
    lua_pushfstring(L, "params['%s'] must be a string, a number or an array of them", name);
    return (const char *)(luaL_argerror(L, 1, lua_tostring(L, -1)), NULL);
}

typedef struct {
    char method[32];
    const char *base_url;
    size_t base_url_len;
    pairs oauth;   /* the oauth_* parameters that go in the header (encoded) */
    pairs all;     /* everything that is signed (encoded) */
    const char *realm;
    size_t realm_len;
} signing;

static const char nonce_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/* 32 alphanumerics from the CSPRNG, without modulo bias. */
static int make_nonce(char out[33]) {
    unsigned char buf[64];
    int n = 0;
    while (n < 32) {
        int i;
        if (RAND_bytes(buf, sizeof buf) != 1) return 0;
        for (i = 0; i < (int)sizeof buf && n < 32; i++)
            if (buf[i] < 248) out[n++] = nonce_chars[buf[i] % 62];
    }
    out[32] = '\0';
    return 1;
}

static void parse_url(lua_State *L, aa_arena *a, signing *sg, const char *url, size_t n) {
    const char *p = url, *end = url + n, *auth, *aend, *path, *pend, *hostend;
    char *out;
    size_t o = 0, schemelen, i;
    const char *port = NULL;
    size_t portlen = 0;
    const char *sep = NULL;
    for (i = 0; i + 2 < n; i++)
        if (url[i] == ':' && url[i + 1] == '/' && url[i + 2] == '/') {
            sep = url + i;
            break;
        }
    if (sep == NULL || sep == url) luaL_argerror(L, 1, "field 'url' must be an absolute http(s) URL");
    schemelen = (size_t)(sep - p);
    auth = sep + 3;
    aend = auth;
    while (aend < end && *aend != '/' && *aend != '?' && *aend != '#') aend++;
    if (aend == auth) luaL_argerror(L, 1, "field 'url' has no host");
    /* userinfo is not part of the base string URI */
    for (i = 0; auth + i < aend; i++)
        if (auth[i] == '@') {
            auth = auth + i + 1;
            i = (size_t)-1;
        }
    hostend = aend;
    if (*auth == '[') {
        const char *rb = memchr(auth, ']', (size_t)(aend - auth));
        if (rb == NULL) luaL_argerror(L, 1, "field 'url' has a bad IPv6 host");
        hostend = rb + 1;
        if (hostend < aend && *hostend == ':') {
            port = hostend + 1;
            portlen = (size_t)(aend - port);
        }
    } else {
        const char *c = memchr(auth, ':', (size_t)(aend - auth));
        if (c) {
            hostend = c;
            port = c + 1;
            portlen = (size_t)(aend - port);
        }
    }
    for (i = 0; i < portlen; i++)
        if (port[i] < '0' || port[i] > '9') luaL_argerror(L, 1, "field 'url' has a bad port");
    path = aend;
    pend = path;
    while (pend < end && *pend != '?' && *pend != '#') pend++;

    out = (char *)aa_arena_alloc(a, n + 8);
    for (i = 0; i < schemelen; i++) {
        char c = p[i];
        out[o++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    out[o++] = ':';
    out[o++] = '/';
    out[o++] = '/';
    for (i = 0; auth + i < hostend; i++) {
        char c = auth[i];
        out[o++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    if (portlen > 0) {
        int dflt = (schemelen == 4 && memcmp(out, "http", 4) == 0 && portlen == 2 && memcmp(port, "80", 2) == 0) ||
                   (schemelen == 5 && memcmp(out, "https", 5) == 0 && portlen == 3 && memcmp(port, "443", 3) == 0);
        if (!dflt) {
            out[o++] = ':';
            memcpy(out + o, port, portlen);
            o += portlen;
        }
    }
    if (pend == path) {
        out[o++] = '/';
    } else {
        memcpy(out + o, path, (size_t)(pend - path));
        o += (size_t)(pend - path);
    }
    sg->base_url = out;
    sg->base_url_len = o;
    if (pend < end && *pend == '?') {
        const char *q = pend + 1, *qe = q;
        while (qe < end && *qe != '#') qe++;
        push_form_string(a, &sg->all, q, (size_t)(qe - q));
    }
}

/* A protocol parameter: in the header and in the signed set. */
static void add_oauth_n(aa_arena *a, signing *sg, const char *k, size_t kl, const char *v, size_t vl) {
    size_t ekl, evl;
    const char *ek = enc(a, k, kl, &ekl);
    const char *ev = enc(a, v, vl, &evl);
    pairs_push(a, &sg->oauth, ek, ekl, ev, evl);
    pairs_push(a, &sg->all, ek, ekl, ev, evl);
}

static void add_oauth(aa_arena *a, signing *sg, const char *k, const char *v, size_t vl) {
    add_oauth_n(a, sg, k, strlen(k), v, vl);
}

/* Reads the request description at index 1 and computes the signature.
 * Leaves arena chunks on the stack; returns the base64 signature in sig. */
static void sign(lua_State *L, aa_arena *a, signing *sg, char sig[64], size_t *siglen,
                 const char **base, size_t *baselen, int need_nonce) {
    size_t ml, ul, ckl, csl, tkl = 0, tsl = 0, nl = 0, i, o;
    const char *m, *url, *ck, *cs, *tk, *ts, *nonce;
    char nbuf[33], tbuf[32];
    const char *tstamp;
    size_t tlen;
    int ty;
    char *b, *key;
    size_t plen = 0, klen;
    unsigned char mac[64];
    unsigned int maclen = 0;

    luaL_checktype(L, 1, LUA_TTABLE);
    m = opt_string(L, 1, "method", &ml, 1);
    if (ml == 0 || ml >= sizeof sg->method) luaL_argerror(L, 1, "field 'method' is not an HTTP method");
    for (i = 0; i < ml; i++) {
        unsigned char c = (unsigned char)m[i];
        if (!aa_is_tchar(c)) luaL_argerror(L, 1, "field 'method' is not an HTTP token");
        sg->method[i] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
    }
    sg->method[ml] = '\0';
    url = opt_string(L, 1, "url", &ul, 1);
    ck = opt_string(L, 1, "consumer_key", &ckl, 1);
    cs = opt_string(L, 1, "consumer_secret", &csl, 1);
    tk = opt_string(L, 1, "token", &tkl, 0);
    ts = opt_string(L, 1, "token_secret", &tsl, 0);
    nonce = opt_string(L, 1, "nonce", &nl, 0);
    sg->realm = opt_string(L, 1, "realm", &sg->realm_len, 0);
    if (nonce == NULL) {
        if (need_nonce) luaL_argerror(L, 1, "field 'nonce' must be a string");
        if (!make_nonce(nbuf)) luaL_error(L, "RAND_bytes failed");
        nonce = nbuf;
        nl = 32;
    }
    ty = aa_getfield(L, 1, "timestamp");
    if (ty == LUA_TNUMBER) {
        lua_Number t = lua_tonumber(L, -1);
        if (!(t >= 0 && t < 1e15) || t != (lua_Number)(long long)t)
            luaL_argerror(L, 1, "field 'timestamp' must be a non-negative integer");
        tlen = (size_t)snprintf(tbuf, sizeof tbuf, "%lld", (long long)t);
        tstamp = tbuf;
    } else if (ty == LUA_TSTRING) {
        tstamp = lua_tolstring(L, -1, &tlen);
        if (tlen == 0 || tlen > 20 || strspn(tstamp, "0123456789") != tlen)
            luaL_argerror(L, 1, "field 'timestamp' must be decimal digits");
        memcpy(tbuf, tstamp, tlen);
        tbuf[tlen] = '\0';
        tstamp = tbuf;
    } else if (ty == LUA_TNIL) {
        if (need_nonce) luaL_argerror(L, 1, "field 'timestamp' must be given");
        tlen = (size_t)snprintf(tbuf, sizeof tbuf, "%lld", (long long)time(NULL));
        tstamp = tbuf;
    } else {
        luaL_argerror(L, 1, "field 'timestamp' must be a number or a string");
        return;
    }
    lua_pop(L, 1);

    parse_url(L, a, sg, url, ul);

    add_oauth(a, sg, "oauth_consumer_key", ck, ckl);
    add_oauth(a, sg, "oauth_nonce", nonce, nl);
    add_oauth(a, sg, "oauth_signature_method", "HMAC-SHA1", 9);
    add_oauth(a, sg, "oauth_timestamp", tstamp, tlen);
    if (tk != NULL) add_oauth(a, sg, "oauth_token", tk, tkl);
    ty = aa_getfield(L, 1, "version");
    if (ty == LUA_TNIL || (ty == LUA_TBOOLEAN && lua_toboolean(L, -1)))
        add_oauth(a, sg, "oauth_version", "1.0", 3);
    else if (ty == LUA_TSTRING) {
        size_t vl;
        const char *v = lua_tolstring(L, -1, &vl);
        add_oauth(a, sg, "oauth_version", v, vl);
    } else if (ty != LUA_TBOOLEAN)
        luaL_argerror(L, 1, "field 'version' must be a string or false");
    lua_pop(L, 1);

    /* Extra protocol parameters (oauth_callback, oauth_verifier, ...). */
    ty = aa_getfield(L, 1, "oauth_params");
    if (ty == LUA_TTABLE) {
        int t = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, t)) {
            size_t kl, vl;
            const char *k, *v;
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                luaL_argerror(L, 1, "field 'oauth_params' must map strings to strings");
            k = lua_tolstring(L, -2, &kl);
            v = lua_tolstring(L, -1, &vl);
            if (kl < 6 || memcmp(k, "oauth_", 6) != 0 || strcmp(k, "oauth_signature") == 0 || strlen(k) != kl)
                luaL_argerror(L, 1, "field 'oauth_params' may only hold oauth_* names other than oauth_signature");
            add_oauth_n(a, sg, k, kl, v, vl);
            lua_pop(L, 1);
        }
    } else if (ty != LUA_TNIL) {
        luaL_argerror(L, 1, "field 'oauth_params' must be a table or nil");
    }
    lua_pop(L, 1);

    /* Form-body parameters: name -> value or name -> { values }. */
    ty = aa_getfield(L, 1, "params");
    if (ty == LUA_TTABLE) {
        int t = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, t)) {
            size_t kl, vl;
            const char *k, *v;
            if (lua_type(L, -2) != LUA_TSTRING) luaL_argerror(L, 1, "field 'params' must have string keys");
            k = lua_tolstring(L, -2, &kl);
            if (lua_type(L, -1) == LUA_TTABLE) {
                int vt = lua_gettop(L);
                size_t j, len = aa_rawlen(L, vt);
                for (j = 1; j <= len; j++) {
                    lua_rawgeti(L, vt, (int)j);
                    v = param_value(L, lua_gettop(L), &vl, k);
                    push_encoded(a, &sg->all, k, kl, v, vl);
                    lua_pop(L, 1);
                }
            } else {
                v = param_value(L, lua_gettop(L), &vl, k);
                push_encoded(a, &sg->all, k, kl, v, vl);
            }
            lua_pop(L, 1);
        }
    } else if (ty != LUA_TNIL) {
        luaL_argerror(L, 1, "field 'params' must be a table or nil");
    }
    lua_pop(L, 1);

    qsort(sg->all.items, sg->all.n, sizeof(pair), pair_cmp);
    for (i = 0; i < sg->all.n; i++) plen += sg->all.items[i].kl + sg->all.items[i].vl + 2;

    /* METHOD & pct(base url) & pct(k=v&k=v...) */
    b = (char *)aa_arena_alloc(a, ml + 2 + sg->base_url_len * 3 + plen * 3 + 8);
    o = 0;
    memcpy(b, sg->method, ml);
    o = ml;
    b[o++] = '&';
    o += aa_pct_encode(b + o, sg->base_url, sg->base_url_len);
    b[o++] = '&';
    for (i = 0; i < sg->all.n; i++) {
        const pair *pr = &sg->all.items[i];
        if (i) o += aa_pct_encode(b + o, "&", 1);
        o += aa_pct_encode(b + o, pr->k, pr->kl);
        o += aa_pct_encode(b + o, "=", 1);
        o += aa_pct_encode(b + o, pr->v, pr->vl);
    }
    *base = b;
    *baselen = o;

    key = (char *)aa_arena_alloc(a, (csl + tsl) * 3 + 2);
    klen = aa_pct_encode(key, cs, csl);
    key[klen++] = '&';
    if (ts) klen += aa_pct_encode(key + klen, ts, tsl);
    if (!aa_hmac("sha1", key, klen, b, o, mac, &maclen)) luaL_error(L, "HMAC-SHA1 failed inside OpenSSL");
    memset(key, 0, klen);
    *siglen = aa_base64_encode(sig, mac, maclen);
}

static int l_oauth1_signature(lua_State *L) {
    aa_arena a;
    signing sg;
    char sig[64];
    size_t siglen, baselen;
    const char *base;
    memset(&sg, 0, sizeof sg);
    aa_arena_init(&a, L, 2048);
    sign(L, &a, &sg, sig, &siglen, &base, &baselen, 1);
    lua_pushlstring(L, sig, siglen);
    lua_pushlstring(L, base, baselen);
    return 2;
}

static int l_oauth1_header(lua_State *L) {
    aa_arena a;
    signing sg;
    char sig[64];
    size_t siglen, baselen, i, need, o, esl;
    const char *base;
    char *h, esig[200];
    memset(&sg, 0, sizeof sg);
    aa_arena_init(&a, L, 2048);
    sign(L, &a, &sg, sig, &siglen, &base, &baselen, 0);
    esl = aa_pct_encode(esig, sig, siglen);
    pairs_push(&a, &sg.oauth, "oauth_signature", 15, esig, esl);
    qsort(sg.oauth.items, sg.oauth.n, sizeof(pair), pair_cmp);
    need = 16 + sg.realm_len * 3 + 12;
    for (i = 0; i < sg.oauth.n; i++) need += sg.oauth.items[i].kl + sg.oauth.items[i].vl + 6;
    h = (char *)aa_arena_alloc(&a, need);
    memcpy(h, "OAuth ", 6);
    o = 6;
    if (sg.realm) {
        /* realm is a quoted-string, not percent-encoded (RFC 5849 3.5.1);
         * quotes, backslashes and controls are dropped to keep the header sound. */
        memcpy(h + o, "realm=\"", 7);
        o += 7;
        for (i = 0; i < sg.realm_len; i++) {
            unsigned char c = (unsigned char)sg.realm[i];
            if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f) h[o++] = (char)c;
        }
        memcpy(h + o, "\", ", 3);
        o += 3;
    }
    for (i = 0; i < sg.oauth.n; i++) {
        const pair *pr = &sg.oauth.items[i];
        if (i) {
            h[o++] = ',';
            h[o++] = ' ';
        }
        memcpy(h + o, pr->k, pr->kl);
        o += pr->kl;
        h[o++] = '=';
        h[o++] = '"';
        memcpy(h + o, pr->v, pr->vl);
        o += pr->vl;
        h[o++] = '"';
    }
    lua_pushlstring(L, h, o);
    return 1;
}

static int l_nonce(lua_State *L) {
    char n[33];
    if (!make_nonce(n)) return luaL_error(L, "RAND_bytes failed");
    lua_pushlstring(L, n, 32);
    return 1;
}

static int l_random_bytes(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    unsigned char *p;
    luaL_argcheck(L, n >= 0 && n <= 1 << 20, 1, "must be between 0 and 1048576");
    p = (unsigned char *)lua_newuserdata(L, (size_t)n + 1);
    /* returned, not raised: a server must not crash on an unseeded generator */
    if (n > 0 && RAND_bytes(p, (int)n) != 1) {
        lua_pushnil(L);
        lua_pushliteral(L, "RAND_bytes failed: the random generator is not seeded");
        return 2;
    }
    lua_pushlstring(L, (const char *)p, (size_t)n);
    return 1;
}

static const luaL_Reg funcs[] = {
    {"oauth1_header", l_oauth1_header},
    {"oauth1_signature", l_oauth1_signature},
    {"nonce", l_nonce},
    {"random_bytes", l_random_bytes},
    {NULL, NULL}};

void aa_open_oauth1(lua_State *L) { aa_setfuncs(L, funcs, 0); }
