/*
 * http_chunked_feed: the same input fed whole, one byte at a time and in
 * pieces chosen by the input must give the same body, the same verdict and
 * the same consumed count; the body never passes max.
 *
 * Input: 2 bytes of max (little-endian, 0 = LIM_HTTP_BODY_MAX), 1 byte of
 * piece-size seed, then the chunked stream.
 */
#include "fuzz.h"

#include "proto/http_parse.h"

struct result {
    ssize_t consumed;           /* -1: malformed */
    int done;
    struct buf out;
};

static void run(const char *in, size_t n, size_t max, unsigned seed, int mode,
                struct result *r)
{
    struct http_chunked d;
    memset(&d, 0, sizeof d);
    memset(r, 0, sizeof *r);
    size_t off = 0;
    while (off < n && !d.done) {
        size_t k = mode == 0 ? n - off : mode == 1 ? 1 : 1 + (seed = seed * 1103515245u + 12345u) % 13;
        if (k > n - off)
            k = n - off;
        char *piece = fuzz_dup(in + off, k);
        ssize_t c = http_chunked_feed(&d, piece, k, &r->out, max);
        free(piece);
        if (c < 0) {
            r->consumed = -1;
            return;
        }
        FUZZ_ASSERT((size_t)c <= k);
        FUZZ_ASSERT((size_t)c == k || d.done);
        FUZZ_ASSERT(r->out.len <= max);
        off += (size_t)c;
    }
    r->consumed = (ssize_t)off;
    r->done = d.done;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    size_t max = (size_t)data[0] | (size_t)data[1] << 8;
    if (max == 0)
        max = LIM_HTTP_BODY_MAX;
    unsigned seed = data[2];
    const char *in = (const char *)data + 3;
    size_t n = size - 3;
    struct result a, b, c;
    run(in, n, max, seed, 0, &a);
    run(in, n, max, seed, 1, &b);
    run(in, n, max, seed, 2, &c);
    FUZZ_ASSERT(a.consumed == b.consumed && a.consumed == c.consumed);
    FUZZ_ASSERT(a.done == b.done && a.done == c.done);
    if (a.consumed >= 0) {
        FUZZ_ASSERT(a.out.len == b.out.len && a.out.len == c.out.len);
        FUZZ_ASSERT(a.out.len == 0 || (memcmp(a.out.data, b.out.data, a.out.len) == 0 &&
                                       memcmp(a.out.data, c.out.data, a.out.len) == 0));
    }
    buf_free(&a.out);
    buf_free(&b.out);
    buf_free(&c.out);
    return 0;
}
