/*
 * metrics_http (src/proto/metrics_http.h) on a real libev loop and a real
 * socket on 127.0.0.1: the two paths, HEAD, the errors, keep-alive and
 * pipelining, the connection cap, the timeout, a large answer. The loop runs
 * on the test's thread; each scenario's client runs on a thread of its own
 * with blocking sockets and records what it got; the checks run after it is
 * joined (check.h is not thread-safe).
 */
#include "check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "proto/metrics_http.h"
#include "util/buf.h"
#include "util/metrics.h"

/* ---- the server side ---- */

struct fixture {
    struct ev_loop *loop;
    struct metrics *m;
    struct metrics_http *mh;
    unsigned port;
    ev_async done;
    ev_timer guard;
    bool timed_out;
};

static void done_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)a;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void guard_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    ((struct fixture *)t->data)->timed_out = true;
    ev_break(loop, EVBREAK_ALL);
}

static bool setup(struct fixture *f, const struct metrics_http_options *opts)
{
    memset(f, 0, sizeof *f);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    f->m = metrics_new(1);
    char err[256];
    f->mh = metrics_http_open(f->loop, "127.0.0.1", 0, f->m, opts, err, sizeof err);
    if (!CHECK(f->mh)) {
        NOTE("%s\n", err);
        return false;
    }
    f->port = metrics_http_port(f->mh);
    metrics_http_start(f->mh);
    ev_async_init(&f->done, done_cb);
    ev_async_start(f->loop, &f->done);
    return true;
}

static void teardown(struct fixture *f)
{
    metrics_http_free(f->mh);
    ev_async_stop(f->loop, &f->done);
    metrics_free(f->m);
    ev_loop_destroy(f->loop);
}

struct client {
    struct fixture *f;
    void (*run)(struct client *cl);
    /* what the scenario recorded */
    int status[8];
    struct buf head[8], body[8];
    int nresp;
    bool eof[4];
    int fail_line;              /* a step that went wrong (0: none) */
};

static void *client_main(void *arg)
{
    struct client *cl = arg;
    cl->run(cl);
    ev_async_send(cl->f->loop, &cl->f->done);
    return NULL;
}

/* Runs the scenario on its thread while the loop serves, for 30 s at most. */
static void run(struct fixture *f, struct client *cl)
{
    cl->f = f;
    ev_timer_init(&f->guard, guard_cb, 30, 0);
    f->guard.data = f;
    ev_timer_start(f->loop, &f->guard);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, client_main, cl) == 0);
    ev_run(f->loop, 0);
    pthread_join(t, NULL);
    ev_timer_stop(f->loop, &f->guard);
    CHECK(!f->timed_out);
    if (!CHECK_EQ_INT(cl->fail_line, 0))
        NOTE("the client failed at line %d\n", cl->fail_line);
}

static void client_free(struct client *cl)
{
    for (int i = 0; i < 8; i++) {
        buf_free(&cl->head[i]);
        buf_free(&cl->body[i]);
    }
}

/* ---- the client side: blocking sockets ---- */

#define STEP(cond)                                                                             \
    do {                                                                                       \
        if (!(cond) && !cl->fail_line)                                                         \
            cl->fail_line = __LINE__;                                                          \
    } while (0)

struct sock {
    int fd;
    struct buf in;              /* read and not yet taken */
};

static bool sock_open(struct sock *s, unsigned port)
{
    s->in = (struct buf){ 0 };
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = { 5, 0 };
    setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return connect(s->fd, (struct sockaddr *)&a, sizeof a) == 0;
}

static void sock_close(struct sock *s)
{
    close(s->fd);
    buf_free(&s->in);
}

static bool sock_send(struct sock *s, const char *str)
{
    size_t n = strlen(str);
    return send(s->fd, str, n, MSG_NOSIGNAL) == (ssize_t)n;
}

/* Reads more into s->in; false at EOF, error or timeout. */
static bool sock_fill(struct sock *s)
{
    char *w = buf_reserve(&s->in, 65536);
    ssize_t r = recv(s->fd, w, 65536, 0);
    if (r <= 0)
        return false;
    s->in.len += (size_t)r;
    return true;
}

/* True when the server closed the connection with nothing more to read. */
static bool sock_eof(struct sock *s)
{
    if (s->in.len)
        return false;
    char c;
    ssize_t r = recv(s->fd, &c, 1, 0);
    return r == 0 || (r < 0 && errno == ECONNRESET);
}

/* Reads one response into slot cl->nresp (head without its blank line,
 * then the body of Content-Length, none for HEAD). */
static bool read_response(struct client *cl, struct sock *s, bool head_only)
{
    char *end;
    while (!(s->in.len && (end = memmem(s->in.data, s->in.len, "\r\n\r\n", 4)))) {
        if (!sock_fill(s))
            return false;
    }
    size_t hl = (size_t)(end - s->in.data) + 4;
    int k = cl->nresp++;
    buf_append(&cl->head[k], s->in.data, hl - 4);
    buf_append(&cl->head[k], "", 1);
    cl->status[k] = atoi(cl->head[k].data + 9);
    const char *cl_ = strcasestr(cl->head[k].data, "\r\ncontent-length: ");
    size_t len = cl_ ? strtoul(cl_ + 18, NULL, 10) : 0;
    if (head_only)
        len = 0;
    while (s->in.len < hl + len) {
        if (!sock_fill(s))
            return false;
    }
    buf_append(&cl->body[k], s->in.data + hl, len);
    buf_append(&cl->body[k], "", 1);
    cl->body[k].len--;
    buf_consume(&s->in, hl + len);
    return true;
}

static bool has_header(const struct client *cl, int k, const char *line)
{
    return strstr(cl->head[k].data, line) != NULL;
}

/* ---- scenarios ---- */

static void get_metrics_and_healthz(struct client *cl)
{
    struct sock s;
    STEP(sock_open(&s, cl->f->port));
    STEP(sock_send(&s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
    STEP(read_response(cl, &s, false));
    STEP(sock_send(&s, "GET /healthz?probe=1 HTTP/1.1\r\nHost: x\r\n\r\n"));
    STEP(read_response(cl, &s, false));
    STEP(sock_send(&s, "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    STEP(read_response(cl, &s, true));
    cl->eof[0] = sock_eof(&s);
    sock_close(&s);
}

TEST(metrics_healthz_and_head)
{
    struct fixture f;
    if (!setup(&f, NULL))
        return;
    int id = metrics_path_acquire(f.m, "/chat");
    metrics_conn_opened(metrics_path_cells(metrics_worker(f.m, 0), id));
    struct client cl = { .run = get_metrics_and_healthz };
    run(&f, &cl);
    CHECK_EQ_INT(cl.nresp, 3);
    CHECK_EQ_INT(cl.status[0], 200);
    CHECK(has_header(&cl, 0, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"));
    CHECK(!has_header(&cl, 0, "Connection:"));
    /* the body is the registry's text, then the process figures */
    struct buf want = { 0 };
    metrics_render(f.m, NULL, &want);
    CHECK(cl.body[0].len > want.len && memcmp(cl.body[0].data, want.data, want.len) == 0);
    CHECK(strncmp(cl.body[0].data + want.len, "# HELP process_cpu_seconds_total ", 33) == 0);
    CHECK(strstr(cl.body[0].data, "\nmoonws_connections{path=\"/chat\"} 1\n"));
    CHECK(strstr(cl.body[0].data, "\nprocess_open_fds "));
    CHECK_EQ_INT(cl.status[1], 200);
    CHECK_STR(cl.body[1].data, cl.body[1].len, "ok\n");
    CHECK(has_header(&cl, 1, "\r\nContent-Type: text/plain; charset=utf-8"));
    /* HEAD: the length of the body it would have, and no body */
    CHECK_EQ_INT(cl.status[2], 200);
    CHECK(has_header(&cl, 2, "\r\nContent-Length: "));
    CHECK(atol(strstr(cl.head[2].data, "\r\nContent-Length: ") + 18) > (long)want.len);
    CHECK(has_header(&cl, 2, "\r\nConnection: close"));
    CHECK(cl.eof[0]);
    buf_free(&want);
    client_free(&cl);
    metrics_path_release(f.m, id);
    teardown(&f);
}

static void healthz_only(struct client *cl)
{
    struct sock s;
    STEP(sock_open(&s, cl->f->port));
    STEP(sock_send(&s, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    STEP(read_response(cl, &s, false));
    STEP(sock_send(&s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
    STEP(read_response(cl, &s, false));
    sock_close(&s);
}

TEST(healthz_503_while_draining)
{
    struct fixture f;
    if (!setup(&f, NULL))
        return;
    metrics_http_drain(f.mh);
    struct client cl = { .run = healthz_only };
    run(&f, &cl);
    CHECK_EQ_INT(cl.status[0], 503);
    CHECK_STR(cl.body[0].data, cl.body[0].len, "draining\n");
    CHECK_EQ_INT(cl.status[1], 200);            /* still scraped while stopping */
    client_free(&cl);
    teardown(&f);
}

static void errors(struct client *cl)
{
    struct sock s;
    STEP(sock_open(&s, cl->f->port));
    STEP(sock_send(&s, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"));
    STEP(read_response(cl, &s, false));         /* 404, kept alive */
    STEP(sock_send(&s, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"));
    STEP(read_response(cl, &s, false));         /* 405, kept alive */
    STEP(sock_send(&s, "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"));
    STEP(read_response(cl, &s, false));         /* 400: a body */
    cl->eof[0] = sock_eof(&s);
    sock_close(&s);

    STEP(sock_open(&s, cl->f->port));
    STEP(sock_send(&s, "GARBAGE\r\n\r\n"));
    STEP(read_response(cl, &s, false));         /* 400 */
    cl->eof[1] = sock_eof(&s);
    sock_close(&s);

    STEP(sock_open(&s, cl->f->port));
    STEP(sock_send(&s, "GET /metrics HTTP/1.1\r\n\r\n"));
    STEP(read_response(cl, &s, false));         /* 400: no Host */
    sock_close(&s);

    STEP(sock_open(&s, cl->f->port));
    char big[9000];
    memset(big, 'a', sizeof big);
    memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
    big[sizeof big - 1] = '\0';
    STEP(sock_send(&s, big));                   /* no end of head in 8 KiB */
    STEP(read_response(cl, &s, false));         /* 431 */
    cl->eof[2] = sock_eof(&s);
    sock_close(&s);
}

TEST(errors_and_which_end_the_connection)
{
    struct fixture f;
    if (!setup(&f, NULL))
        return;
    struct client cl = { .run = errors };
    run(&f, &cl);
    CHECK_EQ_INT(cl.nresp, 6);
    CHECK_EQ_INT(cl.status[0], 404);
    CHECK(!has_header(&cl, 0, "Connection:"));
    CHECK_EQ_INT(cl.status[1], 405);
    CHECK(has_header(&cl, 1, "\r\nAllow: GET, HEAD"));
    CHECK_EQ_INT(cl.status[2], 400);
    CHECK(has_header(&cl, 2, "\r\nConnection: close"));
    CHECK(cl.eof[0]);
    CHECK_EQ_INT(cl.status[3], 400);
    CHECK(cl.eof[1]);
    CHECK_EQ_INT(cl.status[4], 400);
    CHECK_EQ_INT(cl.status[5], 431);
    CHECK(cl.eof[2]);
    client_free(&cl);
    teardown(&f);
}

static void pipelined(struct client *cl)
{
    struct sock s;
    STEP(sock_open(&s, cl->f->port));
    STEP(sock_send(&s, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /healthz HTTP/1.0\r\n\r\n"));
    for (int i = 0; i < 4; i++)
        STEP(read_response(cl, &s, false));
    cl->eof[0] = sock_eof(&s);                  /* HTTP/1.0 without keep-alive: closed */
    sock_close(&s);

    STEP(sock_open(&s, cl->f->port));
    STEP(sock_send(&s, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    STEP(read_response(cl, &s, false));
    STEP(sock_send(&s, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    STEP(read_response(cl, &s, false));
    sock_close(&s);
}

TEST(pipelined_requests_answered_in_order)
{
    struct fixture f;
    if (!setup(&f, NULL))
        return;
    struct client cl = { .run = pipelined };
    run(&f, &cl);
    CHECK_EQ_INT(cl.nresp, 6);
    CHECK_EQ_INT(cl.status[0], 200);
    CHECK_STR(cl.body[0].data, cl.body[0].len, "ok\n");
    CHECK_EQ_INT(cl.status[1], 404);
    CHECK_EQ_INT(cl.status[2], 200);
    CHECK(strstr(cl.body[2].data, "moonws_workers 1\n"));
    CHECK_EQ_INT(cl.status[3], 200);
    CHECK(has_header(&cl, 3, "\r\nConnection: close"));
    CHECK(cl.eof[0]);
    CHECK(has_header(&cl, 4, "\r\nConnection: keep-alive"));
    CHECK_EQ_INT(cl.status[5], 200);
    client_free(&cl);
    teardown(&f);
}

static void capped(struct client *cl)
{
    struct sock a, b, c;
    STEP(sock_open(&a, cl->f->port));
    STEP(sock_send(&a, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    STEP(read_response(cl, &a, false));
    STEP(sock_open(&b, cl->f->port));
    STEP(sock_send(&b, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    STEP(read_response(cl, &b, false));
    /* a third while two are open: closed at once, no answer */
    STEP(sock_open(&c, cl->f->port));
    sock_send(&c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    cl->eof[0] = sock_eof(&c);
    sock_close(&c);
    /* the first two are still served; one leaves, and a new one gets in */
    STEP(sock_send(&a, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    STEP(read_response(cl, &a, false));
    cl->eof[1] = sock_eof(&a);
    sock_close(&a);
    /* (the server may take the new one before it has seen the old one
     * leave: a refused attempt is tried again, for 5 s at most) */
    bool in = false;
    for (int tries = 0; tries < 250 && !in; tries++) {
        STEP(sock_open(&c, cl->f->port));
        STEP(sock_send(&c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
        in = read_response(cl, &c, false);
        sock_close(&c);
        if (!in)
            usleep(20000);
    }
    STEP(in);
    sock_close(&b);
}

TEST(connections_over_the_cap_closed)
{
    struct fixture f;
    struct metrics_http_options o = { .timeout = 10, .max_conns = 2 };
    if (!setup(&f, &o))
        return;
    struct client cl = { .run = capped };
    run(&f, &cl);
    CHECK_EQ_INT(cl.nresp, 4);
    for (int i = 0; i < cl.nresp; i++)
        CHECK_EQ_INT(cl.status[i], 200);
    CHECK(cl.eof[0]);
    CHECK(cl.eof[1]);
    client_free(&cl);
    teardown(&f);
}

static void slow(struct client *cl)
{
    /* half a request, then nothing: dropped */
    struct sock s;
    STEP(sock_open(&s, cl->f->port));
    STEP(sock_send(&s, "GET /metr"));
    cl->eof[0] = sock_eof(&s);
    sock_close(&s);
    /* an idle keep-alive connection: dropped after its answer */
    STEP(sock_open(&s, cl->f->port));
    STEP(sock_send(&s, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    STEP(read_response(cl, &s, false));
    cl->eof[1] = sock_eof(&s);
    sock_close(&s);
}

TEST(unfinished_and_idle_connections_time_out)
{
    struct fixture f;
    struct metrics_http_options o = { .timeout = 0.2, .max_conns = 4 };
    if (!setup(&f, &o))
        return;
    struct client cl = { .run = slow };
    run(&f, &cl);
    CHECK(cl.eof[0]);
    CHECK_EQ_INT(cl.status[0], 200);
    CHECK(cl.eof[1]);
    client_free(&cl);
    teardown(&f);
}

static void large(struct client *cl)
{
    struct sock s;
    STEP(sock_open(&s, cl->f->port));
    /* a small receive buffer: the answer leaves in many writes */
    int small = 4096;
    setsockopt(s.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    STEP(sock_send(&s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                       "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    STEP(read_response(cl, &s, false));
    STEP(read_response(cl, &s, false));
    sock_close(&s);
}

TEST(large_answer_then_the_next_request)
{
    struct fixture f;
    if (!setup(&f, NULL))
        return;
    int ids[200];
    char name[32];
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof name, "/service/%03d", i);
        ids[i] = metrics_path_acquire(f.m, name);
    }
    struct client cl = { .run = large };
    run(&f, &cl);
    CHECK_EQ_INT(cl.nresp, 2);
    CHECK_EQ_INT(cl.status[0], 200);
    struct buf want = { 0 };
    metrics_render(f.m, NULL, &want);
    CHECK(want.len > 256 * 1024);
    CHECK(cl.body[0].len > want.len && memcmp(cl.body[0].data, want.data, want.len) == 0);
    CHECK_STR(cl.body[1].data, cl.body[1].len, "ok\n");
    buf_free(&want);
    client_free(&cl);
    for (int i = 0; i < 200; i++)
        metrics_path_release(f.m, ids[i]);
    teardown(&f);
}

TEST(url_and_bad_address)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct metrics *m = metrics_new(1);
    char err[256], url[128];
    struct metrics_http *mh = metrics_http_open(loop, "127.0.0.1", 0, m, NULL, err, sizeof err);
    if (CHECK(mh)) {
        metrics_http_url(mh, url, sizeof url);
        char want[128];
        snprintf(want, sizeof want, "http://127.0.0.1:%u/metrics", metrics_http_port(mh));
        CHECK_STR(url, strlen(url), want);
        /* the same port again: refused with a message */
        struct metrics_http *again =
            metrics_http_open(loop, "127.0.0.1", metrics_http_port(mh), m, NULL, err, sizeof err);
        CHECK(!again);
        CHECK(strstr(err, "cannot listen on 127.0.0.1:"));
        metrics_http_free(mh);
    }
    struct metrics_http *v6 = metrics_http_open(loop, "::1", 0, m, NULL, err, sizeof err);
    if (v6) {                   /* where the machine has IPv6 on loopback */
        metrics_http_url(v6, url, sizeof url);
        CHECK(strncmp(url, "http://[::1]:", 13) == 0);
        metrics_http_free(v6);
    }
    metrics_free(m);
    ev_loop_destroy(loop);
}

int main(int argc, char **argv)
{
    return check_main("test_metrics_http");
}
