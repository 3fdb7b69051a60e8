/*
 * wsl_client: wsload's WebSocket client connections on one libev loop.
 *
 * A pool owns a fixed array of connection slots. It opens connections to
 * ws://127.0.0.1:port/path, or wss:// (non-blocking connect, a TLS
 * handshake when the pool is TLS (wsl_tls.h), the §4.1 upgrade request,
 * a check of the 101 and of Sec-WebSocket-Accept), with a cap on how many
 * handshakes are in progress at once, and optionally refills slots that
 * close (the handshake mode). Open connections send masked frames and
 * receive unmasked ones; partial reads, 16/64-bit lengths, fragmented
 * messages, pings and the close handshake are handled here, so the modes
 * above see whole messages through callbacks.
 *
 * Output is buffered per connection and written once per loop iteration
 * (or at once with wc_flush); a write that blocks leaves the rest queued
 * until the socket is ready again.
 *
 * Bytes move through the pool's transport, plain or TLS, chosen once at
 * wc_pool_init: the framing and the modes above never ask which.
 *
 * Slots are never freed while the pool lives: a closed slot goes on a free
 * list and is reused only from the loop's prepare phase, after every
 * callback of the iteration, so a callback never sees its connection's
 * memory change under it.
 */
#ifndef BENCH_WSL_CLIENT_H
#define BENCH_WSL_CLIENT_H

#include <ev.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wshs.h"

/* Seconds a connect + upgrade may take before the attempt fails. */
#define WC_HANDSHAKE_TIMEOUT 10.0
/* Seconds to wait for the server to close TCP after the close handshake. */
#define WC_CLOSE_TIMEOUT 5.0
/* The largest head of a 101 response accepted. */
#define WC_HEAD_MAX (16 * 1024)
/* The largest message (after reassembly) accepted from a server. */
#define WC_MESSAGE_MAX (64u * 1024 * 1024)
/* Bytes queued for one connection before wsload gives up on it: the
 * server is not reading, and buffering more would only hide that. */
#define WC_OUT_MAX (64u * 1024 * 1024)

enum wc_state {
    WC_FREE,            /* slot unused */
    WC_CONNECTING,      /* connect() in progress */
    WC_SECURING,        /* TLS handshake in progress (a plain pool passes
                           through at once) */
    WC_UPGRADING,       /* request sent, waiting for the 101 */
    WC_OPEN,
    WC_CLOSING,         /* a close frame went out; waiting for EOF */
    WC_CLOSED,          /* socket gone, slot on the free list */
};

struct wc_buf {
    uint8_t *p;
    size_t off, len, cap;   /* live bytes are p[off..len) */
};

struct wc_pool;
struct wc_transport;
struct ssl_ctx_st;
struct ssl_st;

struct wc_conn {
    ev_io io;
    struct wc_pool *pool;
    int fd;
    enum wc_state state;
    unsigned idx;               /* slot number, for the mode's own arrays */
    bool deflate;               /* the server accepted permessage-deflate */
    bool dirty;                 /* on the pool's flush list */
    bool out_blocked;           /* queued output waits for wr_ev */
    uint8_t rd_ev, wr_ev;       /* what reading and blocked output wait for:
                                   EV_READ and EV_WRITE, unless TLS needs
                                   the other direction first */
    struct ssl_st *ssl;         /* TLS session; NULL on a plain pool */
    struct wc_conn *next_dirty;
    ev_tstamp since;            /* when the current state began */
    char accept[WSHS_ACCEPT_LEN + 1];   /* the value the 101 must carry */
    struct wc_buf in;           /* bytes carried over between reads */
    struct wc_buf msg;          /* fragments of a message being reassembled */
    unsigned msg_op;            /* its opcode; 0 when none is open */
    struct wc_buf out;
    /* For the mode; zeroed when the slot is (re)used. */
    uint64_t sent, recv, mark;
};

struct wc_ops {
    /* The upgrade was accepted; the connection may send. */
    void (*on_open)(struct wc_conn *c);
    /* A whole message. p points into wsload's buffers and is valid only
     * during the call. */
    void (*on_message)(struct wc_conn *c, unsigned opcode, const uint8_t *p,
                       size_t n);
    /* The socket is closed. was_open: the upgrade had succeeded. err is
     * NULL after a completed close handshake, else a static reason. The
     * slot returns to the free list after the call. */
    void (*on_close)(struct wc_conn *c, bool was_open, const char *err);
};

struct wc_cfg {
    int port;
    const char *path;
    bool offer_deflate;         /* send Sec-WebSocket-Extensions */
    const char *protocol;       /* Sec-WebSocket-Protocol to offer, or NULL */
    bool tls;                   /* wss://: every connection over TLS */
    unsigned slots;             /* connections open at most at once */
    unsigned max_connecting;    /* handshakes in progress at most */
};

struct wc_pool {
    struct ev_loop *loop;
    const struct wc_ops *ops;
    void *ud;                   /* the mode's state */
    struct wc_cfg cfg;
    const struct wc_transport *tr;      /* plain or TLS, per cfg.tls */
    struct ssl_ctx_st *tls_ctx;         /* the TLS pool's context */
    const char *tls_desc;       /* "TLSv1.3/cipher" of the first session
                                   established; NULL until then */
    struct sockaddr_in addr;
    struct wc_conn *conns;      /* cfg.slots of them */
    unsigned *freelist;
    unsigned nfree;
    uint64_t attempts_left;     /* connections still to start; UINT64_MAX refills forever */
    unsigned connecting;        /* in WC_CONNECTING or WC_UPGRADING */
    unsigned live;              /* slots not free */
    uint64_t opened, failed;    /* upgrades that succeeded / attempts that did not */
    const char *last_err;       /* reason of the latest failure */
    uint8_t *rbuf;              /* one receive buffer shared by every connection */
    size_t rbuf_cap;
    struct wc_conn *dirty;      /* connections with output to write */
    uint64_t rng;               /* mask keys */
    ev_prepare prepare_w;        /* refill slots, then flush */
    ev_timer sweep_w;
};

/* Allocates the slots and buffers and starts the pool's watchers. Returns
 * 0, or -1 with a message on stderr. No connection starts yet. */
int wc_pool_init(struct wc_pool *p, struct ev_loop *loop,
                 const struct wc_ops *ops, const struct wc_cfg *cfg, void *ud);

/* Starts `attempts` connections, cfg.max_connecting at a time, as slots
 * are free. UINT64_MAX keeps refilling slots until wc_pool_stop_opening. */
void wc_pool_open(struct wc_pool *p, uint64_t attempts);
void wc_pool_stop_opening(struct wc_pool *p);

/* Closes every socket at once, without close frames or callbacks, and
 * stops the pool's watchers. The pool may then only be freed. */
void wc_pool_close_all(struct wc_pool *p);
void wc_pool_free(struct wc_pool *p);

/* Queues one masked frame carrying p[0..n). It is written before the loop
 * next blocks, or by wc_flush. Ignored unless the connection is open. */
void wc_send(struct wc_conn *c, unsigned opcode, const uint8_t *p, size_t n);

/* Writes the connection's queued output now (one write). */
void wc_flush(struct wc_conn *c);

/* Starts the close handshake with `code`; on_close follows when the
 * server has answered and closed the TCP connection. */
void wc_close(struct wc_conn *c, uint16_t code);

#endif
