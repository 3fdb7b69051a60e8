#include "sslio.h"

#include <errno.h>
#include <openssl/err.h>

#include "log.h"

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
    default:
        if (log_enabled(LOG_DEBUG)) {
            char msg[256];
            ERR_error_string_n(ERR_peek_last_error(), msg, sizeof msg);
            log_debug("TLS: %s", msg);
        }
        ERR_clear_error();
        errno = EPROTO;
        return -1;
    }
}
