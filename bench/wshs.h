/*
 * wshs: the text side of the RFC 6455 §4 opening handshake for the bench
 * tools — finding the end of an HTTP head, looking up a header, the
 * Sec-WebSocket-Key a client sends and the Sec-WebSocket-Accept a server
 * answers. Pure functions over caller buffers; SHA-1, base64 and random
 * bytes come from OpenSSL.
 */
#ifndef BENCH_WSHS_H
#define BENCH_WSHS_H

#include <stdbool.h>
#include <stddef.h>

/* base64 of 16 bytes is 24 characters; of a 20-byte SHA-1, 28. */
#define WSHS_KEY_LEN 24
#define WSHS_ACCEPT_LEN 28

/* Length of the head through its "\r\n\r\n", or 0 while it is incomplete. */
size_t wshs_head_end(const char *buf, size_t n);

/*
 * Finds header `name` (case-insensitive) in head[0..n), skipping the first
 * line. Returns the value with surrounding blanks trimmed and sets *vlen,
 * or NULL when the header is absent. The first occurrence wins.
 */
const char *wshs_header(const char *head, size_t n, const char *name,
                        size_t *vlen);

/* Whether a comma-separated header value lists token (case-insensitive;
 * parameters after ';' are ignored). */
bool wshs_has_token(const char *v, size_t vlen, const char *token);

/* out = base64(SHA-1(key + the §4.2.2 GUID)), NUL-terminated. Returns 0,
 * or -1 when OpenSSL fails. */
int wshs_accept(const char *key, size_t keylen, char out[WSHS_ACCEPT_LEN + 1]);

/* out = base64 of 16 fresh random bytes, NUL-terminated. 0 or -1. */
int wshs_make_key(char out[WSHS_KEY_LEN + 1]);

#endif
