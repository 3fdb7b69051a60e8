/*
 * wsl_client: wsload's client connections. See wsl_client.h.
 */
#include "wsl_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wsframe.h"
#include "wsl_tls.h"

/* The shared receive buffer: big enough that one read takes what 100
 * connections' worth of small echoes or a few 16 KiB frames amount to. */
#define RBUF_CAP (256 * 1024)
/* Bytes carried over between reads: at most one partial frame plus the
 * rest of the read it arrived in. */
#define IN_MAX (WC_MESSAGE_MAX + WSF_HEADER_MAX + RBUF_CAP)
/* Buffers bigger than this are released when they empty, so 10 000 idle
 * connections do not keep the memory of one past big message each. */
#define BUF_KEEP (64 * 1024)

#define container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

static void conn_end(struct wc_conn *c, const char *err);

/* ---- transports ---------------------------------------------------------- */

/* What a transport's read and write return besides a byte count. */
#define IO_EOF 0
#define IO_AGAIN (-1)           /* nothing now: wait for c->rd_ev */
#define IO_ERROR (-2)           /* the connection is dead: *err says why */

/*
 * How a pool's bytes move, chosen once per pool so that nothing above
 * asks whether a connection is TLS.
 *   start  after connect(): 0 ready for the upgrade, EV_READ or EV_WRITE
 *          to wait for, -1 failed (*err)
 *   read   up to n bytes into p: the count, IO_EOF, IO_AGAIN or IO_ERROR;
 *          *more when bytes are left that readiness will not announce
 *   write  p[0..n): the bytes written, fewer when blocked (wait for
 *          c->wr_ev, then call again with the rest), or IO_ERROR
 *   end    releases what start made; the fd is the pool's to close
 */
struct wc_transport {
    int (*start)(struct wc_conn *c, const char **err);
    ssize_t (*read)(struct wc_conn *c, uint8_t *p, size_t n, bool *more,
                    const char **err);
    ssize_t (*write)(struct wc_conn *c, const uint8_t *p, size_t n,
                     const char **err);
    void (*end)(struct wc_conn *c);
};

static int plain_start(struct wc_conn *c, const char **err)
{
    (void)c;
    (void)err;
    return 0;
}

/* One read(2) per readiness event: the socket says when there is more. */
static ssize_t plain_read(struct wc_conn *c, uint8_t *p, size_t n, bool *more,
                          const char **err)
{
    ssize_t r = read(c->fd, p, n);

    *more = false;
    if (r >= 0)
        return r;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return IO_AGAIN;
    *err = strerror(errno);
    return IO_ERROR;
}

/* One send of everything: a partial send means the socket buffer is full,
 * so the rest waits for EV_WRITE instead of a second try that would only
 * return EAGAIN. */
static ssize_t plain_write(struct wc_conn *c, const uint8_t *p, size_t n,
                           const char **err)
{
    for (;;) {
        ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);
        if (r > 0)
            return r;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        *err = r < 0 ? strerror(errno) : "send returned 0";
        return IO_ERROR;
    }
}

static void plain_end(struct wc_conn *c)
{
    (void)c;
}

static const struct wc_transport plain_transport = {
    plain_start, plain_read, plain_write, plain_end,
};

static uint8_t want_ev(enum wt_want w)
{
    return w == WT_WANT_WRITE ? EV_WRITE : EV_READ;
}

/* The session is made on the first call and driven by the later ones. */
static int tls_start(struct wc_conn *c, const char **err)
{
    struct wc_pool *p = c->pool;
    enum wt_want want = WT_WANT_READ;

    if (!c->ssl && !(c->ssl = wt_new(p->tls_ctx, c->fd))) {
        *err = "TLS: no session (out of memory?)";
        return -1;
    }
    int r = wt_handshake(c->ssl, &want, err);
    if (r < 0)
        return -1;
    if (r == 0)
        return want_ev(want);
    if (!p->tls_desc)
        p->tls_desc = wt_describe(c->ssl);
    return 0;
}

/* After a read TLS may need writability first (it owes the server a
 * handshake message the full socket did not take): rd_ev says so. */
static ssize_t tls_read(struct wc_conn *c, uint8_t *p, size_t n, bool *more,
                        const char **err)
{
    enum wt_want want = WT_WANT_READ;
    ssize_t r = wt_read(c->ssl, p, n, &want, more, err);

    c->rd_ev = want_ev(want);
    return r == WT_AGAIN ? IO_AGAIN : r == WT_ERROR ? IO_ERROR : r;
}

/* A blocked write may wait for readability (a handshake message to take
 * in first): wr_ev says which. */
static ssize_t tls_write(struct wc_conn *c, const uint8_t *p, size_t n,
                         const char **err)
{
    enum wt_want want = WT_WANT_WRITE;
    ssize_t r = wt_write(c->ssl, p, n, &want, err);

    c->wr_ev = want_ev(want);
    return r == WT_ERROR ? IO_ERROR : r;
}

static void tls_end(struct wc_conn *c)
{
    wt_free(c->ssl);
    c->ssl = NULL;
}

static const struct wc_transport tls_transport = {
    tls_start, tls_read, tls_write, tls_end,
};

/* ---- buffers ---------------------------------------------------------- */

/* Makes room for `extra` more bytes, first by sliding live bytes to the
 * front, then by doubling; refuses to grow past max. */
static int buf_reserve(struct wc_buf *b, size_t extra, size_t max)
{
    if (b->len + extra <= b->cap)
        return 0;
    if (b->off > 0) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + extra <= b->cap)
            return 0;
    }
    size_t need = b->len + extra;
    if (need > max)
        return -1;
    size_t cap = b->cap ? b->cap : 512;
    while (cap < need)
        cap *= 2;
    uint8_t *np = realloc(b->p, cap);
    if (!np)
        return -1;
    b->p = np;
    b->cap = cap;
    return 0;
}

static int buf_append(struct wc_buf *b, const uint8_t *data, size_t n,
                      size_t max)
{
    if (buf_reserve(b, n, max) < 0)
        return -1;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

/* Empties b, giving back memory only when it grew big. */
static void buf_clear(struct wc_buf *b)
{
    b->off = b->len = 0;
    if (b->cap > BUF_KEEP) {
        free(b->p);
        b->p = NULL;
        b->cap = 0;
    }
}

/* ---- output ----------------------------------------------------------- */

/* xorshift64* seeded from RAND_bytes: mask keys must not be predictable by
 * a hostile page script (§10.3); a benchmark client only needs them to
 * vary, and a CSPRNG call per frame would cost more than the frame. */
static uint32_t pool_rand(struct wc_pool *p)
{
    uint64_t x = p->rng;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    p->rng = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

/* Arms the watcher for exactly these events, touching libev only when
 * they change. */
static void conn_watch(struct wc_conn *c, int events)
{
    if (ev_is_active(&c->io) && (c->io.events & (EV_READ | EV_WRITE)) == events)
        return;
    ev_io_stop(c->pool->loop, &c->io);
    ev_io_modify(&c->io, events);
    ev_io_start(c->pool->loop, &c->io);
}

/* An open connection waits for what reading needs, and for what blocked
 * output needs while there is some. */
static void conn_rearm(struct wc_conn *c)
{
    conn_watch(c, c->rd_ev | (c->out_blocked ? c->wr_ev : 0));
}

/* Everything queued, through the transport; what it could not take waits
 * for wr_ev. */
static void conn_write(struct wc_conn *c)
{
    struct wc_buf *b = &c->out;
    const char *err = NULL;

    if (b->off < b->len) {
        ssize_t n = c->pool->tr->write(c, b->p + b->off, b->len - b->off, &err);
        if (n < 0) {
            conn_end(c, err);
            return;
        }
        b->off += (size_t)n;
        if (b->off < b->len) {
            c->out_blocked = true;
            conn_rearm(c);
            return;
        }
    }
    b->off = b->len = 0;
    if (b->cap > BUF_KEEP)
        buf_clear(b);
    c->out_blocked = false;
    conn_rearm(c);
}

/* Puts c on the list the prepare watcher flushes before the loop blocks,
 * so every frame queued in one iteration leaves in one send. */
static void conn_mark_dirty(struct wc_conn *c)
{
    if (c->dirty)
        return;
    c->dirty = true;
    c->next_dirty = c->pool->dirty;
    c->pool->dirty = c;
}

/* Appends one masked frame, masking while copying. */
static void queue_frame(struct wc_conn *c, unsigned opcode, const uint8_t *p,
                        size_t n)
{
    size_t hl = wsf_header_len(n, true);
    uint32_t r = pool_rand(c->pool);
    uint8_t key[4];

    if (buf_reserve(&c->out, hl + n, WC_OUT_MAX) < 0) {
        conn_end(c, "output backlog too large (server not reading)");
        return;
    }
    memcpy(key, &r, 4);
    uint8_t *dst = c->out.p + c->out.len;
    size_t w = wsf_write(dst, true, opcode, n, key);
    wsf_mask_copy(dst + w, p, n, key);
    c->out.len += w + n;
    conn_mark_dirty(c);
}

/* Data and pongs only while open: after a close frame nothing may follow. */
void wc_send(struct wc_conn *c, unsigned opcode, const uint8_t *p, size_t n)
{
    if (c->state == WC_OPEN)
        queue_frame(c, opcode, p, n);
}

/* Skips a connection whose output is blocked: its callback writes. */
void wc_flush(struct wc_conn *c)
{
    if ((c->state == WC_OPEN || c->state == WC_CLOSING) && !c->out_blocked)
        conn_write(c);
}

/* Queues the close frame; the server's answer and its FIN end the connection. */
void wc_close(struct wc_conn *c, uint16_t code)
{
    uint8_t pl[2] = {(uint8_t)(code >> 8), (uint8_t)code};

    if (c->state != WC_OPEN)
        return;
    queue_frame(c, WSF_CLOSE, pl, sizeof pl);
    if (c->state == WC_OPEN) {
        c->state = WC_CLOSING;
        c->since = ev_now(c->pool->loop);
    }
}

/* ---- lifecycle ---------------------------------------------------------- */

/* The one way a connection ends: socket closed, watcher stopped (which
 * also drops a pending event), counters settled, the mode told, the slot
 * freed for the prepare phase to reuse. */
static void conn_end(struct wc_conn *c, const char *err)
{
    struct wc_pool *p = c->pool;
    bool was_open = c->state == WC_OPEN || c->state == WC_CLOSING;

    if (c->state == WC_CLOSED || c->state == WC_FREE)
        return;
    ev_io_stop(p->loop, &c->io);
    p->tr->end(c);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    if (c->state == WC_CONNECTING || c->state == WC_SECURING ||
        c->state == WC_UPGRADING) {
        p->connecting--;
        p->failed++;
    }
    if (err)
        p->last_err = err;
    p->live--;
    c->state = WC_CLOSED;
    buf_clear(&c->in);
    buf_clear(&c->msg);
    buf_clear(&c->out);
    c->msg_op = 0;
    p->ops->on_close(c, was_open, err);
    p->freelist[p->nfree++] = c->idx;
}

/* Sends the upgrade request with a fresh key, remembering the accept
 * value the answer must carry. */
static void conn_upgrade(struct wc_conn *c)
{
    struct wc_pool *p = c->pool;
    char key[WSHS_KEY_LEN + 1];
    char proto[320] = "";
    char req[1024];

    if (wshs_make_key(key) < 0 || wshs_accept(key, WSHS_KEY_LEN, c->accept) < 0) {
        conn_end(c, "OpenSSL failed to make a key");
        return;
    }
    if (p->cfg.protocol)
        snprintf(proto, sizeof proto, "Sec-WebSocket-Protocol: %s\r\n",
                 p->cfg.protocol);
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\n"
                     "Host: 127.0.0.1:%d\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "%s%s\r\n",
                     p->cfg.path, p->cfg.port, key, proto,
                     p->cfg.offer_deflate
                         ? "Sec-WebSocket-Extensions: permessage-deflate; "
                           "client_max_window_bits\r\n"
                         : "");
    c->state = WC_UPGRADING;
    if (n < 0 || (size_t)n >= sizeof req ||
        buf_append(&c->out, (const uint8_t *)req, (size_t)n, WC_OUT_MAX) < 0) {
        conn_end(c, "upgrade request too long");
        return;
    }
    conn_watch(c, EV_READ);
    conn_write(c);
}

/* The transport's own handshake, one step per readiness event; then the
 * upgrade. */
static void conn_secure(struct wc_conn *c)
{
    const char *err = NULL;
    int r = c->pool->tr->start(c, &err);

    if (r < 0)
        conn_end(c, err);
    else if (r > 0)
        conn_watch(c, r);
    else
        conn_upgrade(c);
}

/* connect() has finished: check how, then secure and upgrade. */
static void conn_connected(struct wc_conn *c)
{
    int soerr = 0;
    socklen_t sl = sizeof soerr;

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
        soerr = errno;
    if (soerr) {
        conn_end(c, strerror(soerr));
        return;
    }
    c->state = WC_SECURING;
    conn_secure(c);
}

/* Checks the 101 response head against §4.1's list for clients. Returns
 * NULL, or why the upgrade failed. The first few failures also print the
 * status line, since "no 101" alone does not say what went wrong. */
static const char *check_upgrade(struct wc_conn *c, const char *h, size_t n)
{
    static int shown;
    const char *v;
    size_t vl;

    if (n < 12 || memcmp(h, "HTTP/1.1 101", 12) != 0) {
        if (shown++ < 3) {
            const char *eol = memchr(h, '\r', n);
            fprintf(stderr, "wsload: upgrade refused: %.*s\n",
                    (int)(eol ? eol - h : (ptrdiff_t)(n < 80 ? n : 80)), h);
        }
        return "upgrade refused (no 101)";
    }
    v = wshs_header(h, n, "Upgrade", &vl);
    if (!v || !wshs_has_token(v, vl, "websocket"))
        return "101 without Upgrade: websocket";
    v = wshs_header(h, n, "Connection", &vl);
    if (!v || !wshs_has_token(v, vl, "upgrade"))
        return "101 without Connection: upgrade";
    v = wshs_header(h, n, "Sec-WebSocket-Accept", &vl);
    if (!v || vl != WSHS_ACCEPT_LEN || memcmp(v, c->accept, vl) != 0)
        return "wrong Sec-WebSocket-Accept";
    v = wshs_header(h, n, "Sec-WebSocket-Protocol", &vl);
    if (v && (!c->pool->cfg.protocol || strlen(c->pool->cfg.protocol) != vl ||
              memcmp(v, c->pool->cfg.protocol, vl) != 0))
        return "server selected a subprotocol that was not offered";
    v = wshs_header(h, n, "Sec-WebSocket-Extensions", &vl);
    if (v) {
        if (!c->pool->cfg.offer_deflate ||
            !wshs_has_token(v, vl, "permessage-deflate"))
            return "server accepted an extension that was not offered";
        c->deflate = true;
    }
    return NULL;
}

/* Hands a whole message to the mode; -1 if the mode's callback (or a send
 * inside it) ended the connection. */
static int deliver(struct wc_conn *c, unsigned op, const uint8_t *p, size_t n)
{
    c->pool->ops->on_message(c, op, p, n);
    return c->state == WC_CLOSED ? -1 : 0;
}

/* One complete frame. Control frames are answered here; data frames are
 * reassembled when fragmented (§5.4) — a control frame may sit between the
 * fragments, so the message buffer survives it. Returns -1 once the
 * connection has ended. */
static int conn_frame(struct wc_conn *c, const struct wsf_header *h,
                      const uint8_t *pl)
{
    switch (h->opcode) {
    case WSF_CLOSE:
        if (c->state == WC_OPEN) {
            /* Echo the status code, as §5.5.1 suggests. */
            queue_frame(c, WSF_CLOSE, pl, h->len >= 2 ? 2 : 0);
            if (c->state == WC_OPEN) {
                c->state = WC_CLOSING;
                c->since = ev_now(c->pool->loop);
            }
        }
        return c->state == WC_CLOSED ? -1 : 0;
    case WSF_PING:
        wc_send(c, WSF_PONG, pl, h->len);
        return c->state == WC_CLOSED ? -1 : 0;
    case WSF_PONG:
        return 0;
    }
    if (c->state != WC_OPEN)        /* data after a close frame is dropped */
        return 0;
    if (h->opcode == WSF_CONT) {
        if (!c->msg_op) {
            conn_end(c, "continuation frame without a message");
            return -1;
        }
        if (buf_append(&c->msg, pl, h->len, WC_MESSAGE_MAX) < 0) {
            conn_end(c, "message too large");
            return -1;
        }
        if (!h->fin)
            return 0;
        unsigned op = c->msg_op;
        c->msg_op = 0;
        int r = deliver(c, op, c->msg.p + c->msg.off, c->msg.len - c->msg.off);
        if (r == 0)
            buf_clear(&c->msg);
        return r;
    }
    if (c->msg_op) {
        conn_end(c, "new message inside a fragmented one");
        return -1;
    }
    if (h->fin)
        return deliver(c, h->opcode, pl, h->len);
    c->msg_op = h->opcode;
    if (buf_append(&c->msg, pl, h->len, WC_MESSAGE_MAX) < 0) {
        conn_end(c, "message too large");
        return -1;
    }
    return 0;
}

/* Consumes what it can of data[0..len): the 101 head while upgrading, then
 * whole frames. Returns the bytes consumed (the rest is a partial head or
 * frame to keep), or -1 once the connection has ended. */
static ssize_t conn_input(struct wc_conn *c, const uint8_t *data, size_t len)
{
    struct wc_pool *p = c->pool;
    size_t off = 0;

    if (c->state == WC_UPGRADING) {
        size_t hend = wshs_head_end((const char *)data, len);
        if (!hend) {
            if (len > WC_HEAD_MAX) {
                conn_end(c, "response head too large");
                return -1;
            }
            return 0;
        }
        const char *err = check_upgrade(c, (const char *)data, hend);
        if (err) {
            conn_end(c, err);
            return -1;
        }
        c->state = WC_OPEN;
        c->since = ev_now(p->loop);
        p->connecting--;
        p->opened++;
        p->ops->on_open(c);
        if (c->state == WC_CLOSED)
            return -1;
        off = hend;
    }
    while (off < len) {
        struct wsf_header h;
        int hl = wsf_parse(data + off, len - off, &h);
        if (hl == -2)
            break;
        if (hl < 0) {
            conn_end(c, "malformed frame from the server");
            return -1;
        }
        if (h.masked) {
            conn_end(c, "masked frame from the server");
            return -1;
        }
        if (h.rsv) {
            conn_end(c, c->deflate ? "compressed frame (wsload does not inflate)"
                                   : "RSV bits set without an extension");
            return -1;
        }
        if (h.len > WC_MESSAGE_MAX) {
            conn_end(c, "frame too large");
            return -1;
        }
        if (len - off - (size_t)hl < h.len)
            break;
        const uint8_t *pl = data + off + hl;
        off += (size_t)hl + h.len;
        if (conn_frame(c, &h, pl) < 0)
            return -1;
    }
    return (ssize_t)off;
}

/*
 * Makes the coming close() send RST instead of FIN. Used once the server
 * has closed its side (the WebSocket close handshake is over and its
 * socket is an orphan that the RST merely frees) and when the pool shuts
 * down: otherwise every connection would leave a TIME_WAIT entry for 60 s
 * on one side or the other, and the next handshake run, reusing the same
 * 28 000 loopback ports, would meet them and stall on SYN retransmits.
 */
static void close_with_reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

/* Parses n bytes just read into the shared buffer (0: EOF). Bytes left
 * over from the previous read are in c->in; then the new bytes are
 * appended there so the parser sees one contiguous run, otherwise they
 * are parsed where they landed and only a trailing partial frame is
 * copied out. Returns -1 once the connection has ended. */
static int conn_consume(struct wc_conn *c, size_t n)
{
    struct wc_pool *p = c->pool;

    if (n == 0) {
        if (c->state == WC_CLOSING)
            close_with_reset(c->fd);
        conn_end(c, c->state == WC_CLOSING     ? NULL
                    : c->state == WC_UPGRADING ? "server closed during the upgrade"
                                               : "server closed without a close frame");
        return -1;
    }
    bool carried = c->in.len > c->in.off;
    const uint8_t *data = p->rbuf;
    size_t len = n;
    if (carried) {
        if (buf_append(&c->in, p->rbuf, len, IN_MAX) < 0) {
            conn_end(c, "input buffer overflow");
            return -1;
        }
        data = c->in.p + c->in.off;
        len = c->in.len - c->in.off;
    }
    ssize_t used = conn_input(c, data, len);
    if (used < 0)
        return -1;
    if (carried) {
        c->in.off += (size_t)used;
        if (c->in.off == c->in.len)
            buf_clear(&c->in);
    } else if ((size_t)used < len &&
               buf_append(&c->in, data + used, len - (size_t)used, IN_MAX) < 0) {
        conn_end(c, "input buffer overflow");
        return -1;
    }
    return 0;
}

/* One read per readiness event into the pool's shared buffer; with TLS
 * another while OpenSSL holds bytes the socket will not announce. */
static void conn_read(struct wc_conn *c)
{
    bool more;

    do {
        uint8_t rd_ev = c->rd_ev;
        const char *err = NULL;
        ssize_t n = c->pool->tr->read(c, c->pool->rbuf, c->pool->rbuf_cap,
                                      &more, &err);
        if (c->rd_ev != rd_ev)
            conn_rearm(c);
        if (n == IO_AGAIN)
            return;
        if (n == IO_ERROR) {
            conn_end(c, err);
            return;
        }
        if (conn_consume(c, (size_t)n) < 0)
            return;
    } while (more);
}

/* One watcher per connection: connect completion, then writes before
 * reads so a drained backlog is not queued behind new input. */
static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct wc_conn *c = container_of(w, struct wc_conn, io);

    (void)loop;
    if (c->state == WC_CONNECTING) {
        conn_connected(c);
        return;
    }
    if (c->state == WC_SECURING) {
        conn_secure(c);
        return;
    }
    if (c->out_blocked && (revents & c->wr_ev)) {
        conn_write(c);
        if (c->state == WC_CLOSED)
            return;
    }
    if (revents & c->rd_ev)
        conn_read(c);
}

/* Starts a connection in slot idx. Returns -1 when it failed at once (the
 * slot is back on the free list and on_close has run). */
static int conn_start(struct wc_pool *p, unsigned idx)
{
    struct wc_conn *c = &p->conns[idx];
    int one = 1;

    c->state = WC_CONNECTING;
    c->since = ev_now(p->loop);
    c->deflate = false;
    c->out_blocked = false;
    c->rd_ev = EV_READ;
    c->wr_ev = EV_WRITE;
    c->sent = c->recv = c->mark = 0;
    p->connecting++;
    p->live++;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        conn_end(c, strerror(errno));
        return -1;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ev_io_init(&c->io, conn_io_cb, c->fd, EV_WRITE);
    if (connect(c->fd, (struct sockaddr *)&p->addr, sizeof p->addr) == 0) {
        conn_connected(c);
    } else if (errno == EINPROGRESS) {
        ev_io_start(p->loop, &c->io);
    } else {
        conn_end(c, strerror(errno));
        return -1;
    }
    return c->state == WC_CLOSED ? -1 : 0;
}

/* ---- pool watchers ------------------------------------------------------ */

/* Starts connections into free slots, within the cap on handshakes in
 * progress. Called only from the prepare watcher, after every callback of
 * the iteration has run, which keeps a slot's memory stable for the whole
 * callback that freed it. A synchronous failure stops this round, so a
 * refused port does not spin here. */
static void refill(struct wc_pool *p)
{
    while (p->attempts_left && p->nfree &&
           p->connecting < p->cfg.max_connecting) {
        unsigned idx = p->freelist[--p->nfree];
        if (p->attempts_left != UINT64_MAX)
            p->attempts_left--;
        if (conn_start(p, idx) < 0)
            break;
    }
}

/* Before the loop blocks: refill free slots, then one send per
 * connection with queued output, so every frame queued in the iteration
 * leaves in one send. */
static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct wc_pool *p = container_of(w, struct wc_pool, prepare_w);
    struct wc_conn *c;

    (void)loop;
    (void)revents;
    refill(p);
    while ((c = p->dirty) != NULL) {
        p->dirty = c->next_dirty;
        c->next_dirty = NULL;
        c->dirty = false;
        wc_flush(c);
    }
}

/* Once a second: handshakes and close handshakes that take too long. One
 * timer for the pool instead of one per connection. */
static void sweep_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct wc_pool *p = container_of(w, struct wc_pool, sweep_w);
    ev_tstamp now = ev_now(loop);

    (void)revents;
    for (unsigned i = 0; i < p->cfg.slots; i++) {
        struct wc_conn *c = &p->conns[i];
        if ((c->state == WC_CONNECTING || c->state == WC_SECURING ||
             c->state == WC_UPGRADING) &&
            now - c->since > WC_HANDSHAKE_TIMEOUT)
            conn_end(c, "handshake timeout");
        else if (c->state == WC_CLOSING && now - c->since > WC_CLOSE_TIMEOUT)
            conn_end(c, "server did not close TCP after the close handshake");
    }
}

int wc_pool_init(struct wc_pool *p, struct ev_loop *loop,
                 const struct wc_ops *ops, const struct wc_cfg *cfg, void *ud)
{
    memset(p, 0, sizeof *p);
    p->loop = loop;
    p->ops = ops;
    p->ud = ud;
    p->cfg = *cfg;
    p->tr = cfg->tls ? &tls_transport : &plain_transport;
    if (cfg->tls && !(p->tls_ctx = wt_ctx_new()))
        return -1;
    p->addr.sin_family = AF_INET;
    p->addr.sin_port = htons((uint16_t)cfg->port);
    p->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    p->conns = calloc(cfg->slots, sizeof *p->conns);
    p->freelist = calloc(cfg->slots, sizeof *p->freelist);
    p->rbuf_cap = RBUF_CAP;
    p->rbuf = malloc(p->rbuf_cap);
    if (!p->conns || !p->freelist || !p->rbuf ||
        RAND_bytes((unsigned char *)&p->rng, sizeof p->rng) != 1) {
        fprintf(stderr, "wsload: out of memory or no randomness\n");
        return -1;
    }
    p->rng |= 1;                /* xorshift must not start at 0 */
    /* Slot 0 is handed out first: the free list is a stack. */
    for (unsigned i = 0; i < cfg->slots; i++) {
        p->conns[i].pool = p;
        p->conns[i].idx = i;
        p->conns[i].fd = -1;
        p->freelist[i] = cfg->slots - 1 - i;
    }
    p->nfree = cfg->slots;
    ev_prepare_init(&p->prepare_w, prepare_cb);
    ev_prepare_start(loop, &p->prepare_w);
    ev_timer_init(&p->sweep_w, sweep_cb, 1.0, 1.0);
    ev_timer_start(loop, &p->sweep_w);
    return 0;
}

/* The prepare watcher does the starting, as slots and the cap allow. */
void wc_pool_open(struct wc_pool *p, uint64_t attempts)
{
    p->attempts_left = attempts;
}

/* Stops refilling; connections in progress finish on their own. */
void wc_pool_stop_opening(struct wc_pool *p)
{
    p->attempts_left = 0;
}

/* End of a run: every socket closed with RST (see close_with_reset),
 * no callbacks, watchers stopped so the pool can be freed. */
void wc_pool_close_all(struct wc_pool *p)
{
    p->attempts_left = 0;
    for (unsigned i = 0; i < p->cfg.slots; i++) {
        struct wc_conn *c = &p->conns[i];
        p->tr->end(c);
        if (c->fd >= 0) {
            ev_io_stop(p->loop, &c->io);
            close_with_reset(c->fd);
            close(c->fd);
            c->fd = -1;
        }
        c->state = WC_CLOSED;
    }
    ev_prepare_stop(p->loop, &p->prepare_w);
    ev_timer_stop(p->loop, &p->sweep_w);
}

/* The watchers must be stopped (wc_pool_close_all) first. */
void wc_pool_free(struct wc_pool *p)
{
    for (unsigned i = 0; p->conns && i < p->cfg.slots; i++) {
        wt_free(p->conns[i].ssl);
        free(p->conns[i].in.p);
        free(p->conns[i].msg.p);
        free(p->conns[i].out.p);
    }
    free(p->conns);
    free(p->freelist);
    free(p->rbuf);
    wt_ctx_free(p->tls_ctx);
    memset(p, 0, sizeof *p);
}
