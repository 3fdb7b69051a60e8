/*
 * utf8_feed / utf8_valid against a reference validator written from the
 * RFC 3629 §4 ABNF: same verdict, failure at the same byte (fed one byte at
 * a time), and the same answer for any split of the input.
 */
#include "fuzz.h"

#include <stdbool.h>

#include "util/utf8.h"

/* Index of the first byte that cannot continue a valid sequence, or n;
 * *complete: the input ends on a character boundary. */
static size_t ref_first_bad(const unsigned char *p, size_t n, bool *complete)
{
    *complete = true;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        unsigned need, lo = 0x80, hi = 0xBF;
        if (c <= 0x7F) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            lo = c == 0xE0 ? 0xA0 : 0x80;
            hi = c == 0xED ? 0x9F : 0xBF;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            lo = c == 0xF0 ? 0x90 : 0x80;
            hi = c == 0xF4 ? 0x8F : 0xBF;
        } else {
            return i;
        }
        i++;
        for (unsigned k = 0; k < need; k++, i++) {
            if (i == n) {
                *complete = false;
                return n;
            }
            if (p[i] < lo || p[i] > hi)
                return i;
            lo = 0x80;
            hi = 0xBF;
        }
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *p = (unsigned char *)fuzz_dup(data, size);
    bool complete;
    size_t bad = ref_first_bad(p, size, &complete);

    FUZZ_ASSERT(utf8_valid(p, size) == (bad == size && complete));

    utf8_state st = 0;
    bool whole = utf8_feed(&st, p, size);
    FUZZ_ASSERT(whole == (bad == size));
    if (whole)
        FUZZ_ASSERT(utf8_complete(st) == complete);

    st = 0;
    size_t at = size;
    for (size_t i = 0; i < size; i++) {
        if (!utf8_feed(&st, p + i, 1)) {
            at = i;
            break;
        }
    }
    FUZZ_ASSERT(at == bad);

    /* Split at a point the input chooses. */
    size_t cut = size ? p[0] % (size + 1) : 0;
    st = 0;
    bool a = utf8_feed(&st, p, cut);
    FUZZ_ASSERT(a == (bad >= cut));
    if (a) {
        bool b = utf8_feed(&st, p + cut, size - cut);
        FUZZ_ASSERT(b == (bad == size));
        if (b)
            FUZZ_ASSERT(utf8_complete(st) == complete);
    }
    free(p);
    return 0;
}
