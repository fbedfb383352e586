/* A JSON decoder for the webhook's hot path (core.json_decode).
 *
 * Every delivery X posts is decoded before it is answered, and lua-cjson
 * spends most of that time copying strings byte by byte and growing each
 * table one rehash at a time. Here strings without escapes are pushed
 * straight from the input, and an object's or array's members wait on the
 * Lua stack until the closing bracket, so each table is created at its final
 * size.
 *
 * The values are lua-cjson's, so code sees the same tables either way:
 * numbers are floats, null is cjson.null (a NULL light userdata), [] and {}
 * are empty tables, a repeated key keeps its last value, and \u0000 and
 * invalid UTF-8 pass through as bytes. The grammar is RFC 8259's, stricter
 * than lua-cjson: no leading zeros, hex, NaN, Infinity or raw control
 * characters in strings. Failure is nil plus a message naming the byte.
 *
 * Two opt-in departures, for webhook deliveries (events.parse): X has sent
 * texts cut inside a surrogate pair, and refusing the body loses the event
 * (X retries the same bytes), so lone_surrogates = "replace" decodes an
 * unpaired \uD800-\uDFFF escape as U+FFFD; and big_integers = "string" keeps
 * an integer past 2^53 (an id sent as a number) as its exact digits, since
 * the nearest double names another user. Everywhere else the strict
 * defaults hold.
 * Nothing here allocates outside Lua, so an error or a memory error at any
 * point leaves nothing behind. */
#include <locale.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "aa.h"

#define JSON_MAX_DEPTH 1000
/* Members held on the stack before they are flushed into their table: big
 * enough for the objects X sends, small enough that deep nesting stays
 * within LuaJIT's C stack limit (8000 slots). */
#define JSON_CHUNK 64
/* Past this many stack slots every member is flushed at once, so a deep
 * document of wide objects cannot exhaust that limit before depth does. */
#define JSON_SOFT_TOP 2000

typedef struct {
    lua_State *L;
    const unsigned char *start, *p, *end;
    int depth, max_depth;
    int replace_lone_surrogates; /* opts.lone_surrogates == "replace" */
    int big_integers_as_strings; /* opts.big_integers == "string" */
    int scratch_idx;     /* stack slot of the scratch buffer */
    unsigned char *scratch; /* NULL until a string with escapes needs it */
    const char *err;
    const unsigned char *err_at;
} json_dec;

static int fail(json_dec *d, const char *msg, const unsigned char *at) {
    d->err = msg;
    d->err_at = at;
    return 0;
}

static void skip_ws(json_dec *d) {
    const unsigned char *p = d->p, *end = d->end;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    d->p = p;
}

/* Room for n more values; false when the stack cannot grow (LuaJIT caps a C
 * function's stack), which makes the caller flush before going on. */
static int room(json_dec *d, int n) {
    return lua_checkstack(d->L, n);
}

static int parse_value(json_dec *d);

/* A scratch buffer as long as the input: an escaped string never decodes to
 * more bytes than its source text. A userdata, so nothing leaks on error. */
static unsigned char *scratch(json_dec *d) {
    if (d->scratch == NULL) {
        size_t n = (size_t)(d->end - d->start) + 1;
        if (!room(d, 1)) return NULL;
        d->scratch = (unsigned char *)lua_newuserdata(d->L, n);
        lua_replace(d->L, d->scratch_idx);
    }
    return d->scratch;
}

static int hex4(const unsigned char *p, unsigned *out) {
    unsigned v = 0;
    int i;
    for (i = 0; i < 4; i++) {
        int x = aa_hexval(p[i]);
        if (x < 0) return 0;
        v = v << 4 | (unsigned)x;
    }
    *out = v;
    return 1;
}

static size_t put_utf8(unsigned char *o, unsigned cp) {
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | cp >> 6);
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | cp >> 12);
        o[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | cp >> 18);
    o[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* 1 for the bytes a string may hold as they are: not '"', '\\' or a
 * control character. A constant, so loading the module writes nothing
 * shared between threads. */
static const unsigned char plain_byte[256] = {
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    1,1,0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,0,1,1,1,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
};

/* Eight bytes at a time while none is '"', '\\' or below 0x20: the long
 * runs of plain text in tweets cost a few instructions per word. */
#define ONES ((uint64_t)0x0101010101010101ULL)
#define HIGHS ((uint64_t)0x8080808080808080ULL)
static const unsigned char *plain_run(const unsigned char *p, const unsigned char *end) {
    while (end - p >= 8) {
        uint64_t v, q, b, c;
        memcpy(&v, p, 8);
        q = v ^ (ONES * '"');
        b = v ^ (ONES * '\\');
        c = (q - ONES) & ~q;
        c |= (b - ONES) & ~b;
        c |= (v - ONES * 0x20) & ~v;
        if (c & HIGHS) {
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            /* the lowest flagged byte is exact (a borrow only carries upward) */
            return p + (__builtin_ctzll(c & HIGHS) >> 3);
#else
            break;
#endif
        }
        p += 8;
    }
    while (p < end && plain_byte[*p]) p++;
    return p;
}

/* The rest of a string that has escapes, from the first backslash. */
static int parse_escaped(json_dec *d, const unsigned char *start, const unsigned char *p) {
    unsigned char *buf = scratch(d), *o;
    const unsigned char *end = d->end;
    if (buf == NULL) return fail(d, "input nested too deeply", p);
    memcpy(buf, start, (size_t)(p - start));
    o = buf + (p - start);
    for (;;) {
        const unsigned char *q = plain_run(p, end);
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        p = q;
        if (p >= end) return fail(d, "unterminated string", start - 1);
        if (*p == '"') break;
        if (*p < 0x20) return fail(d, "control character in string", p);
        /* a backslash */
        if (end - p < 2) return fail(d, "unterminated string", start - 1);
        switch (p[1]) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (end - p < 6 || !hex4(p + 2, &cp)) return fail(d, "invalid \\u escape", p);
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                if (!d->replace_lone_surrogates) return fail(d, "unpaired UTF-16 surrogate", p);
                cp = 0xFFFD;
            } else if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || !hex4(p + 8, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF) {
                    if (!d->replace_lone_surrogates) return fail(d, "unpaired UTF-16 surrogate", p);
                    /* only the high half is replaced: whatever follows it
                     * (another high half, a plain escape) is decoded next */
                    cp = 0xFFFD;
                } else {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                }
            }
            o += put_utf8(o, cp);
            p += 6;
            continue;
        }
        default:
            return fail(d, "invalid escape in string", p);
        }
        p += 2;
    }
    lua_pushlstring(d->L, (const char *)buf, (size_t)(o - buf));
    d->p = p + 1;
    return 1;
}

static int parse_string(json_dec *d) {
    const unsigned char *start = d->p + 1, *p = plain_run(start, d->end);
    if (p < d->end && *p == '"') {
        lua_pushlstring(d->L, (const char *)start, (size_t)(p - start));
        d->p = p + 1;
        return 1;
    }
    if (p >= d->end) return fail(d, "unterminated string", start - 1);
    if (*p < 0x20) return fail(d, "control character in string", p);
    return parse_escaped(d, start, p);
}

/* Object keys repeat in every delivery ("id_str", "screen_name", ...): a
 * small cache of recent key strings, kept in the function's upvalue table,
 * hands back the Lua string without hashing and interning it again. */
#define KEY_CACHE_SLOTS 512
#define KEY_CACHE_MAX_LEN 40

static int parse_key(json_dec *d) {
    const unsigned char *start = d->p + 1, *p = plain_run(start, d->end);
    size_t n = (size_t)(p - start);
    if (p < d->end && *p == '"' && n > 0 && n <= KEY_CACHE_MAX_LEN) {
        lua_State *L = d->L;
        unsigned slot = ((unsigned)n * 31u + start[0] * 7u + start[n / 2] * 131u + start[n - 1]) %
                        KEY_CACHE_SLOTS;
        size_t cl;
        const char *c;
        lua_rawgeti(L, lua_upvalueindex(1), (int)slot + 1);
        c = lua_tolstring(L, -1, &cl);
        d->p = p + 1;
        if (c != NULL && cl == n && memcmp(c, start, n) == 0) return 1;
        lua_pop(L, 1);
        lua_pushlstring(L, (const char *)start, n);
        lua_pushvalue(L, -1);
        lua_rawseti(L, lua_upvalueindex(1), (int)slot + 1);
        return 1;
    }
    return parse_string(d);
}

static int is_digit(const unsigned char *p, const unsigned char *end) {
    return p < end && *p >= '0' && *p <= '9';
}

static int parse_number(json_dec *d) {
    const unsigned char *start = d->p, *p = start, *end = d->end;
    int neg = 0, simple = 1, integer = 1;
    uint64_t v = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    if (!is_digit(p, end)) return fail(d, "invalid number", start);
    if (*p == '0') {
        p++;
        if (is_digit(p, end)) return fail(d, "leading zero in number", start);
    } else {
        while (is_digit(p, end)) {
            v = v * 10 + (uint64_t)(*p - '0');
            p++;
        }
    }
    /* up to 15 digits a double holds exactly, so the cast is the value */
    if (p - start - neg > 15) simple = 0;
    if (p < end && *p == '.') {
        simple = integer = 0;
        p++;
        if (!is_digit(p, end)) return fail(d, "invalid number", start);
        while (is_digit(p, end)) p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        simple = integer = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (!is_digit(p, end)) return fail(d, "invalid number", start);
        while (is_digit(p, end)) p++;
    }
    if (simple) {
        double x = (double)v;
        lua_pushnumber(d->L, neg ? -x : x);
    } else if (integer && d->big_integers_as_strings &&
               (p - start - neg > 19 || v > ((uint64_t)1 << 53))) {
        /* past 2^53 a double rounds to a neighbour: an id would route to
         * another user, so its exact digits are kept (20+ digits overflow v,
         * but no leading zeros means they are all past 2^53) */
        lua_pushlstring(d->L, (const char *)start, (size_t)(p - start));
    } else {
        /* strtod wants a terminated copy in the locale's decimal point */
        size_t n = (size_t)(p - start), i;
        char small[64], *buf = small, dot = localeconv()->decimal_point[0];
        if (n >= sizeof small) {
            buf = (char *)scratch(d);
            if (buf == NULL) return fail(d, "input nested too deeply", start);
        }
        memcpy(buf, start, n);
        buf[n] = '\0';
        for (i = 0; i < n; i++)
            if (buf[i] == '.') buf[i] = dot;
        lua_pushnumber(d->L, (lua_Number)strtod(buf, NULL));
    }
    d->p = p;
    return 1;
}

static int literal(json_dec *d, const char *word, size_t n) {
    if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0)
        return fail(d, "invalid literal", d->p);
    d->p += n;
    return 1;
}

/* A container's slot (base+1) holds nil until its table is made; its
 * members wait above it, at base+2 .. top: key, value pairs for an object,
 * values for an array (the done before them already in the table). The
 * first flush makes the table at the size of the members waiting, so a
 * container of up to JSON_CHUNK members is never rehashed. */
static void flush(lua_State *L, int base, int object, int n, int done) {
    int i;
    if (lua_isnil(L, base + 1)) {
        lua_createtable(L, object ? 0 : n, object ? n : 0);
        lua_replace(L, base + 1);
    }
    if (object) {
        for (i = 0; i < n; i++) {
            lua_pushvalue(L, base + 2 + 2 * i);
            lua_pushvalue(L, base + 3 + 2 * i);
            lua_rawset(L, base + 1);
        }
        lua_settop(L, base + 1);
    } else {
        /* rawseti pops the values from the last */
        for (i = n; i >= 1; i--) lua_rawseti(L, base + 1, done + i);
    }
}

/* How many members the next chunk may hold: the stack is checked once per
 * chunk, not once per member. 0 when it cannot grow at all. */
static int chunk_limit(json_dec *d, int slots_per_member) {
    if (lua_gettop(d->L) <= JSON_SOFT_TOP && room(d, slots_per_member * JSON_CHUNK + 4))
        return JSON_CHUNK;
    return room(d, slots_per_member + 4) ? 1 : 0;
}

/* An object or an array, from its opening bracket. */
static int parse_container(json_dec *d) {
    lua_State *L = d->L;
    const unsigned char *open = d->p;
    int object = *open == '{', slots = object ? 2 : 1;
    unsigned char close = object ? '}' : ']';
    int base = lua_gettop(L), n = 0, done = 0, limit;
    if (++d->depth > d->max_depth) return fail(d, "nested too deeply", open);
    lua_pushnil(L); /* the table's slot; the caller left room for it */
    d->p++;
    skip_ws(d);
    if (d->p < d->end && *d->p == close) {
        d->p++;
        flush(L, base, object, 0, 0);
        d->depth--;
        return 1;
    }
    if ((limit = chunk_limit(d, slots)) == 0) return fail(d, "input nested too deeply", open);
    for (;;) {
        if (n == limit) {
            flush(L, base, object, n, done);
            done += n;
            n = 0;
            if (done > INT32_MAX - JSON_CHUNK) return fail(d, "too many members", d->p);
            if ((limit = chunk_limit(d, slots)) == 0)
                return fail(d, "input nested too deeply", d->p);
        }
        if (object) {
            skip_ws(d);
            if (d->p >= d->end || *d->p != '"') return fail(d, "expected a string key", d->p);
            if (!parse_key(d)) return 0;
            skip_ws(d);
            if (d->p >= d->end || *d->p != ':') return fail(d, "expected ':'", d->p);
            d->p++;
        }
        if (!parse_value(d)) return 0;
        n++;
        skip_ws(d);
        if (d->p < d->end && *d->p == ',') {
            d->p++;
            continue;
        }
        if (d->p < d->end && *d->p == close) break;
        if (d->p < d->end) return fail(d, object ? "expected ',' or '}'" : "expected ',' or ']'", d->p);
        return fail(d, object ? "unterminated object" : "unterminated array", open);
    }
    d->p++;
    flush(L, base, object, n, done);
    d->depth--;
    return 1;
}

static int parse_value(json_dec *d) {
    skip_ws(d);
    if (d->p >= d->end) return fail(d, "unexpected end of input", d->p);
    switch (*d->p) {
    case '{':
    case '[': return parse_container(d);
    case '"': return parse_string(d);
    case 't':
        if (!literal(d, "true", 4)) return 0;
        lua_pushboolean(d->L, 1);
        return 1;
    case 'f':
        if (!literal(d, "false", 5)) return 0;
        lua_pushboolean(d->L, 0);
        return 1;
    case 'n':
        if (!literal(d, "null", 4)) return 0;
        lua_pushlightuserdata(d->L, NULL); /* cjson.null */
        return 1;
    default:
        if (*d->p == '-' || (*d->p >= '0' && *d->p <= '9')) return parse_number(d);
        return fail(d, "unexpected character", d->p);
    }
}

/* A string option that is one of two words: 0 for the first (the default,
 * also when absent), 1 for the second. */
static int opt_choice(lua_State *L, const char *field, const char *off, const char *on) {
    const char *v;
    int r = 0;
    lua_getfield(L, 2, field);
    if (!lua_isnil(L, -1)) {
        v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (v != NULL && strcmp(v, on) == 0) r = 1;
        else if (v == NULL || strcmp(v, off) != 0) {
            lua_pushfstring(L, "field '%s' must be \"%s\" or \"%s\"", field, off, on);
            luaL_argerror(L, 2, lua_tostring(L, -1));
        }
    }
    lua_pop(L, 1);
    return r;
}

/* core.json_decode(s [, max_depth | opts]) -> value | nil, "<reason> at byte <n>"
 * opts = { max_depth = 1..1000, lone_surrogates = "error" | "replace",
 *          big_integers = "number" | "string" }; the defaults are strict
 * and give lua-cjson's values. */
static int l_json_decode(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    lua_Integer max_depth = JSON_MAX_DEPTH;
    int replace = 0, big_strings = 0;
    json_dec d;
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_getfield(L, 2, "max_depth");
        if (!lua_isnil(L, -1)) {
            if (lua_type(L, -1) != LUA_TNUMBER) luaL_argerror(L, 2, "field 'max_depth' must be an integer");
            max_depth = lua_tointeger(L, -1);
        }
        lua_pop(L, 1);
        replace = opt_choice(L, "lone_surrogates", "error", "replace");
        big_strings = opt_choice(L, "big_integers", "number", "string");
    } else {
        max_depth = luaL_optinteger(L, 2, JSON_MAX_DEPTH);
    }
    luaL_argcheck(L, max_depth >= 1 && max_depth <= JSON_MAX_DEPTH, 2, "max_depth must be 1 to 1000");
    lua_settop(L, 1);
    lua_pushnil(L); /* slot 2: the scratch buffer, made on demand */
    d.L = L;
    d.start = d.p = (const unsigned char *)s;
    d.end = d.start + n;
    d.depth = 0;
    d.max_depth = (int)max_depth;
    d.replace_lone_surrogates = replace;
    d.big_integers_as_strings = big_strings;
    d.scratch_idx = 2;
    d.scratch = NULL;
    d.err = NULL;
    d.err_at = NULL;
    if (parse_value(&d)) {
        skip_ws(&d);
        if (d.p == d.end) return 1;
        fail(&d, "unexpected data after the value", d.p);
    }
    {
        char msg[96];
        snprintf(msg, sizeof msg, "%s at byte %lu", d.err,
                 (unsigned long)(d.err_at - d.start) + 1);
        lua_settop(L, 0);
        lua_pushnil(L);
        lua_pushstring(L, msg);
    }
    return 2;
}

static const luaL_Reg funcs[] = {
    {"json_decode", l_json_decode},
    {NULL, NULL}};

void aa_open_json(lua_State *L) {
    lua_createtable(L, KEY_CACHE_SLOTS, 0); /* the key cache (upvalue 1) */
    aa_setfuncs(L, funcs, 1);
}
