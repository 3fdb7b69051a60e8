/*
 * http_parse (src/proto/http_parse.h): request and response heads, header
 * lookup, token lists, chunked bodies and URL decoding.
 *
 * Every input is parsed where it ends right before a PROT_NONE page, so a
 * read of even one byte past len crashes (as in picohttpparser's tests).
 */
#include "check.h"

#include <sys/mman.h>
#include <unistd.h>

#include "proto/http_parse.h"

#define GUARD_ROOM (5 * 4096)

static char *guard_end;         /* first byte of the PROT_NONE page */

/* Copies n bytes so that they end right at the guard page. */
static char *guarded(const void *p, size_t n)
{
    if (!guard_end) {
        size_t pg = (size_t)sysconf(_SC_PAGESIZE);
        size_t room = (GUARD_ROOM + pg - 1) / pg * pg;
        char *m = mmap(NULL, room + pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
        if (m == MAP_FAILED || mprotect(m + room, pg, PROT_NONE) != 0) {
            perror("mmap guard page");
            abort();
        }
        guard_end = m + room;
    }
    if (n > GUARD_ROOM)
        abort();
    char *d = guard_end - n;
    if (n)
        memcpy(d, p, n);
    return d;
}

static int parse_req(const char *s, size_t n, struct http_request *req)
{
    return http_parse_request(guarded(s, n), n, req);
}

static int parse_res(const char *s, size_t n, struct http_response *res)
{
    return http_parse_response(guarded(s, n), n, res);
}

#define REQ(s, req) parse_req((s), sizeof(s) - 1, (req))
#define RES(s, res) parse_res((s), sizeof(s) - 1, (res))

/* Every strict prefix is partial, the whole gives its length. */
static void check_prefixes_req(const char *s, size_t n)
{
    struct http_request req;
    for (size_t k = 0; k < n; k++) {
        if (!CHECK_EQ_INT(parse_req(s, k, &req), HTTP_PARTIAL))
            NOTE("  prefix %zu of \"%.*s\"\n", k, (int)n, s);
    }
    CHECK_EQ_INT(parse_req(s, n, &req), (int)n);
}

static void check_prefixes_res(const char *s, size_t n)
{
    struct http_response res;
    for (size_t k = 0; k < n; k++) {
        if (!CHECK_EQ_INT(parse_res(s, k, &res), HTTP_PARTIAL))
            NOTE("  prefix %zu of \"%.*s\"\n", k, (int)n, s);
    }
    CHECK_EQ_INT(parse_res(s, n, &res), (int)n);
}

static const char upgrade_req[] =
    "GET /chat?room=1&x=%20 HTTP/1.1\r\n"
    "Host: server.example.com\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Origin: http://example.com\r\n"
    "Sec-WebSocket-Protocol: chat, superchat\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "X-Empty:\r\n"
    "X-Obs-Text: caf\xc3\xa9\r\n"
    "\r\n";

TEST(request_fields)
{
    struct http_request req;
    size_t n = sizeof upgrade_req - 1;
    CHECK_EQ_INT(parse_req(upgrade_req, n, &req), (int)n);
    CHECK_STR(req.method, req.method_len, "GET");
    CHECK_STR(req.target, req.target_len, "/chat?room=1&x=%20");
    CHECK_EQ_INT(req.minor_version, 1);
    CHECK_EQ_INT(req.nheaders, 9);
    if (req.nheaders == 9) {
        CHECK_STR(req.headers[0].name, req.headers[0].name_len, "Host");
        CHECK_STR(req.headers[0].value, req.headers[0].value_len, "server.example.com");
        CHECK_STR(req.headers[5].name, req.headers[5].name_len, "Sec-WebSocket-Protocol");
        CHECK_STR(req.headers[5].value, req.headers[5].value_len, "chat, superchat");
        CHECK_STR(req.headers[7].name, req.headers[7].name_len, "X-Empty");
        CHECK_EQ_INT(req.headers[7].value_len, 0);
        CHECK_STR(req.headers[8].value, req.headers[8].value_len, "caf\xc3\xa9");
    }
}

TEST(request_every_prefix_partial)
{
    check_prefixes_req(upgrade_req, sizeof upgrade_req - 1);
    static const char minimal[] = "GET / HTTP/1.0\r\n\r\n";
    check_prefixes_req(minimal, sizeof minimal - 1);
    static const char tabs[] = "POST /x HTTP/1.1\r\nA:\t b \t\r\nB:c\r\n\r\n";
    check_prefixes_req(tabs, sizeof tabs - 1);
}

TEST(request_followed_by_body_gives_head_length)
{
    static const char s[] = "POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
    struct http_request req;
    CHECK_EQ_INT(REQ(s, &req), (int)(sizeof s - 1 - 5));
    /* A second pipelined request after the head is not part of it. */
    static const char two[] = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    CHECK_EQ_INT(REQ(two, &req), 19);
}

TEST(request_bare_lf)
{
    struct http_request req;
    CHECK_EQ_INT(REQ("GET / HTTP/1.1\n\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET / HTTP/1.1\nHost: a\r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET / HTTP/1.1\r\nHost: a\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET / HTTP/1.1\r\nHost: a\r\n\n", &req), HTTP_ERROR);
    /* CR not followed by LF. */
    CHECK_EQ_INT(REQ("GET / HTTP/1.1\rX", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET / HTTP/1.1\r\nHost: a\r\n\rX", &req), HTTP_ERROR);
}

TEST(request_space_before_colon)
{
    struct http_request req;
    CHECK_EQ_INT(REQ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET / HTTP/1.1\r\n: a\r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET / HTTP/1.1\r\nNo colon\r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET / HTTP/1.1\r\nBad(name): a\r\n\r\n", &req), HTTP_ERROR);
}

TEST(request_obs_fold)
{
    struct http_request req;
    CHECK_EQ_INT(REQ("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET / HTTP/1.1\r\n Host: a\r\n\r\n", &req), HTTP_ERROR);
}

TEST(request_control_bytes_in_values)
{
    struct http_request req;
    for (unsigned c = 0; c < 0x20; c++) {
        if (c == '\t' || c == '\r')
            continue;
        char s[] = "GET / HTTP/1.1\r\nX: a?b\r\n\r\n";
        *strchr(s, '?') = (char)c;
        if (!CHECK_EQ_INT(parse_req(s, sizeof s - 1, &req), HTTP_ERROR))
            NOTE("  control byte %02x accepted\n", c);
    }
    CHECK_EQ_INT(REQ("GET / HTTP/1.1\r\nX: a\x7f" "b\r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", &req), HTTP_ERROR);
    /* In the target too. */
    CHECK_EQ_INT(REQ("GET /a\x01 HTTP/1.1\r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET /a\x7f HTTP/1.1\r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET /a\tb HTTP/1.1\r\n\r\n", &req), HTTP_ERROR);
    /* Raw non-ASCII (UTF-8 must be %-escaped) and a fragment. */
    CHECK_EQ_INT(REQ("GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET /a\x80 HTTP/1.1\r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET /a#frag HTTP/1.1\r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET /caf%C3%A9 HTTP/1.1\r\n\r\n", &req), 27);
    /* A control byte as the last byte seen is already an error. */
    CHECK_EQ_INT(REQ("GET / HTTP/1.1\r\nX: a\x01", &req), HTTP_ERROR);
}

TEST(request_empty_method_or_target)
{
    struct http_request req;
    CHECK_EQ_INT(REQ(" / HTTP/1.1\r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET  HTTP/1.1\r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET\r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET /\r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET / \r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("G(T / HTTP/1.1\r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("\r\nGET / HTTP/1.1\r\n\r\n", &req), HTTP_ERROR);
}

TEST(request_bad_version)
{
    struct http_request req;
    CHECK_EQ_INT(REQ("GET / HTTP/2.0\r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET / HTTP/1.x\r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET / http/1.1\r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET / HTTP/1.10\r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET / HTTP/1\r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET / HTTP/1.1 \r\n\r\n", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET / XTTP", &req), HTTP_ERROR);
    CHECK_EQ_INT(REQ("GET / HTTP/1.0\r\n\r\n", &req), 18);
    CHECK_EQ_INT(req.minor_version, 0);
    CHECK_EQ_INT(REQ("GET / HTTP/1.9\r\n\r\n", &req), 18);
    CHECK_EQ_INT(req.minor_version, 9);
}

TEST(request_too_many_headers)
{
    char s[4096];
    for (int extra = -1; extra <= 1; extra++) {
        size_t n = (size_t)snprintf(s, sizeof s, "GET / HTTP/1.1\r\n");
        for (int i = 0; i < LIM_HTTP_HEADERS_MAX + extra; i++)
            n += (size_t)snprintf(s + n, sizeof s - n, "H%d: v\r\n", i);
        n += (size_t)snprintf(s + n, sizeof s - n, "\r\n");
        struct http_request req;
        int r = parse_req(s, n, &req);
        if (extra <= 0) {
            CHECK_EQ_INT(r, (int)n);
            CHECK_EQ_INT(req.nheaders, LIM_HTTP_HEADERS_MAX + extra);
        } else {
            CHECK_EQ_INT(r, HTTP_TOO_MANY);
        }
    }
}

TEST(request_trailing_whitespace_trimmed)
{
    struct http_request req;
    CHECK(REQ("GET / HTTP/1.1\r\nA:   x y \t \r\nB:\t\t\r\nC: z\r\n\r\n", &req) > 0);
    CHECK_EQ_INT(req.nheaders, 3);
    CHECK_STR(req.headers[0].value, req.headers[0].value_len, "x y");
    CHECK_EQ_INT(req.headers[1].value_len, 0);
    CHECK_STR(req.headers[2].value, req.headers[2].value_len, "z");
}

TEST(request_lone_cr_at_end_is_partial)
{
    struct http_request req;
    CHECK_EQ_INT(REQ("GET / HTTP/1.1\r", &req), HTTP_PARTIAL);
    CHECK_EQ_INT(REQ("GET / HTTP/1.1\r\nA: b\r", &req), HTTP_PARTIAL);
    CHECK_EQ_INT(REQ("GET / HTTP/1.1\r\nA: b\r\n\r", &req), HTTP_PARTIAL);
    CHECK_EQ_INT(REQ("GET / HTTP/1.1\r\nA: b   ", &req), HTTP_PARTIAL);
}

TEST(request_every_byte_mutation_stays_in_bounds)
{
    /* Each byte of a valid request replaced by each interesting value: any
     * answer is fine as long as nothing is read past the end (the guard page)
     * and a positive answer is a length within the input. */
    static const unsigned char vals[] = { 0, '\t', '\n', '\r', ' ', ':', '/', '.', '1', 'H',
                                          0x7f, 0x80, 0xff };
    char s[sizeof upgrade_req];
    size_t n = sizeof upgrade_req - 1;
    for (size_t i = 0; i < n; i++) {
        for (size_t v = 0; v < sizeof vals; v++) {
            memcpy(s, upgrade_req, n);
            s[i] = (char)vals[v];
            /* The input cut right after the mutated byte, a little later,
             * and whole. */
            size_t lens[] = { i + 1, i + 2, i + 3, n };
            for (size_t j = 0; j < 4; j++) {
                size_t k = lens[j] < n ? lens[j] : n;
                struct http_request req;
                int r = parse_req(s, k, &req);
                CHECK(r == HTTP_PARTIAL || r == HTTP_ERROR || (r > 0 && (size_t)r <= k));
            }
        }
    }
}

static const char upgrade_res[] =
    "HTTP/1.1 101 Switching Protocols\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    "\r\n";

TEST(response_fields_and_every_prefix)
{
    struct http_response res;
    size_t n = sizeof upgrade_res - 1;
    CHECK_EQ_INT(parse_res(upgrade_res, n, &res), (int)n);
    CHECK_EQ_INT(res.status, 101);
    CHECK_EQ_INT(res.minor_version, 1);
    CHECK_STR(res.reason, res.reason_len, "Switching Protocols");
    CHECK_EQ_INT(res.nheaders, 3);
    CHECK_STR(res.headers[2].value, res.headers[2].value_len, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    check_prefixes_res(upgrade_res, n);
    static const char noreason[] = "HTTP/1.0 404\r\nA: b\r\n\r\n";
    check_prefixes_res(noreason, sizeof noreason - 1);
    CHECK_EQ_INT(RES(noreason, &res), (int)sizeof noreason - 1);
    CHECK_EQ_INT(res.status, 404);
    CHECK_EQ_INT(res.reason_len, 0);
    static const char empty_reason[] = "HTTP/1.1 200 \r\n\r\n";
    check_prefixes_res(empty_reason, sizeof empty_reason - 1);
}

TEST(response_malformed)
{
    struct http_response res;
    CHECK_EQ_INT(RES("HTTP/1.1 10 x\r\n\r\n", &res), HTTP_ERROR);
    CHECK_EQ_INT(RES("HTTP/1.1 1011 x\r\n\r\n", &res), HTTP_ERROR);
    CHECK_EQ_INT(RES("HTTP/1.1 099 x\r\n\r\n", &res), HTTP_ERROR);
    CHECK_EQ_INT(RES("HTTP/1.1 2x0 x\r\n\r\n", &res), HTTP_ERROR);
    CHECK_EQ_INT(RES("HTTP/1.1  200 x\r\n\r\n", &res), HTTP_ERROR);
    CHECK_EQ_INT(RES("HTTP/1.1 200 a\x01" "b\r\n\r\n", &res), HTTP_ERROR);
    CHECK_EQ_INT(RES("HTTP/1.1 200 OK\n\r\n", &res), HTTP_ERROR);
    CHECK_EQ_INT(RES("HTTP/2 200 OK\r\n\r\n", &res), HTTP_ERROR);
    CHECK_EQ_INT(RES("HTTP/1.1 200 OK\r\nA : b\r\n\r\n", &res), HTTP_ERROR);
    CHECK_EQ_INT(RES("HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", &res), HTTP_ERROR);
    CHECK_EQ_INT(RES("ICY 200 OK\r\n\r\n", &res), HTTP_ERROR);
}

TEST(response_too_many_headers)
{
    char s[4096];
    size_t n = (size_t)snprintf(s, sizeof s, "HTTP/1.1 101 OK\r\n");
    for (int i = 0; i <= LIM_HTTP_HEADERS_MAX; i++)
        n += (size_t)snprintf(s + n, sizeof s - n, "H%d: v\r\n", i);
    n += (size_t)snprintf(s + n, sizeof s - n, "\r\n");
    struct http_response res;
    CHECK_EQ_INT(parse_res(s, n, &res), HTTP_TOO_MANY);
}

TEST(find_header_case_insensitive_first_wins)
{
    struct http_request req;
    CHECK(REQ("GET / HTTP/1.1\r\nHostname: no\r\nHOST: first\r\nhost: second\r\n\r\n", &req) >
          0);
    const struct http_header *h = http_find_header(req.headers, req.nheaders, "host");
    CHECK(h != NULL);
    if (h)
        CHECK_STR(h->value, h->value_len, "first");
    CHECK(http_find_header(req.headers, req.nheaders, "hos") == NULL);
    CHECK(http_find_header(req.headers, req.nheaders, "x") == NULL);
    CHECK(http_find_header(req.headers, 0, "host") == NULL);
}

TEST(header_values_every_line_in_order)
{
    struct http_request req;
    CHECK(REQ("GET / HTTP/1.1\r\nX-A: one\r\nHostname: no\r\nx-a: two\r\nX-A: three\r\n\r\n",
              &req) > 0);
    const char *vals[2];
    size_t lens[2];
    /* Three of them; only the first two fit. */
    CHECK_EQ_INT(http_header_values(req.headers, req.nheaders, "x-a", vals, lens, 2), 3);
    CHECK_STR(vals[0], lens[0], "one");
    CHECK_STR(vals[1], lens[1], "two");
    CHECK_EQ_INT(http_header_values(req.headers, req.nheaders, "x-a", NULL, NULL, 0), 3);
    CHECK_EQ_INT(http_header_values(req.headers, req.nheaders, "host", NULL, NULL, 0), 0);
}

TEST(has_token)
{
#define HT(v, t) http_has_token(guarded(v, sizeof(v) - 1), sizeof(v) - 1, t)
    CHECK(HT("Upgrade", "upgrade"));
    CHECK(HT("keep-alive, Upgrade", "upgrade"));
    CHECK(HT("keep-alive,Upgrade", "upgrade"));
    CHECK(HT("UPGRADE ,keep-alive", "upgrade"));
    CHECK(HT(",, upgrade\t,", "upgrade"));
    CHECK(HT("a, b, c", "c"));
    CHECK(!HT("Upgrader", "upgrade"));
    CHECK(!HT("xupgrade", "upgrade"));
    CHECK(!HT("up grade", "upgrade"));
    CHECK(!HT("keep-alive", "upgrade"));
    CHECK(!HT("", "upgrade"));
    CHECK(!HT(",,,", "upgrade"));
    CHECK(!HT("upgrad", "upgrade"));
#undef HT
}

/* ---- chunked ---- */

struct chunk_result {
    ssize_t consumed;           /* total, or -1 */
    bool done;
    struct buf out;
};

/* Feeds in pieces of `step` bytes (0: all at once), each piece placed right
 * before the guard page. */
static void chunked_run(const char *in, size_t n, size_t step, size_t max,
                        struct chunk_result *r)
{
    struct http_chunked d = { 0 };
    memset(r, 0, sizeof *r);
    size_t off = 0;
    if (step == 0)
        step = n ? n : 1;
    while (off < n && !d.done) {
        size_t k = n - off < step ? n - off : step;
        ssize_t c = http_chunked_feed(&d, guarded(in + off, k), k, &r->out, max);
        if (c < 0) {
            r->consumed = c;
            return;
        }
        if ((size_t)c < k && !d.done) {
            r->consumed = -3;   /* consumed less without done: contract broken */
            return;
        }
        off += (size_t)c;
    }
    r->consumed = (ssize_t)off;
    r->done = d.done;
}

/* Runs all at once and one byte at a time; both must agree. Returns the
 * all-at-once result (caller frees r->out). */
static void chunked_both(const char *in, size_t n, size_t max, struct chunk_result *r)
{
    struct chunk_result one;
    chunked_run(in, n, 0, max, r);
    chunked_run(in, n, 1, max, &one);
    CHECK_EQ_INT(one.consumed, r->consumed);
    CHECK_EQ_INT(one.done, r->done);
    if (r->consumed >= 0)
        CHECK_MEM(one.out.data, one.out.len, r->out.data, r->out.len);
    buf_free(&one.out);
}

#define CHUNKED(s, max, r) chunked_both((s), sizeof(s) - 1, (max), (r))

TEST(chunked_recv_1byte)
{
    static const char s[] = "5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n";
    struct chunk_result r;
    CHUNKED(s, 1000, &r);
    CHECK_EQ_INT(r.consumed, (ssize_t)sizeof s - 1);
    CHECK(r.done);
    CHECK_STR(r.out.data, r.out.len, "hello, world");
    buf_free(&r.out);
    /* Every split point gives the same. */
    for (size_t cut = 0; cut <= sizeof s - 1; cut++) {
        struct http_chunked d = { 0 };
        struct buf out = { 0 };
        ssize_t a = http_chunked_feed(&d, guarded(s, cut), cut, &out, 1000);
        ssize_t b = http_chunked_feed(&d, guarded(s + cut, sizeof s - 1 - cut),
                                      sizeof s - 1 - cut, &out, 1000);
        CHECK_EQ_INT(a, (ssize_t)cut);
        CHECK_EQ_INT(b, (ssize_t)(sizeof s - 1 - cut));
        CHECK(d.done);
        CHECK_STR(out.data, out.len, "hello, world");
        buf_free(&out);
    }
}

TEST(chunked_hex_sizes)
{
    static const char s[] = "A\r\n0123456789\r\na\r\nabcdefghij\r\n00001\r\nZ\r\n0\r\n\r\n";
    struct chunk_result r;
    CHUNKED(s, 1000, &r);
    CHECK_EQ_INT(r.consumed, (ssize_t)sizeof s - 1);
    CHECK_STR(r.out.data, r.out.len, "0123456789abcdefghijZ");
    buf_free(&r.out);
}

TEST(chunked_extensions)
{
    static const char s[] = "5;name=value\r\nhello\r\n3 ; a=\"b;c\"\r\nabc\r\n0;last\r\n\r\n";
    struct chunk_result r;
    CHUNKED(s, 1000, &r);
    CHECK_EQ_INT(r.consumed, (ssize_t)sizeof s - 1);
    CHECK(r.done);
    CHECK_STR(r.out.data, r.out.len, "helloabc");
    buf_free(&r.out);
    /* A control byte in an extension. */
    CHUNKED("5;a\x01\r\nhello\r\n0\r\n\r\n", 1000, &r);
    CHECK_EQ_INT(r.consumed, -1);
    buf_free(&r.out);
}

TEST(chunked_trailers)
{
    static const char s[] = "3\r\nabc\r\n0\r\nExpires: never\r\nX-Sum: 1\r\n\r\nGET /next";
    struct chunk_result r;
    CHUNKED(s, 1000, &r);
    CHECK(r.done);
    CHECK_EQ_INT(r.consumed, (ssize_t)(sizeof s - 1 - strlen("GET /next")));
    CHECK_STR(r.out.data, r.out.len, "abc");
    buf_free(&r.out);
    /* What follows the body is not consumed, fed in one piece. */
    struct http_chunked d = { 0 };
    struct buf out = { 0 };
    static const char t[] = "0\r\n\r\nXYZ";
    CHECK_EQ_INT(http_chunked_feed(&d, guarded(t, 8), 8, &out, 10), 5);
    CHECK(d.done);
    CHECK_EQ_INT(out.len, 0);
    buf_free(&out);
}

TEST(chunked_trailer_control_bytes)
{
    struct chunk_result r;
    CHUNKED("0\r\nX: a\x01" "b\r\n\r\n", 1000, &r);
    CHECK_EQ_INT(r.consumed, -1);
    buf_free(&r.out);
    /* The first byte of a trailer line is a field-name byte: a control
     * byte there is as malformed as anywhere else in the line. */
    CHUNKED("0\r\n\x01X: a\r\n\r\n", 1000, &r);
    CHECK_EQ_INT(r.consumed, -1);
    buf_free(&r.out);
    CHUNKED("0\r\n\nX: a\r\n\r\n", 1000, &r);
    CHECK_EQ_INT(r.consumed, -1);
    buf_free(&r.out);
}

TEST(chunked_bad_hex)
{
    static const char *const bad[] = {
        "g\r\nx\r\n0\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",
        "\r\nhello\r\n0\r\n\r\n",
        ";ext\r\nhello\r\n0\r\n\r\n",
        " 5\r\nhello\r\n0\r\n\r\n",
        "+5\r\nhello\r\n0\r\n\r\n",
        "5\n\nhello\r\n0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct chunk_result r;
        chunked_both(bad[i], strlen(bad[i]), 1000, &r);
        if (!CHECK_EQ_INT(r.consumed, -1))
            NOTE("  accepted: %s\n", bad[i]);
        buf_free(&r.out);
    }
}

TEST(chunked_missing_crlf)
{
    static const char *const bad[] = {
        "5\r\nhelloX\r\n0\r\n\r\n",
        "5\r\nhello\rX0\r\n\r\n",
        "5\r\nhello\n0\r\n\r\n",
        "5\r\nhello0\r\n\r\n",
        "5\rXhello\r\n0\r\n\r\n",
        "0\r\n\rX",
        "0\r\nA: b\rX",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct chunk_result r;
        chunked_both(bad[i], strlen(bad[i]), 1000, &r);
        if (!CHECK_EQ_INT(r.consumed, -1))
            NOTE("  accepted: %s\n", bad[i]);
        buf_free(&r.out);
    }
}

TEST(chunked_partial_is_not_done)
{
    static const char s[] = "5\r\nhello\r\n0\r\n\r\n";
    for (size_t k = 0; k < sizeof s - 1; k++) {
        struct chunk_result r;
        chunked_both(s, k, 1000, &r);
        CHECK_EQ_INT(r.consumed, (ssize_t)k);
        CHECK(!r.done);
        buf_free(&r.out);
    }
}

TEST(chunked_size_over_max)
{
    struct chunk_result r;
    /* Exactly max is fine; one more byte is refused at the size line,
     * before the data arrives, as too big (413), not as malformed. */
    CHUNKED("a\r\n0123456789\r\n0\r\n\r\n", 10, &r);
    CHECK(r.done);
    CHECK_EQ_INT(r.out.len, 10);
    buf_free(&r.out);
    CHUNKED("b\r\n", 10, &r);
    CHECK_EQ_INT(r.consumed, HTTP_CHUNKED_TOO_BIG);
    buf_free(&r.out);
    /* The total over several chunks counts. */
    CHUNKED("6\r\n012345\r\n5\r\n", 10, &r);
    CHECK_EQ_INT(r.consumed, HTTP_CHUNKED_TOO_BIG);
    CHECK(r.out.len <= 10);
    buf_free(&r.out);
    /* Sizes that would overflow size_t. */
    CHUNKED("ffffffffffffffffffff\r\n", (size_t)-1, &r);
    CHECK_EQ_INT(r.consumed, HTTP_CHUNKED_TOO_BIG);
    buf_free(&r.out);
    CHUNKED("10000000000000000\r\n", (size_t)-1, &r);
    CHECK_EQ_INT(r.consumed, HTTP_CHUNKED_TOO_BIG);
    buf_free(&r.out);
    CHUNKED("100000\r\n", LIM_HTTP_BODY_MAX, &r);
    CHECK_EQ_INT(r.consumed, 8);        /* exactly 1 MiB may follow */
    buf_free(&r.out);
    CHUNKED("100001\r\n", LIM_HTTP_BODY_MAX, &r);
    CHECK_EQ_INT(r.consumed, HTTP_CHUNKED_TOO_BIG);
    buf_free(&r.out);
}

/* ---- url decode ---- */

static ssize_t url_decode(const char *in, bool form, char *out)
{
    size_t n = strlen(in);
    char *g = guarded(in, n);
    ssize_t r = http_url_decode(g, n, form);
    if (r >= 0)
        memcpy(out, g, (size_t)r);
    return r;
}

TEST(url_decode_escapes)
{
    char out[64];
    ssize_t r;
    r = url_decode("%41%42c", false, out);
    CHECK_EQ_INT(r, 3);
    CHECK_MEM(out, 3, "ABc", 3);
    r = url_decode("a+b%2fc%2F", false, out);
    CHECK_EQ_INT(r, 6);
    CHECK_MEM(out, 6, "a+b/c/", 6);
    r = url_decode("a+b", true, out);
    CHECK_EQ_INT(r, 3);
    CHECK_MEM(out, 3, "a b", 3);
    r = url_decode("%2B", true, out);
    CHECK_EQ_INT(r, 1);
    CHECK_MEM(out, 1, "+", 1);
    r = url_decode("%00x", false, out);
    CHECK_EQ_INT(r, 2);
    CHECK_MEM(out, 2, "\0x", 2);
    r = url_decode("", false, out);
    CHECK_EQ_INT(r, 0);
    r = url_decode("caf%C3%A9", false, out);
    CHECK_EQ_INT(r, 5);
    CHECK_MEM(out, 5, "caf\xc3\xa9", 5);
    CHECK_EQ_INT(url_decode("%", false, out), -1);
    CHECK_EQ_INT(url_decode("ab%4", false, out), -1);
    CHECK_EQ_INT(url_decode("%4g", false, out), -1);
    CHECK_EQ_INT(url_decode("%g4", false, out), -1);
    CHECK_EQ_INT(url_decode("%%41", false, out), -1);
    CHECK_EQ_INT(url_decode("% 41", false, out), -1);
}

int main(int argc, char **argv)
{
    return check_main("test_http");
}
