#include "listener.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../util/buf.h"
#include "../util/limits.h"
#include "../util/log.h"
#include "admission.h"

bool listener_parse(const char *spec, char *host, size_t hostcap, unsigned *port,
                    char *err, size_t errcap)
{
    const char *p = spec;
    const char *colon;
    size_t hl = 0;
    const char *h = NULL;
    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (!close || close[1] != ':') {
            snprintf(err, errcap, "bad listen address '%s' (want [IPv6]:PORT)", spec);
            return false;
        }
        h = p + 1;
        hl = (size_t)(close - h);
        p = close + 2;
    } else if ((colon = strrchr(p, ':'))) {
        h = p;
        hl = (size_t)(colon - p);
        p = colon + 1;
    }
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (!*p || *end || errno || v < 0 || v > 65535) {
        snprintf(err, errcap, "bad port in '%s' (want [HOST:]PORT, PORT 0-65535)", spec);
        return false;
    }
    if (h && hl == 0) {
        snprintf(err, errcap, "empty host in '%s'", spec);
        return false;
    }
    if (!h) {
        h = "0.0.0.0";
        hl = 7;
    }
    if (hl >= hostcap) {
        snprintf(err, errcap, "host too long in '%s'", spec);
        return false;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (unsigned)v;
    return true;
}

/* At max_connections: clients wait in the backlog, the loop does not poll
 * the socket, until a connection leaves. */
static bool wait_for_room(struct listener *l)
{
    ev_io_stop(l->loop, &l->io);
    l->waiting_room = true;
    if (!admission_wait(l->adm))
        return false;
    /* One left meanwhile: go on at once. */
    l->waiting_room = false;
    ev_io_start(l->loop, &l->io);
    return true;
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    struct listener *l = io->data;
    for (int i = 0; i < LIM_ACCEPT_BATCH; i++) {
        if (l->adm && !admission_reserve(l->adm)) {
            if (!wait_for_room(l) || !admission_reserve(l->adm))
                return;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(io->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0 && l->adm)
            admission_unreserve(l->adm);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: pending clients wait in the backlog
                 * until some close, instead of the loop spinning. */
                log_warn("accept: %s; pausing new connections for %.1fs", strerror(errno),
                         LIM_ACCEPT_EMFILE_PAUSE);
                ev_io_stop(loop, &l->io);
                ev_timer_set(&l->pause_w, LIM_ACCEPT_EMFILE_PAUSE, 0);
                ev_timer_start(loop, &l->pause_w);
            } else if (errno != EAGAIN) {
                log_warn("accept: %s", strerror(errno));
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        l->on_accept(l, fd, (struct sockaddr *)&ss);
    }
}

void listener_resume(struct listener *l)
{
    if (!l->waiting_room)
        return;
    l->waiting_room = false;
    ev_io_start(l->loop, &l->io);
    admission_resumed(l->adm);
}

static void resume_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct listener *l = t->data;
    ev_io_start(loop, &l->io);
}

/* A socket for res, bound and listening: the first of a group without
 * SO_REUSEPORT, so that a port anyone holds (another process's reuseport
 * group too) is "address in use"; it takes SO_REUSEPORT only after the
 * bind, before listen(), when others are to join it. The others bind with
 * SO_REUSEPORT to the port the first got. Returns -1 with errno. */
static int bind_one(const struct addrinfo *res, bool first, bool group)
{
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if ((!first && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 ||
        (first && group && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) ||
        listen(fd, 4096) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static unsigned bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
}

bool listener_bind_group(const char *host, unsigned port, int *fds, unsigned n,
                         unsigned *port_out, char *err, size_t errcap)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *res;
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        snprintf(err, errcap, "cannot resolve '%s': %s", host, gai_strerror(rc));
        return false;
    }
    unsigned done = 0;
    for (; done < n; done++) {
        fds[done] = bind_one(res, done == 0, n > 1);
        if (fds[done] < 0)
            break;
        if (done == 0 && port == 0) {
            /* The others join the port the kernel picked. */
            struct sockaddr *sa = res->ai_addr;
            port = bound_port(fds[0]);
            if (sa->sa_family == AF_INET6)
                ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
            else
                ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
        }
    }
    freeaddrinfo(res);
    if (done < n) {
        snprintf(err, errcap, "cannot listen on %s:%u: %s", host, port, strerror(errno));
        while (done)
            close(fds[--done]);
        return false;
    }
    *port_out = bound_port(fds[0]);
    return true;
}

struct listener *listener_new(struct ev_loop *loop, int fd, const char *host, unsigned port)
{
    struct listener *l = xcalloc(1, sizeof *l);
    l->loop = loop;
    l->port = port;
    snprintf(l->host, sizeof l->host, "%s", host);
    ev_io_init(&l->io, accept_cb, fd, EV_READ);
    l->io.data = l;
    ev_timer_init(&l->pause_w, resume_cb, LIM_ACCEPT_EMFILE_PAUSE, 0);
    l->pause_w.data = l;
    return l;
}

void listener_start(struct listener *l)
{
    ev_io_start(l->loop, &l->io);
}

void listener_close(struct listener *l)
{
    ev_io_stop(l->loop, &l->io);
    ev_timer_stop(l->loop, &l->pause_w);
    close(l->io.fd);
    free(l);
}
