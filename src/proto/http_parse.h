/*
 * http_parse: a strict HTTP/1.1 message-head parser that owns nothing.
 *
 * The caller's buffer goes in; (pointer, length) views into it come out; no
 * allocation and no copy. Lines must end in CRLF, header names are tokens
 * with no space before the colon, obsolete line folding and control bytes are
 * refused. The parse is redone from the start when more bytes arrive, which
 * is cheap because heads are capped at LIM_HTTP_HEAD_MAX.
 */
#ifndef MOONWS_HTTP_PARSE_H
#define MOONWS_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "../util/buf.h"
#include "../util/limits.h"

/* Return values of the parsers besides a positive head length. */
#define HTTP_PARTIAL      (-2)   /* need more bytes */
#define HTTP_ERROR        (-1)   /* malformed: answer 400 */
#define HTTP_TOO_MANY     (-3)   /* more than LIM_HTTP_HEADERS_MAX lines: 431 */

struct http_header {
    const char *name;
    size_t name_len;
    const char *value;          /* without leading or trailing whitespace */
    size_t value_len;
};

struct http_request {
    const char *method;
    size_t method_len;
    const char *target;         /* the raw request-target, query included */
    size_t target_len;
    int minor_version;          /* HTTP/1.<minor> */
    size_t nheaders;
    struct http_header headers[LIM_HTTP_HEADERS_MAX];
};

struct http_response {
    int minor_version;
    int status;
    const char *reason;
    size_t reason_len;
    size_t nheaders;
    struct http_header headers[LIM_HTTP_HEADERS_MAX];
};

/* Parses a request head at buf. Returns its length (through the blank line)
 * or HTTP_PARTIAL / HTTP_ERROR / HTTP_TOO_MANY. */
int http_parse_request(const char *buf, size_t len, struct http_request *req);
/* The same for a response head (the client side of the upgrade). */
int http_parse_response(const char *buf, size_t len, struct http_response *res);

/* The value of the first header called name (case-insensitive), or NULL. */
const struct http_header *http_find_header(const struct http_header *h, size_t n,
                                           const char *name);
/* Every header called name, in order: the first cap of them go to vals and
 * lens (cap may be 0). Returns how many there are, which may be more. */
size_t http_header_values(const struct http_header *h, size_t n, const char *name,
                          const char **vals, size_t *lens, size_t cap);
/* True when a comma-separated header value lists token (case-insensitive),
 * as in "Connection: keep-alive, Upgrade". */
bool http_has_token(const char *value, size_t len, const char *token);

/*
 * Chunked transfer coding (RFC 9112 §7.1), decoded incrementally. Chunk
 * extensions are skipped, trailers are read and dropped.
 */
struct http_chunked {
    int state;
    size_t remaining;           /* data bytes left in the current chunk */
    size_t line;                /* bytes of the current size/trailer line */
    bool done;
};

#define HTTP_CHUNKED_BAD (-1)
#define HTTP_CHUNKED_TOO_BIG (-2)

/* Feeds n raw bytes, appending decoded data to out. Returns the number of
 * bytes consumed (less than n only once `done` is set: what follows belongs
 * to the next request), HTTP_CHUNKED_BAD for malformed input, or
 * HTTP_CHUNKED_TOO_BIG as soon as a chunk size line says out would pass max
 * (before its data arrives). */
ssize_t http_chunked_feed(struct http_chunked *d, const char *in, size_t n,
                          struct buf *out, size_t max);

/* Decodes %XX escapes of a URL component in place ('+' becomes ' ' when
 * form is true). Returns the new length, or -1 for a bad escape. */
ssize_t http_url_decode(char *s, size_t n, bool form);

#endif
