#include "dirwatch.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/buf.h"
#include "../util/clock.h"
#include "../util/limits.h"
#include "../util/log.h"
#include "../util/strmap.h"

#define DIR_EVENTS                                                                   \
    (IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | \
     IN_ATTRIB | IN_DELETE_SELF | IN_ONLYDIR)

struct pending {
    ev_timer timer;
    struct dirwatch *dw;
    char *path;
    ev_tstamp first;            /* the first event of this burst */
    bool writing;               /* created or modified, and not closed since */
    bool ready;                 /* quiet (and closed) long enough: waits for its batch */
};

/* A folder renamed away: within the tree when its IN_MOVED_TO comes. */
struct moved_dir {
    uint32_t cookie;
    char *path;
};

struct dirwatch {
    ev_io io;
    ev_timer hold;              /* how long ready files wait for the rest of their batch */
    struct ev_loop *loop;
    char *dir;
    char *suffix;
    double quiet;
    dirwatch_fn fn;
    void *ud;
    struct strmap dirs;         /* watch descriptor (as text) -> relative folder */
    struct strmap files;        /* relative path -> (void *)1: files known to exist */
    struct strmap pending;      /* relative path -> struct pending */
    struct moved_dir *moved;    /* folders renamed away in the events being read */
    size_t nmoved, capmoved;
};

static bool wanted(const struct dirwatch *dw, const char *name)
{
    size_t n = strlen(name), s = strlen(dw->suffix);
    return name[0] != '.' && n > s && strcmp(name + n - s, dw->suffix) == 0;
}

/* a/b into out; a path too long for PATH_MAX comes out empty. */
static void join(char *out, size_t cap, const char *a, const char *b)
{
    int n = snprintf(out, cap, "%s%s%s", a, *a && *b ? "/" : "", b);
    if (n < 0 || (size_t)n >= cap)
        out[0] = '\0';
}

static void read_events(struct dirwatch *dw);

struct batch {
    struct pending **ready;
    size_t n, cap;
    bool waiting;               /* some file changed and is not ready yet */
};

static void collect_ready(const char *key, size_t len, void *val, void *ud)
{
    (void)key;
    (void)len;
    struct pending *p = val;
    struct batch *b = ud;
    if (!p->ready) {
        b->waiting = true;
        return;
    }
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 8;
        b->ready = xrealloc(b->ready, b->cap * sizeof *b->ready);
    }
    b->ready[b->n++] = p;
}

static int cmp_pending(const void *a, const void *b)
{
    return strcmp((*(struct pending *const *)a)->path, (*(struct pending *const *)b)->path);
}

/* Hands every ready file to the callback as one batch — once no other file
 * is still settling, or, with force, now. */
static void deliver(struct dirwatch *dw, bool force)
{
    /* Events already queued belong to this moment: a file saved right after
     * another may not have been read yet. */
    read_events(dw);
    struct batch b = { 0 };
    strmap_each(&dw->pending, collect_ready, &b);
    if (b.n == 0 || (b.waiting && !force)) {
        /* The ready ones wait for the others, but not for ever. */
        if (b.n && !ev_is_active(&dw->hold)) {
            ev_timer_set(&dw->hold, LIM_RELOAD_WRITER_WAIT, 0);
            ev_timer_start(dw->loop, &dw->hold);
        }
        free(b.ready);
        return;
    }
    ev_timer_stop(dw->loop, &dw->hold);
    qsort(b.ready, b.n, sizeof *b.ready, cmp_pending);
    const char **paths = xcalloc(b.n, sizeof *paths);
    for (size_t i = 0; i < b.n; i++) {
        struct pending *p = b.ready[i];
        strmap_del(&dw->pending, p->path, strlen(p->path));
        char full[PATH_MAX];
        join(full, sizeof full, dw->dir, p->path);
        struct stat st;
        if (stat(full, &st) == 0 && S_ISREG(st.st_mode))
            strmap_put(&dw->files, p->path, strlen(p->path), (void *)1);
        else
            strmap_del(&dw->files, p->path, strlen(p->path));
        paths[i] = p->path;
    }
    dw->fn(dw->ud, paths, b.n);
    for (size_t i = 0; i < b.n; i++) {
        ev_timer_stop(dw->loop, &b.ready[i]->timer);     /* inactive once ready; to be sure */
        free(b.ready[i]->path);
        free(b.ready[i]);
    }
    free(paths);
    free(b.ready);
}

static void hold_fire(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    deliver(t->data, true);
}

static void pending_fire(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct pending *p = t->data;
    struct dirwatch *dw = p->dw;
    if (p->writing && clock_seconds() - p->first < LIM_RELOAD_WRITER_WAIT) {
        /* Still open for writing: a half-written file is not reported. */
        ev_timer_set(t, dw->quiet, 0);
        ev_timer_start(loop, t);
        return;
    }
    if (p->writing) {
        /* A writer this slow (or a file created without being opened for
         * writing): better a load that fails and keeps the old version
         * than no load at all; the writer's close brings the whole file. */
        log_warn("%s: still being written after %.0f s; loading it as it is", p->path,
                 LIM_RELOAD_WRITER_WAIT);
        p->writing = false;
    }
    p->ready = true;
    deliver(dw, false);
}

/* True for a link (or a file already gone): not a file someone writes. */
static bool is_link(const struct dirwatch *dw, const char *path)
{
    char full[PATH_MAX];
    join(full, sizeof full, dw->dir, path);
    struct stat st;
    return lstat(full, &st) != 0 || S_ISLNK(st.st_mode) || st.st_nlink > 1;
}

/* Notes an event on a file: (re)starts its quiet period. */
static void touch(struct dirwatch *dw, const char *path, uint32_t mask)
{
    struct pending *p = strmap_get(&dw->pending, path, strlen(path));
    if (!p) {
        p = xcalloc(1, sizeof *p);
        p->dw = dw;
        p->path = xstrdup(path);
        p->first = clock_seconds();
        ev_timer_init(&p->timer, pending_fire, dw->quiet, 0);
        p->timer.data = p;
        strmap_put(&dw->pending, path, strlen(path), p);
    }
    p->ready = false;
    /* A new file is open for writing until IN_CLOSE_WRITE, even before its
     * first byte — unless it is a link (symbolic, or a second name for a
     * file: nobody writes through those). IN_OPEN cannot tell a writer from
     * a reader, so an existing file counts as written from IN_MODIFY on
     * (opening with truncation makes one). */
    if (mask & IN_CREATE)
        p->writing = !is_link(dw, path);
    if (mask & IN_MODIFY)
        p->writing = true;
    if (mask & (IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO))
        p->writing = false;
    ev_timer_stop(dw->loop, &p->timer);
    ev_timer_set(&p->timer, dw->quiet, 0);
    ev_timer_start(dw->loop, &p->timer);
}

/* Watches rel and every folder below it; with report, every file found is
 * touched (a folder that appeared with files in it). */
static void add_tree(struct dirwatch *dw, const char *rel, bool report)
{
    char full[PATH_MAX];
    join(full, sizeof full, dw->dir, rel);
    int wd = inotify_add_watch(dw->io.fd, full, DIR_EVENTS);
    if (wd < 0) {
        log_warn("cannot watch %s: %s", full, strerror(errno));
        return;
    }
    char key[16];
    int kl = snprintf(key, sizeof key, "%d", wd);
    char *old = strmap_get(&dw->dirs, key, (size_t)kl);
    free(old);
    strmap_put(&dw->dirs, key, (size_t)kl, xstrdup(rel));
    DIR *d = opendir(full);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char sub[PATH_MAX], subfull[PATH_MAX];
        join(sub, sizeof sub, rel, e->d_name);
        join(subfull, sizeof subfull, dw->dir, sub);
        struct stat st;
        if (stat(subfull, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            add_tree(dw, sub, report);
        } else if (S_ISREG(st.st_mode) && wanted(dw, e->d_name)) {
            strmap_put(&dw->files, sub, strlen(sub), (void *)1);
            if (report)
                touch(dw, sub, IN_CLOSE_WRITE);
        }
    }
    closedir(d);
}

/* Collects the keys of a map's entries that lie in a folder: by the key
 * (files, strictly below it) or by the value (watched folders, the folder
 * itself included). */
struct under_ctx {
    const char *rel;
    size_t len;
    bool by_value;
    char **hits;
    size_t n, cap;
};

static void collect_under(const char *key, size_t len, void *val, void *ud)
{
    struct under_ctx *uc = ud;
    const char *path = uc->by_value ? val : key;
    size_t pl = uc->by_value ? strlen(path) : len;
    bool below = pl > uc->len && path[uc->len] == '/';
    bool self = uc->by_value && pl == uc->len;
    if ((!below && !self) || strncmp(path, uc->rel, uc->len) != 0)
        return;
    if (uc->n == uc->cap) {
        uc->cap = uc->cap ? uc->cap * 2 : 8;
        uc->hits = xrealloc(uc->hits, uc->cap * sizeof *uc->hits);
    }
    uc->hits[uc->n++] = xstrndup(key, len);
}

/* A folder went away: every file known under it may be gone. */
static void tree_gone(struct dirwatch *dw, const char *rel)
{
    struct under_ctx uc = { rel, strlen(rel), false, NULL, 0, 0 };
    strmap_each(&dw->files, collect_under, &uc);
    for (size_t i = 0; i < uc.n; i++) {
        touch(dw, uc.hits[i], IN_DELETE);
        free(uc.hits[i]);
    }
    free(uc.hits);
}

/* A folder left the tree: its watches (and those below it) go, or edits
 * there would keep arriving under its old name. */
static void forget_tree(struct dirwatch *dw, const char *rel)
{
    struct under_ctx uc = { rel, strlen(rel), true, NULL, 0, 0 };
    strmap_each(&dw->dirs, collect_under, &uc);
    for (size_t i = 0; i < uc.n; i++) {
        inotify_rm_watch(dw->io.fd, atoi(uc.hits[i]));
        free(strmap_del(&dw->dirs, uc.hits[i], strlen(uc.hits[i])));
        free(uc.hits[i]);
    }
    free(uc.hits);
    if (uc.n)
        log_debug("%s/%s: moved out of the folder, no longer watched", dw->dir, rel);
}

/* A folder was renamed away (IN_MOVED_FROM): the files known in it may be
 * gone; whether the folder left the tree is known once the events queued
 * with it are read. */
static void dir_moved_from(struct dirwatch *dw, const char *rel, uint32_t cookie)
{
    tree_gone(dw, rel);
    if (dw->nmoved == dw->capmoved) {
        dw->capmoved = dw->capmoved ? dw->capmoved * 2 : 4;
        dw->moved = xrealloc(dw->moved, dw->capmoved * sizeof *dw->moved);
    }
    dw->moved[dw->nmoved++] = (struct moved_dir){ cookie, xstrdup(rel) };
}

/* Its IN_MOVED_TO: the folder is still in the tree. */
static void dir_moved_to(struct dirwatch *dw, uint32_t cookie)
{
    for (size_t i = 0; i < dw->nmoved; i++) {
        if (dw->moved[i].cookie == cookie) {
            free(dw->moved[i].path);
            dw->moved[i] = dw->moved[--dw->nmoved];
            return;
        }
    }
}

static void rescan_all(struct dirwatch *dw);

/* Reads every event queued now. */
static void read_events(struct dirwatch *dw)
{
    struct ev_io *io = &dw->io;
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        ssize_t n = read(io->fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            if (ev->mask & IN_Q_OVERFLOW) {
                log_warn("inotify queue overflowed: checking every service");
                rescan_all(dw);
                continue;
            }
            char key[16];
            int kl = snprintf(key, sizeof key, "%d", ev->wd);
            const char *rel = strmap_get(&dw->dirs, key, (size_t)kl);
            if (!rel)
                continue;
            if (ev->mask & IN_IGNORED) {
                free(strmap_del(&dw->dirs, key, (size_t)kl));
                continue;
            }
            if (!ev->len || ev->name[0] == '.')
                continue;
            char path[PATH_MAX];
            join(path, sizeof path, rel, ev->name);
            if (ev->mask & IN_ISDIR) {
                if (ev->mask & IN_MOVED_TO)
                    dir_moved_to(dw, ev->cookie);
                if (ev->mask & (IN_CREATE | IN_MOVED_TO))
                    add_tree(dw, path, true);
                else if (ev->mask & IN_MOVED_FROM)
                    dir_moved_from(dw, path, ev->cookie);
                else if (ev->mask & IN_DELETE)
                    tree_gone(dw, path);    /* its watch goes by itself (IN_IGNORED) */
            } else if (wanted(dw, ev->name)) {
                touch(dw, path, ev->mask);
            }
        }
    }
    /* A rename queues both of its events before it returns: a folder moved
     * away whose IN_MOVED_TO is not among them left the tree. */
    for (size_t i = 0; i < dw->nmoved; i++) {
        forget_tree(dw, dw->moved[i].path);
        free(dw->moved[i].path);
    }
    dw->nmoved = 0;
}

static void inotify_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    read_events(io->data);
}

static void touch_known(const char *key, size_t len, void *val, void *ud)
{
    (void)val;
    (void)len;
    touch(ud, key, IN_CLOSE_WRITE);
}

static void rescan_all(struct dirwatch *dw)
{
    strmap_each(&dw->files, touch_known, dw);
    add_tree(dw, "", true);
}

struct dirwatch *dirwatch_new(struct ev_loop *loop, const char *dir, const char *suffix,
                              double quiet, dirwatch_fn fn, void *ud, char *err, size_t errcap)
{
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errcap, "inotify: %s", strerror(errno));
        return NULL;
    }
    struct dirwatch *dw = xcalloc(1, sizeof *dw);
    dw->loop = loop;
    dw->dir = xstrdup(dir);
    dw->suffix = xstrdup(suffix);
    dw->quiet = quiet;
    dw->fn = fn;
    dw->ud = ud;
    ev_io_init(&dw->io, inotify_cb, fd, EV_READ);
    dw->io.data = dw;
    ev_timer_init(&dw->hold, hold_fire, LIM_RELOAD_WRITER_WAIT, 0);
    dw->hold.data = dw;
    add_tree(dw, "", false);
    ev_io_start(loop, &dw->io);
    return dw;
}

static void free_dir(const char *key, size_t len, void *val, void *ud)
{
    (void)key;
    (void)len;
    (void)ud;
    free(val);
}

static void free_pending(const char *key, size_t len, void *val, void *ud)
{
    (void)key;
    (void)len;
    struct dirwatch *dw = ud;
    struct pending *p = val;
    ev_timer_stop(dw->loop, &p->timer);
    free(p->path);
    free(p);
}

void dirwatch_free(struct dirwatch *dw)
{
    if (!dw)
        return;
    ev_io_stop(dw->loop, &dw->io);
    ev_timer_stop(dw->loop, &dw->hold);
    close(dw->io.fd);
    strmap_each(&dw->dirs, free_dir, NULL);
    strmap_free(&dw->dirs);
    strmap_each(&dw->pending, free_pending, dw);
    strmap_free(&dw->pending);
    strmap_free(&dw->files);
    free(dw->moved);
    free(dw->dir);
    free(dw->suffix);
    free(dw);
}
