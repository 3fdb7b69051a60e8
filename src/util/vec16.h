/*
 * vec16: sixteen bytes handled as one value, through the compiler's vector
 * extension (GCC and Clang): an SSE2 register on x86-64, NEON on arm64,
 * pairs of words elsewhere. Loads and stores go through memcpy, so any
 * alignment is fine. For the byte loops of the hot paths (unmasking,
 * UTF-8's ASCII runs).
 */
#ifndef MOONWS_VEC16_H
#define MOONWS_VEC16_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

typedef uint8_t vec16 __attribute__((vector_size(16)));

static inline vec16 vec16_load(const void *p)
{
    vec16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void vec16_store(void *p, vec16 v)
{
    memcpy(p, &v, sizeof v);
}

/* The four bytes b repeated four times (a broadcast of one word: no byte
 * stores that a vector load would then wait on). */
static inline vec16 vec16_splat4(const uint8_t b[4])
{
    typedef uint32_t u32x4 __attribute__((vector_size(16)));
    uint32_t w;
    memcpy(&w, b, sizeof w);
    u32x4 v = { w, w, w, w };
    return (vec16)v;
}

/* Whether any byte of v has its high bit set (is not ASCII). */
static inline bool vec16_any_high(vec16 v)
{
    uint64_t w[2];
    memcpy(w, &v, sizeof w);
    return ((w[0] | w[1]) & 0x8080808080808080ULL) != 0;
}

#endif
