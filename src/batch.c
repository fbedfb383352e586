/* HTTP on libcurl, batches: many requests on curl_multi, `concurrency` in
 * flight, each result built after libcurl returns (see http.h). */
#include <stdlib.h>
#include <string.h>
#include "http.h"


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
        http_push_argument_error(L, argmsg);
        lua_setfield(L, -2, "err");
    } else if (ok_response) {
        http_push_response(L, t);
        lua_setfield(L, -2, "res");
    } else {
        http_push_error(L, t, rc);
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
        bad = http_setup_transfer(L, s, t, lua_gettop(L), 2, 1);
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
                http_transfer_reset(t);
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

int http_perform(lua_State *L) {
    session *s = http_check_session(L, 1);
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
        http_transfer_reset(t);
    }
    s->busy = 0;
    if (status != 0) return lua_error(L);
    return 2;
}

