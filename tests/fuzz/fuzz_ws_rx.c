/*
 * ws_rx_feed, built four ways: FUZZ_CLIENT (receive as the client: frames
 * unmasked) and FUZZ_PMD (a permessage-deflate inflater set up).
 *
 * The stream is fed whole, one byte at a time and in pieces chosen by the
 * input, keeping unconsumed bytes as a connection does. All three must give
 * the same events and the same verdict (one exception below), and every
 * event must keep the
 * promises of ws_msg.h: text is UTF-8, control payloads are at most 125
 * bytes, close payloads are valid, no message passes max_message, and what
 * is left unconsumed is at most WS_HEADER_MAX + WS_CONTROL_MAX bytes.
 *
 * Everything the receiver buffers is charged to a memory budget too large
 * to refuse anything: once the receiver and the inflate pool are freed,
 * the budget must be back at 0 (no drift, whatever the input).
 *
 * The exception: zlib checks a back-reference against the history it holds
 * (the window, plus what the current inflate() call has written), not
 * against the window's size. With a window under 15 bits, a sender that
 * reaches further back than it agreed to is caught when its bytes come in
 * small pieces and may decode fine when they come at once. So there, and
 * only for "corrupt compressed data", one split may fail where another
 * goes on (and perhaps fails later, for another reason); the one that
 * failed so must have seen the same events as the other up to its end.
 * At 15 bits no distance deflate can express is too far: no exception.
 *
 * Input: 1 byte of settings (max_message; window bits and takeover with
 * FUZZ_PMD), 1 byte of piece-size seed and stop pattern, then the stream.
 */
#include "fuzz.h"

#include "proto/pmd.h"
#include "proto/ws_msg.h"
#include "util/membudget.h"

#ifndef FUZZ_CLIENT
#define FUZZ_CLIENT 0
#endif
#ifndef FUZZ_PMD
#define FUZZ_PMD 0
#endif

#if FUZZ_PMD
/* The streams without context takeover come from here, as from a worker's. */
static struct pmd_pool pool;
#endif

struct run {
    uint64_t hash;              /* FNV-1a over every event */
    size_t events;
    unsigned stop_mod;          /* a callback returns false when events % 8 == stop_mod */
    bool stopped;
    size_t max_message;
    bool failed;
    uint16_t code;
    const char *reason;
    uint64_t *hashes;           /* hash after each event */
    size_t cap;
};

static void mix(struct run *r, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        r->hash = (r->hash ^ b[i]) * 0x100000001b3ull;
}

static bool event(struct run *r, char kind, uint8_t op, const char *data, size_t len)
{
    mix(r, &kind, 1);
    mix(r, &op, 1);
    mix(r, &len, sizeof len);
    mix(r, data, len);
    if (r->events == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 64;
        r->hashes = realloc(r->hashes, r->cap * sizeof *r->hashes);
        FUZZ_ASSERT(r->hashes != NULL);
    }
    r->hashes[r->events] = r->hash;
    bool go_on = r->events++ % 8 != r->stop_mod;
    if (!go_on)
        r->stopped = true;
    return go_on;
}

static bool on_message(void *ctx, uint8_t op, char *data, size_t len)
{
    struct run *r = ctx;
    FUZZ_ASSERT(op == WS_OP_TEXT || op == WS_OP_BINARY);
    FUZZ_ASSERT(len <= r->max_message);
    if (op == WS_OP_TEXT)
        FUZZ_ASSERT(utf8_valid(data, len));
    return event(r, 'M', op, data, len);
}

static bool on_control(void *ctx, uint8_t op, char *data, size_t len)
{
    struct run *r = ctx;
    FUZZ_ASSERT(op == WS_OP_CLOSE || op == WS_OP_PING || op == WS_OP_PONG);
    FUZZ_ASSERT(len <= WS_CONTROL_MAX);
    if (op == WS_OP_CLOSE) {
        FUZZ_ASSERT(len != 1);
        if (len >= 2) {
            unsigned code;
            const char *reason;
            size_t rl;
            ws_close_payload_parse(data, len, &code, &reason, &rl);
            FUZZ_ASSERT(ws_close_code_valid(code));
            FUZZ_ASSERT(utf8_valid(reason, rl));
        }
    }
    return event(r, 'C', op, data, len);
}

static const struct ws_rx_events events = { on_message, on_control };

static struct membudget budget = { .limit = (size_t)1 << 40 };

static void run(const uint8_t *in, size_t n, uint8_t settings, uint8_t seed, int mode,
                struct run *r)
{
    static const size_t maxes[4] = { 0, 125, 4096, 70000 };
    memset(r, 0, sizeof *r);
    r->hash = 0xcbf29ce484222325ull;
    r->stop_mod = seed >> 5;                    /* 0..7: 7 means every eighth */
    r->max_message = maxes[settings & 3];

    struct ws_rx rx;
    memset(&rx, 0, sizeof rx);
    rx.max_message = r->max_message;
    rx.client = FUZZ_CLIENT;
#if FUZZ_PMD
    struct pmd_params params;
    params.server_no_context_takeover = settings & 0x10;
    params.client_no_context_takeover = settings & 0x10;
    params.server_max_window_bits = (uint8_t)(8 + ((settings >> 2) & 3) * 2 + 1);
    params.client_max_window_bits = params.server_max_window_bits;
    struct pmd_conf conf = PMD_CONF_DEFAULT;
    struct pmd_inflater inf;
    struct pmd_deflater def;
    pmd_init(&params, &conf, !FUZZ_CLIENT, &pool, &inf, &def);
    inf.mem = &budget;
    rx.inf = &inf;
#endif
    struct buf pend = { 0 };
    size_t off = 0;
    unsigned s = seed;
    while (off < n) {
        size_t k = mode == 0 ? n - off : mode == 1 ? 1 : 1 + (s = s * 1103515245u + 12345u) % 97;
        if (k > n - off)
            k = n - off;
        buf_append(&pend, in + off, k);
        off += k;
        for (;;) {
            struct ws_rx_error err = { 0, NULL, false };
            r->stopped = false;
            ssize_t used = ws_rx_feed(&rx, &budget, pend.data, pend.len, &events, r, &err);
            FUZZ_ASSERT(rx.msg.len <= r->max_message + 1);
            if (used < 0) {
                FUZZ_ASSERT(err.code == WS_CLOSE_PROTOCOL || err.code == WS_CLOSE_INVALID_DATA ||
                            err.code == WS_CLOSE_TOO_BIG);
                FUZZ_ASSERT(err.reason != NULL);
                r->failed = true;
                r->code = err.code;
                r->reason = err.reason;
                goto out;
            }
            FUZZ_ASSERT((size_t)used <= pend.len);
            buf_consume(&pend, (size_t)used);
            /* After a stop the rest is fed again, as the next read would. */
            if (!r->stopped || pend.len == 0)
                break;
        }
        FUZZ_ASSERT(pend.len <= WS_HEADER_MAX + WS_CONTROL_MAX);
    }
out:
    buf_free(&pend);
    ws_rx_free(&rx, &budget);
#if FUZZ_PMD
    pmd_free(&inf, &def);
    pmd_pool_free(&pool);
#endif
    FUZZ_ASSERT(membudget_used(&budget) == 0);
}

static bool too_far_back(const struct run *r)
{
    return r->failed && r->code == WS_CLOSE_INVALID_DATA &&
           strcmp(r->reason, "corrupt compressed data") == 0;
}

/* Two splits of one stream saw the same thing (see the exception above). */
static void agree(const struct run *x, const struct run *y, bool small_window)
{
    bool same = x->events == y->events && x->hash == y->hash && x->failed == y->failed &&
                x->code == y->code;
    if (small_window && !same && (too_far_back(x) || too_far_back(y))) {
        const struct run *f = too_far_back(x) && (!too_far_back(y) || x->events <= y->events)
                                  ? x : y;
        const struct run *o = f == x ? y : x;
        FUZZ_ASSERT(f->events <= o->events);
        FUZZ_ASSERT(f->events == 0 || o->hashes[f->events - 1] == f->hashes[f->events - 1]);
        return;
    }
    FUZZ_ASSERT(x->events == y->events);
    FUZZ_ASSERT(x->hash == y->hash);
    FUZZ_ASSERT(x->failed == y->failed);
    FUZZ_ASSERT(x->code == y->code);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > 64 * 1024)
        return 0;
    const uint8_t *in = data + 2;
    size_t n = size - 2;
    struct run a, b, c;
    run(in, n, data[0], data[1], 0, &a);
    run(in, n, data[0], data[1], 1, &b);
    run(in, n, data[0], data[1], 2, &c);
    bool small_window = FUZZ_PMD && ((data[0] >> 2) & 3) != 3;
    agree(&a, &b, small_window);
    agree(&a, &c, small_window);
    agree(&b, &c, small_window);
    free(a.hashes);
    free(b.hashes);
    free(c.hashes);
    return 0;
}
