/*
 * ws_rx_feed (src/proto/ws_msg.h): the receiving message layer, on the
 * server side (frames must be masked) and the client side (must not be),
 * with and without a permessage-deflate inflater (src/proto/pmd.h).
 *
 * Every input is fed whole, one byte at a time, at every split point (or in
 * a few chunk sizes for big inputs), the way a connection would: unconsumed
 * bytes are kept and fed again with the next read. The transcripts of
 * events and the final verdict must be identical for all of them.
 */
#include "check.h"

#include <stdint.h>

#include "proto/pmd.h"
#include "proto/ws_msg.h"
#include "util/membudget.h"

/* The streams without context takeover come from here, as from a worker's. */
static struct pmd_pool pool;

/* ---- the receiver under test ---- */

struct side {
    bool client;                /* we receive as the client: frames unmasked */
    size_t max_message;
    bool pmd;                   /* an inflater is set up */
    struct pmd_params params;
    struct membudget *mem;      /* the budget of the buffer and the inflater, or NULL */
};

static const struct side server = { false, 1 << 20, false, { false, false, 15, 15 }, NULL };
static const struct side client = { true, 1 << 20, false, { false, false, 15, 15 }, NULL };

/* What one feeding produced. */
struct run {
    struct buf log;             /* transcript of events, see record() */
    size_t events;
    long stop_at;               /* the callback for event #stop_at returns false */
    bool stopped;               /* a callback returned false */
    bool failed;
    uint16_t code;
    const char *reason;
    bool busy;                  /* it failed because the budget refused memory */
    size_t max_used;            /* the most the budget held between feeds */
    size_t used_end;            /* what it held after the last feed, before the free */
    size_t fed;                 /* input bytes handed over when it failed or stopped */
    size_t left;                /* bytes still pending at the end */
    size_t max_msg_len;         /* largest rx.msg.len seen between feeds */
    size_t max_msg_cap;
};

static void record(struct run *r, char kind, uint8_t op, const char *data, size_t len)
{
    char head[2 + sizeof(uint64_t)];
    uint64_t l = len;
    head[0] = kind;
    head[1] = (char)op;
    memcpy(head + 2, &l, sizeof l);
    buf_append(&r->log, head, sizeof head);
    buf_append(&r->log, data, len);
}

static bool on_message(void *ctx, uint8_t op, char *data, size_t len)
{
    struct run *r = ctx;
    record(r, 'M', op, data, len);
    return r->stop_at != (long)r->events++;
}

static bool on_control(void *ctx, uint8_t op, char *data, size_t len)
{
    struct run *r = ctx;
    record(r, 'C', op, data, len);
    return r->stop_at != (long)r->events++;
}

static const struct ws_rx_events events = { on_message, on_control };

static const struct pmd_conf conf_default = PMD_CONF_DEFAULT;

/*
 * Feeds in[0..n) in pieces: `step` bytes at a time (0: whole), or, with
 * cut > 0, [0, cut) then the rest. Stops at the first error or the first
 * callback that returns false.
 */
static void feed(const struct side *s, const void *in, size_t n, size_t step, size_t cut,
                 long stop_at, struct run *r)
{
    memset(r, 0, sizeof *r);
    r->stop_at = stop_at;
    struct ws_rx rx = { 0 };
    rx.max_message = s->max_message;
    rx.client = s->client;
    struct pmd_inflater inf;
    struct pmd_deflater def;
    if (s->pmd) {
        pmd_init(&s->params, &conf_default, !s->client, &pool, &inf, &def);
        inf.mem = s->mem;
        rx.inf = &inf;
    }
    struct buf pend = { 0 };
    size_t off = 0;
    while (off < n) {
        size_t k = cut ? (off < cut ? cut : n - off) : step ? step : n;
        if (k > n - off)
            k = n - off;
        buf_append(&pend, (const char *)in + off, k);
        off += k;
        struct ws_rx_error err = { 0, NULL, false };
        ssize_t used = ws_rx_feed(&rx, s->mem, pend.data, pend.len, &events, r, &err);
        if (rx.msg.len > r->max_msg_len)
            r->max_msg_len = rx.msg.len;
        if (rx.msg.cap > r->max_msg_cap)
            r->max_msg_cap = rx.msg.cap;
        if (membudget_used(s->mem) > r->max_used)
            r->max_used = membudget_used(s->mem);
        if (used < 0) {
            r->failed = true;
            r->code = err.code;
            r->reason = err.reason;
            r->busy = err.busy;
            r->fed = off;
            break;
        }
        CHECK((size_t)used <= pend.len);
        buf_consume(&pend, (size_t)used);
        if (r->stop_at >= 0 && r->events > (size_t)r->stop_at) {
            r->stopped = true;
            r->fed = off;
            break;
        }
    }
    r->left = pend.len;
    r->used_end = membudget_used(s->mem);
    buf_free(&pend);
    ws_rx_free(&rx, s->mem);
    if (s->pmd)
        pmd_free(&inf, &def);
}

static void run_free(struct run *r)
{
    buf_free(&r->log);
}

/* Same events, same verdict. */
static bool same(const struct run *a, const struct run *b, const char *how, size_t arg)
{
    bool ok = CHECK_MEM(b->log.data, b->log.len, a->log.data, a->log.len);
    ok = CHECK_EQ_INT(b->failed, a->failed) && ok;
    ok = CHECK_EQ_INT(b->code, a->code) && ok;
    if (!ok)
        NOTE("  fed %s %zu differs from fed whole\n", how, arg);
    return ok;
}

/*
 * Feeds every way and checks they agree; returns the whole-input run in
 * *out (the caller frees it). Big inputs get a few chunk sizes instead of
 * every split point.
 */
static void feed_every_way(const struct side *s, const void *in, size_t n, struct run *out)
{
    feed(s, in, n, 0, 0, -1, out);
    struct run r;
    if (n <= 2048) {
        for (size_t cut = 1; cut < n; cut++) {
            feed(s, in, n, 0, cut, -1, &r);
            bool ok = same(out, &r, "split at", cut);
            run_free(&r);
            if (!ok)
                break;
        }
    }
    static const size_t steps[] = { 1, 2, 3, 7, 64, 1000, 65536 };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        if (steps[i] >= n || (n > 300000 && steps[i] < 64))
            continue;
        feed(s, in, n, steps[i], 0, -1, &r);
        same(out, &r, "in pieces of", steps[i]);
        run_free(&r);
    }
}

/* ---- building input ---- */

static unsigned mask_seed = 1;

/* Appends one frame as the peer of `s` sends it (masked to a server). */
static void frame(struct buf *o, const struct side *s, bool fin, uint8_t rsv, uint8_t op,
                  const void *p, size_t n)
{
    uint8_t h[14];
    size_t hl = 0;
    h[hl++] = (uint8_t)((fin ? 0x80 : 0) | rsv << 4 | op);
    uint8_t m = s->client ? 0 : 0x80;
    if (n <= 125) {
        h[hl++] = (uint8_t)(m | n);
    } else if (n <= 0xffff) {
        h[hl++] = m | 126;
        h[hl++] = (uint8_t)(n >> 8);
        h[hl++] = (uint8_t)n;
    } else {
        h[hl++] = m | 127;
        for (int sh = 56; sh >= 0; sh -= 8)
            h[hl++] = (uint8_t)((uint64_t)n >> sh);
    }
    uint8_t key[4] = { 0, 0, 0, 0 };
    if (m) {
        mask_seed = mask_seed * 1103515245u + 12345u;
        for (int i = 0; i < 4; i++)
            key[i] = (uint8_t)(mask_seed >> (8 * i));
        memcpy(h + hl, key, 4);
        hl += 4;
    }
    buf_append(o, h, hl);
    char *d = buf_reserve(o, n);
    for (size_t i = 0; i < n; i++)
        d[i] = (char)(((const uint8_t *)p)[i] ^ key[i & 3]);
    o->len += n;
}

/* A frame with a string payload. */
#define FS(o, s, fin, rsv, op, str) frame((o), (s), (fin), (rsv), (op), (str), sizeof(str) - 1)

/* An expected transcript entry. */
static void want(struct buf *w, char kind, uint8_t op, const void *data, size_t len)
{
    struct run r = { 0 };
    r.log = *w;
    record(&r, kind, op, data, len);
    *w = r.log;
}

#define WANT_MSG(w, op, str) want((w), 'M', (op), (str), sizeof(str) - 1)
#define WANT_CTL(w, op, str) want((w), 'C', (op), (str), sizeof(str) - 1)

/* Feeds every way; checks the transcript and that it ended cleanly. */
static void expect_ok(const struct side *s, const struct buf *in, const struct buf *w)
{
    struct run r;
    feed_every_way(s, in->data, in->len, &r);
    if (!CHECK(!r.failed))
        NOTE("  failed %u: %s\n", r.code, r.reason ? r.reason : "");
    CHECK_MEM(r.log.data, r.log.len, w->data, w->len);
    CHECK_EQ_INT(r.left, 0);
    run_free(&r);
}

/* Feeds every way; checks the close code and the events before it. */
static void expect_fail(const struct side *s, const struct buf *in, const struct buf *w,
                        uint16_t code)
{
    struct run r;
    feed_every_way(s, in->data, in->len, &r);
    CHECK(r.failed);
    CHECK_EQ_INT(r.code, code);
    CHECK(r.reason != NULL && r.reason[0] != '\0');
    if (w)
        CHECK_MEM(r.log.data, r.log.len, w->data, w->len);
    run_free(&r);
}

/* Byte by byte: the feed fails exactly when byte #at (0-based) arrives. */
static void expect_fail_at(const struct side *s, const struct buf *in, size_t at,
                           uint16_t code)
{
    struct run r;
    feed(s, in->data, in->len, 1, 0, -1, &r);
    CHECK(r.failed);
    CHECK_EQ_INT(r.code, code);
    CHECK_EQ_INT(r.fed, at + 1);
    run_free(&r);
}

static const struct side *const sides[] = { &server, &client };

/* ---- plain messages ---- */

TEST(single_frames)
{
    for (int i = 0; i < 2; i++) {
        const struct side *s = sides[i];
        struct buf in = { 0 }, w = { 0 };
        FS(&in, s, true, 0, WS_OP_TEXT, "Hello");
        WANT_MSG(&w, WS_OP_TEXT, "Hello");
        FS(&in, s, true, 0, WS_OP_BINARY, "\x00\xff\x80");
        WANT_MSG(&w, WS_OP_BINARY, "\x00\xff\x80");
        FS(&in, s, true, 0, WS_OP_TEXT, "");
        WANT_MSG(&w, WS_OP_TEXT, "");
        FS(&in, s, true, 0, WS_OP_BINARY, "");
        WANT_MSG(&w, WS_OP_BINARY, "");
        FS(&in, s, true, 0, WS_OP_PING, "");
        WANT_CTL(&w, WS_OP_PING, "");
        FS(&in, s, true, 0, WS_OP_PONG, "data");
        WANT_CTL(&w, WS_OP_PONG, "data");
        FS(&in, s, true, 0, WS_OP_TEXT, "h\xc3\xa9llo \xf0\x9f\x98\x80");
        WANT_MSG(&w, WS_OP_TEXT, "h\xc3\xa9llo \xf0\x9f\x98\x80");
        FS(&in, s, true, 0, WS_OP_CLOSE, "\x03\xe8" "bye");
        WANT_CTL(&w, WS_OP_CLOSE, "\x03\xe8" "bye");
        expect_ok(s, &in, &w);
        buf_free(&in);
        buf_free(&w);
    }
}

TEST(rfc6455_examples_to_client)
{
    /* §5.7, unmasked, as a server sends them. */
    struct buf in = { 0 }, w = { 0 };
    buf_append(&in, "\x81\x05Hello", 7);
    buf_append(&in, "\x01\x03Hel\x80\x02lo", 9);
    buf_append(&in, "\x89\x05Hello\x8a\x05Hello", 14);
    WANT_MSG(&w, WS_OP_TEXT, "Hello");
    WANT_MSG(&w, WS_OP_TEXT, "Hello");
    WANT_CTL(&w, WS_OP_PING, "Hello");
    WANT_CTL(&w, WS_OP_PONG, "Hello");
    expect_ok(&client, &in, &w);
    buf_free(&in);
    buf_free(&w);
    /* The masked "Hello" of §5.7 to a server. */
    in = (struct buf){ 0 };
    w = (struct buf){ 0 };
    buf_append(&in, "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11);
    WANT_MSG(&w, WS_OP_TEXT, "Hello");
    expect_ok(&server, &in, &w);
    buf_free(&in);
    buf_free(&w);
}

TEST(length_encodings)
{
    static const size_t lens[] = { 125, 126, 127, 300, 65535, 65536, 70000 };
    for (int i = 0; i < 2; i++) {
        const struct side *s = sides[i];
        struct buf in = { 0 }, w = { 0 };
        for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
            char *p = malloc(lens[k]);
            for (size_t j = 0; j < lens[k]; j++)
                p[j] = (char)(j * 31 + k);
            frame(&in, s, true, 0, WS_OP_BINARY, p, lens[k]);
            want(&w, 'M', WS_OP_BINARY, p, lens[k]);
            free(p);
        }
        expect_ok(s, &in, &w);
        buf_free(&in);
        buf_free(&w);
    }
}

TEST(interleaved_ctrl_frame)
{
    for (int i = 0; i < 2; i++) {
        const struct side *s = sides[i];
        struct buf in = { 0 }, w = { 0 };
        FS(&in, s, false, 0, WS_OP_TEXT, "Hel");
        FS(&in, s, true, 0, WS_OP_PING, "p1");
        FS(&in, s, false, 0, WS_OP_CONT, "lo ");
        FS(&in, s, true, 0, WS_OP_PONG, "");
        FS(&in, s, false, 0, WS_OP_CONT, "");
        FS(&in, s, true, 0, WS_OP_PING, "p2");
        FS(&in, s, true, 0, WS_OP_CONT, "w\xc3\xb6rld");
        FS(&in, s, false, 0, WS_OP_BINARY, "\x01");
        FS(&in, s, true, 0, WS_OP_CLOSE, "");
        FS(&in, s, true, 0, WS_OP_CONT, "\x02");
        WANT_CTL(&w, WS_OP_PING, "p1");
        WANT_CTL(&w, WS_OP_PONG, "");
        WANT_CTL(&w, WS_OP_PING, "p2");
        WANT_MSG(&w, WS_OP_TEXT, "Hello w\xc3\xb6rld");
        WANT_CTL(&w, WS_OP_CLOSE, "");
        WANT_MSG(&w, WS_OP_BINARY, "\x01\x02");
        expect_ok(s, &in, &w);
        buf_free(&in);
        buf_free(&w);
    }
}

TEST(many_fragments_recv_1byte)
{
    /* A message in 200 one-byte fragments with a ping after every tenth. */
    for (int i = 0; i < 2; i++) {
        const struct side *s = sides[i];
        struct buf in = { 0 }, w = { 0 }, text = { 0 };
        for (int k = 0; k < 200; k++) {
            char c = (char)('a' + k % 26);
            frame(&in, s, k == 199, 0, k ? WS_OP_CONT : WS_OP_TEXT, &c, 1);
            buf_append(&text, &c, 1);
            if (k % 10 == 9 && k != 199) {
                FS(&in, s, true, 0, WS_OP_PING, "x");
                WANT_CTL(&w, WS_OP_PING, "x");
            }
        }
        want(&w, 'M', WS_OP_TEXT, text.data, text.len);
        expect_ok(s, &in, &w);
        buf_free(&in);
        buf_free(&w);
        buf_free(&text);
    }
}

TEST(empty_first_fragment)
{
    /* A message whose first fragment is empty: nothing is buffered yet
     * when its header arrives (clang's UBSan: NULL + 0 in buf_reserve). */
    for (int i = 0; i < 2; i++) {
        struct buf in = { 0 }, w = { 0 };
        FS(&in, sides[i], false, 0, WS_OP_TEXT, "");
        FS(&in, sides[i], false, 0, WS_OP_CONT, "");
        FS(&in, sides[i], true, 0, WS_OP_CONT, "abc");
        FS(&in, sides[i], false, 0, WS_OP_BINARY, "");
        FS(&in, sides[i], true, 0, WS_OP_CONT, "");
        WANT_MSG(&w, WS_OP_TEXT, "abc");
        WANT_MSG(&w, WS_OP_BINARY, "");
        expect_ok(sides[i], &in, &w);
        buf_free(&in);
        buf_free(&w);
    }
}

TEST(control_frame_125_bytes)
{
    char p[125];
    memset(p, 'c', sizeof p);
    for (int i = 0; i < 2; i++) {
        struct buf in = { 0 }, w = { 0 };
        frame(&in, sides[i], true, 0, WS_OP_PING, p, 125);
        want(&w, 'C', WS_OP_PING, p, 125);
        expect_ok(sides[i], &in, &w);
        buf_free(&in);
        buf_free(&w);
    }
}

/* ---- protocol errors ---- */

TEST(continuation_without_start)
{
    for (int i = 0; i < 2; i++) {
        struct buf in = { 0 }, w = { 0 };
        FS(&in, sides[i], true, 0, WS_OP_CONT, "x");
        expect_fail(sides[i], &in, &w, WS_CLOSE_PROTOCOL);
        buf_free(&in);
        /* After a complete message, too. */
        in = (struct buf){ 0 };
        FS(&in, sides[i], false, 0, WS_OP_TEXT, "a");
        FS(&in, sides[i], true, 0, WS_OP_CONT, "b");
        FS(&in, sides[i], false, 0, WS_OP_CONT, "c");
        WANT_MSG(&w, WS_OP_TEXT, "ab");
        expect_fail(sides[i], &in, &w, WS_CLOSE_PROTOCOL);
        buf_free(&in);
        buf_free(&w);
    }
}

TEST(new_data_frame_inside_fragmented_message)
{
    for (int i = 0; i < 2; i++)
        for (int op = WS_OP_TEXT; op <= WS_OP_BINARY; op++) {
            struct buf in = { 0 }, w = { 0 };
            FS(&in, sides[i], false, 0, WS_OP_BINARY, "a");
            FS(&in, sides[i], true, 0, WS_OP_PING, "");
            FS(&in, sides[i], true, 0, (uint8_t)op, "b");
            WANT_CTL(&w, WS_OP_PING, "");
            expect_fail(sides[i], &in, &w, WS_CLOSE_PROTOCOL);
            buf_free(&in);
            buf_free(&w);
        }
}

TEST(reserved_opcodes)
{
    static const uint8_t ops[] = { 3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF };
    for (int i = 0; i < 2; i++)
        for (size_t k = 0; k < sizeof ops; k++) {
            struct buf in = { 0 }, w = { 0 };
            FS(&in, sides[i], true, 0, WS_OP_TEXT, "ok");
            WANT_MSG(&w, WS_OP_TEXT, "ok");
            FS(&in, sides[i], true, 0, ops[k], "");
            expect_fail(sides[i], &in, &w, WS_CLOSE_PROTOCOL);
            /* Refused at the header, before any payload. */
            struct buf hdr = { 0 };
            FS(&hdr, sides[i], true, 0, ops[k], "");
            hdr.data[1] = (char)((hdr.data[1] & 0x80) | 5);
            expect_fail(sides[i], &hdr, NULL, WS_CLOSE_PROTOCOL);
            buf_free(&hdr);
            buf_free(&in);
            buf_free(&w);
        }
}

TEST(rsv_bits_without_extension)
{
    for (int i = 0; i < 2; i++)
        for (uint8_t rsv = 1; rsv < 8; rsv++) {
            for (int op = 0; op < 3; op++) {
                static const uint8_t ops[] = { WS_OP_TEXT, WS_OP_BINARY, WS_OP_PING };
                struct buf in = { 0 };
                FS(&in, sides[i], true, rsv, ops[op], "x");
                expect_fail(sides[i], &in, NULL, WS_CLOSE_PROTOCOL);
                buf_free(&in);
            }
            /* On a continuation frame. */
            struct buf in = { 0 };
            FS(&in, sides[i], false, 0, WS_OP_TEXT, "x");
            FS(&in, sides[i], true, rsv, WS_OP_CONT, "y");
            expect_fail(sides[i], &in, NULL, WS_CLOSE_PROTOCOL);
            buf_free(&in);
        }
}

TEST(control_frame_too_large)
{
    char p[126];
    memset(p, 'x', sizeof p);
    static const uint8_t ops[] = { WS_OP_PING, WS_OP_PONG, WS_OP_CLOSE };
    for (int i = 0; i < 2; i++)
        for (size_t k = 0; k < sizeof ops; k++) {
            struct buf in = { 0 };
            frame(&in, sides[i], true, 0, ops[k], p, 126);
            expect_fail(sides[i], &in, NULL, WS_CLOSE_PROTOCOL);
            /* The header alone is enough to refuse it. */
            in.len = sides[i]->client ? 4 : 8;
            expect_fail(sides[i], &in, NULL, WS_CLOSE_PROTOCOL);
            buf_free(&in);
        }
}

TEST(fragmented_control_frame)
{
    static const uint8_t ops[] = { WS_OP_PING, WS_OP_PONG, WS_OP_CLOSE };
    for (int i = 0; i < 2; i++)
        for (size_t k = 0; k < sizeof ops; k++) {
            struct buf in = { 0 };
            FS(&in, sides[i], false, 0, ops[k], "");
            FS(&in, sides[i], true, 0, WS_OP_CONT, "");
            expect_fail(sides[i], &in, NULL, WS_CLOSE_PROTOCOL);
            buf_free(&in);
        }
}

TEST(close_payload_1byte)
{
    for (int i = 0; i < 2; i++) {
        struct buf in = { 0 };
        FS(&in, sides[i], true, 0, WS_OP_CLOSE, "\x03");
        expect_fail(sides[i], &in, NULL, WS_CLOSE_PROTOCOL);
        buf_free(&in);
    }
}

TEST(close_codes_every_code)
{
    for (int i = 0; i < 2; i++)
        for (unsigned code = 0; code <= 5000; code++) {
            bool valid = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                         (code >= 3000 && code <= 4999);
            char p[2] = { (char)(code >> 8), (char)code };
            struct buf in = { 0 };
            frame(&in, sides[i], true, 0, WS_OP_CLOSE, p, 2);
            struct run r;
            feed(sides[i], in.data, in.len, 0, 0, -1, &r);
            CHECK_EQ_INT(r.failed, !valid);
            if (!valid)
                CHECK_EQ_INT(r.code, WS_CLOSE_PROTOCOL);
            else
                CHECK_EQ_INT(r.events, 1);
            run_free(&r);
            buf_free(&in);
        }
    /* 65535 and the codes that never go on the wire. */
    static const char *const bad[] = { "\xff\xff", "\x03\xed", "\x03\xee", "\x03\xec",
                                       "\x03\xf7", "\x00\x00" };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        struct buf in = { 0 };
        frame(&in, &server, true, 0, WS_OP_CLOSE, bad[k], 2);
        expect_fail(&server, &in, NULL, WS_CLOSE_PROTOCOL);
        buf_free(&in);
    }
}

TEST(close_reason_utf8)
{
    for (int i = 0; i < 2; i++) {
        struct buf in = { 0 }, w = { 0 };
        FS(&in, sides[i], true, 0, WS_OP_CLOSE, "\x03\xe8" "caf\xc3\xa9");
        WANT_CTL(&w, WS_OP_CLOSE, "\x03\xe8" "caf\xc3\xa9");
        expect_ok(sides[i], &in, &w);
        buf_free(&in);
        buf_free(&w);
        static const char *const bad[] = { "\x03\xe8\xff", ("\x03\xe8" "caf\xc3"),
                                           "\x03\xe8\xed\xa0\x80", "\x0f\xa0\xc0\x80" };
        for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
            in = (struct buf){ 0 };
            frame(&in, sides[i], true, 0, WS_OP_CLOSE, bad[k], strlen(bad[k]));
            expect_fail(sides[i], &in, NULL, WS_CLOSE_INVALID_DATA);
            buf_free(&in);
        }
    }
}

TEST(close_payload_parse)
{
    unsigned code;
    const char *reason;
    size_t rl;
    ws_close_payload_parse("", 0, &code, &reason, &rl);
    CHECK_EQ_INT(code, WS_CLOSE_NO_STATUS);
    CHECK_EQ_INT(rl, 0);
    ws_close_payload_parse("\x0f\xa0" "bye", 5, &code, &reason, &rl);
    CHECK_EQ_INT(code, 4000);
    CHECK_STR(reason, rl, "bye");
    ws_close_payload_parse("\x03\xe8", 2, &code, &reason, &rl);
    CHECK_EQ_INT(code, 1000);
    CHECK_EQ_INT(rl, 0);
}

TEST(text_invalid_utf8)
{
    for (int i = 0; i < 2; i++) {
        struct buf in = { 0 }, w = { 0 };
        FS(&in, sides[i], true, 0, WS_OP_TEXT, "ok");
        WANT_MSG(&w, WS_OP_TEXT, "ok");
        FS(&in, sides[i], true, 0, WS_OP_TEXT, "bad \xc0\x80");
        expect_fail(sides[i], &in, &w, WS_CLOSE_INVALID_DATA);
        buf_free(&in);
        buf_free(&w);
        /* Truncated at the end of the message. */
        in = (struct buf){ 0 };
        FS(&in, sides[i], true, 0, WS_OP_TEXT, "cut \xe2\x82");
        expect_fail(sides[i], &in, NULL, WS_CLOSE_INVALID_DATA);
        expect_fail_at(sides[i], &in, in.len - 1, WS_CLOSE_INVALID_DATA);
        buf_free(&in);
        /* A binary message may hold anything. */
        in = (struct buf){ 0 };
        w = (struct buf){ 0 };
        FS(&in, sides[i], true, 0, WS_OP_BINARY, "\xc0\x80\xff");
        WANT_MSG(&w, WS_OP_BINARY, "\xc0\x80\xff");
        expect_ok(sides[i], &in, &w);
        buf_free(&in);
        buf_free(&w);
    }
}

TEST(text_invalid_utf8_fails_fast_across_fragments)
{
    for (int i = 0; i < 2; i++) {
        const struct side *s = sides[i];
        /* The bad byte in the middle of the second of three fragments: the
         * feed fails when that byte arrives, long before the message ends. */
        struct buf in = { 0 };
        FS(&in, s, false, 0, WS_OP_TEXT, "h\xc3\xa9llo ");
        FS(&in, s, true, 0, WS_OP_PING, "");
        size_t start = in.len + (s->client ? 2 : 6);
        FS(&in, s, false, 0, WS_OP_CONT, "wor\xff" "ld and more text");
        FS(&in, s, true, 0, WS_OP_CONT, "the end");
        expect_fail(s, &in, NULL, WS_CLOSE_INVALID_DATA);
        expect_fail_at(s, &in, start + 3, WS_CLOSE_INVALID_DATA);
        buf_free(&in);
        /* A sequence started in one fragment and broken in the next. */
        in = (struct buf){ 0 };
        FS(&in, s, false, 0, WS_OP_TEXT, "euro \xe2\x82");
        start = in.len + (s->client ? 2 : 6);
        FS(&in, s, false, 0, WS_OP_CONT, "(");
        FS(&in, s, true, 0, WS_OP_CONT, "tail");
        expect_fail(s, &in, NULL, WS_CLOSE_INVALID_DATA);
        expect_fail_at(s, &in, start, WS_CLOSE_INVALID_DATA);
        buf_free(&in);
        /* ... and one that is fine across three fragments. */
        struct buf w = { 0 };
        in = (struct buf){ 0 };
        FS(&in, s, false, 0, WS_OP_TEXT, "\xf0");
        FS(&in, s, false, 0, WS_OP_CONT, "\x9f\x98");
        FS(&in, s, true, 0, WS_OP_CONT, "\x80");
        WANT_MSG(&w, WS_OP_TEXT, "\xf0\x9f\x98\x80");
        expect_ok(s, &in, &w);
        buf_free(&in);
        buf_free(&w);
        /* A single unfragmented frame arriving slowly fails at its bad byte. */
        in = (struct buf){ 0 };
        FS(&in, s, true, 0, WS_OP_TEXT, "0123456789\xed\xa0\x80 0123456789");
        expect_fail_at(s, &in, (s->client ? 2 : 6) + 11, WS_CLOSE_INVALID_DATA);
        buf_free(&in);
    }
}

TEST(too_large_payload)
{
    for (int i = 0; i < 2; i++) {
        struct side s = *sides[i];
        s.max_message = 100;
        char p[101];
        memset(p, 'x', sizeof p);
        /* Exactly max_message is fine. */
        struct buf in = { 0 }, w = { 0 };
        frame(&in, &s, true, 0, WS_OP_TEXT, p, 100);
        want(&w, 'M', WS_OP_TEXT, p, 100);
        expect_ok(&s, &in, &w);
        buf_free(&in);
        buf_free(&w);
        /* One more: 1009 at the header, before the payload arrives. */
        in = (struct buf){ 0 };
        frame(&in, &s, true, 0, WS_OP_BINARY, p, 101);
        size_t hl = s.client ? 2 : 6;
        expect_fail_at(&s, &in, hl - 1, WS_CLOSE_TOO_BIG);
        in.len = hl;
        expect_fail(&s, &in, NULL, WS_CLOSE_TOO_BIG);
        buf_free(&in);
        /* Fragments adding up past it: refused at the header of the one
         * that crosses the line, nothing of it buffered. */
        in = (struct buf){ 0 };
        frame(&in, &s, false, 0, WS_OP_BINARY, p, 60);
        frame(&in, &s, false, 0, WS_OP_CONT, p, 40);
        size_t before = in.len;
        frame(&in, &s, true, 0, WS_OP_CONT, p, 1);
        expect_fail_at(&s, &in, before + hl - 1, WS_CLOSE_TOO_BIG);
        struct run r;
        feed(&s, in.data, in.len, 1, 0, -1, &r);
        CHECK(r.max_msg_len <= 100);
        run_free(&r);
        buf_free(&in);
        /* A 64-bit length far past it. */
        in = (struct buf){ 0 };
        buf_append(&in, s.client ? "\x82\x7f\x00\x00\x01\x00\x00\x00\x00\x00"
                                 : "\x82\xff\x00\x00\x01\x00\x00\x00\x00\x00\x01\x02\x03\x04",
                   s.client ? 10 : 14);
        expect_fail(&s, &in, NULL, WS_CLOSE_TOO_BIG);
        buf_free(&in);
        /* Control frames do not count against it. */
        s.max_message = 0;
        in = (struct buf){ 0 };
        w = (struct buf){ 0 };
        FS(&in, &s, true, 0, WS_OP_PING, "ping");
        FS(&in, &s, true, 0, WS_OP_TEXT, "");
        WANT_CTL(&w, WS_OP_PING, "ping");
        WANT_MSG(&w, WS_OP_TEXT, "");
        expect_ok(&s, &in, &w);
        buf_free(&in);
        buf_free(&w);
    }
}

TEST(frame_length_top_bit_set)
{
    for (int i = 0; i < 2; i++) {
        struct buf in = { 0 };
        buf_append(&in, sides[i]->client ? "\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00"
                                         : "\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03\x04",
                   sides[i]->client ? 10 : 14);
        expect_fail(sides[i], &in, NULL, WS_CLOSE_PROTOCOL);
        buf_free(&in);
    }
}

TEST(masking_rules)
{
    /* A client-side frame sent to a client and a server-side frame sent to
     * a server: both 1002, data and control frames alike. */
    static const uint8_t ops[] = { WS_OP_TEXT, WS_OP_BINARY, WS_OP_PING, WS_OP_CLOSE };
    for (int i = 0; i < 2; i++)
        for (size_t k = 0; k < sizeof ops; k++) {
            struct buf in = { 0 };
            FS(&in, sides[1 - i], true, 0, ops[k], "");
            expect_fail(sides[i], &in, NULL, WS_CLOSE_PROTOCOL);
            buf_free(&in);
            /* After a good frame, inside a fragmented message. */
            in = (struct buf){ 0 };
            FS(&in, sides[i], false, 0, WS_OP_TEXT, "a");
            FS(&in, sides[1 - i], true, 0, WS_OP_CONT, "b");
            expect_fail(sides[i], &in, NULL, WS_CLOSE_PROTOCOL);
            buf_free(&in);
        }
}

/* ---- callbacks that stop the feed ---- */

TEST(callback_false_stops_after_that_frame)
{
    for (int i = 0; i < 2; i++) {
        const struct side *s = sides[i];
        struct buf in = { 0 };
        FS(&in, s, true, 0, WS_OP_TEXT, "one");
        size_t end1 = in.len;
        FS(&in, s, true, 0, WS_OP_PING, "p");
        size_t end2 = in.len;
        FS(&in, s, false, 0, WS_OP_BINARY, "thr");
        FS(&in, s, true, 0, WS_OP_CONT, "ee");
        size_t end3 = in.len;
        FS(&in, s, true, 0, WS_OP_CLOSE, "");
        size_t ends[] = { end1, end2, end3, in.len };

        for (long stop = 0; stop < 4; stop++) {
            /* All at once: one call, which returns right after that frame. */
            struct buf copy = { 0 };
            buf_append(&copy, in.data, in.len);
            struct ws_rx rx = { 0 };
            rx.max_message = 1000;
            rx.client = s->client;
            struct run r = { 0 };
            r.stop_at = stop;
            struct ws_rx_error err = { 0, NULL, false };
            ssize_t used = ws_rx_feed(&rx, NULL, copy.data, copy.len, &events, &r, &err);
            CHECK_EQ_INT(used, (ssize_t)ends[stop]);
            CHECK_EQ_INT(r.events, stop + 1);
            /* Feeding the rest goes on with the next frame. */
            if (used >= 0 && (size_t)used < copy.len) {
                r.stop_at = -1;
                ssize_t more = ws_rx_feed(&rx, NULL, copy.data + used, copy.len - (size_t)used,
                                          &events, &r, &err);
                CHECK_EQ_INT(more, (ssize_t)(copy.len - (size_t)used));
                CHECK_EQ_INT(r.events, 4);
            }
            ws_rx_free(&rx, NULL);
            run_free(&r);
            buf_free(&copy);

            /* One byte at a time: no event after the stopping one, and the
             * stop comes when the frame's last byte arrives. */
            feed(s, in.data, in.len, 1, 0, stop, &r);
            CHECK(r.stopped);
            CHECK_EQ_INT(r.events, stop + 1);
            CHECK_EQ_INT(r.fed, ends[stop]);
            run_free(&r);
        }
        buf_free(&in);
    }
}

/* ---- permessage-deflate ---- */

static struct side pmd_side(bool is_client, bool snct, bool cnct, uint8_t smwb, uint8_t cmwb)
{
    struct side s = { is_client, 1 << 20, true, { snct, cnct, smwb, cmwb }, NULL };
    return s;
}

/* The peer of s: its deflater compresses what s receives. */
struct peer {
    struct pmd_inflater inf;
    struct pmd_deflater def;
};

static void peer_init(struct peer *p, const struct side *s)
{
    pmd_init(&s->params, &conf_default, s->client, &pool, &p->inf, &p->def);
}

static void peer_free(struct peer *p)
{
    pmd_free(&p->inf, &p->def);
}

/* Compresses a message and appends it as `nfrag` frames. */
static void deflated(struct buf *in, struct peer *p, const struct side *s, uint8_t op,
                     const void *msg, size_t n, size_t nfrag)
{
    struct buf z = { 0 };
    pmd_deflate(&p->def, msg, n, &z);
    size_t per = z.len / nfrag + 1;
    size_t off = 0;
    for (size_t f = 0; f < nfrag; f++) {
        size_t k = f == nfrag - 1 ? z.len - off : (z.len - off < per ? z.len - off : per);
        frame(in, s, f == nfrag - 1, f == 0 ? WS_RSV1 : 0, f == 0 ? op : WS_OP_CONT,
              z.data + off, k);
        off += k;
    }
    buf_free(&z);
}

TEST(deflate_rfc7692_examples)
{
    /* §7.2.3.1-4, as a server sends them (unmasked). */
    struct side s = pmd_side(true, false, false, 15, 15);
    struct buf in = { 0 }, w = { 0 };
    buf_append(&in, "\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00", 9);          /* one frame */
    buf_append(&in, "\x41\x03\xf2\x48\xcd\x80\x04\xc9\xc9\x07\x00", 11);  /* fragmented */
    buf_append(&in, "\xc1\x0b\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00", 13); /* stored */
    buf_append(&in, "\xc1\x08\xf3\x48\xcd\xc9\xc9\x07\x00\x00", 10);      /* BFINAL */
    for (int k = 0; k < 4; k++)
        WANT_MSG(&w, WS_OP_TEXT, "Hello");
    expect_ok(&s, &in, &w);
    buf_free(&in);
    buf_free(&w);
    /* §7.2.3.2: the second message uses the first one's window. */
    in = (struct buf){ 0 };
    w = (struct buf){ 0 };
    buf_append(&in, "\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00", 9);
    buf_append(&in, "\xc1\x05\xf2\x00\x11\x00\x00", 7);
    WANT_MSG(&w, WS_OP_TEXT, "Hello");
    WANT_MSG(&w, WS_OP_TEXT, "Hello");
    expect_ok(&s, &in, &w);
    /* Without takeover the same bytes cannot be inflated. */
    struct side nt = pmd_side(true, true, false, 15, 15);
    expect_fail(&nt, &in, NULL, WS_CLOSE_INVALID_DATA);
    buf_free(&in);
    buf_free(&w);
}

TEST(deflate_one_frame_and_fragments)
{
    static const char text[] = "The quick brown fox jumps over the lazy dog. "
                               "The quick brown fox jumps over the lazy dog. \xc3\xa9\xe2\x82\xac";
    for (int c = 0; c < 2; c++)
        for (size_t nfrag = 1; nfrag <= 5; nfrag += 2) {
            struct side s = pmd_side(c, false, false, 15, 15);
            struct peer p;
            peer_init(&p, &s);
            struct buf in = { 0 }, w = { 0 };
            deflated(&in, &p, &s, WS_OP_TEXT, text, sizeof text - 1, nfrag);
            FS(&in, &s, true, 0, WS_OP_PING, "between");
            deflated(&in, &p, &s, WS_OP_BINARY, "\x00\x01\x02", 3, nfrag);
            FS(&in, &s, true, 0, WS_OP_TEXT, "plain");
            WANT_MSG(&w, WS_OP_TEXT, text);
            WANT_CTL(&w, WS_OP_PING, "between");
            WANT_MSG(&w, WS_OP_BINARY, "\x00\x01\x02");
            WANT_MSG(&w, WS_OP_TEXT, "plain");
            expect_ok(&s, &in, &w);
            buf_free(&in);
            buf_free(&w);
            peer_free(&p);
        }
}

TEST(deflate_interleaved_ctrl_frame)
{
    struct side s = pmd_side(false, false, false, 15, 15);
    struct peer p;
    peer_init(&p, &s);
    struct buf z = { 0 };
    static const char text[] = "compressed, fragmented, with a ping in between";
    pmd_deflate(&p.def, text, sizeof text - 1, &z);
    size_t half = z.len / 2;
    struct buf in = { 0 }, w = { 0 };
    frame(&in, &s, false, WS_RSV1, WS_OP_TEXT, z.data, half);
    FS(&in, &s, true, 0, WS_OP_PING, "p");
    frame(&in, &s, true, 0, WS_OP_CONT, z.data + half, z.len - half);
    WANT_CTL(&w, WS_OP_PING, "p");
    WANT_MSG(&w, WS_OP_TEXT, text);
    expect_ok(&s, &in, &w);
    buf_free(&in);
    buf_free(&w);
    buf_free(&z);
    peer_free(&p);
}

TEST(deflate_context_takeover_on_and_off)
{
    static const char text[] = "{\"event\":\"join_room\",\"room\":\"lobby\",\"user\":\"alice\"}";
    for (int c = 0; c < 2; c++)
        for (int nct = 0; nct < 2; nct++) {
            /* The direction s receives is governed by the peer's
             * no_context_takeover: client's when s is the server. */
            struct side s = pmd_side(c, c && nct, !c && nct, 15, 15);
            struct peer p;
            peer_init(&p, &s);
            struct buf in = { 0 }, w = { 0 };
            size_t sizes[5];
            for (int k = 0; k < 5; k++) {
                size_t before = in.len;
                deflated(&in, &p, &s, WS_OP_TEXT, text, sizeof text - 1, k == 3 ? 2 : 1);
                sizes[k] = in.len - before;
                WANT_MSG(&w, WS_OP_TEXT, text);
            }
            expect_ok(&s, &in, &w);
            /* With takeover the repeats are references into the window. */
            if (nct)
                CHECK_EQ_INT(sizes[1], sizes[0]);
            else
                CHECK(sizes[1] < sizes[0] / 2);
            /* A receiver that resets its window cannot follow a sender
             * that keeps it. */
            if (!nct) {
                struct side r = s;
                if (c)
                    r.params.server_no_context_takeover = true;
                else
                    r.params.client_no_context_takeover = true;
                struct buf w1 = { 0 };
                WANT_MSG(&w1, WS_OP_TEXT, text);
                expect_fail(&r, &in, &w1, WS_CLOSE_INVALID_DATA);
                buf_free(&w1);
            }
            buf_free(&in);
            buf_free(&w);
            peer_free(&p);
        }
}

TEST(deflate_empty_payload)
{
    /* RSV1 with no payload bytes at all: the tail alone is not deflate
     * data (zlib reads it as a stored block of 0xff00 bytes), so the
     * message is "" and a kept stream must not see it. */
    static const char text[] = "context taken over, context taken over";
    for (int c = 0; c < 2; c++)
        for (int nct = 0; nct < 2; nct++) {
            struct side s = pmd_side(c, nct, nct, 15, 15);
            struct peer p;
            peer_init(&p, &s);
            struct buf in = { 0 }, w = { 0 };
            deflated(&in, &p, &s, WS_OP_TEXT, text, sizeof text - 1, 1);
            FS(&in, &s, true, WS_RSV1, WS_OP_TEXT, "");
            deflated(&in, &p, &s, WS_OP_TEXT, text, sizeof text - 1, 1);
            /* Empty in fragments, a ping between. */
            FS(&in, &s, false, WS_RSV1, WS_OP_BINARY, "");
            FS(&in, &s, true, 0, WS_OP_PING, "p");
            FS(&in, &s, false, 0, WS_OP_CONT, "");
            FS(&in, &s, true, 0, WS_OP_CONT, "");
            deflated(&in, &p, &s, WS_OP_BINARY, text, sizeof text - 1, 2);
            WANT_MSG(&w, WS_OP_TEXT, text);
            WANT_MSG(&w, WS_OP_TEXT, "");
            WANT_MSG(&w, WS_OP_TEXT, text);
            WANT_CTL(&w, WS_OP_PING, "p");
            WANT_MSG(&w, WS_OP_BINARY, "");
            WANT_MSG(&w, WS_OP_BINARY, text);
            expect_ok(&s, &in, &w);
            buf_free(&in);
            buf_free(&w);
            peer_free(&p);
        }
}

TEST(deflate_every_window_size)
{
    /* 64 KiB of text with long-distance repeats, at each window size. */
    size_t n = 64 * 1024;
    char *text = malloc(n);
    for (size_t i = 0; i < n; i++)
        text[i] = (char)('a' + (i * i / 7 + i / 300) % 26);
    for (uint8_t wb = 8; wb <= 15; wb++)
        for (int c = 0; c < 2; c++) {
            struct side s = pmd_side(c, false, false, wb, wb);
            struct peer p;
            peer_init(&p, &s);
            struct buf in = { 0 }, w = { 0 };
            deflated(&in, &p, &s, WS_OP_TEXT, text, n, 3);
            deflated(&in, &p, &s, WS_OP_TEXT, text, n, 1);
            want(&w, 'M', WS_OP_TEXT, text, n);
            want(&w, 'M', WS_OP_TEXT, text, n);
            struct run r;
            feed(&s, in.data, in.len, 0, 0, -1, &r);
            CHECK(!r.failed);
            CHECK_MEM(r.log.data, r.log.len, w.data, w.len);
            run_free(&r);
            feed(&s, in.data, in.len, 7, 0, -1, &r);
            CHECK(!r.failed);
            CHECK_MEM(r.log.data, r.log.len, w.data, w.len);
            run_free(&r);
            buf_free(&in);
            buf_free(&w);
            peer_free(&p);
        }
    free(text);
}

/* 10 MB of zeros compressed to about 45 KB, for a receiver allowing 1 MiB. */
static void bomb_input(struct buf *in, const struct side *s, uint8_t op, size_t nfrag)
{
    size_t n = 10 * 1024 * 1024;
    char *zeros = calloc(1, n);
    struct peer p;
    peer_init(&p, s);
    deflated(in, &p, s, op, zeros, n, nfrag);
    peer_free(&p);
    free(zeros);
}

TEST(deflate_bomb)
{
    for (int c = 0; c < 2; c++)
        for (int nct = 0; nct < 2; nct++)
            for (size_t nfrag = 1; nfrag <= 50; nfrag += 49) {
                struct side s = pmd_side(c, nct, nct, 15, 15);
                struct buf in = { 0 };
                bomb_input(&in, &s, nfrag == 1 ? WS_OP_BINARY : WS_OP_TEXT, nfrag);
                CHECK(in.len < 64 * 1024);
                static const size_t steps[] = { 0, 1, 1000 };
                for (size_t k = 0; k < 3; k++) {
                    struct run r;
                    feed(&s, in.data, in.len, steps[k], 0, -1, &r);
                    CHECK(r.failed);
                    CHECK_EQ_INT(r.code, WS_CLOSE_TOO_BIG);
                    CHECK_EQ_INT(r.events, 0);
                    /* Refused long before all of it arrived. */
                    if (steps[k])
                        CHECK(r.fed < in.len / 2);
                    CHECK(r.max_msg_len <= s.max_message + 64 * 1024);
                    run_free(&r);
                }
                buf_free(&in);
            }
}

TEST(deflate_bomb_buffer_stays_under_max_plus_64k)
{
    /* Not only the bytes held: the memory reserved for them. */
    struct side s = pmd_side(false, true, true, 15, 15);
    struct buf in = { 0 };
    bomb_input(&in, &s, WS_OP_BINARY, 1);
    struct run r;
    feed(&s, in.data, in.len, 1000, 0, -1, &r);
    CHECK_EQ_INT(r.code, WS_CLOSE_TOO_BIG);
    if (!CHECK(r.max_msg_cap <= s.max_message + 64 * 1024))
        NOTE("  reassembly buffer reserved %zu bytes for max_message %zu\n",
                r.max_msg_cap, s.max_message);
    run_free(&r);
    buf_free(&in);
}

TEST(deflate_small_message_small_buffer)
{
    /* The reassembly buffer of a small compressed message stays small
     * (it was a 64 KiB chunk, then 128 KiB for the tail). */
    static const char text[] = "{\"event\":\"tick\",\"n\":1}";
    for (int c = 0; c < 2; c++) {
        struct side s = pmd_side(c, true, true, 15, 15);
        struct peer p;
        peer_init(&p, &s);
        struct buf in = { 0 };
        deflated(&in, &p, &s, WS_OP_TEXT, text, sizeof text - 1, 2);
        struct run r;
        feed(&s, in.data, in.len, 1, 0, -1, &r);
        CHECK(!r.failed);
        if (!CHECK(r.max_msg_cap <= 512))
            NOTE("  a %zu-byte message held %zu bytes\n", sizeof text - 1, r.max_msg_cap);
        run_free(&r);
        buf_free(&in);
        peer_free(&p);
    }
}

TEST(deflate_max_message_boundary)
{
    char p[1000];
    memset(p, 'q', sizeof p);
    for (int c = 0; c < 2; c++) {
        struct side s = pmd_side(c, true, true, 15, 15);
        s.max_message = 1000;
        struct peer pe;
        peer_init(&pe, &s);
        struct buf in = { 0 }, w = { 0 };
        deflated(&in, &pe, &s, WS_OP_TEXT, p, 1000, 1);
        want(&w, 'M', WS_OP_TEXT, p, 1000);
        expect_ok(&s, &in, &w);
        buf_free(&in);
        buf_free(&w);
        in = (struct buf){ 0 };
        char q[1001];
        memset(q, 'q', sizeof q);
        deflated(&in, &pe, &s, WS_OP_TEXT, q, 1001, 1);
        expect_fail(&s, &in, NULL, WS_CLOSE_TOO_BIG);
        buf_free(&in);
        peer_free(&pe);
    }
}

TEST(deflate_corrupt_data)
{
    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        { "\xff\xff\xff\xff", 4 },           /* invalid block type */
        { "\x00\x05\x00\x00\x00", 5 },       /* invalid stored block lengths */
        { "\x05\xff\xff\xff", 4 },           /* too many length or distance symbols */
        { "\x02\x02\x00", 3 },               /* invalid distance too far back */
    };
    for (int c = 0; c < 2; c++)
        for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
            struct side s = pmd_side(c, false, false, 15, 15);
            struct buf in = { 0 };
            frame(&in, &s, true, WS_RSV1, WS_OP_BINARY, bad[k].bytes, bad[k].len);
            expect_fail(&s, &in, NULL, WS_CLOSE_INVALID_DATA);
            buf_free(&in);
        }
}

TEST(deflate_truncated_data)
{
    /* A prefix of a valid payload inflates without a zlib error, but the
     * stream stops inside a block even after the tail: 1007, never a
     * partial message. */
    static const char text[] = "a message that loses its end on the way, "
                               "a message that loses its end on the way";
    for (int c = 0; c < 2; c++)
        for (int nct = 0; nct < 2; nct++) {
            struct side s = pmd_side(c, nct, nct, 15, 15);
            struct peer p;
            peer_init(&p, &s);
            struct buf z = { 0 };
            pmd_deflate(&p.def, text, sizeof text - 1, &z);
            size_t cuts[] = { 1, z.len / 2, z.len - 1 };
            for (size_t k = 0; k < 3; k++) {
                struct buf in = { 0 };
                frame(&in, &s, true, WS_RSV1, WS_OP_TEXT, z.data, cuts[k]);
                expect_fail(&s, &in, NULL, WS_CLOSE_INVALID_DATA);
                buf_free(&in);
                /* The same in fragments, the last one empty. */
                in = (struct buf){ 0 };
                frame(&in, &s, false, WS_RSV1, WS_OP_BINARY, z.data, cuts[k] / 2);
                frame(&in, &s, false, 0, WS_OP_CONT, z.data + cuts[k] / 2, cuts[k] - cuts[k] / 2);
                frame(&in, &s, true, 0, WS_OP_CONT, "", 0);
                expect_fail(&s, &in, NULL, WS_CLOSE_INVALID_DATA);
                buf_free(&in);
            }
            buf_free(&z);
            peer_free(&p);
        }
}

TEST(deflate_text_invalid_utf8)
{
    for (int c = 0; c < 2; c++) {
        struct side s = pmd_side(c, false, false, 15, 15);
        struct peer p;
        peer_init(&p, &s);
        struct buf in = { 0 };
        static const char bad[] = "valid start \xc3\xa9 then \xff bad";
        deflated(&in, &p, &s, WS_OP_TEXT, bad, sizeof bad - 1, 1);
        expect_fail(&s, &in, NULL, WS_CLOSE_INVALID_DATA);
        buf_free(&in);
        peer_free(&p);
    }
}

TEST(deflate_invalid_utf8_before_too_big)
{
    /* Found by fuzz_ws_rx_*_pmd. The third inflated byte is not UTF-8 and
     * the message later passes max_message: the bad byte comes first, so
     * the verdict is 1007 however the bytes are split into reads. */
    char text[300];
    memset(text, 'x', sizeof text);
    text[2] = (char)0xff;
    for (int c = 0; c < 2; c++) {
        struct side s = pmd_side(c, true, true, 15, 15);
        s.max_message = 125;
        struct peer p;
        peer_init(&p, &s);
        struct buf in = { 0 };
        deflated(&in, &p, &s, WS_OP_TEXT, text, sizeof text, 1);
        expect_fail(&s, &in, NULL, WS_CLOSE_INVALID_DATA);
        buf_free(&in);
        peer_free(&p);
    }
}

TEST(deflate_rsv1_on_continuation_or_control)
{
    for (int c = 0; c < 2; c++) {
        struct side s = pmd_side(c, false, false, 15, 15);
        struct buf in = { 0 };
        FS(&in, &s, false, WS_RSV1, WS_OP_TEXT, "\xf2\x48");
        FS(&in, &s, true, WS_RSV1, WS_OP_CONT, "\xcd\xc9\xc9\x07\x00");
        expect_fail(&s, &in, NULL, WS_CLOSE_PROTOCOL);
        buf_free(&in);
        in = (struct buf){ 0 };
        FS(&in, &s, true, WS_RSV1, WS_OP_PING, "");
        expect_fail(&s, &in, NULL, WS_CLOSE_PROTOCOL);
        buf_free(&in);
        /* RSV2 and RSV3 stay reserved with the extension on. */
        in = (struct buf){ 0 };
        FS(&in, &s, true, WS_RSV2, WS_OP_TEXT, "x");
        expect_fail(&s, &in, NULL, WS_CLOSE_PROTOCOL);
        buf_free(&in);
        in = (struct buf){ 0 };
        FS(&in, &s, true, WS_RSV1 | WS_RSV3, WS_OP_TEXT, "x");
        expect_fail(&s, &in, NULL, WS_CLOSE_PROTOCOL);
        buf_free(&in);
    }
}

/* ---- the memory budget (--max-buffered) ---- */

/* s, receiving into a fresh budget mb of `limit` bytes. */
static struct side with_budget(struct side s, struct membudget *mb, size_t limit)
{
    membudget_init(mb, limit);
    s.mem = mb;
    return s;
}

/* A fragmented message whose next frame the budget cannot hold fails with
 * 1008 "server busy" when that frame's header is complete, before any of
 * its payload is kept; what the first frame took is given back. */
TEST(budget_refuses_growth_at_the_frame_header)
{
    struct membudget mb;
    struct side s = with_budget(server, &mb, 1000);
    static char a[600], b[300];
    memset(a, 'a', sizeof a);
    memset(b, 'b', sizeof b);
    struct buf in = { 0 };
    frame(&in, &s, false, 0, WS_OP_BINARY, a, sizeof a);
    size_t first = in.len;
    frame(&in, &s, false, 0, WS_OP_CONT, b, sizeof b);
    /* 2 bytes, a 16-bit length and the mask: the header ends at first + 7 */
    struct run r;
    feed(&s, in.data, in.len, 1, 0, -1, &r);
    CHECK(r.failed);
    CHECK(r.busy);
    CHECK_EQ_INT(r.code, WS_CLOSE_POLICY);
    CHECK(r.reason && strcmp(r.reason, "server busy") == 0);
    CHECK_EQ_INT(r.fed, first + 8);
    CHECK_EQ_INT(r.max_used, 600);
    CHECK_EQ_INT(membudget_used(&mb), 0);
    run_free(&r);
    /* Whole, or split anywhere: the same verdict. */
    expect_fail(&s, &in, NULL, WS_CLOSE_POLICY);
    CHECK_EQ_INT(membudget_used(&mb), 0);
    buf_free(&in);
}

/* What a message took is given back when it is delivered: message after
 * message, the count does not drift. */
TEST(budget_given_back_when_the_message_completes)
{
    struct membudget mb;
    struct side s = with_budget(server, &mb, 1000);
    static char half[400];
    struct buf in = { 0 }, w = { 0 };
    for (int k = 0; k < 5; k++) {
        memset(half, 'a' + k, sizeof half);
        frame(&in, &s, false, 0, WS_OP_BINARY, half, sizeof half);
        frame(&in, &s, true, 0, WS_OP_CONT, half, sizeof half);
        char whole[800];
        memcpy(whole, half, 400);
        memcpy(whole + 400, half, 400);
        want(&w, 'M', WS_OP_BINARY, whole, sizeof whole);
    }
    struct run r;
    feed(&s, in.data, in.len, 7, 0, -1, &r);
    CHECK(!r.failed);
    CHECK_MEM(r.log.data, r.log.len, w.data, w.len);
    CHECK_EQ_INT(r.max_used, 800);          /* 400 exactly, then doubled to 800 */
    CHECK_EQ_INT(r.used_end, 0);
    run_free(&r);
    expect_ok(&s, &in, &w);
    CHECK_EQ_INT(membudget_used(&mb), 0);
    buf_free(&in);
    buf_free(&w);
}

/* A message cut short by the end of the connection gives back what it held. */
TEST(budget_given_back_when_the_receiver_is_freed)
{
    struct membudget mb;
    struct side s = with_budget(server, &mb, 1 << 20);
    static char a[5000];
    struct buf in = { 0 };
    frame(&in, &s, false, 0, WS_OP_TEXT, a, sizeof a);
    FS(&in, &s, true, 0, WS_OP_CONT, "x");
    in.len -= 3;                            /* the last frame never ends */
    struct run r;
    feed(&s, in.data, in.len, 100, 0, -1, &r);
    CHECK(!r.failed);
    CHECK_EQ_INT(r.used_end, 5000);
    CHECK_EQ_INT(membudget_used(&mb), 0);
    run_free(&r);
    buf_free(&in);
}

/* The budget counts what is kept: a message that arrives whole in one read
 * is handed over from the caller's buffer and needs none of it. */
TEST(budget_not_needed_for_a_message_read_whole)
{
    struct membudget mb;
    struct side s = with_budget(server, &mb, 1);
    static char a[500];
    struct buf in = { 0 }, w = { 0 };
    frame(&in, &s, true, 0, WS_OP_BINARY, a, sizeof a);
    want(&w, 'M', WS_OP_BINARY, a, sizeof a);
    struct run r;
    feed(&s, in.data, in.len, 0, 0, -1, &r);
    CHECK(!r.failed);
    CHECK_MEM(r.log.data, r.log.len, w.data, w.len);
    CHECK_EQ_INT(r.max_used, 0);
    run_free(&r);
    /* In pieces it must be kept, and the budget of 1 byte refuses. */
    expect_fail_at(&s, &in, 7, WS_CLOSE_POLICY);
    CHECK_EQ_INT(membudget_used(&mb), 0);
    buf_free(&in);
    buf_free(&w);
}

/* An inflate stream's zlib memory (state and window) counts while the
 * stream exists; without client context takeover it goes back to the
 * pool after the message, still counted, and is given back when the pool
 * is emptied. */
TEST(budget_counts_inflate_streams)
{
    struct membudget mb;
    struct side s = with_budget(pmd_side(false, false, true, 15, 15), &mb, 1 << 20);
    struct peer p;
    peer_init(&p, &s);
    static char msg[3000];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (char)('a' + i % 7);
    struct buf in = { 0 }, w = { 0 };
    deflated(&in, &p, &s, WS_OP_TEXT, msg, sizeof msg, 3);
    want(&w, 'M', WS_OP_TEXT, msg, sizeof msg);
    struct run r;
    feed(&s, in.data, in.len, 5, 0, -1, &r);
    CHECK(!r.failed);
    CHECK_MEM(r.log.data, r.log.len, w.data, w.len);
    /* the 32 KiB window, the state, and the message */
    CHECK(r.max_used > 32768 + sizeof msg);
    CHECK(r.used_end > 32768 && r.used_end < 32768 + 16384);      /* the pooled stream */
    run_free(&r);
    CHECK_EQ_INT(membudget_used(&mb), r.used_end);
    pmd_pool_free(&pool);
    CHECK_EQ_INT(membudget_used(&mb), 0);
    peer_free(&p);
    buf_free(&in);
    buf_free(&w);
}

/* A budget too small for an inflate stream fails the compressed message
 * with 1008 when its first payload byte arrives; too small for the window
 * (allocated when the first output is written), a little later. */
TEST(budget_refuses_an_inflate_stream)
{
    static const size_t limits[] = { 4096, 12000 };
    for (size_t k = 0; k < 2; k++) {
        struct membudget mb;
        struct side s = with_budget(pmd_side(false, false, true, 15, 15), &mb, limits[k]);
        struct peer p;
        peer_init(&p, &s);
        struct buf in = { 0 };
        deflated(&in, &p, &s, WS_OP_TEXT, "Hello, Hello, Hello", 19, 1);
        struct run r;
        feed(&s, in.data, in.len, 1, 0, -1, &r);
        CHECK(r.failed);
        CHECK(r.busy);
        CHECK_EQ_INT(r.code, WS_CLOSE_POLICY);
        if (k == 0)
            CHECK_EQ_INT(r.fed, 7);             /* header 6, then the first payload byte */
        run_free(&r);
        expect_fail(&s, &in, NULL, WS_CLOSE_POLICY);
        pmd_pool_free(&pool);
        CHECK_EQ_INT(membudget_used(&mb), 0);
        peer_free(&p);
        buf_free(&in);
    }
}

int main(int argc, char **argv)
{
    int rc = check_main("test_ws_msg");
    pmd_pool_free(&pool);
    return rc;
}
