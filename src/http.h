/* The HTTP part of the C core, shared by its three files: session.c (the
 * Session userdata, one request, the results and errors), batch.c (many
 * requests on curl_multi) and stream.c (pull-mode streams).
 *
 * Rule: no Lua API call that can raise runs while libcurl is on the stack.
 * The write/header callbacks only append to C buffers owned by the session
 * (or by a batch or stream userdata); Lua values are built after libcurl
 * returns. */
#ifndef AA_HTTP_H
#define AA_HTTP_H

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


/* session.c */
int http_buf_append(buf *b, const char *p, size_t n);
void http_transfer_reset(transfer *t);
void http_transfer_free(transfer *t);
session *http_check_session(lua_State *L, int idx);
/* NULL, or why the request table at index ri cannot be sent (nothing sent) */
const char *http_setup_transfer(lua_State *L, session *s, transfer *t, int ri, int argn, int copy_body);
void http_push_headers(lua_State *L, transfer *t);
void http_push_response(lua_State *L, transfer *t);
void http_push_err(lua_State *L, const char *kind, int connect);
void http_push_error(lua_State *L, transfer *t, CURLcode rc);
void http_push_argument_error(lua_State *L, const char *msg);
void http_new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc,
                    lua_CFunction close, lua_CFunction tostring);

/* batch.c */
int http_perform(lua_State *L);

/* stream.c */
int http_stream_open(lua_State *L);
void http_open_stream(lua_State *L);

#endif
