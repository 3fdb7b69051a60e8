#include "lx_process.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../proto/ws_client.h"
#include "../util/clock.h"

extern char **environ;

/* The child's environment: ours with opts.env applied, a string value
 * setting the variable and false removing it; environ itself without
 * opts.env. The array and the "NAME=value" strings it points to are pushed
 * on the stack, which keeps them alive until the spawn has copied them. */
static char **spawn_env(lua_State *L, int opts)
{
    if (!lua_istable(L, opts) || lua_getfield(L, opts, "env") == LUA_TNIL)
        return environ;
    luaL_argcheck(L, lua_istable(L, -1), opts, "env must be a table of NAME = value|false");
    int env = lua_gettop(L);
    size_t n = 0, extra = 0;
    for (char **e = environ; *e; e++)
        n++;
    lua_pushnil(L);
    while (lua_next(L, env)) {
        const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        luaL_argcheck(L, name && *name && !strchr(name, '='), opts,
                      "env: names are non-empty strings without '='");
        luaL_argcheck(L, lua_type(L, -1) == LUA_TSTRING || (lua_isboolean(L, -1) && !lua_toboolean(L, -1)),
                      opts, "env: a value is a string, or false to remove the variable");
        extra++;
        lua_pop(L, 1);
    }
    char **out = lua_newuserdatauv(L, (n + extra + 1) * sizeof *out, 0);
    lua_createtable(L, (int)extra, 0); /* anchors the "NAME=value" strings */
    int strings = lua_gettop(L);
    size_t k = 0;
    for (char **e = environ; *e; e++) {
        lua_pushlstring(L, *e, strcspn(*e, "="));
        bool named = lua_rawget(L, env) != LUA_TNIL;
        lua_pop(L, 1);
        if (!named)
            out[k++] = *e;
    }
    lua_pushnil(L);
    while (lua_next(L, env)) {
        if (lua_type(L, -1) == LUA_TSTRING) {
            const char *var = lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
            lua_rawseti(L, strings, (lua_Integer)lua_rawlen(L, strings) + 1);
            out[k++] = (char *)var;
        }
        lua_pop(L, 1);
    }
    out[k] = NULL;
    return out;
}

/* spawn(argv [, opts]) -> pid, stdout_fd | nil, err. The child's stdout is
 * a pipe the caller reads. opts: stderr = path (appended to; else ours),
 * env = { NAME = value | false } (see spawn_env), pgroup = true (the child
 * leads a process group of its own, so that kill(-pid) reaches every process
 * it starts: a browser's renderers, say). */
static int l_spawn(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t argc = lua_rawlen(L, 1);
    luaL_argcheck(L, argc > 0 && argc < 256, 1, "argv must have 1 to 255 strings");
    const char *argv[256];
    for (size_t i = 0; i < argc; i++) {
        lua_rawgeti(L, 1, (lua_Integer)i + 1);
        argv[i] = luaL_checkstring(L, -1);
        lua_pop(L, 1);
    }
    argv[argc] = NULL;
    const char *errpath = NULL;
    if (lua_istable(L, 2) && lua_getfield(L, 2, "stderr") == LUA_TSTRING)
        errpath = lua_tostring(L, -1);
    bool pgroup = lua_istable(L, 2) && lua_getfield(L, 2, "pgroup") != LUA_TNIL &&
                  lua_toboolean(L, -1);
    char **envp = spawn_env(L, 2);

    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        return luaL_error(L, "pipe: %s", strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
    if (errpath)
        posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, errpath,
                                         O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    /* A fresh signal mask and default dispositions, whatever ours are. */
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (pgroup) {
        posix_spawnattr_setpgroup(&attr, 0);
        flags |= POSIX_SPAWN_SETPGROUP;
    }
    posix_spawnattr_setflags(&attr, flags);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(pipefd[1]);
    if (rc != 0) {
        close(pipefd[0]);
        lua_pushnil(L);
        lua_pushfstring(L, "cannot start %s: %s", argv[0], strerror(rc));
        return 2;
    }
    lua_pushinteger(L, pid);
    lua_pushinteger(L, pipefd[0]);
    return 2;
}

/* readline(fd, timeout) -> line | nil, "timeout" | nil, "eof". Reads a byte
 * at a time: these are a few short lines. */
static int l_readline(lua_State *L)
{
    int fd = (int)luaL_checkinteger(L, 1);
    double end = clock_seconds() + luaL_optnumber(L, 2, 5);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (;;) {
        double left = end - clock_seconds();
        if (left <= 0 || !wsc_wait(fd, false, left)) {
            lua_pushnil(L);
            lua_pushliteral(L, "timeout");
            return 2;
        }
        char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            lua_pushnil(L);
            lua_pushliteral(L, "eof");
            return 2;
        }
        if (ch == '\n')
            break;
        luaL_addchar(&b, ch);
    }
    luaL_pushresult(&b);
    return 1;
}

/* kill(pid [, name]) -> whether the signal was sent. A negative pid is a
 * process group (see spawn's pgroup). */
static int l_kill(lua_State *L)
{
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    static const struct {
        const char *name;
        int sig;
    } sigs[] = { { "TERM", SIGTERM }, { "INT", SIGINT }, { "KILL", SIGKILL },
                 { "HUP", SIGHUP }, { "STOP", SIGSTOP }, { "CONT", SIGCONT },
                 { "USR1", SIGUSR1 } };
    const char *name = luaL_optstring(L, 2, "TERM");
    int sig = -1;
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        if (strcmp(name, sigs[i].name) == 0)
            sig = sigs[i].sig;
    }
    luaL_argcheck(L, sig > 0, 2, "TERM, INT, KILL, HUP, STOP, CONT or USR1");
    lua_pushboolean(L, kill(pid, sig) == 0);
    return 1;
}

/* wait(pid, timeout) -> exit code | nil, "signal N" | nil, "timeout".
 * Polls every 10 ms: waitpid has no timeout of its own. */
static int l_wait(lua_State *L)
{
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    double end = clock_seconds() + luaL_optnumber(L, 2, 10);
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            if (WIFEXITED(st)) {
                lua_pushinteger(L, WEXITSTATUS(st));
                return 1;
            }
            lua_pushnil(L);
            lua_pushfstring(L, "signal %d", WTERMSIG(st));
            return 2;
        }
        if (r < 0) {
            lua_pushnil(L);
            lua_pushstring(L, strerror(errno));
            return 2;
        }
        if (clock_seconds() >= end) {
            lua_pushnil(L);
            lua_pushliteral(L, "timeout");
            return 2;
        }
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
}

static int l_closefd(lua_State *L)
{
    close((int)luaL_checkinteger(L, 1));
    return 0;
}

/* sleep(seconds): only for waiting on things that send no event (a file's
 * modification time, a process that has no pipe to us). */
static int l_sleep(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return 0;
}

void lx_process_register(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        { "spawn", l_spawn },
        { "readline", l_readline },
        { "kill", l_kill },
        { "wait", l_wait },
        { "closefd", l_closefd },
        { "sleep", l_sleep },
        { NULL, NULL },
    };
    luaL_setfuncs(L, funcs, 0);
}
