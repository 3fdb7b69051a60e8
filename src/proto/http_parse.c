#include "http_parse.h"

#include <string.h>
#include <strings.h>

#include "../util/hex.h"

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Field-value bytes: VCHAR, SP, HTAB and obs-text. */
static bool is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/*
 * Parses header lines from p up to and including the blank line. Returns the
 * position after the blank line, or NULL with *err set to one of the
 * HTTP_* codes.
 */
static const char *parse_headers(const char *p, const char *end, struct http_header *h,
                                 size_t *nheaders, int *err)
{
    size_t n = 0;
    for (;;) {
        if (p == end) {
            *err = HTTP_PARTIAL;
            return NULL;
        }
        if (*p == '\r') {
            if (p + 1 == end) {
                *err = HTTP_PARTIAL;
                return NULL;
            }
            if (p[1] != '\n') {
                *err = HTTP_ERROR;
                return NULL;
            }
            *nheaders = n;
            return p + 2;
        }
        if (n == LIM_HTTP_HEADERS_MAX) {
            *err = HTTP_TOO_MANY;
            return NULL;
        }
        const char *name = p;
        while (p < end && is_tchar((unsigned char)*p))
            p++;
        if (p == end) {
            *err = HTTP_PARTIAL;
            return NULL;
        }
        /* An empty name, a space before the colon, or obs-fold (a line that
         * starts with whitespace) are all refused here. */
        if (*p != ':' || p == name) {
            *err = HTTP_ERROR;
            return NULL;
        }
        h[n].name = name;
        h[n].name_len = (size_t)(p - name);
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *value = p;
        while (p < end && is_value_char((unsigned char)*p))
            p++;
        if (p == end || (p + 1 == end && *p == '\r')) {
            *err = HTTP_PARTIAL;
            return NULL;
        }
        if (p[0] != '\r' || p[1] != '\n') {
            *err = HTTP_ERROR;
            return NULL;
        }
        const char *vend = p;
        while (vend > value && (vend[-1] == ' ' || vend[-1] == '\t'))
            vend--;
        h[n].value = value;
        h[n].value_len = (size_t)(vend - value);
        n++;
        p += 2;
    }
}

/* Parses "HTTP/1.x" at p; returns the position after it or NULL. */
static const char *parse_version(const char *p, const char *end, int *minor, int *err)
{
    static const char proto[] = "HTTP/1.";
    size_t avail = (size_t)(end - p);
    size_t cmp = avail < 8 ? avail : 7;
    if (memcmp(p, proto, cmp) != 0) {
        *err = HTTP_ERROR;
        return NULL;
    }
    if (avail < 8) {
        *err = HTTP_PARTIAL;
        return NULL;
    }
    if (p[7] < '0' || p[7] > '9') {
        *err = HTTP_ERROR;
        return NULL;
    }
    *minor = p[7] - '0';
    return p + 8;
}

int http_parse_request(const char *buf, size_t len, struct http_request *req)
{
    const char *p = buf, *end = buf + len;
    int err = HTTP_PARTIAL;

    req->method = p;
    while (p < end && is_tchar((unsigned char)*p))
        p++;
    if (p == end)
        return HTTP_PARTIAL;
    if (*p != ' ' || p == req->method)
        return HTTP_ERROR;
    req->method_len = (size_t)(p - req->method);
    p++;

    /* Visible ASCII only (RFC 9112 §3.2; raw UTF-8 must be %-escaped), and
     * no fragment: a '#' ends the loop and fails the check below. */
    req->target = p;
    while (p < end && (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f && *p != '#')
        p++;
    if (p == end)
        return HTTP_PARTIAL;
    if (*p != ' ' || p == req->target)
        return HTTP_ERROR;
    req->target_len = (size_t)(p - req->target);
    p++;

    if (!(p = parse_version(p, end, &req->minor_version, &err)))
        return err;
    if (end - p < 2)
        return (p == end || *p == '\r') ? HTTP_PARTIAL : HTTP_ERROR;
    if (p[0] != '\r' || p[1] != '\n')
        return HTTP_ERROR;
    p += 2;

    if (!(p = parse_headers(p, end, req->headers, &req->nheaders, &err)))
        return err;
    return (int)(p - buf);
}

int http_parse_response(const char *buf, size_t len, struct http_response *res)
{
    const char *p = buf, *end = buf + len;
    int err = HTTP_PARTIAL;

    if (!(p = parse_version(p, end, &res->minor_version, &err)))
        return err;
    if (end - p < 5)
        return HTTP_PARTIAL;
    if (p[0] != ' ' || p[1] < '1' || p[1] > '9' || p[2] < '0' || p[2] > '9' ||
        p[3] < '0' || p[3] > '9')
        return HTTP_ERROR;
    res->status = (p[1] - '0') * 100 + (p[2] - '0') * 10 + (p[3] - '0');
    p += 4;
    if (*p == ' ')
        p++;
    else if (*p != '\r')
        return HTTP_ERROR;
    res->reason = p;
    while (p < end && is_value_char((unsigned char)*p))
        p++;
    if (end - p < 2)
        return (p == end || *p == '\r') ? HTTP_PARTIAL : HTTP_ERROR;
    if (p[0] != '\r' || p[1] != '\n')
        return HTTP_ERROR;
    res->reason_len = (size_t)(p - res->reason);
    p += 2;

    if (!(p = parse_headers(p, end, res->headers, &res->nheaders, &err)))
        return err;
    return (int)(p - buf);
}

const struct http_header *http_find_header(const struct http_header *h, size_t n,
                                           const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < n; i++) {
        if (h[i].name_len == nl && strncasecmp(h[i].name, name, nl) == 0)
            return &h[i];
    }
    return NULL;
}

size_t http_header_values(const struct http_header *h, size_t n, const char *name,
                          const char **vals, size_t *lens, size_t cap)
{
    size_t nl = strlen(name), found = 0;
    for (size_t i = 0; i < n; i++) {
        if (h[i].name_len != nl || strncasecmp(h[i].name, name, nl) != 0)
            continue;
        if (found < cap) {
            vals[found] = h[i].value;
            lens[found] = h[i].value_len;
        }
        found++;
    }
    return found;
}

bool http_has_token(const char *v, size_t len, const char *token)
{
    size_t tl = strlen(token);
    const char *end = v + len;
    while (v < end) {
        while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
            v++;
        const char *start = v;
        while (v < end && *v != ',')
            v++;
        const char *e = v;
        while (e > start && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - start) == tl && strncasecmp(start, token, tl) == 0)
            return true;
    }
    return false;
}

enum {
    CH_SIZE,        /* hex digits of the chunk size */
    CH_EXT,         /* chunk extension, skipped to the end of the line */
    CH_SIZE_LF,     /* the LF after the size line's CR */
    CH_DATA,
    CH_DATA_CR,
    CH_DATA_LF,
    CH_TRAILER,     /* start of a trailer line, or the final CRLF */
    CH_TRAILER_LINE,
    CH_TRAILER_LF,
    CH_FINAL_LF,
};

ssize_t http_chunked_feed(struct http_chunked *d, const char *in, size_t n,
                          struct buf *out, size_t max)
{
    size_t i = 0;
    while (i < n && !d->done) {
        char c = in[i];
        switch (d->state) {
        case CH_SIZE: {
            int v = hex_digit(c);
            if (v >= 0) {
                if (d->remaining > (max >> 4) || ++d->line > 16)
                    return HTTP_CHUNKED_TOO_BIG;
                d->remaining = d->remaining * 16 + (size_t)v;
                i++;
                break;
            }
            if (d->line == 0)
                return -1;
            if (c == ';' || c == ' ' || c == '\t')
                d->state = CH_EXT;
            else if (c == '\r')
                d->state = CH_SIZE_LF;
            else
                return -1;
            i++;
            break;
        }
        case CH_EXT:
            if (c == '\r')
                d->state = CH_SIZE_LF;
            else if (!is_value_char((unsigned char)c) || ++d->line > LIM_HTTP_HEAD_MAX)
                return -1;
            i++;
            break;
        case CH_SIZE_LF:
            if (c != '\n')
                return -1;
            i++;
            d->line = 0;
            if (d->remaining == 0) {
                d->state = CH_TRAILER;
            } else {
                if (out->len + d->remaining > max)
                    return HTTP_CHUNKED_TOO_BIG;
                d->state = CH_DATA;
            }
            break;
        case CH_DATA: {
            size_t take = n - i < d->remaining ? n - i : d->remaining;
            buf_append(out, in + i, take);
            i += take;
            d->remaining -= take;
            if (d->remaining == 0)
                d->state = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            if (c != '\r')
                return -1;
            d->state = CH_DATA_LF;
            i++;
            break;
        case CH_DATA_LF:
            if (c != '\n')
                return -1;
            d->state = CH_SIZE;
            i++;
            break;
        case CH_TRAILER:
            if (c != '\r' && !is_value_char((unsigned char)c))
                return -1;
            d->state = c == '\r' ? CH_FINAL_LF : CH_TRAILER_LINE;
            d->line = 0;
            i++;
            break;
        case CH_TRAILER_LINE:
            if (c == '\r')
                d->state = CH_TRAILER_LF;
            else if (!is_value_char((unsigned char)c) || ++d->line > LIM_HTTP_HEAD_MAX)
                return -1;
            i++;
            break;
        case CH_TRAILER_LF:
            if (c != '\n')
                return -1;
            d->state = CH_TRAILER;
            i++;
            break;
        case CH_FINAL_LF:
            if (c != '\n')
                return -1;
            d->done = true;
            i++;
            break;
        }
    }
    return (ssize_t)i;
}

ssize_t http_url_decode(char *s, size_t n, bool form)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi, lo;
            if (i + 2 >= n || (hi = hex_digit(s[i + 1])) < 0 || (lo = hex_digit(s[i + 2])) < 0)
                return -1;
            s[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (form && s[i] == '+') {
            s[o++] = ' ';
        } else {
            s[o++] = s[i];
        }
    }
    return (ssize_t)o;
}
