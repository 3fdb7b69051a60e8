/*
 * wsl_echo: the two modes that send messages and wait for their echo.
 *
 * echo     closed loop: every connection keeps `depth` messages in flight
 *          and sends one more per echo received; the figure is echoes per
 *          second over the window after the warm-up.
 * latency  open loop: `rate` messages per second in total, round-robin
 *          over the connections, sent on schedule whether or not earlier
 *          echoes came back; the figure is the round-trip distribution.
 *
 * Both check every echo (length, first/middle/last byte, in order per
 * connection) so that a broken server cannot look fast.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsframe.h"
#include "wsl.h"

enum phase { PH_OPENING, PH_WARMUP, PH_MEASURE, PH_DRAIN, PH_DONE };

/* When a message was due in the schedule and when it actually left. */
struct stamp {
    uint64_t slot, sent;
};

/* The stamps of one connection's messages in flight (latency mode). The
 * server answers in order, so a FIFO pairs each echo with its send. */
struct ring {
    struct stamp *v;
    unsigned head, n, cap;
};

struct echo {
    struct wsl_ctx *x;
    const struct wsl_opts *o;
    bool latency;
    struct wc_pool pool;
    unsigned nconns;
    unsigned opcode;
    const uint8_t *pat;         /* pat + seq % 26 is message seq */
    enum phase phase;
    unsigned nopen;
    uint64_t echoes, echoes0;   /* received in all / before the window */
    const char *err;            /* first failure; the run ends with it */
    struct wsl_probe probe;
    ev_timer phase_w;
    /* latency mode */
    struct ring *rings;
    uint64_t t0_ns, twarm_ns, tend_ns;
    uint64_t scheduled, sched_warm, sched_end;
    uint64_t max_lag_ns;        /* how late wsload sent against schedule */
    unsigned rr;
    uint64_t *samples;          /* round trips from the slot */
    uint64_t *samples_sent;     /* the same from the actual send */
    size_t nsamples, samples_cap;
    ev_idle spin_w;
    ev_check sched_w;
};

/* Lower-case letters repeating every 26 bytes: valid UTF-8 for text
 * frames, and starting at seq % 26 makes each message differ from the one
 * before, so a server that replays an old frame fails the check. */
static uint8_t *make_pattern(size_t size)
{
    uint8_t *pat = malloc(size + 26);

    for (size_t i = 0; pat && i < size + 26; i++)
        pat[i] = (uint8_t)('a' + i % 26);
    return pat;
}

/* Length, then three bytes that depend on seq: cheap enough for 16 KiB
 * messages at full rate, strict enough to catch a wrong or stale echo. */
static const char *check_echo(const uint8_t *p, size_t n, size_t size,
                              uint64_t seq)
{
    size_t o = (size_t)(seq % 26);

    if (n != size)
        return "echo has the wrong length";
    if (n && (p[0] != 'a' + o % 26 || p[n / 2] != 'a' + (o + n / 2) % 26 ||
              p[n - 1] != 'a' + (o + n - 1) % 26))
        return "echo has the wrong content or order";
    return NULL;
}

/* Records the first failure and stops the loop: once a connection broke,
 * the figure would be wrong anyway. */
static void echo_fail(struct echo *e, const char *err)
{
    if (!e->err)
        e->err = err;
    e->phase = PH_DONE;
    ev_break(e->x->loop, EVBREAK_ALL);
}

/* Message seq of this connection: the pattern from offset seq % 26. */
static void send_next(struct echo *e, struct wc_conn *c)
{
    uint64_t seq = c->sent++;

    wc_send(c, e->opcode, e->pat + seq % 26, e->o->size);
}

/* Grows by doubling: how many are in flight depends on the server. */
static int ring_push(struct ring *r, struct stamp v)
{
    if (r->n == r->cap) {
        unsigned cap = r->cap ? r->cap * 2 : 16;
        struct stamp *nv = malloc(cap * sizeof *nv);
        if (!nv)
            return -1;
        for (unsigned i = 0; i < r->n; i++)
            nv[i] = r->v[(r->head + i) % r->cap];
        free(r->v);
        r->v = nv;
        r->cap = cap;
        r->head = 0;
    }
    r->v[(r->head + r->n) % r->cap] = v;
    r->n++;
    return 0;
}

/* The oldest stamp, which the echo just received belongs to. */
static struct stamp ring_pop(struct ring *r)
{
    struct stamp v = r->v[r->head];

    r->head = (r->head + 1) % r->cap;
    r->n--;
    return v;
}

/* Records the round trip of a message stamped st that came back at now,
 * if it was due inside the window. */
static int add_sample(struct echo *e, struct stamp st, uint64_t now)
{
    if (st.slot < e->twarm_ns || st.slot >= e->tend_ns)
        return 0;
    if (e->nsamples == e->samples_cap) {
        size_t cap = e->samples_cap ? e->samples_cap * 2 : 65536;
        uint64_t *a = realloc(e->samples, cap * sizeof *a);
        if (a)
            e->samples = a;
        uint64_t *b = realloc(e->samples_sent, cap * sizeof *b);
        if (b)
            e->samples_sent = b;
        if (!a || !b)
            return -1;
        e->samples_cap = cap;
    }
    e->samples[e->nsamples] = now - st.slot;
    e->samples_sent[e->nsamples] = now - st.sent;
    e->nsamples++;
    return 0;
}

/* ---- echo mode: window timers ----------------------------------------- */

static void echo_phase_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct echo *e = w->data;

    (void)revents;
    if (e->phase == PH_WARMUP) {
        e->phase = PH_MEASURE;
        e->echoes0 = e->echoes;
        wsl_probe_start(e->x, &e->probe);
        ev_timer_set(w, e->o->duration, 0);
        ev_timer_start(loop, w);
    } else if (e->phase == PH_MEASURE) {
        wsl_probe_stop(e->x, &e->probe);
        e->phase = PH_DONE;
        ev_break(loop, EVBREAK_ALL);
    }
}

/* ---- latency mode: the schedule ----------------------------------------- */

/* Runs after every poll. The idle watcher keeps the loop from blocking,
 * so this sees the clock every few microseconds and sends each message
 * close to its slot in the schedule (t0 + k / rate) instead of in bursts
 * per timer tick. The round trip is measured from the slot, not from the
 * actual send, so a late send counts against the result (no coordinated
 * omission); max_lag_ns shows how late wsload itself was. */
static void sched_cb(struct ev_loop *loop, ev_check *w, int revents)
{
    struct echo *e = w->data;
    uint64_t now = wsl_now_ns();

    (void)revents;
    if (e->phase == PH_WARMUP && now >= e->twarm_ns) {
        e->phase = PH_MEASURE;
        e->sched_warm = e->scheduled;
        wsl_probe_start(e->x, &e->probe);
    }
    if (e->phase == PH_MEASURE && now >= e->tend_ns) {
        wsl_probe_stop(e->x, &e->probe);
        e->sched_end = e->scheduled;
        e->phase = PH_DRAIN;
        ev_idle_stop(loop, &e->spin_w);
        ev_check_stop(loop, w);
        ev_timer_set(&e->phase_w, WSL_LAT_DRAIN, 0);
        ev_timer_start(loop, &e->phase_w);
        return;
    }
    uint64_t due = (uint64_t)((double)(now - e->t0_ns) * e->o->rate / 1e9);
    while (e->scheduled < due && e->phase != PH_DONE) {
        uint64_t slot = e->t0_ns + (uint64_t)((double)e->scheduled * 1e9 / e->o->rate);
        struct wc_conn *c = &e->pool.conns[e->rr];
        e->rr = (e->rr + 1) % e->nconns;
        if (now - slot > e->max_lag_ns)
            e->max_lag_ns = now - slot;
        if (ring_push(&e->rings[c->idx], (struct stamp){slot, now}) < 0) {
            echo_fail(e, "out of memory");
            return;
        }
        send_next(e, c);
        wc_flush(c);
        e->scheduled++;
    }
}

/* The drain is over: whatever is still unanswered counts with the time
 * waited so far, a lower bound, rather than vanishing from the tail. */
static void drain_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct echo *e = w->data;
    uint64_t now = wsl_now_ns();

    (void)revents;
    for (unsigned i = 0; i < e->nconns; i++) {
        struct ring *r = &e->rings[i];
        while (r->n) {
            struct stamp st = ring_pop(r);
            if (st.slot >= e->twarm_ns && st.slot < e->tend_ns) {
                e->pool.conns[i].mark++;        /* unanswered in the window */
                add_sample(e, st, now);
            }
        }
    }
    e->phase = PH_DONE;
    ev_break(loop, EVBREAK_ALL);
}

/* The idle watcher only keeps the loop polling without blocking. */
static void spin_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

/* ---- connection callbacks -------------------------------------------- */

/* All connections are up: start the load. */
static void start_load(struct echo *e)
{
    struct ev_loop *loop = e->x->loop;

    e->phase = PH_WARMUP;
    if (!e->latency) {
        for (unsigned i = 0; i < e->nconns; i++)
            for (unsigned d = 0; d < e->o->depth; d++)
                send_next(e, &e->pool.conns[i]);
        ev_timer_init(&e->phase_w, echo_phase_cb, e->o->warmup, 0);
        e->phase_w.data = e;
        ev_timer_start(loop, &e->phase_w);
        return;
    }
    e->t0_ns = wsl_now_ns();
    e->twarm_ns = e->t0_ns + (uint64_t)(e->o->warmup * 1e9);
    e->tend_ns = e->twarm_ns + (uint64_t)(e->o->duration * 1e9);
    ev_timer_init(&e->phase_w, drain_cb, WSL_LAT_DRAIN, 0);
    e->phase_w.data = e;
    ev_idle_init(&e->spin_w, spin_cb);
    ev_idle_start(loop, &e->spin_w);
    ev_check_init(&e->sched_w, sched_cb);
    e->sched_w.data = e;
    ev_check_start(loop, &e->sched_w);
}

/* The load starts only when every connection is up, so all carry it. */
static void on_open(struct wc_conn *c)
{
    struct echo *e = c->pool->ud;

    if (++e->nopen == e->nconns)
        start_load(e);
}

static void on_message(struct wc_conn *c, unsigned opcode, const uint8_t *p,
                       size_t n)
{
    struct echo *e = c->pool->ud;

    if (e->phase == PH_DONE)
        return;
    if (opcode != e->opcode) {
        echo_fail(e, "echo came back with another opcode");
        return;
    }
    const char *bad = check_echo(p, n, e->o->size, c->recv);
    if (bad) {
        echo_fail(e, bad);
        return;
    }
    c->recv++;
    e->echoes++;
    if (!e->latency) {
        send_next(e, c);
        return;
    }
    struct ring *r = &e->rings[c->idx];
    if (r->n == 0) {
        echo_fail(e, "an echo for a message never sent");
        return;
    }
    if (add_sample(e, ring_pop(r), wsl_now_ns()) < 0)
        echo_fail(e, "out of memory");
}

/* Before the load starts a failure is a failed open; after, a broken run. */
static void on_close(struct wc_conn *c, bool was_open, const char *err)
{
    struct echo *e = c->pool->ud;

    if (e->phase == PH_DONE)
        return;
    if (!was_open)
        echo_fail(e, wsl_open_failure(&e->pool, e->nconns));
    else
        echo_fail(e, err ? err : "server closed a connection");
}

static const struct wc_ops echo_ops = {on_open, on_message, on_close};

/* ---- results -------------------------------------------------------- */

static void print_common(const struct echo *e)
{
    wsl_kv_u64("conns", e->nconns);
    wsl_kv_u64("size", e->o->size);
    wsl_kv_str("frame", e->opcode == WSF_TEXT ? "text" : "binary");
    wsl_kv_tls(&e->pool);
}

/* Echoes in the window over its wall time; nothing if the run broke. */
static int report_echo(struct echo *e)
{
    uint64_t n = e->echoes - e->echoes0;
    bool ok = !e->err && e->phase == PH_DONE && e->probe.wall > 0;

    wsl_kv_begin("echo");
    print_common(e);
    wsl_kv_u64("depth", e->o->depth);
    wsl_kv_f("duration", e->probe.wall, 3);
    wsl_kv_u64("msgs", ok ? n : 0);
    wsl_kv_f("msgs_per_s", ok ? (double)n / e->probe.wall : 0, 0);
    wsl_kv_f("mbit_per_s", ok ? (double)n * (double)e->o->size * 8 / 1e6 / e->probe.wall : 0, 1);
    wsl_kv_probe(&e->probe, "msg", ok ? (double)n : 0);
    return wsl_kv_end(ok, e->err);
}

/* Percentiles by nearest rank over every message due in the window. */
static int report_latency(struct echo *e)
{
    uint64_t sent = e->sched_end - e->sched_warm;
    uint64_t unanswered = 0;
    double sum = 0;
    bool ok = !e->err && e->phase == PH_DONE && e->nsamples > 0;

    for (unsigned i = 0; i < e->nconns; i++)
        unanswered += e->pool.conns[i].mark;
    for (size_t i = 0; i < e->nsamples; i++)
        sum += (double)e->samples[i];
    wsl_sort_u64(e->samples, e->nsamples);
    wsl_sort_u64(e->samples_sent, e->nsamples);
    wsl_kv_begin("latency");
    print_common(e);
    wsl_kv_f("rate", e->o->rate, 0);
    wsl_kv_f("duration", e->probe.wall, 3);
    wsl_kv_u64("samples", e->nsamples);
    wsl_kv_u64("unanswered", unanswered);
    static const struct { const char *k; double q; } qs[] = {
        {"p50_us", 0.5}, {"p90_us", 0.9}, {"p99_us", 0.99}, {"p999_us", 0.999},
        {"max_us", 1.0},
    };
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
        wsl_kv_f(qs[i].k, (double)wsl_quantile_u64(e->samples, e->nsamples, qs[i].q) / 1e3, 1);
    wsl_kv_f("mean_us", e->nsamples ? sum / (double)e->nsamples / 1e3 : 0, 1);
    /* The same from the moment each message actually left: the difference
     * is time wsload itself was late, not the server's. */
    static const struct { const char *k; double q; } qs_sent[] = {
        {"p50_sent_us", 0.5}, {"p99_sent_us", 0.99}, {"p999_sent_us", 0.999},
    };
    for (size_t i = 0; i < sizeof qs_sent / sizeof qs_sent[0]; i++)
        wsl_kv_f(qs_sent[i].k,
                 (double)wsl_quantile_u64(e->samples_sent, e->nsamples, qs_sent[i].q) / 1e3, 1);
    wsl_kv_f("sched_lag_max_us", (double)e->max_lag_ns / 1e3, 1);
    wsl_kv_probe(&e->probe, "msg", ok ? (double)sent : 0);
    return wsl_kv_end(ok, e->err);
}

/* ---- entry points ---------------------------------------------------- */

static int run(struct wsl_ctx *x, bool latency)
{
    const struct wsl_opts *o = x->o;
    struct echo *e = calloc(1, sizeof *e);
    int rc = 1;

    if (!e)
        return 1;
    e->x = x;
    e->o = o;
    e->latency = latency;
    e->nconns = o->conns ? o->conns : WSL_DEF_CONNS;
    e->opcode = o->binary ? WSF_BINARY : WSF_TEXT;
    e->pat = make_pattern(o->size);
    if (latency)
        e->rings = calloc(e->nconns, sizeof *e->rings);
    struct wc_cfg cfg = {
        .port = o->port,
        .path = o->path ? o->path : "/echo",
        .slots = e->nconns,
        .max_connecting = o->open_concurrency,
        .protocol = o->protocol,
        .tls = o->tls,
    };
    if (!e->pat || (latency && !e->rings) ||
        wc_pool_init(&e->pool, x->loop, &echo_ops, &cfg, e) < 0)
        goto out;
    wc_pool_open(&e->pool, e->nconns);
    ev_run(x->loop, 0);
    if (x->deadline_hit && !e->err)
        e->err = e->phase == PH_OPENING ? "deadline hit while opening connections"
                                        : "deadline hit";
    ev_timer_stop(x->loop, &e->phase_w);
    if (latency) {
        ev_idle_stop(x->loop, &e->spin_w);
        ev_check_stop(x->loop, &e->sched_w);
    }
    rc = latency ? report_latency(e) : report_echo(e);
    wc_pool_close_all(&e->pool);
out:
    wc_pool_free(&e->pool);
    for (unsigned i = 0; e->rings && i < e->nconns; i++)
        free(e->rings[i].v);
    free(e->rings);
    free(e->samples);
    free(e->samples_sent);
    free((void *)e->pat);
    free(e);
    return rc;
}

/* The closed-loop mode. */
int wsl_mode_echo(struct wsl_ctx *x)
{
    return run(x, false);
}

/* The open-loop mode. */
int wsl_mode_latency(struct wsl_ctx *x)
{
    return run(x, true);
}
