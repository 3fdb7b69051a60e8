#include "conn.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../util/connid.h"
#include "../util/limits.h"
#include "../util/log.h"
#include "../util/shbuf.h"
#include "admission.h"
#include "worker.h"

/*
 * A piece of queued output: bytes of its own in data[] (sh == NULL), or a
 * shared block (sh != NULL, cap == 0). Bytes [off, len) are still to go.
 * Standard-size data segments and shared-block segments are pooled per
 * worker, so steady traffic allocates nothing.
 */
struct oseg {
    struct oseg *next;
    struct shbuf *sh;
    uint32_t off, len, cap;
    char data[];
};

#define SEG_CAP ((uint32_t)(LIM_OUT_SEG_BYTES - sizeof(struct oseg)))

/* recv/send rather than read/write: the socket calls skip the VFS layer
 * (file position locking, the generic iterators), which is measurable at
 * one call per message. */
static ssize_t plain_read(struct conn *c, void *p, size_t n)
{
    return recv(c->io.fd, p, n, 0);
}

static ssize_t plain_writev(struct conn *c, const struct iovec *iov, int n)
{
    if (n == 1)
        return send(c->io.fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
    struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n };
    return sendmsg(c->io.fd, &mh, MSG_NOSIGNAL);
}

static void plain_shutdown(struct conn *c)
{
    shutdown(c->io.fd, SHUT_WR);
}

static void plain_free(struct conn *c)
{
    (void)c;
}

static bool plain_pending(struct conn *c)
{
    (void)c;
    return false;
}

static const struct conn_transport plain_transport = {
    plain_read, plain_writev, plain_shutdown, plain_free, plain_pending, NULL,
};

/* The connection's transport: its state's table, or the plain socket's. */
static inline const struct conn_transport *transport(const struct conn *c)
{
    return c->tdata ? c->tdata->tp : &plain_transport;
}

static struct oseg *seg_new(struct worker *w, size_t need)
{
    struct oseg *s;
    if (need <= SEG_CAP && w->seg_pool) {
        s = w->seg_pool;
        w->seg_pool = s->next;
        w->seg_pool_n--;
    } else {
        size_t cap = need > SEG_CAP ? need : SEG_CAP;
        assert(cap <= UINT32_MAX);
        s = xmalloc(sizeof *s + cap);
        s->cap = (uint32_t)cap;
    }
    s->next = NULL;
    s->sh = NULL;
    s->off = s->len = 0;
    return s;
}

static struct oseg *seg_new_ref(struct worker *w, struct shbuf *b)
{
    struct oseg *s = w->ref_pool;
    if (s) {
        w->ref_pool = s->next;
        w->ref_pool_n--;
    } else {
        s = xmalloc(sizeof *s);
        s->cap = 0;
    }
    s->next = NULL;
    s->sh = shbuf_ref(b);
    s->off = 0;
    assert(b->len <= UINT32_MAX);
    s->len = (uint32_t)b->len;
    return s;
}

static void seg_release(struct worker *w, struct oseg *s)
{
    if (s->sh) {
        shbuf_unref(s->sh);
        if (w->ref_pool_n < LIM_OUT_REF_POOL) {
            s->next = w->ref_pool;
            w->ref_pool = s;
            w->ref_pool_n++;
            return;
        }
    } else if (s->cap == SEG_CAP && w->seg_pool_n < LIM_OUT_SEG_POOL) {
        s->next = w->seg_pool;
        w->seg_pool = s;
        w->seg_pool_n++;
        return;
    }
    free(s);
}

static void seg_append(struct conn *c, struct oseg *s)
{
    if (c->out_tail)
        c->out_tail->next = s;
    else
        c->out_head = s;
    c->out_tail = s;
}

/* Watches what the connection needs: input until the peer's EOF, and
 * writability only while the kernel refuses our output. */
static void update_watch(struct conn *c, bool want_write)
{
    int ev = (c->flags & (CONN_RD_EOF | CONN_RD_PAUSED | CONN_YIELD) ? 0 : EV_READ) |
             (want_write ? EV_WRITE : 0);
    int cur = c->io.events & (EV_READ | EV_WRITE);
    if (ev == cur && ev_is_active(&c->io))
        return;
    ev_io_stop(c->w->loop, &c->io);
    if (want_write)
        c->flags |= CONN_WATCH_WRITE;
    else
        c->flags &= (uint16_t)~CONN_WATCH_WRITE;
    if (ev) {
        ev_io_set(&c->io, c->io.fd, ev);
        ev_io_start(c->w->loop, &c->io);
    }
}

static void watch_write(struct conn *c, bool on)
{
    if (!!(c->flags & CONN_WATCH_WRITE) != on)
        update_watch(c, on);
}

/* Our output is done and the protocol asked to finish: send FIN and linger. */
static void maybe_shut(struct conn *c)
{
    if ((c->flags & (CONN_FINISHING | CONN_SHUT_WR | CONN_CLOSED)) != CONN_FINISHING ||
        c->out_head)
        return;
    transport(c)->shutdown(c);
    c->flags |= CONN_SHUT_WR;
    c->deadline = worker_now(c->w) + c->linger_ms / 1000.0;
    if (c->flags & CONN_RD_EOF)
        conn_close(c);          /* both directions are done */
}

/* The socket failed under a write: the protocol hears it as end of stream. */
static void write_failed(struct conn *c, int err)
{
    log_debug("conn %llu: write failed: %s", (unsigned long long)c->id, strerror(err));
    if (c->flags & (CONN_FINISHING | CONN_SHUT_WR))
        conn_close(c);
    else
        c->proto->on_eof(c);
}

void conn_flush(struct conn *c)
{
    while (c->out_head && !conn_is_closed(c)) {
        struct iovec iov[LIM_WRITEV_BATCH];
        int n = 0;
        size_t want = 0;
        for (struct oseg *s = c->out_head; s && n < LIM_WRITEV_BATCH; s = s->next, n++) {
            iov[n].iov_base = (s->sh ? s->sh->data : s->data) + s->off;
            iov[n].iov_len = s->len - s->off;
            want += iov[n].iov_len;
        }
        ssize_t r = transport(c)->writev(c, iov, n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                watch_write(c, true);
                return;
            }
            write_failed(c, errno);
            return;
        }
        size_t left = (size_t)r;
        c->out_bytes -= left;
        if (left)
            c->out_progress = worker_now(c->w);
        while (left) {
            struct oseg *s = c->out_head;
            size_t avail = s->len - s->off;
            if (left < avail) {
                s->off += (uint32_t)left;
                break;
            }
            left -= avail;
            c->out_head = s->next;
            if (!c->out_head)
                c->out_tail = NULL;
            seg_release(c->w, s);
        }
        if ((size_t)r < want) {
            /* A short write: the kernel buffer is full. */
            watch_write(c, true);
            return;
        }
    }
    if (conn_is_closed(c))
        return;
    watch_write(c, false);
    maybe_shut(c);
    if (c->proto->on_drain && !(c->flags & (CONN_SHUT_WR | CONN_FINISHING)))
        c->proto->on_drain(c);
}

/* Writes the cork buffer of the connection just handled; what the kernel
 * does not take is queued. */
static void uncork(struct worker *w, struct conn *c)
{
    w->corked = NULL;
    size_t len = w->cork.len, done = 0;
    w->cork.len = 0;
    if (conn_is_closed(c))
        return;
    if (len)
        c->out_progress = worker_now(w);
    if (!len) {
        /* Nothing new to send, but the protocol may have asked to finish
         * while corked (the peer answered our close frame). */
        maybe_shut(c);
        return;
    }
    while (done < len) {
        struct iovec iov = { w->cork.data + done, len - done };
        ssize_t r = transport(c)->writev(c, &iov, 1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN) {
                write_failed(c, errno);
                return;
            }
            break;
        }
        done += (size_t)r;
    }
    if (done < len) {
        /* Keep the rest in this connection's own queue. */
        size_t rest = len - done;
        struct oseg *s = seg_new(w, rest);
        memcpy(s->data, w->cork.data + done, rest);
        s->len = (uint32_t)rest;
        seg_append(c, s);
        c->out_bytes += rest;
        watch_write(c, true);
        return;
    }
    maybe_shut(c);
    /* All of it left at once: the protocol may have more to send. */
    if (c->proto->on_drain && !(c->flags & (CONN_CLOSED | CONN_SHUT_WR | CONN_FINISHING)))
        c->proto->on_drain(c);
}

/* Keeps the unparsed tail of this read for the next one. */
static void keep_input(struct conn *c, const char *p, size_t n)
{
    if (!n)
        return;
    c->in = xmalloc(n);
    memcpy(c->in, p, n);
    c->in_len = (uint32_t)n;
}

/* Offers [base, base + total) to the protocol, corked, until it stops
 * using bytes; keeps the rest. */
static void feed(struct conn *c, char *base, size_t total)
{
    struct worker *w = c->w;
    size_t off = 0;
    w->corked = c;
    while (off < total && !(c->flags & (CONN_CLOSED | CONN_FINISHING | CONN_YIELD))) {
        size_t used = c->proto->on_read(c, base + off, total - off);
        if (used == 0)
            break;
        off += used;
    }
    /* The rest is kept first: writing the output may drain the queue,
     * and a protocol that paused for it resumes from on_drain. */
    if (off < total && !(c->flags & (CONN_CLOSED | CONN_FINISHING))) {
        /* A protocol leaves at most a request head or a frame header with a
         * control payload unparsed; anything longer it must refuse itself.
         * Only a protocol that paused reading (a response streaming) or
         * yielded its turn leaves more: the rest of this read, pipelined
         * behind it. */
        assert(total - off <= LIM_HTTP_HEAD_CEILING ||
               (c->flags & (CONN_RD_PAUSED | CONN_YIELD)));
        keep_input(c, base + off, total - off);
    }
    uncork(w, c);
}

/* The peer's end of stream reaches the protocol once everything it sent
 * before it has been offered, and not while the protocol has paused
 * reading, yielded its turn or resumed with its input to be offered again
 * (CONN_REFEED): pipelined requests it will come back to are answered
 * first, and it hears of the end then. (Input the protocol left unparsed
 * otherwise, a partial request or frame, will never be completed.) */
static void eof_when_taken(struct conn *c)
{
    if (c->flags & (CONN_RD_PAUSED | CONN_YIELD | CONN_REFEED | CONN_CLOSED | CONN_FINISHING |
                    CONN_SHUT_WR))
        return;
    c->proto->on_eof(c);
}

/* Reads once and offers what there is. Returns whether it offered input
 * (from the socket, or kept input offered again): only then can another
 * call find more without a new readiness event. */
static bool conn_readable(struct conn *c)
{
    char *base = c->w->rbuf;
    size_t have = c->in_len;
    bool refeed = c->flags & CONN_REFEED;
    c->flags &= (uint16_t)~CONN_REFEED;
    if (have) {
        memcpy(base, c->in, have);
        free(c->in);
        c->in = NULL;
        c->in_len = 0;
    }
    /* Kept input longer than a request head came in while reading was
     * paused: it is offered alone, so that it and a new read fit the
     * buffer, and nothing is read while the protocol still waits. After
     * the peer's end of stream there is nothing more to read either. */
    if (have > LIM_HTTP_HEAD_CEILING || (c->flags & (CONN_RD_PAUSED | CONN_RD_EOF))) {
        bool offered = !(c->flags & (CONN_RD_PAUSED | CONN_SHUT_WR | CONN_FINISHING));
        if (offered)
            feed(c, base, have);
        else
            keep_input(c, base, have);
        if (c->flags & CONN_RD_EOF)
            eof_when_taken(c);
        return offered;
    }
    ssize_t r;
    do {
        r = transport(c)->read(c, base + have, LIM_READ_CHUNK);
    } while (r < 0 && errno == EINTR);
    if (r < 0 && errno == EAGAIN) {
        /* Nothing new; input kept while reading was paused is offered now. */
        bool offered = refeed && have && !(c->flags & (CONN_SHUT_WR | CONN_FINISHING));
        if (offered)
            feed(c, base, have);
        else
            keep_input(c, base, have);
        return offered;
    }
    if (r <= 0) {
        if (r < 0)
            log_debug("conn %llu: read failed: %s", (unsigned long long)c->id, strerror(errno));
        c->flags |= CONN_RD_EOF;
        update_watch(c, c->flags & CONN_WATCH_WRITE);
        if (c->flags & CONN_SHUT_WR) {
            conn_close(c);
            return false;
        }
        /* finishing: the queue drains, then maybe_shut closes */
        if (c->flags & CONN_FINISHING)
            return false;
        /* A clean end of stream after requests still kept: they go first.
         * After a failed read no answer could reach the peer anyway. */
        if (r == 0 && have)
            feed(c, base, have);
        eof_when_taken(c);
        return false;
    }
    if (c->flags & (CONN_SHUT_WR | CONN_FINISHING))
        return false;           /* lingering: whatever comes now is discarded */
    feed(c, base, have + (size_t)r);
    return true;
}

/* Advances the transport's handshake; returns true once data may flow. */
static bool handshake(struct conn *c)
{
    switch (transport(c)->handshake(c)) {
    case CONN_HS_DONE:
        c->flags &= (uint16_t)~CONN_HANDSHAKE;
        update_watch(c, c->out_head != NULL);
        return true;
    case CONN_HS_WANT_READ:
        update_watch(c, false);
        return false;
    case CONN_HS_WANT_WRITE:
        update_watch(c, true);
        return false;
    default:
        conn_close(c);
        return false;
    }
}

/* Reads and offers until the socket has nothing more for now. TLS may hold
 * whole records it already took off the socket; they wait in TLS while
 * reading is paused or yielded (the resume comes back here). */
static void read_all(struct conn *c)
{
    while (conn_readable(c) &&
           !(c->flags & (CONN_CLOSED | CONN_RD_PAUSED | CONN_YIELD | CONN_RD_EOF)) &&
           transport(c)->pending(c))
        ;
}

static void conn_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    struct conn *c = (struct conn *)((char *)io - offsetof(struct conn, io));
    if (c->flags & CONN_HANDSHAKE) {
        if (!handshake(c))
            return;
        /* The last handshake read may have brought application data. */
        revents |= EV_READ;
    }
    if (revents & EV_WRITE)
        conn_flush(c);
    if ((revents & EV_READ) && !(c->flags & (CONN_CLOSED | CONN_YIELD)))
        read_all(c);
}

struct conn *conn_new(struct worker *w, int fd, const struct conn_proto *proto)
{
    struct conn *c = xcalloc(1, sizeof *c);
    /* Its timeouts count from now, not from this iteration's reading of
     * the clock, which may predate its arrival. */
    worker_now_fresh(w);
    c->w = w;
    c->proto = proto;
    c->id = connid_new(w->index);
    ev_io_init(&c->io, conn_io_cb, fd, EV_READ);
    c->io.data = NULL;                  /* no admission slot yet */
    ev_io_start(w->loop, &c->io);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    return c;
}

void conn_set_transport(struct conn *c, struct conn_tstate *ts)
{
    c->tdata = ts;
}

void conn_set_admission(struct conn *c, struct adm_entry *e)
{
    c->io.data = e;
}

char *conn_write_reserve(struct conn *c, size_t n)
{
    struct worker *w = c->w;
    if (w->corked == c && !c->out_head) {
        w->reserve_in_cork = true;
        return buf_reserve(&w->cork, n);
    }
    w->reserve_in_cork = false;
    struct oseg *t = c->out_tail;
    if (t && !t->sh && t->cap - t->len >= n)
        return t->data + t->len;
    struct oseg *s = seg_new(w, n);
    seg_append(c, s);
    return s->data;
}

void conn_write_commit(struct conn *c, size_t used)
{
    struct worker *w = c->w;
    if (w->reserve_in_cork) {
        w->cork.len += used;
        return;
    }
    c->out_tail->len += (uint32_t)used;
    c->out_bytes += used;
    if (!(c->flags & CONN_DIRTY))
        worker_mark_dirty(w, c);
}

void conn_write(struct conn *c, const void *p, size_t n)
{
    if (conn_is_closed(c) || n == 0)
        return;
    memcpy(conn_write_reserve(c, n), p, n);
    conn_write_commit(c, n);
}

/* Puts the rest bytes of iov[0..n) that follow its first skip bytes in a
 * queue segment of their own. */
static void queue_rest(struct conn *c, const struct iovec *iov, int n, size_t skip, size_t rest)
{
    struct oseg *s = seg_new(c->w, rest);
    for (int i = 0; i < n; i++) {
        size_t len = iov[i].iov_len;
        if (skip >= len) {
            skip -= len;
            continue;
        }
        memcpy(s->data + s->len, (const char *)iov[i].iov_base + skip, len - skip);
        s->len += (uint32_t)(len - skip);
        skip = 0;
    }
    seg_append(c, s);
    c->out_bytes += rest;
}

void conn_write_pair(struct conn *c, const void *head, size_t hn, const void *body, size_t bn)
{
    struct worker *w = c->w;
    if (conn_is_closed(c) || hn + bn == 0)
        return;
    if (bn < LIM_DIRECT_WRITE || c->out_head || (c->flags & CONN_HANDSHAKE)) {
        char *p = conn_write_reserve(c, hn + bn);
        memcpy(p, head, hn);
        memcpy(p + hn, body, bn);
        conn_write_commit(c, hn + bn);
        return;
    }
    /* The cork goes first: it holds this connection's earlier output. */
    size_t corked = w->corked == c ? w->cork.len : 0;
    struct iovec iov[3];
    int n = 0;
    if (corked)
        iov[n++] = (struct iovec){ w->cork.data, corked };
    iov[n++] = (struct iovec){ (void *)head, hn };
    iov[n++] = (struct iovec){ (void *)body, bn };
    size_t want = corked + hn + bn;
    ssize_t r;
    do {
        r = transport(c)->writev(c, iov, n);
    } while (r < 0 && errno == EINTR);
    int err = r < 0 ? errno : 0;
    size_t done = r > 0 ? (size_t)r : 0;
    if (corked)
        w->cork.len = 0;
    if (done)
        c->out_progress = worker_now(w);
    if (done == want)
        return;
    /* The rest waits in the queue. A failed socket is not reported from
     * inside the protocol's send: the worker's flush meets the error again
     * and reports it from the loop. */
    queue_rest(c, iov, n, done, want - done);
    if (r >= 0 || err == EAGAIN)
        watch_write(c, true);
    else if (!(c->flags & CONN_DIRTY))
        worker_mark_dirty(w, c);
}

void conn_write_shared(struct conn *c, struct shbuf *b)
{
    if (conn_is_closed(c) || b->len == 0)
        return;
    if (c->w->corked == c && !c->out_head) {
        conn_write(c, b->data, b->len);
        return;
    }
    seg_append(c, seg_new_ref(c->w, b));
    c->out_bytes += b->len;
    if (!(c->flags & CONN_DIRTY))
        worker_mark_dirty(c->w, c);
}

void conn_pause_read(struct conn *c, bool pause)
{
    if (conn_is_closed(c) || !!(c->flags & CONN_RD_PAUSED) == pause)
        return;
    c->flags ^= CONN_RD_PAUSED;
    update_watch(c, c->flags & CONN_WATCH_WRITE);
    /* (A yielded connection's kept input is offered at its next turn.) */
    if (!pause && (c->in_len || (c->flags & CONN_RD_EOF) || transport(c)->pending(c)) &&
        !(c->flags & CONN_YIELD)) {
        /* Bytes that came while paused (a pipelined request, kept here or
         * read ahead by TLS), or the peer's end of stream behind them, get
         * no new readiness event: make one, handled from the loop, not
         * from here. */
        c->flags |= CONN_REFEED;
        ev_feed_event(c->w->loop, &c->io, EV_READ);
    }
}

void conn_yield_read(struct conn *c)
{
    if (c->flags & (CONN_CLOSED | CONN_YIELD))
        return;
    c->flags |= CONN_YIELD;
    update_watch(c, c->flags & CONN_WATCH_WRITE);
    worker_yield(c->w, c);
}

void conn_resume_yielded(struct conn *c)
{
    c->flags &= (uint16_t)~CONN_YIELD;
    if (conn_is_closed(c))
        return;
    update_watch(c, c->flags & CONN_WATCH_WRITE);
    if (c->flags & (CONN_HANDSHAKE | CONN_RD_PAUSED))
        return;
    /* What was kept goes first; whatever arrived meanwhile follows it. */
    c->flags |= CONN_REFEED;
    read_all(c);
}

size_t conn_buffered(const struct conn *c)
{
    return c->out_bytes + (c->w->corked == c ? c->w->cork.len : 0);
}

void conn_finish(struct conn *c, ev_tstamp linger)
{
    if (c->flags & (CONN_CLOSED | CONN_FINISHING))
        return;
    c->flags |= CONN_FINISHING;
    c->linger_ms = (uint16_t)(linger < 65 ? linger * 1000 : 65000);
    c->deadline = worker_now(c->w) + linger;
    free(c->in);
    c->in = NULL;
    c->in_len = 0;
    if (c->w->corked != c)
        maybe_shut(c);
}

void conn_close(struct conn *c)
{
    if (conn_is_closed(c))
        return;
    struct worker *w = c->w;
    if (c->flags & CONN_YIELD)
        worker_unyield(w, c);
    c->flags |= CONN_CLOSED;
    ev_io_stop(w->loop, &c->io);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nconns--;
    c->next = w->dead;
    w->dead = c;
}

void conn_destroy(struct conn *c)
{
    struct worker *w = c->w;
    if (c->proto->on_close)
        c->proto->on_close(c);
    transport(c)->free(c);
    close(c->io.fd);
    if (c->io.data)
        admission_leave(c->io.data);
    while (c->out_head) {
        struct oseg *s = c->out_head;
        c->out_head = s->next;
        seg_release(w, s);
    }
    free(c->in);
    free(c);
}

void conn_remote(const struct conn *c, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN];
    out[0] = '\0';
    if (getpeername(c->io.fd, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        snprintf(out, cap, "%s:%u", host, ntohs(a->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        snprintf(out, cap, "[%s]:%u", host, ntohs(a->sin6_port));
    }
}

/* Pools and lists are the worker's, but their node type is ours. */
void conn_pools_free(struct worker *w)
{
    while (w->seg_pool) {
        struct oseg *s = w->seg_pool;
        w->seg_pool = s->next;
        free(s);
    }
    while (w->ref_pool) {
        struct oseg *s = w->ref_pool;
        w->ref_pool = s->next;
        free(s);
    }
    w->seg_pool_n = w->ref_pool_n = 0;
}
