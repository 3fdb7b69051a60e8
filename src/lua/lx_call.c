/*
 * The one way into Lua. Every handler, timer and endpoint call goes through
 * lx_call: a traceback handler at stack index 1, the CPU budget
 * (lx_budget.c), the memory cap (lx_memory.c), and the failure policy (log
 * with traceback, onError, close 1011).
 */
#include <string.h>

#include "../transport/conn.h"
#include "../transport/worker.h"
#include "../util/clock.h"
#include "../util/log.h"
#include "../util/metrics.h"
#include "lx.h"

static const char lasterr_key = 'e';

/* Keeps the raw error value for onError, returns message + traceback.
 * Past the error object's own __tostring (Lua code, under the memory cap
 * like the rest of the call), the cap is lifted: an error near the cap
 * still gets its traceback, which is bounded by the message's size. */
static int traceback(lua_State *L)
{
    struct lx_rt *rt = lx_rt_of(L);
    bool has_meta = !lua_isstring(L, 1) && luaL_callmeta(L, 1, "__tostring");
    bool strict = lx_memory_relax(rt);
    lua_pushvalue(L, 1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &lasterr_key);
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (has_meta && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    lx_memory_restore(rt, strict);
    return 1;
}

void lx_call_init(struct lx_rt *rt)
{
    lua_settop(rt->L, 0);
    lua_pushcfunction(rt->L, traceback);
}

/* The failure policy of lx_call, apart from its hot path: the error value
 * (with its traceback) is on top of the stack. */
static __attribute__((noinline, cold)) bool call_failed(struct lx_rt *rt, struct lx_service *ls,
                                                        struct ws_conn *wc, int rc,
                                                        const char **errmsg)
{
    lua_State *L = rt->L;
    if (rc != LUA_ERRRUN) {
        /* No traceback ran (a memory error, an error in the handler): the
         * message itself is the error. */
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &lasterr_key);
    }
    if (rc == LUA_ERRMEM)
        lua_gc(L, LUA_GCCOLLECT);       /* what the failed call left goes now */
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

bool lx_call(struct lx_rt *rt, struct lx_service *ls, struct ws_conn *wc, int nargs, int nres,
             const char **errmsg)
{
    lua_State *L = rt->L;
    struct lx_budget *b = &rt->budget;
    struct lx_service *prev = rt->current;
    rt->current = ls;
    /* Counted under the connection's path (it keeps the one it opened
     * on), else the service's; a file's top level is not counted. */
    struct metrics_path_cells *mc = wc                ? wc->mc
                                    : rt->call_cells  ? rt->call_cells
                                    : ls && !rt->loading ? ls->svc.metrics
                                                         : NULL;
    int depth = atomic_load_explicit(&b->depth, memory_order_relaxed);
    uint64_t seq = atomic_load_explicit(&b->seq, memory_order_relaxed);
    if (depth == 0)
        atomic_store_explicit(&b->seq, ++seq, memory_order_relaxed);
    /* One outermost call in LIM_METRICS_TIMING_SAMPLE is timed. */
    bool timed = mc && depth == 0 && metrics_sample(rt->w->metrics);
    uint64_t t0 = timed ? (uint64_t)clock_ns() : 0;
    atomic_store_explicit(&b->depth, depth + 1, memory_order_release);
    bool strict = rt->mem.strict;
    rt->mem.strict = true;
    int rc = lua_pcall(L, nargs, nres, 1);
    rt->mem.strict = strict;
    atomic_store_explicit(&b->depth, depth, memory_order_release);
    if (depth == 0)
        lx_budget_disarm(rt);
    rt->current = prev;
    if (mc) {
        bool over = rc != LUA_OK &&
                    atomic_load_explicit(&b->interrupted, memory_order_relaxed) == seq;
        metrics_handler_call(mc, rc == LUA_OK, over);
        if (timed)
            metrics_handler_timed(mc, (uint64_t)clock_ns() - t0);
    }
    if (rc == LUA_OK)
        return true;
    return call_failed(rt, ls, wc, rc, errmsg);
}
