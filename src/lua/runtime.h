/*
 * runtime: the Lua side of a worker, as the rest of the program sees it
 * (no lua.h here): its services, loaded and reloaded in batches, answering
 * HTTP and WebSocket traffic, shut down.
 *
 * Loading is a two-phase commit, the same on every worker (the master,
 * src/server/reload.c, drives it): runtime_prepare loads and validates
 * every file of a batch from the bytes the master read (each worker gets
 * the same), and says what it made of each; runtime_commit applies the
 * batch, refusing what the master says to refuse (files some other worker
 * refused), and reports every outcome as a log event. Between the phases
 * the worker serves as before.
 */
#ifndef MOONWS_RUNTIME_H
#define MOONWS_RUNTIME_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "../util/log.h"

struct lx_rt;
struct metrics;
struct worker;
struct http_server;
struct inbox;

/* What the command line says about the Lua side. */
struct runtime_options {
    size_t lua_memory;          /* bytes per Lua state: --lua-memory */
    bool unsafe_lua;            /* --unsafe-lua: every service gets the unsafe extras */
    /* The process's metrics (each runtime counts in its worker's block,
     * w->metrics); NULL: services hold no series (--check). */
    struct metrics *metrics;
    /* The defaults of the service fields idle_timeout, close_timeout and
     * max_backpressure (--idle-timeout, --close-timeout,
     * --max-backpressure; limits.h unless given). */
    double idle_timeout, close_timeout;
    size_t max_backpressure;
};

/* --redis: the process's side of the cluster link (lx_cluster.c,
 * docs/cluster.md "Inside moonws"). The master owns it; the link's thread
 * hands what arrives from Redis to the workers' inboxes through it, and
 * the workers reach the link through it. */
struct cluster_link;
struct cluster_link_config;
struct runtime_cluster {
    struct cluster_link *link;          /* set before any worker starts */
    struct inbox *const *inboxes;       /* every worker's, by index */
    unsigned n;
    /* Every worker's inbox exists: messages from Redis are handed on (till
     * then a message for a topic or service has no subscriber anyway). */
    atomic_bool ready;
    /* Dropped: for a connection id not open here (moonws.send of another
     * node to a connection gone meanwhile), or refused by a full inbox. */
    atomic_uint_fast64_t not_open, refused;
    struct log_every not_open_log;      /* at debug, at most once a second */
};

/* Fills the callbacks and context of a link's config (the master sets the
 * URL and the prefix): messages go to the workers, the process's counts
 * to Redis, and the node's number into new connection ids. */
void runtime_cluster_config(struct runtime_cluster *c, struct cluster_link_config *cfg);
/* Once the link is started: a service's channel is subscribed while the
 * process has connections at its path (util/pathcount.h's watcher). */
void runtime_cluster_watch(struct runtime_cluster *c);
/* Every worker is ready: what arrives is handed on from now. */
void runtime_cluster_ready(struct runtime_cluster *c);
/* After the workers are joined: stops the link (it leaves Redis) and the
 * watcher. */
void runtime_cluster_stop(struct runtime_cluster *c);

/* The workers of the process, as a runtime reaches them: their inboxes,
 * indexed by worker number less one (a connection id's worker index), and
 * the cluster link (NULL without --redis). */
struct runtime_peers {
    unsigned n;
    struct inbox *const *inboxes;
    struct runtime_cluster *cluster;
};

/* A runtime on worker w (its number is w->index + 1) for the services in
 * dir; static_root (a realpath) or NULL for --static; peers: every worker
 * (NULL: this one alone, as for --check). */
struct lx_rt *runtime_new(struct worker *w, const char *dir, const char *static_root,
                          const struct runtime_options *opt, const struct runtime_peers *peers);
struct http_server *runtime_http(struct lx_rt *rt);
/* The services folder. */
const char *runtime_dir(const struct lx_rt *rt);

/* One file of a batch, as the master read it: its bytes, or why they could
 * not be read, or neither when it is gone. */
struct runtime_file {
    char *name;                 /* relative to the services folder: "api/feed.lua" */
    char *src;                  /* its bytes, a NUL after them; NULL: see err */
    size_t len;
    char *err;                  /* could not be read: "file: cannot open: ..."; NULL
                                 * with src NULL: the file is gone */
};

/* A batch: files sorted by name, each once. At startup (`startup`) the
 * files are taken in that order and the first to claim a path keeps it;
 * later batches settle paths across the whole resulting set (services may
 * trade paths), and a new file that serves the path of a gone file's
 * service is that service, moved. */
struct runtime_batch {
    bool startup;
    size_t n;
    struct runtime_file *files;
};

enum runtime_state { RUNTIME_OK, RUNTIME_REFUSED, RUNTIME_GONE };

/* What a worker made of one file in the first phase. */
struct runtime_verdict {
    enum runtime_state state;
    char *path;                 /* RUNTIME_OK: the path it would serve */
    char *err;                  /* RUNTIME_REFUSED: "file:line: why" */
};

/* One line of the log a committed batch makes, in the order they go out:
 * the same kinds, files and paths on every worker; the counts are each
 * worker's own (the master adds them up). */
enum runtime_event_kind {
    RUNTIME_SERVING,            /* startup: "serving FILE at PATH" */
    RUNTIME_NOT_LOADED,         /* "ERR (not loaded)" */
    RUNTIME_KEPT,               /* "ERR (the old version keeps serving)" */
    RUNTIME_REMOVED,            /* "removed FILE from PATH (N connections closed)" */
    RUNTIME_MOVED,              /* "moved FROM to FILE at PATH (N connections kept)" */
    RUNTIME_RELOADED,           /* "reloaded FILE at PATH (N connections kept)" */
    RUNTIME_LOADED,             /* "loaded FILE at PATH" */
};

struct runtime_event {
    enum runtime_event_kind kind;
    char *file;
    char *from;                 /* RUNTIME_MOVED: the file it was served from */
    char *path;
    char *err;                  /* RUNTIME_NOT_LOADED, RUNTIME_KEPT */
    size_t conns;               /* this worker's connections kept or closed */
};

struct runtime_events {
    size_t n;
    struct runtime_event *ev;
};

/* Phase one: loads and validates every file of b (which must stay valid
 * until runtime_commit or runtime_abort), settles their paths, and fills
 * out[i] for b->files[i]. Nothing serves differently yet. */
void runtime_prepare(struct lx_rt *rt, const struct runtime_batch *b, struct runtime_verdict *out);
/* Phase two: refuse[i] (may be NULL), when set, is the reason file i is
 * refused everywhere — it replaces this worker's own verdict. The rest is
 * applied (paths settled again without the refused, so the outcome is
 * the same on every worker); out gets the log events. */
void runtime_commit(struct lx_rt *rt, char *const *refuse, struct runtime_events *out);
/* Throws a prepared batch away (shutdown). */
void runtime_abort(struct lx_rt *rt);
void runtime_verdicts_free(struct runtime_verdict *v, size_t n);
void runtime_events_free(struct runtime_events *e);

/* Enforces the per-call CPU budget on this thread's handlers. */
void runtime_start_watchdog(struct lx_rt *rt);
void runtime_stop_watchdog(void);
/* Starts the closing handshake (1001) with every WebSocket client. */
void runtime_shutdown(struct lx_rt *rt);
/* Frees the runtime; call worker_free on its worker first. */
void runtime_free(struct lx_rt *rt);

#endif
