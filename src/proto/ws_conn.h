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
struct ws_subs;
struct metrics_path_cells;

enum ws_state {
    WS_OPEN,
    WS_CLOSING,                 /* our close frame is sent */
};
_Static_assert(WS_CLOSING == 1, "ws_conn.state holds a ws_state in one bit: widen it first");

struct ws_pmd {
    struct pmd_inflater inf;    /* first: ws_rx.inf points here (ws_pmd_of) */
    struct pmd_deflater def;
    size_t threshold;
};
_Static_assert(offsetof(struct ws_pmd, inf) == 0, "ws_pmd_of finds the state from its inflater");

/* A connection's own figures for its traffic lines (util/traffic_log.h),
 * made only while they are wanted (--access-log, or --log-level debug):
 * an idle connection does not pay for them otherwise. */
struct ws_traffic {
    /* "ip:port" or "[v6]:port", taken at the open: at most 1 + 45 + 2 + 5
     * bytes and the NUL, and 56 keeps the struct at 104 bytes with
     * close_code. */
    char remote[56];
    ev_tstamp opened;
    uint64_t msgs_in, bytes_in, msgs_out, bytes_out;
    uint16_t close_code;        /* what svc->ops->close heard, for the close line */
};

/* What only some connections have, out of the block every connection
 * holds (an idle connection's memory is mostly its ws_conn): made the
 * first time one of these is set, freed with the connection. Reached
 * through the accessors below, never by hand. */
struct ws_extra {
    char *protocol;             /* the negotiated sub-protocol, or NULL */
    struct ws_subs *subs;       /* pub/sub memberships (pubsub.c), NULL when none */
    struct ws_traffic *tr;      /* NULL unless traffic lines are wanted */
};

struct ws_conn {
    struct conn *c;
    struct svc *svc;
    struct ws_conn *svc_prev, *svc_next;
    /* rx.inf is the negotiated permessage-deflate state's inflater, or
     * NULL: the state itself is ws_pmd_of(wc). */
    struct ws_rx rx;
    struct ws_extra *x;         /* NULL until needed (ws_extra) */
    ev_tstamp last_rx;          /* the last complete frame (or idle timeout) */
    /* The counters of the path it opened on, in its worker's block, for
     * its whole life (util/metrics.h). */
    struct metrics_path_cells *mc;
    int app_ref;                /* the runtime's handle (the caller), or -2 */
    /* Packed with app_ref into 8 bytes. The kept head is cut from a
     * request head of at most LIM_HTTP_HEAD_CEILING bytes (ws_upgrade.c
     * checks that 30 bits hold it). */
    uint32_t head_len : 30;
    uint32_t state : 1;         /* enum ws_state */
    uint32_t notified : 1;      /* svc->ops->close has run */
    char head[];                /* a copy of the upgrade request head (head_len bytes),
                                   in the same allocation */
};

/* The permessage-deflate state, or NULL when it was not negotiated. */
static inline struct ws_pmd *ws_pmd_of(const struct ws_conn *wc)
{
    return (struct ws_pmd *)wc->rx.inf;     /* inf is its first member */
}

/* The connection's side struct, made now if it has none. */
struct ws_extra *ws_extra(struct ws_conn *wc);

/* The negotiated sub-protocol, or NULL. */
static inline const char *ws_protocol(const struct ws_conn *wc)
{
    return wc->x ? wc->x->protocol : NULL;
}
/* The pub/sub memberships (pubsub.c), or NULL. */
static inline struct ws_subs *ws_subs(const struct ws_conn *wc)
{
    return wc->x ? wc->x->subs : NULL;
}
/* The traffic-line figures, or NULL when traffic lines are not wanted. */
static inline struct ws_traffic *ws_traffic(const struct ws_conn *wc)
{
    return wc->x ? wc->x->tr : NULL;
}

/* The upgrade (ws_upgrade.c) has filled wc (c, svc, rx.inf, protocol, head,
 * app_ref) and queued the 101: wc joins its service's connections (and
 * holds a reference to it), c speaks WebSocket from now on, and its id is
 * open (util/connid.h) and counted (ws_count_open) until its closing
 * starts. */
void ws_conn_start(struct ws_conn *wc);

/* True when a frame may be queued now: the connection is open and its
 * queue within the service's max_backpressure — past it the connection is
 * closed 1008 here, and this returns false. */
bool ws_can_send(struct ws_conn *wc);
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
/* The path the client asked for at the upgrade, percent-decoded, from the
 * kept head (at most cap - 1 bytes); its length. */
size_t ws_opened_path(const struct ws_conn *wc, char *out, size_t cap);
/* Adds delta to the process-wide counts (util/pathcount.h) the connection
 * is in: its service's path, and the concrete path under a service path
 * with parameters. Done for every connection as it opens (+1) and as its
 * closing starts (-1); a service that moves takes its open connections
 * from the old path's counts (-1) to the new one's (+1) around the move. */
void ws_count_open(struct ws_conn *wc, long delta);
bool ws_secure(const struct ws_conn *wc);
/* A message of len payload bytes left (or was queued) for wc: counted in
 * its metrics and its own figures. For ws_send and the broadcast. */
void ws_count_sent(struct ws_conn *wc, uint8_t opcode, size_t len);

#endif
