/*
 * A WebSocket connection's life after the upgrade: sending frames, the
 * closing handshake, and the conn_proto that reads its frames and hands
 * messages to the service.
 */
#include "ws_conn.h"

#include <stdlib.h>
#include <string.h>

#include "../transport/conn.h"
#include "../transport/worker.h"
#include "../util/limits.h"
#include "../util/connid.h"
#include "../util/log.h"
#include "../util/membudget.h"
#include "../util/metrics.h"
#include "../util/pathcount.h"
#include "../util/traffic_log.h"
#include "http_parse.h"

uint64_t ws_id(const struct ws_conn *wc)
{
    return wc->c->id;
}

bool ws_secure(const struct ws_conn *wc)
{
    return conn_is_secure(wc->c);
}

struct ws_extra *ws_extra(struct ws_conn *wc)
{
    if (!wc->x)
        wc->x = xcalloc(1, sizeof *wc->x);
    return wc->x;
}

size_t ws_buffered(const struct ws_conn *wc)
{
    return conn_is_closed(wc->c) ? 0 : conn_buffered(wc->c);
}

static void write_frame(struct conn *c, uint8_t opcode, uint8_t rsv, const char *p, size_t n)
{
    uint8_t head[WS_HEADER_MAX];
    size_t hl = ws_frame_header_write(head, true, rsv, opcode, n, NULL);
    conn_write_pair(c, head, hl, p, n);
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

/* The path of the kept request line, raw (escapes kept), without the
 * query; NULL when there is none. */
static const char *raw_path(const struct ws_conn *wc, size_t *len)
{
    *len = 0;
    const char *t = memchr(wc->head, ' ', wc->head_len);
    if (!t)
        return NULL;
    t++;
    const char *end = wc->head + wc->head_len;  /* not NUL-terminated */
    size_t n = 0;
    while (t + n < end && t[n] != '?' && t[n] != ' ')
        n++;
    *len = n;
    return t;
}

size_t ws_opened_path(const struct ws_conn *wc, char *out, size_t cap)
{
    size_t n;
    const char *t = raw_path(wc, &n);
    if (!t)
        return 0;
    if (n >= cap)
        n = cap - 1;
    memcpy(out, t, n);
    ssize_t dl = http_url_decode(out, n, false);
    return dl < 0 ? n : (size_t)dl;
}

void ws_count_open(struct ws_conn *wc, long delta)
{
    const char *path = wc->svc->path;
    size_t pl = strlen(path);
    pathcount_add(path, pl, delta);
    if (strchr(path, ':')) {
        /* A service with parameters counts each concrete path too. */
        char key[LIM_HTTP_HEAD_MAX + 256];
        if (pl + 1 >= sizeof key)
            return;
        memcpy(key, path, pl);
        key[pl] = '\0';
        size_t n = ws_opened_path(wc, key + pl + 1, sizeof key - pl - 1);
        pathcount_add(key, pl + 1 + n, delta);
    }
}

/* The connection stops taking messages: it leaves the open set and the
 * counts at once, before its close has even been sent. */
static void set_closing(struct ws_conn *wc)
{
    if (wc->state != WS_OPEN)
        return;
    wc->state = WS_CLOSING;
    connid_close(wc->c->id);
    ws_count_open(wc, -1);
}

static void notify_close(struct ws_conn *wc, unsigned code, const char *reason, size_t len)
{
    if (wc->notified)
        return;
    wc->notified = true;
    struct ws_traffic *f = ws_traffic(wc);
    if (f)
        f->close_code = (uint16_t)code;
    metrics_close(wc->mc, code);
    set_closing(wc);
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
        set_closing(wc);
        write_close(c, code, reason, strlen(reason));
    }
    notify_close(wc, code, reason, strlen(reason));
    conn_finish(c, wc->svc->conf.close_timeout);
}

bool ws_close(struct ws_conn *wc, unsigned code, const char *reason, size_t len)
{
    if (wc->state != WS_OPEN || conn_is_closed(wc->c))
        return false;
    set_closing(wc);
    write_close(wc->c, code, reason, len);
    wc->c->deadline = worker_now(wc->c->w) + wc->svc->conf.close_timeout;
    return true;
}

/* Past the backpressure limit the client is not keeping up: close it. */
static bool over_backpressure(struct ws_conn *wc)
{
    if (conn_buffered(wc->c) <= wc->svc->conf.max_backpressure)
        return false;
    log_info("conn %llu: %zu bytes queued, over max_backpressure: closing 1008",
             (unsigned long long)wc->c->id, conn_buffered(wc->c));
    metrics_backpressure_close(wc->mc);
    notify_close(wc, WS_CLOSE_POLICY, "backpressure limit exceeded", 27);
    write_close(wc->c, WS_CLOSE_POLICY, "backpressure limit exceeded", 27);
    conn_finish(wc->c, wc->svc->conf.close_timeout);
    return true;
}

bool ws_can_send(struct ws_conn *wc)
{
    return wc->state == WS_OPEN && !conn_is_closed(wc->c) && !over_backpressure(wc);
}

void ws_count_sent(struct ws_conn *wc, uint8_t opcode, size_t len)
{
    metrics_message_out(wc->mc, opcode == WS_OP_BINARY, len);
    struct ws_traffic *f = ws_traffic(wc);
    if (f) {
        f->msgs_out++;
        f->bytes_out += len;
    }
}

bool ws_send(struct ws_conn *wc, uint8_t opcode, const char *data, size_t len)
{
    if (!ws_can_send(wc))
        return false;
    ws_count_sent(wc, opcode, len);
    struct ws_pmd *z = ws_pmd_of(wc);
    if (z && len >= z->threshold) {
        /* The payload is built in the worker's scratch buffer before its
         * frame header is known. */
        struct buf *zb = &z->def.pool->scratch;
        zb->len = 0;
        pmd_deflate(&z->def, data, len, zb);
        metrics_deflated(wc->mc, len, zb->len);
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
    if (len > WS_CONTROL_MAX || !ws_can_send(wc))
        return false;
    write_frame(wc->c, opcode, 0, data, len);
    return true;
}

/* ---- receiving ---- */

static bool on_message(void *ctx, uint8_t opcode, char *data, size_t len)
{
    struct ws_conn *wc = ctx;
    if (wc->state == WS_OPEN) {
        metrics_message_in(wc->mc, opcode == WS_OP_BINARY, len);
        struct ws_traffic *f = ws_traffic(wc);
        if (f) {
            f->msgs_in++;
            f->bytes_in += len;
        }
        if (wc->rx.msg_deflated)
            metrics_inflated(wc->mc, ws_rx_msg_zlen(&wc->rx), len);
        wc->svc->ops->message(wc->svc, wc, opcode, data, len);
    }
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
            set_closing(wc);
            write_close(c, code == WS_CLOSE_NO_STATUS ? WS_CLOSE_NORMAL : code, "", 0);
        }
        notify_close(wc, code, reason, rlen);
        conn_finish(c, wc->svc->conf.close_timeout);
    }
    return !(c->flags & (CONN_CLOSED | CONN_FINISHING));
}

static const struct ws_rx_events rx_events = { on_message, on_control };

static size_t ws_on_read(struct conn *c, char *data, size_t n)
{
    struct ws_conn *wc = c->pdata;
    struct ws_rx_error err;
    uint32_t frames = wc->rx.frames;
    ssize_t r = ws_rx_feed(&wc->rx, c->w->mem, data, n, &rx_events, wc, &err);
    /* Idle is measured in complete frames: bytes trickled into one that
     * never ends do not count. */
    if (wc->rx.frames != frames)
        wc->last_rx = worker_now(c->w);
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

/* The traffic line of a connection opened or ended: only when it has its
 * figures (ws_conn_start makes them while traffic lines are wanted). */
static void traffic_line(struct ws_conn *wc, enum traffic_event ev)
{
    struct conn *c = wc->c;
    struct ws_traffic *f = ws_traffic(wc);
    if (!f)
        return;
    size_t n;
    const char *t = raw_path(wc, &n);
    struct traffic tr = {
        .event = ev, .worker = log_worker_shown(), .conn = c->id, .remote = f->remote,
        .path = t, .path_len = n, .secure = conn_is_secure(c), .protocol = ws_protocol(wc),
        .code = f->close_code, .msgs_in = f->msgs_in, .bytes_in = f->bytes_in,
        .msgs_out = f->msgs_out, .bytes_out = f->bytes_out,
        .us = ev == TRAFFIC_WS_CLOSE ? (uint64_t)((worker_now(c->w) - f->opened) * 1e6) : 0,
    };
    traffic_log_write(c->w->traffic, &tr);
}

static void ws_on_close(struct conn *c)
{
    struct ws_conn *wc = c->pdata;
    struct svc *s = wc->svc;
    notify_close(wc, WS_CLOSE_ABNORMAL, "", 0);
    traffic_line(wc, TRAFFIC_WS_CLOSE);
    /* Its last count: the series may be retired once it is seen. */
    metrics_conn_closed(wc->mc);
    if (wc->svc_prev)
        wc->svc_prev->svc_next = wc->svc_next;
    else
        s->conns = wc->svc_next;
    if (wc->svc_next)
        wc->svc_next->svc_prev = wc->svc_prev;
    s->nconns--;
    ws_rx_free(&wc->rx, c->w->mem);
    struct ws_pmd *z = ws_pmd_of(wc);
    if (z) {
        pmd_free(&z->inf, &z->def);
        free(z);
    }
    if (wc->x) {
        /* Its memberships are gone already: the service's close left
         * them (pubsub_leave_all). */
        free(wc->x->protocol);
        free(wc->x->tr);
        free(wc->x);
    }
    free(wc);
    svc_unref(s);
}

static const struct conn_proto ws_proto = {
    .on_read = ws_on_read,
    .on_eof = ws_on_eof,
    .on_sweep = ws_on_sweep,
    .on_close = ws_on_close,
};

void ws_conn_start(struct ws_conn *wc)
{
    struct conn *c = wc->c;
    struct svc *svc = wc->svc;
    svc_ref(svc);
    wc->rx.max_message = svc->conf.max_message;
    /* Partial messages (ws_on_read passes the budget to ws_rx_feed) and
     * inflate streams count against the process's budget for unfinished
     * work. */
    if (wc->rx.inf)
        wc->rx.inf->mem = c->w->mem;
    wc->last_rx = worker_now(c->w);
    wc->svc_next = svc->conns;
    if (svc->conns)
        svc->conns->svc_prev = wc;
    svc->conns = wc;
    svc->nconns++;
    conn_set_proto(c, &ws_proto, wc);
    connid_open(c->id, wc);
    ws_count_open(wc, +1);
    wc->mc = svc->metrics;
    if (traffic_log_wanted(c->w->traffic)) {
        /* The peer's address is taken now: getpeername fails once the
         * peer is gone, and the close line needs it too. */
        struct ws_traffic *f = xcalloc(1, sizeof *f);
        ws_extra(wc)->tr = f;
        conn_remote(c, f->remote, sizeof f->remote);
        f->opened = worker_now(c->w);
    }
    metrics_conn_opened(wc->mc);
    traffic_line(wc, TRAFFIC_WS_OPEN);
}
