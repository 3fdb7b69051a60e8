/*
 * connid (src/util/connid.h): the layout of an id, the open set under
 * growth, deletion in the middle of probe runs and many threads; and
 * pathcount (src/util/pathcount.h), whose entries go at zero. Threads only
 * record; the checks run on the test's own thread after they are joined.
 */
#include "check.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "util/connid.h"
#include "util/pathcount.h"

TEST(an_id_names_its_worker_and_stays_below_2_53)
{
    uint64_t prev = 0;
    for (unsigned w = 0; w < 64; w++) {
        uint64_t id = connid_new(w);
        CHECK_EQ_INT(connid_worker(id), w);
        CHECK(id < (1ull << 53));
        CHECK(id > 0);
        CHECK(id >> CONNID_WORKER_BITS > prev >> CONNID_WORKER_BITS);
        prev = id;
    }
}

TEST(an_id_carries_the_node_number_once_it_is_set)
{
    uint64_t before = connid_new(3);
    CHECK_EQ_INT(connid_node(before), 0);
    connid_set_node(4095);
    uint64_t id = connid_new(3);
    CHECK_EQ_INT(connid_node(id), 4095);
    CHECK_EQ_INT(connid_worker(id), 3);
    CHECK(id < (1ull << 53));
    /* The node sits in the top 12 of 53 bits, as docs/cluster.md says. */
    CHECK_EQ_INT((unsigned)(id >> 41), 4095);
    connid_set_node(7);
    CHECK_EQ_INT(connid_node(connid_new(0)), 7);
    CHECK_EQ_INT(connid_node(before), 0);
    connid_set_node(0);
}

TEST(open_find_close)
{
    uint64_t a = connid_new(1), b = connid_new(2);
    int x, y;
    CHECK(connid_find(a) == NULL);
    connid_open(a, &x);
    connid_open(b, &y);
    CHECK(connid_find(a) == &x);
    CHECK(connid_find(b) == &y);
    CHECK(connid_find(0) == NULL);
    connid_close(a);
    CHECK(connid_find(a) == NULL);
    CHECK(connid_find(b) == &y);
    connid_close(a);                /* closing twice is nothing */
    connid_close(b);
    CHECK_EQ_INT(connid_count(), 0);
}

TEST(many_ids_grow_the_tables_and_leave_in_any_order)
{
    /* Enough to grow every shard several times; then every other one
     * leaves, which moves entries back over the holes. */
    enum { N = 20000 };
    static uint64_t ids[N];
    for (int i = 0; i < N; i++) {
        ids[i] = connid_new((unsigned)i % 4);
        connid_open(ids[i], &ids[i]);
    }
    CHECK_EQ_INT(connid_count(), N);
    for (int i = 0; i < N; i += 2)
        connid_close(ids[i]);
    CHECK_EQ_INT(connid_count(), N / 2);
    int lost = 0, ghosts = 0;
    for (int i = 0; i < N; i++) {
        void *p = connid_find(ids[i]);
        if (i % 2 && p != &ids[i])
            lost++;
        if (!(i % 2) && p)
            ghosts++;
    }
    CHECK_EQ_INT(lost, 0);
    CHECK_EQ_INT(ghosts, 0);
    for (int i = 1; i < N; i += 2)
        connid_close(ids[i]);
    CHECK_EQ_INT(connid_count(), 0);
}

/* ---- threads ---- */

#define THREADS 4
#define PER_THREAD (300 * 64)

struct worker_run {
    unsigned index;
    long wrong;                 /* a find that saw another's pointer or none */
    uint64_t last;
};

static void *churn(void *arg)
{
    struct worker_run *r = arg;
    uint64_t mine[64];
    for (int i = 0; i < PER_THREAD; i++) {
        uint64_t id = connid_new(r->index);
        mine[i % 64] = id;
        connid_open(id, r);
        if (connid_find(id) != r)
            r->wrong++;
        if (i % 64 == 63) {
            for (int k = 0; k < 64; k++)
                connid_close(mine[k]);
        }
        /* Counts of a shared path and of a path of this thread's own. */
        pathcount_add("/shared", 7, 1);
        char own[16];
        int n = snprintf(own, sizeof own, "/own/%u", r->index);
        pathcount_add(own, (size_t)n, 1);
        if (i % 2)
            pathcount_add("/shared", 7, -1);
        r->last = id;
    }
    return NULL;
}

TEST(workers_open_and_close_at_once)
{
    pthread_t t[THREADS];
    struct worker_run runs[THREADS];
    for (unsigned i = 0; i < THREADS; i++) {
        runs[i] = (struct worker_run){ .index = i };
        pthread_create(&t[i], NULL, churn, &runs[i]);
    }
    for (unsigned i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    for (unsigned i = 0; i < THREADS; i++) {
        CHECK_EQ_INT(runs[i].wrong, 0);
        CHECK_EQ_INT(connid_worker(runs[i].last), i);
    }
    /* PER_THREAD is a multiple of 64: every id went again. */
    CHECK_EQ_INT(connid_count(), 0);
    CHECK_EQ_INT(pathcount_get("/shared", 7), THREADS * PER_THREAD / 2);
    CHECK_EQ_INT(pathcount_get("/own/2", 6), PER_THREAD);
    pathcount_add("/shared", 7, -(long)(THREADS * PER_THREAD / 2));
    for (unsigned i = 0; i < THREADS; i++) {
        char own[16];
        int n = snprintf(own, sizeof own, "/own/%u", i);
        pathcount_add(own, (size_t)n, -PER_THREAD);
    }
    CHECK_EQ_INT(pathcount_keys(), 0);
}

TEST(path_counts_go_at_zero_and_keys_hold_nuls)
{
    static const char key[] = "/rooms/:room\0/rooms/lobby";
    pathcount_add(key, sizeof key - 1, 1);
    pathcount_add(key, 12, 2);              /* "/rooms/:room" alone */
    CHECK_EQ_INT(pathcount_get(key, sizeof key - 1), 1);
    CHECK_EQ_INT(pathcount_get(key, 12), 2);
    CHECK_EQ_INT(pathcount_get("/nothing", 8), 0);
    CHECK_EQ_INT(pathcount_keys(), 2);
    pathcount_add(key, sizeof key - 1, -1);
    pathcount_add(key, 12, -2);
    CHECK_EQ_INT(pathcount_keys(), 0);
    pathcount_add(key, 12, 0);              /* nothing made */
    CHECK_EQ_INT(pathcount_keys(), 0);
}

/* What pathcount_watch reported: "+KEY" / "-KEY", in order. */
static char watched[256];

static void watch(void *ud, const char *key, size_t len, bool present)
{
    (void)ud;
    size_t at = strlen(watched);
    snprintf(watched + at, sizeof watched - at, "%c%.*s ", present ? '+' : '-', (int)len, key);
}

static void sum(void *ud, const char *key, size_t len, long count)
{
    (void)key, (void)len;
    *(long *)ud += count;
}

TEST(path_counts_tell_a_watcher_when_a_key_comes_and_goes)
{
    pathcount_watch(watch, NULL);
    pathcount_add("/a", 2, 1);
    pathcount_add("/a", 2, 2);
    pathcount_add("/b", 2, 1);
    long total = 0;
    pathcount_each(sum, &total);
    CHECK_EQ_INT(total, 4);
    pathcount_add("/a", 2, -3);
    pathcount_add("/b", 2, -1);
    pathcount_add("/a", 2, 1);
    pathcount_add("/a", 2, -1);
    pathcount_watch(NULL, NULL);
    CHECK_STR(watched, strlen(watched), "+/a +/b -/a -/b +/a -/a ");
}

int main(int argc, char **argv)
{
    int rc = check_main("test_connid");
    connid_cleanup();
    pathcount_cleanup();
    return rc;
}
