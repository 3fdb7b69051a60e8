/*
 * wsframe: RFC 6455 frame headers. See wsframe.h for the contract.
 */
#include "wsframe.h"

#include <string.h>

/* Opcodes 3-7 and 0xB-0xF are reserved (§5.2); a peer must fail on them. */
static bool opcode_known(unsigned op)
{
    return op <= WSF_BINARY || (op >= WSF_CLOSE && op <= WSF_PONG);
}

/* Reads the header field by field, returning -2 as soon as a field is not
 * all there, so one-byte feeds work the same as whole buffers. */
int wsf_parse(const uint8_t *buf, size_t n, struct wsf_header *h)
{
    if (n < 2)
        return -2;
    h->fin = (buf[0] & 0x80) != 0;
    h->rsv = (buf[0] >> 4) & 0x7;
    h->opcode = buf[0] & 0x0F;
    h->masked = (buf[1] & 0x80) != 0;
    uint64_t len = buf[1] & 0x7F;
    size_t pos = 2;

    if (!opcode_known(h->opcode))
        return -1;
    if (len == 126) {
        if (n < pos + 2)
            return -2;
        len = ((uint64_t)buf[2] << 8) | buf[3];
        pos += 2;
    } else if (len == 127) {
        if (n < pos + 8)
            return -2;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = (len << 8) | buf[2 + i];
        if (len >> 63)
            return -1;
        pos += 8;
    }
    if (h->opcode >= WSF_CLOSE && (!h->fin || len > WSF_CONTROL_MAX))
        return -1;
    if (h->masked) {
        if (n < pos + 4)
            return -2;
        memcpy(h->mask, buf + pos, 4);
        pos += 4;
    }
    h->len = len;
    return (int)pos;
}

/* Shortest encoding, as §5.2 requires ("the minimal number of bytes"). */
size_t wsf_header_len(uint64_t len, bool masked)
{
    size_t n = len < 126 ? 2 : len <= 0xFFFF ? 4 : 10;
    return masked ? n + 4 : n;
}

/* Byte 0 is FIN|opcode (no RSV: neither tool compresses), byte 1 the mask
 * bit and the length class, then the extended length in network order. */
size_t wsf_write(uint8_t *out, bool fin, unsigned opcode, uint64_t len,
                 const uint8_t *mask)
{
    size_t pos = 2;

    out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F));
    out[1] = mask ? 0x80 : 0;
    if (len < 126) {
        out[1] |= (uint8_t)len;
    } else if (len <= 0xFFFF) {
        out[1] |= 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        pos = 4;
    } else {
        out[1] |= 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        pos = 10;
    }
    if (mask) {
        memcpy(out + pos, mask, 4);
        pos += 4;
    }
    return pos;
}

/* The key repeated to 8 bytes in memory order, so one 64-bit XOR masks 8
 * payload bytes whatever the host's endianness. */
static uint64_t key8(const uint8_t key[4])
{
    uint8_t k[8];
    uint64_t w;

    memcpy(k, key, 4);
    memcpy(k + 4, key, 4);
    memcpy(&w, k, 8);
    return w;
}

/* Eight bytes per step; the memcpy calls compile to plain loads and stores
 * and keep unaligned payloads legal. */
void wsf_mask(uint8_t *p, size_t n, const uint8_t key[4])
{
    uint64_t k = key8(key);
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        w ^= k;
        memcpy(p + i, &w, 8);
    }
    for (; i < n; i++)
        p[i] ^= key[i & 3];
}

/* The copying twin of wsf_mask, for the client's send path. */
void wsf_mask_copy(uint8_t *restrict dst, const uint8_t *restrict src,
                   size_t n, const uint8_t key[4])
{
    uint64_t k = key8(key);
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= k;
        memcpy(dst + i, &w, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ key[i & 3];
}
