/*
 * inbox (src/transport/inbox.h) with real threads and real libev loops:
 * per-producer order, exactly-once delivery, the batch bound per wake-up,
 * the byte cap, shutdown; and xshbuf (src/util/xshbuf.h) payloads shared
 * by several workers. Threads only record; the checks run on the test's
 * own thread after they are joined (check.h is not thread-safe).
 */
#include "check.h"

#include <ev.h>
#include <pthread.h>
#include <stdint.h>

#include "transport/inbox.h"
#include "util/limits.h"
#include "util/xshbuf.h"

#define PRODUCERS 4
#define ITEMS 20000

static uintptr_t tag(unsigned producer, unsigned seq)
{
    return (uintptr_t)producer << 24 | seq;
}

/* ---- one consumer on the test's thread ---- */

struct sink {
    struct ev_loop *loop;
    unsigned next[PRODUCERS];       /* the sequence number expected next */
    long out_of_order, total, want;
    bool wrong_thread;
    pthread_t thread;
};

static void sink_run(void *arg, void *ctx)
{
    struct sink *s = ctx;
    uintptr_t t = (uintptr_t)arg;
    unsigned p = (unsigned)(t >> 24), seq = (unsigned)(t & 0xffffff);
    if (p >= PRODUCERS || seq != s->next[p])
        s->out_of_order++;
    else
        s->next[p]++;
    s->wrong_thread |= !pthread_equal(pthread_self(), s->thread);
    if (++s->total == s->want)
        ev_break(s->loop, EVBREAK_ALL);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    *(bool *)t->data = true;
    ev_break(loop, EVBREAK_ALL);
}

/* Runs the loop until the sink has what it wants, or 30 s passed. */
static bool run_until_done(struct sink *s)
{
    bool timed_out = false;
    ev_timer guard;
    ev_timer_init(&guard, timeout_cb, 30, 0);
    guard.data = &timed_out;
    ev_timer_start(s->loop, &guard);
    if (s->total < s->want)
        ev_run(s->loop, 0);
    ev_timer_stop(s->loop, &guard);
    return !timed_out;
}

struct producer {
    struct inbox *ib;
    unsigned id;
    long refused;
};

static void *produce(void *p)
{
    struct producer *pr = p;
    for (unsigned i = 0; i < ITEMS; i++) {
        struct inbox_item it = { .run = sink_run, .arg = (void *)tag(pr->id, i), .bytes = 16 };
        if (!inbox_post(pr->ib, &it))
            pr->refused++;
    }
    return NULL;
}

TEST(several_producers_each_in_order_exactly_once)
{
    struct sink s = { .loop = ev_loop_new(EVFLAG_AUTO), .want = PRODUCERS * ITEMS,
                      .thread = pthread_self() };
    struct inbox ib;
    inbox_init(&ib, s.loop, "test", LIM_INBOX_BYTES, &s);
    pthread_t t[PRODUCERS];
    struct producer pr[PRODUCERS];
    for (unsigned i = 0; i < PRODUCERS; i++) {
        pr[i] = (struct producer){ .ib = &ib, .id = i };
        pthread_create(&t[i], NULL, produce, &pr[i]);
    }
    CHECK(run_until_done(&s));
    long refused = 0;
    for (unsigned i = 0; i < PRODUCERS; i++) {
        pthread_join(t[i], NULL);
        refused += pr[i].refused;
    }
    CHECK_EQ_INT(refused, 0);
    CHECK_EQ_INT(s.total, PRODUCERS * ITEMS);
    CHECK_EQ_INT(s.out_of_order, 0);
    for (unsigned i = 0; i < PRODUCERS; i++)
        CHECK_EQ_INT(s.next[i], ITEMS);
    CHECK(!s.wrong_thread);
    /* Nothing more arrives, nothing is left. */
    ev_run(s.loop, EVRUN_NOWAIT);
    CHECK_EQ_INT(s.total, PRODUCERS * ITEMS);
    CHECK_EQ_INT(inbox_bytes(&ib), 0);
    CHECK_EQ_INT(inbox_dropped(&ib), 0);
    inbox_free(&ib);
    ev_loop_destroy(s.loop);
}

static void count_run(void *arg, void *ctx)
{
    (void)arg;
    (*(long *)ctx)++;
}

TEST(one_wakeup_runs_one_batch)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    long ran = 0;
    struct inbox ib;
    inbox_init(&ib, loop, "test", LIM_INBOX_BYTES, &ran);
    for (int i = 0; i < 3 * LIM_INBOX_BATCH + 5; i++)
        CHECK(inbox_post(&ib, &(struct inbox_item){ .run = count_run }));
    ev_run(loop, EVRUN_NOWAIT);
    CHECK_EQ_INT(ran, LIM_INBOX_BATCH);
    ev_run(loop, EVRUN_NOWAIT);
    CHECK_EQ_INT(ran, 2 * LIM_INBOX_BATCH);
    ev_run(loop, EVRUN_NOWAIT);
    ev_run(loop, EVRUN_NOWAIT);
    CHECK_EQ_INT(ran, 3 * LIM_INBOX_BATCH + 5);
    ev_run(loop, EVRUN_NOWAIT);
    CHECK_EQ_INT(ran, 3 * LIM_INBOX_BATCH + 5);
    inbox_free(&ib);
    ev_loop_destroy(loop);
}

/* The item runs on the loop's thread even when posted from it. */
static void repost_run(void *arg, void *ctx)
{
    struct inbox *ib = arg;
    long *ran = ctx;
    if (++*ran < 3)
        inbox_post(ib, &(struct inbox_item){ .run = repost_run, .arg = ib });
}

TEST(posting_from_a_running_item_waits_for_the_next_wakeup)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    long ran = 0;
    struct inbox ib;
    inbox_init(&ib, loop, "test", LIM_INBOX_BYTES, &ran);
    inbox_post(&ib, &(struct inbox_item){ .run = repost_run, .arg = &ib });
    ev_run(loop, EVRUN_NOWAIT);
    CHECK_EQ_INT(ran, 1);
    ev_run(loop, EVRUN_NOWAIT);
    ev_run(loop, EVRUN_NOWAIT);
    CHECK_EQ_INT(ran, 3);
    inbox_free(&ib);
    ev_loop_destroy(loop);
}

static long dropped_args;

static void free_drop(void *arg)
{
    free(arg);
    dropped_args++;
}

static void free_run(void *arg, void *ctx)
{
    free(arg);
    (*(long *)ctx)++;
}

TEST(byte_cap_refuses_counts_and_recovers)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    long ran = 0;
    struct inbox ib;
    const size_t item = 100;
    const size_t cap = 10 * (item + sizeof(struct inbox_node));
    inbox_init(&ib, loop, "test", cap, &ran);
    int accepted = 0;
    for (int i = 0; i < 15; i++) {
        void *arg = malloc(item);
        if (inbox_post(&ib, &(struct inbox_item){ .run = free_run, .drop = free_drop,
                                                  .arg = arg, .bytes = item }))
            accepted++;
        else
            free(arg);              /* refused: the poster still owns it */
    }
    CHECK_EQ_INT(accepted, 10);
    CHECK_EQ_INT(inbox_dropped(&ib), 5);
    CHECK_EQ_INT(inbox_bytes(&ib), cap);
    /* An item larger than the whole cap never fits. */
    CHECK(!inbox_post(&ib, &(struct inbox_item){ .run = count_run, .bytes = SIZE_MAX - 8 }));
    CHECK_EQ_INT(inbox_dropped(&ib), 6);
    ev_run(loop, EVRUN_NOWAIT);
    CHECK_EQ_INT(ran, 10);
    CHECK_EQ_INT(inbox_bytes(&ib), 0);
    void *arg = malloc(item);
    CHECK(inbox_post(&ib, &(struct inbox_item){ .run = free_run, .arg = arg, .bytes = item }));
    ev_run(loop, EVRUN_NOWAIT);
    CHECK_EQ_INT(ran, 11);
    inbox_free(&ib);
    ev_loop_destroy(loop);
}

TEST(control_items_pass_a_full_inbox_but_not_a_closed_one)
{
    /* A reload's phases and a shutdown must reach a worker whose inbox is
     * full of broadcasts: they count, but the cap does not refuse them. */
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    long ran = 0;
    struct inbox ib;
    const size_t cap = 4 * (64 + sizeof(struct inbox_node));
    inbox_init(&ib, loop, "test", cap, &ran);
    for (int i = 0; i < 4; i++)
        CHECK(inbox_post(&ib, &(struct inbox_item){ .run = count_run, .bytes = 64 }));
    CHECK(!inbox_post(&ib, &(struct inbox_item){ .run = count_run, .bytes = 64 }));
    CHECK(inbox_post_control(&ib, &(struct inbox_item){ .run = count_run, .bytes = 64 }));
    CHECK(inbox_bytes(&ib) > cap);
    CHECK_EQ_INT(inbox_dropped(&ib), 1);
    ev_run(loop, EVRUN_NOWAIT);
    CHECK_EQ_INT(ran, 5);
    CHECK_EQ_INT(inbox_bytes(&ib), 0);
    inbox_close(&ib);
    CHECK(!inbox_post_control(&ib, &(struct inbox_item){ .run = count_run }));
    inbox_free(&ib);
    ev_loop_destroy(loop);
}

TEST(free_drops_what_remains)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    long ran = 0;
    struct inbox ib;
    inbox_init(&ib, loop, "test", LIM_INBOX_BYTES, &ran);
    dropped_args = 0;
    for (int i = 0; i < 1000; i++)
        CHECK(inbox_post(&ib, &(struct inbox_item){ .run = free_run, .drop = free_drop,
                                                    .arg = malloc(32), .bytes = 32 }));
    /* A drop function may be absent when there is nothing to release. */
    CHECK(inbox_post(&ib, &(struct inbox_item){ .run = count_run }));
    inbox_free(&ib);                /* the sanitizer's leak check counts the rest */
    CHECK_EQ_INT(ran, 0);
    CHECK_EQ_INT(dropped_args, 1000);
    ev_loop_destroy(loop);
}

TEST(close_refuses_later_posts)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    long ran = 0;
    struct inbox ib;
    inbox_init(&ib, loop, "test", LIM_INBOX_BYTES, &ran);
    CHECK(inbox_post(&ib, &(struct inbox_item){ .run = count_run }));
    inbox_close(&ib);
    CHECK(!inbox_post(&ib, &(struct inbox_item){ .run = count_run }));
    /* Closing is not a drop for the cap's count. */
    CHECK_EQ_INT(inbox_dropped(&ib), 0);
    ev_run(loop, EVRUN_NOWAIT);
    CHECK_EQ_INT(ran, 1);
    inbox_free(&ib);
    ev_loop_destroy(loop);
}

TEST(an_inbox_does_not_keep_its_loop_alive)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    long ran = 0;
    struct inbox ib;
    inbox_init(&ib, loop, "test", LIM_INBOX_BYTES, &ran);
    ev_run(loop, 0);                /* returns at once: nothing else is active */
    inbox_free(&ib);
    ev_loop_destroy(loop);
    CHECK_EQ_INT(ran, 0);
}

/* ---- workers on threads of their own, sharing xshbuf payloads ---- */

#define WORKERS 3
#define PUBLISHERS 2
#define PUBLISHES 5000

struct worker {
    pthread_t thread;
    struct inbox ib;
    struct sink s;
    long bad_payload;
    pthread_barrier_t *ready, *producers_done;
    bool timed_out;
};

/* The payload: its publisher and sequence number, then that many bytes
 * of the publisher's letter (a torn or reused block would show). */
struct payload_head {
    unsigned publisher, seq;
};

static void payload_run(void *arg, void *ctx)
{
    struct xshbuf *b = arg;
    struct worker *w = ctx;
    struct payload_head h;
    memcpy(&h, b->data, sizeof h);
    for (size_t i = sizeof h; i < b->len; i++)
        w->bad_payload += b->data[i] != (char)('a' + h.publisher);
    xshbuf_unref(b);
    sink_run((void *)tag(h.publisher, h.seq), &w->s);
}

static void payload_drop(void *arg)
{
    xshbuf_unref(arg);
}

static void *worker_main(void *p)
{
    struct worker *w = p;
    w->s.loop = ev_loop_new(EVFLAG_AUTO);
    w->s.thread = pthread_self();
    w->s.want = PUBLISHERS * PUBLISHES;
    inbox_init(&w->ib, w->s.loop, "worker", LIM_INBOX_BYTES, w);
    pthread_barrier_wait(w->ready);
    w->timed_out = !run_until_done(&w->s);
    /* Freed only once no publisher can post to it any more. */
    pthread_barrier_wait(w->producers_done);
    inbox_free(&w->ib);
    ev_loop_destroy(w->s.loop);
    return NULL;
}

struct publisher {
    struct worker *workers;
    unsigned id;
    long refused;
};

static void *publish_main(void *p)
{
    struct publisher *pub = p;
    for (unsigned seq = 0; seq < PUBLISHES; seq++) {
        size_t len = sizeof(struct payload_head) + seq % 200;
        struct xshbuf *b = xshbuf_new(len);
        memcpy(b->data, &(struct payload_head){ pub->id, seq }, sizeof(struct payload_head));
        memset(b->data + sizeof(struct payload_head), 'a' + (int)pub->id,
               len - sizeof(struct payload_head));
        /* One reference per worker, taken before any of them can drop one. */
        for (int i = 1; i < WORKERS; i++)
            xshbuf_ref(b);
        for (int i = 0; i < WORKERS; i++) {
            struct inbox_item it = { .run = payload_run, .drop = payload_drop, .arg = b,
                                     .bytes = len };
            if (!inbox_post(&pub->workers[i].ib, &it)) {
                xshbuf_unref(b);
                pub->refused++;
            }
        }
    }
    return NULL;
}

TEST(payloads_reach_every_worker_by_reference_in_order)
{
    pthread_barrier_t ready, done;
    pthread_barrier_init(&ready, NULL, WORKERS + 1);
    pthread_barrier_init(&done, NULL, WORKERS + 1);
    struct worker w[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        w[i] = (struct worker){ .ready = &ready, .producers_done = &done };
        pthread_create(&w[i].thread, NULL, worker_main, &w[i]);
    }
    pthread_barrier_wait(&ready);
    pthread_t pt[PUBLISHERS];
    struct publisher pub[PUBLISHERS];
    for (unsigned i = 0; i < PUBLISHERS; i++) {
        pub[i] = (struct publisher){ .workers = w, .id = i };
        pthread_create(&pt[i], NULL, publish_main, &pub[i]);
    }
    long refused = 0;
    for (int i = 0; i < PUBLISHERS; i++) {
        pthread_join(pt[i], NULL);
        refused += pub[i].refused;
    }
    pthread_barrier_wait(&done);
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(w[i].thread, NULL);
        CHECK(!w[i].timed_out);
        CHECK_EQ_INT(w[i].s.total, PUBLISHERS * PUBLISHES);
        CHECK_EQ_INT(w[i].s.out_of_order, 0);
        CHECK_EQ_INT(w[i].bad_payload, 0);
        CHECK(!w[i].s.wrong_thread);
    }
    CHECK_EQ_INT(refused, 0);
    pthread_barrier_destroy(&ready);
    pthread_barrier_destroy(&done);
    /* Every block was freed by its last worker: the leak check says so. */
}

/* A worker that never runs its loop: posters hit the cap and go on. */
struct flood {
    struct inbox *ib;
    long accepted, refused;
};

static void *flood_main(void *p)
{
    struct flood *f = p;
    for (int i = 0; i < 20000; i++) {
        void *arg = malloc(64);
        if (inbox_post(f->ib, &(struct inbox_item){ .run = free_run, .drop = free_drop,
                                                    .arg = arg, .bytes = 64 })) {
            f->accepted++;
        } else {
            free(arg);
            f->refused++;
        }
    }
    return NULL;
}

TEST(posters_never_wait_for_a_stuck_consumer)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    long ran = 0;
    struct inbox ib;
    const size_t cap = 1000 * (64 + sizeof(struct inbox_node));
    inbox_init(&ib, loop, "stuck", cap, &ran);
    pthread_t t[PRODUCERS];
    struct flood f[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        f[i] = (struct flood){ .ib = &ib };
        pthread_create(&t[i], NULL, flood_main, &f[i]);
    }
    long accepted = 0, refused = 0;
    for (int i = 0; i < PRODUCERS; i++) {
        pthread_join(t[i], NULL);
        accepted += f[i].accepted;
        refused += f[i].refused;
    }
    CHECK_EQ_INT(accepted, 1000);
    CHECK_EQ_INT(refused, PRODUCERS * 20000 - 1000);
    CHECK_EQ_INT(inbox_dropped(&ib), refused);
    dropped_args = 0;
    inbox_free(&ib);
    CHECK_EQ_INT(dropped_args, 1000);
    ev_loop_destroy(loop);
}

int main(int argc, char **argv)
{
    return check_main("test_inbox");
}
