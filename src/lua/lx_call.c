/*
 * The one way into Lua. Every handler, timer and endpoint call goes through
 * lx_call: a traceback handler at stack index 1, the CPU budget, and the
 * failure policy (log with traceback, onError, close 1011).
 *
 * The CPU budget costs nothing per call: a call only bumps a sequence
 * number. A watchdog thread samples each worker every 50 ms; when the same
 * outermost call has used more than the budget of the worker thread's CPU
 * time, it signals the worker, whose handler installs a count hook that
 * raises an error at every instruction until the call has unwound (so a
 * script's own pcall cannot swallow it).
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../transport/conn.h"
#include "../util/log.h"
#include "lx.h"

#define WATCHDOG_TICK_NS (50 * 1000 * 1000)
#define MAX_WATCHED 64

static const char lasterr_key = 'e';

/* Keeps the raw error value for onError, returns message + traceback. */
static int traceback(lua_State *L)
{
    lua_pushvalue(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &lasterr_key);
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

void lx_call_init(struct lx_rt *rt)
{
    lua_settop(rt->L, 0);
    lua_pushcfunction(rt->L, traceback);
}

/* ---- the budget ---- */

static __thread struct lx_rt *thread_rt;

static struct {
    pthread_t thread;
    pthread_mutex_t mu;
    bool running, stop;
    struct lx_rt *rts[MAX_WATCHED];
    clockid_t clocks[MAX_WATCHED];
    uint64_t seen_seq[MAX_WATCHED];
    double start_cpu[MAX_WATCHED];
    int n;
} wd = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct lx_rt *rt = lx_rt_of(L);
    luaL_error(L, "handler exceeded its CPU budget of %f s", (lua_Number)rt->budget);
}

void lx_budget_arm(lua_State *co)
{
    lua_sethook(co, budget_hook, LUA_MASKCOUNT, 1);
}

/* lua_sethook may be called from a signal handler (ldebug.c). The hook
 * goes on the main thread and on every coroutine running inside the call:
 * hooks are per thread, and a loop inside a coroutine would escape one set
 * on the main thread alone. */
static void budget_signal(int sig)
{
    (void)sig;
    struct lx_rt *rt = thread_rt;
    if (!rt || !rt->in_call || !rt->interrupted)
        return;
    lx_budget_arm(rt->L);
    for (int i = 0; i < rt->co_depth; i++)
        lx_budget_arm(rt->co_running[i]);
}

static double clock_seconds(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0)
        return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *watchdog_main(void *arg)
{
    (void)arg;
    struct timespec tick = { 0, WATCHDOG_TICK_NS };
    for (;;) {
        nanosleep(&tick, NULL);
        pthread_mutex_lock(&wd.mu);
        if (wd.stop) {
            pthread_mutex_unlock(&wd.mu);
            return NULL;
        }
        for (int i = 0; i < wd.n; i++) {
            struct lx_rt *rt = wd.rts[i];
            if (!rt->in_call || rt->interrupted)
                continue;
            uint64_t seq = rt->call_seq;
            double cpu = clock_seconds(wd.clocks[i]);
            if (seq != wd.seen_seq[i]) {
                wd.seen_seq[i] = seq;
                wd.start_cpu[i] = cpu;
            } else if (cpu - wd.start_cpu[i] > rt->budget && rt->call_seq == seq) {
                rt->interrupted = 1;
                pthread_kill(rt->thread, SIGRTMIN + 1);
            }
        }
        pthread_mutex_unlock(&wd.mu);
    }
}

void lx_watchdog_start(struct lx_rt *rt)
{
    thread_rt = rt;
    rt->thread = pthread_self();
    struct sigaction sa = { .sa_handler = budget_signal, .sa_flags = SA_RESTART };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGRTMIN + 1, &sa, NULL);

    pthread_mutex_lock(&wd.mu);
    if (wd.n < MAX_WATCHED && pthread_getcpuclockid(rt->thread, &wd.clocks[wd.n]) == 0) {
        wd.rts[wd.n] = rt;
        wd.seen_seq[wd.n] = 0;
        wd.n++;
    } else {
        log_warn("CPU budget not enforced: no CPU clock for this thread");
    }
    if (!wd.running) {
        wd.stop = false;
        /* The watchdog takes no signals: a SIGTERM delivered to it would
         * run the loop's handler on the wrong thread, or, once the loop no
         * longer watches it, end the process by signal instead of exit 0. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        if (pthread_create(&wd.thread, NULL, watchdog_main, NULL) == 0)
            wd.running = true;
        else
            log_warn("CPU budget not enforced: cannot start the watchdog thread");
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    pthread_mutex_unlock(&wd.mu);
}

void lx_watchdog_stop(void)
{
    pthread_mutex_lock(&wd.mu);
    bool running = wd.running;
    wd.stop = true;
    wd.n = 0;
    pthread_mutex_unlock(&wd.mu);
    if (running)
        pthread_join(wd.thread, NULL);
    wd.running = false;
}

/* ---- the call ---- */

bool lx_call(struct lx_rt *rt, struct lx_service *ls, struct ws_conn *wc, int nargs, int nres,
             const char **errmsg)
{
    lua_State *L = rt->L;
    struct lx_service *prev = rt->current;
    rt->current = ls;
    if (rt->in_call++ == 0) {
        rt->interrupted = 0;
        rt->call_seq++;
    }
    int rc = lua_pcall(L, nargs, nres, 1);
    if (--rt->in_call == 0 && rt->interrupted) {
        lua_sethook(L, NULL, 0, 0);
        rt->interrupted = 0;
    }
    rt->current = prev;
    if (rc == LUA_OK)
        return true;

    const char *tb = lua_tostring(L, -1);
    log_msg(rt->loading ? LOG_DEBUG : LOG_ERROR, "%s: %s", ls ? ls->file : "moonws",
            tb ? tb : "(error without a message)");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &lasterr_key);
    if (!lua_isstring(L, -1)) {
        /* Not a string: hand over the traceback, kept alive like the rest. */
        lua_pop(L, 1);
        lua_pushstring(L, tb ? tb : "error");
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &lasterr_key);
    }
    if (errmsg)
        *errmsg = lua_tostring(L, -1);
    /* Keep the message on the stack while onError runs; pop both after. */
    if (wc && ls) {
        lx_push_handler(rt, ls, H_ERROR);
        if (!lua_isnil(L, -1)) {
            lx_caller_push(rt, wc);
            lua_pushvalue(L, -3);
            lx_call(rt, ls, NULL, 2, 0, NULL);
        } else {
            lua_pop(L, 1);
        }
        if (ws_is_open(wc))
            ws_fail(wc, WS_CLOSE_INTERNAL, "handler error");
    }
    lua_pop(L, 2);
    return false;
}

void lx_check_serving(lua_State *L, const char *what)
{
    if (lx_rt_of(L)->loading)
        luaL_error(L, "%s cannot be used while the file loads: nothing reaches clients before "
                   "the version is accepted (do it in a handler or in moonws.after(0, fn))", what);
}
