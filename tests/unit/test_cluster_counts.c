/*
 * cluster_counts (src/cluster/cluster_counts.h): the arguments a node's
 * counts become, and the cache of the other nodes' sums that any thread
 * looks up: sums, misses, the age limit, replacement.
 */
#include "check.h"

#include "cluster/cluster_counts.h"

TEST(counts_args_are_path_and_decimal)
{
    struct cluster_counts c = { 0 };
    cluster_counts_add(&c, "/chat", 5, 12);
    cluster_counts_add(&c, "", 0, 18446744073709551615ULL);
    CHECK_EQ_INT(c.args.n, 4);
    CHECK_MEM(c.args.bytes.data + c.args.off[0], c.args.len[0], "/chat", 5);
    CHECK_MEM(c.args.bytes.data + c.args.off[1], c.args.len[1], "12", 2);
    CHECK_EQ_INT(c.args.len[2], 0);
    CHECK_MEM(c.args.bytes.data + c.args.off[3], c.args.len[3], "18446744073709551615", 20);
    cluster_names_free(&c.args);
}

TEST(count_cache_lookups)
{
    struct cluster_count_cache cc;
    cluster_count_cache_init(&cc);
    uint64_t n = 99;
    CHECK(!cluster_count_cache_get(&cc, "/chat", 5, 1000, 3000, &n));   /* no figure yet */
    struct cluster_count_table *t = cluster_count_table_new();
    cluster_count_table_add(t, "/feed", 5, 1);
    cluster_count_table_add(t, "/chat", 5, 3);
    cluster_count_table_add(t, "/chat", 5, 4);      /* summed */
    cluster_count_table_add(t, "/a", 2, 9);
    cluster_count_table_add(t, "", 0, 2);
    cluster_count_cache_swap(&cc, t, 1000);
    CHECK(cluster_count_cache_get(&cc, "/chat", 5, 1500, 3000, &n));
    CHECK_EQ_INT(n, 7);
    CHECK(cluster_count_cache_get(&cc, "/feed", 5, 1500, 3000, &n));
    CHECK_EQ_INT(n, 1);
    CHECK(cluster_count_cache_get(&cc, "/a", 2, 1500, 3000, &n));
    CHECK_EQ_INT(n, 9);
    CHECK(cluster_count_cache_get(&cc, "", 0, 1500, 3000, &n));
    CHECK_EQ_INT(n, 2);
    CHECK(cluster_count_cache_get(&cc, "/chatroom", 9, 1500, 3000, &n));
    CHECK_EQ_INT(n, 0);                             /* counted by nobody else */
    CHECK(cluster_count_cache_get(&cc, "/cha", 4, 4000, 3000, &n));     /* at the age limit */
    CHECK(!cluster_count_cache_get(&cc, "/chat", 5, 4001, 3000, &n));   /* past it */
    /* A newer read replaces the table whole. */
    t = cluster_count_table_new();
    cluster_count_table_add(t, "/chat", 5, 1);
    cluster_count_cache_swap(&cc, t, 5000);
    CHECK(cluster_count_cache_get(&cc, "/feed", 5, 5000, 3000, &n));
    CHECK_EQ_INT(n, 0);
    CHECK(!cluster_count_cache_get(&cc, "/chat", 5, 8001, 3000, &n));
    cluster_count_cache_free(&cc);
}

TEST(count_cache_empty_table)
{
    struct cluster_count_cache cc;
    cluster_count_cache_init(&cc);
    cluster_count_cache_swap(&cc, cluster_count_table_new(), 10);
    uint64_t n = 5;
    CHECK(cluster_count_cache_get(&cc, "/x", 2, 10, 3000, &n));
    CHECK_EQ_INT(n, 0);
    cluster_count_cache_free(&cc);
}

int main(int argc, char **argv)
{
    return check_main("test_cluster_counts");
}
