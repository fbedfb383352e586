/* Processes and signals for scripts (the emulator CLI, the specs): Lua has
 * no way to catch a signal, and system() ignores SIGINT while its child runs.
 * Not for use inside nginx workers, whose signals belong to nginx. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include "aa.h"

typedef struct {
    const char *name;
    int signo;
} aa_signame;

static const aa_signame SIGNALS[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"TERM", SIGTERM},
    {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},
    {"CHLD", SIGCHLD}, {"KILL", SIGKILL},
};
#define NSIGNALS (sizeof SIGNALS / sizeof SIGNALS[0])

/* Written by the handler, read and cleared by signal_pending. */
static volatile sig_atomic_t caught[NSIGNALS];
static struct sigaction saved[NSIGNALS];
static int installed[NSIGNALS];

/* Async-signal-safe: a scan of a constant table and one flag store. */
static void on_signal(int signo) {
    size_t i;
    for (i = 0; i < NSIGNALS; i++)
        if (SIGNALS[i].signo == signo) caught[i] = 1;
}

int aa_signal_any_pending(void) {
    size_t i;
    for (i = 0; i < NSIGNALS; i++)
        if (caught[i]) return 1;
    return 0;
}

/* "TERM" or "SIGTERM" -> index into SIGNALS, or -1. */
static int signal_index(const char *name) {
    size_t i;
    if (strncmp(name, "SIG", 3) == 0) name += 3;
    for (i = 0; i < NSIGNALS; i++)
        if (strcmp(SIGNALS[i].name, name) == 0) return (int)i;
    return -1;
}

/* The SIGNALS indexes named by the array at `arg` (every catchable one when
 * `arg` is none/nil and all_if_nil), into idx[]; raises on a bad name. */
static size_t signal_list(lua_State *L, int arg, const char *fname, int all_if_nil, int idx[NSIGNALS]) {
    size_t n = 0, i, len;
    if (all_if_nil && lua_isnoneornil(L, arg)) {
        for (i = 0; i < NSIGNALS; i++)
            if (SIGNALS[i].signo != SIGKILL) idx[n++] = (int)i;
        return n;
    }
    if (lua_type(L, arg) != LUA_TTABLE)
        return (size_t)luaL_error(L, "bad argument 'names' to '%s' (an array of signal names expected, got %s)",
                                  fname, luaL_typename(L, arg));
    len = aa_rawlen(L, arg);
    if (len == 0 || len > NSIGNALS)
        return (size_t)luaL_error(L, "bad argument 'names' to '%s' (1 to %d signal names expected)", fname,
                                  (int)NSIGNALS);
    for (i = 1; i <= len; i++) {
        const char *name;
        int k;
        lua_rawgeti(L, arg, (int)i);
        if (lua_type(L, -1) != LUA_TSTRING)
            return (size_t)luaL_error(L, "bad argument 'names' to '%s' (names[%d] is a %s, not a signal name)",
                                      fname, (int)i, luaL_typename(L, -1));
        name = lua_tostring(L, -1);
        k = signal_index(name);
        if (k < 0 || SIGNALS[k].signo == SIGKILL)
            return (size_t)luaL_error(L, "bad argument 'names' to '%s' (cannot catch signal '%s')", fname, name);
        lua_pop(L, 1);
        idx[n++] = k;
    }
    return n;
}

/* SA_RESTART is left off on purpose: a read or sleep that the signal
 * interrupts returns, so the script gets to look at signal_pending(). */
static int l_signal_catch(lua_State *L) {
    int idx[NSIGNALS];
    size_t n = signal_list(L, 1, "signal_catch", 0, idx), i;
    for (i = 0; i < n; i++) {
        int k = idx[i];
        struct sigaction sa, old;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = 0;
        if (sigaction(SIGNALS[k].signo, &sa, &old) != 0) {
            lua_pushnil(L);
            lua_pushfstring(L, "sigaction(%s): %s", SIGNALS[k].name, strerror(errno));
            return 2;
        }
        /* Catching twice must not make our own handler the one to restore. */
        if (!installed[k]) saved[k] = old;
        installed[k] = 1;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_signal_pending(lua_State *L) {
    size_t i;
    for (i = 0; i < NSIGNALS; i++) {
        if (caught[i]) {
            caught[i] = 0;
            lua_pushstring(L, SIGNALS[i].name);
            return 1;
        }
    }
    lua_pushnil(L);
    return 1;
}

/* Puts back the disposition each signal had before signal_catch, and
 * forgets any arrival not yet taken. */
static int l_signal_reset(lua_State *L) {
    int idx[NSIGNALS];
    size_t n = signal_list(L, 1, "signal_reset", 1, idx), i;
    for (i = 0; i < n; i++) {
        int k = idx[i];
        if (installed[k]) {
            sigaction(SIGNALS[k].signo, &saved[k], NULL);
            installed[k] = 0;
        }
        caught[k] = 0;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static const luaL_Reg funcs[] = {
    {"signal_catch", l_signal_catch},
    {"signal_pending", l_signal_pending},
    {"signal_reset", l_signal_reset},
    {NULL, NULL}};

void aa_open_proc(lua_State *L) {
    aa_setfuncs(L, funcs, 0);
}
