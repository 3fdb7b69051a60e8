#include "ws_client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../util/clock.h"
#include "../util/crypto.h"
#include "../util/limits.h"
#include "../util/sslio.h"
#include "http_parse.h"
#include "ws_handshake.h"

bool wsc_wait(int fd, bool write, double timeout)
{
    double end = clock_seconds() + timeout;
    for (;;) {
        double left = end - clock_seconds();
        if (left < 0)
            left = 0;
        struct pollfd p = { fd, write ? POLLOUT : POLLIN, 0 };
        int r = poll(&p, 1, (int)(left * 1000 + 0.999));
        if (r > 0)
            return true;
        if (r == 0)
            return false;
        if (errno != EINTR)
            return true;        /* let the read or write report the error */
    }
}

static long plain_read(void *ctx, void *p, size_t n)
{
    return read((int)(intptr_t)ctx, p, n);
}

static long plain_write(void *ctx, const void *p, size_t n)
{
    return send((int)(intptr_t)ctx, p, n, MSG_NOSIGNAL);
}

static bool plain_pending(void *ctx)
{
    (void)ctx;
    return false;
}

static void plain_free(void *ctx)
{
    (void)ctx;
}

const struct wsc_io wsc_plain_io = { plain_read, plain_write, plain_pending, plain_free };

/* Binds fd to the source address so->bind (port 0: any), for a socket of
 * family `family`. Returns false with a message in err. */
static bool bind_source(int fd, int family, const char *addr, char *err, size_t errcap)
{
    struct addrinfo hints = { .ai_family = family, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICHOST | AI_PASSIVE };
    struct addrinfo *res;
    int rc = getaddrinfo(addr, NULL, &hints, &res);
    if (rc != 0) {
        snprintf(err, errcap, "bad source address %s: %s", addr, gai_strerror(rc));
        return false;
    }
    bool ok = bind(fd, res->ai_addr, res->ai_addrlen) == 0;
    if (!ok)
        snprintf(err, errcap, "cannot bind to %s: %s", addr, strerror(errno));
    freeaddrinfo(res);
    return ok;
}

int wsc_tcp_connect(const char *host, unsigned port, double timeout,
                    const struct wsc_sock_opts *so, char *err, size_t errcap)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_NUMERICSERV };
    struct addrinfo *res, *ai;
    char ps[8];
    snprintf(ps, sizeof ps, "%u", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc != 0) {
        snprintf(err, errcap, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    snprintf(err, errcap, "cannot connect to %s:%u", host, port);
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        if (so && so->rcvbuf > 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &so->rcvbuf, sizeof so->rcvbuf);
        if (so && so->bind && !bind_source(fd, ai->ai_family, so->bind, err, errcap)) {
            close(fd);
            fd = -1;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        if (errno == EINPROGRESS) {
            if (wsc_wait(fd, true, timeout)) {
                int e = 0;
                socklen_t el = sizeof e;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el);
                if (e == 0)
                    break;
                snprintf(err, errcap, "cannot connect to %s:%u: %s", host, port, strerror(e));
            } else {
                snprintf(err, errcap, "timeout connecting to %s:%u", host, port);
            }
        } else {
            snprintf(err, errcap, "cannot connect to %s:%u: %s", host, port, strerror(errno));
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

bool wsc_parse_url(const char *url, bool *secure, char *host, size_t hostcap, unsigned *port,
                   char *target, size_t targetcap)
{
    const char *p;
    if (strncmp(url, "ws://", 5) == 0 || strncmp(url, "http://", 7) == 0) {
        *secure = false;
        p = url + (url[0] == 'w' ? 5 : 7);
    } else if (strncmp(url, "wss://", 6) == 0 || strncmp(url, "https://", 8) == 0) {
        *secure = true;
        p = url + (url[0] == 'w' ? 6 : 8);
    } else {
        return false;
    }
    const char *hs = p, *he;
    if (*p == '[') {
        hs = p + 1;
        he = strchr(hs, ']');
        if (!he)
            return false;
        p = he + 1;
    } else {
        while (*p && *p != ':' && *p != '/' && *p != '?')
            p++;
        he = p;
    }
    if (he == hs || (size_t)(he - hs) >= hostcap)
        return false;
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = '\0';
    *port = *secure ? 443 : 80;
    if (*p == ':') {
        char *end;
        long v = strtol(p + 1, &end, 10);
        if (end == p + 1 || v <= 0 || v > 65535)
            return false;
        *port = (unsigned)v;
        p = end;
    }
    if (*p && *p != '/' && *p != '?')
        return false;
    int n = snprintf(target, targetcap, "%s%s", *p == '/' ? "" : "/", p);
    return n > 0 && (size_t)n < targetcap;
}

/* Writes everything within the timeout. */
static bool write_all(struct ws_client *c, const char *p, size_t n, double timeout)
{
    double end = clock_seconds() + timeout;
    while (n) {
        long w = c->io->write(c->ioctx, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            double left = end - clock_seconds();
            if (left <= 0 || !wsc_wait(c->fd, true, left)) {
                snprintf(c->error, sizeof c->error, "timeout while sending");
                return false;
            }
            continue;
        }
        int e = w < 0 ? errno : EPIPE;
        /* A TLS peer that refused us said why in an alert, waiting unread. */
        char scrap[512];
        if (c->io->read(c->ioctx, scrap, sizeof scrap) < 0 && errno == EPROTO)
            e = EPROTO;
        snprintf(c->error, sizeof c->error, "send failed: %s",
                 e == EPIPE && w == 0 ? "connection closed" : sslio_strerror(e));
        return false;
    }
    return true;
}

/* Reads what is available into c->in, waiting up to timeout. Returns 1 when
 * bytes arrived, 0 on timeout, -1 at EOF or error. A readable socket may
 * yield nothing (TLS records without application data): wait again. */
static int read_some(struct ws_client *c, double timeout)
{
    double end = clock_seconds() + timeout;
    for (;;) {
        double left = end - clock_seconds();
        if (!c->io->pending(c->ioctx) && (left <= 0 || !wsc_wait(c->fd, false, left)))
            return 0;
        char *w = buf_reserve(&c->in, 65536);
        long r = c->io->read(c->ioctx, w, 65536);
        if (r > 0) {
            c->in.len += (size_t)r;
            c->wire_bytes += (uint64_t)r;
            return 1;
        }
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        c->eof = true;
        snprintf(c->error, sizeof c->error, "%s",
                 r == 0 ? "connection closed by the server" : sslio_strerror(errno));
        return -1;
    }
}

/* The server answered the upgrade with another status: the error says
 * which, and what its body says (the first line or so of it, read within
 * the handshake's time; a refusal's body is a short reason). */
static void refused(struct ws_client *c, const struct http_response *res, size_t hl, double end)
{
    const struct http_header *h = http_find_header(res->headers, res->nheaders, "content-length");
    size_t want = 0;
    for (size_t i = 0; h && i < h->value_len && h->value[i] >= '0' && h->value[i] <= '9'; i++)
        want = want * 10 + (size_t)(h->value[i] - '0');
    if (want > LIM_CLIENT_REFUSAL_BODY)
        want = LIM_CLIENT_REFUSAL_BODY;
    char reason[64];
    snprintf(reason, sizeof reason, "%.*s", (int)res->reason_len, res->reason);
    while (c->in.len - hl < want && clock_seconds() < end &&
           read_some(c, end - clock_seconds()) > 0)
        ;
    size_t bl = c->in.len - hl < want ? c->in.len - hl : want;
    const char *body = c->in.data + hl;
    while (bl && (body[bl - 1] == '\n' || body[bl - 1] == '\r' || body[bl - 1] == ' '))
        bl--;
    int n = snprintf(c->error, sizeof c->error, "the server refused the upgrade: HTTP %d %s",
                     res->status, reason);
    if (bl && n > 0 && (size_t)n < sizeof c->error)
        snprintf(c->error + n, sizeof c->error - (size_t)n, ": %.*s", (int)bl, body);
}

bool wsc_handshake(struct ws_client *c, const char *hostheader, const char *target,
                   const struct wsc_options *o)
{
    if (!c->io) {
        c->io = &wsc_plain_io;
        c->ioctx = (void *)(intptr_t)c->fd;
    }
    c->auto_pong = o->auto_pong;
    char key[WS_KEY_LEN], offer[160];
    crypto_ws_key(key);
    if (o->compression)
        pmd_client_offer(&o->offer, offer, sizeof offer);
    struct buf req = { 0 };
    ws_write_client_request(&req, hostheader, target, key, o->protocols, o->nprotocols,
                            o->headers, o->compression ? offer : NULL);
    bool ok = write_all(c, req.data, req.len, o->timeout);
    buf_free(&req);
    if (!ok)
        return false;

    double end = clock_seconds() + o->timeout;
    struct http_response res;
    int hl;
    for (;;) {
        hl = http_parse_response(c->in.data ? c->in.data : "", c->in.len, &res);
        if (hl != HTTP_PARTIAL)
            break;
        double left = end - clock_seconds();
        int r = left > 0 ? read_some(c, left) : 0;
        if (r == 0) {
            snprintf(c->error, sizeof c->error, "timeout waiting for the handshake response");
            return false;
        }
        if (r < 0)
            return false;
    }
    if (hl < 0) {
        snprintf(c->error, sizeof c->error, "malformed handshake response");
        return false;
    }
    c->status = res.status;
    buf_append(&c->head, c->in.data, (size_t)hl);
    if (res.status != 101) {
        refused(c, &res, (size_t)hl, end);
        return false;
    }
    const char *why = ws_check_accept(&res, key, o->protocols, o->nprotocols);
    if (why) {
        snprintf(c->error, sizeof c->error, "%s (HTTP %d %.*s)", why, res.status,
                 (int)res.reason_len, res.reason);
        return false;
    }
    const struct http_header *h =
        http_find_header(res.headers, res.nheaders, "sec-websocket-protocol");
    if (h)
        c->protocol = xstrndup(h->value, h->value_len);
    /* Every Sec-WebSocket-Extensions line counts: an extension we did not
     * offer may come on a line of its own. */
    const char *vals[LIM_HTTP_HEADERS_MAX];
    size_t lens[LIM_HTTP_HEADERS_MAX];
    size_t n = http_header_values(res.headers, res.nheaders, "sec-websocket-extensions", vals,
                                  lens, LIM_HTTP_HEADERS_MAX);
    struct buf all = { 0 };             /* every line, joined: for c->extensions */
    for (size_t i = 0; i < n; i++) {
        if (lens[i] && all.len)
            buf_append(&all, ", ", 2);
        buf_append(&all, vals[i], lens[i]);
    }
    buf_append(&all, "", 1);
    if (n) {
        struct pmd_params p;
        if (!o->compression || !pmd_client_accept(&o->offer, vals, lens, n, &p)) {
            snprintf(c->error, sizeof c->error, "the server answered with extensions not offered: %s",
                     all.data);
            buf_free(&all);
            return false;
        }
        struct pmd_conf conf = PMD_CONF_DEFAULT;
        pmd_init(&p, &conf, false, NULL, &c->inf, &c->def);
        c->pmd = true;
        c->extensions = xstrdup(all.data);
        c->rx.inf = &c->inf;
    }
    buf_free(&all);
    c->rx.client = true;
    c->rx.max_message = o->max_message;
    buf_consume(&c->in, (size_t)hl);
    c->wire_bytes = c->in.len;
    return true;
}

static void push_msg(struct ws_client *c, uint8_t kind, uint16_t code, const char *p, size_t n)
{
    if (c->qhead + c->qlen == c->qcap) {
        if (c->qhead) {
            memmove(c->q, c->q + c->qhead, c->qlen * sizeof *c->q);
            c->qhead = 0;
        } else {
            c->qcap = c->qcap ? c->qcap * 2 : 8;
            c->q = xrealloc(c->q, c->qcap * sizeof *c->q);
        }
    }
    struct wsc_msg *m = &c->q[c->qhead + c->qlen++];
    m->kind = kind;
    m->code = code;
    m->data = xmalloc(n + 1);
    if (n)
        memcpy(m->data, p, n);      /* an empty message may come with p == NULL */
    m->data[n] = '\0';
    m->len = n;
}

static bool on_message(void *ctx, uint8_t opcode, char *data, size_t len)
{
    struct ws_client *c = ctx;
    c->last_compressed = c->rx.msg_deflated;
    push_msg(c, opcode == WS_OP_TEXT ? WSC_TEXT : WSC_BINARY, 0, data, len);
    return true;
}

static bool on_control(void *ctx, uint8_t opcode, char *data, size_t len)
{
    struct ws_client *c = ctx;
    if (opcode == WS_OP_PING) {
        if (c->auto_pong && !c->close_sent)
            wsc_send_frame(c, true, 0, WS_OP_PONG, data, len, true, 5);
        push_msg(c, WSC_PING, 0, data, len);
    } else if (opcode == WS_OP_PONG) {
        push_msg(c, WSC_PONG, 0, data, len);
    } else {
        unsigned code;
        const char *reason;
        size_t rl;
        ws_close_payload_parse(data, len, &code, &reason, &rl);
        c->close_received = true;
        if (!c->close_sent)
            wsc_close(c, code == WS_CLOSE_NO_STATUS ? WS_CLOSE_NORMAL : code, "", 0, 5);
        push_msg(c, WSC_CLOSE, (uint16_t)code, reason, rl);
        return false;
    }
    return true;
}

static const struct ws_rx_events client_events = { on_message, on_control };

bool wsc_pump(struct ws_client *c)
{
    bool ready = c->io->pending(c->ioctx) || wsc_wait(c->fd, false, 0);
    if (!c->close_received && !c->eof && (!ready || read_some(c, 1) >= 0) && c->in.len) {
        struct ws_rx_error err;
        ssize_t used = ws_rx_feed(&c->rx, NULL, c->in.data, c->in.len, &client_events, c, &err);
        if (used < 0) {
            snprintf(c->error, sizeof c->error, "protocol error from the server: %s", err.reason);
            wsc_close(c, err.code, "", 0, 1);
            c->eof = true;
        } else {
            buf_consume(&c->in, (size_t)used);
        }
    }
    return !c->close_received && !c->eof;
}

int wsc_receive(struct ws_client *c, double timeout, struct wsc_msg *m)
{
    double end = clock_seconds() + timeout;
    for (;;) {
        if (c->qlen) {
            *m = c->q[c->qhead++];
            c->qlen--;
            if (!c->qlen)
                c->qhead = 0;
            return 1;
        }
        if (c->close_received || c->eof) {
            if (!c->error[0])
                snprintf(c->error, sizeof c->error, "closed");
            return -1;
        }
        if (c->in.len) {
            struct ws_rx_error err;
            ssize_t used = ws_rx_feed(&c->rx, NULL, c->in.data, c->in.len, &client_events, c, &err);
            if (used < 0) {
                snprintf(c->error, sizeof c->error, "protocol error from the server: %s",
                         err.reason);
                wsc_close(c, err.code, "", 0, 1);
                c->eof = true;
                return -1;
            }
            buf_consume(&c->in, (size_t)used);
            if (c->qlen)
                continue;
        }
        double left = end - clock_seconds();
        if (left < 0)
            left = 0;
        int r = read_some(c, left);
        if (r == 0 && clock_seconds() >= end)
            return 0;
        if (r < 0 && !c->in.len)
            return -1;
    }
}

bool wsc_send_frame(struct ws_client *c, bool fin, uint8_t rsv, uint8_t opcode,
                    const char *data, size_t len, bool mask, double timeout)
{
    uint8_t m[4];
    crypto_random(m, sizeof m);
    struct buf f = { 0 };
    char *w = buf_reserve(&f, WS_HEADER_MAX + len);
    size_t hl = ws_frame_header_write((uint8_t *)w, fin, rsv, opcode, len, mask ? m : NULL);
    if (mask)
        ws_mask((uint8_t *)w + hl, (const uint8_t *)data, len, m, 0);
    else if (len)
        memcpy(w + hl, data, len);
    f.len = hl + len;
    bool ok = write_all(c, f.data, f.len, timeout);
    buf_free(&f);
    return ok;
}

bool wsc_send(struct ws_client *c, uint8_t opcode, const char *data, size_t len, double timeout)
{
    if (c->close_sent) {
        snprintf(c->error, sizeof c->error, "closed");
        return false;
    }
    if (c->pmd && len > 0) {
        struct buf z = { 0 };
        pmd_deflate(&c->def, data, len, &z);
        bool ok = wsc_send_frame(c, true, WS_RSV1, opcode, z.data ? z.data : "", z.len, true,
                                 timeout);
        buf_free(&z);
        return ok;
    }
    return wsc_send_frame(c, true, 0, opcode, data, len, true, timeout);
}

bool wsc_send_raw(struct ws_client *c, const char *data, size_t len, double timeout)
{
    return write_all(c, data, len, timeout);
}

bool wsc_close(struct ws_client *c, unsigned code, const char *reason, size_t len,
               double timeout)
{
    if (c->close_sent)
        return true;
    c->close_sent = true;
    char payload[WS_CONTROL_MAX];
    size_t n = 0;
    if (code) {
        payload[0] = (char)(code >> 8);
        payload[1] = (char)code;
        if (len > WS_CONTROL_MAX - 2)
            len = WS_CONTROL_MAX - 2;
        memcpy(payload + 2, reason, len);
        n = len + 2;
    }
    return wsc_send_frame(c, true, 0, WS_OP_CLOSE, payload, n, true, timeout);
}

void wsc_free(struct ws_client *c)
{
    if (c->io)
        c->io->free(c->ioctx);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    for (size_t i = 0; i < c->qlen; i++)
        free(c->q[c->qhead + i].data);
    free(c->q);
    c->q = NULL;
    c->qlen = c->qhead = c->qcap = 0;
    buf_free(&c->in);
    buf_free(&c->head);
    ws_rx_free(&c->rx, NULL);
    if (c->pmd)
        pmd_free(&c->inf, &c->def);
    c->pmd = false;
    free(c->protocol);
    free(c->extensions);
    c->protocol = c->extensions = NULL;
}
