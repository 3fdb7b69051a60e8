/*
 * The inside of cluster_link, shared by its three files: cluster_link.c
 * (its thread and its life: connections, the node number and its lease,
 * failures, shutdown), cluster_link_pub.c (what it publishes) and
 * cluster_link_sub.c (what it subscribes to, and what arrives there).
 * Nothing outside src/cluster includes this.
 */
#ifndef MOONWS_CLUSTER_LINK_IMPL_H
#define MOONWS_CLUSTER_LINK_IMPL_H

#include <ev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>

#include "../transport/inbox.h"
#include "../util/limits.h"
#include "../util/log.h"
#include "cluster_chans.h"
#include "cluster_link.h"

/* A reason, for a log line or the starter: the place and Redis' own words
 * (cut at 256 bytes). */
#define WHY_MAX (LIM_REDIS_URL_MAX + 512)

enum link_state {
    L_DOWN,                     /* waiting to retry */
    L_CONNECTING,               /* an attempt is under way */
    L_UP,
    L_STOPPING,                 /* leaving Redis */
};

struct cluster_link {
    /* Set by cluster_link_start, read-only afterwards. */
    struct redis_url url;
    char prefix[LIM_REDIS_PREFIX_MAX + 1];
    size_t plen;
    char where[LIM_REDIS_URL_MAX + 16];     /* HOST:PORT, for log lines */
    char token[33];                         /* whose lease: this process's */
    void (*on_message)(void *ctx, const struct cluster_rx *rx);
    void (*counts)(void *ctx, struct cluster_counts *out);
    void (*on_node)(void *ctx, unsigned node);
    void *ctx;

    pthread_t thread;
    struct ev_loop *loop;
    struct inbox ib;                        /* publishes, from any thread */
    ev_async chans_w, stop_w;
    ev_timer retry_w, connect_w, beat_w, count_w, quit_w;
    ev_idle drain_w;

    /* The starter waits on these for the end of the first attempt. */
    pthread_mutex_t start_mu;
    pthread_cond_t start_cv;
    bool start_done;
    enum cluster_start start_result;
    char start_why[WHY_MAX];

    /* The link's thread only. */
    enum link_state state;
    redisAsyncContext *pub, *sub;
    bool pub_ready, sub_ready;
    bool reported;              /* the first attempt's end was told to the starter */
    bool ever_up;
    bool beat_pending, count_pending, lease_lost_logged, sub_quit;
    unsigned attempt;           /* failed attempts since the link was last up */
    unsigned join_tries;
    ev_tstamp beat_sent, down_since;
    uint64_t not_forwarded_before;  /* the count when the link went down */
    uint64_t rng;
    char last_why[WHY_MAX];
    struct cluster_names sub_names, unsub_names;

    /* Any thread. */
    atomic_uint node;
    atomic_bool up;
    atomic_size_t queued;
    atomic_uint_fast64_t published, not_forwarded, queue_full, too_large, received,
        own_skipped, malformed, drops, joins, subscribed;
    struct log_every full_log, large_log, bad_log, refused_log;
    struct cluster_chans *chans;
    struct cluster_count_cache count_cache;
};

#define COUNT(l, field) atomic_fetch_add_explicit(&(l)->field, 1, memory_order_relaxed)
#define PLURAL(n) ((n) == 1 ? "" : "s")

/* cluster_link.c: QUIT on the subscriber, once hiredis has left
 * subscribed mode (while stopping). */
void cluster_link_sub_quit(struct cluster_link *l);

/* cluster_link_sub.c: sends the (UN)SUBSCRIBE commands the channel table
 * has due (while up). */
void cluster_link_sync_chans(struct cluster_link *l);
/* Sends cmd (SUBSCRIBE or UNSUBSCRIBE) for every name, in batches. */
void cluster_link_send_names(struct cluster_link *l, const char *cmd,
                             const struct cluster_names *ns);

#endif
