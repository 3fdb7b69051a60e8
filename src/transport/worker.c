#include "worker.h"

#include <stdlib.h>
#include <string.h>

#include "../util/limits.h"
#include "conn.h"

void worker_mark_dirty(struct worker *w, struct conn *c)
{
    c->flags |= CONN_DIRTY;
    c->next_dirty = w->dirty;
    w->dirty = c;
}

void worker_flush(struct worker *w)
{
    struct conn *c;
    while ((c = w->dirty)) {
        w->dirty = c->next_dirty;
        c->flags &= (uint16_t)~CONN_DIRTY;
        if (!conn_is_closed(c) && !(c->flags & CONN_WATCH_WRITE))
            conn_flush(c);
    }
    while ((c = w->dead)) {
        w->dead = c->next;
        conn_destroy(c);
    }
}

void worker_yield(struct worker *w, struct conn *c)
{
    if (w->nyielded == w->yielded_cap) {
        w->yielded_cap = w->yielded_cap ? w->yielded_cap * 2 : 16;
        w->yielded = xrealloc(w->yielded, w->yielded_cap * sizeof *w->yielded);
    }
    w->yielded[w->nyielded++] = c;
    ev_idle_start(w->loop, &w->yield_w);
}

void worker_unyield(struct worker *w, struct conn *c)
{
    for (size_t i = 0; i < w->nyielded; i++) {
        if (w->yielded[i] == c)
            w->yielded[i] = NULL;
    }
}

/*
 * The turn of the connections that yielded in an earlier iteration. The
 * idle watcher has the highest priority, so libev queues it in every
 * iteration (idle watchers run only when nothing of their priority or
 * above is pending) and never blocks while it is active; the connections
 * that were ready in this iteration have had their turn already or get
 * it in this same round. Connections that yield again wait for the next.
 */
static void yield_cb(struct ev_loop *loop, ev_idle *i, int revents)
{
    (void)revents;
    struct worker *w = i->data;
    size_t n = w->nyielded;
    for (size_t k = 0; k < n; k++) {
        struct conn *c = w->yielded[k];
        w->yielded[k] = NULL;
        if (c)
            conn_resume_yielded(c);
    }
    w->nyielded -= n;
    memmove(w->yielded, w->yielded + n, w->nyielded * sizeof *w->yielded);
    if (!w->nyielded)
        ev_idle_stop(loop, &w->yield_w);
}

/* Before the loop blocks: everything queued this iteration leaves, and what
 * was closed this iteration is freed. */
static void prepare_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)loop;
    (void)revents;
    worker_flush(p->data);
}

/* One timer for every connection's timeouts: lingering closes end here,
 * protocols check their own deadlines. */
static void sweep_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct worker *w = t->data;
    ev_tstamp now = worker_now(w);
    struct conn *next;
    for (struct conn *c = w->conns; c; c = next) {
        next = c->next;
        if (c->flags & CONN_SHUT_WR) {
            if (now >= c->deadline)
                conn_close(c);
        } else if (c->proto->on_sweep) {
            /* finishing too: the protocol knows how long a peer may take
             * to read the last of its output */
            c->proto->on_sweep(c, now);
        } else if ((c->flags & CONN_FINISHING) && now >= c->deadline) {
            conn_close(c);
        }
    }
}

void worker_init(struct worker *w, struct ev_loop *loop, unsigned index)
{
    *w = (struct worker){ .loop = loop, .index = index, .now_iter = ev_iteration(loop) - 1 };
    w->rbuf = xmalloc(LIM_HTTP_HEAD_CEILING + LIM_READ_CHUNK);
    ev_idle_init(&w->yield_w, yield_cb);
    ev_set_priority(&w->yield_w, EV_MAXPRI);
    w->yield_w.data = w;
    ev_prepare_init(&w->prepare_w, prepare_cb);
    w->prepare_w.data = w;
    ev_prepare_start(loop, &w->prepare_w);
    ev_timer_init(&w->sweep_w, sweep_cb, LIM_SWEEP_INTERVAL, LIM_SWEEP_INTERVAL);
    w->sweep_w.data = w;
    ev_timer_start(loop, &w->sweep_w);
    /* Neither watcher should keep the loop alive by itself. */
    ev_unref(loop);
    ev_unref(loop);
}

void worker_free(struct worker *w)
{
    while (w->conns)
        conn_close(w->conns);
    worker_flush(w);
    ev_ref(w->loop);
    ev_ref(w->loop);
    ev_prepare_stop(w->loop, &w->prepare_w);
    ev_timer_stop(w->loop, &w->sweep_w);
    ev_idle_stop(w->loop, &w->yield_w);
    free(w->yielded);
    conn_pools_free(w);
    buf_free(&w->cork);
    buf_free(&w->gather);
    free(w->rbuf);
}
