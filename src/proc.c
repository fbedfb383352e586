/* Processes and signals for scripts (the emulator CLI, the specs): Lua has
 * no way to catch a signal, and system() ignores SIGINT while its child runs.
 * Not for use inside nginx workers, whose signals belong to nginx. */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* syscall(), close_range's number */
#endif
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#if defined(__linux__)
#include <sys/prctl.h>
#include <sys/syscall.h>
#endif
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

/* A signal name (string) at `arg` -> its number; raises naming `argname`. */
static int check_signal(lua_State *L, int arg, const char *argname, const char *fname) {
    int k;
    if (lua_type(L, arg) != LUA_TSTRING)
        return luaL_error(L, "bad argument '%s' to '%s' (a signal name expected, got %s)", argname, fname,
                          luaL_typename(L, arg));
    k = signal_index(lua_tostring(L, arg));
    if (k < 0)
        return luaL_error(L, "bad argument '%s' to '%s' (unknown signal '%s')", argname, fname,
                          lua_tostring(L, arg));
    return SIGNALS[k].signo;
}

/* A pid that names one process (> 1) or, negated, a process group (< -1):
 * 0, 1 and -1 would reach this group, init, or every process we may signal. */
static pid_t check_pid(lua_State *L, int arg, const char *fname, int groups_ok) {
    lua_Number n = luaL_checknumber(L, arg);
    pid_t pid = (n >= -2147483647.0 && n <= 2147483647.0) ? (pid_t)n : 0;
    if ((lua_Number)pid != n || !(pid > 1 || (groups_ok && pid < -1)))
        luaL_error(L, "bad argument 'pid' to '%s' (%s expected)", fname,
                   groups_ok ? "a process id > 1, or a negated process group < -1" : "a process id > 1");
    return pid;
}

/* Everything from fd `from` up, except `keep`; after fork, so only system
 * calls (close_range where the kernel has it). */
static void close_fds_from(int from, int keep) {
#if defined(__linux__) && defined(SYS_close_range)
    if (keep >= from) {
        if (keep > from && syscall(SYS_close_range, (unsigned)from, (unsigned)keep - 1, 0u) != 0) goto loop;
        if (syscall(SYS_close_range, (unsigned)keep + 1, ~0u, 0u) == 0) return;
    } else if (syscall(SYS_close_range, (unsigned)from, ~0u, 0u) == 0) {
        return;
    }
loop:
#endif
    {
        struct rlimit rl;
        int fd, max = 4096;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 1048576)
            max = (int)rl.rlim_cur;
        for (fd = from; fd < max; fd++)
            if (fd != keep) close(fd);
    }
}

/* The child's side of spawn: never returns. Only async-signal-safe calls:
 * the parent may hold locks no thread will ever release here. */
static void spawn_child(char *const argv[], const int redirect[3], int deathsig, pid_t parent, int group,
                        int errfd) {
    sigset_t none;
    size_t i;
    int e, t;
#if defined(__linux__)
    if (deathsig != 0) {
        if (prctl(PR_SET_PDEATHSIG, deathsig) != 0) goto fail;
        /* The parent may have died before prctl: nobody would send it then. */
        if (getppid() != parent) _exit(127);
    }
#else
    (void)deathsig;
    (void)parent;
#endif
    if (group && setpgid(0, 0) != 0) goto fail;
    for (t = 0; t < 3; t++)
        if (redirect[t] >= 0 && dup2(redirect[t], t) < 0) goto fail;
    close_fds_from(3, errfd);
    /* A handler installed by signal_catch would be reset by exec anyway; an
     * ignored signal or a blocked mask would be inherited by the program. */
    for (i = 0; i < NSIGNALS; i++)
        if (SIGNALS[i].signo != SIGKILL) signal(SIGNALS[i].signo, SIG_DFL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execvp(argv[0], argv);
fail:
    e = errno;
    while (write(errfd, &e, sizeof e) < 0 && errno == EINTR) {}
    _exit(127);
}

/* Opens opts[field] (a path) for the child's fd `target`; -1 when absent.
 * The fd is >= 3 and close-on-exec in the parent, so neither a dup2 in the
 * child nor another spawn can catch it by accident. */
static int open_redirect(lua_State *L, const char *field, int target, int *fd) {
    const char *path;
    int raw, e;
    *fd = -1;
    if (aa_getfield(L, 2, field) == LUA_TNIL) {
        lua_pop(L, 1);
        return 1;
    }
    if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "bad argument 'opts.%s' to 'spawn' (a path expected, got %s)", field,
                          luaL_typename(L, -1));
    path = lua_tostring(L, -1);
    raw = open(path, target == 0 ? O_RDONLY : (O_WRONLY | O_CREAT | O_APPEND), 0644);
    e = errno;
    if (raw >= 0) {
        *fd = fcntl(raw, F_DUPFD_CLOEXEC, 3);
        e = errno;
        close(raw);
    }
    if (*fd < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", path, strerror(e));
        return 0; /* nil, err on the stack above the path */
    }
    lua_pop(L, 1);
    return 1;
}

/* core.spawn(argv, opts) -> pid | nil, err. argv[1] is found on PATH.
 * opts: pdeathsig ("TERM": sent to the child when this process dies, kill -9
 * included), group (true: the child leads a new process group, so a
 * terminal's Ctrl-C reaches only us and we decide how it stops), stdin,
 * stdout, stderr (paths; stdout and stderr are appended to). */
static int l_spawn(lua_State *L) {
    size_t argc, i;
    char **argv;
    int redirect[3] = {-1, -1, -1}, errpipe[2], deathsig = 0, group = 0, e, ok = 1, t;
    pid_t pid, parent = getpid();
    ssize_t got;
    static const char *const fields[3] = {"stdin", "stdout", "stderr"};
    if (lua_type(L, 1) != LUA_TTABLE)
        return luaL_error(L, "bad argument 'argv' to 'spawn' (an array of strings expected, got %s)",
                          luaL_typename(L, 1));
    argc = aa_rawlen(L, 1);
    if (argc == 0 || argc > 4096)
        return luaL_error(L, "bad argument 'argv' to 'spawn' (1 to 4096 strings expected)");
    if (!lua_isnoneornil(L, 2) && lua_type(L, 2) != LUA_TTABLE)
        return luaL_error(L, "bad argument 'opts' to 'spawn' (a table expected, got %s)", luaL_typename(L, 2));
    lua_settop(L, 2);
    /* Userdata: freed by the collector whichever error is raised below. */
    argv = (char **)lua_newuserdata(L, (argc + 1) * sizeof *argv);
    for (i = 0; i < argc; i++) {
        size_t len;
        const char *a;
        lua_rawgeti(L, 1, (int)i + 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            return luaL_error(L, "bad argument 'argv' to 'spawn' (argv[%d] is a %s, not a string)", (int)i + 1,
                              luaL_typename(L, -1));
        a = lua_tolstring(L, -1, &len);
        if (strlen(a) != len)
            return luaL_error(L, "bad argument 'argv' to 'spawn' (argv[%d] holds a NUL byte)", (int)i + 1);
        argv[i] = (char *)a; /* the string stays alive: argv (arg 1) holds it */
        lua_pop(L, 1);
    }
    argv[argc] = NULL;
    if (lua_istable(L, 2)) {
        if (aa_getfield(L, 2, "pdeathsig") != LUA_TNIL) deathsig = check_signal(L, -1, "opts.pdeathsig", "spawn");
        lua_pop(L, 1);
        aa_getfield(L, 2, "group");
        if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
            return luaL_error(L, "bad argument 'opts.group' to 'spawn' (a boolean expected, got %s)",
                              luaL_typename(L, -1));
        group = lua_toboolean(L, -1);
        lua_pop(L, 1);
        /* Checked before anything is opened, so a raise leaks no fd. */
        for (t = 0; t < 3; t++) {
            int ty = aa_getfield(L, 2, fields[t]);
            lua_pop(L, 1);
            if (ty != LUA_TNIL && ty != LUA_TSTRING)
                return luaL_error(L, "bad argument 'opts.%s' to 'spawn' (a path expected, got %s)", fields[t],
                                  lua_typename(L, ty));
        }
        for (t = 0; t < 3 && ok; t++) ok = open_redirect(L, fields[t], t, &redirect[t]);
    }
    if (ok && pipe(errpipe) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "pipe: %s", strerror(errno));
        ok = 0;
    }
    if (ok) {
        fcntl(errpipe[0], F_SETFD, FD_CLOEXEC);
        fcntl(errpipe[1], F_SETFD, FD_CLOEXEC);
        pid = fork();
        if (pid == 0) spawn_child(argv, redirect, deathsig, parent, group, errpipe[1]);
        e = errno;
        close(errpipe[1]);
        if (pid < 0) {
            lua_pushnil(L);
            lua_pushfstring(L, "fork: %s", strerror(e));
            ok = 0;
        } else {
            /* Both sides set the group, so it exists whichever runs first. */
            if (group) setpgid(pid, pid);
            /* EOF: exec succeeded (the pipe was close-on-exec); an int: errno. */
            while ((got = read(errpipe[0], &e, sizeof e)) < 0 && errno == EINTR) {}
            if (got == (ssize_t)sizeof e) {
                while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
                lua_pushnil(L);
                lua_pushfstring(L, "cannot run %s: %s", argv[0], strerror(e));
                ok = 0;
            } else {
                lua_pushinteger(L, (lua_Integer)pid);
            }
        }
        close(errpipe[0]);
    }
    for (t = 0; t < 3; t++)
        if (redirect[t] >= 0) close(redirect[t]);
    return ok ? 1 : 2;
}

static void push_status(lua_State *L, int status) {
    lua_pushboolean(L, 1);
    if (WIFEXITED(status)) {
        lua_pushinteger(L, WEXITSTATUS(status));
    } else {
        size_t i;
        int sig = WTERMSIG(status);
        for (i = 0; i < NSIGNALS; i++)
            if (SIGNALS[i].signo == sig) break;
        if (i < NSIGNALS) lua_pushstring(L, SIGNALS[i].name);
        else lua_pushfstring(L, "signal %d", sig);
    }
}

/* core.wait(pid, timeout_s, interruptible) -> true, exit code | signal
 * name; false, "timeout"; false, "signal" (interruptible only: a signal
 * caught by signal_catch waits to be taken); nil, err (not our child, or
 * already reaped). */
static int l_wait(lua_State *L) {
    pid_t pid = check_pid(L, 1, "wait", 0);
    lua_Number timeout = luaL_optnumber(L, 2, 0);
    int interruptible = lua_toboolean(L, 3);
    double deadline;
    long step_ns = 1000000L;
    luaL_argcheck(L, timeout >= 0 && timeout <= 86400, 2, "must be between 0 and 86400 seconds");
    deadline = aa_mono() + (double)timeout;
    for (;;) {
        int status;
        double left;
        struct timespec ts;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            push_status(L, status);
            return 2;
        }
        if (r < 0 && errno != EINTR) {
            lua_pushnil(L);
            lua_pushfstring(L, "waitpid(%d): %s", (int)pid, strerror(errno));
            return 2;
        }
        if (interruptible && aa_signal_any_pending()) {
            lua_pushboolean(L, 0);
            lua_pushliteral(L, "signal");
            return 2;
        }
        left = deadline - aa_mono();
        if (left <= 0) {
            lua_pushboolean(L, 0);
            lua_pushliteral(L, "timeout");
            return 2;
        }
        /* From 1 ms doubling to 20 ms: a quick exit is seen quickly, a
         * long wait costs a few wake-ups a second. */
        if (left * 1e9 < (double)step_ns) step_ns = (long)(left * 1e9) + 1;
        ts.tv_sec = 0;
        ts.tv_nsec = step_ns;
        nanosleep(&ts, NULL);
        if (step_ns < 20000000L) step_ns *= 2;
        if (step_ns > 20000000L) step_ns = 20000000L;
    }
}

/* core.kill(pid, signal) -> true | nil, err; a negative pid (< -1) names a
 * process group. signal defaults to "TERM". */
static int l_kill(lua_State *L) {
    pid_t pid = check_pid(L, 1, "kill", 1);
    int sig = lua_isnoneornil(L, 2) ? SIGTERM : check_signal(L, 2, "signal", "kill");
    if (kill(pid, sig) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "kill(%d): %s", (int)pid, strerror(errno));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static const luaL_Reg funcs[] = {
    {"spawn", l_spawn},
    {"wait", l_wait},
    {"kill", l_kill},
    {"signal_catch", l_signal_catch},
    {"signal_pending", l_signal_pending},
    {"signal_reset", l_signal_reset},
    {NULL, NULL}};

void aa_open_proc(lua_State *L) {
    aa_setfuncs(L, funcs, 0);
}
