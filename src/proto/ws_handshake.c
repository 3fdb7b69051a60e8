#include "ws_handshake.h"

#include <string.h>
#include <strings.h>

#include "../util/crypto.h"

bool ws_is_upgrade(const struct http_request *req)
{
    const struct http_header *h = http_find_header(req->headers, req->nheaders, "upgrade");
    return h && http_has_token(h->value, h->value_len, "websocket");
}

int ws_check_upgrade(const struct http_request *req, const char **why)
{
    if (req->method_len != 3 || memcmp(req->method, "GET", 3) != 0) {
        *why = "a WebSocket upgrade must use GET";
        return 400;
    }
    if (req->minor_version < 1) {
        *why = "a WebSocket upgrade needs HTTP/1.1";
        return 400;
    }
    if (!http_find_header(req->headers, req->nheaders, "host")) {
        *why = "missing Host header";
        return 400;
    }
    const struct http_header *h = http_find_header(req->headers, req->nheaders, "connection");
    if (!h || !http_has_token(h->value, h->value_len, "upgrade")) {
        *why = "Connection header must include Upgrade";
        return 400;
    }
    h = http_find_header(req->headers, req->nheaders, "sec-websocket-version");
    if (!h || h->value_len != 2 || memcmp(h->value, "13", 2) != 0) {
        *why = "unsupported Sec-WebSocket-Version (this server speaks 13)";
        return 426;
    }
    h = http_find_header(req->headers, req->nheaders, "sec-websocket-key");
    if (!h || !crypto_is_ws_key(h->value, h->value_len)) {
        *why = "missing or malformed Sec-WebSocket-Key";
        return 400;
    }
    return 0;
}

int ws_select_protocol(const struct http_request *req, char *const *supported, size_t n)
{
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name_len != 22 || strncasecmp(h->name, "sec-websocket-protocol", 22) != 0)
            continue;
        const char *p = h->value, *end = h->value + h->value_len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
                p++;
            const char *s = p;
            while (p < end && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            size_t len = (size_t)(p - s);
            for (size_t k = 0; len && k < n; k++) {
                if (strlen(supported[k]) == len && memcmp(supported[k], s, len) == 0)
                    return (int)k;
            }
        }
    }
    return -1;
}

bool ws_handshake_owns(const char *name, size_t len)
{
    return (len == 7 && strncasecmp(name, "upgrade", 7) == 0) ||
           (len == 10 && strncasecmp(name, "connection", 10) == 0) ||
           (len >= 14 && strncasecmp(name, "sec-websocket-", 14) == 0);
}

void ws_write_accept(struct buf *out, const struct http_request *req, const char *protocol,
                     const char *extensions, const char *extra, size_t extra_len)
{
    const struct http_header *key =
        http_find_header(req->headers, req->nheaders, "sec-websocket-key");
    char accept[WS_ACCEPT_LEN];
    crypto_ws_accept(key->value, key->value_len, accept);
    buf_printf(out,
               "HTTP/1.1 101 Switching Protocols\r\n"
               "Upgrade: websocket\r\n"
               "Connection: Upgrade\r\n"
               "Sec-WebSocket-Accept: %s\r\n",
               accept);
    if (protocol)
        buf_printf(out, "Sec-WebSocket-Protocol: %s\r\n", protocol);
    if (extensions)
        buf_printf(out, "Sec-WebSocket-Extensions: %s\r\n", extensions);
    if (extra_len)
        buf_append(out, extra, extra_len);
    buf_append(out, "\r\n", 2);
}

void ws_write_client_request(struct buf *out, const char *host, const char *target,
                             const char *key, const char *const *protocols, size_t nprot,
                             const char *extra, const char *extensions)
{
    buf_printf(out,
               "GET %s HTTP/1.1\r\n"
               "Host: %s\r\n"
               "Upgrade: websocket\r\n"
               "Connection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n",
               target, host, key);
    if (nprot) {
        buf_append_str(out, "Sec-WebSocket-Protocol: ");
        for (size_t i = 0; i < nprot; i++)
            buf_printf(out, "%s%s", i ? ", " : "", protocols[i]);
        buf_append(out, "\r\n", 2);
    }
    if (extensions)
        buf_printf(out, "Sec-WebSocket-Extensions: %s\r\n", extensions);
    if (extra)
        buf_append_str(out, extra);
    buf_append(out, "\r\n", 2);
}

const char *ws_check_accept(const struct http_response *res, const char *key,
                            const char *const *protocols, size_t nprot)
{
    if (res->status != 101)
        return "the server did not switch protocols";
    const struct http_header *h = http_find_header(res->headers, res->nheaders, "upgrade");
    if (!h || !http_has_token(h->value, h->value_len, "websocket"))
        return "101 without Upgrade: websocket";
    h = http_find_header(res->headers, res->nheaders, "connection");
    if (!h || !http_has_token(h->value, h->value_len, "upgrade"))
        return "101 without Connection: Upgrade";
    h = http_find_header(res->headers, res->nheaders, "sec-websocket-accept");
    char want[WS_ACCEPT_LEN];
    crypto_ws_accept(key, strlen(key), want);
    if (!h || h->value_len != WS_ACCEPT_LEN - 1 || memcmp(h->value, want, WS_ACCEPT_LEN - 1) != 0)
        return "wrong Sec-WebSocket-Accept";
    h = http_find_header(res->headers, res->nheaders, "sec-websocket-protocol");
    if (h) {
        bool offered = false;
        for (size_t i = 0; i < nprot; i++) {
            if (strlen(protocols[i]) == h->value_len &&
                memcmp(protocols[i], h->value, h->value_len) == 0)
                offered = true;
        }
        if (!offered)
            return "the server chose a sub-protocol that was not offered";
    }
    return NULL;
}
