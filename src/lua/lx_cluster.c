/*
 * The process's side of the cluster link (--redis, docs/cluster.md "Inside
 * moonws"): what the link's thread receives goes to the workers, what the
 * workers subscribe to becomes the link's channels, the process's counts
 * go to Redis, and the node's number goes into new connection ids.
 *
 * - A message for a topic or a service goes to every worker's inbox, one
 *   item each holding a reference to the payload (an xshbuf: nothing is
 *   copied per worker); each worker delivers it to its own connections
 *   with the code of a cross-worker delivery (lx_deliver_here). A message
 *   for one connection (a node channel) goes to the one worker that owns
 *   the id, when the id is open; else it is dropped and counted.
 * - An inbox over its byte cap refuses the item: dropped, counted here,
 *   and logged by the inbox (rate-limited).
 * - Channels: topic:NAME while a connection of any worker is subscribed to
 *   NAME (each worker holds one reference while it has subscribers: the
 *   link's table counts them); svc:PATH while the process has connections
 *   at PATH — for a service whose path has parameters, also svc:CONCRETE
 *   while it has connections opened at that concrete path, so that a
 *   broadcast to "/rooms/lobby" on another node reaches them. A node that
 *   serves a path but has no connection there receives nothing for it.
 */
#include <stdlib.h>
#include <string.h>

#include "../cluster/cluster_link.h"
#include "../transport/inbox.h"
#include "../util/connid.h"
#include "../util/log.h"
#include "../util/pathcount.h"
#include "../util/xshbuf.h"
#include "lx.h"
#include "runtime.h"

/* One worker's share of a message from Redis. */
struct rx_item {
    struct xshbuf *payload;     /* one reference */
    uint64_t id;                /* LX_DELIVER_SEND */
    uint8_t kind, opcode;
    size_t nlen;
    char name[];                /* the topic or path, NUL-terminated */
};

static void rx_run(void *arg, void *ctx)
{
    struct rx_item *it = arg;
    lx_deliver_here(ctx, it->kind, it->id, it->name, it->nlen, it->opcode, it->payload->data,
                    it->payload->len);
    xshbuf_unref(it->payload);
    free(it);
}

static void rx_drop(void *arg)
{
    struct rx_item *it = arg;
    xshbuf_unref(it->payload);
    free(it);
}

static void post(struct runtime_cluster *c, unsigned to, const struct cluster_rx *rx,
                 enum lx_deliver_kind kind)
{
    size_t nlen = kind == LX_DELIVER_SEND ? 0 : rx->name_len;
    struct rx_item *it = xmalloc(sizeof *it + nlen + 1);
    *it = (struct rx_item){ xshbuf_ref(rx->payload), rx->target, (uint8_t)kind,
                            rx->kind == CLUSTER_BINARY ? WS_OP_BINARY : WS_OP_TEXT, nlen };
    if (nlen)
        memcpy(it->name, rx->name, nlen);
    it->name[nlen] = '\0';
    struct inbox_item item = { rx_run, rx_drop, it, rx->payload->len + nlen };
    if (!inbox_post(c->inboxes[to], &item)) {
        atomic_fetch_add_explicit(&c->refused, 1, memory_order_relaxed);
        rx_drop(it);
    }
}

/* The link's on_message, on its thread. */
static void on_message(void *ctx, const struct cluster_rx *rx)
{
    struct runtime_cluster *c = ctx;
    if (!atomic_load_explicit(&c->ready, memory_order_acquire))
        return;
    if (rx->chan == CLUSTER_CH_NODE) {
        /* Only the owner may follow the pointer: this asks only whether
         * the id is open now (it may close before its worker runs the
         * item, which then finds it gone). */
        unsigned owner = connid_worker(rx->target);
        if (owner >= c->n || !connid_find(rx->target)) {
            atomic_fetch_add_explicit(&c->not_open, 1, memory_order_relaxed);
            unsigned long k = log_every_hit(&c->not_open_log, LIM_CLUSTER_LOG_INTERVAL);
            if (k)
                log_debug("cluster: a message for connection %llu, not open here, dropped "
                          "(%lu since the last such line)",
                          (unsigned long long)rx->target, k);
            return;
        }
        post(c, owner, rx, LX_DELIVER_SEND);
        return;
    }
    enum lx_deliver_kind kind =
        rx->chan == CLUSTER_CH_TOPIC ? LX_DELIVER_PUBLISH : LX_DELIVER_BROADCAST;
    for (unsigned i = 0; i < c->n; i++)
        post(c, i, rx, kind);
}

static void add_count(void *ud, const char *key, size_t len, long count)
{
    if (count > 0)
        cluster_counts_add(ud, key, len, (uint64_t)count);
}

/* The link's counts callback: the keys of moonws.count, as they are (a
 * concrete path under a pattern is "PATTERN\0PATH"), so that
 * moonws.cluster_count looks the others' sums up with the same key. */
static void counts(void *ctx, struct cluster_counts *out)
{
    (void)ctx;
    pathcount_each(add_count, out);
}

static void on_node(void *ctx, unsigned node)
{
    (void)ctx;
    connid_set_node(node);
}

void runtime_cluster_config(struct runtime_cluster *c, struct cluster_link_config *cfg)
{
    cfg->on_message = on_message;
    cfg->counts = counts;
    cfg->on_node = on_node;
    cfg->ctx = c;
}

/* pathcount's watcher: a count key is a service's path, or PATTERN\0PATH
 * for a concrete path under a pattern: its channel is the part after the
 * NUL. */
static void watch_path(void *ud, const char *key, size_t len, bool present)
{
    struct runtime_cluster *c = ud;
    const char *nul = memchr(key, '\0', len);
    if (nul) {
        len -= (size_t)(nul + 1 - key);
        key = nul + 1;
    }
    if (present)
        cluster_link_subscribe(c->link, CLUSTER_CH_SVC, key, len);
    else
        cluster_link_unsubscribe(c->link, CLUSTER_CH_SVC, key, len);
}

void lx_cluster_topic(void *ud, const char *topic, size_t len, bool first)
{
    struct runtime_cluster *c = ud;
    if (first)
        cluster_link_subscribe(c->link, CLUSTER_CH_TOPIC, topic, len);
    else
        cluster_link_unsubscribe(c->link, CLUSTER_CH_TOPIC, topic, len);
}

void runtime_cluster_watch(struct runtime_cluster *c)
{
    pathcount_watch(watch_path, c);
}

void runtime_cluster_ready(struct runtime_cluster *c)
{
    atomic_store_explicit(&c->ready, true, memory_order_release);
}

void runtime_cluster_stop(struct runtime_cluster *c)
{
    atomic_store(&c->ready, false);
    pathcount_watch(NULL, NULL);
    cluster_link_stop(c->link);
    c->link = NULL;
    uint64_t gone = atomic_load(&c->not_open), full = atomic_load(&c->refused);
    if (gone || full)
        log_info("cluster: %llu message%s for connections no longer open and %llu refused by "
                 "full inboxes were dropped",
                 (unsigned long long)gone, gone == 1 ? "" : "s", (unsigned long long)full);
}
