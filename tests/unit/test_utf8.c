/*
 * utf8_feed / utf8_valid (src/util/utf8.h) against RFC 3629 and against a
 * byte-at-a-time reference decoder written here.
 */
#include "check.h"

#include <stdint.h>

#include "util/utf8.h"

/* Reference: the index of the first byte that cannot continue a valid
 * sequence, or n when there is none; *complete tells whether the input ends
 * on a character boundary. Straight from the RFC 3629 §4 ABNF. */
static size_t ref_first_bad(const unsigned char *p, size_t n, bool *complete)
{
    size_t i = 0;
    *complete = true;
    while (i < n) {
        unsigned c = p[i];
        size_t need;
        unsigned lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0;
            if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90;
            if (c == 0xF4)
                hi = 0x8F;
        } else {
            return i;
        }
        i++;
        for (size_t k = 0; k < need; k++, i++) {
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

static size_t encode(uint32_t cp, unsigned char *out)
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | cp >> 6);
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | cp >> 12);
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | cp >> 18);
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Feeds one byte at a time; returns the index of the byte at which
 * utf8_feed returned false, or n. */
static size_t feed_bytewise(const unsigned char *p, size_t n, utf8_state *st)
{
    *st = 0;
    for (size_t i = 0; i < n; i++) {
        if (!utf8_feed(st, p + i, 1))
            return i;
    }
    return n;
}

/* Checks one input every way: whole, byte by byte, split at every point,
 * and against the reference. */
static void check_input(const unsigned char *p, size_t n)
{
    bool complete;
    size_t bad = ref_first_bad(p, n, &complete);
    bool valid = bad == n && complete;

    CHECK_EQ_INT(utf8_valid(p, n), valid);
    utf8_state st = 0;
    bool fed = utf8_feed(&st, p, n);
    CHECK_EQ_INT(fed, bad == n);
    if (fed)
        CHECK_EQ_INT(utf8_complete(st), complete);

    CHECK_EQ_INT(feed_bytewise(p, n, &st), bad);
    if (bad == n)
        CHECK_EQ_INT(utf8_complete(st), complete);

    for (size_t cut = 0; cut <= n; cut++) {
        st = 0;
        bool a = utf8_feed(&st, p, cut);
        CHECK_EQ_INT(a, bad >= cut);
        if (a) {
            bool b = utf8_feed(&st, p + cut, n - cut);
            CHECK_EQ_INT(b, bad == n);
            if (b)
                CHECK_EQ_INT(utf8_complete(st), complete);
        }
    }
}

struct bad_case {
    const char *name;
    const char *bytes;
    size_t len;
    size_t bad_at;          /* index of the first invalid byte; len: truncated */
};

#define BAD(name, s, at) { name, s, sizeof s - 1, at }

static const struct bad_case bad_cases[] = {
    BAD("overlong C0 80 (NUL)", "\xC0\x80", 0),
    BAD("overlong C1 BF", "\xC1\xBF", 0),
    BAD("overlong E0 80 80", "\xE0\x80\x80", 1),
    BAD("overlong E0 9F BF (U+07FF)", "\xE0\x9F\xBF", 1),
    BAD("overlong F0 80 80 80", "\xF0\x80\x80\x80", 1),
    BAD("overlong F0 8F BF BF (U+FFFF)", "\xF0\x8F\xBF\xBF", 1),
    BAD("surrogate ED A0 80 (U+D800)", "\xED\xA0\x80", 1),
    BAD("surrogate ED BF BF (U+DFFF)", "\xED\xBF\xBF", 1),
    BAD("surrogate pair", "\xED\xA0\x80\xED\xB0\x80", 1),
    BAD("above U+10FFFF F4 90 80 80", "\xF4\x90\x80\x80", 1),
    BAD("above U+10FFFF F4 BF BF BF", "\xF4\xBF\xBF\xBF", 1),
    BAD("F5", "\xF5\x80\x80\x80", 0),
    BAD("F7 BF BF BF", "\xF7\xBF\xBF\xBF", 0),
    BAD("F8 5-byte form", "\xF8\x88\x80\x80\x80", 0),
    BAD("FC 6-byte form", "\xFC\x84\x80\x80\x80\x80", 0),
    BAD("FE", "\xFE", 0),
    BAD("FF", "\xFF", 0),
    BAD("stray continuation 80", "\x80", 0),
    BAD("stray continuation BF after ASCII", "abc\xBF", 3),
    BAD("continuation after a complete 2-byte", "\xC3\xA9\x80", 2),
    BAD("2-byte start then ASCII", "\xC3" "A", 1),
    BAD("3-byte start then ASCII", "\xE2\x82" "A", 2),
    BAD("4-byte start then ASCII", "\xF0\x9F\x98" "A", 3),
    BAD("start byte inside a sequence", "\xE2\xC3\xA9", 1),
    BAD("truncated 2-byte at end", "ab\xC3", 3),
    BAD("truncated 3-byte at end", "\xE2\x82", 2),
    BAD("truncated 4-byte at end", "\xF0\x9F\x98", 3),
};

TEST(every_rfc3629_error_class)
{
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad_case *c = &bad_cases[i];
        const unsigned char *p = (const unsigned char *)c->bytes;
        if (!CHECK(!utf8_valid(p, c->len)))
            NOTE("  accepted: %s\n", c->name);
        utf8_state st;
        size_t at = feed_bytewise(p, c->len, &st);
        if (!CHECK_EQ_INT(at, c->bad_at))
            NOTE("  case: %s\n", c->name);
        if (c->bad_at == c->len)
            CHECK(!utf8_complete(st));
        check_input(p, c->len);
    }
}

TEST(valid_boundary_code_points)
{
    static const uint32_t cps[] = { 0x0, 0x7F, 0x80, 0x7FF, 0x800, 0xD7FF, 0xE000, 0xFFFD,
                                    0xFFFE, 0xFFFF, 0x10000, 0x10FFFF };
    for (size_t i = 0; i < sizeof cps / sizeof cps[0]; i++) {
        unsigned char b[4];
        size_t n = encode(cps[i], b);
        if (!CHECK(utf8_valid(b, n)))
            NOTE("  U+%04X refused\n", (unsigned)cps[i]);
        check_input(b, n);
    }
    /* The encodings of the boundaries, spelled out. */
    CHECK(utf8_valid("\x7F", 1));
    CHECK(utf8_valid("\xC2\x80", 2));
    CHECK(utf8_valid("\xDF\xBF", 2));
    CHECK(utf8_valid("\xE0\xA0\x80", 3));
    CHECK(utf8_valid("\xEF\xBF\xBF", 3));
    CHECK(utf8_valid("\xF0\x90\x80\x80", 4));
    CHECK(utf8_valid("\xF4\x8F\xBF\xBF", 4));
    CHECK(utf8_valid("\xED\x9F\xBF", 3));
    CHECK(utf8_valid("\xEE\x80\x80", 3));
    CHECK(utf8_valid("", 0));
}

TEST(every_code_point)
{
    unsigned char b[4];
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        size_t n = encode(cp, b);
        bool surrogate = cp >= 0xD800 && cp <= 0xDFFF;
        if (!CHECK_EQ_INT(utf8_valid(b, n), !surrogate))
            NOTE("  U+%04X\n", (unsigned)cp);
    }
}

TEST(all_two_byte_sequences)
{
    unsigned char b[2];
    for (unsigned x = 0; x < 0x10000; x++) {
        b[0] = (unsigned char)(x >> 8);
        b[1] = (unsigned char)x;
        bool complete;
        size_t bad = ref_first_bad(b, 2, &complete);
        CHECK_EQ_INT(utf8_valid(b, 2), bad == 2 && complete);
        utf8_state st;
        CHECK_EQ_INT(feed_bytewise(b, 2, &st), bad);
    }
}

TEST(all_three_byte_sequences_from_lead_bytes)
{
    unsigned char b[3];
    for (unsigned x = 0; x < (64u << 16); x++) {
        b[0] = (unsigned char)(0xC0 + (x >> 16));
        b[1] = (unsigned char)(x >> 8);
        b[2] = (unsigned char)x;
        bool complete;
        size_t bad = ref_first_bad(b, 3, &complete);
        if (!CHECK_EQ_INT(utf8_valid(b, 3), bad == 3 && complete))
            NOTE("  %02x %02x %02x\n", b[0], b[1], b[2]);
    }
}

TEST(four_byte_sequences_of_edge_bytes)
{
    static const unsigned char edge[] = { 0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF,
                                          0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4,
                                          0xF5, 0xFF };
    const size_t ne = sizeof edge;
    unsigned char b[4];
    for (size_t a = 0; a < ne; a++)
        for (size_t c = 0; c < ne; c++)
            for (size_t d = 0; d < ne; d++)
                for (size_t e = 0; e < ne; e++) {
                    b[0] = edge[a];
                    b[1] = edge[c];
                    b[2] = edge[d];
                    b[3] = edge[e];
                    bool complete;
                    size_t bad = ref_first_bad(b, 4, &complete);
                    CHECK_EQ_INT(utf8_valid(b, 4), bad == 4 && complete);
                    utf8_state st;
                    CHECK_EQ_INT(feed_bytewise(b, 4, &st), bad);
                    if (bad == 4)
                        CHECK_EQ_INT(utf8_complete(st), complete);
                }
}

TEST(recv_1byte_fail_fast)
{
    /* Valid text, then the first invalid byte: each earlier byte is
     * accepted, that byte is refused. */
    const char *s = "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80 ok \xED\xA0\x80 never seen";
    size_t n = strlen(s);
    utf8_state st;
    size_t at = feed_bytewise((const unsigned char *)s, n, &st);
    CHECK_EQ_INT(at, strstr(s, "\xED\xA0") - s + 1);
}

TEST(sequence_split_across_feeds)
{
    /* U+20AC and U+1F600 cut at every point, in the middle of ASCII runs
     * long enough for the 8-byte path. */
    const char *s = "0123456789abcdef\xE2\x82\xAC" "0123456789abcdef\xF0\x9F\x98\x80" "0123456789";
    size_t n = strlen(s);
    for (size_t a = 0; a <= n; a++)
        for (size_t b = a; b <= n; b++) {
            utf8_state st = 0;
            CHECK(utf8_feed(&st, s, a));
            CHECK(utf8_feed(&st, s + a, b - a));
            CHECK(utf8_feed(&st, s + b, n - b));
            CHECK(utf8_complete(st));
        }
    /* The state says "inside a character" between the pieces. */
    utf8_state st = 0;
    CHECK(utf8_feed(&st, "\xF0\x9F", 2));
    CHECK(!utf8_complete(st));
    CHECK(utf8_feed(&st, "\x98", 1));
    CHECK(!utf8_complete(st));
    CHECK(utf8_feed(&st, "\x80", 1));
    CHECK(utf8_complete(st));
    /* An error in a later fragment against a sequence from an earlier one. */
    st = 0;
    CHECK(utf8_feed(&st, "abc\xF4", 4));
    CHECK(!utf8_feed(&st, "\x90\x80\x80", 3));
    st = 0;
    CHECK(utf8_feed(&st, "abc\xE0", 4));
    CHECK(!utf8_feed(&st, "\x9F\xBF", 2));
    st = 0;
    CHECK(utf8_feed(&st, "\xED", 1));
    CHECK(!utf8_feed(&st, "\xA0\x80", 2));
    /* An empty feed changes nothing. */
    st = 0;
    CHECK(utf8_feed(&st, "\xE2", 1));
    utf8_state before = st;
    CHECK(utf8_feed(&st, "", 0));
    CHECK_EQ_INT(st, before);
}

TEST(ascii_fast_path_every_alignment_and_length)
{
    /* Past 64 bytes (the vector loop's stride) and into its 8-byte tail. */
    unsigned char storage[160 + 8];
    for (size_t align = 0; align < 8; align++) {
        unsigned char *p = storage + align;
        for (size_t len = 0; len <= 150; len++) {
            for (size_t i = 0; i < len; i++)
                p[i] = (unsigned char)('a' + (i * 7 + align) % 26);
            CHECK(utf8_valid(p, len));
            utf8_state st = 0;
            CHECK(utf8_feed(&st, p, len) && utf8_complete(st));

            /* One invalid byte at each position: refused exactly there. */
            static const unsigned char bads[] = { 0x80, 0xBF, 0xC0, 0xF5, 0xFF };
            for (size_t k = 0; k < sizeof bads; k++) {
                for (size_t pos = 0; pos < len; pos++) {
                    unsigned char save = p[pos];
                    p[pos] = bads[k];
                    CHECK(!utf8_valid(p, len));
                    st = 0;
                    CHECK(utf8_feed(&st, p, pos));
                    st = 0;
                    CHECK(!utf8_feed(&st, p, pos + 1));
                    p[pos] = save;
                }
            }
            /* A valid two-byte character at each position. */
            for (size_t pos = 0; pos + 1 < len; pos++) {
                unsigned char s0 = p[pos], s1 = p[pos + 1];
                p[pos] = 0xC3;
                p[pos + 1] = 0xA9;
                CHECK(utf8_valid(p, len));
                /* Cut off after its first byte: valid so far, incomplete. */
                st = 0;
                CHECK(utf8_feed(&st, p, pos + 1));
                CHECK(!utf8_complete(st));
                CHECK(!utf8_valid(p, pos + 1));
                p[pos] = s0;
                p[pos + 1] = s1;
            }
            /* A high bit in any byte of a vector or word is noticed even when
             * the byte is a valid lead whose continuation follows. */
            for (size_t pos = 0; pos + 2 < len; pos++) {
                unsigned char s0 = p[pos], s1 = p[pos + 1], s2 = p[pos + 2];
                p[pos] = 0xE2;
                p[pos + 1] = 0x82;
                p[pos + 2] = 0xAC;
                CHECK(utf8_valid(p, len));
                p[pos + 2] = 'x';
                CHECK(!utf8_valid(p, len));
                st = 0;
                CHECK(utf8_feed(&st, p, pos + 2));
                st = 0;
                CHECK(!utf8_feed(&st, p, pos + 3));
                p[pos] = s0;
                p[pos + 1] = s1;
                p[pos + 2] = s2;
            }
        }
    }
}

TEST(ascii_fast_path_does_not_read_past_n)
{
    /* Inputs right at the end of a heap block: ASan catches any over-read
     * by the vector or the 8-byte loop. */
    for (size_t len = 0; len <= 150; len++) {
        unsigned char *p = malloc(len ? len : 1);
        memset(p, 'x', len);
        CHECK(utf8_valid(p, len));
        if (len) {
            p[len - 1] = 0xC3;
            CHECK(!utf8_valid(p, len));
        }
        free(p);
    }
}

TEST(state_survives_many_feeds)
{
    /* A long mixed text fed in pieces of every size 1..17. */
    unsigned char text[4096];
    size_t n = 0;
    uint32_t cp = 1;
    while (n + 4 <= sizeof text) {
        cp = (cp * 1103515245u + 12345u) & 0x1FFFFF;
        uint32_t c = cp % 0x110000;
        if (c >= 0xD800 && c <= 0xDFFF)
            c = 'z';
        if ((cp >> 20) & 1)
            c &= 0x7F;
        n += encode(c, text + n);
    }
    CHECK(utf8_valid(text, n));
    for (size_t step = 1; step <= 17; step++) {
        utf8_state st = 0;
        bool ok = true;
        for (size_t i = 0; i < n; i += step)
            ok = ok && utf8_feed(&st, text + i, n - i < step ? n - i : step);
        CHECK(ok && utf8_complete(st));
    }
}

int main(int argc, char **argv)
{
    return check_main("test_utf8");
}
