/*
 * tls: TLS on accepted connections (OpenSSL 3), as one more conn_transport.
 * The handshake runs non-blocking on the loop; afterwards the protocols
 * above read and write as on a plain socket. Each flush of a connection's
 * queue is one SSL_write.
 */
#ifndef MOONWS_TLS_H
#define MOONWS_TLS_H

#include <stdbool.h>
#include <stddef.h>

struct conn;

struct tls_options {
    const char *cert;           /* PEM chain, or a PKCS#12 store (DER, any name) */
    const char *key;            /* PEM key; NULL with a PKCS#12 store */
    const char *password;       /* for an encrypted key or the store; may be NULL */
    const char *client_ca;      /* PEM CAs: require and verify client certificates */
    int min_version;            /* --tls-min-version: 12 (0: that) or 13 */
};

struct tls_server;

/* Loads the certificate and key and checks they belong together. NULL with
 * a message in err (a missing file, a key that does not match, a wrong
 * password). */
struct tls_server *tls_server_new(const struct tls_options *o, char *err, size_t errcap);
void tls_server_free(struct tls_server *t);

/* Puts TLS on a new connection; the handshake starts with its first event.
 * Returns false (and the connection should be closed) when OpenSSL cannot
 * make the session. */
bool tls_attach(struct conn *c, struct tls_server *t);

/* What the connection's TLS session says about the peer, for scripts. */
struct tls_info {
    const char *version;        /* "TLSv1.3" */
    const char *cipher;
    const char *alpn;           /* "http/1.1" or "" */
    char subject[256];          /* verified client certificate, "" when none */
    char issuer[256];
    bool resumed;
};

/* False for a connection without TLS. */
bool tls_info(const struct conn *c, struct tls_info *out);

#endif
