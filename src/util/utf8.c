#include "utf8.h"

#include <string.h>

#include "vec16.h"

/*
 * The state packs three bytes: how many continuation bytes are still needed,
 * and the inclusive range the next one must fall in. The range is narrower
 * than 80..BF only right after E0 (no overlongs), ED (no surrogates), F0 (no
 * overlongs) and F4 (nothing above U+10FFFF).
 */
#define ST_PACK(need, lo, hi) ((uint32_t)(need) | (uint32_t)(lo) << 8 | (uint32_t)(hi) << 16)
#define ST_NEED(s) ((s) & 0xff)
#define ST_LO(s) (((s) >> 8) & 0xff)
#define ST_HI(s) (((s) >> 16) & 0xff)

bool utf8_feed(utf8_state *st, const void *data, size_t n)
{
    const unsigned char *p = data;
    uint32_t s = *st;
    size_t i = 0;

    while (i < n) {
        if (s == 0) {
            /* ASCII runs dominate real text: skip them 64, then 8 bytes at
             * a time (one test of the high bits of four vectors). */
            while (i + 64 <= n) {
                vec16 v = vec16_load(p + i) | vec16_load(p + i + 16) |
                          vec16_load(p + i + 32) | vec16_load(p + i + 48);
                if (vec16_any_high(v))
                    break;
                i += 64;
            }
            while (i + 8 <= n) {
                uint64_t v;
                memcpy(&v, p + i, 8);
                if (v & 0x8080808080808080ULL)
                    break;
                i += 8;
            }
            if (i == n)
                break;
            unsigned c = p[i++];
            if (c < 0x80)
                continue;
            if (c < 0xC2)
                return false;           /* stray continuation, or overlong C0/C1 */
            if (c < 0xE0)
                s = ST_PACK(1, 0x80, 0xBF);
            else if (c < 0xF0)
                s = ST_PACK(2, c == 0xE0 ? 0xA0 : 0x80, c == 0xED ? 0x9F : 0xBF);
            else if (c < 0xF5)
                s = ST_PACK(3, c == 0xF0 ? 0x90 : 0x80, c == 0xF4 ? 0x8F : 0xBF);
            else
                return false;
        } else {
            unsigned c = p[i++];
            if (c < ST_LO(s) || c > ST_HI(s))
                return false;
            s = ST_NEED(s) == 1 ? 0 : ST_PACK(ST_NEED(s) - 1, 0x80, 0xBF);
        }
    }
    *st = s;
    return true;
}

bool utf8_valid(const void *p, size_t n)
{
    utf8_state st = 0;
    return utf8_feed(&st, p, n) && st == 0;
}
