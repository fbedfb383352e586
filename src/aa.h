/* Shared declarations of the C core (account_activity.core). */
#ifndef AA_H
#define AA_H

#include <stddef.h>
#include "compat.h"

#define AA_VERSION "0.1.0"

void aa_open_crypto(lua_State *L);   /* adds its functions to the table on top */
void aa_open_oauth1(lua_State *L);
void aa_open_http(lua_State *L);
void aa_open_json(lua_State *L);
void aa_open_redis(lua_State *L);

/* A userdata class: methods as __index, gc/close/tostring, __name and a
 * protected __metatable (core.c). */
void aa_new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc,
                  lua_CFunction close, lua_CFunction tostring);
void aa_open_proc(lua_State *L);

/* True while a signal caught by core.signal_catch waits to be taken. */
int aa_signal_any_pending(void);

/* Scratch memory owned by Lua: chunks are userdata kept in an anchor table
 * that aa_arena_init pushes, so an error raised at any point leaves nothing
 * to free. The caller keeps that table on the stack while it uses the memory. */
typedef struct {
    lua_State *L;
    char *p;
    size_t left;
    size_t last;
    int anchor, chunks;
} aa_arena;

void aa_arena_init(aa_arena *a, lua_State *L, size_t first);
void *aa_arena_alloc(aa_arena *a, size_t n);

/* Percent-encoding per RFC 3986 (unreserved set kept); returns bytes written.
 * dst must hold 3 * n bytes. */
size_t aa_pct_encode(char *dst, const char *src, size_t n);
/* Decodes %XX (and '+' as space when plus_is_space); invalid escapes are kept
 * literally. dst must hold n bytes. Returns the decoded length. */
size_t aa_pct_decode(char *dst, const char *src, size_t n, int plus_is_space);

/* Monotonic seconds (core.c): the clock of every deadline in the core. */
double aa_mono(void);

/* The value of a hex digit (either case), or -1. */
int aa_hexval(unsigned char c);
/* An RFC 9110 token character (methods, header names). */
int aa_is_tchar(unsigned char c);

size_t aa_base64_encode(char *dst, const unsigned char *src, size_t n);
int aa_hmac(const char *alg, const void *key, size_t keylen, const void *msg,
            size_t msglen, unsigned char *out, unsigned int *outlen);

#endif
