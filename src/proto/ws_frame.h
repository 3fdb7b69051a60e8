/*
 * ws_frame: the RFC 6455 §5.2 frame codec. It parses and writes frame
 * headers and (un)masks payloads; it never touches a socket, a clock or a
 * message. Rules that need context (negotiated extensions, fragmentation
 * state) live in ws_msg.
 */
#ifndef MOONWS_WS_FRAME_H
#define MOONWS_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ws_opcode {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

#define WS_RSV1 0x4             /* in ws_frame_header.rsv: bit 0x40 of byte 0 */
#define WS_RSV2 0x2
#define WS_RSV3 0x1

/* The largest header: 2 bytes, 8 of extended length, 4 of mask. */
#define WS_HEADER_MAX 14
/* Control frames carry at most this many payload bytes (§5.5). */
#define WS_CONTROL_MAX 125

/* Close codes (§7.4.1). */
enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005,  /* never on the wire */
    WS_CLOSE_ABNORMAL = 1006,   /* never on the wire */
    WS_CLOSE_INVALID_DATA = 1007,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_EXTENSION = 1010,
    WS_CLOSE_INTERNAL = 1011,
};

struct ws_frame_header {
    bool fin;
    uint8_t rsv;                /* RSV1..3 as a 3-bit number: WS_RSV1 | ... */
    uint8_t opcode;
    bool masked;
    uint8_t mask[4];
    uint64_t len;               /* payload length */
};

#define WS_FRAME_PARTIAL 0
#define WS_FRAME_ERROR (-1)

/* Parses a header at p. Returns its length, WS_FRAME_PARTIAL when more bytes
 * are needed, or WS_FRAME_ERROR when the 64-bit length has its top bit set
 * (§5.2). */
int ws_frame_parse(const uint8_t *p, size_t n, struct ws_frame_header *h);

/* Writes a header for a payload of len bytes into out (WS_HEADER_MAX bytes
 * of room); mask NULL means unmasked (server to client). Returns its length. */
size_t ws_frame_header_write(uint8_t *out, bool fin, uint8_t rsv, uint8_t opcode,
                             uint64_t len, const uint8_t *mask);

/* The header length a payload of len bytes needs. */
static inline size_t ws_frame_header_len(uint64_t len, bool masked)
{
    return (len < 126 ? 2 : len <= 0xffff ? 4 : 10) + (masked ? 4 : 0);
}

/* XORs n bytes with the mask, starting at mask position `phase` (0..3);
 * returns the phase after them. In place when dst == src. */
unsigned ws_mask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4],
                 unsigned phase);

static inline bool ws_opcode_is_control(uint8_t op)
{
    return op & 0x8;
}

/* True for a code a peer may send in a close frame (§7.4.1, §7.4.2 and the
 * IANA registry: 1000-1003, 1007-1014, 3000-4999). */
bool ws_close_code_valid(unsigned code);

#endif
