/*
 * sslio: OpenSSL read/write results in read(2)/write(2) terms, shared by
 * the server's TLS transport and the client.
 */
#ifndef MOONWS_SSLIO_H
#define MOONWS_SSLIO_H

#include <openssl/err.h>
#include <openssl/ssl.h>

/* Maps the result r of SSL_read/SSL_write on ssl: > 0 as is; 0 at the end
 * of the stream (close_notify, or EOF without it); -1 with errno EAGAIN
 * when TLS needs to read or write first, EPROTO for a TLS error, or the
 * socket's errno. The OpenSSL error queue is left empty. */
long sslio_result(SSL *ssl, int r);

/* Empties this thread's OpenSSL error queue before an SSL_read/SSL_write
 * (SSL_get_error reads it), looking first: the queue is nearly always
 * empty, and clearing it walks all its slots, which costs more than a look
 * at one I/O call per message. */
static inline void sslio_clear_errors(void)
{
    if (ERR_peek_error())
        ERR_clear_error();
}

/* strerror(err), except that EPROTO gives the reason of the last TLS error
 * sslio_result saw on this thread ("TLS: tlsv1 alert unknown ca"). */
const char *sslio_strerror(int err);

#endif
