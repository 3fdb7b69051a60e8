/*
 * wthread: one worker thread's life — its own libev loop, struct worker,
 * Lua runtime, listeners and inbox — from its start to its graceful stop.
 *
 * The master (main.c) fills a struct wthread per worker, starts them, and
 * from then on talks to each only through its inbox (wthread_post_*); a
 * worker answers through the master's inbox. Worker threads take no signal
 * but SIGRTMIN+1, the CPU budget's interrupt (lx_budget.c): the master
 * owns the others.
 */
#ifndef MOONWS_WTHREAD_H
#define MOONWS_WTHREAD_H

#include <ev.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "../lua/runtime.h"
#include "../transport/inbox.h"
#include "../transport/worker.h"
#include "../util/limits.h"

struct admission;
struct membudget;
struct metrics;
struct traffic_log;
struct tls_server;
struct listener;

/* One address to listen on: its host and port (for the "listening on"
 * line), and one bound socket per worker (listener_bind_group). */
struct wthread_addr {
    char host[64];
    unsigned port;
    bool tls;
    int fds[LIM_WORKERS_MAX];
};

/* What every worker is given, read-only once they run. */
struct wthread_shared {
    const char *dir;                    /* the services folder */
    const char *static_root;            /* realpath of --static, or NULL */
    struct runtime_options runtime;
    double keepalive, handshake_timeout;
    size_t max_head, max_body;          /* --max-header-size, --max-body-size */
    struct tls_server *tls;             /* shared by every worker's TLS connections */
    struct admission *adm;              /* process-wide */
    struct membudget *mem;              /* process-wide */
    struct metrics *metrics;            /* process-wide; worker n writes its block n - 1 */
    struct traffic_log *traffic;        /* process-wide, any thread writes */
    const struct wthread_addr *addrs;
    size_t naddrs;
    unsigned nworkers;
    struct wthread *workers;            /* the table, nworkers long */
    struct runtime_peers peers;         /* their inboxes, for the runtimes */
    struct inbox *master;               /* where workers answer */
    /* Run on the master's thread (items of its inbox): worker t is ready
     * (its runtime made, no service loaded yet, its listeners made but not
     * accepting); it prepared the batch (v: one verdict per file, the
     * callee's to free); it committed it (e: the callee's). */
    void (*ready)(struct wthread *t);
    void (*prepared)(struct wthread *t, struct runtime_verdict *v);
    void (*committed)(struct wthread *t, struct runtime_events *e);
    /* Worker t's thread has ended its loop and freed what it held (it may
     * be joined now). */
    void (*ended)(struct wthread *t);
};

struct wthread {
    unsigned number;                    /* 1..N */
    const struct wthread_shared *sh;
    pthread_t thread;
    struct ev_loop *loop;
    struct worker w;
    struct lx_rt *rt;
    struct inbox inbox;
    struct listener *listeners;
    bool stopping;
    ev_async room_w;                    /* a connection left: paused listeners go on */
    ev_timer grace_w;
    ev_prepare drained_w;
};

/* Starts worker number n (1..N) of sh on a thread of its own, with every
 * signal blocked but the CPU budget's. False when the thread cannot be
 * made. */
bool wthread_start(struct wthread *t, const struct wthread_shared *sh, unsigned n);
/* From the master, once every worker is ready: accept connections. */
void wthread_post_start(struct wthread *t);
/* From the master: stop accepting, close every WebSocket 1001, let HTTP
 * answers finish, wait up to LIM_SHUTDOWN_GRACE, end the thread. */
void wthread_post_shutdown(struct wthread *t);
/* From the master: the phases of a batch (server/reload.h). b and refuse
 * stay the master's, unchanged until every worker has answered. */
void wthread_post_prepare(struct wthread *t, const struct runtime_batch *b);
void wthread_post_commit(struct wthread *t, char *const *refuse);
/* Waits for the thread to end (after wthread_post_shutdown). */
void wthread_join(struct wthread *t);
/* Once every worker is joined (nobody posts any more): drops what is left
 * in the inbox and frees the loop. */
void wthread_free(struct wthread *t);
/* Wakes the paused listeners of every worker (the admission's wake hook:
 * any thread; ud is the struct wthread_shared). */
void wthread_wake_all(void *ud);

#endif
