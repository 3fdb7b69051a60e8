/*
 * TLS for the client (wss://, https://): OpenSSL on a non-blocking socket,
 * the handshake bounded by a timeout, then the wsc_io the client reads and
 * writes through.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/clock.h"
#include "../util/sslio.h"
#include "ws_client.h"

struct tls_io {
    SSL_CTX *ctx;
    SSL *ssl;
};

static long tls_read(void *ctx, void *p, size_t n)
{
    struct tls_io *t = ctx;
    errno = 0;
    return sslio_result(t->ssl, SSL_read(t->ssl, p, (int)(n > INT32_MAX ? INT32_MAX : n)));
}

static long tls_write(void *ctx, const void *p, size_t n)
{
    struct tls_io *t = ctx;
    errno = 0;
    return sslio_result(t->ssl, SSL_write(t->ssl, p, (int)(n > INT32_MAX ? INT32_MAX : n)));
}

static bool tls_pending(void *ctx)
{
    struct tls_io *t = ctx;
    return SSL_pending(t->ssl) > 0;
}

static void tls_free(void *ctx)
{
    struct tls_io *t = ctx;
    SSL_shutdown(t->ssl);
    ERR_clear_error();
    SSL_free(t->ssl);
    SSL_CTX_free(t->ctx);
    free(t);
}

static const struct wsc_io tls_io = { tls_read, tls_write, tls_pending, tls_free };

static void last_error(char *err, size_t cap, const char *what)
{
    unsigned long e = ERR_peek_last_error();
    char msg[256] = "unknown error";
    if (e)
        ERR_error_string_n(e, msg, sizeof msg);
    ERR_clear_error();
    snprintf(err, cap, "%s: %s", what, msg);
}

bool wsc_tls_start(int fd, const char *host, const struct wsc_tls_opts *o, double timeout,
                   const struct wsc_io **io, void **ctxp, char *err, size_t errcap)
{
    struct tls_io *t = calloc(1, sizeof *t);
    if (!t || !(t->ctx = SSL_CTX_new(TLS_client_method()))) {
        snprintf(err, errcap, "TLS: out of memory");
        free(t);
        return false;
    }
    SSL_CTX *ctx = t->ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (o->verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        bool ok = o->ca ? SSL_CTX_load_verify_locations(ctx, o->ca, NULL) == 1
                        : SSL_CTX_set_default_verify_paths(ctx) == 1;
        if (!ok) {
            last_error(err, errcap, o->ca ? "cannot load the CA file" : "no system CAs");
            goto fail;
        }
    }
    if (o->cert && (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1 ||
                    SSL_CTX_use_PrivateKey_file(ctx, o->key ? o->key : o->cert,
                                                SSL_FILETYPE_PEM) != 1)) {
        last_error(err, errcap, "cannot load the client certificate");
        goto fail;
    }
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1);
    t->ssl = SSL_new(ctx);
    if (!t->ssl || SSL_set_fd(t->ssl, fd) != 1) {
        last_error(err, errcap, "TLS");
        goto fail;
    }
    const char *name = o->servername ? o->servername : host;
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
    if (!is_ip)
        SSL_set_tlsext_host_name(t->ssl, name);
    if (o->verify) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
        if (is_ip)
            X509_VERIFY_PARAM_set1_ip_asc(vp, name);
        else
            X509_VERIFY_PARAM_set1_host(vp, name, 0);
    }
    SSL_set_connect_state(t->ssl);

    double end = clock_seconds() + timeout;
    for (;;) {
        ERR_clear_error();
        int r = SSL_do_handshake(t->ssl);
        if (r == 1)
            break;
        int e = SSL_get_error(t->ssl, r);
        double left = end - clock_seconds();
        if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) && left > 0 &&
            wsc_wait(fd, e == SSL_ERROR_WANT_WRITE, left))
            continue;
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            snprintf(err, errcap, "timeout in the TLS handshake");
        } else if (SSL_get_verify_result(t->ssl) != X509_V_OK) {
            snprintf(err, errcap, "TLS: certificate verify failed: %s",
                     X509_verify_cert_error_string(SSL_get_verify_result(t->ssl)));
            ERR_clear_error();
        } else if (e == SSL_ERROR_SYSCALL && !ERR_peek_last_error()) {
            snprintf(err, errcap, "TLS handshake failed: connection closed by the server");
        } else {
            last_error(err, errcap, "TLS handshake failed");
        }
        goto fail;
    }
    *io = &tls_io;
    *ctxp = t;
    return true;
fail:
    SSL_free(t->ssl);
    SSL_CTX_free(t->ctx);
    free(t);
    return false;
}
