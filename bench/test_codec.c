/*
 * test_codec: unit tests for the bench tools' pure code (wsframe, wshs).
 * Run with `make -C bench test`. Each check names the edge case it covers.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wsframe.h"
#include "wshs.h"

static int failures;

#define CHECK(cond, name)                                                   \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "FAIL %s (%s:%d)\n", name, __FILE__, __LINE__); \
            failures++;                                                     \
        }                                                                   \
    } while (0)

/* Every length class round-trips, and the encoding is the shortest. */
static void frame_roundtrip_lengths(void)
{
    static const uint64_t lens[] = {0, 1, 125, 126, 127, 65535, 65536,
                                    (uint64_t)1 << 40};
    static const size_t want[] = {2, 2, 2, 4, 4, 4, 10, 10};
    const uint8_t key[4] = {0xA1, 0xB2, 0xC3, 0xD4};

    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        for (int masked = 0; masked < 2; masked++) {
            uint8_t buf[WSF_HEADER_MAX];
            struct wsf_header h;
            size_t n = wsf_write(buf, true, WSF_BINARY, lens[i], masked ? key : NULL);
            CHECK(n == want[i] + (masked ? 4 : 0), "shortest_length_encoding");
            CHECK(n == wsf_header_len(lens[i], masked), "header_len_agrees");
            CHECK(wsf_parse(buf, n, &h) == (int)n, "roundtrip_consumed");
            CHECK(h.len == lens[i] && h.fin && h.opcode == WSF_BINARY &&
                  h.masked == masked && h.rsv == 0, "roundtrip_fields");
            CHECK(!masked || memcmp(h.mask, key, 4) == 0, "roundtrip_mask_key");
        }
    }
}

/* Every strict prefix of a header is "partial", never an error or a
 * wrong length: what a one-byte feed produces. */
static void frame_recv_1byte(void)
{
    const uint8_t key[4] = {1, 2, 3, 4};
    uint8_t buf[WSF_HEADER_MAX];
    struct wsf_header h;
    size_t n = wsf_write(buf, false, WSF_TEXT, 70000, key);

    for (size_t k = 0; k < n; k++)
        CHECK(wsf_parse(buf, k, &h) == -2, "partial_header_prefix");
    CHECK(wsf_parse(buf, n, &h) == (int)n && !h.fin, "complete_after_prefixes");
}

/* Headers §5.2 forbids whatever the context, and RSV left to the caller. */
static void frame_rejects(void)
{
    struct wsf_header h;
    uint8_t reserved_op[] = {0x83, 0x00};
    uint8_t long_ping[] = {0x89, 126, 0x00, 0x7E};
    uint8_t fragmented_close[] = {0x08, 0x00};
    uint8_t huge[] = {0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0};
    uint8_t rsv1[] = {0xC1, 0x00};

    CHECK(wsf_parse(reserved_op, sizeof reserved_op, &h) == -1, "reserved_opcode");
    CHECK(wsf_parse(long_ping, sizeof long_ping, &h) == -1, "too_long_control_frame");
    CHECK(wsf_parse(fragmented_close, sizeof fragmented_close, &h) == -1,
          "fragmented_control_frame");
    CHECK(wsf_parse(huge, sizeof huge, &h) == -1, "64bit_length_top_bit");
    CHECK(wsf_parse(rsv1, sizeof rsv1, &h) == 2 && h.rsv == 4, "rsv1_reported_not_judged");
}

/* The word-at-a-time masks agree with the byte-wise definition at every
 * length around the 8-byte step, from unaligned starts too. */
static void mask_matches_bytewise(void)
{
    const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
    uint8_t src[64], a[64], b[64];

    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (uint8_t)(i * 7 + 3);
    for (size_t off = 0; off < 3; off++) {
        for (size_t n = 0; n + off <= 40; n++) {
            memcpy(a, src, sizeof src);
            wsf_mask(a + off, n, key);
            wsf_mask_copy(b, src + off, n, key);
            int same = 1;
            for (size_t i = 0; i < n; i++)
                if (a[off + i] != (src[off + i] ^ key[i & 3]) || b[i] != a[off + i])
                    same = 0;
            CHECK(same, "mask_word_equals_bytewise");
        }
    }
}

/* RFC 6455 §1.3's worked example. */
static void accept_rfc_example(void)
{
    char out[WSHS_ACCEPT_LEN + 1];
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";

    CHECK(wshs_accept(key, strlen(key), out) == 0 &&
          strcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0, "accept_rfc_example");
}

/* §4.1: 16 random bytes, base64, so 24 characters ending in "==". */
static void key_is_base64_of_16(void)
{
    char a[WSHS_KEY_LEN + 1], b[WSHS_KEY_LEN + 1];

    CHECK(wshs_make_key(a) == 0 && wshs_make_key(b) == 0, "make_key");
    CHECK(strlen(a) == WSHS_KEY_LEN && a[22] == '=' && a[23] == '=', "key_shape");
    CHECK(strcmp(a, b) != 0, "keys_differ");
}

/* Header lookup as a 101 from a real server may write it: odd case,
 * padding, lists, parameters, and names that are prefixes of others. */
static void head_and_headers(void)
{
    const char head[] = "HTTP/1.1 101 Switching Protocols\r\n"
                        "upgrade:  WebSocket \r\n"
                        "Connection: keep-alive, Upgrade\r\n"
                        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n"
                        "X-Upgrade-Not: 1\r\n"
                        "\r\nFRAMEBYTES";
    size_t n = wshs_head_end(head, sizeof head - 1);
    size_t vl;
    const char *v;

    CHECK(n == sizeof head - 1 - strlen("FRAMEBYTES"), "head_end_before_body");
    CHECK(wshs_head_end(head, n - 1) == 0, "head_end_partial");
    v = wshs_header(head, n, "Upgrade", &vl);
    CHECK(v && vl == 9 && memcmp(v, "WebSocket", 9) == 0, "header_case_and_trim");
    CHECK(wshs_has_token(v, vl, "websocket"), "token_case_insensitive");
    v = wshs_header(head, n, "connection", &vl);
    CHECK(v && wshs_has_token(v, vl, "upgrade") && !wshs_has_token(v, vl, "close"),
          "token_in_list");
    v = wshs_header(head, n, "Sec-WebSocket-Extensions", &vl);
    CHECK(v && wshs_has_token(v, vl, "permessage-deflate"), "token_with_params");
    CHECK(wshs_header(head, n, "X-Upgrade", &vl) == NULL, "header_prefix_is_not_a_match");
    CHECK(wshs_header(head, n, "HTTP/1.1 101 Switching Protocols", &vl) == NULL,
          "status_line_is_not_a_header");
}

/* Runs every case; the exit status is what make test checks. */
int main(void)
{
    frame_roundtrip_lengths();
    frame_recv_1byte();
    frame_rejects();
    mask_matches_bytewise();
    accept_rfc_example();
    key_is_base64_of_16();
    head_and_headers();
    if (failures) {
        fprintf(stderr, "test_codec: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_codec: all passed\n");
    return 0;
}
