#include "tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pkcs12.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../util/buf.h"
#include "../util/limits.h"
#include "../util/log.h"
#include "../util/sslio.h"
#include "conn.h"
#include "tls_bio.h"
#include "worker.h"

/* Mozilla's "intermediate" TLS 1.2 suites; TLS 1.3 keeps OpenSSL's defaults. */
#define TLS12_CIPHERS                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                 \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                 \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

struct tls_server {
    SSL_CTX *ctx;
    BIO_METHOD *bio;            /* its sessions' socket BIO (tls_bio.c) */
};

/* The TLS state of one connection. */
struct tls_conn {
    struct conn_tstate base;    /* tls_transport: conn finds its table here */
    SSL *ssl;
    bool handshaking;
    bool started;               /* the first handshake bytes were looked at */
};
_Static_assert(offsetof(struct tls_conn, base) == 0, "a connection's tdata is its tls_conn");

/* The TLS state of c, a connection tls_attach set up. */
static inline struct tls_conn *tls_of(const struct conn *c)
{
    return (struct tls_conn *)c->tdata;
}

/* Room for an OpenSSL error string. */
#define SSL_ERROR_CAP 256

/* The newest OpenSSL error as text, in msg (SSL_ERROR_CAP bytes), or a
 * constant; the queue is emptied. */
static const char *ssl_error_in(char *msg)
{
    unsigned long e = ERR_peek_last_error();
    if (!e)
        return "unknown error";
    ERR_error_string_n(e, msg, SSL_ERROR_CAP);
    ERR_clear_error();
    /* "error:0A000086:SSL routines::certificate verify failed": keep the tail. */
    const char *tail = strrchr(msg, ':');
    return tail && tail[1] ? tail + 1 : msg;
}
/* The text lives in a buffer of the calling block (a compound literal):
 * valid for the statement that logs or formats it, on any thread. */
#define ssl_error() ssl_error_in((char[SSL_ERROR_CAP]){ 0 })

static int password_cb(char *buf, int size, int rwflag, void *ud)
{
    (void)rwflag;
    const char *pw = ud;
    if (!pw)
        return 0;
    int n = (int)strlen(pw);
    if (n >= size)
        return 0;
    memcpy(buf, pw, (size_t)n);
    return n;
}

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    for (unsigned i = 0; i < inlen;) {
        unsigned len = in[i];
        if (i + 1 + len > inlen)
            break;
        if (len == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = 8;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + len;
    }
    /* Nothing we speak was offered: carry on without ALPN. */
    return SSL_TLSEXT_ERR_NOACK;
}

/* True when path can be opened for reading; else err says why, in the
 * system's words (OpenSSL's own would be "system lib"). */
static bool readable(const char *what, const char *path, char *err, size_t errcap)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errcap, "cannot open the %s %s: %s", what, path, strerror(errno));
        return false;
    }
    fclose(f);
    return true;
}

/* A PKCS#12 store is DER; PEM files start with "-----BEGIN" (after blank
 * space). Decided by the contents, whatever the file is called. */
static bool is_pkcs12(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    int ch;
    do
        ch = fgetc(f);
    while (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n');
    fclose(f);
    return ch != '-' && ch != EOF;
}

static bool load_pkcs12(SSL_CTX *ctx, const struct tls_options *o, char *err, size_t errcap)
{
    FILE *f = fopen(o->cert, "rb");
    if (!f) {
        snprintf(err, errcap, "cannot open %s: %s", o->cert, strerror(errno));
        return false;
    }
    PKCS12 *p12 = d2i_PKCS12_fp(f, NULL);
    fclose(f);
    if (!p12) {
        snprintf(err, errcap, "%s is not a PKCS#12 store: %s", o->cert, ssl_error());
        return false;
    }
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    STACK_OF(X509) *chain = NULL;
    bool ok = PKCS12_parse(p12, o->password ? o->password : "", &key, &cert, &chain);
    PKCS12_free(p12);
    if (!ok || !key || !cert) {
        snprintf(err, errcap, "cannot read %s: wrong password (--key-password) or no key in it",
                 o->cert);
        ERR_clear_error();
    } else if (SSL_CTX_use_certificate(ctx, cert) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1) {
        snprintf(err, errcap, "%s: %s", o->cert, ssl_error());
        ok = false;
    } else {
        for (int i = 0; chain && i < sk_X509_num(chain); i++) {
            X509 *x = sk_X509_value(chain, i);
            if (SSL_CTX_add1_chain_cert(ctx, x) != 1) {
                snprintf(err, errcap, "%s: %s", o->cert, ssl_error());
                ok = false;
                break;
            }
        }
    }
    EVP_PKEY_free(key);
    X509_free(cert);
    sk_X509_pop_free(chain, X509_free);
    return ok;
}

struct tls_server *tls_server_new(const struct tls_options *o, char *err, size_t errcap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errcap, "cannot create a TLS context: %s", ssl_error());
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, o->min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* One read(2) takes whatever the socket holds, not a record header and
     * then its body: half the reads per message. What it took beyond the
     * records handed out waits in TLS (tls_pending says so). */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    static const unsigned char sid_ctx[] = "moonws";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    SSL_CTX_set_default_passwd_cb(ctx, password_cb);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, (void *)o->password);

    bool ok = readable("certificate", o->cert, err, errcap) &&
              (!o->key || readable("key", o->key, err, errcap)) &&
              (!o->client_ca || readable("client CA file", o->client_ca, err, errcap));
    if (!ok) {
        /* err says which file */
    } else if (is_pkcs12(o->cert)) {
        ok = !o->key;
        if (!ok)
            snprintf(err, errcap, "%s is a PKCS#12 store, which holds the key: drop --key %s",
                     o->cert, o->key);
        else
            ok = load_pkcs12(ctx, o, err, errcap);
    } else {
        ok = SSL_CTX_use_certificate_chain_file(ctx, o->cert) == 1;
        if (!ok) {
            snprintf(err, errcap, "cannot load the certificate chain %s: %s", o->cert,
                     ssl_error());
        } else if (!o->key) {
            snprintf(err, errcap, "--cert %s needs --key (or give a .p12 store)", o->cert);
            ok = false;
        } else if (SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1) {
            int reason = ERR_GET_REASON(ERR_peek_last_error());
            if (reason == X509_R_KEY_VALUES_MISMATCH || reason == X509_R_KEY_TYPE_MISMATCH)
                snprintf(err, errcap, "the key %s does not match the certificate %s", o->key,
                         o->cert);
            else
                snprintf(err, errcap, "cannot load the key %s: %s%s", o->key, ssl_error(),
                         o->password ? " (wrong password?)" : " (encrypted? give --key-password)");
            ERR_clear_error();
            ok = false;
        }
    }
    if (ok && SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errcap, "the key does not match the certificate %s", o->cert);
        ERR_clear_error();
        ok = false;
    }
    if (ok && o->client_ca) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->client_ca);
        if (!names || SSL_CTX_load_verify_locations(ctx, o->client_ca, NULL) != 1) {
            snprintf(err, errcap, "cannot load the client CA file %s: %s", o->client_ca,
                     ssl_error());
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            ok = false;
        } else {
            SSL_CTX_set_client_CA_list(ctx, names);
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        }
    }
    /* The password was only needed to load the key. */
    SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
    if (!ok) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    BIO_METHOD *bio = tls_bio_method_new();
    if (!bio) {
        snprintf(err, errcap, "cannot create a TLS socket BIO: %s", ssl_error());
        SSL_CTX_free(ctx);
        return NULL;
    }
    struct tls_server *t = xcalloc(1, sizeof *t);
    t->ctx = ctx;
    t->bio = bio;
    return t;
}

void tls_server_free(struct tls_server *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    BIO_meth_free(t->bio);
    free(t);
}

/* ---- the transport ---- */

static ssize_t tls_read(struct conn *c, void *p, size_t n)
{
    struct tls_conn *t = tls_of(c);
    sslio_clear_errors();
    errno = 0;
    return sslio_result(t->ssl, SSL_read(t->ssl, p, (int)(n > INT32_MAX ? INT32_MAX : n)));
}

static ssize_t tls_writev(struct conn *c, const struct iovec *iov, int n)
{
    struct tls_conn *t = tls_of(c);
    const void *p = iov[0].iov_base;
    size_t len = iov[0].iov_len;
    if (n > 1) {
        /* SSL has no writev: gather (in the worker's buffer), so a flush
         * is one SSL_write. */
        struct buf *gather = &c->w->gather;
        gather->len = 0;
        for (int i = 0; i < n && gather->len < LIM_TLS_WRITE_GATHER; i++)
            buf_append(gather, iov[i].iov_base, iov[i].iov_len);
        p = gather->data;
        len = gather->len;
    }
    sslio_clear_errors();
    errno = 0;
    ssize_t r = sslio_result(t->ssl, SSL_write(t->ssl, p, (int)(len > INT32_MAX ? INT32_MAX : len)));
    if (r == 0) {
        errno = EPIPE;
        return -1;
    }
    return r;
}

static void tls_shutdown(struct conn *c)
{
    struct tls_conn *t = tls_of(c);
    if (!t->handshaking)
        SSL_shutdown(t->ssl);   /* close_notify; we do not wait for the peer's */
    ERR_clear_error();
    shutdown(c->io.fd, SHUT_WR);
}

static void tls_free(struct conn *c)
{
    struct tls_conn *t = tls_of(c);
    SSL_free(t->ssl);
    free(t);
}

static bool tls_pending(struct conn *c)
{
    struct tls_conn *t = tls_of(c);
    /* Records read ahead count too, whole or not: the caller reads again
     * only after a read that made progress. */
    return !t->handshaking && SSL_has_pending(t->ssl);
}

/* Reads and drops what the peer sent, so that closing the socket sends a
 * FIN behind our last words (an alert, a 400) rather than a reset that
 * may overtake them. */
static void drain(int fd)
{
    char scrap[4096];
    for (int i = 0; i < 16 && recv(fd, scrap, sizeof scrap, MSG_DONTWAIT) > 0; i++)
        ;
}

/* A TLS connection opens with a handshake record (first byte 0x16, or 0x80
 * for an old-style hello); plain HTTP opens with a method in capitals.
 * Tells the latter why nothing works, in plain text. */
static bool answered_plain_http(struct conn *c)
{
    char first;
    if (recv(c->io.fd, &first, 1, MSG_PEEK | MSG_DONTWAIT) != 1 || first < 'A' || first > 'Z')
        return false;
    static const char body[] = "This port speaks TLS: use https:// or wss://\n";
    char resp[256];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     sizeof body - 1, body);
    drain(c->io.fd);
    if (send(c->io.fd, resp, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        log_debug("conn %llu: %s", (unsigned long long)c->id, strerror(errno));
    log_debug("conn %llu: plain HTTP on the TLS port: answered 400", (unsigned long long)c->id);
    return true;
}

static int tls_handshake(struct conn *c)
{
    struct tls_conn *t = tls_of(c);
    if (!t->started) {
        t->started = true;
        if (answered_plain_http(c))
            return CONN_HS_FAILED;
    }
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->handshaking = false;
        return CONN_HS_DONE;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return CONN_HS_WANT_READ;
    if (e == SSL_ERROR_WANT_WRITE)
        return CONN_HS_WANT_WRITE;
    log_debug("conn %llu: TLS handshake failed: %s", (unsigned long long)c->id,
              e == SSL_ERROR_SYSCALL ? "connection closed" : ssl_error());
    ERR_clear_error();
    drain(c->io.fd);            /* the alert is sent: a FIN, not a reset, behind it */
    return CONN_HS_FAILED;
}

static const struct conn_transport tls_transport = {
    .read = tls_read,
    .writev = tls_writev,
    .shutdown = tls_shutdown,
    .free = tls_free,
    .pending = tls_pending,
    .handshake = tls_handshake,
};

bool tls_attach(struct conn *c, struct tls_server *srv)
{
    SSL *ssl = SSL_new(srv->ctx);
    BIO *bio = ssl ? tls_bio_new(srv->bio, c->io.fd) : NULL;
    if (!bio) {
        log_warn("TLS: cannot start a session: %s", ssl_error());
        SSL_free(ssl);
        return false;
    }
    SSL_set_bio(ssl, bio, bio);     /* one reference, for both directions */
    SSL_set_accept_state(ssl);
    struct tls_conn *t = xcalloc(1, sizeof *t);
    t->ssl = ssl;
    t->handshaking = true;
    t->base.tp = &tls_transport;
    conn_set_transport(c, &t->base);
    c->flags |= CONN_SECURE | CONN_HANDSHAKE;
    return true;
}

bool tls_info(const struct conn *c, struct tls_info *out)
{
    if (!(c->flags & CONN_SECURE) || !c->tdata || c->tdata->tp != &tls_transport)
        return false;
    struct tls_conn *t = tls_of(c);
    memset(out, 0, sizeof *out);
    out->version = SSL_get_version(t->ssl);
    out->cipher = SSL_get_cipher_name(t->ssl);
    const unsigned char *alpn;
    unsigned alen;
    SSL_get0_alpn_selected(t->ssl, &alpn, &alen);
    out->alpn = alen == 8 ? "http/1.1" : "";
    out->resumed = SSL_session_reused(t->ssl);
    X509 *peer = SSL_get0_peer_certificate(t->ssl);
    if (peer && SSL_get_verify_result(t->ssl) == X509_V_OK) {
        X509_NAME_oneline(X509_get_subject_name(peer), out->subject, sizeof out->subject);
        X509_NAME_oneline(X509_get_issuer_name(peer), out->issuer, sizeof out->issuer);
    }
    return true;
}
