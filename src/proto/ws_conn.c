#include "ws_conn.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../transport/conn.h"
#include "../transport/worker.h"
#include "../util/limits.h"
#include "../util/log.h"
#include "../util/membudget.h"
#include "../util/shbuf.h"
#include "http_server.h"
#include "pubsub.h"
#include "ws_handshake.h"

#define NO_REF (-2)

uint64_t ws_id(const struct ws_conn *wc)
{
    return wc->c->id;
}

bool ws_secure(const struct ws_conn *wc)
{
    return conn_is_secure(wc->c);
}

size_t ws_buffered(const struct ws_conn *wc)
{
    return conn_is_closed(wc->c) ? 0 : conn_buffered(wc->c);
}

static void write_frame(struct conn *c, uint8_t opcode, uint8_t rsv, const char *p, size_t n)
{
    size_t hl = ws_frame_header_len(n, false);
    char *w = conn_write_reserve(c, hl + n);
    ws_frame_header_write((uint8_t *)w, true, rsv, opcode, n, NULL);
    memcpy(w + hl, p, n);
    conn_write_commit(c, hl + n);
}

static void write_close(struct conn *c, unsigned code, const char *reason, size_t len)
{
    char payload[WS_CONTROL_MAX];
    size_t n = 0;
    if (code != WS_CLOSE_NO_STATUS) {
        payload[0] = (char)(code >> 8);
        payload[1] = (char)code;
        if (len > WS_CONTROL_MAX - 2)
            len = WS_CONTROL_MAX - 2;
        memcpy(payload + 2, reason, len);
        n = 2 + len;
    }
    write_frame(c, WS_OP_CLOSE, 0, payload, n);
}

static void notify_close(struct ws_conn *wc, unsigned code, const char *reason, size_t len)
{
    if (wc->notified)
        return;
    wc->notified = true;
    wc->state = WS_CLOSING;
    wc->svc->ops->close(wc->svc, wc, code, reason, len);
}

void ws_fail(struct ws_conn *wc, unsigned code, const char *reason)
{
    struct conn *c = wc->c;
    if (code == WS_CLOSE_TOO_BIG)
        log_info("conn %llu: message over max_message (%zu bytes) on %s: closing 1009",
                 (unsigned long long)c->id, wc->rx.max_message, wc->svc->path);
    else
        log_debug("conn %llu: failing with %u: %s", (unsigned long long)c->id, code, reason);
    if (wc->state == WS_OPEN && !conn_is_closed(c)) {
        wc->state = WS_CLOSING;
        write_close(c, code, reason, strlen(reason));
    }
    notify_close(wc, code, reason, strlen(reason));
    conn_finish(c, LIM_WS_CLOSE_TIMEOUT);
}

bool ws_close(struct ws_conn *wc, unsigned code, const char *reason, size_t len)
{
    if (wc->state != WS_OPEN || conn_is_closed(wc->c))
        return false;
    wc->state = WS_CLOSING;
    write_close(wc->c, code, reason, len);
    wc->c->deadline = ev_now(wc->c->w->loop) + LIM_WS_CLOSE_TIMEOUT;
    return true;
}

/* Past the backpressure limit the client is not keeping up: close it. */
static bool over_backpressure(struct ws_conn *wc)
{
    if (conn_buffered(wc->c) <= wc->svc->conf.max_backpressure)
        return false;
    log_info("conn %llu: %zu bytes queued, over max_backpressure: closing 1008",
             (unsigned long long)wc->c->id, conn_buffered(wc->c));
    notify_close(wc, WS_CLOSE_POLICY, "backpressure limit exceeded", 27);
    write_close(wc->c, WS_CLOSE_POLICY, "backpressure limit exceeded", 27);
    conn_finish(wc->c, LIM_WS_CLOSE_TIMEOUT);
    return true;
}

bool ws_send(struct ws_conn *wc, uint8_t opcode, const char *data, size_t len)
{
    if (wc->state != WS_OPEN || conn_is_closed(wc->c) || over_backpressure(wc))
        return false;
    struct ws_pmd *z = wc->pmd;
    if (z && len >= z->threshold) {
        /* The payload is built in the worker's scratch buffer before its
         * frame header is known. */
        struct buf *zb = &z->def.pool->scratch;
        zb->len = 0;
        pmd_deflate(&z->def, data, len, zb);
        /* Without context takeover nothing depends on this message being
         * compressed: send whichever is smaller. */
        if (zb->len < len || !z->def.reset_each_message) {
            write_frame(wc->c, opcode, WS_RSV1, zb->data, zb->len);
            return true;
        }
    }
    write_frame(wc->c, opcode, 0, data, len);
    return true;
}

bool ws_send_control(struct ws_conn *wc, uint8_t opcode, const char *data, size_t len)
{
    if (wc->state != WS_OPEN || conn_is_closed(wc->c) || len > WS_CONTROL_MAX ||
        over_backpressure(wc))
        return false;
    write_frame(wc->c, opcode, 0, data, len);
    return true;
}

/* ---- receiving ---- */

static bool on_message(void *ctx, uint8_t opcode, char *data, size_t len)
{
    struct ws_conn *wc = ctx;
    if (wc->state == WS_OPEN)
        wc->svc->ops->message(wc->svc, wc, opcode, data, len);
    return !(wc->c->flags & (CONN_CLOSED | CONN_FINISHING));
}

static bool on_control(void *ctx, uint8_t opcode, char *data, size_t len)
{
    struct ws_conn *wc = ctx;
    struct svc *s = wc->svc;
    struct conn *c = wc->c;
    if (opcode == WS_OP_PING) {
        if (wc->state == WS_OPEN) {
            if (s->conf.auto_pong)
                ws_send_control(wc, WS_OP_PONG, data, len);
            else
                s->ops->ping(s, wc, data, len);
        }
    } else if (opcode == WS_OP_PONG) {
        if (wc->state == WS_OPEN && s->ops->pong)
            s->ops->pong(s, wc, data, len);
    } else {
        unsigned code;
        const char *reason;
        size_t rlen;
        ws_close_payload_parse(data, len, &code, &reason, &rlen);
        if (wc->state == WS_OPEN) {
            /* Echo the code (1000 for a close without one), then tell the
             * application. */
            wc->state = WS_CLOSING;
            write_close(c, code == WS_CLOSE_NO_STATUS ? WS_CLOSE_NORMAL : code, "", 0);
        }
        notify_close(wc, code, reason, rlen);
        conn_finish(c, LIM_WS_CLOSE_TIMEOUT);
    }
    return !(c->flags & (CONN_CLOSED | CONN_FINISHING));
}

static const struct ws_rx_events rx_events = { on_message, on_control };

static size_t ws_on_read(struct conn *c, char *data, size_t n)
{
    struct ws_conn *wc = c->pdata;
    struct ws_rx_error err;
    uint64_t frames = wc->rx.frames;
    ssize_t r = ws_rx_feed(&wc->rx, data, n, &rx_events, wc, &err);
    /* Idle is measured in complete frames: bytes trickled into one that
     * never ends do not count. */
    if (wc->rx.frames != frames)
        wc->last_rx = ev_now(c->w->loop);
    if (r < 0) {
        if (err.busy)
            membudget_log_refusal(c->w->mem, (unsigned long long)c->id, "WebSocket 1008");
        ws_fail(wc, err.code, err.reason);
        return n;
    }
    return (size_t)r;
}

static void ws_on_eof(struct conn *c)
{
    struct ws_conn *wc = c->pdata;
    notify_close(wc, WS_CLOSE_ABNORMAL, "", 0);
    conn_close(c);
}

static void ws_on_sweep(struct conn *c, ev_tstamp now)
{
    struct ws_conn *wc = c->pdata;
    if (wc->state == WS_CLOSING) {
        if (now >= c->deadline) {
            log_debug("conn %llu: close not answered in time", (unsigned long long)c->id);
            notify_close(wc, WS_CLOSE_ABNORMAL, "", 0);
            conn_close(c);
        }
        return;
    }
    double idle = wc->svc->conf.idle_timeout;
    if (idle > 0 && now - wc->last_rx >= idle) {
        wc->last_rx = now;
        if (!wc->svc->ops->idle(wc->svc, wc))
            ws_close(wc, WS_CLOSE_GOING_AWAY, "idle timeout", 12);
    }
}

static void ws_on_close(struct conn *c)
{
    struct ws_conn *wc = c->pdata;
    struct svc *s = wc->svc;
    notify_close(wc, WS_CLOSE_ABNORMAL, "", 0);
    pubsub_leave_all(wc);
    if (wc->svc_prev)
        wc->svc_prev->svc_next = wc->svc_next;
    else
        s->conns = wc->svc_next;
    if (wc->svc_next)
        wc->svc_next->svc_prev = wc->svc_prev;
    s->nconns--;
    ws_rx_free(&wc->rx);
    if (wc->pmd) {
        pmd_free(&wc->pmd->inf, &wc->pmd->def);
        free(wc->pmd);
    }
    free(wc->head);
    free(wc->protocol);
    free(wc);
    svc_unref(s);
}

static const struct conn_proto ws_proto = {
    .on_read = ws_on_read,
    .on_eof = ws_on_eof,
    .on_sweep = ws_on_sweep,
    .on_close = ws_on_close,
};

/* ---- the upgrade ---- */

static bool origin_allowed(const struct svc_conf *conf, const struct http_request *req)
{
    if (conf->any_origin)
        return true;
    const struct http_header *h = http_find_header(req->headers, req->nheaders, "origin");
    if (!h)
        return false;
    for (size_t i = 0; i < conf->norigins; i++) {
        if (strlen(conf->origins[i]) == h->value_len &&
            strncasecmp(conf->origins[i], h->value, h->value_len) == 0)
            return true;
    }
    return false;
}

/* Negotiates permessage-deflate; writes the response value into resp. */
static struct ws_pmd *negotiate_pmd(const struct svc_conf *conf, const struct http_request *req,
                                    struct pmd_pool *pool, char *resp, size_t cap)
{
    if (!conf->pmd.enabled)
        return NULL;
    const char *vals[LIM_HTTP_HEADERS_MAX];
    size_t lens[LIM_HTTP_HEADERS_MAX];
    size_t n = http_header_values(req->headers, req->nheaders, "sec-websocket-extensions", vals,
                                  lens, LIM_HTTP_HEADERS_MAX);
    struct pmd_params p;
    if (!n || !pmd_server_negotiate(&conf->pmd, vals, lens, n, &p, resp, cap))
        return NULL;
    struct ws_pmd *z = xcalloc(1, sizeof *z);
    pmd_init(&p, &conf->pmd, true, pool, &z->inf, &z->def);
    z->threshold = conf->pmd.threshold;
    return z;
}

/* True for the handshake's own fields, which mean nothing after it. */
static bool handshake_field(const struct http_header *h)
{
    static const char *const names[] = { "upgrade", "connection", "sec-websocket-key",
                                         "sec-websocket-version", "sec-websocket-extensions" };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        if (strlen(names[i]) == h->name_len && strncasecmp(names[i], h->name, h->name_len) == 0)
            return true;
    }
    return false;
}

/* The upgrade request as kept for caller.path/query/headers: the request
 * line and every field but the handshake's own (an idle connection keeps
 * these bytes for its whole life, so they are kept lean). */
static char *keep_head(const struct http_request *req, uint32_t *len)
{
    struct buf b = { 0 };
    buf_append(&b, req->method, req->method_len);
    buf_append(&b, " ", 1);
    buf_append(&b, req->target, req->target_len);
    buf_printf(&b, " HTTP/1.%d\r\n", req->minor_version);
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (handshake_field(h))
            continue;
        buf_append(&b, h->name, h->name_len);
        buf_append(&b, ": ", 2);
        buf_append(&b, h->value, h->value_len);
        buf_append(&b, "\r\n", 2);
    }
    buf_append(&b, "\r\n", 2);
    *len = (uint32_t)b.len;
    /* Exactly as long as it is, not the buffer's rounded-up capacity. */
    char *out = xmalloc(b.len);
    memcpy(out, b.data, b.len);
    buf_free(&b);
    return out;
}

bool ws_conn_accept(struct conn *c, struct svc *svc, const struct http_exchange *ex,
                    struct pmd_pool *pool)
{
    const struct http_request *req = ex->req;
    const char *why;
    int status = ws_check_upgrade(req, &why);
    if (status) {
        http_respond_error(c, status, why, status == 426 ? "Sec-WebSocket-Version: 13\r\n" : NULL);
        return false;
    }
    if (!origin_allowed(&svc->conf, req)) {
        http_respond_error(c, 403, "origin not allowed", NULL);
        return false;
    }
    int app_ref = NO_REF;
    struct http_reply gate = { .status = 403 };
    if (svc->ops->upgrade) {
        bool ok = svc->ops->upgrade(svc, ex, &gate, &app_ref);
        if (conn_is_closed(c) || !ok) {
            if (!conn_is_closed(c)) {
                http_respond(c, gate.status, gate.headers.data, gate.headers.len, gate.body.data,
                             gate.body.len, false, true);
                conn_finish(c, LIM_HTTP_LINGER);
            }
            buf_free(&gate.headers);
            buf_free(&gate.body);
            return false;
        }
    }

    int proto = ws_select_protocol(req, svc->conf.protocols, svc->conf.nprotocols);
    char ext[256];
    struct ws_pmd *z = negotiate_pmd(&svc->conf, req, pool, ext, sizeof ext);

    struct ws_conn *wc = xcalloc(1, sizeof *wc);
    wc->c = c;
    wc->svc = svc;
    svc_ref(svc);
    wc->app_ref = app_ref;
    wc->pmd = z;
    wc->protocol = proto >= 0 ? xstrdup(svc->conf.protocols[proto]) : NULL;
    wc->head = keep_head(req, &wc->head_len);
    wc->rx.max_message = svc->conf.max_message;
    wc->rx.inf = z ? &z->inf : NULL;
    /* Partial messages and inflate streams count against the process's
     * budget for unfinished work. */
    wc->rx.mem = c->w->mem;
    if (z)
        z->inf.mem = c->w->mem;
    wc->last_rx = ev_now(c->w->loop);
    wc->svc_next = svc->conns;
    if (svc->conns)
        svc->conns->svc_prev = wc;
    svc->conns = wc;
    svc->nconns++;

    struct buf out = { 0 };
    ws_write_accept(&out, req, wc->protocol, z ? ext : NULL, gate.headers.data, gate.headers.len);
    conn_write(c, out.data, out.len);
    buf_free(&out);
    buf_free(&gate.headers);
    buf_free(&gate.body);
    conn_set_proto(c, &ws_proto, wc);
    svc->ops->open(svc, wc);
    return true;
}

/* ---- broadcast ---- */

static struct shbuf *build_frame(uint8_t opcode, uint8_t rsv, const char *p, size_t n)
{
    size_t hl = ws_frame_header_len(n, false);
    struct shbuf *b = shbuf_new(hl + n);
    ws_frame_header_write((uint8_t *)b->data, true, rsv, opcode, n, NULL);
    memcpy(b->data + hl, p, n);
    return b;
}

void ws_bcast_init(struct ws_bcast *b, uint8_t opcode, const char *data, size_t len)
{
    memset(b, 0, sizeof *b);
    b->opcode = opcode;
    b->data = data;
    b->len = len;
}

/* Finds or builds the compressed frame shared by receivers without context
 * takeover that use z's settings. *frame is NULL when compressing does not
 * pay. Returns false when the cache of settings is full. */
static bool shared_deflated(struct ws_bcast *b, struct ws_pmd *z, struct shbuf **frame)
{
    for (unsigned i = 0; i < b->nz; i++) {
        if (b->z[i].window_bits == z->def.window_bits && b->z[i].level == z->def.level) {
            *frame = b->z[i].frame;
            return true;
        }
    }
    if (b->nz == sizeof b->z / sizeof b->z[0])
        return false;
    struct buf *zb = &z->def.pool->scratch;
    zb->len = 0;
    pmd_deflate(&z->def, b->data, b->len, zb);
    *frame = zb->len < b->len ? build_frame(b->opcode, WS_RSV1, zb->data, zb->len) : NULL;
    b->z[b->nz].window_bits = z->def.window_bits;
    b->z[b->nz].level = (uint8_t)z->def.level;
    b->z[b->nz].frame = *frame;
    b->nz++;
    return true;
}

bool ws_bcast_send(struct ws_bcast *b, struct ws_conn *wc)
{
    if (wc->state != WS_OPEN || conn_is_closed(wc->c) || over_backpressure(wc))
        return false;
    struct ws_pmd *z = wc->pmd;
    if (z && b->len >= z->threshold) {
        struct shbuf *f;
        /* With context takeover each receiver's stream is its own. */
        if (!z->def.reset_each_message || !shared_deflated(b, z, &f))
            return ws_send(wc, b->opcode, b->data, b->len);
        if (f) {
            conn_write_shared(wc->c, f);
            return true;
        }
    }
    if (!b->plain)
        b->plain = build_frame(b->opcode, 0, b->data, b->len);
    conn_write_shared(wc->c, b->plain);
    return true;
}

void ws_bcast_done(struct ws_bcast *b)
{
    if (b->plain)
        shbuf_unref(b->plain);
    for (unsigned i = 0; i < b->nz; i++) {
        if (b->z[i].frame)
            shbuf_unref(b->z[i].frame);
    }
}
