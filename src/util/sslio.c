#include "sslio.h"

#include <errno.h>
#include <openssl/err.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

/* The reason of the last EPROTO, for sslio_strerror: an extension of
 * errno, so per thread like errno itself (set and read by the thread whose
 * call failed, right after it). */
static __thread char last_error[128];

const char *sslio_strerror(int err)
{
    return err == EPROTO && last_error[0] ? last_error : strerror(err);
}

long sslio_result(SSL *ssl, int r)
{
    if (r > 0)
        return r;
    int e = SSL_get_error(ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        return errno && errno != EAGAIN ? -1 : 0;
    default: {
        unsigned long err = ERR_peek_last_error();
        const char *reason = err ? ERR_reason_error_string(err) : NULL;
        snprintf(last_error, sizeof last_error, "TLS: %s", reason ? reason : "protocol error");
        log_debug("%s", last_error);
        ERR_clear_error();
        errno = EPROTO;
        return -1;
    }
    }
}
