/*
 * cluster_counts: the two halves of moonws.cluster_count that are not the
 * wire — the list of this node's per-path counts the link writes to Redis,
 * and the cache of the other nodes' sum it reads back, which any thread
 * looks up.
 *
 * The cache is replaced whole once per read (a sorted table swapped in
 * under a mutex held for the swap or one binary search); a figure older
 * than LIM_CLUSTER_COUNT_TTL is not given.
 */
#ifndef MOONWS_CLUSTER_COUNTS_H
#define MOONWS_CLUSTER_COUNTS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster_chans.h"

/* What the counts callback fills in: path, count, path, count... as the
 * strings of a Redis command's arguments. */
struct cluster_counts {
    struct cluster_names args;
};

/* From the link's counts callback: this node has n connections on path. */
void cluster_counts_add(struct cluster_counts *c, const char *path, size_t len, uint64_t n);

/* A table of sums being built, before it is swapped into a cache. */
struct cluster_count_table;

struct cluster_count_cache {
    pthread_mutex_t mu;
    struct cluster_count_table *table;  /* NULL: no figure yet */
    int64_t read_ms;                    /* monotonic ms of the read it holds */
};

struct cluster_count_table *cluster_count_table_new(void);
/* Adds n to path's sum (a path may come more than once). */
void cluster_count_table_add(struct cluster_count_table *t, const char *path, size_t len,
                             uint64_t n);
void cluster_count_table_free(struct cluster_count_table *t);

void cluster_count_cache_init(struct cluster_count_cache *c);
void cluster_count_cache_free(struct cluster_count_cache *c);
/* Replaces the cache's table with t (which it now owns), read at now_ms. */
void cluster_count_cache_swap(struct cluster_count_cache *c, struct cluster_count_table *t,
                              int64_t now_ms);
/* path's sum as of the last read, if that read is younger than max_age_ms
 * at now_ms; a path not in the table is 0. */
bool cluster_count_cache_get(struct cluster_count_cache *c, const char *path, size_t len,
                             int64_t now_ms, int64_t max_age_ms, uint64_t *n);

#endif
