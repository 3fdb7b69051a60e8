#include "metrics_http.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../transport/conn.h"
#include "../transport/listener.h"
#include "../transport/worker.h"
#include "../util/buf.h"
#include "../util/limits.h"
#include "../util/log.h"
#include "../util/metrics.h"
#include "http_parse.h"

struct metrics_http {
    struct worker w;            /* its connections, buffers and sweep: on the given loop */
    struct listener *l;
    struct metrics *m;
    struct metrics_http_options opt;
    bool draining;
    struct buf body;            /* an answer's body, kept between scrapes */
    struct log_every refused;
};

/* One connection's state between requests. */
struct mh_conn {
    struct metrics_http *mh;
    ev_tstamp req_start;        /* the first byte of a request not answered yet; 0: none */
    ev_tstamp idle_since;       /* the last answer left (or the connection began) */
    bool answered;              /* an answer is leaving: the next request waits (read paused) */
};

static const char *status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

/* Writes a whole answer; the connection ends after it when closing. The
 * next request is not read until the answer has left (mh_on_drain). */
static void answer(struct conn *c, int status, const char *ctype, const char *extra,
                   const char *body, size_t len, bool head_only, const char *connection)
{
    struct mh_conn *mc = c->pdata;
    char head[512];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nServer: moonws\r\nContent-Type: %s\r\n"
                      "Content-Length: %zu\r\n%s%s%s%s\r\n",
                      status, status_text(status), ctype, len, extra ? extra : "",
                      connection ? "Connection: " : "", connection ? connection : "",
                      connection ? "\r\n" : "");
    conn_write(c, head, (size_t)hl);
    if (!head_only)
        conn_write(c, body, len);
    mc->req_start = 0;
    if (connection && strcmp(connection, "close") == 0) {
        conn_finish(c, LIM_HTTP_LINGER);
        return;
    }
    mc->answered = true;
    conn_pause_read(c, true);
}

/* A request we cannot take: a one-line reason, and the connection ends. */
static void refuse(struct conn *c, int status, const char *why)
{
    char body[160];
    int bl = snprintf(body, sizeof body, "%d %s: %s\n", status, status_text(status), why);
    log_debug("metrics conn %llu: %d: %s", (unsigned long long)c->id, status, why);
    answer(c, status, "text/plain; charset=utf-8", NULL, body, (size_t)bl, false, "close");
}

static bool is_method(const struct http_request *req, const char *m)
{
    return req->method_len == strlen(m) && memcmp(req->method, m, req->method_len) == 0;
}

/* The Connection field of the answer: "close" when the client or HTTP/1.0
 * wants it, "keep-alive" for an HTTP/1.0 client that asked, else none. */
static const char *connection_of(const struct http_request *req)
{
    const struct http_header *h = http_find_header(req->headers, req->nheaders, "connection");
    if (h && http_has_token(h->value, h->value_len, "close"))
        return "close";
    if (req->minor_version == 0)
        return h && http_has_token(h->value, h->value_len, "keep-alive") ? "keep-alive" : "close";
    return NULL;
}

static void serve(struct conn *c, struct metrics_http *mh, const struct http_request *req)
{
    const char *t = req->target;
    const char *q = memchr(t, '?', req->target_len);
    size_t pl = q ? (size_t)(q - t) : req->target_len;
    bool metrics = pl == 8 && memcmp(t, "/metrics", 8) == 0;
    bool healthz = pl == 8 && memcmp(t, "/healthz", 8) == 0;
    const char *connection = connection_of(req);
    bool head = is_method(req, "HEAD");
    static const char text[] = "text/plain; charset=utf-8";
    if (!metrics && !healthz) {
        static const char body[] = "404 Not Found: this listener serves /metrics and /healthz\n";
        answer(c, 404, text, NULL, body, sizeof body - 1, head, connection);
        return;
    }
    if (!head && !is_method(req, "GET")) {
        static const char body[] = "405 Method Not Allowed: GET or HEAD\n";
        answer(c, 405, text, "Allow: GET, HEAD\r\n", body, sizeof body - 1, false, connection);
        return;
    }
    if (healthz) {
        if (mh->draining)
            answer(c, 503, text, NULL, "draining\n", 9, head, connection);
        else
            answer(c, 200, text, NULL, "ok\n", 3, head, connection);
        return;
    }
    struct metrics_process proc;
    metrics_process_read(&proc);
    mh->body.len = 0;
    metrics_render(mh->m, &proc, &mh->body);
    answer(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, mh->body.data,
           mh->body.len, head, connection);
}

static size_t mh_on_read(struct conn *c, char *data, size_t n)
{
    struct mh_conn *mc = c->pdata;
    if (mc->answered)
        return 0;               /* pipelined: after the answer has left */
    if (!mc->req_start)
        mc->req_start = worker_now(c->w);
    struct http_request req;
    int hl = http_parse_request(data, n, &req);
    if (hl == HTTP_PARTIAL) {
        if (n < LIM_HTTP_HEAD_MAX)
            return 0;
        refuse(c, 431, "request head over 8 KiB");
        return n;
    }
    if (hl == HTTP_TOO_MANY || hl > LIM_HTTP_HEAD_MAX) {
        refuse(c, 431, "too many or too large header fields");
        return n;
    }
    if (hl < 0) {
        refuse(c, 400, "malformed request");
        return n;
    }
    if (req.minor_version == 1 &&
        http_header_values(req.headers, req.nheaders, "host", NULL, NULL, 0) != 1) {
        refuse(c, 400, "an HTTP/1.1 request needs exactly one Host header");
        return n;
    }
    const struct http_header *cl = http_find_header(req.headers, req.nheaders, "content-length");
    if (http_find_header(req.headers, req.nheaders, "transfer-encoding") ||
        (cl && !(cl->value_len == 1 && cl->value[0] == '0'))) {
        refuse(c, 400, "this listener takes no request body");
        return n;
    }
    serve(c, mc->mh, &req);
    return (size_t)hl;
}

static void mh_on_eof(struct conn *c)
{
    conn_finish(c, 0);
}

/* The answer has left: the next request may be read. */
static void mh_on_drain(struct conn *c)
{
    struct mh_conn *mc = c->pdata;
    if (!mc->answered)
        return;
    mc->answered = false;
    mc->idle_since = worker_now(c->w);
    conn_pause_read(c, false);
}

static void mh_on_sweep(struct conn *c, ev_tstamp now)
{
    struct mh_conn *mc = c->pdata;
    double limit = mc->mh->opt.timeout;
    ev_tstamp since = conn_buffered(c) ? c->out_progress
                      : mc->req_start  ? mc->req_start
                                       : mc->idle_since;
    if (now - since > limit) {
        log_debug("metrics conn %llu: %s for %.1f s: dropped", (unsigned long long)c->id,
                  conn_buffered(c) ? "answer not read" : mc->req_start ? "request unfinished"
                                                                       : "idle",
                  limit);
        conn_close(c);
    }
}

static void mh_on_close(struct conn *c)
{
    free(c->pdata);
}

static const struct conn_proto mh_proto = {
    .on_read = mh_on_read,
    .on_eof = mh_on_eof,
    .on_drain = mh_on_drain,
    .on_sweep = mh_on_sweep,
    .on_close = mh_on_close,
};

static void mh_accept(struct listener *l, int fd, const struct sockaddr *addr)
{
    (void)addr;
    struct metrics_http *mh = l->data;
    if (mh->w.nconns >= mh->opt.max_conns) {
        close(fd);
        unsigned long n = log_every_hit(&mh->refused, 1.0);
        if (n)
            log_info("metrics listener: %u connections open: refused %lu", mh->opt.max_conns, n);
        return;
    }
    struct mh_conn *mc = xcalloc(1, sizeof *mc);
    mc->mh = mh;
    struct conn *c = conn_new(&mh->w, fd, &mh_proto);
    c->pdata = mc;
    mc->idle_since = worker_now(&mh->w);
}

struct metrics_http *metrics_http_open(struct ev_loop *loop, const char *host, unsigned port,
                                       struct metrics *m, const struct metrics_http_options *opts,
                                       char *err, size_t errcap)
{
    int fd;
    unsigned bound;
    if (!listener_bind_group(host, port, &fd, 1, &bound, err, errcap))
        return NULL;
    struct listener *l = listener_new(loop, fd, host, bound);
    struct metrics_http *mh = xcalloc(1, sizeof *mh);
    mh->l = l;
    mh->m = m;
    mh->opt = opts ? *opts
                   : (struct metrics_http_options){ LIM_METRICS_TIMEOUT, LIM_METRICS_CONNS };
    /* Its connections are plain HTTP: the index in their ids is never
     * looked up (they are not in the open set of WebSocket ids). */
    worker_init(&mh->w, loop, 0);
    l->on_accept = mh_accept;
    l->data = mh;
    return mh;
}

void metrics_http_url(const struct metrics_http *mh, char *out, size_t cap)
{
    bool v6 = strchr(mh->l->host, ':') != NULL;
    snprintf(out, cap, "http://%s%s%s:%u/metrics", v6 ? "[" : "", mh->l->host, v6 ? "]" : "",
             mh->l->port);
}

unsigned metrics_http_port(const struct metrics_http *mh)
{
    return mh->l->port;
}

void metrics_http_start(struct metrics_http *mh)
{
    listener_start(mh->l);
}

void metrics_http_drain(struct metrics_http *mh)
{
    mh->draining = true;
}

void metrics_http_free(struct metrics_http *mh)
{
    if (!mh)
        return;
    listener_close(mh->l);
    worker_free(&mh->w);
    buf_free(&mh->body);
    free(mh);
}
