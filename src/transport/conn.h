/*
 * conn: one accepted socket — its read path, its output queue, and its
 * lifetime. It knows no protocol: the bytes go to a `conn_proto` above.
 *
 * Reading: a readiness event reads once into the worker's shared receive
 * buffer (after any bytes the protocol left unparsed last time) and offers
 * the bytes to proto->on_read, which parses them in place. Only the
 * unparsed tail is copied back into the connection.
 *
 * Writing is corked: while a connection's input is being handled, what is
 * written to it collects in the worker's cork buffer and leaves in one
 * write(2) when the handling ends. Writes to other connections (broadcasts,
 * timers) queue on those connections and leave in one writev(2) each just
 * before the loop blocks again. Only what the kernel refuses stays queued,
 * and only then is EV_WRITE watched.
 *
 * Closing never frees: conn_close() stops the watcher, closes the socket and
 * queues the connection; the worker frees it after the loop iteration, so a
 * callback may close its own connection and return safely.
 *
 * Taking turns: a protocol that has handled its share of one connection's
 * input for this loop iteration (pipelined requests) yields; the rest is
 * kept and offered again in the next iteration, after every other ready
 * connection has had its turn.
 */
#ifndef MOONWS_CONN_H
#define MOONWS_CONN_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

struct conn;
struct worker;
struct shbuf;

/* The protocol a connection speaks now (HTTP, then perhaps WebSocket). */
struct conn_proto {
    /* Bytes arrived (writable, valid during the call). Returns how many were
     * used; the rest is offered again, after more data, up to the protocol's
     * own limit on what it leaves unparsed. */
    size_t (*on_read)(struct conn *c, char *data, size_t n);
    /* The peer closed its side or the socket failed. The protocol decides
     * what to do (typically conn_close). */
    void (*on_eof)(struct conn *c);
    /* The output queue became empty (optional). */
    void (*on_drain)(struct conn *c);
    /* Called once per sweep with the loop time, for timeouts (optional). */
    void (*on_sweep)(struct conn *c, ev_tstamp now);
    /* The connection was closed: release protocol state. Called once, from
     * conn_close. */
    void (*on_close)(struct conn *c);
};

/* How bytes move: plain sockets, or TLS above them. */
struct conn_transport {
    /* Like read(2): > 0 bytes, 0 at EOF, -1 with errno (EAGAIN: nothing yet). */
    ssize_t (*read)(struct conn *c, void *p, size_t n);
    /* Like writev(2). */
    ssize_t (*writev)(struct conn *c, const struct iovec *iov, int n);
    /* Sends what ends the stream in this direction (FIN, close_notify). */
    void (*shutdown)(struct conn *c);
    /* Releases transport state; the socket itself is closed by conn. */
    void (*free)(struct conn *c);
    /* True when it has read bytes it has not handed out yet (TLS records,
     * whole or not: conn reads again only after a read that made progress). */
    bool (*pending)(struct conn *c);
    /* Advances a handshake that must finish before any data (optional):
     * returns one of CONN_HS_*. */
    int (*handshake)(struct conn *c);
};

enum { CONN_HS_DONE, CONN_HS_WANT_READ, CONN_HS_WANT_WRITE, CONN_HS_FAILED };

/* A transport's state for one connection (TLS's session) begins with its
 * table: the connection keeps the state alone, and a connection without
 * one is a plain socket. */
struct conn_tstate {
    const struct conn_transport *tp;
};

enum {
    CONN_CLOSED = 1 << 0,       /* conn_close ran: no more I/O */
    CONN_DIRTY = 1 << 1,        /* on the worker's flush list */
    CONN_WATCH_WRITE = 1 << 2,  /* EV_WRITE is being watched */
    CONN_FINISHING = 1 << 3,    /* shut down writing once the queue drains */
    CONN_SHUT_WR = 1 << 4,      /* our side is shut: reading until EOF */
    CONN_SECURE = 1 << 5,       /* TLS */
    CONN_RD_EOF = 1 << 6,       /* the peer closed its side: no more reading */
    CONN_RD_PAUSED = 1 << 7,    /* the protocol does not want input now */
    CONN_HANDSHAKE = 1 << 8,    /* the transport's handshake is not done */
    CONN_REFEED = 1 << 9,       /* unparsed input waits for the protocol again */
    CONN_YIELD = 1 << 10,       /* not read until the worker's next iteration */
};

struct oseg;
struct adm_entry;

/* Every open connection holds one of these, so it is kept lean (168
 * bytes, a 176-byte malloc chunk): the admission slot goes in io.data
 * (libev's user pointer, which conn does not need: io comes first, so the
 * watcher is the connection), and the transport's table is found through
 * its state rather than kept beside it. */
struct conn {
    ev_io io;                           /* io.data: the admission slot (conn_set_admission) */
    struct worker *w;
    const struct conn_proto *proto;
    void *pdata;                        /* the protocol's state */
    struct conn_tstate *tdata;          /* the transport's state, NULL: plain socket */
    struct conn *prev, *next;           /* the worker's live connections */
    struct conn *next_dirty;
    struct oseg *out_head, *out_tail;   /* queued output, NULL when empty */
    size_t out_bytes;
    char *in;                           /* unparsed input, NULL when none */
    uint32_t in_len;
    uint16_t flags;
    uint16_t linger_ms;                 /* conn_finish's linger, from the shutdown on */
    uint64_t id;
    ev_tstamp deadline;                 /* the protocol's timeout, 0 = none */
    /* When queued output last moved: the kernel took some, or the output
     * of a handled read was written or queued. A protocol tells a client
     * still reading from one that stopped by it. */
    ev_tstamp out_progress;
};

/* Takes ownership of fd (non-blocking) and starts reading with proto; the
 * worker's clock is read afresh for it (worker_now_fresh). */
struct conn *conn_new(struct worker *w, int fd, const struct conn_proto *proto);

/* Queues bytes. */
void conn_write(struct conn *c, const void *p, size_t n);
/* Room for n contiguous bytes in the queue, then the count actually used. */
char *conn_write_reserve(struct conn *c, size_t n);
void conn_write_commit(struct conn *c, size_t used);
/* Queues head then body, as two conn_write calls would. A body of
 * LIM_DIRECT_WRITE bytes or more with nothing queued before it goes to the
 * transport from where it is, in one writev with the cork and the head; only
 * what the kernel does not take is copied. (TLS gathers the pieces into one
 * buffer for SSL_write: a copy as the cork would have been.) For protocols
 * without on_drain (a direct write empties no queue). */
void conn_write_pair(struct conn *c, const void *head, size_t hn, const void *body, size_t bn);
/* Queues a shared block by reference (copied when the connection is corked
 * with bytes already in the cork buffer, to keep the order). */
void conn_write_shared(struct conn *c, struct shbuf *b);
/* Bytes queued and not yet accepted by the kernel. */
size_t conn_buffered(const struct conn *c);

/* Writes what is queued now (normally the worker does this). */
void conn_flush(struct conn *c);

/* Ends the connection gracefully: once the queue drains, shut down our
 * side, read and discard until the peer closes or `linger` seconds (at
 * most 65) pass, then close. The protocol gets no more on_read calls;
 * while its output is still leaving, its on_sweep judges whether the
 * peer still reads (without one: `linger` seconds from now). */
void conn_finish(struct conn *c, ev_tstamp linger);
/* Closes at once; what is queued is dropped. */
void conn_close(struct conn *c);

static inline bool conn_is_closed(const struct conn *c)
{
    return c->flags & CONN_CLOSED;
}
static inline bool conn_is_secure(const struct conn *c)
{
    return c->flags & CONN_SECURE;
}

/* Stops or resumes reading (a protocol busy with a long response). On
 * resume, input already received is offered again (a pipelined request). */
void conn_pause_read(struct conn *c, bool pause);

/* From on_read: the protocol has handled its share of this connection's
 * input for this loop iteration. It returns what it used; the rest is kept
 * and, like anything more the peer sends, offered in the next iteration
 * after the other connections' turns (the worker calls
 * conn_resume_yielded). */
void conn_yield_read(struct conn *c);
/* The worker's next iteration: read again, and offer what was kept. */
void conn_resume_yielded(struct conn *c);

/* The peer's address as "ip:port" ("[ip6]:port"); empty on failure. */
void conn_remote(const struct conn *c, char *out, size_t cap);

/* Runs the protocol's on_close and frees c; the worker calls it for closed
 * connections after each loop iteration. */
void conn_destroy(struct conn *c);
/* Frees the worker's segment pools (at worker shutdown). */
void conn_pools_free(struct worker *w);
/* Puts a transport (TLS) between the connection and its socket: ts is its
 * state for this connection, beginning with its table. */
void conn_set_transport(struct conn *c, struct conn_tstate *ts);
/* The admission slot the connection holds (NULL: none), given back when
 * it is freed. */
void conn_set_admission(struct conn *c, struct adm_entry *e);

/* Switches the protocol (HTTP to WebSocket after the upgrade). */
static inline void conn_set_proto(struct conn *c, const struct conn_proto *p, void *pdata)
{
    c->proto = p;
    c->pdata = pdata;
}

#endif
