/*
 * wsframe: RFC 6455 §5.2 frame headers as bytes, for the bench tools only
 * (wsload is a client, rawecho a server). It parses one header, writes one,
 * and applies the XOR mask. No sockets, no clock, no allocation.
 *
 * It deliberately shares nothing with src/: a benchmark that reused the
 * server's codec could not catch the server's framing bugs.
 */
#ifndef BENCH_WSFRAME_H
#define BENCH_WSFRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    WSF_CONT = 0x0,
    WSF_TEXT = 0x1,
    WSF_BINARY = 0x2,
    WSF_CLOSE = 0x8,
    WSF_PING = 0x9,
    WSF_PONG = 0xA,
};

/* 2 bytes, 8 of extended length, 4 of mask. */
#define WSF_HEADER_MAX 14
/* Control frames carry at most this many payload bytes (§5.5). */
#define WSF_CONTROL_MAX 125

struct wsf_header {
    bool fin;
    unsigned rsv;           /* the three RSV bits, RSV1 = 4 */
    unsigned opcode;
    bool masked;
    uint8_t mask[4];        /* valid when masked */
    uint64_t len;           /* payload length */
};

/*
 * Parses the frame header at buf[0..n). Returns the header length (2..14)
 * and fills *h; -2 when buf holds less than the whole header; -1 when the
 * header breaks §5.2 whatever the context: an unknown opcode, a control
 * frame that is fragmented or longer than 125 bytes, a 64-bit length with
 * the top bit set. The caller checks RSV and the mask bit for its role, and
 * whether the payload has arrived too.
 */
int wsf_parse(const uint8_t *buf, size_t n, struct wsf_header *h);

/*
 * Writes a header for a payload of len bytes into out (room for
 * WSF_HEADER_MAX) using the shortest length encoding. mask NULL writes a
 * server frame, otherwise the 4 key bytes go into the header. Returns the
 * number of bytes written.
 */
size_t wsf_write(uint8_t *out, bool fin, unsigned opcode, uint64_t len,
                 const uint8_t *mask);

/* The header length wsf_write would produce. */
size_t wsf_header_len(uint64_t len, bool masked);

/* XORs p[0..n) in place with the key; the payload starts at p (phase 0). */
void wsf_mask(uint8_t *p, size_t n, const uint8_t key[4]);

/* dst[i] = src[i] ^ key[i % 4]: masks while copying, so a client writes its
 * payload once instead of copy-then-mask. dst and src must not overlap. */
void wsf_mask_copy(uint8_t *restrict dst, const uint8_t *restrict src,
                   size_t n, const uint8_t key[4]);

#endif
