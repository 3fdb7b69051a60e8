/*
 * The runtime of one worker: the lua_State, the services folder, startup
 * and shutdown.
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
                          const struct runtime_options *opt)
{
    struct lx_rt *rt = xcalloc(1, sizeof *rt);
    rt->w = w;
    rt->dir = xstrdup(dir);
    rt->budget.seconds = LIM_HANDLER_CPU;
    rt->mem.limit = opt->lua_memory;
    rt->unsafe_lua = opt->unsafe_lua;
    rt->http.router = &rt->router;
    rt->http.pmd = &rt->pmd;
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

/* A folder being scanned and the one that holds it: a link back to one of
 * them would make the scan go round forever. */
struct scan_level {
    dev_t dev;
    ino_t ino;
    const struct scan_level *up;
};

/* Appends every *.lua under dir/rel to files (paths relative to dir). */
static void scan(const char *dir, const char *rel, const struct scan_level *up, char ***files,
                 size_t *n, size_t *cap)
{
    char path[4096];
    snprintf(path, sizeof path, "%s%s%s", dir, *rel ? "/" : "", rel);
    struct stat self;
    if (stat(path, &self) != 0)
        return;
    for (const struct scan_level *l = up; l; l = l->up) {
        if (l->dev == self.st_dev && l->ino == self.st_ino) {
            log_warn("%s: a link to a folder that holds it: skipped", path);
            return;
        }
    }
    struct scan_level here = { self.st_dev, self.st_ino, up };
    DIR *d = opendir(path);
    if (!d) {
        log_error("cannot read %s: %s", path, strerror(errno));
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char sub[4096];
        snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        char full[8192];
        snprintf(full, sizeof full, "%s/%s", dir, sub);
        struct stat st;
        if (stat(full, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            scan(dir, sub, &here, files, n, cap);
        } else if (S_ISREG(st.st_mode)) {
            size_t l = strlen(sub);
            if (l > 4 && strcmp(sub + l - 4, ".lua") == 0) {
                if (*n == *cap) {
                    *cap = *cap ? *cap * 2 : 16;
                    *files = xrealloc(*files, *cap * sizeof **files);
                }
                (*files)[(*n)++] = xstrdup(sub);
            }
        }
    }
    closedir(d);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int runtime_load_all(struct lx_rt *rt, bool check)
{
    char **files = NULL;
    size_t n = 0, cap = 0;
    struct stat st;
    if (stat(rt->dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        if (check)
            fprintf(stderr, "moonws: %s is not a folder\n", rt->dir);
        else
            log_error("services folder %s does not exist", rt->dir);
        return 1;
    }
    scan(rt->dir, "", NULL, &files, &n, &cap);
    qsort(files, n, sizeof *files, cmp_str);
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        char err[1024];
        struct lx_service *ls = lx_service_load(rt, files[i], NULL, err, sizeof err);
        if (ls && !lx_service_mount(rt, ls, err, sizeof err)) {
            lx_service_discard(rt, ls);
            ls = NULL;
        }
        if (!ls) {
            failed++;
            if (check)
                fprintf(stderr, "%s\n", err);
            else
                log_error("%s (not loaded)", err);
        } else if (check) {
            printf("ok %s -> %s\n", ls->file, ls->svc.path);
        } else {
            log_info("serving %s at %s", ls->file, ls->svc.path);
        }
        free(files[i]);
    }
    free(files);
    if (!check && n == 0)
        log_warn("no services (*.lua) in %s", rt->dir);
    return failed;
}

/* "1 connection", "2 connections": for the reload log lines. */
static const char *conns(size_t n)
{
    return n == 1 ? "connection" : "connections";
}

/* One file of a batch of changes, and what becomes of it. */
struct change {
    const char *file;
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

/* The heart of hot reload: every file of a batch is loaded and validated
 * first, then the paths of the whole resulting set are checked, then
 * everything that passed is applied at once — so services may trade paths
 * and folders may be renamed. */
static void apply_batch(struct lx_rt *rt, char **files, size_t nfiles)
{
    qsort(files, nfiles, sizeof *files, cmp_str);
    struct change *ch = xcalloc(nfiles ? nfiles : 1, sizeof *ch);
    size_t n = 0;
    for (size_t i = 0; i < nfiles; i++) {
        if (n && strcmp(ch[n - 1].file, files[i]) == 0)
            continue;
        struct change *c = &ch[n++];
        c->file = files[i];
        c->old = lx_service_find(rt, c->file);
        char full[8192];
        snprintf(full, sizeof full, "%s/%s", rt->dir, c->file);
        struct stat st;
        if (stat(full, &st) != 0 || !S_ISREG(st.st_mode)) {
            c->gone = true;
            continue;
        }
        char err[1024];
        c->cand = lx_service_load(rt, c->file, NULL, err, sizeof err);
        if (!c->cand)
            c->err = xstrdup(err);
    }

    /* A new file that serves the path of a service whose file is gone is
     * that service, moved (renamed, or its folder was): it keeps its
     * connections. Its top level ran with a moonws.shared of its own;
     * it runs again with the service's. */
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
        c->cand = lx_service_load(rt, c->file, from->file, err, sizeof err);
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

    /* What every service serves now and would serve after the batch. */
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

    /* Refused versions go; the old ones keep serving. */
    for (size_t i = 0; i < n; i++) {
        struct change *c = &ch[i];
        if (!c->err)
            continue;
        log_error("%s (%s)", c->err, c->old ? "the old version keeps serving" : "not loaded");
        if (c->cand)
            lx_service_discard(rt, c->cand);
        c->cand = NULL;
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
        size_t k = lx_service_open_count(c->old);
        char *path = xstrdup(c->old->svc.path);
        lx_service_unload(rt, c->old, "service removed");
        log_info("removed %s from %s (%zu %s closed)", c->file, path, k, conns(k));
        free(path);
    }
    for (size_t i = 0; i < n; i++) {
        struct change *c = &ch[i];
        if (!c->cand)
            continue;
        if (c->moved_from) {
            struct lx_service *ls = c->moved_from->old;
            lx_service_replace(rt, ls, c->cand);
            size_t k = lx_service_open_count(ls);
            log_info("moved %s to %s at %s (%zu %s kept)", c->moved_from->file, c->file,
                     ls->svc.path, k, conns(k));
        } else if (c->old) {
            lx_service_replace(rt, c->old, c->cand);
            size_t k = lx_service_open_count(c->old);
            log_info("reloaded %s at %s (%zu %s kept)", c->file, c->old->svc.path, k, conns(k));
        } else {
            char err[1024];
            bool mounted = lx_service_mount(rt, c->cand, err, sizeof err);
            assert(mounted);        /* settle_paths left its path free */
            (void)mounted;
            log_info("loaded %s at %s", c->file, c->cand->svc.path);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(ch[i].err);
    free(ch);
}

void runtime_files_changed(struct lx_rt *rt, const char *const *files, size_t n)
{
    char **copy = xcalloc(n ? n : 1, sizeof *copy);
    for (size_t i = 0; i < n; i++)
        copy[i] = xstrdup(files[i]);
    apply_batch(rt, copy, n);
    for (size_t i = 0; i < n; i++)
        free(copy[i]);
    free(copy);
}

void runtime_reload_all(struct lx_rt *rt)
{
    /* Every file there is, and the files of services that are gone: one
     * batch. */
    char **files = NULL;
    size_t n = 0, cap = 0;
    scan(rt->dir, "", NULL, &files, &n, &cap);
    files = xrealloc(files, (n + rt->nsvcs + 1) * sizeof *files);
    size_t all = n;
    for (size_t i = 0; i < rt->nsvcs; i++) {
        bool found = false;
        for (size_t k = 0; k < n && !found; k++)
            found = strcmp(files[k], rt->svcs[i]->file) == 0;
        if (!found)
            files[all++] = xstrdup(rt->svcs[i]->file);
    }
    apply_batch(rt, files, all);
    for (size_t i = 0; i < all; i++)
        free(files[i]);
    free(files);
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
