/*
 * cluster_link's publishing: a message is built into a whole PUBLISH
 * command on the caller's thread, queued through the link's inbox, and
 * appended to the publishing connection on the link's thread; the bytes
 * count against LIM_CLUSTER_QUEUE_BYTES until Redis answers. See
 * cluster_link.h.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/buf.h"
#include "cluster_link_impl.h"

/* A PUBLISH on its way to the link's thread: the whole command, already
 * in Redis' protocol, so that the link's thread only appends it. */
struct pub_item {
    struct cluster_link *l;
    size_t cost;                /* what it counts against LIM_CLUSTER_QUEUE_BYTES */
    size_t len;
    char cmd[];
};

static void pub_lost(struct cluster_link *l, size_t cost)
{
    atomic_fetch_sub_explicit(&l->queued, cost, memory_order_relaxed);
    COUNT(l, not_forwarded);
}

static void pub_cb(redisAsyncContext *ac, void *reply, void *priv)
{
    struct cluster_link *l = ac->data;
    redisReply *r = reply;
    size_t cost = (size_t)(uintptr_t)priv;
    if (r && r->type != REDIS_REPLY_ERROR) {
        atomic_fetch_sub_explicit(&l->queued, cost, memory_order_relaxed);
        COUNT(l, published);
        return;
    }
    pub_lost(l, cost);
    if (r) {
        unsigned long k = log_every_hit(&l->refused_log, LIM_CLUSTER_LOG_INTERVAL);
        if (k)
            log_info("cluster: Redis refused a PUBLISH: %s (%lu since the last such line)",
                     r->str, k);
    }
}

/* On the link's thread: hands the command to hiredis, or counts it lost. */
static void pub_run(void *arg, void *ctx)
{
    struct pub_item *it = arg;
    struct cluster_link *l = ctx;
    if ((l->state == L_UP || l->state == L_STOPPING) && l->pub &&
        redisAsyncFormattedCommand(l->pub, pub_cb, (void *)(uintptr_t)it->cost, it->cmd,
                                   it->len) == REDIS_OK) {
        free(it);
        return;
    }
    pub_lost(l, it->cost);
    free(it);
}

static void pub_drop(void *arg)
{
    struct pub_item *it = arg;
    pub_lost(it->l, it->cost);
    free(it);
}

/* Builds PUBLISH channel envelope+payload in Redis' protocol, and queues
 * it for the link's thread. */
static bool enqueue(struct cluster_link *l, enum cluster_chan ch, const char *name, size_t nlen,
                    uint64_t target, enum cluster_kind kind, const void *payload, size_t len)
{
    if (!atomic_load_explicit(&l->up, memory_order_acquire)) {
        COUNT(l, not_forwarded);
        return false;
    }
    if (len > LIM_CLUSTER_MESSAGE_MAX - CLUSTER_WIRE_HEAD_MAX) {
        COUNT(l, too_large);
        unsigned long k = log_every_hit(&l->large_log, LIM_CLUSTER_LOG_INTERVAL);
        if (k)
            log_info("cluster: %lu message%s larger than %d bytes not forwarded", k, PLURAL(k),
                     LIM_CLUSTER_MESSAGE_MAX);
        return false;
    }
    static const char verb[] = "*3\r\n$7\r\nPUBLISH\r\n";
    char head[CLUSTER_WIRE_HEAD_MAX], b1[24], b2[24];
    size_t hl = cluster_wire_head(head, atomic_load_explicit(&l->node, memory_order_relaxed),
                                  kind, target);
    size_t chlen = cluster_wire_channel(NULL, 0, l->prefix, l->plen, ch, name, nlen);
    size_t n1 = (size_t)snprintf(b1, sizeof b1, "$%zu\r\n", chlen);
    size_t n2 = (size_t)snprintf(b2, sizeof b2, "$%zu\r\n", hl + len);
    size_t total = sizeof verb - 1 + n1 + chlen + 2 + n2 + hl + len + 2;
    size_t size = sizeof(struct pub_item) + total;
    size_t cost = size + sizeof(struct inbox_node);

    size_t was = atomic_fetch_add_explicit(&l->queued, cost, memory_order_relaxed);
    if (was + cost > LIM_CLUSTER_QUEUE_BYTES) {
        atomic_fetch_sub_explicit(&l->queued, cost, memory_order_relaxed);
        COUNT(l, queue_full);
        unsigned long k = log_every_hit(&l->full_log, LIM_CLUSTER_LOG_INTERVAL);
        if (k)
            log_info("cluster: the queue to Redis is full (%d bytes): %lu message%s not "
                     "forwarded",
                     LIM_CLUSTER_QUEUE_BYTES, k, PLURAL(k));
        return false;
    }
    struct pub_item *it = xmalloc(size);
    it->l = l;
    it->cost = cost;
    it->len = total;
    char *p = it->cmd;
    memcpy(p, verb, sizeof verb - 1), p += sizeof verb - 1;
    memcpy(p, b1, n1), p += n1;
    p += cluster_wire_channel(p, chlen, l->prefix, l->plen, ch, name, nlen);
    memcpy(p, "\r\n", 2), p += 2;
    memcpy(p, b2, n2), p += n2;
    memcpy(p, head, hl), p += hl;
    if (len)
        memcpy(p, payload, len), p += len;
    memcpy(p, "\r\n", 2), p += 2;
    assert((size_t)(p - it->cmd) == total);

    struct inbox_item item = { pub_run, pub_drop, it, size };
    if (!inbox_post(&l->ib, &item)) {
        pub_lost(l, cost);      /* the link is stopping */
        free(it);
        return false;
    }
    return true;
}

bool cluster_link_publish(struct cluster_link *l, enum cluster_chan ch, const char *name,
                          size_t nlen, enum cluster_kind kind, const void *payload, size_t len)
{
    assert(ch != CLUSTER_CH_NODE);
    return enqueue(l, ch, name, nlen, 0, kind, payload, len);
}

bool cluster_link_send(struct cluster_link *l, unsigned node, uint64_t target,
                       enum cluster_kind kind, const void *payload, size_t len)
{
    assert(node >= 1 && node <= CLUSTER_NODE_MAX && target >= 1 && target <= CLUSTER_ID_MAX);
    char name[16];
    int n = snprintf(name, sizeof name, "%u", node);
    return enqueue(l, CLUSTER_CH_NODE, name, (size_t)n, target, kind, payload, len);
}
