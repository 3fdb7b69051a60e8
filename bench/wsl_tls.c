/*
 * wsl_tls: TLS for wsload's client connections. See wsl_tls.h.
 */
#include "wsl_tls.h"

#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

/* OpenSSL takes int lengths; wsload's buffers are far below this anyway. */
static int clamp_len(size_t n)
{
    return n > INT_MAX ? INT_MAX : (int)n;
}

/*
 * Why a call failed, for the run's error= (which replaces the spaces).
 * Takes the error off the thread's queue, which must be empty before the
 * next SSL_* call or SSL_get_error would blame that call for this one. The
 * text lives in a static buffer: it is read at once, or kept as the pool's
 * "last failure", where a later failure may as well replace it.
 */
static const char *failure(int ssl_error)
{
    static char buf[200];
    int sys = errno;
    unsigned long code = ERR_get_error();
    const char *why = code ? ERR_reason_error_string(code) : NULL;

    ERR_clear_error();
    if (!why && ssl_error == SSL_ERROR_SYSCALL)
        why = sys ? strerror(sys) : "connection closed";
    snprintf(buf, sizeof buf, "TLS: %s", why ? why : "failed");
    return buf;
}

/*
 * No certificate verification: scripts/bench gives every server a
 * throwaway self-signed certificate it makes per run, and wsload connects
 * to 127.0.0.1 only, to measure what TLS costs the server, not whom it
 * talks to. Never point this client at anything whose identity matters.
 *
 * The rest is for speed on the socket: read-ahead lets one read(2) take
 * several records (wt_read then drains them), partial writes return per
 * record so a blocked write resumes where it stopped, and the write buffer
 * may move between those calls (wsload's output buffer grows by realloc).
 * A server that closes TCP without a close_notify (most do, after the
 * WebSocket close handshake) reads as a plain EOF. No session cache: every
 * connection makes a full handshake, which is what the handshake mode
 * should measure.
 */
struct ssl_ctx_st *wt_ctx_new(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (!ctx) {
        fprintf(stderr, "wsload: %s\n", failure(SSL_ERROR_SSL));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    return ctx;
}

void wt_ctx_free(struct ssl_ctx_st *ctx)
{
    SSL_CTX_free(ctx);
}

/* SSL_set_fd's socket BIO is BIO_NOCLOSE: the fd stays the caller's. */
struct ssl_st *wt_new(struct ssl_ctx_st *ctx, int fd)
{
    SSL *s = SSL_new(ctx);

    if (s && SSL_set_fd(s, fd) != 1) {
        SSL_free(s);
        s = NULL;
    }
    if (!s) {
        ERR_clear_error();
        return NULL;
    }
    SSL_set_connect_state(s);
    return s;
}

/* No close_notify is sent: wsload ends connections with RST (see
 * close_with_reset in wsl_client.c), which would discard it anyway. */
void wt_free(struct ssl_st *s)
{
    SSL_free(s);
}

int wt_handshake(struct ssl_st *s, enum wt_want *want, const char **err)
{
    int r = SSL_connect(s);

    if (r == 1)
        return 1;
    int e = SSL_get_error(s, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        *want = WT_WANT_READ;
        return 0;
    case SSL_ERROR_WANT_WRITE:
        *want = WT_WANT_WRITE;
        return 0;
    default:
        *err = failure(e);
        return -1;
    }
}

/*
 * One SSL_read returns at most one record, so it is called again while
 * OpenSSL holds bytes (SSL_has_pending: plaintext not yet returned, or
 * ciphertext read ahead); once it holds none, the socket's readiness says
 * whether more is there, and asking would only cost a read(2) that fails
 * with EAGAIN. Bytes read before a wait or an EOF are returned first; the
 * EOF comes again on the next call. Bytes read before an error are not:
 * the connection is dead and the run fails either way.
 */
ssize_t wt_read(struct ssl_st *s, uint8_t *p, size_t n, enum wt_want *want,
                bool *more, const char **err)
{
    size_t got = 0;

    *more = false;
    while (got < n) {
        int r = SSL_read(s, p + got, clamp_len(n - got));
        if (r > 0) {
            got += (size_t)r;
            if (!SSL_has_pending(s))
                return (ssize_t)got;
            continue;
        }
        int e = SSL_get_error(s, r);
        switch (e) {
        case SSL_ERROR_WANT_READ:
            *want = WT_WANT_READ;
            return got ? (ssize_t)got : WT_AGAIN;
        case SSL_ERROR_WANT_WRITE:
            *want = WT_WANT_WRITE;
            return got ? (ssize_t)got : WT_AGAIN;
        case SSL_ERROR_ZERO_RETURN:
            return got ? (ssize_t)got : WT_EOF;
        default:
            *err = failure(e);
            return WT_ERROR;
        }
    }
    *more = SSL_has_pending(s) != 0;
    return (ssize_t)got;
}

/* With SSL_MODE_ENABLE_PARTIAL_WRITE each SSL_write returns once a record
 * (or the part of one that was pending) has gone to the socket. */
ssize_t wt_write(struct ssl_st *s, const uint8_t *p, size_t n,
                 enum wt_want *want, const char **err)
{
    size_t done = 0;

    while (done < n) {
        int r = SSL_write(s, p + done, clamp_len(n - done));
        if (r > 0) {
            done += (size_t)r;
            continue;
        }
        int e = SSL_get_error(s, r);
        switch (e) {
        case SSL_ERROR_WANT_READ:
            *want = WT_WANT_READ;
            return (ssize_t)done;
        case SSL_ERROR_WANT_WRITE:
            *want = WT_WANT_WRITE;
            return (ssize_t)done;
        default:
            *err = failure(e);
            return WT_ERROR;
        }
    }
    return (ssize_t)done;
}

const char *wt_describe(struct ssl_st *s)
{
    static char buf[128];

    snprintf(buf, sizeof buf, "%s/%s", SSL_get_version(s), SSL_get_cipher_name(s));
    return buf;
}
