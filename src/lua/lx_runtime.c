/*
 * The runtime of one worker: the lua_State, the services folder, startup
 * and shutdown.
 */
#include <dirent.h>
#include <errno.h>
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

struct lx_rt *runtime_new(struct worker *w, const char *dir, const char *static_root)
{
    struct lx_rt *rt = xcalloc(1, sizeof *rt);
    rt->w = w;
    rt->dir = xstrdup(dir);
    rt->budget = LIM_HANDLER_CPU;
    rt->http.router = &rt->router;
    rt->http.static_root = static_root ? xstrdup(static_root) : NULL;
    rt->L = luaL_newstate();
    if (!rt->L) {
        log_error("cannot create a Lua state");
        abort();
    }
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
        struct lx_service *ls = lx_service_load(rt, files[i], err, sizeof err);
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

void runtime_file_changed(struct lx_rt *rt, const char *file)
{
    struct lx_service *old = lx_service_find(rt, file);
    char full[8192];
    snprintf(full, sizeof full, "%s/%s", rt->dir, file);
    struct stat st;
    if (stat(full, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (old) {
            size_t n = lx_service_open_count(old);
            char path[1024];
            snprintf(path, sizeof path, "%s", old->svc.path);
            lx_service_unload(rt, old, "service removed");
            log_info("removed %s from %s (%zu %s closed)", file, path, n, conns(n));
        }
        return;
    }
    char err[1024];
    struct lx_service *cand = lx_service_load(rt, file, err, sizeof err);
    if (!cand) {
        log_error("%s (%s)", err, old ? "the old version keeps serving" : "not loaded");
        return;
    }
    if (old) {
        if (!lx_service_replace(rt, old, cand, err, sizeof err)) {
            log_error("%s (the old version keeps serving)", err);
            return;
        }
        size_t n = lx_service_open_count(old);
        log_info("reloaded %s at %s (%zu %s kept)", file, old->svc.path, n, conns(n));
    } else if (!lx_service_mount(rt, cand, err, sizeof err)) {
        log_error("%s (not loaded)", err);
        lx_service_discard(rt, cand);
    } else {
        log_info("loaded %s at %s", file, cand->svc.path);
    }
}

void runtime_reload_all(struct lx_rt *rt)
{
    char **files = NULL;
    size_t n = 0, cap = 0;
    scan(rt->dir, "", NULL, &files, &n, &cap);
    qsort(files, n, sizeof *files, cmp_str);
    /* Services whose files are gone, then every file there is. */
    char **gone = xcalloc(rt->nsvcs + 1, sizeof *gone);
    size_t ngone = 0;
    for (size_t i = 0; i < rt->nsvcs; i++) {
        bool found = false;
        for (size_t k = 0; k < n && !found; k++)
            found = strcmp(files[k], rt->svcs[i]->file) == 0;
        if (!found)
            gone[ngone++] = xstrdup(rt->svcs[i]->file);
    }
    for (size_t i = 0; i < ngone; i++) {
        runtime_file_changed(rt, gone[i]);
        free(gone[i]);
    }
    free(gone);
    for (size_t i = 0; i < n; i++) {
        runtime_file_changed(rt, files[i]);
        free(files[i]);
    }
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
    /* The worker is freed first (its connections' onClose still runs). */
    while (rt->nsvcs)
        lx_service_unload(rt, rt->svcs[rt->nsvcs - 1], "server stopped");
    lx_timer_cancel_all(rt, NULL);      /* any created outside a service */
    free(rt->svcs);
    router_free(&rt->router);
    pubsub_free(&rt->pubsub);
    lua_close(rt->L);
    pmd_thread_cleanup();
    free(rt->http.static_root);
    free(rt->dir);
    free(rt);
}
