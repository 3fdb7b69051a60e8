#include "siphash.h"

#include <string.h>

static inline uint64_t rotl(uint64_t x, unsigned b)
{
    return (x << b) | (x >> (64 - b));
}

/* Little-endian 64-bit load, whatever the host's byte order. */
static inline uint64_t load64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

struct sipstate {
    uint64_t v0, v1, v2, v3;
};

static inline void sipround(struct sipstate *s)
{
    s->v0 += s->v1;
    s->v1 = rotl(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = rotl(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rotl(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = rotl(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = rotl(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = rotl(s->v2, 32);
}

static inline void compress(struct sipstate *s, uint64_t m)
{
    s->v3 ^= m;
    sipround(s);
    sipround(s);
    s->v0 ^= m;
}

uint64_t siphash24(const uint8_t k[16], const void *p, size_t n)
{
    const uint8_t *in = p;
    uint64_t k0 = load64(k), k1 = load64(k + 8);
    /* "somepseudorandomlygeneratedbytes", the constants of the paper. */
    struct sipstate s = {
        k0 ^ 0x736f6d6570736575ULL,
        k1 ^ 0x646f72616e646f6dULL,
        k0 ^ 0x6c7967656e657261ULL,
        k1 ^ 0x7465646279746573ULL,
    };
    size_t whole = n & ~(size_t)7;
    for (size_t i = 0; i < whole; i += 8)
        compress(&s, load64(in + i));
    uint8_t last[8] = { 0 };
    memcpy(last, in + whole, n - whole);
    last[7] = (uint8_t)n;           /* the length's low byte closes the input */
    compress(&s, load64(last));
    s.v2 ^= 0xff;
    for (int i = 0; i < 4; i++)
        sipround(&s);
    return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}
