#include "tls_bio.h"

#include <errno.h>
#include <stdint.h>
#include <sys/socket.h>

static int fd_of(BIO *b)
{
    return (int)(intptr_t)BIO_get_data(b);
}

static int sock_read(BIO *b, char *p, int n)
{
    BIO_clear_retry_flags(b);
    ssize_t r = recv(fd_of(b), p, (size_t)n, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        BIO_set_retry_read(b);
    return (int)r;
}

static int sock_write(BIO *b, const char *p, int n)
{
    BIO_clear_retry_flags(b);
    ssize_t r = send(fd_of(b), p, (size_t)n, MSG_NOSIGNAL);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        BIO_set_retry_write(b);
    return (int)r;
}

static long sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;               /* nothing is held here */
    case BIO_C_GET_FD:
        if (ptr)
            *(int *)ptr = fd_of(b);
        return fd_of(b);
    default:
        return 0;               /* no kTLS, nothing pending, no duplication */
    }
}

static int sock_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static int sock_destroy(BIO *b)
{
    (void)b;                    /* the socket belongs to the connection */
    return 1;
}

BIO_METHOD *tls_bio_method_new(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "moonws socket");
    if (!m)
        return NULL;
    BIO_meth_set_read(m, sock_read);
    BIO_meth_set_write(m, sock_write);
    BIO_meth_set_ctrl(m, sock_ctrl);
    BIO_meth_set_create(m, sock_create);
    BIO_meth_set_destroy(m, sock_destroy);
    return m;
}

BIO *tls_bio_new(BIO_METHOD *m, int fd)
{
    BIO *b = BIO_new(m);
    if (b)
        BIO_set_data(b, (void *)(intptr_t)fd);
    return b;
}
