/*
 * crypto: the few digests and encodings the protocols need, through
 * OpenSSL's EVP interface.
 */
#ifndef MOONWS_CRYPTO_H
#define MOONWS_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>

/* Length of a Sec-WebSocket-Accept value plus its NUL. */
#define WS_ACCEPT_LEN 29
/* Length of a Sec-WebSocket-Key value (16 random bytes in base64) plus NUL. */
#define WS_KEY_LEN 25

/* base64(SHA-1(key ++ RFC 6455 GUID)) into out, NUL-terminated. */
void crypto_ws_accept(const char *key, size_t keylen, char out[WS_ACCEPT_LEN]);
/* A fresh random Sec-WebSocket-Key. */
void crypto_ws_key(char out[WS_KEY_LEN]);
/* Fills p with n cryptographically random bytes. */
void crypto_random(void *p, size_t n);
/* True when s (n bytes) is base64 of exactly 16 bytes, as RFC 6455 §4.1
 * requires of Sec-WebSocket-Key. */
bool crypto_is_ws_key(const char *s, size_t n);

#endif
