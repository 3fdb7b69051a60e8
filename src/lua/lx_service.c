/*
 * A service object's life: a candidate made by the loader (lx_load.c) is
 * installed (mounted, or moved into the running version), taken off its
 * path, unloaded, and freed when its last connection has gone.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../transport/worker.h"
#include "../util/metrics.h"
#include "lx.h"
#include "lx_service.h"

struct lx_service *lx_service_new(struct lx_rt *rt, const char *file)
{
    struct lx_service *ls = xcalloc(1, sizeof *ls);
    ls->rt = rt;
    ls->file = xstrdup(file);
    ls->name = xstrndup(file, strlen(file) - 4);
    ls->table_ref = ls->env_ref = ls->routes_ref = LUA_NOREF;
    ls->shared_undo_ref = LUA_NOREF;
    for (int i = 0; i < H_COUNT; i++)
        ls->handler[i] = LUA_NOREF;
    ls->svc.ops = &lx_svc_ops;
    ls->svc.rt = ls;
    ls->svc.refs = 1;
    ls->svc.metrics_path = ls->svc.metrics_upgrade = -1;
    return ls;
}

/* ---- its metrics series (util/metrics.h) ---- */

/* Takes the series of ls's path, its upgrades and its routes (those it
 * does not hold yet). Taken before the ones they replace are let go, so
 * that a series that stays is never free in between. */
static void hold_series(struct lx_rt *rt, struct lx_service *ls)
{
    struct svc *s = &ls->svc;
    if (!rt->metrics)
        return;
    if (s->metrics_path < 0) {
        char route[LIM_HTTP_HEAD_MAX];
        s->metrics_path = metrics_path_acquire(rt->metrics, s->path);
        snprintf(route, sizeof route, "websocket %s", s->path);
        s->metrics_upgrade = metrics_route_acquire(rt->metrics, route);
        s->metrics = metrics_path_cells(rt->w->metrics, s->metrics_path);
    }
    for (size_t i = 0; i < s->nroutes; i++) {
        struct svc_route *r = &s->routes[i];
        if (r->metrics_route < 0) {
            char route[LIM_HTTP_HEAD_MAX];
            snprintf(route, sizeof route, "%s %s", r->method, r->path);
            r->metrics_route = metrics_route_acquire(rt->metrics, route);
        }
    }
}

static void let_go_path(struct lx_rt *rt, struct svc *s)
{
    if (s->metrics_path >= 0) {
        metrics_path_release(rt->metrics, s->metrics_path);
        metrics_route_release(rt->metrics, s->metrics_upgrade);
    }
    s->metrics_path = s->metrics_upgrade = -1;
}

/* Drops everything a (candidate or retired) version holds in Lua. */
static void release_lua(struct lx_rt *rt, struct lx_service *ls)
{
    lua_State *L = rt->L;
    luaL_unref(L, LUA_REGISTRYINDEX, ls->table_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, ls->env_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, ls->routes_ref);
    ls->table_ref = ls->env_ref = ls->routes_ref = LUA_NOREF;
    for (int i = 0; i < H_COUNT; i++) {
        luaL_unref(L, LUA_REGISTRYINDEX, ls->handler[i]);
        ls->handler[i] = LUA_NOREF;
    }
}

static void free_routes(struct lx_rt *rt, struct svc *s)
{
    for (size_t i = 0; i < s->nroutes; i++) {
        if (s->routes[i].metrics_route >= 0)
            metrics_route_release(rt->metrics, s->routes[i].metrics_route);
        free(s->routes[i].method);
        free(s->routes[i].path);
    }
    free(s->routes);
    s->routes = NULL;
    s->nroutes = 0;
}

static void free_auth(struct lx_service *ls)
{
    lx_auth_free(ls->auth);
    ls->auth = NULL;
    for (size_t i = 0; ls->route_auth && i < ls->svc.nroutes; i++)
        lx_auth_free(ls->route_auth[i].own);
    free(ls->route_auth);
    ls->route_auth = NULL;
}

static void service_free(struct lx_service *ls)
{
    free_auth(ls);
    svc_conf_free(&ls->svc.conf);
    let_go_path(ls->rt, &ls->svc);
    free_routes(ls->rt, &ls->svc);
    free(ls->svc.path);
    free(ls->dispatch_key);
    free(ls->file);
    free(ls->name);
    free(ls->shared_key);
    free(ls);
}

void lx_service_destroy(struct lx_rt *rt, struct lx_service *ls)
{
    release_lua(rt, ls);
    service_free(ls);
}

void lx_service_discard(struct lx_rt *rt, struct lx_service *ls)
{
    lx_shared_undo(rt, ls);
    lx_timer_cancel_all(rt, ls);
    release_lua(rt, ls);
    service_free(ls);
}

bool lx_service_mount(struct lx_rt *rt, struct lx_service *ls, char *err, size_t errcap)
{
    struct svc *other = router_mount(&rt->router, &ls->svc);
    if (other) {
        snprintf(err, errcap, "%s:%d: path %s is already served by %s", ls->file, ls->path_line,
                 ls->svc.path, ((struct lx_service *)other->rt)->file);
        return false;
    }
    ls->mounted = true;
    hold_series(rt, ls);
    lx_shared_keep(rt, ls);
    lx_timer_start_deferred(rt, ls);
    if (rt->nsvcs == rt->capsvcs) {
        rt->capsvcs = rt->capsvcs ? rt->capsvcs * 2 : 8;
        rt->svcs = xrealloc(rt->svcs, rt->capsvcs * sizeof *rt->svcs);
    }
    rt->svcs[rt->nsvcs++] = ls;
    return true;
}

struct lx_service *lx_service_find(struct lx_rt *rt, const char *file)
{
    for (size_t i = 0; i < rt->nsvcs; i++) {
        if (strcmp(rt->svcs[i]->file, file) == 0)
            return rt->svcs[i];
    }
    return NULL;
}

size_t lx_service_open_count(const struct lx_service *ls)
{
    size_t n = 0;
    for (struct ws_conn *wc = ls->svc.conns; wc; wc = wc->svc_next)
        n += ws_is_open(wc);
    return n;
}

void lx_service_unmount(struct lx_rt *rt, struct lx_service *ls)
{
    if (ls->mounted)
        router_unmount(&rt->router, &ls->svc);
    ls->mounted = false;
}

void lx_service_replace(struct lx_rt *rt, struct lx_service *old, struct lx_service *cand)
{
    bool moved = strcmp(old->svc.path, cand->svc.path) != 0;
    /* The candidate's series are taken before old's are let go (the same
     * ones, when nothing moved). */
    hold_series(rt, cand);
    if (moved) {
        lx_service_unmount(rt, old);
        /* Its open connections leave the old path's counts... */
        for (struct ws_conn *wc = old->svc.conns; wc; wc = wc->svc_next) {
            if (ws_is_open(wc))
                ws_count_open(wc, -1);
        }
    }
    /* The old version's Lua state and timers go; the candidate's move in. */
    lx_shared_keep(rt, cand);
    lx_timer_cancel_all(rt, old);
    lx_timer_adopt(rt, old, cand);
    release_lua(rt, old);
    old->table_ref = cand->table_ref;
    old->env_ref = cand->env_ref;
    old->routes_ref = cand->routes_ref;
    memcpy(old->handler, cand->handler, sizeof old->handler);
    cand->table_ref = cand->env_ref = cand->routes_ref = LUA_NOREF;
    for (int i = 0; i < H_COUNT; i++)
        cand->handler[i] = LUA_NOREF;

    free(old->dispatch_key);
    old->dispatch_key = cand->dispatch_key;
    cand->dispatch_key = NULL;
    svc_conf_free(&old->svc.conf);
    old->svc.conf = cand->svc.conf;
    cand->svc.conf = (struct svc_conf){ 0 };
    free_auth(old);
    free_routes(rt, &old->svc);
    old->svc.routes = cand->svc.routes;
    old->svc.nroutes = cand->svc.nroutes;
    old->auth = cand->auth;
    old->route_auth = cand->route_auth;
    cand->svc.routes = NULL;
    cand->svc.nroutes = 0;
    cand->auth = NULL;
    cand->route_auth = NULL;
    old->path_line = cand->path_line;
    old->unsafe = cand->unsafe;
    if (strcmp(old->file, cand->file) != 0) {
        /* Moved to another file: the service goes by its new name, and its
         * moonws.shared (the one the candidate was loaded with) follows. */
        lx_shared_rename(rt, old->file, cand->file);
        char *t = old->file;
        old->file = cand->file;
        cand->file = t;
        t = old->name;
        old->name = cand->name;
        cand->name = t;
        free(old->shared_key);
        old->shared_key = xstrdup(old->file);
    }
    /* old counts under the candidate's series from now on; the candidate
     * lets old's go when it is freed below. */
    struct svc swap = old->svc;
    old->svc.metrics_path = cand->svc.metrics_path;
    old->svc.metrics_upgrade = cand->svc.metrics_upgrade;
    old->svc.metrics = cand->svc.metrics;
    cand->svc.metrics_path = swap.metrics_path;
    cand->svc.metrics_upgrade = swap.metrics_upgrade;
    cand->svc.metrics = swap.metrics;
    if (moved) {
        free(old->svc.path);
        old->svc.path = cand->svc.path;
        cand->svc.path = NULL;
        /* ...for the new one's. */
        for (struct ws_conn *wc = old->svc.conns; wc; wc = wc->svc_next) {
            if (ws_is_open(wc))
                ws_count_open(wc, +1);
        }
    }
    if (!old->mounted) {
        /* The caller made sure the path is free. */
        struct svc *taken = router_mount(&rt->router, &old->svc);
        assert(!taken);
        (void)taken;
        old->mounted = true;
    }
    /* Open connections follow the new limits (compression stays as negotiated). */
    for (struct ws_conn *wc = old->svc.conns; wc; wc = wc->svc_next)
        wc->rx.max_message = old->svc.conf.max_message;
    lx_timer_start_deferred(rt, old);
    service_free(cand);
}

void lx_service_unload(struct lx_rt *rt, struct lx_service *ls, const char *reason)
{
    for (size_t i = 0; i < rt->nsvcs; i++) {
        if (rt->svcs[i] == ls) {
            memmove(&rt->svcs[i], &rt->svcs[i + 1], (rt->nsvcs - i - 1) * sizeof *rt->svcs);
            rt->nsvcs--;
            break;
        }
    }
    if (ls->mounted)
        router_unmount(&rt->router, &ls->svc);
    ls->mounted = false;
    lx_timer_cancel_all(rt, ls);
    for (struct ws_conn *wc = ls->svc.conns; wc; wc = wc->svc_next)
        ws_close(wc, WS_CLOSE_GOING_AWAY, reason, strlen(reason));
    /* Handlers stay until the last connection is gone: onClose still runs. */
    svc_unref(&ls->svc);
}


