#include "ws_frame.h"

#include <string.h>

#include "../util/vec16.h"

int ws_frame_parse(const uint8_t *p, size_t n, struct ws_frame_header *h)
{
    if (n < 2)
        return WS_FRAME_PARTIAL;
    h->fin = p[0] & 0x80;
    h->rsv = (p[0] >> 4) & 0x7;
    h->opcode = p[0] & 0x0f;
    h->masked = p[1] & 0x80;
    uint64_t len = p[1] & 0x7f;
    size_t hl = 2;
    if (len == 126) {
        if (n < 4)
            return WS_FRAME_PARTIAL;
        len = (uint64_t)p[2] << 8 | p[3];
        hl = 4;
    } else if (len == 127) {
        if (n < 10)
            return WS_FRAME_PARTIAL;
        len = 0;
        for (int i = 2; i < 10; i++)
            len = len << 8 | p[i];
        if (len >> 63)
            return WS_FRAME_ERROR;
        hl = 10;
    }
    if (h->masked) {
        if (n < hl + 4)
            return WS_FRAME_PARTIAL;
        memcpy(h->mask, p + hl, 4);
        hl += 4;
    }
    h->len = len;
    return (int)hl;
}

size_t ws_frame_header_write(uint8_t *out, bool fin, uint8_t rsv, uint8_t opcode,
                             uint64_t len, const uint8_t *mask)
{
    size_t n = 2;
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv & 7) << 4 | (opcode & 0x0f));
    uint8_t mbit = mask ? 0x80 : 0;
    if (len < 126) {
        out[1] = (uint8_t)(mbit | len);
    } else if (len <= 0xffff) {
        out[1] = mbit | 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        n = 4;
    } else {
        out[1] = mbit | 127;
        for (int i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

unsigned ws_mask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4],
                 unsigned phase)
{
    unsigned k = phase & 3;
    size_t i = 0;
    /* Bring the mask position to zero so whole vectors line up with the mask. */
    for (; i < n && k != 0; i++, k = (k + 1) & 3)
        dst[i] = src[i] ^ mask[k];
    if (n - i >= 16) {
        vec16 m = vec16_splat4(mask);
        for (; n - i >= 64; i += 64) {
            vec16 a = vec16_load(src + i), b = vec16_load(src + i + 16);
            vec16 c = vec16_load(src + i + 32), d = vec16_load(src + i + 48);
            vec16_store(dst + i, a ^ m);
            vec16_store(dst + i + 16, b ^ m);
            vec16_store(dst + i + 32, c ^ m);
            vec16_store(dst + i + 48, d ^ m);
        }
        for (; n - i >= 16; i += 16)
            vec16_store(dst + i, vec16_load(src + i) ^ m);
    }
    for (; i < n; i++, k = (k + 1) & 3)
        dst[i] = src[i] ^ mask[k];
    return k;
}

bool ws_close_code_valid(unsigned code)
{
    if (code >= 3000 && code <= 4999)
        return true;
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014);
}
