#include "wthread.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../proto/http_server.h"
#include "../transport/admission.h"
#include "../transport/conn.h"
#include "../transport/listener.h"
#include "../transport/tls.h"
#include "../util/buf.h"
#include "../util/log.h"
#include "../util/metrics.h"

/* A refused client learns it at once, and we keep no TIME_WAIT for it. */
static void reset_close(int fd)
{
    struct linger lg = { .l_onoff = 1, .l_linger = 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

static void on_accept(struct listener *l, int fd, const struct sockaddr *addr)
{
    struct wthread *t = l->data;
    if (t->stopping) {
        admission_unreserve(t->sh->adm);
        close(fd);
        return;
    }
    struct adm_entry *e = admission_enter(t->sh->adm, addr);
    if (!e) {
        reset_close(fd);
        return;
    }
    struct conn *c = conn_new(&t->w, fd, NULL);
    conn_set_admission(c, e);
    http_conn_start(c, runtime_http(t->rt));
    if (l->tls && !tls_attach(c, t->sh->tls))
        conn_close(c);
}

void wthread_wake_all(void *ud)
{
    const struct wthread_shared *sh = ud;
    for (unsigned i = 0; i < sh->nworkers; i++)
        ev_async_send(sh->workers[i].loop, &sh->workers[i].room_w);
}

static void room_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)loop;
    (void)revents;
    struct wthread *t = a->data;
    for (struct listener *l = t->listeners; l; l = l->next)
        listener_resume(l);
}

static void close_listeners(struct wthread *t)
{
    while (t->listeners) {
        struct listener *next = t->listeners->next;
        listener_close(t->listeners);
        t->listeners = next;
    }
}

/* ---- graceful stop ---- */

static void grace_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct wthread *t = w->data;
    log_warn("shutdown: %zu connections did not close within %.0f s; dropping them",
             t->w.nconns, LIM_SHUTDOWN_GRACE);
    ev_break(loop, EVBREAK_ALL);
}

/* During shutdown: stop as soon as no connection has anything left to do
 * (one that is only waiting for the peer's FIN after a completed close is
 * done). */
static void drained_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)revents;
    struct wthread *t = p->data;
    for (struct conn *c = t->w.conns; c; c = c->next) {
        if (!(c->flags & CONN_SHUT_WR))
            return;
    }
    ev_break(loop, EVBREAK_ALL);
}

static void begin_shutdown(struct wthread *t)
{
    if (t->stopping)
        return;
    t->stopping = true;
    close_listeners(t);
    runtime_abort(t->rt);       /* a batch between its phases: nobody commits it now */
    runtime_shutdown(t->rt);
    http_server_shutdown(runtime_http(t->rt), &t->w);
    ev_timer_init(&t->grace_w, grace_cb, LIM_SHUTDOWN_GRACE, 0);
    t->grace_w.data = t;
    ev_timer_start(t->loop, &t->grace_w);
    ev_prepare_init(&t->drained_w, drained_cb);
    t->drained_w.data = t;
    ev_prepare_start(t->loop, &t->drained_w);
}

/* ---- what the master posts ---- */

static void post(struct wthread *t, void (*run)(void *, void *), void (*drop)(void *), void *arg)
{
    struct inbox_item it = { .run = run, .drop = drop, .arg = arg };
    if (!inbox_post_control(&t->inbox, &it) && drop)
        drop(arg);
}

static void run_start(void *arg, void *ctx)
{
    (void)ctx;
    struct wthread *t = arg;
    if (t->stopping)
        return;
    for (struct listener *l = t->listeners; l; l = l->next)
        listener_start(l);
}

void wthread_post_start(struct wthread *t)
{
    post(t, run_start, NULL, t);
}

static void run_shutdown(void *arg, void *ctx)
{
    (void)ctx;
    begin_shutdown(arg);
}

void wthread_post_shutdown(struct wthread *t)
{
    post(t, run_shutdown, NULL, t);
}

/* A phase of a batch, for one worker: its request, then its answer. */
struct phase_msg {
    struct wthread *t;
    const struct runtime_batch *batch;  /* PREPARE */
    char *const *refuse;                /* COMMIT */
    struct runtime_verdict *verdicts;   /* the answers */
    size_t n;
    struct runtime_events *events;
};

static void drop_answer(void *arg)
{
    struct phase_msg *m = arg;
    if (m->verdicts) {
        runtime_verdicts_free(m->verdicts, m->n);
        free(m->verdicts);
    }
    if (m->events) {
        runtime_events_free(m->events);
        free(m->events);
    }
    free(m);
}

/* On the master's thread: the answer goes to its callback, which takes
 * the arrays. */
static void run_answer(void *arg, void *ctx)
{
    (void)ctx;
    struct phase_msg *m = arg;
    const struct wthread_shared *sh = m->t->sh;
    if (m->events)
        sh->committed(m->t, m->events);
    else
        sh->prepared(m->t, m->verdicts);
    free(m);
}

static void answer(struct phase_msg *m)
{
    struct inbox_item it = { .run = run_answer, .drop = drop_answer, .arg = m };
    if (!inbox_post_control(m->t->sh->master, &it))
        drop_answer(m);
}

static void run_prepare(void *arg, void *ctx)
{
    (void)ctx;
    struct phase_msg *m = arg;
    if (m->t->stopping) {
        free(m);                /* the master is stopping too: nobody waits */
        return;
    }
    m->n = m->batch->n;
    m->verdicts = xcalloc(m->n ? m->n : 1, sizeof *m->verdicts);
    runtime_prepare(m->t->rt, m->batch, m->verdicts);
    answer(m);
}

void wthread_post_prepare(struct wthread *t, const struct runtime_batch *b)
{
    struct phase_msg *m = xcalloc(1, sizeof *m);
    m->t = t;
    m->batch = b;
    post(t, run_prepare, free, m);
}

static void run_commit(void *arg, void *ctx)
{
    (void)ctx;
    struct phase_msg *m = arg;
    if (m->t->stopping) {
        free(m);
        return;
    }
    m->events = xcalloc(1, sizeof *m->events);
    runtime_commit(m->t->rt, m->refuse, m->events);
    answer(m);
}

void wthread_post_commit(struct wthread *t, char *const *refuse)
{
    struct phase_msg *m = xcalloc(1, sizeof *m);
    m->t = t;
    m->refuse = refuse;
    post(t, run_commit, free, m);
}

/* ---- the thread ---- */

static void run_ready(void *arg, void *ctx)
{
    (void)ctx;
    struct wthread *t = arg;
    t->sh->ready(t);
}

static void run_ended(void *arg, void *ctx)
{
    (void)ctx;
    struct wthread *t = arg;
    if (t->sh->ended)
        t->sh->ended(t);
}

static void *thread_main(void *arg)
{
    struct wthread *t = arg;
    const struct wthread_shared *sh = t->sh;
    log_set_worker(t->number);
    /* Every signal stays blocked (inherited from the master) but the CPU
     * budget's interrupt, which the watchdog sends to this thread. */
    sigset_t budget;
    sigemptyset(&budget);
    sigaddset(&budget, SIGRTMIN + 1);
    pthread_sigmask(SIG_UNBLOCK, &budget, NULL);

    worker_init(&t->w, t->loop, t->number - 1);
    t->w.mem = sh->mem;
    t->w.metrics = metrics_worker(sh->metrics, t->number - 1);
    t->w.traffic = sh->traffic;
    t->rt = runtime_new(&t->w, sh->dir, sh->static_root, &sh->runtime, &sh->peers);
    struct http_server *hs = runtime_http(t->rt);
    hs->keepalive = sh->keepalive;
    hs->handshake_timeout = sh->handshake_timeout;
    hs->max_head = sh->max_head;
    hs->max_body = sh->max_body;
    char name[32];
    snprintf(name, sizeof name, "worker %u", t->number);
    inbox_init(&t->inbox, t->loop, name, LIM_INBOX_BYTES, t->rt);
    /* Active (and counted) for the thread's whole life: the loop runs
     * until shutdown ends it. */
    ev_async_init(&t->room_w, room_cb);
    t->room_w.data = t;
    ev_async_start(t->loop, &t->room_w);
    runtime_start_watchdog(t->rt);
    for (size_t i = sh->naddrs; i-- > 0;) {
        const struct wthread_addr *a = &sh->addrs[i];
        struct listener *l = listener_new(t->loop, a->fds[t->number - 1], a->host, a->port);
        l->on_accept = on_accept;
        l->data = t;
        l->adm = sh->adm;
        l->tls = a->tls;
        l->next = t->listeners;
        t->listeners = l;
    }
    struct inbox_item ready = { .run = run_ready, .arg = t };
    inbox_post_control(sh->master, &ready);

    ev_run(t->loop, 0);

    if (t->stopping) {
        ev_timer_stop(t->loop, &t->grace_w);
        ev_prepare_stop(t->loop, &t->drained_w);
    }
    close_listeners(t);
    /* Posts from other workers are refused from now on (and what got in
     * meanwhile is dropped when the master frees the inbox). */
    inbox_close(&t->inbox);
    worker_free(&t->w);
    runtime_free(t->rt);
    t->rt = NULL;
    struct inbox_item ended = { .run = run_ended, .arg = t };
    inbox_post_control(sh->master, &ended);
    return NULL;
}

bool wthread_start(struct wthread *t, const struct wthread_shared *sh, unsigned n)
{
    t->number = n;
    t->sh = sh;
    /* Made here, not on the thread: the wake hook and every other worker
     * may reach this loop's watchers as soon as the thread runs. */
    t->loop = ev_loop_new(EVFLAG_AUTO);
    if (!t->loop)
        return false;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&t->thread, NULL, thread_main, t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        ev_loop_destroy(t->loop);
        t->loop = NULL;
        return false;
    }
    return true;
}

void wthread_join(struct wthread *t)
{
    pthread_join(t->thread, NULL);
}

void wthread_free(struct wthread *t)
{
    if (!t->loop)
        return;
    /* Stopped here, once no thread can send to them any more. */
    ev_async_stop(t->loop, &t->room_w);
    inbox_free(&t->inbox);
    ev_loop_destroy(t->loop);
    t->loop = NULL;
}
