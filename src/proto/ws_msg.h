/*
 * ws_msg: the receiving half of RFC 6455 above the frame codec.
 *
 * It turns a byte stream into messages and control frames: fragmentation
 * with control frames interleaved, masking rules for either side, RSV bits,
 * opcodes, control-frame limits, close-payload validation, UTF-8 of text
 * messages checked as bytes arrive (failing on the first bad byte, even
 * across fragments), and max_message checked against each frame header so
 * the excess is never buffered. Compressed messages (RFC 7692) are inflated
 * through pmd as their frames arrive. The reassembly buffer is charged to
 * the budget passed to each call (mem) as it grows, and given back when the
 * message is delivered or the receiver freed; the caller passes the same
 * budget every time (NULL: not counted). A message that would grow the
 * buffer past the budget fails with 1008 "server busy".
 *
 * It owns no socket: the caller feeds bytes and receives events. State
 * survives between calls, so bytes may arrive one at a time.
 */
#ifndef MOONWS_WS_MSG_H
#define MOONWS_WS_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../util/buf.h"
#include "../util/utf8.h"
#include "ws_frame.h"

struct membudget;
struct pmd_inflater;

struct ws_rx {
    size_t max_message;         /* bytes after reassembly and inflation */
    struct pmd_inflater *inf;   /* non-NULL when permessage-deflate was negotiated */
    uint64_t remaining;         /* payload bytes of the data frame arriving still to come */
    struct buf msg;             /* the message being assembled; released after each delivery */
    /* Complete frames received (data, continuation, control), modulo 2^32:
     * only compared, to see that some arrived. */
    uint32_t frames;
    utf8_state utf8;
    uint8_t mask[4];
    /* Every idle connection holds one of these (inside its ws_conn): the
     * small fields are packed so it stays at 64 bytes. The budget for the
     * reassembly buffer is not kept here but passed to each call (it is
     * one object for the whole process), and the compressed length of a
     * message lives in its inflater (pmd_inflater.msg_zlen). */
    uint8_t phase;              /* mask position of the next payload byte */
    uint8_t msg_op;             /* the message being assembled: 0 between messages,
                                   else WS_OP_TEXT/BINARY */
    bool client : 1;            /* we are the client: frames arrive unmasked */
    /* The data frame whose payload is arriving. */
    bool in_frame : 1;
    bool frame_fin : 1;
    /* The message being assembled. */
    bool msg_deflated : 1;
    bool msg_zdata : 1;         /* compressed payload bytes of it have arrived */
};

/* The compressed payload bytes of the message being delivered (for the
 * metrics, valid in the message callback of a compressed message); stops
 * at UINT32_MAX. */
uint32_t ws_rx_msg_zlen(const struct ws_rx *rx);

/* Why the peer must be failed: the close code and a short reason. */
struct ws_rx_error {
    uint16_t code;
    const char *reason;
    bool busy;                  /* the budget refused memory (1008 "server busy") */
};

/*
 * Callbacks. data is writable and valid only during the call. A callback
 * returns false to stop the feed right after the current frame (the
 * connection is closing).
 */
struct ws_rx_events {
    /* A complete text or binary message; text is valid UTF-8. */
    bool (*message)(void *ctx, uint8_t opcode, char *data, size_t len);
    /* A ping, pong or close frame. A close payload has been validated
     * (absent, or a valid code followed by a UTF-8 reason). */
    bool (*control)(void *ctx, uint8_t opcode, char *data, size_t len);
};

/* Feeds n bytes; unmasks them in place. Returns the bytes consumed — the
 * rest (an incomplete header or control frame, at most WS_HEADER_MAX +
 * WS_CONTROL_MAX bytes) must be fed again with more data — or -1 with err
 * set when the peer broke the protocol. */
ssize_t ws_rx_feed(struct ws_rx *rx, struct membudget *mem, char *data, size_t n,
                   const struct ws_rx_events *ev, void *ctx, struct ws_rx_error *err);

/* Releases the reassembly buffer, giving its memory back to the budget
 * (not the inflater, which pmd owns). */
void ws_rx_free(struct ws_rx *rx, struct membudget *mem);

/* Parses a validated close payload into code (1005 when absent) and reason. */
void ws_close_payload_parse(const char *data, size_t len, unsigned *code,
                            const char **reason, size_t *reason_len);

#endif
