#include "lx_process.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../proto/ws_client.h"

extern char **environ;

/* spawn(argv, {stderr = path, cwd = dir}) -> pid, stdout_fd. The child's
 * stdout is a pipe the caller reads; its stderr goes to a file (appended). */
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
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)argv, environ);
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
    double end = wsc_now() + luaL_optnumber(L, 2, 5);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (;;) {
        double left = end - wsc_now();
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

static int l_kill(lua_State *L)
{
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    static const struct {
        const char *name;
        int sig;
    } sigs[] = { { "TERM", SIGTERM }, { "INT", SIGINT }, { "KILL", SIGKILL },
                 { "HUP", SIGHUP }, { "STOP", SIGSTOP }, { "CONT", SIGCONT } };
    const char *name = luaL_optstring(L, 2, "TERM");
    int sig = -1;
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        if (strcmp(name, sigs[i].name) == 0)
            sig = sigs[i].sig;
    }
    luaL_argcheck(L, sig > 0, 2, "TERM, INT, KILL, HUP, STOP or CONT");
    lua_pushboolean(L, kill(pid, sig) == 0);
    return 1;
}

/* wait(pid, timeout) -> exit code | nil, "signal N" | nil, "timeout".
 * Polls every 10 ms: waitpid has no timeout of its own. */
static int l_wait(lua_State *L)
{
    pid_t pid = (pid_t)luaL_checkinteger(L, 1);
    double end = wsc_now() + luaL_optnumber(L, 2, 10);
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
        if (wsc_now() >= end) {
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
