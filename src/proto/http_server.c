#include "http_server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../transport/conn.h"
#include "../transport/worker.h"
#include "../util/limits.h"
#include "../util/log.h"
#include "../util/membudget.h"
#include "../util/metrics.h"
#include "http_account.h"
#include "http_respond.h"
#include "http_static.h"
#include "svc.h"
#include "ws_upgrade.h"
#include "ws_handshake.h"

enum { HC_HEAD, HC_BODY, HC_FILE };

struct http_conn {
    struct http_server *srv;
    struct membudget *mem;      /* the body is charged to it */
    int state;
    struct buf head;            /* the head, kept while its body arrives */
    struct buf body;
    size_t body_need;           /* Content-Length bytes still to come */
    bool chunked;
    struct http_chunked ch;
    ev_tstamp req_start;        /* when the current request began; 0 between requests */
    ev_tstamp idle_since;       /* when the last request was answered */
    int file_fd;                /* a static file being sent */
    off_t file_left;
    bool close_after_file;
    bool drain_wait;            /* reading paused until the answers drain */
    size_t out_cap;             /* queued bytes above which reading pauses */
    unsigned batch_iter;        /* the loop iteration batch_n counts for */
    unsigned batch_n;           /* requests answered in it */
};

static void hc_free(struct http_conn *hc)
{
    buf_free(&hc->head);
    membudget_buf_free(hc->mem, &hc->body);
    if (hc->file_fd >= 0)
        close(hc->file_fd);
    free(hc);
}

static bool wants_close(const struct http_request *req)
{
    const struct http_header *h = http_find_header(req->headers, req->nheaders, "connection");
    if (req->minor_version == 0)
        return !h || !http_has_token(h->value, h->value_len, "keep-alive");
    return h && http_has_token(h->value, h->value_len, "close");
}

/* Sends the next part of a static file once the previous one has left. */
static void file_refill(struct conn *c)
{
    struct http_conn *hc = c->pdata;
    if (hc->state != HC_FILE)
        return;
    size_t want = hc->file_left < LIM_STATIC_CHUNK ? (size_t)hc->file_left : LIM_STATIC_CHUNK;
    char *w = conn_write_reserve(c, want);
    ssize_t r = read(hc->file_fd, w, want);
    if (r <= 0) {
        log_warn("static file read failed: %s", r < 0 ? strerror(errno) : "file shrank");
        conn_write_commit(c, 0);
        conn_close(c);
        return;
    }
    conn_write_commit(c, (size_t)r);
    hc->file_left -= r;
    if (hc->file_left == 0) {
        close(hc->file_fd);
        hc->file_fd = -1;
        hc->state = HC_HEAD;
        conn_pause_read(c, false);
        if (hc->close_after_file)
            conn_finish(c, LIM_HTTP_LINGER);
    }
}

static void serve_static(struct conn *c, struct http_conn *hc, const struct http_exchange *ex,
                         bool head_only, bool closing, const char *keep10)
{
    struct static_file f;
    static_open(hc->srv->static_root, ex->path, ex->path_len, &f);
    if (f.status != 200) {
        size_t bl = http_respond_error(c, f.status,
                                       f.status == 403   ? "outside the static folder"
                                       : f.status == 503 ? "server busy: out of file descriptors"
                                                         : "no such file",
                                       NULL);
        http_account(c, ex->req, METRICS_ROUTE_STATIC, f.status, bl, ex->start);
        return;
    }
    char hdr[160];
    int hl = snprintf(hdr, sizeof hdr, "Content-Type: %s\r\n%s", f.content_type, keep10);
    http_respond(c, 200, hdr, (size_t)hl, NULL, (size_t)f.size, true, closing);
    http_account(c, ex->req, METRICS_ROUTE_STATIC, 200, head_only ? 0 : (uint64_t)f.size,
                 ex->start);
    if (head_only || f.size == 0) {
        close(f.fd);
        if (closing)
            conn_finish(c, LIM_HTTP_LINGER);
        return;
    }
    /* Stream it: one chunk now, the next whenever the queue drains. Input
     * waits meanwhile, so pipelined requests keep their order. */
    hc->state = HC_FILE;
    hc->file_fd = f.fd;
    hc->file_left = f.size;
    hc->close_after_file = closing;
    conn_pause_read(c, true);
    file_refill(c);
}

/* Splits the target into a decoded path and a raw query. Returns false for
 * a target that is not a clean origin-form path. */
static bool split_target(const struct http_request *req, char *path, size_t cap,
                         struct http_exchange *ex)
{
    const char *t = req->target;
    size_t tl = req->target_len;
    if (tl == 0 || t[0] != '/')
        return false;
    /* The whole target, query included, is held to LIM_HTTP_TARGET_MAX
     * (cap), whatever --max-header-size allows the head. */
    if (tl >= cap)
        return false;
    const char *q = memchr(t, '?', tl);
    size_t pl = q ? (size_t)(q - t) : tl;
    memcpy(path, t, pl);
    ssize_t dl = http_url_decode(path, pl, false);
    if (dl < 0 || memchr(path, '\0', (size_t)dl))
        return false;
    path[dl] = '\0';
    ex->path = path;
    ex->path_len = (size_t)dl;
    ex->query = q ? q + 1 : NULL;
    ex->query_len = q ? tl - pl - 1 : 0;
    return true;
}

/* An error answer that no route or service gave (route "(none)"),
 * counted and logged; req NULL when it could not be parsed. */
static void refuse(struct conn *c, struct http_conn *hc, const struct http_request *req,
                   int status, const char *why, const char *extra)
{
    size_t bl = http_respond_error(c, status, why, extra);
    http_account(c, req, METRICS_ROUTE_NONE, status, bl, hc->req_start);
}

/* Answers one complete request. Returns true when the connection is now a
 * WebSocket (the HTTP state is gone). */
static bool dispatch(struct conn *c, struct http_conn *hc, const struct http_request *req,
                     const char *body, size_t body_len)
{
    char path[LIM_HTTP_TARGET_MAX];
    struct http_exchange ex = { .conn = c, .req = req, .body = body, .body_len = body_len,
                                .start = hc->req_start };
    if (!split_target(req, path, sizeof path, &ex)) {
        refuse(c, hc, req, 400, "bad request target", NULL);
        hc->req_start = 0;
        return false;
    }
    hc->req_start = 0;
    hc->idle_since = worker_now(c->w);
    hc->batch_n++;
    hc->out_cap = LIM_HTTP_BACKPRESSURE;
    bool closing = wants_close(req) || hc->srv->stopping;
    /* An HTTP/1.0 client kept alive is told so. */
    const char *keep10 = req->minor_version == 0 && !closing ? "Connection: keep-alive\r\n" : "";
    bool head_only = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    struct path_params params;
    ex.params = &params;
    struct svc *svc = router_find(hc->srv->router, ex.path, ex.path_len, &params);

    if (ws_is_upgrade(req)) {
        if (!svc) {
            size_t bl = http_respond_error(c, 404, "no WebSocket service at this path", NULL);
            http_account(c, req, METRICS_ROUTE_NONE, 404, bl, ex.start);
            return false;
        }
        if (ws_conn_accept(c, svc, &ex, hc->srv->pmd)) {
            hc_free(hc);
            return true;
        }
        return false;
    }

    struct svc *rsvc;
    size_t route;
    char allow[128];
    int found = router_find_route(hc->srv->router, req->method, req->method_len, ex.path,
                                  ex.path_len, &rsvc, &route, &params, allow, sizeof allow);
    if (found == ROUTE_FOUND) {
        struct http_reply rep = { .status = 200 };
        hc->out_cap = rsvc->conf.max_backpressure;
        rsvc->ops->http(rsvc, route, &ex, &rep);
        buf_append(&rep.headers, keep10, strlen(keep10));
        if (!conn_is_closed(c)) {
            http_respond(c, rep.status, rep.headers.data, rep.headers.len, rep.body.data,
                         rep.body.len, head_only, closing);
            if (closing)
                conn_finish(c, LIM_HTTP_LINGER);
            http_account(c, req, rsvc->routes[route].metrics_route, rep.status,
                         head_only ? 0 : rep.body.len, ex.start);
        }
        buf_free(&rep.headers);
        buf_free(&rep.body);
        return false;
    }
    if (found == ROUTE_WRONG_METHOD) {
        char extra[160];
        snprintf(extra, sizeof extra, "Allow: %s\r\n", allow);
        size_t bl = http_respond_error(c, 405, "method not allowed here", extra);
        http_account(c, req, METRICS_ROUTE_NONE, 405, bl, ex.start);
        return false;
    }
    if (svc) {
        size_t bl = http_respond_error(c, 426, "this path is a WebSocket service",
                                       "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
        http_account(c, req, METRICS_ROUTE_NONE, 426, bl, ex.start);
        return false;
    }
    bool get = (req->method_len == 3 && memcmp(req->method, "GET", 3) == 0) || head_only;
    if (hc->srv->static_root && get) {
        serve_static(c, hc, &ex, head_only, closing, keep10);
        return false;
    }
    if (hc->srv->static_root) {
        /* Another method on a file that is there: it is only for reading. */
        struct static_file f;
        static_open(hc->srv->static_root, ex.path, ex.path_len, &f);
        if (f.status == 200) {
            close(f.fd);
            size_t bl = http_respond_error(c, 405, "static files are for GET and HEAD",
                                           "Allow: GET, HEAD\r\n");
            http_account(c, req, METRICS_ROUTE_STATIC, 405, bl, ex.start);
            return false;
        }
    }
    size_t bl = http_respond_error(c, 404, "nothing is served at this path", NULL);
    http_account(c, req, METRICS_ROUTE_NONE, 404, bl, ex.start);
    return false;
}

/* How the body is framed. Returns 0, or an error status. */
static int body_framing(const struct http_request *req, size_t max, bool *chunked, size_t *len)
{
    *chunked = false;
    *len = 0;
    const char *te;
    size_t te_len;
    size_t nte = http_header_values(req->headers, req->nheaders, "transfer-encoding", &te,
                                    &te_len, 1);
    if (nte > 1)
        return 400;             /* a second list of codings: one of them is not ours */
    bool have_cl = false;
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name_len != 14 || strncasecmp(h->name, "content-length", 14) != 0)
            continue;
        size_t v = 0;
        if (h->value_len == 0 || h->value_len > 15)
            return h->value_len > 15 ? 413 : 400;
        for (size_t k = 0; k < h->value_len; k++) {
            if (h->value[k] < '0' || h->value[k] > '9')
                return 400;
            v = v * 10 + (size_t)(h->value[k] - '0');
        }
        if (have_cl && v != *len)
            return 400;         /* two different lengths */
        have_cl = true;
        *len = v;
    }
    if (nte) {
        /* Both framings at once is how requests get smuggled: refuse. */
        if (have_cl)
            return 400;
        if (te_len != 7 || strncasecmp(te, "chunked", 7) != 0)
            return 501;
        *chunked = true;
        return 0;
    }
    return *len > max ? 413 : 0;
}

/* HTTP/1.1 requests carry exactly one Host (RFC 9112 §3.2). */
static bool host_ok(const struct http_request *req)
{
    return req->minor_version == 0 ||
           http_header_values(req->headers, req->nheaders, "host", NULL, NULL, 0) == 1;
}

/* The body has arrived whole: parse the kept head again and answer. */
static bool finish_body(struct conn *c, struct http_conn *hc)
{
    struct http_request *req = hc->srv->scratch;
    int r = http_parse_request(hc->head.data, hc->head.len, req);
    (void)r;
    hc->state = HC_HEAD;
    struct buf head = hc->head, body = hc->body;
    struct membudget *mem = hc->mem;    /* hc is gone after an upgrade */
    hc->head = (struct buf){ 0 };
    hc->body = (struct buf){ 0 };
    bool upgraded = dispatch(c, hc, req, body.data, body.len);
    buf_free(&head);
    membudget_buf_free(mem, &body);
    return upgraded;
}

/* The memory budget cannot hold this request's body: 503, logged (at most
 * once a second). */
static void refuse_body(struct conn *c, struct http_conn *hc)
{
    membudget_log_refusal(hc->mem, (unsigned long long)c->id, "HTTP 503");
    refuse(c, hc, NULL, 503, "server busy", NULL);
}

/* Between two requests: whether to take the next one now. Not while the
 * answers already queued pass the cap (reading pauses until they drain:
 * http_on_drain), and not past this iteration's batch (the connection
 * yields its turn). */
static bool take_next_request(struct conn *c, struct http_conn *hc)
{
    size_t queued = conn_buffered(c);
    if (queued > hc->out_cap) {
        log_debug("conn %llu: %zu bytes queued, over max_backpressure: reading paused",
                  (unsigned long long)c->id, queued);
        hc->drain_wait = true;
        conn_pause_read(c, true);
        return false;
    }
    unsigned it = ev_iteration(c->w->loop);
    if (hc->batch_iter != it) {
        hc->batch_iter = it;
        hc->batch_n = 0;
    }
    if (hc->batch_n >= LIM_HTTP_PIPELINE_BATCH) {
        conn_yield_read(c);
        return false;
    }
    return true;
}

static size_t http_on_read(struct conn *c, char *data, size_t n)
{
    struct http_conn *hc = c->pdata;
    if (hc->state == HC_FILE)
        return 0;
    if (hc->state == HC_HEAD && !hc->req_start && !take_next_request(c, hc))
        return 0;
    if (!hc->req_start)
        hc->req_start = worker_now(c->w);

    if (hc->state == HC_BODY) {
        size_t used;
        if (hc->chunked) {
            /* Decoded bytes are never more than the bytes fed, and never
             * past the maximum: room for them, counted, before the feed. */
            size_t max = hc->srv->max_body;
            size_t room = max - hc->body.len;
            if (!membudget_buf_reserve(hc->mem, &hc->body, n < room ? n : room, max)) {
                refuse_body(c, hc);
                return n;
            }
            ssize_t r = http_chunked_feed(&hc->ch, data, n, &hc->body, max);
            if (r < 0) {
                if (r == HTTP_CHUNKED_TOO_BIG)
                    refuse(c, hc, NULL, 413, "request body too large", NULL);
                else
                    refuse(c, hc, NULL, 400, "malformed chunked body", NULL);
                return n;
            }
            used = (size_t)r;
            if (!hc->ch.done)
                return used;
        } else {
            used = n < hc->body_need ? n : hc->body_need;
            memcpy(hc->body.data + hc->body.len, data, used);   /* reserved whole */
            hc->body.len += used;
            hc->body_need -= used;
            if (hc->body_need)
                return used;
        }
        finish_body(c, hc);
        return used;
    }

    struct http_request *req = hc->srv->scratch;
    int hl = http_parse_request(data, n, req);
    size_t max_head = hc->srv->max_head;
    if (hl == HTTP_PARTIAL) {
        if (n >= max_head)
            refuse(c, hc, NULL, 431, "request head over --max-header-size", NULL);
        return n >= max_head ? n : 0;
    }
    if (hl == HTTP_TOO_MANY || (hl > 0 && (size_t)hl > max_head)) {
        refuse(c, hc, NULL, 431, "too many or too large header fields", NULL);
        return n;
    }
    if (hl < 0) {
        refuse(c, hc, NULL, 400, "malformed request", NULL);
        return n;
    }
    if (!host_ok(req)) {
        refuse(c, hc, req, 400, "an HTTP/1.1 request needs exactly one Host header", NULL);
        return n;
    }
    size_t len;
    int st = body_framing(req, hc->srv->max_body, &hc->chunked, &len);
    if (st) {
        refuse(c, hc, req, st, st == 413 ? "request body too large"
                               : st == 501 ? "unsupported Transfer-Encoding"
                                           : "conflicting or malformed body framing", NULL);
        return n;
    }
    if (!hc->chunked && n - (size_t)hl >= len) {
        dispatch(c, hc, req, data + hl, len);
        return (size_t)hl + len;
    }
    /* The body is still coming: keep the head, collect the body. */
    const struct http_header *expect = http_find_header(req->headers, req->nheaders, "expect");
    if (expect && expect->value_len == 12 && strncasecmp(expect->value, "100-continue", 12) == 0)
        conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    if (!hc->chunked && !membudget_buf_reserve(hc->mem, &hc->body, len, len)) {
        refuse_body(c, hc);
        return n;
    }
    buf_append(&hc->head, data, (size_t)hl);
    hc->state = HC_BODY;
    hc->body_need = len;
    hc->ch = (struct http_chunked){ 0 };
    return (size_t)hl;
}

static void http_on_eof(struct conn *c)
{
    /* The peer is done sending; let what we queued leave, then close. */
    conn_finish(c, 0);
}

static void http_on_drain(struct conn *c)
{
    struct http_conn *hc = c->pdata;
    if (hc->drain_wait) {
        hc->drain_wait = false;
        conn_pause_read(c, false);
    }
    file_refill(c);
}

/* A request must arrive whole within the handshake timeout. A keep-alive
 * connection is closed after the keep-alive time without a request — and
 * one with an answer waiting, after that time without the kernel taking
 * any of it: a client still reading a long answer is not idle, one that
 * stopped is dropped. */
static void http_on_sweep(struct conn *c, ev_tstamp now)
{
    struct http_conn *hc = c->pdata;
    ev_tstamp last = hc->idle_since > c->out_progress ? hc->idle_since : c->out_progress;
    if (hc->state == HC_FILE || conn_buffered(c)) {
        if (now - last > hc->srv->keepalive) {
            char addr[80];
            conn_remote(c, addr, sizeof addr);
            log_info("conn %llu (%s): the client stopped reading %s: dropped",
                     (unsigned long long)c->id, addr,
                     hc->state == HC_FILE ? "a static file" : "its answers");
            conn_close(c);
        }
        return;
    }
    if (hc->req_start ? now - hc->req_start > hc->srv->handshake_timeout
                      : now - last > hc->srv->keepalive) {
        log_debug("conn %llu: %s timed out", (unsigned long long)c->id,
                  hc->req_start ? "request" : "keep-alive");
        conn_close(c);
    }
}

static void http_on_close(struct conn *c)
{
    hc_free(c->pdata);
}

static const struct conn_proto http_proto = {
    .on_read = http_on_read,
    .on_eof = http_on_eof,
    .on_drain = http_on_drain,
    .on_sweep = http_on_sweep,
    .on_close = http_on_close,
};

void http_server_shutdown(struct http_server *srv, struct worker *w)
{
    srv->stopping = true;
    for (struct conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->proto != &http_proto)
            continue;
        /* Between requests, or connected and silent: nothing to finish. */
        struct http_conn *hc = c->pdata;
        if (hc->state == HC_HEAD && !c->in_len)
            conn_finish(c, 0);
    }
}

void http_conn_start(struct conn *c, struct http_server *srv)
{
    struct http_conn *hc = xcalloc(1, sizeof *hc);
    hc->srv = srv;
    hc->mem = c->w->mem;
    hc->out_cap = LIM_HTTP_BACKPRESSURE;
    hc->file_fd = -1;
    hc->req_start = worker_now(c->w);
    hc->idle_since = hc->req_start;
    conn_set_proto(c, &http_proto, hc);
}
