/*
 * The runtime of one worker: the lua_State, the services folder, the two
 * phases of a batch of files (startup and hot reload), and shutdown.
 */
#include <assert.h>
#include <stdarg.h>
#include <stdint.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../proto/pmd.h"
#include "../transport/conn.h"
#include "../transport/worker.h"
#include "../util/limits.h"
#include "../util/log.h"
#include "lx.h"
#include "lx_service.h"
#include "runtime.h"

/* An error outside every protected call: Lua aborts the process after
 * this. lx_memory.c sees to it that allocations cannot be that error. */
static int panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    log_error("Lua panic: %s", msg ? msg : "(an error object that is not a string)");
    return 0;
}

struct lx_rt *runtime_new(struct worker *w, const char *dir, const char *static_root,
                          const struct runtime_options *opt, const struct runtime_peers *peers)
{
    struct lx_rt *rt = xcalloc(1, sizeof *rt);
    rt->w = w;
    rt->nworkers = peers ? peers->n : 1;
    rt->peers = peers ? peers->inboxes : NULL;
    rt->cluster = peers && peers->cluster && peers->cluster->link ? peers->cluster : NULL;
    if (rt->cluster) {
        rt->pubsub.watch = lx_cluster_topic;
        rt->pubsub.watch_ud = rt->cluster;
    }
    rt->dir = xstrdup(dir);
    rt->budget.seconds = LIM_HANDLER_CPU;
    rt->mem.limit = opt->lua_memory;
    rt->unsafe_lua = opt->unsafe_lua;
    rt->metrics = opt->metrics;
    rt->http.router = &rt->router;
    rt->http.pmd = &rt->pmd;
    rt->http.scratch = &rt->req_scratch;
    rt->http.handshake_timeout = LIM_HANDSHAKE_TIMEOUT;
    rt->http.max_head = LIM_HTTP_HEAD_MAX;
    rt->http.max_body = LIM_HTTP_BODY_MAX;
    rt->http.keepalive = LIM_HTTP_KEEPALIVE;
    rt->svc_defaults.idle_timeout = opt->idle_timeout;
    rt->svc_defaults.close_timeout = opt->close_timeout;
    rt->svc_defaults.max_backpressure = opt->max_backpressure;
    rt->http.static_root = static_root ? xstrdup(static_root) : NULL;
    rt->L = lua_newstate(lx_memory_alloc, rt);
    if (!rt->L) {
        log_error("cannot create a Lua state");
        abort();
    }
    lua_atpanic(rt->L, panic);
    *(struct lx_rt **)lua_getextraspace(rt->L) = rt;
    luaL_openlibs(rt->L);
    /* Generational collection suits many short-lived message strings. */
    lua_gc(rt->L, LUA_GCGEN, 0, 0);
    lx_call_init(rt);
    lx_caller_init(rt);
    lx_module_init(rt);
    lx_timer_init(rt);
    w->app = rt;
    return rt;
}

struct http_server *runtime_http(struct lx_rt *rt)
{
    return &rt->http;
}

const char *runtime_dir(const struct lx_rt *rt)
{
    return rt->dir;
}

/* One file of a batch of changes, and what becomes of it. */
struct change {
    const char *file;           /* its own copy */
    struct lx_service *old;     /* the service loaded from file, or NULL */
    struct lx_service *cand;    /* its new version; NULL when gone or refused */
    bool gone;                  /* the file is no longer there */
    char *err;                  /* why the new version was refused, or NULL */
    struct change *moved_from;  /* a new file that is a gone file's service, moved */
    struct change *moved_to;    /* a gone file whose service moves there */
};

/* A path a service serves now and would serve after the batch: every
 * running service has one, and every new file that loaded. */
struct claim {
    const char *file;
    const char *cur;            /* served now, or NULL */
    const char *want;           /* served after the batch, or NULL */
    int line;                   /* of the `path` field in the new version */
    struct lx_service *ls;      /* the running service, or NULL for a new one */
    struct change *ch;          /* NULL: a service the batch leaves alone */
};

/* Patterns that differ only in parameter names are the same path. */
static bool same(const char *a, const char *b)
{
    return router_same_path(a, b);
}

static char *format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *format(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return xstrdup(msg);
}

/* Two claims on one path: every claim that would take a path it does not
 * serve now is refused when another claim wants that path too (the one
 * that serves it and keeps it wins; without such a one, nobody does).
 * A refused change falls back to the path it has now, which may clash
 * again: repeat until nothing clashes. */
static void settle_paths(struct claim *cl, size_t n)
{
    size_t *by = xcalloc(n ? n : 1, sizeof *by);
    for (;;) {
        bool any = false;
        for (size_t i = 0; i < n; i++) {
            by[i] = SIZE_MAX;
            if (!cl[i].want || same(cl[i].cur, cl[i].want))
                continue;
            bool held = false;
            for (size_t k = 0; k < n; k++) {
                if (k == i || !same(cl[k].want, cl[i].want))
                    continue;
                bool holds = same(cl[k].cur, cl[k].want);
                if (by[i] == SIZE_MAX || (holds && !held)) {
                    by[i] = k;
                    held = holds;
                }
            }
            any |= by[i] != SIZE_MAX;
        }
        if (!any)
            break;
        for (size_t i = 0; i < n; i++) {
            if (by[i] == SIZE_MAX)
                continue;
            struct claim *c = &cl[i], *o = &cl[by[i]];
            c->ch->err = format("%s:%d: path %s is %s %s", c->file, c->line, c->want,
                                same(o->cur, o->want) ? "already served by" : "also claimed by",
                                o->file);
            c->want = c->cur;
        }
    }
    free(by);
}

/* Claims on paths of every service now and after the batch (every file
 * of it that still has a candidate claims the candidate's path). */
static void settle(struct lx_rt *rt, struct change *ch, size_t n)
{
    struct claim *cl = xcalloc(rt->nsvcs + n + 1, sizeof *cl);
    size_t ncl = 0;
    for (size_t i = 0; i < rt->nsvcs; i++) {
        struct lx_service *ls = rt->svcs[i];
        cl[ncl++] = (struct claim){ ls->file, ls->svc.path, ls->svc.path, ls->path_line, ls, NULL };
    }
    for (size_t i = 0; i < n; i++) {
        struct change *c = &ch[i];
        if (c->moved_to)
            continue;           /* its service is claimed by the new file */
        struct lx_service *ls = c->moved_from ? c->moved_from->old : c->old;
        struct claim *k = NULL;
        for (size_t j = 0; j < ncl && ls && !k; j++)
            k = cl[j].ls == ls ? &cl[j] : NULL;
        if (!k && c->cand) {
            k = &cl[ncl++];
            *k = (struct claim){ c->file, NULL, NULL, 0, NULL, NULL };
        }
        if (!k)
            continue;
        k->file = c->file;
        k->ch = c;
        k->want = c->cand ? c->cand->svc.path : c->gone ? NULL : k->cur;
        if (c->cand)
            k->line = c->cand->path_line;
    }
    settle_paths(cl, ncl);
    free(cl);
}

/* Refused candidates go (their moonws.shared changes undone, their timers
 * cancelled); the old versions keep serving. */
static void discard_refused(struct lx_rt *rt, struct change *ch, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct change *c = &ch[i];
        if (c->err && c->cand) {
            lx_service_discard(rt, c->cand);
            c->cand = NULL;
        }
    }
}

/* A batch between its two phases. */
struct lx_batch {
    bool startup;
    size_t n;
    struct change *ch;
};

static void batch_free(struct lx_rt *rt, struct lx_batch *p)
{
    for (size_t i = 0; i < p->n; i++) {
        if (p->ch[i].cand)
            lx_service_discard(rt, p->ch[i].cand);
        free(p->ch[i].err);
        free((char *)p->ch[i].file);
    }
    free(p->ch);
    free(p);
}

/* The moves of a batch: a new file that serves the path of a service
 * whose file is gone is that service, moved (renamed, or its folder was):
 * it keeps its connections. Its top level ran with a moonws.shared of its
 * own; it runs again with the service's. */
static void find_moves(struct lx_rt *rt, struct change *ch, size_t n,
                       const struct runtime_batch *b)
{
    for (size_t i = 0; i < n; i++) {
        struct change *c = &ch[i], *from = NULL;
        for (size_t k = 0; k < n && c->cand && !c->old && !from; k++) {
            struct change *g = &ch[k];
            if (g->gone && g->old && !g->moved_to && same(g->old->svc.path, c->cand->svc.path))
                from = g;
        }
        if (!from)
            continue;
        char *path = xstrdup(c->cand->svc.path);
        lx_service_discard(rt, c->cand);
        char err[1024];
        const struct runtime_file *f = &b->files[i];
        c->cand = lx_service_load_source(rt, c->file, f->src, f->len, from->file, err, sizeof err);
        if (!c->cand) {
            c->err = xstrdup(err);
        } else if (strcmp(c->cand->svc.path, path) != 0) {
            /* Whatever made the path differ, it is no move. */
            c->err = format("%s:%d: path %s on its second load, %s on its first", c->file,
                            c->cand->path_line, c->cand->svc.path, path);
            lx_service_discard(rt, c->cand);
            c->cand = NULL;
        } else {
            c->moved_from = from;
            from->moved_to = c;
        }
        free(path);
    }
}

/* At startup the files are taken in order: one that claims a path an
 * earlier one took is refused. */
static void first_come(struct change *ch, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct change *c = &ch[i];
        for (size_t k = 0; k < i && c->cand && !c->err; k++) {
            struct change *e = &ch[k];
            if (e->cand && !e->err && same(e->cand->svc.path, c->cand->svc.path))
                c->err = format("%s:%d: path %s is already served by %s", c->file,
                                c->cand->path_line, c->cand->svc.path, e->file);
        }
    }
}

void runtime_prepare(struct lx_rt *rt, const struct runtime_batch *b, struct runtime_verdict *out)
{
    assert(!rt->pending);
    struct lx_batch *p = xcalloc(1, sizeof *p);
    p->startup = b->startup;
    p->n = b->n;
    p->ch = xcalloc(b->n ? b->n : 1, sizeof *p->ch);
    struct change *ch = p->ch;
    for (size_t i = 0; i < b->n; i++) {
        const struct runtime_file *f = &b->files[i];
        struct change *c = &ch[i];
        c->file = xstrdup(f->name);
        c->old = lx_service_find(rt, c->file);
        if (f->err) {
            c->err = xstrdup(f->err);
        } else if (!f->src) {
            c->gone = true;
        } else {
            char err[1024];
            c->cand = lx_service_load_source(rt, c->file, f->src, f->len, NULL, err, sizeof err);
            if (!c->cand)
                c->err = xstrdup(err);
        }
    }
    if (b->startup) {
        first_come(ch, b->n);
    } else {
        find_moves(rt, ch, b->n, b);
        settle(rt, ch, b->n);
    }
    discard_refused(rt, ch, b->n);
    for (size_t i = 0; i < b->n; i++) {
        struct change *c = &ch[i];
        out[i] = (struct runtime_verdict){ RUNTIME_GONE, NULL, NULL };
        if (c->err) {
            out[i].state = RUNTIME_REFUSED;
            out[i].err = xstrdup(c->err);
        } else if (c->cand) {
            out[i].state = RUNTIME_OK;
            out[i].path = xstrdup(c->cand->svc.path);
        }
    }
    rt->pending = p;
}

static struct runtime_event *event(struct runtime_events *out, enum runtime_event_kind kind,
                                   const char *file, const char *path)
{
    if ((out->n & (out->n - 1)) == 0)       /* 0, 1, 2, 4, ...: double */
        out->ev = xrealloc(out->ev, (out->n ? out->n * 2 : 1) * sizeof *out->ev);
    struct runtime_event *e = &out->ev[out->n++];
    *e = (struct runtime_event){ .kind = kind, .file = xstrdup(file),
                                 .path = path ? xstrdup(path) : NULL };
    return e;
}

static void commit_startup(struct lx_rt *rt, struct lx_batch *p, struct runtime_events *out)
{
    for (size_t i = 0; i < p->n; i++) {
        struct change *c = &p->ch[i];
        char err[1024];
        if (c->cand && !lx_service_mount(rt, c->cand, err, sizeof err)) {
            c->err = xstrdup(err);
            lx_service_discard(rt, c->cand);
            c->cand = NULL;
        }
        if (c->err) {
            event(out, RUNTIME_NOT_LOADED, c->file, NULL)->err = xstrdup(c->err);
        } else if (c->cand) {
            event(out, RUNTIME_SERVING, c->file, c->cand->svc.path);
            c->cand = NULL;     /* it serves: no longer the batch's */
        }
    }
}

/* The rest of the batch applies at once, the outcome logged as events. */
static void commit_reload(struct lx_rt *rt, struct lx_batch *p, struct runtime_events *out)
{
    struct change *ch = p->ch;
    size_t n = p->n;
    for (size_t i = 0; i < n; i++) {
        struct change *c = &ch[i];
        if (c->err)
            event(out, c->old ? RUNTIME_KEPT : RUNTIME_NOT_LOADED, c->file, NULL)->err =
                xstrdup(c->err);
    }
    /* Paths are freed first, so that services can trade them. */
    for (size_t i = 0; i < n; i++) {
        struct change *c = &ch[i];
        if (c->cand && c->old && strcmp(c->old->svc.path, c->cand->svc.path) != 0)
            lx_service_unmount(rt, c->old);
    }
    for (size_t i = 0; i < n; i++) {
        struct change *c = &ch[i];
        if (!c->gone || !c->old || (c->moved_to && c->moved_to->cand))
            continue;
        struct runtime_event *e = event(out, RUNTIME_REMOVED, c->file, c->old->svc.path);
        e->conns = lx_service_open_count(c->old);
        lx_service_unload(rt, c->old, "service removed");
    }
    for (size_t i = 0; i < n; i++) {
        struct change *c = &ch[i];
        if (!c->cand)
            continue;
        struct lx_service *cand = c->cand;
        c->cand = NULL;         /* consumed below */
        if (c->moved_from) {
            struct lx_service *ls = c->moved_from->old;
            lx_service_replace(rt, ls, cand);
            struct runtime_event *e = event(out, RUNTIME_MOVED, c->file, ls->svc.path);
            e->from = xstrdup(c->moved_from->file);
            e->conns = lx_service_open_count(ls);
        } else if (c->old) {
            lx_service_replace(rt, c->old, cand);
            event(out, RUNTIME_RELOADED, c->file, c->old->svc.path)->conns =
                lx_service_open_count(c->old);
        } else {
            char err[1024];
            bool mounted = lx_service_mount(rt, cand, err, sizeof err);
            assert(mounted);        /* settle_paths left its path free */
            (void)mounted;
            event(out, RUNTIME_LOADED, c->file, cand->svc.path);
        }
    }
}

void runtime_commit(struct lx_rt *rt, char *const *refuse, struct runtime_events *out)
{
    struct lx_batch *p = rt->pending;
    assert(p);
    rt->pending = NULL;
    *out = (struct runtime_events){ 0 };
    bool forced = false;
    for (size_t i = 0; refuse && i < p->n; i++) {
        struct change *c = &p->ch[i];
        if (!refuse[i])
            continue;
        /* The same words on every worker, whoever refused it first. */
        free(c->err);
        c->err = xstrdup(refuse[i]);
        forced |= c->cand != NULL;
    }
    if (forced) {
        discard_refused(rt, p->ch, p->n);
        /* What a refused file would have freed or taken is as it was:
         * settle again (the same inputs on every worker, the same
         * outcome). */
        if (!p->startup) {
            settle(rt, p->ch, p->n);
            discard_refused(rt, p->ch, p->n);
        }
    }
    if (p->startup)
        commit_startup(rt, p, out);
    else
        commit_reload(rt, p, out);
    batch_free(rt, p);
}

void runtime_abort(struct lx_rt *rt)
{
    if (rt->pending)
        batch_free(rt, rt->pending);
    rt->pending = NULL;
}

void runtime_verdicts_free(struct runtime_verdict *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].path);
        free(v[i].err);
    }
}

void runtime_events_free(struct runtime_events *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free(e->ev[i].file);
        free(e->ev[i].from);
        free(e->ev[i].path);
        free(e->ev[i].err);
    }
    free(e->ev);
    *e = (struct runtime_events){ 0 };
}

void runtime_start_watchdog(struct lx_rt *rt)
{
    lx_watchdog_start(rt);
}

void runtime_stop_watchdog(void)
{
    lx_watchdog_stop();
}

void runtime_shutdown(struct lx_rt *rt)
{
    for (size_t i = 0; i < rt->nsvcs; i++) {
        struct lx_service *ls = rt->svcs[i];
        lx_timer_cancel_all(rt, ls);
        for (struct ws_conn *wc = ls->svc.conns; wc; wc = wc->svc_next)
            ws_close(wc, WS_CLOSE_GOING_AWAY, "server shutting down", 20);
    }
}

void runtime_free(struct lx_rt *rt)
{
    runtime_abort(rt);
    lx_watchdog_forget(rt);
    /* The worker is freed first (its connections' onClose still runs). */
    while (rt->nsvcs)
        lx_service_unload(rt, rt->svcs[rt->nsvcs - 1], "server stopped");
    lx_timer_cancel_all(rt, NULL);      /* any created outside a service */
    free(rt->svcs);
    router_free(&rt->router);
    pubsub_free(&rt->pubsub);
    lua_close(rt->L);
    pmd_pool_free(&rt->pmd);
    free(rt->http.static_root);
    free(rt->dir);
    free(rt);
}
