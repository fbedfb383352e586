/* HMAC, SHA-256, base64(url), percent-encoding, constant-time
 * comparison (OpenSSL). */
/* The low-level SHA1_ and SHA256_ calls are deprecated in OpenSSL 3 but kept;
 * they skip the provider dispatch that costs more than hashing a CRC token
 * (see aa_hmac). Builds without them fall back to EVP. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/sha.h>
#include "aa.h"

/* ---- scratch arena ---------------------------------------------------- */

void aa_arena_init(aa_arena *a, lua_State *L, size_t first) {
    a->L = L;
    a->p = NULL;
    a->left = 0;
    a->last = first < 256 ? 256 : first;
    a->chunks = 0;
    lua_newtable(L);
    a->anchor = lua_gettop(L);
}

void *aa_arena_alloc(aa_arena *a, size_t n) {
    void *r;
    n = (n + 15) & ~(size_t)15;
    if (n > a->left) {
        size_t size = a->last * 2;
        if (size < n) size = n;
        luaL_checkstack(a->L, 1, "arena");
        /* anchored in a table, so the stack stays balanced (callers may be
         * in the middle of a lua_next traversal) */
        a->p = (char *)lua_newuserdata(a->L, size);
        lua_rawseti(a->L, a->anchor, ++a->chunks);
        a->left = size;
        a->last = size;
    }
    r = a->p;
    a->p += n;
    a->left -= n;
    return r;
}

/* ---- HMAC --------------------------------------------------------------
 * Computed from the digest directly, never with OpenSSL 3's one-shot HMAC(),
 * which looks the algorithm up on every call: that costs more than hashing a
 * short OAuth base string or CRC token. With the low-level digests when the
 * build has them, else through EVP with a digest fetched once. */

#if !defined(OPENSSL_NO_DEPRECATED_3_0) && !defined(OPENSSL_NO_SHA256)
#define AA_HMAC_LOWLEVEL_SHA 1
#endif

#if !defined(AA_HMAC_LOWLEVEL_SHA) && OPENSSL_VERSION_NUMBER >= 0x30000000L
#define AA_FETCHED_DIGESTS 1
/* Shared by every Lua state that loaded the module; the last one to close
 * frees them (lua_close unloads the module, and with it these pointers). */
static EVP_MD *md_sha1, *md_sha256;
static int md_users;
static const EVP_MD *get_md(const char *alg) {
    EVP_MD **slot = alg[3] == '1' ? &md_sha1 : &md_sha256;
    if (*slot == NULL) *slot = EVP_MD_fetch(NULL, alg[3] == '1' ? "SHA1" : "SHA256", NULL);
    return *slot;
}
static int md_release(lua_State *L) {
    (void)L;
    if (--md_users == 0) {
        EVP_MD_free(md_sha1);
        EVP_MD_free(md_sha256);
        md_sha1 = md_sha256 = NULL;
    }
    return 0;
}
#elif !defined(AA_HMAC_LOWLEVEL_SHA)
static const EVP_MD *get_md(const char *alg) {
    return alg[3] == '1' ? EVP_sha1() : EVP_sha256();
}
#endif

#ifdef AA_HMAC_LOWLEVEL_SHA
/* HMAC (RFC 2104) over the low-level digests: no allocation and no provider
 * lookup, about a third of the EVP path's instructions for a short message.
 * The OAuth signer and the CRC answer hash a few hundred bytes at most, so
 * this overhead is most of their cost. */
#define AA_HMAC_LOWLEVEL(CTX, INIT, UPDATE, FINAL, DLEN)                        \
    do {                                                                        \
        CTX c;                                                                  \
        unsigned char kb[64], pad[64], inner[DLEN];                             \
        unsigned int i;                                                         \
        memset(kb, 0, sizeof kb);                                               \
        if (keylen > sizeof kb) {                                               \
            INIT(&c);                                                           \
            UPDATE(&c, key, keylen);                                            \
            FINAL(kb, &c);                                                      \
        } else if (keylen > 0) {                                                \
            memcpy(kb, key, keylen);                                            \
        }                                                                       \
        for (i = 0; i < 64; i++) pad[i] = kb[i] ^ 0x36;                         \
        INIT(&c);                                                               \
        UPDATE(&c, pad, 64);                                                    \
        UPDATE(&c, msg, msglen);                                                \
        FINAL(inner, &c);                                                       \
        for (i = 0; i < 64; i++) pad[i] = kb[i] ^ 0x5c;                         \
        INIT(&c);                                                               \
        UPDATE(&c, pad, 64);                                                    \
        UPDATE(&c, inner, DLEN);                                                \
        FINAL(out, &c);                                                         \
        *outlen = DLEN;                                                         \
        /* key-derived state: pads, the inner hash and the context */          \
        OPENSSL_cleanse(kb, sizeof kb);                                         \
        OPENSSL_cleanse(pad, sizeof pad);                                       \
        OPENSSL_cleanse(inner, sizeof inner);                                   \
        OPENSSL_cleanse(&c, sizeof c);                                          \
    } while (0)

int aa_hmac(const char *alg, const void *key, size_t keylen, const void *msg,
            size_t msglen, unsigned char *out, unsigned int *outlen) {
    if (alg[3] == '1')
        AA_HMAC_LOWLEVEL(SHA_CTX, SHA1_Init, SHA1_Update, SHA1_Final, SHA_DIGEST_LENGTH);
    else
        AA_HMAC_LOWLEVEL(SHA256_CTX, SHA256_Init, SHA256_Update, SHA256_Final,
                         SHA256_DIGEST_LENGTH);
    return 1;
}
#else
int aa_hmac(const char *alg, const void *key, size_t keylen, const void *msg,
            size_t msglen, unsigned char *out, unsigned int *outlen) {
    const EVP_MD *md = get_md(alg);
    unsigned char kb[64], pad[64], inner[EVP_MAX_MD_SIZE];
    unsigned int innerlen = 0, i;
    int ok = 0;
    EVP_MD_CTX *ctx;
    if (md == NULL) return 0;
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) return 0;
    memset(kb, 0, sizeof kb);
    if (keylen > sizeof kb) {
        unsigned int kl = 0;
        if (!EVP_DigestInit_ex(ctx, md, NULL) || !EVP_DigestUpdate(ctx, key, keylen) ||
            !EVP_DigestFinal_ex(ctx, kb, &kl))
            goto done;
    } else if (keylen > 0) {
        memcpy(kb, key, keylen);
    }
    for (i = 0; i < 64; i++) pad[i] = kb[i] ^ 0x36;
    if (!EVP_DigestInit_ex(ctx, md, NULL) || !EVP_DigestUpdate(ctx, pad, 64) ||
        !EVP_DigestUpdate(ctx, msg, msglen) || !EVP_DigestFinal_ex(ctx, inner, &innerlen))
        goto done;
    for (i = 0; i < 64; i++) pad[i] = kb[i] ^ 0x5c;
    if (!EVP_DigestInit_ex(ctx, md, NULL) || !EVP_DigestUpdate(ctx, pad, 64) ||
        !EVP_DigestUpdate(ctx, inner, innerlen) || !EVP_DigestFinal_ex(ctx, out, outlen))
        goto done;
    ok = 1;
done:
    OPENSSL_cleanse(kb, sizeof kb);
    OPENSSL_cleanse(pad, sizeof pad);
    EVP_MD_CTX_free(ctx);
    return ok;
}
#endif

static int hmac_common(lua_State *L, const char *alg) {
    size_t kl, ml;
    const char *key = luaL_checklstring(L, 1, &kl);
    const char *msg = luaL_checklstring(L, 2, &ml);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int outlen = 0;
    if (!aa_hmac(alg, key, kl, msg, ml, out, &outlen))
        return luaL_error(L, "%s failed inside OpenSSL", alg);
    lua_pushlstring(L, (const char *)out, outlen);
    return 1;
}

static int l_hmac_sha1(lua_State *L) { return hmac_common(L, "sha1"); }
static int l_hmac_sha256(lua_State *L) { return hmac_common(L, "sha256"); }

/* ---- base64 ------------------------------------------------------------- */

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t aa_base64_encode(char *dst, const unsigned char *src, size_t n) {
    size_t i, o = 0;
    for (i = 0; i + 2 < n; i += 3) {
        unsigned v = (unsigned)src[i] << 16 | (unsigned)src[i + 1] << 8 | src[i + 2];
        dst[o++] = b64chars[v >> 18 & 63];
        dst[o++] = b64chars[v >> 12 & 63];
        dst[o++] = b64chars[v >> 6 & 63];
        dst[o++] = b64chars[v & 63];
    }
    if (i < n) {
        unsigned v = (unsigned)src[i] << 16 | (i + 1 < n ? (unsigned)src[i + 1] << 8 : 0);
        dst[o++] = b64chars[v >> 18 & 63];
        dst[o++] = b64chars[v >> 12 & 63];
        dst[o++] = i + 1 < n ? b64chars[v >> 6 & 63] : '=';
        dst[o++] = '=';
    }
    return o;
}

static int l_base64_encode(lua_State *L) {
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    char *dst;
    if (n > ((size_t)-1 / 4) * 3 - 3) return luaL_argerror(L, 1, "string too long");
    dst = (char *)lua_newuserdata(L, (n + 2) / 3 * 4 + 1);
    lua_pushlstring(L, dst, aa_base64_encode(dst, s, n));
    return 1;
}

/* base64url without padding (RFC 4648 section 5): PKCE verifiers and challenges. */
static int l_base64url_encode(lua_State *L) {
    size_t n, o, i;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    char *dst;
    if (n > ((size_t)-1 / 4) * 3 - 3) return luaL_argerror(L, 1, "string too long");
    dst = (char *)lua_newuserdata(L, (n + 2) / 3 * 4 + 1);
    o = aa_base64_encode(dst, s, n);
    while (o > 0 && dst[o - 1] == '=') o--;
    for (i = 0; i < o; i++) {
        if (dst[i] == '+') dst[i] = '-';
        else if (dst[i] == '/') dst[i] = '_';
    }
    lua_pushlstring(L, dst, o);
    return 1;
}

static int b64val(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict RFC 4648 decoding: standard alphabet, padding required, no
 * whitespace, no bits left over. Signatures are compared after decoding,
 * so leniency here would only widen what an attacker may send.
 * dst holds n / 4 * 3 bytes. NULL when done, else why the text is invalid. */
static const char *b64_decode_strict(const unsigned char *s, size_t n, unsigned char *dst,
                                     size_t *olen) {
    size_t i, o = 0;
    if (n % 4 != 0) return "invalid base64: length is not a multiple of 4";
    for (i = 0; i < n; i += 4) {
        int a = b64val(s[i]), c1 = b64val(s[i + 1]), c2, c3;
        int last = i + 4 == n;
        if (a < 0 || c1 < 0) goto bad;
        if (last && s[i + 2] == '=' && s[i + 3] == '=') {
            if (c1 & 15) goto bad;
            dst[o++] = (unsigned char)(a << 2 | c1 >> 4);
            break;
        }
        c2 = b64val(s[i + 2]);
        if (c2 < 0) goto bad;
        if (last && s[i + 3] == '=') {
            if (c2 & 3) goto bad;
            dst[o++] = (unsigned char)(a << 2 | c1 >> 4);
            dst[o++] = (unsigned char)((c1 & 15) << 4 | c2 >> 2);
            break;
        }
        c3 = b64val(s[i + 3]);
        if (c3 < 0) goto bad;
        dst[o++] = (unsigned char)(a << 2 | c1 >> 4);
        dst[o++] = (unsigned char)((c1 & 15) << 4 | c2 >> 2);
        dst[o++] = (unsigned char)((c2 & 3) << 6 | c3);
    }
    *olen = o;
    return NULL;
bad:
    return "invalid base64: unexpected character or padding";
}

static int l_base64_decode(lua_State *L) {
    size_t n, o = 0;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    unsigned char *dst = (unsigned char *)lua_newuserdata(L, n / 4 * 3 + 1);
    const char *err = b64_decode_strict(s, n, dst, &o);
    if (err != NULL) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
    }
    lua_pushlstring(L, (const char *)dst, o);
    return 1;
}

/* core.hmac_sha256_check(key, msg, b64 [, init]) -> true | false, why
 * The webhook's signature check in one call: strict base64 from byte init of
 * b64, HMAC-SHA256(key, msg), constant-time comparison. why is "base64" (not
 * strict base64), "length" (not 32 bytes; also for text over 256 bytes,
 * never decoded) or "mismatch". */
#define SIG_TEXT_MAX 256
static int l_hmac_sha256_check(lua_State *L) {
    size_t kl, ml, bl, glen = 0;
    const char *key = luaL_checklstring(L, 1, &kl);
    const char *msg = luaL_checklstring(L, 2, &ml);
    const unsigned char *b64 = (const unsigned char *)luaL_checklstring(L, 3, &bl);
    lua_Integer init = luaL_optinteger(L, 4, 1);
    unsigned char got[SIG_TEXT_MAX / 4 * 3], want[EVP_MAX_MD_SIZE];
    unsigned int wlen = 0;
    const char *why = NULL;
    luaL_argcheck(L, init >= 1 && (size_t)init <= bl + 1, 4, "initial position out of range");
    b64 += init - 1;
    bl -= (size_t)init - 1;
    if (bl > SIG_TEXT_MAX) why = "length";
    else if (b64_decode_strict(b64, bl, got, &glen) != NULL) why = "base64";
    else if (glen != 32) why = "length";
    if (why == NULL) {
        if (!aa_hmac("sha256", key, kl, msg, ml, want, &wlen))
            return luaL_error(L, "sha256 failed inside OpenSSL");
        if (CRYPTO_memcmp(got, want, 32) != 0) why = "mismatch";
        OPENSSL_cleanse(want, sizeof want);
    }
    if (why == NULL) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    lua_pushstring(L, why);
    return 2;
}

/* true when every byte is in the base64 or base64url alphabet ('=' included).
 * The CRC check runs on every token: a Lua pattern with a character class
 * costs about 50 times as much, once per position. */
static int l_base64_alphabet(lua_State *L) {
    size_t n, i;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    for (i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (b64val(c) < 0 && c != '-' && c != '_' && c != '=') break;
    }
    lua_pushboolean(L, i == n);
    return 1;
}

/* ---- percent-encoding ---------------------------------------------------- */

static const char hexu[] = "0123456789ABCDEF";

static int unreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

size_t aa_pct_encode(char *dst, const char *src, size_t n) {
    size_t i, o = 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        if (unreserved(c)) {
            dst[o++] = (char)c;
        } else {
            dst[o++] = '%';
            dst[o++] = hexu[c >> 4];
            dst[o++] = hexu[c & 15];
        }
    }
    return o;
}

int aa_hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int aa_is_tchar(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

size_t aa_pct_decode(char *dst, const char *src, size_t n, int plus_is_space) {
    size_t i, o = 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c == '%' && i + 2 < n && aa_hexval((unsigned char)src[i + 1]) >= 0 &&
            aa_hexval((unsigned char)src[i + 2]) >= 0) {
            dst[o++] = (char)(aa_hexval((unsigned char)src[i + 1]) << 4 | aa_hexval((unsigned char)src[i + 2]));
            i += 2;
        } else if (c == '+' && plus_is_space) {
            dst[o++] = ' ';
        } else {
            dst[o++] = (char)c;
        }
    }
    return o;
}

static int l_percent_encode(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    char *dst;
    if (n > (size_t)-1 / 3) return luaL_argerror(L, 1, "string too long");
    dst = (char *)lua_newuserdata(L, n * 3 + 1);
    lua_pushlstring(L, dst, aa_pct_encode(dst, s, n));
    return 1;
}

static int l_percent_decode(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    int plus = lua_toboolean(L, 2);
    char *dst = (char *)lua_newuserdata(L, n + 1);
    lua_pushlstring(L, dst, aa_pct_decode(dst, s, n, plus));
    return 1;
}

/* ---- SHA-256 (PKCE S256) ------------------------------------------ */

static int l_sha256(lua_State *L) {
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int outlen = 0;
    if (!EVP_Digest(s, n, out, &outlen, EVP_sha256(), NULL))
        return luaL_error(L, "sha256 failed inside OpenSSL");
    lua_pushlstring(L, (const char *)out, outlen);
    return 1;
}

/* ---- constant-time equality --------------------------------------------- */

static int l_equal(lua_State *L) {
    size_t la, lb;
    const char *a = luaL_checklstring(L, 1, &la);
    const char *b = luaL_checklstring(L, 2, &lb);
    /* Lengths are public (a signature's length is fixed); the contents are
     * compared without an early exit. */
    if (la != lb) {
        (void)CRYPTO_memcmp(a, a, la);
        lua_pushboolean(L, 0);
    } else {
        lua_pushboolean(L, la == 0 || CRYPTO_memcmp(a, b, la) == 0);
    }
    return 1;
}

static const luaL_Reg funcs[] = {
    {"hmac_sha1", l_hmac_sha1},
    {"hmac_sha256", l_hmac_sha256},
    {"base64_encode", l_base64_encode},
    {"base64_decode", l_base64_decode},
    {"base64url_encode", l_base64url_encode},
    {"sha256", l_sha256},
    {"base64_alphabet", l_base64_alphabet},
    {"hmac_sha256_check", l_hmac_sha256_check},
    {"percent_encode", l_percent_encode},
    {"percent_decode", l_percent_decode},
    {"equal", l_equal},
    {NULL, NULL}};

void aa_open_crypto(lua_State *L) {
    aa_setfuncs(L, funcs, 0);
#ifdef AA_FETCHED_DIGESTS
    /* a sentinel whose finalizer runs when this state closes */
    lua_newuserdata(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, md_release);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, "account_activity.core.digests");
    md_users++;
#endif
}
