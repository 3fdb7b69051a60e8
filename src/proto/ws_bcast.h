/*
 * ws_bcast: a message for many WebSocket connections of one worker (a
 * broadcast, a publish), encoded once.
 */
#ifndef MOONWS_WS_BCAST_H
#define MOONWS_WS_BCAST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct shbuf;
struct ws_conn;
struct metrics_path_cells;

/*
 * The message, encoded once: the plain frame and, when some receivers
 * negotiated compression without context takeover, one compressed frame
 * they all share (per window and level). Receivers with context takeover
 * get their own compression.
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
    /* Receivers counted in the metrics as one run of the same path's
     * counters (most broadcasts reach one path): one addition per run,
     * not per receiver. */
    struct metrics_path_cells *run_mc;
    uint64_t run_n;
};

/* data must stay valid until ws_bcast_done. */
void ws_bcast_init(struct ws_bcast *b, uint8_t opcode, const char *data, size_t len);
/* Queues the frame on wc (by reference). Returns true when it was queued:
 * false for a connection that is closing, or that is closed 1008 now for
 * backpressure (ws_can_send). */
bool ws_bcast_send(struct ws_bcast *b, struct ws_conn *wc);
void ws_bcast_done(struct ws_bcast *b);

#endif
