/*
 * The RFC 6455 §4 handshake: crypto_ws_accept / crypto_is_ws_key
 * (src/util/crypto.h) and ws_handshake (src/proto/ws_handshake.h), both
 * ends.
 */
#include "check.h"

#include "proto/ws_handshake.h"
#include "util/crypto.h"

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

/* Parses a request written with \n line ends (turned into CRLF). The
 * request lives in a static buffer until the next call. */
static bool req_of(const char *lines, struct http_request *req)
{
    static char buf[4096];
    size_t n = 0;
    for (const char *p = lines; *p && n + 2 < sizeof buf; p++) {
        if (*p == '\n')
            buf[n++] = '\r';
        buf[n++] = *p;
    }
    int r = http_parse_request(buf, n, req);
    if (!CHECK_EQ_INT(r, (int)n))
        NOTE("  unparsable request:\n%s", lines);
    return r == (int)n;
}

static bool res_of(const char *lines, struct http_response *res)
{
    static char buf[4096];
    size_t n = 0;
    for (const char *p = lines; *p && n + 2 < sizeof buf; p++) {
        if (*p == '\n')
            buf[n++] = '\r';
        buf[n++] = *p;
    }
    int r = http_parse_response(buf, n, res);
    if (!CHECK_EQ_INT(r, (int)n))
        NOTE("  unparsable response:\n%s", lines);
    return r == (int)n;
}

TEST(accept_rfc6455_example)
{
    char out[WS_ACCEPT_LEN];
    memset(out, 'x', sizeof out);
    crypto_ws_accept(KEY, strlen(KEY), out);
    CHECK_STR(out, strlen(out), ACCEPT);
    CHECK_EQ_INT(out[WS_ACCEPT_LEN - 1], 0);
    /* The key is hashed as given: no trimming, no decoding. */
    crypto_ws_accept(KEY " ", strlen(KEY) + 1, out);
    CHECK(strcmp(out, ACCEPT) != 0);
    crypto_ws_accept(KEY "junk", strlen(KEY), out);
    CHECK_STR(out, strlen(out), ACCEPT);
}

TEST(is_ws_key)
{
    CHECK(crypto_is_ws_key(KEY, 24));
    CHECK(crypto_is_ws_key("AAAAAAAAAAAAAAAAAAAAAA==", 24));
    CHECK(crypto_is_ws_key("/////////////////////w==", 24));
    CHECK(crypto_is_ws_key("+++++++++++++++++++++g==", 24));
    static const char *const bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ=",          /* 23 */
        "dGhlIHNhbXBsZSBub25jZQ===",        /* 25 */
        "dGhlIHNhbXBsZSBub25jZQ",           /* unpadded */
        "dGhlIHNhbXBsZSBub25jZR==",         /* nonzero padding bits */
        "dGhlIHNhbXBsZSBub25jZX==",
        "dGhlIHNhbXBsZSBub25jZ===",
        "dGhlIHNhbXBsZSBub2-jZQ==",         /* base64url */
        "dGhlIHNhbXBsZSBub2_jZQ==",
        "dGhlIHNhbXBsZSBu b25jZQ==",
        "dGhlIHNhbXBsZSBub25j=Q==",
        "dGhlIHNhbXBsZSBub25jZQ=A",
        "dGhlIHNhbXBsZSBub25jZW55", /* 18 bytes, no padding */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (!CHECK(!crypto_is_ws_key(bad[i], strlen(bad[i]))))
            NOTE("  accepted \"%s\"\n", bad[i]);
    }
    /* A NUL inside is not a base64 character. */
    CHECK(!crypto_is_ws_key("dGhlIHNhbXBsZSBub2\0jZQ==", 24));
    /* Every generated key is one, and they differ. */
    char prev[WS_KEY_LEN] = "";
    for (int i = 0; i < 200; i++) {
        char k[WS_KEY_LEN];
        crypto_ws_key(k);
        CHECK_EQ_INT(strlen(k), WS_KEY_LEN - 1);
        CHECK(crypto_is_ws_key(k, strlen(k)));
        CHECK(strcmp(k, prev) != 0);
        memcpy(prev, k, sizeof k);
    }
}

#define GOOD_HEAD "GET /chat HTTP/1.1\nHost: example.com\nUpgrade: websocket\n"
#define GOOD_REST "Connection: Upgrade\nSec-WebSocket-Key: " KEY "\nSec-WebSocket-Version: 13\n"

static int check_upgrade(const char *lines, const char **why)
{
    struct http_request req;
    if (!req_of(lines, &req))
        return -1;
    *why = NULL;
    return ws_check_upgrade(&req, why);
}

TEST(check_upgrade_accepts_rfc_request)
{
    const char *why;
    CHECK_EQ_INT(check_upgrade(GOOD_HEAD GOOD_REST "\n", &why), 0);
    CHECK_EQ_INT(check_upgrade("GET /chat HTTP/1.1\n"
                               "host: server.example.com\n"
                               "upgrade: WebSocket\n"
                               "connection: keep-alive, Upgrade\n"
                               "sec-websocket-key: " KEY "\n"
                               "origin: http://example.com\n"
                               "sec-websocket-version: 13\n\n",
                               &why),
                 0);
    CHECK_EQ_INT(check_upgrade("GET / HTTP/1.1\nHost: a\nConnection: upgrade\n"
                               "Sec-WebSocket-Key: " KEY "\nSec-WebSocket-Version: 13\n"
                               "Upgrade: websocket\n\n",
                               &why),
                 0);
}

TEST(check_upgrade_each_failure_and_status)
{
    static const struct {
        const char *req;
        int status;
    } cases[] = {
        { "POST /chat HTTP/1.1\nHost: example.com\nUpgrade: websocket\n" GOOD_REST "\n", 400 },
        { "get /chat HTTP/1.1\nHost: example.com\nUpgrade: websocket\n" GOOD_REST "\n", 400 },
        { "GETS /chat HTTP/1.1\nHost: example.com\nUpgrade: websocket\n" GOOD_REST "\n", 400 },
        { "GET /chat HTTP/1.0\nHost: example.com\nUpgrade: websocket\n" GOOD_REST "\n", 400 },
        { "GET /chat HTTP/1.1\nUpgrade: websocket\n" GOOD_REST "\n", 400 },
        { GOOD_HEAD "Sec-WebSocket-Key: " KEY "\nSec-WebSocket-Version: 13\n\n", 400 },
        { GOOD_HEAD "Connection: keep-alive\nSec-WebSocket-Key: " KEY
                    "\nSec-WebSocket-Version: 13\n\n", 400 },
        { GOOD_HEAD "Connection: upgrades\nSec-WebSocket-Key: " KEY
                    "\nSec-WebSocket-Version: 13\n\n", 400 },
        { GOOD_HEAD "Connection: Upgrade\nSec-WebSocket-Key: " KEY
                    "\nSec-WebSocket-Version: 8\n\n", 426 },
        { GOOD_HEAD "Connection: Upgrade\nSec-WebSocket-Key: " KEY
                    "\nSec-WebSocket-Version: 14\n\n", 426 },
        { GOOD_HEAD "Connection: Upgrade\nSec-WebSocket-Key: " KEY
                    "\nSec-WebSocket-Version: 13, 8\n\n", 426 },
        { GOOD_HEAD "Connection: Upgrade\nSec-WebSocket-Key: " KEY "\n\n", 426 },
        { GOOD_HEAD "Connection: Upgrade\nSec-WebSocket-Version: 13\n\n", 400 },
        { GOOD_HEAD "Connection: Upgrade\nSec-WebSocket-Key: abc\n"
                    "Sec-WebSocket-Version: 13\n\n", 400 },
        { GOOD_HEAD "Connection: Upgrade\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\n"
                    "Sec-WebSocket-Version: 13\n\n", 400 },
        { GOOD_HEAD "Connection: Upgrade\nSec-WebSocket-Key: \n"
                    "Sec-WebSocket-Version: 13\n\n", 400 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *why = NULL;
        int st = check_upgrade(cases[i].req, &why);
        if (!CHECK_EQ_INT(st, cases[i].status))
            NOTE("  request:\n%s", cases[i].req);
        CHECK(why != NULL && why[0] != '\0');
    }
}

TEST(is_upgrade)
{
    struct http_request req;
    if (req_of("GET / HTTP/1.1\nUpgrade: WebSocket\n\n", &req))
        CHECK(ws_is_upgrade(&req));
    if (req_of("GET / HTTP/1.1\nUpgrade: h2c, websocket\n\n", &req))
        CHECK(ws_is_upgrade(&req));
    if (req_of("GET / HTTP/1.1\nUpgrade: h2c\n\n", &req))
        CHECK(!ws_is_upgrade(&req));
    if (req_of("GET / HTTP/1.1\nUpgrade: websockets\n\n", &req))
        CHECK(!ws_is_upgrade(&req));
    if (req_of("GET / HTTP/1.1\nHost: a\n\n", &req))
        CHECK(!ws_is_upgrade(&req));
}

static int select_protocol(const char *lines, char *const *supported, size_t n)
{
    struct http_request req;
    if (!req_of(lines, &req))
        return -2;
    return ws_select_protocol(&req, supported, n);
}

/* ws_select_protocol takes char *const *: writable names. */
static char p_mqtt[] = "mqtt", p_json[] = "json", p_chat[] = "chat";

TEST(select_protocol_in_client_order)
{
    char *sup[] = { p_mqtt, p_json, p_chat };
    /* The client's order decides, not the service's. */
    CHECK_EQ_INT(select_protocol("GET / HTTP/1.1\nSec-WebSocket-Protocol: chat, json\n\n", sup, 3),
                 2);
    CHECK_EQ_INT(select_protocol("GET / HTTP/1.1\nSec-WebSocket-Protocol: json,chat\n\n", sup, 3),
                 1);
    /* Across several header lines, in their order. */
    CHECK_EQ_INT(select_protocol("GET / HTTP/1.1\nSec-WebSocket-Protocol: v2.x, soap\n"
                                 "Host: a\nsec-websocket-protocol: mqtt\n"
                                 "Sec-WebSocket-Protocol: json\n\n",
                                 sup, 3),
                 0);
    CHECK_EQ_INT(select_protocol("GET / HTTP/1.1\nSec-WebSocket-Protocol: soap\n"
                                 "Sec-WebSocket-Protocol: json, mqtt\n\n",
                                 sup, 3),
                 1);
    /* Exact, case-sensitive tokens; none matching is -1. */
    CHECK_EQ_INT(select_protocol("GET / HTTP/1.1\nSec-WebSocket-Protocol: JSON, jso, jsonx\n\n",
                                 sup, 3),
                 -1);
    CHECK_EQ_INT(select_protocol("GET / HTTP/1.1\nSec-WebSocket-Protocol: ,, \t,json ,\n\n", sup,
                                 3),
                 1);
    CHECK_EQ_INT(select_protocol("GET / HTTP/1.1\nSec-WebSocket-Protocol:\n\n", sup, 3), -1);
    CHECK_EQ_INT(select_protocol("GET / HTTP/1.1\nHost: a\n\n", sup, 3), -1);
    CHECK_EQ_INT(select_protocol("GET / HTTP/1.1\nSec-WebSocket-Protocol: json\n\n", sup, 0), -1);
    /* A header with a longer name is not it. */
    CHECK_EQ_INT(select_protocol("GET / HTTP/1.1\nSec-WebSocket-Protocols: json\n\n", sup, 3), -1);
}

TEST(write_accept_answers_the_key)
{
    struct http_request req;
    if (!req_of(GOOD_HEAD GOOD_REST "\n", &req))
        return;
    struct buf out = { 0 };
    ws_write_accept(&out, &req, "json", "permessage-deflate", NULL, 0);
    struct http_response res;
    int r = http_parse_response(out.data, out.len, &res);
    CHECK_EQ_INT(r, (int)out.len);
    CHECK_EQ_INT(res.status, 101);
    const char *offered[] = { "mqtt", "json" };
    CHECK(ws_check_accept(&res, KEY, offered, 2) == NULL);
    const struct http_header *h = http_find_header(res.headers, res.nheaders,
                                                   "sec-websocket-extensions");
    CHECK(h && h->value_len == 18);
    buf_free(&out);
    out = (struct buf){ 0 };
    ws_write_accept(&out, &req, NULL, NULL, "Set-Cookie: a=1\r\n", 17);
    CHECK_EQ_INT(http_parse_response(out.data, out.len, &res), (int)out.len);
    CHECK(http_find_header(res.headers, res.nheaders, "sec-websocket-protocol") == NULL);
    CHECK(http_find_header(res.headers, res.nheaders, "sec-websocket-extensions") == NULL);
    CHECK(ws_check_accept(&res, KEY, NULL, 0) == NULL);
    h = http_find_header(res.headers, res.nheaders, "set-cookie");
    CHECK(h && h->value_len == 3 && memcmp(h->value, "a=1", 3) == 0);
    buf_free(&out);
}

TEST(handshake_owns_its_fields)
{
    CHECK(ws_handshake_owns("Upgrade", 7));
    CHECK(ws_handshake_owns("CONNECTION", 10));
    CHECK(ws_handshake_owns("Sec-WebSocket-Accept", 20));
    CHECK(ws_handshake_owns("sec-websocket-protocol", 22));
    CHECK(!ws_handshake_owns("Set-Cookie", 10));
    CHECK(!ws_handshake_owns("Upgrades", 8));
    CHECK(!ws_handshake_owns("Sec-WebSocket", 13));
}

TEST(client_request_passes_server_checks)
{
    char key[WS_KEY_LEN];
    crypto_ws_key(key);
    const char *protos[] = { "json", "mqtt" };
    struct buf out = { 0 };
    ws_write_client_request(&out, "example.com:8080", "/chat?x=1", key, protos, 2,
                            "Origin: http://example.com\r\n", "permessage-deflate");
    struct http_request req;
    CHECK_EQ_INT(http_parse_request(out.data, out.len, &req), (int)out.len);
    CHECK(ws_is_upgrade(&req));
    const char *why;
    CHECK_EQ_INT(ws_check_upgrade(&req, &why), 0);
    char *sup[] = { p_mqtt };
    CHECK_EQ_INT(ws_select_protocol(&req, sup, 1), 0);
    CHECK_STR(req.target, req.target_len, "/chat?x=1");
    const struct http_header *h = http_find_header(req.headers, req.nheaders, "origin");
    CHECK(h != NULL);
    buf_free(&out);
}

TEST(check_accept_good_and_bad)
{
    const char *offered[] = { "json", "mqtt" };
    struct http_response res;
    static const struct {
        const char *res;
        bool good;
    } cases[] = {
        { "HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\nConnection: Upgrade\n"
          "Sec-WebSocket-Accept: " ACCEPT "\n\n", true },
        { "HTTP/1.1 101 OK\nupgrade: WebSocket\nconnection: keep-alive, upgrade\n"
          "sec-websocket-accept: " ACCEPT "\nSec-WebSocket-Protocol: mqtt\n\n", true },
        { "HTTP/1.1 200 OK\nUpgrade: websocket\nConnection: Upgrade\n"
          "Sec-WebSocket-Accept: " ACCEPT "\n\n", false },
        { "HTTP/1.1 101 OK\nConnection: Upgrade\nSec-WebSocket-Accept: " ACCEPT "\n\n", false },
        { "HTTP/1.1 101 OK\nUpgrade: h2c\nConnection: Upgrade\n"
          "Sec-WebSocket-Accept: " ACCEPT "\n\n", false },
        { "HTTP/1.1 101 OK\nUpgrade: websocket\nSec-WebSocket-Accept: " ACCEPT "\n\n", false },
        { "HTTP/1.1 101 OK\nUpgrade: websocket\nConnection: close\n"
          "Sec-WebSocket-Accept: " ACCEPT "\n\n", false },
        { "HTTP/1.1 101 OK\nUpgrade: websocket\nConnection: Upgrade\n\n", false },
        { "HTTP/1.1 101 OK\nUpgrade: websocket\nConnection: Upgrade\n"
          "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOp=\n\n", false },
        { "HTTP/1.1 101 OK\nUpgrade: websocket\nConnection: Upgrade\n"
          "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xO\n\n", false },
        { "HTTP/1.1 101 OK\nUpgrade: websocket\nConnection: Upgrade\n"
          "Sec-WebSocket-Accept: " ACCEPT "x\n\n", false },
        { "HTTP/1.1 101 OK\nUpgrade: websocket\nConnection: Upgrade\n"
          "Sec-WebSocket-Accept: " KEY "\n\n", false },
        { "HTTP/1.1 101 OK\nUpgrade: websocket\nConnection: Upgrade\n"
          "Sec-WebSocket-Accept: " ACCEPT "\nSec-WebSocket-Protocol: chat\n\n", false },
        { "HTTP/1.1 101 OK\nUpgrade: websocket\nConnection: Upgrade\n"
          "Sec-WebSocket-Accept: " ACCEPT "\nSec-WebSocket-Protocol: json, mqtt\n\n", false },
        { "HTTP/1.1 101 OK\nUpgrade: websocket\nConnection: Upgrade\n"
          "Sec-WebSocket-Accept: " ACCEPT "\nSec-WebSocket-Protocol: JSON\n\n", false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (!res_of(cases[i].res, &res))
            continue;
        const char *why = ws_check_accept(&res, KEY, offered, 2);
        if (!CHECK_EQ_INT(why == NULL, cases[i].good))
            NOTE("  response (%s):\n%s", why ? why : "accepted", cases[i].res);
    }
    /* A sub-protocol when none was offered. */
    if (res_of("HTTP/1.1 101 OK\nUpgrade: websocket\nConnection: Upgrade\n"
               "Sec-WebSocket-Accept: " ACCEPT "\nSec-WebSocket-Protocol: json\n\n",
               &res))
        CHECK(ws_check_accept(&res, KEY, NULL, 0) != NULL);
    /* The answer to another key. */
    if (res_of("HTTP/1.1 101 OK\nUpgrade: websocket\nConnection: Upgrade\n"
               "Sec-WebSocket-Accept: " ACCEPT "\n\n",
               &res))
        CHECK(ws_check_accept(&res, "AAAAAAAAAAAAAAAAAAAAAA==", offered, 2) != NULL);
}

int main(int argc, char **argv)
{
    return check_main("test_handshake");
}
