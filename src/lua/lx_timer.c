/*
 * moonws.after / moonws.every: timers on the worker's loop, as userdata
 * with :cancel(). An active timer is held by a registry reference, so the
 * collector cannot take its ev_timer away; it is stopped before that
 * reference is dropped. Each timer belongs to the service whose code
 * created it and runs as that service; unloading or reloading the service
 * cancels them. A timer made while a file's top level runs waits for its
 * version to be accepted: it starts when the version is installed (the
 * reload's second phase may come much later than its first).
 */
#include "../transport/worker.h"
#include "../util/log.h"
#include "lx.h"

struct lx_timer {
    ev_timer w;
    struct lx_rt *rt;
    struct lx_service *owner;   /* NULL: not created by a service */
    struct lx_timer *prev, *next;   /* the owner's timers */
    int fn_ref;
    int self_ref;
    bool repeat;
    bool deferred;              /* made by a top level: not started yet */
};

static const char timer_mt_key = 't';

static struct lx_timer **owner_list(struct lx_rt *rt, struct lx_service *owner)
{
    return owner ? &owner->timers : &rt->orphan_timers;
}

/* Stops the timer and lets go of it and its function. */
static void timer_stop(struct lx_timer *t)
{
    if (t->self_ref == LUA_NOREF)
        return;
    lua_State *L = t->rt->L;
    ev_timer_stop(t->rt->w->loop, &t->w);
    struct lx_timer **list = owner_list(t->rt, t->owner);
    if (t->prev)
        t->prev->next = t->next;
    else
        *list = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->prev = t->next = NULL;
    luaL_unref(L, LUA_REGISTRYINDEX, t->fn_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, t->self_ref);
    t->fn_ref = t->self_ref = LUA_NOREF;
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct lx_timer *t = w->data;
    struct lx_rt *rt = t->rt;
    lua_State *L = rt->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);     /* keep it alive during the call */
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->fn_ref);
    if (!t->repeat)
        timer_stop(t);
    lua_pushvalue(L, -2);
    lx_call(rt, t->owner, NULL, 1, 0, NULL);
    lua_pop(L, 1);
}

static int start(lua_State *L, bool repeat)
{
    lua_Number sec = luaL_checknumber(L, 1);
    luaL_argcheck(L, sec >= 0, 1, "seconds must not be negative");
    luaL_argcheck(L, !repeat || sec > 0, 1, "an interval must be positive");
    luaL_checktype(L, 2, LUA_TFUNCTION);
    struct lx_rt *rt = lx_rt_of(L);
    struct lx_timer *t = lua_newuserdatauv(L, sizeof *t, 0);
    *t = (struct lx_timer){ .rt = rt, .owner = rt->current, .repeat = repeat };
    lua_rawgetp(L, LUA_REGISTRYINDEX, &timer_mt_key);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, 2);
    t->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -1);
    t->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ev_timer_init(&t->w, timer_cb, sec, repeat ? sec : 0);
    t->w.data = t;
    t->deferred = rt->loading;
    if (!t->deferred)
        ev_timer_start(rt->w->loop, &t->w);
    struct lx_timer **list = owner_list(rt, t->owner);
    t->next = *list;
    if (*list)
        (*list)->prev = t;
    *list = t;
    return 1;
}

static int m_after(lua_State *L)
{
    return start(L, false);
}

static int m_every(lua_State *L)
{
    return start(L, true);
}

static int timer_cancel(lua_State *L)
{
    struct lx_timer *t = luaL_checkudata(L, 1, "moonws.timer");
    bool active = t->self_ref != LUA_NOREF;
    timer_stop(t);
    lua_pushboolean(L, active);
    return 1;
}

static int timer_active(lua_State *L)
{
    struct lx_timer *t = luaL_checkudata(L, 1, "moonws.timer");
    lua_pushboolean(L, t->self_ref != LUA_NOREF);
    return 1;
}

static int timer_tostring(lua_State *L)
{
    struct lx_timer *t = luaL_checkudata(L, 1, "moonws.timer");
    lua_pushfstring(L, "timer (%s, %s)", t->repeat ? "every" : "after",
                    t->self_ref != LUA_NOREF ? "active" : "stopped");
    return 1;
}

void lx_timer_init(struct lx_rt *rt)
{
    lua_State *L = rt->L;
    luaL_newmetatable(L, "moonws.timer");
    lua_newtable(L);
    lua_pushcfunction(L, timer_cancel);
    lua_setfield(L, -2, "cancel");
    lua_pushcfunction(L, timer_active);
    lua_setfield(L, -2, "active");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, timer_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushboolean(L, 0);              /* one metatable for every service's timers: hidden */
    lua_setfield(L, -2, "__metatable");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &timer_mt_key);

    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->module_ref);
    lua_pushcfunction(L, m_after);
    lua_setfield(L, -2, "after");
    lua_pushcfunction(L, m_every);
    lua_setfield(L, -2, "every");
    lua_pop(L, 1);
}

void lx_timer_adopt(struct lx_rt *rt, struct lx_service *to, struct lx_service *from)
{
    struct lx_timer **list = owner_list(rt, from);
    while (*list) {
        struct lx_timer *t = *list;
        *list = t->next;
        if (t->next)
            t->next->prev = NULL;
        t->owner = to;
        t->prev = NULL;
        t->next = to->timers;
        if (to->timers)
            to->timers->prev = t;
        to->timers = t;
    }
}

void lx_timer_cancel_all(struct lx_rt *rt, struct lx_service *ls)
{
    struct lx_timer **list = owner_list(rt, ls);
    while (*list)
        timer_stop(*list);
}

void lx_timer_start_deferred(struct lx_rt *rt, struct lx_service *ls)
{
    for (struct lx_timer *t = ls->timers; t; t = t->next) {
        if (t->deferred) {
            t->deferred = false;
            ev_timer_start(rt->w->loop, &t->w);
        }
    }
}
