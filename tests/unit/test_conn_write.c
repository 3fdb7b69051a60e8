/*
 * conn_write_pair (src/transport/conn.h): a frame head and a payload of
 * LIM_DIRECT_WRITE bytes or more go to the kernel from where they lie; what
 * the kernel does not take is queued, in order, ahead of later output; the
 * cork's bytes go first; a failed socket is reported from the loop, never
 * from inside the call. On a real libev loop and a Unix socket pair: the
 * connection holds one end, the test reads the other.
 */
#include "check.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport/conn.h"
#include "transport/worker.h"
#include "util/limits.h"

struct fixture {
    struct ev_loop *loop;
    struct worker w;
    struct conn *c;
    int peer;
    unsigned eofs, closes;
    /* What the connection's next read does (NULL: nothing). */
    void (*on_input)(struct fixture *f);
};

static struct fixture *the;     /* the proto callbacks find their fixture here */

static size_t sink_read(struct conn *c, char *data, size_t n)
{
    (void)c;
    (void)data;
    if (the->on_input)
        the->on_input(the);
    return n;
}

static void sink_eof(struct conn *c)
{
    the->eofs++;
    conn_close(c);
}

static void sink_close(struct conn *c)
{
    (void)c;
    the->closes++;
    the->c = NULL;              /* freed after this loop iteration */
}

static const struct conn_proto sink = {
    .on_read = sink_read, .on_eof = sink_eof, .on_close = sink_close,
};

static void setup(struct fixture *f)
{
    memset(f, 0, sizeof *f);
    the = f;
    f->loop = ev_loop_new(EVFLAG_AUTO);
    worker_init(&f->w, f->loop, 0);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        abort();
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    fcntl(sv[1], F_SETFL, fcntl(sv[1], F_GETFL) | O_NONBLOCK);
    f->peer = sv[1];
    f->c = conn_new(&f->w, sv[0], &sink);
}

static void teardown(struct fixture *f)
{
    if (f->c)
        conn_close(f->c);
    ev_run(f->loop, EVRUN_NOWAIT);      /* frees the closed connection */
    worker_free(&f->w);
    ev_loop_destroy(f->loop);
    if (f->peer >= 0)
        close(f->peer);
    the = NULL;
}

/* Runs the loop and reads the peer's end until want bytes came (or 5 s
 * passed); returns them in a malloc'd buffer, *got their count. */
static char *read_all(struct fixture *f, size_t want, size_t *got)
{
    char *out = malloc(want + 1);
    size_t have = 0;
    ev_tstamp end = ev_time() + 5;
    while (have < want && ev_time() < end) {
        ev_run(f->loop, EVRUN_NOWAIT);
        ssize_t r = read(f->peer, out + have, want + 1 - have);
        if (r > 0)
            have += (size_t)r;
        else if (r == 0 || errno != EAGAIN)
            break;
    }
    *got = have;
    return out;
}

static char *pattern(size_t n)
{
    char *p = malloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + i % 23);
    return p;
}

/* Checks that got holds the concatenation of the given pieces, in order. */
static void check_stream(const char *got, size_t got_len, const char *const *parts,
                         const size_t *lens, int n)
{
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        if (!CHECK(at + lens[i] <= got_len))
            return;
        CHECK_MEM(got + at, lens[i], parts[i], lens[i]);
        at += lens[i];
    }
    CHECK_EQ_INT(got_len, at);
}

TEST(a_large_payload_goes_to_the_kernel_at_once)
{
    struct fixture f;
    setup(&f);
    size_t n = LIM_DIRECT_WRITE * 2;
    char *body = pattern(n);
    conn_write_pair(f.c, "HD", 2, body, n);
    /* Nothing was queued: the kernel took head and payload in the call. */
    CHECK_EQ_INT(conn_buffered(f.c), 0);
    size_t got;
    char *out = read_all(&f, n + 2, &got);
    check_stream(out, got, (const char *const[]){ "HD", body }, (const size_t[]){ 2, n }, 2);
    free(out);
    free(body);
    teardown(&f);
}

TEST(a_small_payload_is_queued_with_the_rest)
{
    struct fixture f;
    setup(&f);
    conn_write_pair(f.c, "HD", 2, "small", 5);
    CHECK_EQ_INT(conn_buffered(f.c), 7);
    size_t got;
    char *out = read_all(&f, 7, &got);
    CHECK_STR(out, got, "HDsmall");
    free(out);
    teardown(&f);
}

TEST(the_threshold_is_exact)
{
    /* One byte under LIM_DIRECT_WRITE is copied into the queue; exactly
     * LIM_DIRECT_WRITE goes to the kernel in the call. */
    struct fixture f;
    setup(&f);
    size_t n = LIM_DIRECT_WRITE;
    char *body = pattern(n);
    conn_write_pair(f.c, "H", 1, body, n - 1);
    CHECK_EQ_INT(conn_buffered(f.c), n);
    size_t got;
    char *out = read_all(&f, n, &got);
    check_stream(out, got, (const char *const[]){ "H", body }, (const size_t[]){ 1, n - 1 }, 2);
    free(out);
    conn_write_pair(f.c, "H", 1, body, n);
    CHECK_EQ_INT(conn_buffered(f.c), 0);
    out = read_all(&f, n + 1, &got);
    check_stream(out, got, (const char *const[]){ "H", body }, (const size_t[]){ 1, n }, 2);
    free(out);
    free(body);
    teardown(&f);
}

TEST(what_the_kernel_leaves_is_queued_ahead_of_later_output)
{
    struct fixture f;
    setup(&f);
    int small = 4096;
    setsockopt(f.peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    setsockopt(f.c->io.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    size_t n = 1u << 20;
    char *body = pattern(n);
    conn_write_pair(f.c, "HD", 2, body, n);
    size_t queued = conn_buffered(f.c);
    CHECK(queued > 0 && queued < n);
    conn_write(f.c, "tail", 4);
    CHECK_EQ_INT(conn_buffered(f.c), queued + 4);
    size_t got;
    char *out = read_all(&f, n + 6, &got);
    check_stream(out, got, (const char *const[]){ "HD", body, "tail" },
                 (const size_t[]){ 2, n, 4 }, 3);
    CHECK_EQ_INT(conn_buffered(f.c), 0);
    free(out);
    free(body);
    teardown(&f);
}

static char *cork_body;

/* While the connection is corked (its input being handled): output before
 * the payload waits in the cork and must leave first; output after it goes
 * back to the cork. */
static void corked_writes(struct fixture *f)
{
    conn_write(f->c, "abc", 3);
    conn_write_pair(f->c, "HD", 2, cork_body, LIM_DIRECT_WRITE);
    CHECK_EQ_INT(conn_buffered(f->c), 0);
    conn_write(f->c, "z", 1);
    f->on_input = NULL;
}

TEST(the_cork_goes_first)
{
    struct fixture f;
    setup(&f);
    cork_body = pattern(LIM_DIRECT_WRITE);
    f.on_input = corked_writes;
    CHECK_EQ_INT(write(f.peer, "go", 2), 2);
    size_t got;
    char *out = read_all(&f, 3 + 2 + LIM_DIRECT_WRITE + 1, &got);
    CHECK(f.on_input == NULL);
    check_stream(out, got, (const char *const[]){ "abc", "HD", cork_body, "z" },
                 (const size_t[]){ 3, 2, LIM_DIRECT_WRITE, 1 }, 4);
    free(out);
    free(cork_body);
    teardown(&f);
}

TEST(a_failed_socket_is_reported_from_the_loop)
{
    struct fixture f;
    setup(&f);
    close(f.peer);
    f.peer = -1;
    size_t n = LIM_DIRECT_WRITE;
    char *body = pattern(n);
    conn_write_pair(f.c, "HD", 2, body, n);
    /* Not inside the call (the protocol may be in the middle of a send)... */
    CHECK_EQ_INT(f.eofs, 0);
    CHECK(!conn_is_closed(f.c));
    CHECK_EQ_INT(conn_buffered(f.c), n + 2);
    /* ...but at the worker's flush. */
    for (int i = 0; i < 100 && !f.eofs; i++)
        ev_run(f.loop, EVRUN_NOWAIT);
    CHECK_EQ_INT(f.eofs, 1);
    CHECK_EQ_INT(f.closes, 1);
    free(body);
    teardown(&f);
}

int main(int argc, char **argv)
{
    return check_main("test_conn_write");
}
