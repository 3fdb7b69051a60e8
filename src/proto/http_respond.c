#include "http_respond.h"

#include <stdio.h>

#include "../transport/conn.h"
#include "../util/limits.h"
#include "../util/log.h"

const char *http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return status < 400 ? "OK" : "Error";
    }
}

void http_respond(struct conn *c, int status, const char *extra, size_t extra_len,
                  const char *body, size_t len, bool head_only, bool closing)
{
    char head[256];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nServer: moonws\r\nContent-Length: %zu\r\n%s",
                      status, http_status_text(status), len,
                      closing ? "Connection: close\r\n" : "");
    conn_write(c, head, (size_t)hl);
    if (extra_len)
        conn_write(c, extra, extra_len);
    conn_write(c, "\r\n", 2);
    if (!head_only && len)
        conn_write(c, body, len);
}

size_t http_respond_error(struct conn *c, int status, const char *why, const char *extra)
{
    /* Limits (413, 431) are worth a line at info; the rest is client noise. */
    if (status == 413 || status == 431) {
        char addr[80];
        conn_remote(c, addr, sizeof addr);
        log_info("conn %llu (%s): %d: %s", (unsigned long long)c->id, addr, status, why);
    } else {
        log_debug("conn %llu: %d: %s", (unsigned long long)c->id, status, why);
    }
    char body[256];
    int bl = snprintf(body, sizeof body, "%d %s: %s\n", status, http_status_text(status), why);
    char hdr[256];
    int el = snprintf(hdr, sizeof hdr, "Content-Type: text/plain; charset=utf-8\r\n%s",
                      extra ? extra : "");
    http_respond(c, status, hdr, (size_t)el, body, (size_t)bl, false, true);
    conn_finish(c, LIM_HTTP_LINGER);
    return (size_t)bl;
}
