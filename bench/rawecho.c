/*
 * rawecho: the syscall floor. A single-threaded epoll WebSocket server
 * that does the least a correct server can do, so that the figures of a
 * real server can be read against it:
 *
 *   GET <any path> with an upgrade  -> 101, then every frame is unmasked and
 *                                      echoed as it came (same opcode, same
 *                                      FIN); pings get pongs, a close gets
 *                                      its close echoed and the socket shut
 *   GET /chat                       -> a subscriber: its frames are dropped,
 *                                      it receives the broadcasts
 *   POST /chat/broadcast            -> the body (Content-Length) goes to every
 *                                      /chat subscriber as one text frame,
 *                                      then 200
 *
 * Per readiness event: one read into a shared buffer, frames parsed and
 * unmasked in place, the echoes compacted in place over the input (a
 * server header is 4 bytes shorter than the masked client one, so output
 * never overtakes input), one write. Only what the kernel does not take
 * is copied into a per-connection backlog. Extensions offered
 * (permessage-deflate) are ignored, i.e. never negotiated. No timeouts,
 * no UTF-8 checks, no fragmentation state: those are the server's work
 * being measured, not the floor's.
 *
 * usage: rawecho PORT     (0 picks a free port; the line
 *                          "rawecho: listening on ws://127.0.0.1:PORT" says which)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wsframe.h"
#include "wshs.h"

/* Limits, each with what passing it costs the peer. */
#define HEAD_MAX (8 * 1024)         /* request head: 431 and close */
#define BODY_MAX (1024 * 1024)      /* POST body: 413 and close */
#define FRAME_MAX (1024 * 1024)     /* frame payload: close 1009 */
#define OUT_PAUSE (4 * 1024 * 1024) /* unsent bytes: stop reading that peer */
/* The shared receive buffer holds a carried-over partial frame or request
 * (at most ~1 MiB) plus a fresh read of at least RBUF_CAP - that. */
#define RBUF_CAP (2 * 1024 * 1024)
#define MAX_EVENTS 512
#define ACCEPT_BATCH 256

enum rstate {
    RS_HTTP,        /* reading a request head (and body) */
    RS_WS,
    RS_DRAIN,       /* a final reply is queued: close once it is out */
    RS_DEAD,        /* freed after the current epoll batch */
};

struct rconn {
    int fd;
    enum rstate state;
    bool chat;
    uint32_t events;            /* what epoll watches now */
    uint8_t *in;                /* carried-over bytes (partial frame/request) */
    size_t in_len, in_cap;
    uint8_t *out;               /* bytes the kernel has not taken yet */
    size_t out_off, out_len, out_cap;
    struct rconn *chat_prev, *chat_next;
    struct rconn *dead_next;
};

static struct {
    int ep;
    int lfd;
    uint8_t *rbuf;
    struct rconn *chat;         /* subscribers on /chat */
    struct rconn *dead;         /* to free after this epoll batch */
} srv;

/* Startup failures only: without a socket there is nothing to measure. */
static void die(const char *what)
{
    fprintf(stderr, "rawecho: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* Grows a byte buffer to hold `need`. Input is bounded by the frame and
 * request caps and echo backlog by pausing reads (OUT_PAUSE); broadcasts
 * to a subscriber that stopped reading are not bounded, which a floor
 * measurement with well-behaved clients can afford. */
static void grow(uint8_t **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    size_t nc = *cap ? *cap : 1024;
    while (nc < need)
        nc *= 2;
    uint8_t *np = realloc(*p, nc);
    if (!np) {
        fprintf(stderr, "rawecho: out of memory\n");
        exit(1);
    }
    *p = np;
    *cap = nc;
}

/* Marks c dead; the fd is closed and the memory freed after the epoll
 * batch, since a later event of the same batch may still point at c. */
static void conn_kill(struct rconn *c)
{
    if (c->state == RS_DEAD)
        return;
    c->state = RS_DEAD;
    c->dead_next = srv.dead;
    srv.dead = c;
}

/* Frees what conn_kill marked, once no event of the batch can refer to it. */
static void sweep_dead(void)
{
    struct rconn *c;

    while ((c = srv.dead) != NULL) {
        srv.dead = c->dead_next;
        if (c->chat) {
            if (c->chat_prev)
                c->chat_prev->chat_next = c->chat_next;
            else
                srv.chat = c->chat_next;
            if (c->chat_next)
                c->chat_next->chat_prev = c->chat_prev;
        }
        close(c->fd);
        free(c->in);
        free(c->out);
        free(c);
    }
}

/* Keeps epoll in step with c: read unless the backlog is too big or the
 * connection is only draining, write-wait while a backlog exists. */
static void conn_update_events(struct rconn *c)
{
    size_t backlog = c->out_len - c->out_off;
    uint32_t want = 0;

    if (c->state != RS_DRAIN && backlog < OUT_PAUSE)
        want |= EPOLLIN;
    if (backlog)
        want |= EPOLLOUT;
    if (want == c->events)
        return;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    if (epoll_ctl(srv.ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) {
        conn_kill(c);
        return;
    }
    c->events = want;
}

/* Sends bytes in order: straight to the socket when nothing is queued
 * (one write), else behind the backlog. What the kernel does not take is
 * kept for EPOLLOUT. */
static void conn_send(struct rconn *c, const uint8_t *p, size_t n)
{
    if (c->state == RS_DEAD || n == 0)
        return;
    if (c->out_len == c->out_off) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            conn_kill(c);
            return;
        }
        if (w < 0)
            w = 0;
        p += w;
        n -= (size_t)w;
        if (n == 0)
            return;
        c->out_off = c->out_len = 0;
    }
    grow(&c->out, &c->out_cap, c->out_len + n);
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    conn_update_events(c);
}

/* Queues a final reply, after which the connection closes. */
static void conn_finish(struct rconn *c, const uint8_t *p, size_t n)
{
    conn_send(c, p, n);
    if (c->state == RS_DEAD)
        return;
    c->state = RS_DRAIN;
    if (c->out_len == c->out_off)
        conn_kill(c);
    else
        conn_update_events(c);
}

/* Every non-upgrade answer is final: a status, no body, then close. */
static void http_reply(struct rconn *c, const char *status)
{
    char r[256];
    int n = snprintf(r, sizeof r,
                     "HTTP/1.1 %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                     status);

    conn_finish(c, (const uint8_t *)r, (size_t)n);
}

/* Close frame with `code`, then close: for protocol errors. */
static void ws_fail(struct rconn *c, uint16_t code)
{
    uint8_t f[4] = {0x88, 2, (uint8_t)(code >> 8), (uint8_t)code};

    conn_finish(c, f, sizeof f);
}

/* The body goes to every subscriber; the frame is built once. */
static void broadcast(const uint8_t *body, size_t n)
{
    static uint8_t *frame;
    static size_t cap;

    grow(&frame, &cap, n + WSF_HEADER_MAX);
    size_t hl = wsf_write(frame, true, WSF_TEXT, n, NULL);
    memcpy(frame + hl, body, n);
    for (struct rconn *c = srv.chat; c; c = c->chat_next)
        if (c->state == RS_WS)
            conn_send(c, frame, hl + n);
}

/* Whether the request target (without its query) is exactly `want`. */
static bool path_is(const char *path, size_t plen, const char *want)
{
    const char *q = memchr(path, '?', plen);

    if (q)
        plen = (size_t)(q - path);
    return plen == strlen(want) && memcmp(path, want, plen) == 0;
}

/* A request head (and for POST its body) in buf[0..len). Returns the bytes
 * consumed after a successful upgrade, 0 when more input is needed (the
 * caller keeps all of it), -1 when the request was answered and the
 * connection is draining. */
static ssize_t http_input(struct rconn *c, const uint8_t *buf, size_t len)
{
    const char *h = (const char *)buf;
    size_t hend = wshs_head_end(h, len);
    const char *v;
    size_t vl;

    if (!hend) {
        if (len > HEAD_MAX) {
            http_reply(c, "431 Request Header Fields Too Large");
            return -1;
        }
        return 0;
    }
    /* Request line: METHOD SP target SP version. */
    const char *sp1 = memchr(h, ' ', hend);
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', hend - (size_t)(sp1 + 1 - h)) : NULL;
    if (!sp1 || !sp2) {
        http_reply(c, "400 Bad Request");
        return -1;
    }
    const char *path = sp1 + 1;
    size_t plen = (size_t)(sp2 - path);

    if (sp1 - h == 4 && memcmp(h, "POST", 4) == 0) {
        if (!path_is(path, plen, "/chat/broadcast")) {
            http_reply(c, "404 Not Found");
            return -1;
        }
        v = wshs_header(h, hend, "Content-Length", &vl);
        if (!v) {
            http_reply(c, "411 Length Required");
            return -1;
        }
        unsigned long cl = strtoul(v, NULL, 10);
        if (cl > BODY_MAX) {
            http_reply(c, "413 Content Too Large");
            return -1;
        }
        if (len - hend < cl)
            return 0;
        broadcast(buf + hend, cl);
        http_reply(c, "200 OK");
        return -1;
    }
    if (sp1 - h != 3 || memcmp(h, "GET", 3) != 0) {
        http_reply(c, "405 Method Not Allowed");
        return -1;
    }
    v = wshs_header(h, hend, "Upgrade", &vl);
    if (!v || !wshs_has_token(v, vl, "websocket")) {
        http_reply(c, "426 Upgrade Required");
        return -1;
    }
    v = wshs_header(h, hend, "Sec-WebSocket-Version", &vl);
    if (!v || vl != 2 || memcmp(v, "13", 2) != 0) {
        http_reply(c, "426 Upgrade Required\r\nSec-WebSocket-Version: 13");
        return -1;
    }
    char accept[WSHS_ACCEPT_LEN + 1];
    v = wshs_header(h, hend, "Sec-WebSocket-Key", &vl);
    if (!v || vl != WSHS_KEY_LEN || wshs_accept(v, vl, accept) < 0) {
        http_reply(c, "400 Bad Request");
        return -1;
    }
    char r[256];
    int n = snprintf(r, sizeof r,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    conn_send(c, (const uint8_t *)r, (size_t)n);
    if (c->state == RS_DEAD)
        return -1;
    c->state = RS_WS;
    if (path_is(path, plen, "/chat")) {
        c->chat = true;
        c->chat_next = srv.chat;
        if (srv.chat)
            srv.chat->chat_prev = c;
        srv.chat = c;
    }
    return (ssize_t)hend;
}

/* Frames in buf[0..len): unmask in place and compact each reply over the
 * consumed input (w never passes r), then one send of buf[0..w). Returns
 * the bytes consumed; the rest is a partial frame. */
static size_t ws_input(struct rconn *c, uint8_t *buf, size_t len)
{
    size_t r = 0, w = 0;
    uint16_t fail = 0;

    while (r < len) {
        struct wsf_header h;
        int hl = wsf_parse(buf + r, len - r, &h);
        if (hl == -2)
            break;
        if (hl < 0 || !h.masked || h.rsv) {
            fail = 1002;
            break;
        }
        if (h.len > FRAME_MAX) {
            fail = 1009;
            break;
        }
        if (len - r - (size_t)hl < h.len)
            break;
        uint8_t *pl = buf + r + hl;
        size_t n = (size_t)h.len;
        unsigned op = h.opcode;
        r += (size_t)hl + n;
        if (op == WSF_PONG || (c->chat && op <= WSF_BINARY))
            continue;
        if (op == WSF_CLOSE) {
            if (n == 1) {
                fail = 1002;
                break;
            }
            n = n >= 2 ? 2 : 0;         /* echo the status code only */
        }
        wsf_mask(pl, n, h.mask);
        w += wsf_write(buf + w, h.fin, op == WSF_PING ? WSF_PONG : op, n, NULL);
        memmove(buf + w, pl, n);
        w += n;
        if (op == WSF_CLOSE) {
            conn_finish(c, buf, w);
            return len;
        }
    }
    conn_send(c, buf, w);
    if (fail)
        ws_fail(c, fail);
    return r;
}

/* One read per readiness event. A carried-over partial frame or request
 * is copied to the front of the shared buffer first, so parsing always
 * sees one contiguous run. */
static void conn_readable(struct rconn *c)
{
    size_t have = c->in_len;

    if (have)
        memcpy(srv.rbuf, c->in, have);
    ssize_t n = read(c->fd, srv.rbuf + have, RBUF_CAP - have);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            conn_kill(c);
        return;
    }
    if (n == 0) {
        conn_kill(c);
        return;
    }
    c->in_len = 0;
    size_t len = have + (size_t)n, off = 0;
    if (c->state == RS_HTTP) {
        ssize_t used = http_input(c, srv.rbuf, len);
        if (used < 0)
            return;
        off = (size_t)used;
        if (used == 0) {
            grow(&c->in, &c->in_cap, len);
            memcpy(c->in, srv.rbuf, len);
            c->in_len = len;
            return;
        }
    }
    if (c->state == RS_WS && off < len)
        off += ws_input(c, srv.rbuf + off, len - off);
    if (c->state == RS_WS && off < len) {
        grow(&c->in, &c->in_cap, len - off);
        memcpy(c->in, srv.rbuf + off, len - off);
        c->in_len = len - off;
    } else if (c->in_cap > 64 * 1024) {
        free(c->in);            /* a big frame passed: give it back */
        c->in = NULL;
        c->in_cap = 0;
    }
}

/* The backlog, one write per EPOLLOUT. */
static void conn_writable(struct rconn *c)
{
    ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                     MSG_NOSIGNAL);

    if (w < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            conn_kill(c);
        return;
    }
    c->out_off += (size_t)w;
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        if (c->out_cap > 64 * 1024) {
            free(c->out);
            c->out = NULL;
            c->out_cap = 0;
        }
        if (c->state == RS_DRAIN) {
            conn_kill(c);
            return;
        }
    }
    conn_update_events(c);
}

/* Accepts a bounded batch per listener event so one burst of connects
 * cannot starve the connections already open. */
static void accept_some(void)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(srv.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                fprintf(stderr, "rawecho: out of descriptors\n");
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct rconn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            return;
        }
        c->fd = fd;
        c->state = RS_HTTP;
        c->events = EPOLLIN;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(srv.ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            close(fd);
            free(c);
        }
    }
}

/* Listens on 127.0.0.1 only: the bench never exposes a server. */
static int listen_on(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    int one = 1;

    srv.lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (srv.lfd < 0)
        die("socket");
    setsockopt(srv.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(srv.lfd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("bind");
    if (listen(srv.lfd, 4096) < 0)
        die("listen");
    if (getsockname(srv.lfd, (struct sockaddr *)&sa, &sl) < 0)
        die("getsockname");
    return ntohs(sa.sin_port);
}

/* Raises the descriptor limit to the hard one: 10 000 connections. */
static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Setup, the listening line scripts/bench waits for, then the epoll loop:
 * writes before reads per event, and the dead swept after each batch. */
int main(int argc, char **argv)
{
    char *end;
    long port = argc == 2 ? strtol(argv[1], &end, 10) : -1;
    struct epoll_event evs[MAX_EVENTS];

    if (argc != 2 || *end || port < 0 || port > 65535) {
        fprintf(stderr, "usage: rawecho PORT   (0: any free port)\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    srv.rbuf = malloc(RBUF_CAP);
    srv.ep = epoll_create1(EPOLL_CLOEXEC);
    if (!srv.rbuf || srv.ep < 0)
        die("setup");
    int bound = listen_on((int)port);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(srv.ep, EPOLL_CTL_ADD, srv.lfd, &lev) < 0)
        die("epoll_ctl");
    printf("rawecho: listening on ws://127.0.0.1:%d\n", bound);
    fflush(stdout);

    for (;;) {
        int n = epoll_wait(srv.ep, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct rconn *c = evs[i].data.ptr;
            uint32_t e = evs[i].events;
            if (!c) {
                accept_some();
                continue;
            }
            if ((e & EPOLLOUT) && c->state != RS_DEAD)
                conn_writable(c);
            if ((e & (EPOLLIN | EPOLLHUP | EPOLLERR)) &&
                (c->state == RS_HTTP || c->state == RS_WS))
                conn_readable(c);
            else if ((e & (EPOLLHUP | EPOLLERR)) && c->state == RS_DRAIN)
                conn_kill(c);
        }
        sweep_dead();
    }
}
