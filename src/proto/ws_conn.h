/*
 * ws_conn: a connection after the upgrade — RFC 6455 on a conn, with the
 * service's handlers above it.
 *
 * Closing. The application hears of the end exactly once, through
 * svc->ops->close(code, reason):
 *  - the peer sent a close frame: its code (1005 when it had none) and
 *    reason; we echo the code and close the TCP connection;
 *  - we failed the peer (protocol error 1002, bad UTF-8 1007, too big 1009,
 *    backpressure 1008, handler error 1011): the code we sent;
 *  - the connection dropped without a close frame, or our close was not
 *    answered in time: 1006.
 * Once closing has started (either way) sends fail and incoming data
 * frames are dropped.
 */
#ifndef MOONWS_WS_CONN_H
#define MOONWS_WS_CONN_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pmd.h"
#include "svc.h"
#include "ws_msg.h"

struct conn;
struct shbuf;
struct ws_subs;

enum ws_state {
    WS_OPEN,
    WS_CLOSING,                 /* our close frame is sent */
};

struct ws_pmd {
    struct pmd_inflater inf;
    struct pmd_deflater def;
    size_t threshold;
};

struct ws_conn {
    struct conn *c;
    struct svc *svc;
    struct ws_conn *svc_prev, *svc_next;
    struct ws_rx rx;
    struct ws_pmd *pmd;         /* NULL unless permessage-deflate was negotiated */
    struct ws_subs *subs;       /* pub/sub memberships (pubsub.c), NULL when none */
    char *head;                 /* a copy of the upgrade request head */
    char *protocol;             /* the negotiated sub-protocol or NULL */
    ev_tstamp last_rx;          /* the last complete frame (or idle timeout) */
    uint32_t head_len;
    int app_ref;                /* the runtime's handle (the caller), or -2 */
    uint8_t state;
    bool notified;              /* svc->ops->close has run */
};

/* Answers an upgrade request for svc on c: checks it, negotiates, runs the
 * onUpgrade gate, writes the 101 and switches c to WebSocket, then runs
 * onOpen. pool is the worker's (compression streams and scratch). Returns
 * false when it answered with a refusal instead. */
bool ws_conn_accept(struct conn *c, struct svc *svc, const struct http_exchange *ex,
                    struct pmd_pool *pool);

/* Sends a text/binary message (compressed when negotiated and worth it).
 * Returns false when the connection is closing or closed. Closes it 1008
 * instead of sending when its queue already holds more than the service's
 * max_backpressure. */
bool ws_send(struct ws_conn *wc, uint8_t opcode, const char *data, size_t len);
/* Sends a ping or pong (len <= 125); like ws_send, closes 1008 past
 * max_backpressure (automatic pongs too: a ping flood cannot grow the queue). */
bool ws_send_control(struct ws_conn *wc, uint8_t opcode, const char *data, size_t len);
/* Starts the closing handshake. Returns false when already closing. */
bool ws_close(struct ws_conn *wc, unsigned code, const char *reason, size_t len);
/* Fails the connection: a close frame with code, then the TCP close. */
void ws_fail(struct ws_conn *wc, unsigned code, const char *reason);

static inline bool ws_is_open(const struct ws_conn *wc)
{
    return wc && wc->state == WS_OPEN;
}
size_t ws_buffered(const struct ws_conn *wc);
/* The connection's id (unique in the process). */
uint64_t ws_id(const struct ws_conn *wc);
bool ws_secure(const struct ws_conn *wc);

/*
 * A message for many connections, encoded once: the plain frame and, when
 * some receivers negotiated compression without context takeover, one
 * compressed frame they all share. Receivers with context takeover get
 * their own compression.
 */
struct ws_bcast {
    uint8_t opcode;
    const char *data;
    size_t len;
    struct shbuf *plain;
    struct {                    /* compressed frames, built on first need */
        uint8_t window_bits;
        uint8_t level;
        struct shbuf *frame;
    } z[4];
    unsigned nz;
};

void ws_bcast_init(struct ws_bcast *b, uint8_t opcode, const char *data, size_t len);
/* Returns true when the frame was queued. */
bool ws_bcast_send(struct ws_bcast *b, struct ws_conn *wc);
void ws_bcast_done(struct ws_bcast *b);

#endif
