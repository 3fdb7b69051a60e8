/*
 * wsl_open: the two modes about connections rather than messages.
 *
 * handshake  `conns` slots each loop connect → upgrade → close frame →
 *            wait for the server to close TCP → next; the figure is
 *            upgrades per second over the window after the warm-up.
 *            Waiting for the server's FIN before closing our end leaves
 *            TIME_WAIT on the server's side, so wsload does not run out
 *            of ephemeral ports at tens of thousands of cycles a second.
 * idle       `conns` connections opened and left idle; the figure is the
 *            growth of the server's RSS divided by the connections.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsl.h"

enum phase { PH_OPENING, PH_WARMUP, PH_MEASURE, PH_SETTLE, PH_DONE };

struct opener {
    struct wsl_ctx *x;
    const struct wsl_opts *o;
    struct wc_pool pool;
    unsigned nconns;
    enum phase phase;
    const char *err;
    ev_timer phase_w;
    struct wsl_probe probe;
    /* handshake */
    uint64_t upgrades, upgrades0;
    uint64_t errors, errors0;
    /* idle */
    unsigned nopen, ndeflate;
    int64_t rss0, rss1;
};

/* Keeps the first failure and ends the run. */
static void opener_fail(struct opener *s, const char *err)
{
    if (!s->err)
        s->err = err;
    s->phase = PH_DONE;
    ev_break(s->x->loop, EVBREAK_ALL);
}

/* ---- handshake --------------------------------------------------------- */

static void hs_phase_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct opener *s = w->data;

    (void)revents;
    if (s->phase == PH_WARMUP) {
        s->phase = PH_MEASURE;
        s->upgrades0 = s->upgrades;
        s->errors0 = s->errors;
        wsl_probe_start(s->x, &s->probe);
        ev_timer_set(w, s->o->duration, 0);
        ev_timer_start(loop, w);
    } else {
        wsl_probe_stop(s->x, &s->probe);
        s->phase = PH_DONE;
        ev_break(loop, EVBREAK_ALL);
    }
}

/* Counted at the 101; the close handshake follows at once. */
static void hs_open(struct wc_conn *c)
{
    struct opener *s = c->pool->ud;

    s->upgrades++;
    wc_close(c, 1000);
}

static void hs_message(struct wc_conn *c, unsigned opcode, const uint8_t *p,
                       size_t n)
{
    (void)c, (void)opcode, (void)p, (void)n;     /* a greeting is fine */
}

/* Every failure counts against the run: a server that drops handshakes
 * under load must not look fast. */
static void hs_close(struct wc_conn *c, bool was_open, const char *err)
{
    struct opener *s = c->pool->ud;
    static int shown;

    (void)was_open;
    if (!err || s->phase == PH_DONE)
        return;
    s->errors++;
    if (shown++ < 3)
        fprintf(stderr, "wsload: handshake cycle failed: %s\n", err);
    if (s->errors > 1000 && s->errors > s->upgrades)
        opener_fail(s, "most handshakes fail");
}

static const struct wc_ops hs_ops = {hs_open, hs_message, hs_close};

/* ---- idle ---------------------------------------------------------------- */

/* The connections have been open `settle` seconds: read the RSS. */
static void idle_settled_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct opener *s = w->data;

    (void)revents;
    s->rss1 = procset_rss(&s->x->ps);
    if (s->rss1 < 0)
        s->err = "server process gone";
    s->phase = PH_DONE;
    ev_break(loop, EVBREAK_ALL);
}

/* When the last one is up, the opening is timed and the settle begins. */
static void idle_open(struct wc_conn *c)
{
    struct opener *s = c->pool->ud;

    s->ndeflate += c->deflate;
    if (++s->nopen < s->nconns)
        return;
    wsl_probe_stop(s->x, &s->probe);
    s->phase = PH_SETTLE;
    ev_timer_init(&s->phase_w, idle_settled_cb, s->o->settle, 0);
    s->phase_w.data = s;
    ev_timer_start(s->x->loop, &s->phase_w);
}

static void idle_message(struct wc_conn *c, unsigned opcode, const uint8_t *p,
                         size_t n)
{
    (void)c, (void)opcode, (void)p, (void)n;
}

/* An idle connection lost means the RSS no longer covers N of them. */
static void idle_close(struct wc_conn *c, bool was_open, const char *err)
{
    struct opener *s = c->pool->ud;

    if (s->phase == PH_DONE)
        return;
    if (!was_open)
        opener_fail(s, wsl_open_failure(&s->pool, s->nconns));
    else
        opener_fail(s, err ? err : "server closed an idle connection");
}

static const struct wc_ops idle_ops = {idle_open, idle_message, idle_close};

/* ---- entry points ------------------------------------------------------ */

static int start_pool(struct opener *s, const struct wc_ops *ops,
                      unsigned slots, unsigned max_connecting)
{
    struct wc_cfg cfg = {
        .port = s->o->port,
        .path = s->o->path ? s->o->path : "/echo",
        .offer_deflate = s->o->deflate,
        .protocol = s->o->protocol,
        .tls = s->o->tls,
        .slots = slots,
        .max_connecting = max_connecting,
    };

    return wc_pool_init(&s->pool, s->x->loop, ops, &cfg, s);
}

/* Slots refill forever; the window counts the upgrades. */
int wsl_mode_handshake(struct wsl_ctx *x)
{
    struct opener s = {.x = x, .o = x->o};
    int rc = 1;

    s.nconns = x->o->conns ? x->o->conns : WSL_DEF_HS_CONCURRENCY;
    if (start_pool(&s, &hs_ops, s.nconns, s.nconns) < 0)
        goto out;
    wc_pool_open(&s.pool, UINT64_MAX);
    s.phase = PH_WARMUP;
    ev_timer_init(&s.phase_w, hs_phase_cb, x->o->warmup, 0);
    s.phase_w.data = &s;
    ev_timer_start(x->loop, &s.phase_w);
    ev_run(x->loop, 0);
    ev_timer_stop(x->loop, &s.phase_w);
    if (x->deadline_hit && !s.err)
        s.err = "deadline hit";

    uint64_t n = s.upgrades - s.upgrades0;
    uint64_t errors = s.errors - s.errors0;
    bool ok = !s.err && s.phase == PH_DONE && s.probe.wall > 0 && errors == 0;
    wsl_kv_begin("handshake");
    wsl_kv_u64("concurrency", s.nconns);
    wsl_kv_str("deflate_offered", x->o->deflate ? "1" : "0");
    wsl_kv_tls(&s.pool);
    wsl_kv_f("duration", s.probe.wall, 3);
    wsl_kv_u64("handshakes", n);
    wsl_kv_f("handshakes_per_s", s.probe.wall > 0 ? (double)n / s.probe.wall : 0, 0);
    wsl_kv_u64("errors", errors);
    wsl_kv_probe(&s.probe, "handshake", (double)n);
    rc = wsl_kv_end(ok, s.err ? s.err : errors ? s.pool.last_err : NULL);
    wc_pool_close_all(&s.pool);
out:
    wc_pool_free(&s.pool);
    return rc;
}

/* RSS before opening, RSS after settling, divided by the connections. */
int wsl_mode_idle(struct wsl_ctx *x)
{
    struct opener s = {.x = x, .o = x->o};
    int rc = 1;

    s.nconns = x->o->conns ? x->o->conns : WSL_DEF_CONNS;
    if (!x->have_ps) {
        fprintf(stderr, "wsload: idle needs --pid (it measures the server's RSS)\n");
        return 2;
    }
    if (start_pool(&s, &idle_ops, s.nconns, x->o->open_concurrency) < 0)
        goto out;
    s.rss0 = procset_rss(&x->ps);
    wsl_probe_start(x, &s.probe);
    wc_pool_open(&s.pool, s.nconns);
    ev_run(x->loop, 0);
    ev_timer_stop(x->loop, &s.phase_w);
    if (x->deadline_hit && !s.err)
        s.err = s.nopen < s.nconns ? "deadline hit while opening connections"
                                   : "deadline hit";

    bool ok = !s.err && s.rss0 >= 0 && s.rss1 >= 0;
    wsl_kv_begin("idle");
    wsl_kv_u64("conns", s.nconns);
    wsl_kv_u64("opened", s.nopen);
    wsl_kv_str("deflate_offered", x->o->deflate ? "1" : "0");
    wsl_kv_u64("deflate_accepted", s.ndeflate);
    wsl_kv_tls(&s.pool);
    wsl_kv_f("rss_before_kib", (double)s.rss0 / 1024, 0);
    wsl_kv_f("rss_after_kib", (double)s.rss1 / 1024, 0);
    wsl_kv_f("bytes_per_conn", ok ? (double)(s.rss1 - s.rss0) / s.nconns : 0, 0);
    /* The opening phase: the server's cost per accepted upgrade. */
    wsl_kv_f("open_s", s.probe.wall, 3);
    wsl_kv_probe(&s.probe, "conn", s.nopen);
    rc = wsl_kv_end(ok, s.err);
    wc_pool_close_all(&s.pool);
out:
    wc_pool_free(&s.pool);
    return rc;
}
