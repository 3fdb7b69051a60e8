#include "reload.h"

#include <errno.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../util/buf.h"
#include "../util/log.h"
#include "../util/metrics.h"
#include "wthread.h"

enum { IDLE, PREPARING, COMMITTING };

struct reload {
    char *dir;
    struct wthread *workers;
    unsigned n;
    void (*done)(void *ud);
    void *ud;
    bool stopping;
    /* The files served now, by every worker (for SIGHUP). */
    char **served;
    size_t nserved, capserved;
    /* Changes waiting for the next batch. */
    char **queued;
    size_t nqueued, capqueued;
    bool queued_all;
    /* The batch under way. */
    int phase;
    struct runtime_batch batch;
    struct runtime_verdict **verdicts;  /* per worker, batch.n each */
    struct runtime_events *events;      /* per worker */
    unsigned answers;
    char **refuse;                      /* per file: the reason, or NULL */
    struct metrics *metrics;            /* moonws_reloads_total, or NULL */
};

/* ---- the files ---- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void push(char ***v, size_t *n, size_t *cap, char *s)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *v = xrealloc(*v, *cap * sizeof **v);
    }
    (*v)[(*n)++] = s;
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
            if (l > 4 && strcmp(sub + l - 4, ".lua") == 0)
                push(files, n, cap, xstrdup(sub));
        }
    }
    closedir(d);
}

/* Reads one file of a batch: its bytes (and a NUL), or why not, or
 * nothing when it is gone (or no longer a plain file). */
static void read_file(const char *dir, struct runtime_file *f)
{
    char full[8192];
    snprintf(full, sizeof full, "%s/%s", dir, f->name);
    struct stat st;
    if (stat(full, &st) != 0 || !S_ISREG(st.st_mode))
        return;
    char err[1024];
    FILE *fp = fopen(full, "rb");
    if (!fp) {
        snprintf(err, sizeof err, "%s: cannot open: %s", f->name, strerror(errno));
        f->err = xstrdup(err);
        return;
    }
    struct buf b = { 0 };
    char chunk[8192];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, fp)) > 0)
        buf_append(&b, chunk, k);
    bool failed = ferror(fp);
    fclose(fp);
    if (failed) {
        snprintf(err, sizeof err, "%s: cannot read: %s", f->name, strerror(errno));
        f->err = xstrdup(err);
        buf_free(&b);
        return;
    }
    buf_reserve(&b, 1)[0] = '\0';
    f->len = b.len;
    f->src = b.data ? b.data : xstrdup("");
}

/* The batch of these names (sorted, each once; the array is taken). */
static void make_batch(const char *dir, char **names, size_t n, bool startup,
                       struct runtime_batch *b)
{
    qsort(names, n, sizeof *names, cmp_str);
    *b = (struct runtime_batch){ .startup = startup };
    b->files = xcalloc(n ? n : 1, sizeof *b->files);
    for (size_t i = 0; i < n; i++) {
        if (b->n && strcmp(b->files[b->n - 1].name, names[i]) == 0) {
            free(names[i]);
            continue;
        }
        struct runtime_file *f = &b->files[b->n++];
        f->name = names[i];
        read_file(dir, f);
    }
    free(names);
}

static void free_batch(struct runtime_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->files[i].name);
        free(b->files[i].src);
        free(b->files[i].err);
    }
    free(b->files);
    *b = (struct runtime_batch){ 0 };
}

/* ---- the log ---- */

/* "1 connection", "2 connections". */
static const char *conns(size_t n)
{
    return n == 1 ? "connection" : "connections";
}

static void log_event(const struct runtime_event *e, size_t k)
{
    switch (e->kind) {
    case RUNTIME_SERVING:
        log_info("serving %s at %s", e->file, e->path);
        break;
    case RUNTIME_NOT_LOADED:
        log_error("%s (not loaded)", e->err);
        break;
    case RUNTIME_KEPT:
        log_error("%s (the old version keeps serving)", e->err);
        break;
    case RUNTIME_REMOVED:
        log_info("removed %s from %s (%zu %s closed)", e->file, e->path, k, conns(k));
        break;
    case RUNTIME_MOVED:
        log_info("moved %s to %s at %s (%zu %s kept)", e->from, e->file, e->path, k, conns(k));
        break;
    case RUNTIME_RELOADED:
        log_info("reloaded %s at %s (%zu %s kept)", e->file, e->path, k, conns(k));
        break;
    case RUNTIME_LOADED:
        log_info("loaded %s at %s", e->file, e->path);
        break;
    }
}

/* ---- the served files ---- */

static void unserve(struct reload *r, const char *file)
{
    for (size_t i = 0; i < r->nserved; i++) {
        if (strcmp(r->served[i], file) == 0) {
            free(r->served[i]);
            r->served[i] = r->served[--r->nserved];
            return;
        }
    }
}

static void serve(struct reload *r, const char *file)
{
    unserve(r, file);
    push(&r->served, &r->nserved, &r->capserved, xstrdup(file));
}

static void note_served(struct reload *r, const struct runtime_event *e)
{
    switch (e->kind) {
    case RUNTIME_SERVING:
    case RUNTIME_LOADED:
    case RUNTIME_RELOADED:
        serve(r, e->file);
        break;
    case RUNTIME_MOVED:
        unserve(r, e->from);
        serve(r, e->file);
        break;
    case RUNTIME_REMOVED:
        unserve(r, e->file);
        break;
    default:
        break;
    }
}

/* ---- the phases ---- */

static void start_next(struct reload *r);

struct reload *reload_new(const char *dir, struct wthread *workers, unsigned n,
                          void (*done)(void *ud), void *ud)
{
    struct reload *r = xcalloc(1, sizeof *r);
    r->dir = xstrdup(dir);
    r->workers = workers;
    r->n = n;
    r->done = done;
    r->ud = ud;
    r->verdicts = xcalloc(n, sizeof *r->verdicts);
    r->events = xcalloc(n, sizeof *r->events);
    return r;
}

static void begin(struct reload *r)
{
    r->phase = PREPARING;
    r->answers = 0;
    for (unsigned w = 0; w < r->n; w++)
        wthread_post_prepare(&r->workers[w], &r->batch);
}

void reload_startup(struct reload *r)
{
    char **names = NULL;
    size_t n = 0, cap = 0;
    scan(r->dir, "", NULL, &names, &n, &cap);
    if (n == 0)
        log_warn("no services (*.lua) in %s", r->dir);
    make_batch(r->dir, names, n, true, &r->batch);
    begin(r);
}

static void start_next(struct reload *r)
{
    if (r->stopping || r->phase != IDLE || (!r->nqueued && !r->queued_all))
        return;
    char **names = r->queued;
    size_t n = r->nqueued, cap = r->capqueued;
    r->queued = NULL;
    r->nqueued = r->capqueued = 0;
    if (r->queued_all) {
        /* Every file there is, and the files of services that are gone. */
        scan(r->dir, "", NULL, &names, &n, &cap);
        for (size_t i = 0; i < r->nserved; i++)
            push(&names, &n, &cap, xstrdup(r->served[i]));
        r->queued_all = false;
    }
    make_batch(r->dir, names, n, false, &r->batch);
    begin(r);
}

void reload_files(struct reload *r, const char *const *files, size_t n)
{
    for (size_t i = 0; i < n; i++)
        push(&r->queued, &r->nqueued, &r->capqueued, xstrdup(files[i]));
    start_next(r);
}

void reload_all(struct reload *r)
{
    r->queued_all = true;
    start_next(r);
}

/* Every worker prepared: a file any of them refused (or whose path they do
 * not agree on) is refused by all, in the words of the first. */
static void decide(struct reload *r)
{
    size_t n = r->batch.n;
    r->refuse = xcalloc(n ? n : 1, sizeof *r->refuse);
    for (size_t i = 0; i < n; i++) {
        const struct runtime_verdict *first_ok = NULL;
        unsigned ok_worker = 0;
        for (unsigned w = 0; w < r->n && !r->refuse[i]; w++) {
            const struct runtime_verdict *v = &r->verdicts[w][i];
            if (v->state == RUNTIME_REFUSED) {
                r->refuse[i] = xstrdup(v->err);
            } else if (v->state == RUNTIME_OK && !first_ok) {
                first_ok = v;
                ok_worker = w;
            } else if (v->state == RUNTIME_OK && strcmp(v->path, first_ok->path) != 0) {
                char msg[1024];
                snprintf(msg, sizeof msg, "%s:1: its path differs between workers (%s on worker "
                         "%u, %s on worker %u)", r->batch.files[i].name, first_ok->path,
                         ok_worker + 1, v->path, w + 1);
                r->refuse[i] = xstrdup(msg);
            }
        }
    }
    r->phase = COMMITTING;
    r->answers = 0;
    for (unsigned w = 0; w < r->n; w++)
        wthread_post_commit(&r->workers[w], r->refuse);
}

void reload_prepared(struct reload *r, unsigned worker, struct runtime_verdict *v)
{
    if (r->stopping || r->phase != PREPARING || worker < 1 || worker > r->n) {
        runtime_verdicts_free(v, r->batch.n);
        free(v);
        return;
    }
    r->verdicts[worker - 1] = v;
    if (++r->answers == r->n)
        decide(r);
}

static void end_batch(struct reload *r)
{
    for (unsigned w = 0; w < r->n; w++) {
        if (r->verdicts[w]) {
            runtime_verdicts_free(r->verdicts[w], r->batch.n);
            free(r->verdicts[w]);
            r->verdicts[w] = NULL;
        }
        runtime_events_free(&r->events[w]);
    }
    for (size_t i = 0; r->refuse && i < r->batch.n; i++)
        free(r->refuse[i]);
    free(r->refuse);
    r->refuse = NULL;
    free_batch(&r->batch);
    r->phase = IDLE;
}

void reload_count_into(struct reload *r, struct metrics *m)
{
    r->metrics = m;
}

/* A file of a batch after the startup, in moonws_reloads_total. */
static void count(struct reload *r, const struct runtime_event *e)
{
    if (!r->metrics || r->batch.startup)
        return;
    switch (e->kind) {
    case RUNTIME_LOADED:
    case RUNTIME_RELOADED:
    case RUNTIME_MOVED:
        metrics_reload(r->metrics, METRICS_RELOAD_OK);
        break;
    case RUNTIME_KEPT:
    case RUNTIME_NOT_LOADED:
        metrics_reload(r->metrics, METRICS_RELOAD_ERROR);
        break;
    case RUNTIME_REMOVED:
        metrics_reload(r->metrics, METRICS_RELOAD_REMOVED);
        break;
    default:
        break;
    }
}

/* Every worker committed: one line per event, the counts added up. */
static void report(struct reload *r)
{
    const struct runtime_events *one = &r->events[0];
    bool differ = false;
    for (size_t i = 0; i < one->n; i++) {
        const struct runtime_event *e = &one->ev[i];
        size_t k = 0;
        for (unsigned w = 0; w < r->n; w++) {
            const struct runtime_events *ew = &r->events[w];
            if (i < ew->n && ew->ev[i].kind == e->kind && strcmp(ew->ev[i].file, e->file) == 0)
                k += ew->ev[i].conns;
            else
                differ = true;
        }
        log_event(e, k);
        note_served(r, e);
        count(r, e);
    }
    for (unsigned w = 1; w < r->n; w++)
        differ |= r->events[w].n != one->n;
    /* The inputs are the same, so the outcomes are: this would be a bug. */
    if (differ)
        log_warn("reload: the workers' outcomes differ; worker 1's are logged");
}

void reload_committed(struct reload *r, unsigned worker, struct runtime_events *e)
{
    if (r->stopping || r->phase != COMMITTING || worker < 1 || worker > r->n) {
        runtime_events_free(e);
        free(e);
        return;
    }
    r->events[worker - 1] = *e;
    free(e);
    if (++r->answers < r->n)
        return;
    bool startup = r->batch.startup;
    report(r);
    end_batch(r);
    if (startup && r->done)
        r->done(r->ud);
    start_next(r);
}

void reload_stop(struct reload *r)
{
    r->stopping = true;
}

void reload_free(struct reload *r)
{
    if (!r)
        return;
    end_batch(r);
    for (size_t i = 0; i < r->nserved; i++)
        free(r->served[i]);
    for (size_t i = 0; i < r->nqueued; i++)
        free(r->queued[i]);
    free(r->served);
    free(r->queued);
    free(r->verdicts);
    free(r->events);
    free(r->dir);
    free(r);
}

int reload_check(struct lx_rt *rt, const char *dir)
{
    char **names = NULL;
    size_t n = 0, cap = 0;
    scan(dir, "", NULL, &names, &n, &cap);
    struct runtime_batch b;
    make_batch(dir, names, n, true, &b);
    struct runtime_verdict *v = xcalloc(b.n ? b.n : 1, sizeof *v);
    runtime_prepare(rt, &b, v);
    struct runtime_events ev;
    runtime_commit(rt, NULL, &ev);
    int failed = 0;
    for (size_t i = 0; i < ev.n; i++) {
        const struct runtime_event *e = &ev.ev[i];
        if (e->kind == RUNTIME_SERVING) {
            printf("ok %s -> %s\n", e->file, e->path);
        } else {
            fprintf(stderr, "%s\n", e->err);
            failed++;
        }
    }
    runtime_events_free(&ev);
    runtime_verdicts_free(v, b.n);
    free(v);
    free_batch(&b);
    return failed;
}
