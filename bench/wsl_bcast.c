/*
 * wsl_bcast: the broadcast mode. `conns` subscribers are opened on the
 * WebSocket path and left to settle; then, `repeat` times, one plain HTTP
 * POST of a `size`-byte body goes to the post path on a separate TCP
 * connection, and the round lasts until every subscriber has received
 * that body as a message. The figure is the time from the POST to the
 * last delivery (median over the rounds), and conns / that time.
 *
 * Each round's body is different, so a delivery is recognised by content;
 * any other message (a chat server's join notices, say) is counted apart
 * and otherwise ignored, and the first round waits until such traffic
 * has stopped.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "wsl.h"

/* Seconds between rounds, so one round's stragglers cannot be the next
 * one's load. */
#define ROUND_PAUSE 0.25
/* The POST response head and body kept (the rest is read and dropped). */
#define RESP_MAX 4096

enum phase { PH_OPENING, PH_SETTLE, PH_ROUND, PH_PAUSE, PH_DONE };

struct bcast {
    struct wsl_ctx *x;
    const struct wsl_opts *o;
    struct wc_pool pool;
    unsigned nconns, nopen;
    enum phase phase;
    const char *err;
    char post_path[512];
    uint8_t *req;               /* the POST request, head + body */
    size_t req_len, body_off;
    unsigned round, rounds;
    unsigned got;               /* subscribers that have this round's body */
    uint64_t others;            /* messages that were not a round's body */
    uint64_t others_seen;       /* others at the last settle check */
    double t_open, t_opened, t_settled;
    double t_post, t_first, t_last;
    bool resp_done;
    double *times, *firsts, *resps;
    struct wsl_probe probe, total;
    int post_fd;
    ev_io post_w;
    char resp[RESP_MAX];
    size_t resp_len, resp_total;
    ev_timer phase_w;
};

/* Keeps the first failure and ends the run: later rounds would not be
 * comparable. */
static void bcast_fail(struct bcast *b, const char *err)
{
    if (!b->err)
        b->err = err;
    b->phase = PH_DONE;
    ev_break(b->x->loop, EVBREAK_ALL);
}

/* The POST connection is one per round; closing twice is harmless. */
static void post_close(struct bcast *b)
{
    if (b->post_fd < 0)
        return;
    ev_io_stop(b->x->loop, &b->post_w);
    close(b->post_fd);
    b->post_fd = -1;
}

/* Writes this round's marker ("r<round>.") over the start of the body.
 * The 'x' padding behind it never changes. */
static void mark_body(struct bcast *b)
{
    char tag[16];
    int n = snprintf(tag, sizeof tag, "r%u.", b->round);

    memcpy(b->req + b->body_off, tag, (size_t)n);
}

static void phase_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* A round is complete when every subscriber has the body and the POST has
 * been answered; the timing itself ended at the last delivery. */
static void round_check_done(struct bcast *b)
{
    if (b->phase != PH_ROUND || b->got < b->nconns || !b->resp_done)
        return;
    b->times[b->round] = b->t_last - b->t_post;
    b->firsts[b->round] = b->t_first - b->t_post;
    b->round++;
    ev_timer_stop(b->x->loop, &b->phase_w);
    if (b->round == b->rounds) {
        b->phase = PH_DONE;
        ev_break(b->x->loop, EVBREAK_ALL);
        return;
    }
    b->phase = PH_PAUSE;
    ev_timer_set(&b->phase_w, ROUND_PAUSE, 0);
    ev_timer_start(b->x->loop, &b->phase_w);
}

/* Reads the POST response until its head and Content-Length body are in,
 * or the server closes; a status other than 200 fails the run. */
static void post_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct bcast *b = w->data;
    char tmp[RESP_MAX];
    ssize_t n = read(b->post_fd, tmp, sizeof tmp);

    (void)loop;
    (void)revents;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n > 0) {
        size_t keep = RESP_MAX - 1 - b->resp_len;
        if ((size_t)n < keep)
            keep = (size_t)n;
        memcpy(b->resp + b->resp_len, tmp, keep);
        b->resp_len += keep;
        b->resp[b->resp_len] = '\0';
        b->resp_total += (size_t)n;
    }
    size_t hend = wshs_head_end(b->resp, b->resp_len);
    bool done = n <= 0;
    if (hend) {
        size_t vl;
        const char *cl = wshs_header(b->resp, hend, "Content-Length", &vl);
        if (cl && b->resp_total >= hend + strtoul(cl, NULL, 10))
            done = true;
    }
    if (!done)
        return;
    post_close(b);
    if (!hend || strncmp(b->resp, "HTTP/1.1 200", 12) != 0) {
        fprintf(stderr, "wsload: POST %s answered: %.60s\n", b->post_path, b->resp);
        bcast_fail(b, "POST not answered with 200");
        return;
    }
    b->resps[b->round] = wsl_now() - b->t_post;
    b->resp_done = true;
    round_check_done(b);
}

/* Starts a round: connect (blocking: loopback, and outside the timed
 * part), then the clock starts and the whole request goes out in one
 * write; the response is read from the loop. */
static void round_start(struct bcast *b)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)(b->o->post_port ? b->o->post_port
                                                                           : b->o->port)),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {.tv_sec = 5};

    b->phase = PH_ROUND;
    b->got = 0;
    b->resp_done = false;
    b->resp_len = b->resp_total = 0;
    b->resp[0] = '\0';
    mark_body(b);
    b->post_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (b->post_fd < 0 ||
        setsockopt(b->post_fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0 ||
        connect(b->post_fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        bcast_fail(b, "cannot connect for the POST");
        return;
    }
    wsl_probe_start(b->x, &b->probe);
    b->t_post = b->probe.t0;
    for (size_t off = 0; off < b->req_len;) {
        ssize_t n = write(b->post_fd, b->req + off, b->req_len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            bcast_fail(b, "cannot send the POST");
            return;
        }
        off += (size_t)n;
    }
    fcntl(b->post_fd, F_SETFL, fcntl(b->post_fd, F_GETFL) | O_NONBLOCK);
    ev_io_init(&b->post_w, post_read_cb, b->post_fd, EV_READ);
    b->post_w.data = b;
    ev_io_start(b->x->loop, &b->post_w);
    ev_timer_set(&b->phase_w, WSL_BCAST_ROUND_TIMEOUT, 0);
    ev_timer_start(b->x->loop, &b->phase_w);
}

/* One timer for the settle checks, the pauses and each round's timeout.
 * Settling lasts until a whole settle period passes without any message:
 * a server may greet or announce each subscriber to the others (N² such
 * messages for N joins), and the first POST must not race with that. */
static void phase_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct bcast *b = w->data;
    static char msg[128];

    (void)revents;
    if (b->phase == PH_SETTLE && b->others != b->others_seen) {
        b->others_seen = b->others;
        ev_timer_set(w, b->o->settle, 0);
        ev_timer_start(loop, w);
    } else if (b->phase == PH_SETTLE || b->phase == PH_PAUSE) {
        if (b->phase == PH_SETTLE)
            b->t_settled = wsl_now();
        round_start(b);
    } else if (b->phase == PH_ROUND) {
        snprintf(msg, sizeof msg, "round %u timed out: %u of %u delivered%s",
                 b->round, b->got, b->nconns,
                 b->resp_done ? "" : ", POST unanswered");
        bcast_fail(b, msg);
    }
}

/* The last subscriber to open starts the settling. */
static void on_open(struct wc_conn *c)
{
    struct bcast *b = c->pool->ud;

    if (++b->nopen < b->nconns)
        return;
    b->t_opened = wsl_now();
    b->others_seen = b->others;
    b->phase = PH_SETTLE;
    ev_timer_set(&b->phase_w, b->o->settle, 0);
    ev_timer_start(b->x->loop, &b->phase_w);
}

/* c->mark holds the last round (plus one) this subscriber got, so a
 * duplicate is caught. */
static void on_message(struct wc_conn *c, unsigned opcode, const uint8_t *p,
                       size_t n)
{
    struct bcast *b = c->pool->ud;
    size_t size = b->req_len - b->body_off;

    (void)opcode;
    if (b->phase != PH_ROUND || n != size ||
        memcmp(p, b->req + b->body_off, n) != 0) {
        b->others++;
        return;
    }
    if (c->mark == b->round + 1) {
        bcast_fail(b, "a subscriber got the same broadcast twice");
        return;
    }
    c->mark = b->round + 1;
    double now = wsl_now();
    if (b->got++ == 0)
        b->t_first = now;
    if (b->got == b->nconns) {
        b->t_last = now;
        wsl_probe_stop(b->x, &b->probe);
        wsl_probe_add(&b->total, &b->probe);
        round_check_done(b);
    }
}

/* Any subscriber lost makes "every subscriber got it" unreachable. */
static void on_close(struct wc_conn *c, bool was_open, const char *err)
{
    struct bcast *b = c->pool->ud;

    if (b->phase == PH_DONE)
        return;
    if (!was_open)
        bcast_fail(b, wsl_open_failure(&b->pool, b->nconns));
    else
        bcast_fail(b, err ? err : "server closed a subscriber");
}

static const struct wc_ops bcast_ops = {on_open, on_message, on_close};

/* Builds the request once; each round only rewrites the body's marker. */
static int build_request(struct bcast *b)
{
    const struct wsl_opts *o = b->o;
    const char *path = o->path ? o->path : "/chat";
    char head[1024];

    if (o->post_path)
        snprintf(b->post_path, sizeof b->post_path, "%s", o->post_path);
    else
        snprintf(b->post_path, sizeof b->post_path, "%s/broadcast", path);
    int hl = snprintf(head, sizeof head,
                      "POST %s HTTP/1.1\r\n"
                      "Host: 127.0.0.1:%d\r\n"
                      "Content-Type: text/plain\r\n"
                      "Content-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      b->post_path, o->post_port ? o->post_port : o->port, o->size);
    if (hl < 0 || (size_t)hl >= sizeof head)
        return -1;
    b->req_len = (size_t)hl + o->size;
    b->body_off = (size_t)hl;
    b->req = malloc(b->req_len);
    if (!b->req)
        return -1;
    memcpy(b->req, head, (size_t)hl);
    memset(b->req + hl, 'x', o->size);
    return 0;
}

/* Medians in milliseconds for the result line (sorts v). */
static double median_ms(double *v, unsigned n)
{
    return wsl_median(v, n) * 1e3;
}

/* Builds the request, opens the subscribers, runs the rounds and prints
 * the medians. times[] is sorted by the median, so [0] and [k-1] are the
 * fastest and slowest round. */
int wsl_mode_broadcast(struct wsl_ctx *x)
{
    const struct wsl_opts *o = x->o;
    struct bcast *b = calloc(1, sizeof *b);
    int rc = 1;

    if (!b)
        return 1;
    b->x = x;
    b->o = o;
    b->post_fd = -1;
    b->nconns = o->conns ? o->conns : WSL_DEF_CONNS;
    b->rounds = o->repeat;
    b->total.srv_ns = x->have_ps ? 0 : -1;       /* sums of the rounds */
    b->times = calloc(b->rounds, sizeof *b->times);
    b->firsts = calloc(b->rounds, sizeof *b->firsts);
    b->resps = calloc(b->rounds, sizeof *b->resps);
    ev_timer_init(&b->phase_w, phase_cb, 0, 0);
    b->phase_w.data = b;
    struct wc_cfg cfg = {
        .port = o->port,
        .path = o->path ? o->path : "/chat",
        .slots = b->nconns,
        .max_connecting = o->open_concurrency,
        .protocol = o->protocol,
    };
    if (!b->times || !b->firsts || !b->resps || build_request(b) < 0 ||
        wc_pool_init(&b->pool, x->loop, &bcast_ops, &cfg, b) < 0)
        goto out;
    b->t_open = wsl_now();
    wc_pool_open(&b->pool, b->nconns);
    ev_run(x->loop, 0);
    ev_timer_stop(x->loop, &b->phase_w);
    post_close(b);
    if (x->deadline_hit && !b->err)
        b->err = b->phase == PH_OPENING ? "deadline hit while opening connections"
                                        : "deadline hit";

    bool ok = !b->err && b->round == b->rounds;
    unsigned k = b->round;      /* rounds completed */
    double t_med = k ? wsl_median(b->times, k) : 0;
    wsl_kv_begin("broadcast");
    wsl_kv_u64("conns", b->nconns);
    wsl_kv_u64("size", o->size);
    wsl_kv_u64("rounds", k);
    wsl_kv_f("last_ms", t_med * 1e3, 3);
    wsl_kv_f("last_ms_min", k ? b->times[0] * 1e3 : 0, 3);
    wsl_kv_f("last_ms_max", k ? b->times[k - 1] * 1e3 : 0, 3);
    wsl_kv_f("first_ms", k ? median_ms(b->firsts, k) : 0, 3);
    wsl_kv_f("post_resp_ms", k ? median_ms(b->resps, k) : 0, 3);
    wsl_kv_f("deliveries_per_s", t_med > 0 ? b->nconns / t_med : 0, 0);
    wsl_kv_u64("other_msgs", b->others);
    wsl_kv_f("open_s", b->t_opened > 0 ? b->t_opened - b->t_open : 0, 3);
    wsl_kv_f("settle_s", b->t_settled > 0 ? b->t_settled - b->t_opened : 0, 3);
    wsl_kv_probe(&b->total, "delivery", (double)k * b->nconns);
    rc = wsl_kv_end(ok, b->err);
    wc_pool_close_all(&b->pool);
out:
    wc_pool_free(&b->pool);
    free(b->req);
    free(b->times);
    free(b->firsts);
    free(b->resps);
    free(b);
    return rc;
}
