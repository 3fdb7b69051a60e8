/*
 * cluster_chans (src/cluster/cluster_chans.h): the per-channel reference
 * counts and the SUBSCRIBE / UNSUBSCRIBE they lead to. The threaded case
 * takes and drops references from several threads while one plays the
 * link, as the workers and the link's thread do.
 */
#include "check.h"

#include <pthread.h>
#include <stdatomic.h>

#include "cluster/cluster_chans.h"

static struct cluster_names sub, unsub;

/* Collects the changes due into sub and unsub (emptied first). */
static void changes(struct cluster_chans *t)
{
    cluster_names_clear(&sub);
    cluster_names_clear(&unsub);
    cluster_chans_changes(t, &sub, &unsub);
}

static bool has(const struct cluster_names *ns, const char *name)
{
    for (size_t i = 0; i < ns->n; i++)
        if (ns->len[i] == strlen(name) && memcmp(ns->bytes.data + ns->off[i], name, ns->len[i]) == 0)
            return true;
    return false;
}

#define REF(t, s) cluster_chans_ref((t), (s), strlen(s))
#define UNREF(t, s) cluster_chans_unref((t), (s), strlen(s))

TEST(first_reference_subscribes_once)
{
    struct cluster_chans *t = cluster_chans_new();
    CHECK(REF(t, "a"));                 /* wake the link */
    CHECK(!REF(t, "a"));                /* already due */
    changes(t);
    CHECK_EQ_INT(sub.n, 1);
    CHECK(has(&sub, "a"));
    CHECK_EQ_INT(unsub.n, 0);
    CHECK(!REF(t, "a"));                /* a third: nothing to do */
    changes(t);
    CHECK_EQ_INT(sub.n + unsub.n, 0);
    CHECK_EQ_INT(cluster_chans_referenced(t), 1);
    cluster_chans_free(t);
}

TEST(last_reference_unsubscribes)
{
    struct cluster_chans *t = cluster_chans_new();
    REF(t, "a");
    REF(t, "a");
    changes(t);
    CHECK(!UNREF(t, "a"));              /* one left */
    changes(t);
    CHECK_EQ_INT(sub.n + unsub.n, 0);
    CHECK(UNREF(t, "a"));
    changes(t);
    CHECK_EQ_INT(unsub.n, 1);
    CHECK(has(&unsub, "a"));
    CHECK_EQ_INT(cluster_chans_referenced(t), 0);
    /* Gone from the table: taking it again subscribes again. */
    CHECK(REF(t, "a"));
    changes(t);
    CHECK(has(&sub, "a"));
    cluster_chans_free(t);
}

TEST(taken_and_dropped_between_looks_costs_nothing)
{
    struct cluster_chans *t = cluster_chans_new();
    REF(t, "x");
    UNREF(t, "x");
    changes(t);
    CHECK_EQ_INT(sub.n + unsub.n, 0);
    /* Subscribed, dropped and taken again between two looks: nothing either. */
    REF(t, "y");
    changes(t);
    UNREF(t, "y");
    REF(t, "y");
    changes(t);
    CHECK_EQ_INT(sub.n + unsub.n, 0);
    cluster_chans_free(t);
}

TEST(reset_subscribes_everything_referenced_again)
{
    struct cluster_chans *t = cluster_chans_new();
    REF(t, "a");
    REF(t, "b");
    REF(t, "c");
    changes(t);
    UNREF(t, "c");                      /* due: UNSUBSCRIBE c */
    cluster_chans_reset(t);             /* the connection is new: nothing is on it */
    changes(t);
    CHECK_EQ_INT(sub.n, 2);
    CHECK(has(&sub, "a") && has(&sub, "b"));
    CHECK_EQ_INT(unsub.n, 0);           /* c is not on the new connection */
    changes(t);
    CHECK_EQ_INT(sub.n + unsub.n, 0);
    cluster_chans_free(t);
}

TEST(take_subscribed_at_shutdown)
{
    struct cluster_chans *t = cluster_chans_new();
    REF(t, "a");
    REF(t, "b");
    changes(t);
    REF(t, "c");                        /* due, not subscribed yet */
    cluster_names_clear(&unsub);
    cluster_chans_take_subscribed(t, &unsub);
    CHECK_EQ_INT(unsub.n, 2);
    CHECK(has(&unsub, "a") && has(&unsub, "b") && !has(&unsub, "c"));
    cluster_chans_free(t);
}

TEST(binary_names_and_growth)
{
    struct cluster_chans *t = cluster_chans_new();
    char name[32];
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(name, sizeof name, "ch%d", i);
        name[1] = '\0';                 /* a NUL inside the name */
        cluster_chans_ref(t, name, (size_t)n);
    }
    changes(t);
    CHECK_EQ_INT(sub.n, 5000);
    CHECK_EQ_INT(cluster_chans_referenced(t), 5000);
    for (int i = 0; i < 5000; i += 2) {
        int n = snprintf(name, sizeof name, "ch%d", i);
        name[1] = '\0';
        cluster_chans_unref(t, name, (size_t)n);
    }
    changes(t);
    CHECK_EQ_INT(unsub.n, 2500);
    CHECK_EQ_INT(cluster_chans_referenced(t), 2500);
    cluster_chans_free(t);
}

/* ---- threads ---- */

#define THREADS 4
#define ROUNDS 20000
#define CHANNELS 16

struct worker_arg {
    struct cluster_chans *t;
    unsigned seed;
};

static void *churn(void *p)
{
    struct worker_arg *w = p;
    int held[CHANNELS] = { 0 };
    char name[8];
    for (int i = 0; i < ROUNDS; i++) {
        w->seed = w->seed * 1103515245 + 12345;
        int c = (int)((w->seed >> 16) % CHANNELS);
        int n = snprintf(name, sizeof name, "c%d", c);
        if (held[c] && (w->seed & 0x100)) {
            cluster_chans_unref(w->t, name, (size_t)n);
            held[c]--;
        } else {
            cluster_chans_ref(w->t, name, (size_t)n);
            held[c]++;
        }
    }
    for (int c = 0; c < CHANNELS; c++) {
        int n = snprintf(name, sizeof name, "c%d", c);
        while (held[c]--)
            cluster_chans_unref(w->t, name, (size_t)n);
    }
    return NULL;
}

struct link_arg {
    struct cluster_chans *t;
    atomic_bool done;
    int on_redis[CHANNELS];         /* what the "link" believes Redis has */
    bool double_sub, double_unsub;
};

static void apply(struct link_arg *a, const struct cluster_names *ns, int delta)
{
    for (size_t i = 0; i < ns->n; i++) {
        int c = 0;                  /* "c<digits>", not NUL-terminated */
        for (size_t k = 1; k < ns->len[i]; k++)
            c = c * 10 + (ns->bytes.data[ns->off[i] + k] - '0');
        a->on_redis[c] += delta;
        if (a->on_redis[c] > 1)
            a->double_sub = true;
        if (a->on_redis[c] < 0)
            a->double_unsub = true;
    }
}

static void *play_link(void *p)
{
    struct link_arg *a = p;
    struct cluster_names s = { 0 }, u = { 0 };
    bool last = false;
    while (!last) {
        last = atomic_load(&a->done);
        cluster_chans_changes(a->t, &s, &u);
        apply(a, &s, 1);
        apply(a, &u, -1);
        cluster_names_clear(&s);
        cluster_names_clear(&u);
    }
    cluster_names_free(&s);
    cluster_names_free(&u);
    return NULL;
}

TEST(workers_and_the_link_concurrently)
{
    struct cluster_chans *t = cluster_chans_new();
    struct link_arg la = { .t = t };
    atomic_init(&la.done, false);
    pthread_t link, th[THREADS];
    struct worker_arg wa[THREADS];
    pthread_create(&link, NULL, play_link, &la);
    for (int i = 0; i < THREADS; i++) {
        wa[i] = (struct worker_arg){ t, (unsigned)i * 7919 + 1 };
        pthread_create(&th[i], NULL, churn, &wa[i]);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    atomic_store(&la.done, true);
    pthread_join(link, NULL);
    /* Every reference was dropped: Redis ends with nothing, and never had
     * a channel twice nor lost one it did not have. */
    CHECK(!la.double_sub);
    CHECK(!la.double_unsub);
    int left = 0;
    for (int c = 0; c < CHANNELS; c++)
        left += la.on_redis[c];
    CHECK_EQ_INT(left, 0);
    CHECK_EQ_INT(cluster_chans_referenced(t), 0);
    cluster_chans_free(t);
}

int main(int argc, char **argv)
{
    int rc = check_main("test_cluster_chans");
    cluster_names_free(&sub);
    cluster_names_free(&unsub);
    return rc;
}
