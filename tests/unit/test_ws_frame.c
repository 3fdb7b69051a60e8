/*
 * ws_frame (src/proto/ws_frame.h): header parse/write at every length
 * boundary, partial headers, masking against a byte-wise reference, and the
 * close codes a peer may send.
 */
#include "check.h"

#include <stdint.h>
#include <stdlib.h>

#include "proto/ws_frame.h"

static const uint64_t lengths[] = { 0,     1,      124,     125,           126,
                                    127,   65535,  65536,   65537,         0xFFFFFFFFull,
                                    1ull << 32, (1ull << 63) - 1 };

/* Header bytes written by hand (RFC 6455 §5.2), independent of the codec. */
static size_t ref_header(uint8_t *o, bool fin, uint8_t rsv, uint8_t op, uint64_t len,
                         const uint8_t *mask)
{
    size_t n = 0;
    o[n++] = (uint8_t)((fin ? 0x80 : 0) | rsv << 4 | op);
    uint8_t m = mask ? 0x80 : 0;
    if (len <= 125) {
        o[n++] = (uint8_t)(m | len);
    } else if (len <= 65535) {
        o[n++] = m | 126;
        o[n++] = (uint8_t)(len >> 8);
        o[n++] = (uint8_t)len;
    } else {
        o[n++] = m | 127;
        for (int s = 56; s >= 0; s -= 8)
            o[n++] = (uint8_t)(len >> s);
    }
    if (mask) {
        memcpy(o + n, mask, 4);
        n += 4;
    }
    return n;
}

TEST(length_encodings_at_boundaries)
{
    uint8_t b[WS_HEADER_MAX];
    CHECK_EQ_INT(ws_frame_header_write(b, true, 0, WS_OP_BINARY, 125, NULL), 2);
    CHECK_MEM(b, 2, "\x82\x7d", 2);
    CHECK_EQ_INT(ws_frame_header_write(b, true, 0, WS_OP_BINARY, 126, NULL), 4);
    CHECK_MEM(b, 4, "\x82\x7e\x00\x7e", 4);
    CHECK_EQ_INT(ws_frame_header_write(b, true, 0, WS_OP_BINARY, 65535, NULL), 4);
    CHECK_MEM(b, 4, "\x82\x7e\xff\xff", 4);
    CHECK_EQ_INT(ws_frame_header_write(b, true, 0, WS_OP_BINARY, 65536, NULL), 10);
    CHECK_MEM(b, 10, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    CHECK_EQ_INT(ws_frame_header_write(b, false, 0, WS_OP_TEXT, 0, NULL), 2);
    CHECK_MEM(b, 2, "\x01\x00", 2);
    static const uint8_t mask[4] = { 0x37, 0xfa, 0x21, 0x3d };
    CHECK_EQ_INT(ws_frame_header_write(b, true, WS_RSV1, WS_OP_TEXT, 5, mask), 6);
    CHECK_MEM(b, 6, "\xc1\x85\x37\xfa\x21\x3d", 6);

    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        for (int m = 0; m < 2; m++) {
            uint8_t want[WS_HEADER_MAX];
            size_t wn = ref_header(want, true, 0, WS_OP_BINARY, lengths[i], m ? mask : NULL);
            size_t n = ws_frame_header_write(b, true, 0, WS_OP_BINARY, lengths[i],
                                             m ? mask : NULL);
            CHECK_MEM(b, n, want, wn);
            CHECK_EQ_INT(ws_frame_header_len(lengths[i], m), wn);
        }
    }
}

TEST(parse_rfc6455_examples)
{
    struct ws_frame_header h;
    /* §5.7: a single-frame unmasked text message "Hello". */
    CHECK_EQ_INT(ws_frame_parse((const uint8_t *)"\x81\x05Hello", 7, &h), 2);
    CHECK(h.fin);
    CHECK_EQ_INT(h.opcode, WS_OP_TEXT);
    CHECK(!h.masked);
    CHECK_EQ_INT(h.len, 5);
    CHECK_EQ_INT(h.rsv, 0);
    /* The masked one. */
    const uint8_t m[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
    CHECK_EQ_INT(ws_frame_parse(m, sizeof m, &h), 6);
    CHECK(h.masked);
    CHECK_MEM(h.mask, 4, "\x37\xfa\x21\x3d", 4);
    uint8_t out[5];
    CHECK_EQ_INT(ws_mask(out, m + 6, 5, h.mask, 0), 1);
    CHECK_MEM(out, 5, "Hello", 5);
    /* A fragmented first frame, a 256-byte binary, a 64 KiB binary. */
    CHECK_EQ_INT(ws_frame_parse((const uint8_t *)"\x01\x03Hel", 5, &h), 2);
    CHECK(!h.fin);
    CHECK_EQ_INT(ws_frame_parse((const uint8_t *)"\x82\x7E\x01\x00", 4, &h), 4);
    CHECK_EQ_INT(h.len, 256);
    CHECK_EQ_INT(
        ws_frame_parse((const uint8_t *)"\x82\x7F\x00\x00\x00\x00\x00\x01\x00\x00", 10, &h), 10);
    CHECK_EQ_INT(h.len, 65536);
    /* Every RSV bit and opcode comes through as it is: judging them is
     * ws_msg's job. */
    CHECK_EQ_INT(ws_frame_parse((const uint8_t *)"\x7f\x00", 2, &h), 2);
    CHECK(!h.fin);
    CHECK_EQ_INT(h.rsv, WS_RSV1 | WS_RSV2 | WS_RSV3);
    CHECK_EQ_INT(h.opcode, 0xF);
    CHECK_EQ_INT(ws_frame_parse((const uint8_t *)"\x20\x00", 2, &h), 2);
    CHECK_EQ_INT(h.rsv, WS_RSV2);
    CHECK_EQ_INT(ws_frame_parse((const uint8_t *)"\x10\x00", 2, &h), 2);
    CHECK_EQ_INT(h.rsv, WS_RSV3);
}

TEST(round_trip_every_field)
{
    static const uint8_t mask[4] = { 0xde, 0xad, 0xbe, 0xef };
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++)
        for (unsigned op = 0; op < 16; op++)
            for (unsigned rsv = 0; rsv < 8; rsv++)
                for (int fin = 0; fin < 2; fin++)
                    for (int m = 0; m < 2; m++) {
                        uint8_t b[WS_HEADER_MAX + 1];
                        size_t n = ws_frame_header_write(b, fin, (uint8_t)rsv, (uint8_t)op,
                                                         lengths[i], m ? mask : NULL);
                        struct ws_frame_header h;
                        memset(&h, 0xAA, sizeof h);
                        CHECK_EQ_INT(ws_frame_parse(b, n, &h), n);
                        CHECK_EQ_INT(h.fin, fin);
                        CHECK_EQ_INT(h.rsv, rsv);
                        CHECK_EQ_INT(h.opcode, op);
                        CHECK_EQ_INT(h.masked, m);
                        CHECK(h.len == lengths[i]);
                        if (m)
                            CHECK_MEM(h.mask, 4, mask, 4);
                    }
}

TEST(partial_header_every_length)
{
    static const uint8_t mask[4] = { 1, 2, 3, 4 };
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++)
        for (int m = 0; m < 2; m++) {
            uint8_t full[WS_HEADER_MAX];
            size_t n = ws_frame_header_write(full, true, 0, WS_OP_BINARY, lengths[i],
                                             m ? mask : NULL);
            for (size_t k = 0; k < n; k++) {
                /* Exactly k bytes on the heap: ASan catches a read past them. */
                uint8_t *p = malloc(k ? k : 1);
                memcpy(p, full, k);
                struct ws_frame_header h;
                CHECK_EQ_INT(ws_frame_parse(p, k, &h), WS_FRAME_PARTIAL);
                free(p);
            }
            uint8_t *p = malloc(n);
            memcpy(p, full, n);
            struct ws_frame_header h;
            CHECK_EQ_INT(ws_frame_parse(p, n, &h), n);
            free(p);
        }
}

TEST(length_64bit_top_bit_set)
{
    struct ws_frame_header h;
    uint8_t b[14] = { 0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0 };
    CHECK_EQ_INT(ws_frame_parse(b, 10, &h), WS_FRAME_ERROR);
    memset(b + 2, 0xff, 8);
    CHECK_EQ_INT(ws_frame_parse(b, 10, &h), WS_FRAME_ERROR);
    /* Masked: refused before the mask arrives, and with it. */
    b[1] = 0xFF;
    CHECK_EQ_INT(ws_frame_parse(b, 10, &h), WS_FRAME_ERROR);
    CHECK_EQ_INT(ws_frame_parse(b, 14, &h), WS_FRAME_ERROR);
    /* 2^63 - 1 is the largest allowed. */
    b[1] = 0x7F;
    b[2] = 0x7f;
    CHECK_EQ_INT(ws_frame_parse(b, 10, &h), 10);
    CHECK(h.len == (1ull << 63) - 1);
}

static unsigned ref_mask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t m[4],
                         unsigned phase)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = src[i] ^ m[(phase + i) & 3];
    return (unsigned)((phase + n) & 3);
}

TEST(mask_every_phase_length_and_alignment)
{
    static const uint8_t mask[4] = { 0x12, 0x34, 0x56, 0xf8 };
    /* Lengths past two strides of the 64-byte vector loop and its tails. */
    uint8_t src[160], want[160], buf[160 + 8];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (uint8_t)(i * 37 + 11);
    for (unsigned phase = 0; phase < 4; phase++)
        for (size_t len = 0; len <= 150; len++)
            for (size_t align = 0; align < 8; align++) {
                unsigned wp = ref_mask(want, src, len, mask, phase);
                /* Not in place; the bytes around dst stay untouched. */
                memset(buf, 0xEE, sizeof buf);
                CHECK_EQ_INT(ws_mask(buf + align, src, len, mask, phase), wp);
                CHECK_MEM(buf + align, len, want, len);
                for (size_t k = 0; k < sizeof buf; k++) {
                    if (k < align || k >= align + len)
                        CHECK_EQ_INT(buf[k], 0xEE);
                }
                /* In place. */
                memcpy(buf + align, src, len);
                CHECK_EQ_INT(ws_mask(buf + align, buf + align, len, mask, phase), wp);
                CHECK_MEM(buf + align, len, want, len);
                /* Twice is the identity. */
                ws_mask(buf + align, buf + align, len, mask, phase);
                CHECK_MEM(buf + align, len, src, len);
            }
    /* Phases above 3 are taken modulo 4. */
    uint8_t a[9], b[9];
    ws_mask(a, src, 9, mask, 1);
    ws_mask(b, src, 9, mask, 5);
    CHECK_MEM(a, 9, b, 9);
}

TEST(mask_in_pieces_equals_whole)
{
    /* A payload unmasked piece by piece, passing the phase on, as ws_msg
     * does when bytes arrive one read at a time. */
    static const uint8_t mask[4] = { 0xa1, 0xb2, 0xc3, 0xd4 };
    uint8_t src[100], whole[100], pieces[100];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (uint8_t)(i ^ 0x5a);
    ws_mask(whole, src, sizeof src, mask, 0);
    for (size_t step = 1; step <= 17; step++) {
        unsigned phase = 0;
        for (size_t off = 0; off < sizeof src; off += step) {
            size_t k = sizeof src - off < step ? sizeof src - off : step;
            phase = ws_mask(pieces + off, src + off, k, mask, phase);
        }
        CHECK_MEM(pieces, sizeof pieces, whole, sizeof whole);
    }
}

TEST(mask_does_not_read_or_write_past_n)
{
    static const uint8_t mask[4] = { 9, 8, 7, 6 };
    for (size_t len = 0; len <= 40; len++)
        for (unsigned phase = 0; phase < 4; phase++) {
            uint8_t *s = malloc(len ? len : 1);
            uint8_t *d = malloc(len ? len : 1);
            memset(s, 0x33, len);
            ws_mask(d, s, len, mask, phase);
            ws_mask(s, s, len, mask, phase);
            CHECK_MEM(d, len, s, len);
            free(s);
            free(d);
        }
}

TEST(close_code_valid_every_code)
{
    for (unsigned code = 0; code <= 5000; code++) {
        bool want = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                    (code >= 3000 && code <= 4999);
        if (!CHECK_EQ_INT(ws_close_code_valid(code), want))
            NOTE("  code %u\n", code);
    }
    CHECK(!ws_close_code_valid(1004));
    CHECK(!ws_close_code_valid(1005));
    CHECK(!ws_close_code_valid(1006));
    CHECK(!ws_close_code_valid(1015));
    CHECK(!ws_close_code_valid(65535));
    CHECK(!ws_close_code_valid(0x10000 + 1000));
}

TEST(opcode_is_control)
{
    for (unsigned op = 0; op < 16; op++)
        CHECK_EQ_INT(ws_opcode_is_control((uint8_t)op), op >= 8);
}

int main(int argc, char **argv)
{
    return check_main("test_ws_frame");
}
