/*
 * tls_bio: the BIO under a server TLS session: the connection's socket, read
 * with recv(2) and written with send(2), like plain connections (OpenSSL's
 * own socket BIO uses read/write, which pass through the VFS layer on every
 * record). Non-blocking: EAGAIN is a retry, as OpenSSL expects.
 */
#ifndef MOONWS_TLS_BIO_H
#define MOONWS_TLS_BIO_H

#include <openssl/bio.h>

/* The method, made once per TLS context (read-only afterwards, so every
 * worker may use it); NULL when OpenSSL cannot make one. */
BIO_METHOD *tls_bio_method_new(void);

/* A BIO on fd (which it never closes), or NULL. */
BIO *tls_bio_new(BIO_METHOD *m, int fd);

#endif
