/*
 * The CPU budget of handler calls, and what keeps it whole.
 *
 * It costs nothing per call: lx_call bumps a sequence number and a depth.
 * One watchdog thread for the process samples each worker's thread CPU
 * clock every LIM_BUDGET_TICK; when the same outermost call has used more
 * than its budget, it marks the call interrupted and signals the worker.
 * The worker's signal handler installs a count hook that raises the budget
 * error at every instruction — on the main thread and on every coroutine
 * running inside the call, since hooks are per thread — until the call has
 * unwound, so a script's own pcall cannot swallow it. A thread created
 * meanwhile inherits its creator's hook.
 *
 * What would slip past it is closed here or in the sandbox: services have
 * no debug.sethook (lx_sandbox.c), so nothing but this file sets a hook;
 * every coroutine is resumed (and closed: its __close handlers run in it)
 * through a guard that lists it as running, and the guard sits in the
 * state's coroutine library itself, so no alias of the library is
 * unguarded. Belt and braces: while an interrupted call has not unwound,
 * the watchdog signals again at every tick. One thing stays out of reach:
 * a single C function (a backtracking string.find) runs no instruction
 * until it returns; after LIM_BUDGET_STUCK more seconds the watchdog says
 * so in the log, once.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lualib.h>

#include "../util/log.h"
#include "lx.h"

/* The runtime on this thread, for the signal handler, which is given no
 * context of its own. */
static __thread struct lx_rt *thread_rt;

/* The watchdog: one thread for the process, watching every worker. */
static struct {
    pthread_t thread;
    pthread_mutex_t mu;
    bool running, stop;
    int n;
    struct watched {
        struct lx_rt *rt;
        clockid_t clock;
        uint64_t seq;           /* the call being timed */
        double start_cpu;       /* its thread's CPU clock when first seen */
        double interrupted_at;  /* monotonic seconds; 0: not interrupted yet */
        bool stuck_logged;
    } w[LIM_WORKERS_MAX];
} wd = { .mu = PTHREAD_MUTEX_INITIALIZER };

static bool interrupted_now(struct lx_budget *b)
{
    uint64_t seq = atomic_load_explicit(&b->seq, memory_order_relaxed);
    return atomic_load_explicit(&b->depth, memory_order_acquire) > 0 &&
           atomic_load_explicit(&b->interrupted, memory_order_relaxed) == seq;
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct lx_rt *rt = lx_rt_of(L);
    if (!interrupted_now(&rt->budget)) {
        /* Left on a coroutine by a call that has ended. */
        lua_sethook(L, NULL, 0, 0);
        return;
    }
    luaL_error(L, "handler exceeded its CPU budget of %f s", (lua_Number)rt->budget.seconds);
}

static void arm(lua_State *co)
{
    lua_sethook(co, budget_hook, LUA_MASKCOUNT, 1);
}

/* lua_sethook may be called from a signal handler (ldebug.c). The copy of
 * the service's name is made here, on the worker's own thread, where the
 * service cannot go away underneath; the watchdog reads it once `named`
 * says it is whole. */
static void budget_signal(int sig)
{
    (void)sig;
    struct lx_rt *rt = thread_rt;
    if (!rt || !interrupted_now(&rt->budget))
        return;
    struct lx_budget *b = &rt->budget;
    arm(rt->L);
    for (int i = 0; i < b->co_depth; i++)
        arm(b->co_running[i]);
    uint64_t seq = atomic_load_explicit(&b->seq, memory_order_relaxed);
    if (atomic_load_explicit(&b->named, memory_order_relaxed) != seq) {
        const char *f = rt->current ? rt->current->file : "(a timer of no service)";
        size_t i = 0;
        for (; f[i] && i + 1 < sizeof b->file; i++)
            b->file[i] = f[i];
        b->file[i] = '\0';
        atomic_store_explicit(&b->named, seq, memory_order_release);
    }
}

void lx_budget_disarm(struct lx_rt *rt)
{
    if (lua_gethook(rt->L))
        lua_sethook(rt->L, NULL, 0, 0);
}

static double clock_seconds(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0)
        return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One look at one worker. */
static void watch(struct watched *w)
{
    struct lx_budget *b = &w->rt->budget;
    if (atomic_load_explicit(&b->depth, memory_order_acquire) == 0)
        return;
    uint64_t seq = atomic_load_explicit(&b->seq, memory_order_relaxed);
    double cpu = clock_seconds(w->clock);
    if (seq != w->seq) {
        *w = (struct watched){ .rt = w->rt, .clock = w->clock, .seq = seq, .start_cpu = cpu };
        return;
    }
    if (!w->interrupted_at) {
        if (cpu - w->start_cpu <= b->seconds)
            return;
        /* When the call ended meanwhile, this names a call that is over:
         * the signal handler and the hook see it is not the current one. */
        atomic_store_explicit(&b->interrupted, seq, memory_order_relaxed);
        w->interrupted_at = clock_seconds(CLOCK_MONOTONIC);
    } else if (!w->stuck_logged &&
               clock_seconds(CLOCK_MONOTONIC) - w->interrupted_at > LIM_BUDGET_STUCK &&
               atomic_load_explicit(&b->named, memory_order_acquire) == seq) {
        /* Copied, then checked again: the name is this call's unless
         * another call has been named since. */
        char file[sizeof b->file];
        memcpy(file, b->file, sizeof file);
        file[sizeof file - 1] = '\0';
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&b->named, memory_order_relaxed) == seq) {
            log_warn("the handler of %s is stuck inside a C function: it passed its CPU budget "
                     "%.0f s ago and the budget cannot stop it until that function returns; "
                     "the worker serves nobody else meanwhile", file, LIM_BUDGET_STUCK);
            w->stuck_logged = true;
        }
    }
    /* Interrupted and not unwound: signal again, in case a hook went. */
    pthread_kill(b->thread, SIGRTMIN + 1);
}

static void *watchdog_main(void *arg)
{
    (void)arg;
    struct timespec tick = { 0, (long)(LIM_BUDGET_TICK * 1e9) };
    for (;;) {
        nanosleep(&tick, NULL);
        pthread_mutex_lock(&wd.mu);
        if (wd.stop) {
            pthread_mutex_unlock(&wd.mu);
            return NULL;
        }
        for (int i = 0; i < wd.n; i++)
            watch(&wd.w[i]);
        pthread_mutex_unlock(&wd.mu);
    }
}

void lx_watchdog_start(struct lx_rt *rt)
{
    thread_rt = rt;
    rt->budget.thread = pthread_self();
    struct sigaction sa = { .sa_handler = budget_signal, .sa_flags = SA_RESTART };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGRTMIN + 1, &sa, NULL);

    pthread_mutex_lock(&wd.mu);
    struct watched *w = &wd.w[wd.n];
    if (wd.n < LIM_WORKERS_MAX && pthread_getcpuclockid(rt->budget.thread, &w->clock) == 0) {
        w->rt = rt;
        w->seq = 0;
        wd.n++;
    } else {
        log_warn("CPU budget not enforced: no CPU clock for this thread, or more than %d workers",
                 LIM_WORKERS_MAX);
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

void lx_watchdog_forget(struct lx_rt *rt)
{
    pthread_mutex_lock(&wd.mu);
    for (int i = 0; i < wd.n; i++) {
        if (wd.w[i].rt == rt) {
            wd.w[i] = wd.w[--wd.n];
            break;
        }
    }
    pthread_mutex_unlock(&wd.mu);
    /* A signal sent before now and delivered later finds nothing to do. */
    if (thread_rt == rt)
        thread_rt = NULL;
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

/* ---- the coroutine guard ---- */

/* Calls the function at stack index 1 with the values above it while co
 * is listed as running, so that an interrupt of the budget reaches it. */
static int call_running(lua_State *L, lua_State *co)
{
    struct lx_budget *b = &lx_rt_of(L)->budget;
    if (b->co_depth == LIM_LUA_COROUTINES)
        return luaL_error(L, "coroutines nested more than %d deep", LIM_LUA_COROUTINES);
    b->co_running[b->co_depth] = co;
    b->co_depth++;              /* after the store: the signal handler reads up to here */
    if (interrupted_now(b))
        arm(co);
    int rc = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    b->co_depth--;
    if (rc != LUA_OK)
        return lua_error(L);
    return lua_gettop(L);
}

/* coroutine.resume and coroutine.close through the guard (upvalue 1: the
 * real one). close belongs here too: it runs the coroutine's pending
 * __close handlers, in the coroutine. */
static int guarded_on_thread(lua_State *L)
{
    lua_State *co = lua_tothread(L, 1);
    luaL_argexpected(L, co, 1, "coroutine");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    return call_running(L, co);
}

/* A function made by coroutine.wrap, called through the guard (upvalue 1:
 * the real wrapper, 2: its coroutine). */
static int guarded_wrapped(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    return call_running(L, lua_tothread(L, lua_upvalueindex(2)));
}

/* coroutine.wrap: the real one, its result called through the guard. The
 * real wrapper keeps its coroutine as its first upvalue (lcorolib.c). */
static int guarded_wrap(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
    if (!lua_getupvalue(L, -1, 1) || !lua_isthread(L, -1))
        return luaL_error(L, "coroutine.wrap: unexpected wrapper");
    lua_pushcclosure(L, guarded_wrapped, 2);
    return 1;
}

void lx_budget_guard_coroutines(lua_State *L)
{
    static const struct {
        const char *name;
        lua_CFunction guard;
    } guarded[] = {
        { "resume", guarded_on_thread },
        { "close", guarded_on_thread },
        { "wrap", guarded_wrap },
    };
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, LUA_COLIBNAME);
    for (size_t i = 0; i < sizeof guarded / sizeof *guarded; i++) {
        lua_getfield(L, -1, guarded[i].name);
        lua_pushcclosure(L, guarded[i].guard, 1);
        lua_setfield(L, -2, guarded[i].name);
    }
    lua_pop(L, 2);
}
