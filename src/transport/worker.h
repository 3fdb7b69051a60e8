/*
 * worker: one event loop and everything shared by the connections on it —
 * the receive buffer, the cork buffer, the flush list, the list of closed
 * connections to free, pools of output segments, the connections waiting
 * for their next turn to read (conn_yield_read), and the sweep timer that
 * checks every connection's timeouts (one timer, not one per connection).
 */
#ifndef MOONWS_WORKER_H
#define MOONWS_WORKER_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../util/buf.h"
#include "../util/clock.h"

struct conn;
struct oseg;
struct membudget;
struct metrics_worker;
struct traffic_log;

struct worker {
    struct ev_loop *loop;
    char *rbuf;                 /* LIM_HTTP_HEAD_CEILING of carried-over bytes + LIM_READ_CHUNK */
    struct conn *conns;         /* every live connection */
    size_t nconns;
    struct conn *dirty;         /* connections with queued output */
    struct conn *dead;          /* closed, freed after this iteration */
    struct conn *corked;        /* the connection whose input is being handled */
    struct buf cork;            /* its output while corked */
    bool reserve_in_cork;       /* the last conn_write_reserve went to the cork */
    struct oseg *seg_pool;      /* free data segments */
    unsigned seg_pool_n;
    struct oseg *ref_pool;      /* free segments that point at shared blocks */
    unsigned ref_pool_n;
    /* Connections that yielded their turn, in order; a slot is NULL once
     * its connection closed. */
    struct conn **yielded;
    size_t nyielded, yielded_cap;
    ev_idle yield_w;            /* active while some wait: the loop does not block */
    ev_prepare prepare_w;
    ev_timer sweep_w;
    /* The process's budget for unfinished work (set by main; NULL: none). */
    struct membudget *mem;
    unsigned index;             /* its number less one: 0 for worker 1 (in every connection id) */
    /* Its own block of the process's metrics (util/metrics.h), written by
     * this thread alone; and where traffic lines go (util/traffic_log.h).
     * Set by whoever starts the worker. */
    struct metrics_worker *metrics;
    struct traffic_log *traffic;
    void *app;                  /* the layer above (the Lua runtime) */
    double now;                 /* worker_now's reading ... */
    unsigned now_iter;          /* ... and the loop iteration it was made in */
    struct buf gather;          /* TLS: queued segments gathered into one SSL_write */
};

/* The monotonic time (util/clock.h), in seconds, on which every
 * connection's timestamps and deadlines are kept: read at the first use in
 * each loop iteration (after the poll), then the same for the rest of it,
 * as ev_now() is — but not the wall clock, which can be stepped. */
static inline double worker_now(struct worker *w)
{
    unsigned it = ev_iteration(w->loop);
    if (it != w->now_iter) {
        w->now = clock_seconds();
        w->now_iter = it;
    }
    return w->now;
}

/* Reads the clock again for the rest of this iteration: conn_new does, as
 * a connection accepted after the iteration's reading must not seem to
 * have started before it arrived. */
static inline double worker_now_fresh(struct worker *w)
{
    w->now = clock_seconds();
    w->now_iter = ev_iteration(w->loop);
    return w->now;
}

/* index: the worker's place among the process's workers, 0-based. */
void worker_init(struct worker *w, struct ev_loop *loop, unsigned index);
/* Closes every connection and releases everything the worker holds. */
void worker_free(struct worker *w);

/* Puts c on the flush list. */
void worker_mark_dirty(struct worker *w, struct conn *c);
/* Flushes the flush list and frees closed connections; the loop does this
 * before it blocks, shutdown code may call it directly. */
void worker_flush(struct worker *w);

/* c yielded its turn (conn_yield_read): conn_resume_yielded(c) runs in the
 * next loop iteration, after the connections ready in this one. */
void worker_yield(struct worker *w, struct conn *c);
/* c closes: it no longer waits for its turn. */
void worker_unyield(struct worker *w, struct conn *c);

#endif
